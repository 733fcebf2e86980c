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
from PIL import Image

from lowrankgan.io.artifacts import atomic_write_bytes, save_npz_atomic
from lowrankgan.models.base import Model
from lowrankgan.pipeline.analysis import Analysis
from lowrankgan.report.render import (
    gif_bytes,
    image_grid,
    overlay_region,
    png_bytes,
    to_uint8,
    upscale,
)


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


#: Rows drawn in `edits.png` / `edits.gif`; with more seeds each also gets `seeds/<seed>.png`.
GRID_ROWS = 16
#: Longest side of `edits.png` in pixels: cells shrink to fit many strengths.
MAX_GRID_SIDE = 8192


def cell_side(model: Model, columns: int) -> int:
    """Side of one grid cell: 4x the model's side within 96..256, shrunk so that `columns`
    cells fit in `MAX_GRID_SIDE`."""
    wanted = max(96, min(256, 4 * max(model.resolution)))
    return max(16, min(wanted, MAX_GRID_SIDE // max(1, columns) - 4))


def fit(image: np.ndarray, side: int) -> np.ndarray:
    """`(H, W, 3)` uint8 scaled so its longer side is `side`: crisp integer enlargement when
    it fits, area averaging when shrinking."""
    longest = max(image.shape[:2])
    if longest <= side:
        # The largest integer factor that keeps the longer side within `side`.
        return upscale(image, (side // longest) * min(image.shape[:2]))
    height, width = image.shape[:2]
    size = (max(1, width * side // longest), max(1, height * side // longest))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BOX))


class EditWriter:
    """Writes the outputs of an edit run into `folder` one starting latent at a time.

    Rows are kept as latents only (plus the pictures of the first `GRID_ROWS` rows), so a run
    over thousands of seeds needs the memory of one row of images: with more than `GRID_ROWS`
    rows, each row's picture is written at once to `seeds/seed<N>.png` (`row<i>.png` for a
    row without a seed). `close()` writes
    `edits.npz` (every row, in order), `edits.png` and `edits.gif` (the first `GRID_ROWS`).
    """

    def __init__(
        self,
        folder: Path,
        model: Model,
        strengths: Sequence[float],
        analysis: Analysis,
        rows_expected: int,
    ) -> None:
        self.folder, self.model, self.strengths = folder, model, list(strengths)
        mask = analysis.region_mask
        # An analysis made on another model of the same latent size has a mask of another size.
        self.region = mask if mask.size and mask.shape == tuple(model.resolution) else None
        self.per_row_files = rows_expected > GRID_ROWS
        self.side = cell_side(model, len(self.strengths) + 1)
        self.latents: list[torch.Tensor] = []
        self.seeds: list[int] = []
        self.labels: list[str] = []
        self.pictures: list[np.ndarray] = []

    def add(self, label: str, latents: torch.Tensor, seed: int | None = None) -> None:
        """One starting latent's edits: `latents (n, d)` in `strengths` order."""
        latents = latents.detach().cpu()
        self.latents.append(latents)
        self.labels.append(label)
        if seed is not None:
            self.seeds.append(seed)
        if len(self.pictures) >= GRID_ROWS and not self.per_row_files:
            return
        images = render_latents(self.model, latents)
        if len(self.pictures) < GRID_ROWS:
            self.pictures.append(images)
        if self.per_row_files:
            grid = self._grid([images], [label])
            (self.folder / "seeds").mkdir(exist_ok=True)
            name = f"seed{seed}.png" if seed is not None else f"row{len(self.latents) - 1}.png"
            atomic_write_bytes(self.folder / "seeds" / name, png_bytes(grid))

    def _grid(self, rows: Sequence[np.ndarray], labels: Sequence[str]) -> Image.Image:
        strengths = self.strengths
        cells = []
        for row_images in rows:
            original = row_images[strengths.index(0.0)] if 0.0 in strengths else row_images[0]
            first = overlay_region(original, self.region) if self.region is not None else original
            cells.append([fit(image, self.side) for image in [first, *row_images]])
        return image_grid(
            cells,
            row_labels=list(labels),
            col_labels=["region", *[strength_label(s) for s in strengths]],
        )

    def close(self) -> dict[str, Path]:
        """Write `edits.npz`, `edits.png` and `edits.gif`; returns their paths."""
        all_latents = torch.cat(self.latents)
        arrays: dict[str, np.ndarray] = {
            "latents": all_latents.double().numpy(),
            "strengths": np.tile(np.asarray(self.strengths, dtype=np.float64), len(self.latents)),
        }
        if self.seeds:
            arrays["seeds"] = np.repeat(np.asarray(self.seeds, dtype=np.int64), len(self.strengths))
        save_npz_atomic(self.folder / "edits.npz", **arrays)
        shown = self.labels[: len(self.pictures)]
        atomic_write_bytes(self.folder / "edits.png", png_bytes(self._grid(self.pictures, shown)))
        order = np.argsort(np.asarray(self.strengths))
        columns = max(1, math.ceil(math.sqrt(len(self.pictures))))
        tile = max(16, min(self.side, MAX_GRID_SIDE // columns - 2))
        frames = []
        for index in order:
            tiles = [fit(images[index], tile) for images in self.pictures]
            layout = [tiles[i : i + columns] for i in range(0, len(tiles), columns)]
            frames.append(np.asarray(image_grid(layout, pad=2)))
        atomic_write_bytes(self.folder / "edits.gif", gif_bytes(frames, duration_ms=120))
        return {name: self.folder / name for name in ("edits.npz", "edits.png", "edits.gif")}


def write_edit_outputs(
    folder: Path,
    model: Model,
    rows: Sequence[tuple[str, torch.Tensor]],
    strengths: Sequence[float],
    seeds: Sequence[int] | None,
    analysis: Analysis,
) -> dict[str, Path]:
    """Write `edits.npz`, `edits.png` and `edits.gif` into `folder` (see `EditWriter`).

    Args:
        rows: `(label, latents (n, d))` per starting latent, latents in `strengths` order.
        strengths: the n strengths.
        seeds: the seeds of the rows, when they came from `--seeds`.
        analysis: where the direction came from (its region is drawn in the first column).
    """
    writer = EditWriter(folder, model, strengths, analysis, len(rows))
    for index, (label, latents) in enumerate(rows):
        writer.add(label, latents, None if seeds is None else seeds[index])
    return writer.close()
