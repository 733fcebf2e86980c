"""Edit artifacts on disk: `edits.npz`, a labelled PNG grid and an animated GIF.

Rows are starting latents (one seed, or many with `--seeds`), columns are strengths; the GIF
steps through the strengths with every row in each frame. Files are written into a staging
folder by the caller, so a failure leaves nothing behind.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from .analysis import Analysis
from .artifacts import atomic_write_bytes, save_npz_atomic
from .models.base import Model
from .render import gif_bytes, image_grid, overlay_region, png_bytes, to_uint8, upscale


def render_latents(model: Model, latents: torch.Tensor, batch: int = 16) -> np.ndarray:
    """Images of latents: `(n, d)` -> `(n, H, W, 3)` uint8."""
    images = []
    with torch.no_grad():
        for start in range(0, latents.shape[0], batch):
            chunk = latents[start : start + batch].to(model.device, model.dtype)
            images.append(to_uint8(model.synthesize(chunk)))
    return np.concatenate(images)


def strength_label(value: float) -> str:
    return f"{value:+g}" if value else "0"


def write_edit_outputs(
    folder: Path,
    model: Model,
    rows: Sequence[tuple[str, torch.Tensor]],
    strengths: Sequence[float],
    seeds: Sequence[int] | None,
    analysis: Analysis,
) -> dict[str, Path]:
    """Write `edits.npz`, `edits.png` and `edits.gif` into `folder`.

    Args:
        rows: `(label, latents (n, d))` per starting latent, latents in `strengths` order.
        strengths: the n strengths.
        seeds: the seeds of the rows, when they came from `--seeds`.
        analysis: where the direction came from (its region is drawn in the first column).
    """
    all_latents = torch.cat([latents for _, latents in rows]).detach().cpu()
    arrays: dict[str, np.ndarray] = {
        "latents": all_latents.double().numpy(),
        "strengths": np.tile(np.asarray(strengths, dtype=np.float64), len(rows)),
    }
    if seeds is not None:
        arrays["seeds"] = np.repeat(np.asarray(seeds, dtype=np.int64), len(strengths))
    save_npz_atomic(folder / "edits.npz", **arrays)

    images = render_latents(model, all_latents).reshape(
        len(rows), len(strengths), *model.resolution, 3
    )
    # An analysis made on another model of the same latent size has a mask of another size.
    mask = analysis.region_mask
    region = mask if mask.size and mask.shape == tuple(model.resolution) else None
    size = max(96, min(256, 4 * max(model.resolution)))
    cells = []
    for row_images in images:
        original = row_images[list(strengths).index(0.0)] if 0.0 in strengths else row_images[0]
        first = overlay_region(original, region) if region is not None else original
        cells.append([upscale(image, size) for image in [first, *row_images]])
    grid = image_grid(
        cells,
        row_labels=[label for label, _ in rows],
        col_labels=["region", *[strength_label(s) for s in strengths]],
    )
    atomic_write_bytes(folder / "edits.png", png_bytes(grid))

    order = np.argsort(np.asarray(strengths))
    columns = max(1, math.ceil(math.sqrt(len(rows))))
    frames = []
    for index in order:
        tiles = [upscale(images[r, index], size) for r in range(len(rows))]
        layout = [tiles[i : i + columns] for i in range(0, len(tiles), columns)]
        frames.append(np.asarray(image_grid(layout, pad=2)))
    atomic_write_bytes(folder / "edits.gif", gif_bytes(frames, duration_ms=120))
    return {name: folder / name for name in ("edits.npz", "edits.png", "edits.gif")}
