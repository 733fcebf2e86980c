"""Edit artifacts on disk: `edits.npz`, `edits.json`, a labelled PNG grid and an animated GIF.

Rows are starting latents (one seed, or many with `--seeds`), columns are the strengths or
changes asked for; a one-row grid labels each edit with the change it reached inside the
region. The GIF steps through the columns with every row in each frame. Files are written
into a staging folder by the caller, so a failure leaves nothing behind.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from lowrankgan.io.artifacts import atomic_write_bytes, atomic_write_text, save_npz_atomic
from lowrankgan.models.base import Model
from lowrankgan.pipeline.analysis import Analysis
from lowrankgan.pipeline.editing import Edits
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


def change_label(value: float) -> str:
    """A change inside the region, as the pictures show it: `change +0.100`."""
    return f"change {value:+.3f}" if value else "change 0"


def edit_label(asked: float, achieved: float, changes: bool, reached: bool = True) -> str:
    """A column label: what was asked and the change it reached (`+5 (change +0.082)`,
    `change +0.150`, or `change +0.200 (reached +0.131)` when it fell short)."""
    if math.isnan(achieved):
        return change_label(asked) if changes else strength_label(asked)
    if not changes:
        return f"{strength_label(asked)} ({change_label(achieved)})" if asked else "0"
    if reached:
        return change_label(asked)
    return f"{change_label(asked)} (reached {achieved:+.3f})"


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

    Rows are kept as `Edits` only (plus the pictures of the first `GRID_ROWS` rows), so a run
    over thousands of seeds needs the memory of one row of images: with more than `GRID_ROWS`
    rows, each row's picture is written at once to `seeds/seed<N>.png` (`row<i>.png` for a
    row without a seed). `close()` writes `edits.npz` (every row, in order), `edits.json`
    (what was asked, reached and missed), `edits.png` and `edits.gif` (the first
    `GRID_ROWS`).
    """

    def __init__(
        self,
        folder: Path,
        model: Model,
        asked: Sequence[float],
        analysis: Analysis,
        rows_expected: int,
        *,
        changes: bool = False,
        record: dict[str, Any] | None = None,
    ) -> None:
        self.folder, self.model, self.asked = folder, model, list(asked)
        self.changes, self.record = changes, dict(record or {})
        mask = analysis.region_mask
        # An analysis made on another model of the same latent size has a mask of another size.
        self.region = mask if mask.size and mask.shape == tuple(model.resolution) else None
        self.per_row_files = rows_expected > GRID_ROWS
        self.side = cell_side(model, len(self.asked) + 1)
        self.edits: list[Edits] = []
        self.seeds: list[int] = []
        self.labels: list[str] = []
        self.pictures: list[np.ndarray] = []

    def add(self, label: str, edits: Edits, seed: int | None = None) -> None:
        """One starting latent's edits, in the order of `asked`."""
        edits = Edits(
            latents=edits.latents.detach().cpu(),
            strengths=edits.strengths,
            achieved=edits.achieved,
            changes=edits.changes,
            reached=edits.reached,
        )
        self.edits.append(edits)
        self.labels.append(label)
        if seed is not None:
            self.seeds.append(seed)
        if len(self.pictures) >= GRID_ROWS and not self.per_row_files:
            return
        images = render_latents(self.model, edits.latents)
        if len(self.pictures) < GRID_ROWS:
            self.pictures.append(images)
        if self.per_row_files:
            grid = self._grid([images], [label], [edits])
            (self.folder / "seeds").mkdir(exist_ok=True)
            name = f"seed{seed}.png" if seed is not None else f"row{len(self.edits) - 1}.png"
            atomic_write_bytes(self.folder / "seeds" / name, png_bytes(grid))

    def _grid(
        self, rows: Sequence[np.ndarray], labels: Sequence[str], edits: Sequence[Edits]
    ) -> Image.Image:
        asked = self.asked
        cells = []
        for row_images in rows:
            original = row_images[asked.index(0.0)] if 0.0 in asked else row_images[0]
            first = overlay_region(original, self.region) if self.region is not None else original
            cells.append([fit(image, self.side) for image in [first, *row_images]])
        return image_grid(
            cells, row_labels=list(labels), col_labels=["region", *self._columns(edits)]
        )

    def _columns(self, edits: Sequence[Edits]) -> list[str]:
        """Column labels: with one row, what each edit reached; else what was asked."""
        if len(edits) != 1:
            if self.changes:
                return [change_label(value) for value in self.asked]
            return [strength_label(value) for value in self.asked]
        only = edits[0]
        assert only.reached is not None
        return [
            edit_label(asked, float(achieved), self.changes, bool(reached))
            for asked, achieved, reached in zip(
                self.asked, only.achieved, only.reached, strict=True
            )
        ]

    def summary(self) -> dict[str, Any]:
        """What `edits.json` holds: the request, and per row what was reached."""
        rows = []
        for index, edits in enumerate(self.edits):
            assert edits.reached is not None
            rows.append(
                {
                    "label": self.labels[index],
                    "seed": self.seeds[index] if self.seeds else None,
                    "strengths": edits.strengths.tolist(),
                    "achieved": [None if math.isnan(a) else a for a in edits.achieved.tolist()],
                    "reached": edits.reached.tolist(),
                }
            )
        missed = [
            {
                "row": index,
                "seed": row["seed"],
                "asked": self.asked[column],
                "achieved": row["achieved"][column],
                "strength": row["strengths"][column],
            }
            for index, row in enumerate(rows)
            for column, ok in enumerate(row["reached"])
            if not ok
        ]
        return {
            **self.record,
            "asked": "changes" if self.changes else "strengths",
            "values": self.asked,
            "rows": rows,
            "unreachable": missed,
        }

    def close(self) -> dict[str, Path]:
        """Write `edits.npz`, `edits.json`, `edits.png` and `edits.gif`; returns their paths."""
        count = len(self.edits)
        arrays: dict[str, np.ndarray] = {
            "latents": torch.cat([e.latents for e in self.edits]).double().numpy(),
            "strengths": np.concatenate([e.strengths for e in self.edits]),
            "achieved": np.concatenate([e.achieved for e in self.edits]),
            "reached": np.concatenate([e.reached for e in self.edits]),  # type: ignore[misc]
        }
        if self.changes:
            arrays["changes"] = np.tile(np.asarray(self.asked, dtype=np.float64), count)
        if self.seeds:
            arrays["seeds"] = np.repeat(np.asarray(self.seeds, dtype=np.int64), len(self.asked))
        save_npz_atomic(self.folder / "edits.npz", **arrays)
        text = json.dumps(self.summary(), indent=2, allow_nan=False) + "\n"
        atomic_write_text(self.folder / "edits.json", text)
        shown = self.labels[: len(self.pictures)]
        grid = self._grid(self.pictures, shown, self.edits[: len(self.pictures)])
        atomic_write_bytes(self.folder / "edits.png", png_bytes(grid))
        order = np.argsort(np.asarray(self.asked))
        columns = max(1, math.ceil(math.sqrt(len(self.pictures))))
        tile = max(16, min(self.side, MAX_GRID_SIDE // columns - 2))
        frames = []
        for index in order:
            tiles = [fit(images[index], tile) for images in self.pictures]
            layout = [tiles[i : i + columns] for i in range(0, len(tiles), columns)]
            frames.append(np.asarray(image_grid(layout, pad=2)))
        atomic_write_bytes(self.folder / "edits.gif", gif_bytes(frames, duration_ms=120))
        names = ("edits.npz", "edits.json", "edits.png", "edits.gif")
        return {name: self.folder / name for name in names}
