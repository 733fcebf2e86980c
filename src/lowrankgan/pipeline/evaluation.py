"""`lowrankgan evaluate`: how local each method's edits are, measured cell by cell, resumably.

A *cell* is one method, one region and one seed: the method finds its direction at that
seed's image (global methods pick, among their top k, the one that moves the region most),
the image is edited at every strength, and so are `transfer` other images (seeds from
`TRANSFER_SEED_BASE`) with the same direction. With `changes`, the image is also edited to
each change inside the region (the fair comparison: every method moves the region as much),
and the transfer images twice: at the strength that reached the change on the analysed image
(row kind `transfer`), and to the change itself (kind `transfer_change`). Every edit is
measured with `locality`; rows say their `target` (`strength` or `change`).

Methods: `lowrank`, `contrast`, `jacobian` (the region's own principal direction), `sefa`,
`ganspace`, and `multi` (`contrast`, or `lowrank` with `multi_method`, on Gram matrices
averaged over the image and `samples - 1` others, for directions that transfer). All
methods at one seed share one Jacobian field.

Each finished cell is written atomically to `DIR/cells/...json` at once, so a killed run
resumes where it stopped and never recomputes a finished cell; `results.csv` is assembled
from the cells in a fixed order, so a resumed run writes the same file as an uninterrupted
one. `DIR/evaluation.json` holds the settings the cells were made with; a run with other
settings into the same folder is refused (or `restart`ed).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import math
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from lowrankgan.core.baselines import GLOBAL_METHODS, global_directions
from lowrankgan.core.directions import LocalDirections, directions_from_grams
from lowrankgan.core.metrics import locality
from lowrankgan.errors import UserInputError
from lowrankgan.io.artifacts import atomic_write_text, save_npz_atomic
from lowrankgan.limits import check_at_most
from lowrankgan.models.base import Model
from lowrankgan.pipeline.analysis import multi_latents, region_grams, summed_grams
from lowrankgan.pipeline.editing import edit, one_shot_edits
from lowrankgan.pipeline.edits import (
    ChangeMeter,
    Edits,
    check_changes,
    check_max_strength,
    default_max_strength,
    reach_changes,
)
from lowrankgan.pipeline.path import DEFAULT_STEP, check_path_work, follow_path
from lowrankgan.pipeline.settings import AnalysisSettings, resolved_settings
from lowrankgan.regions import keep_mask, region_mask
from lowrankgan.version import __version__

EVAL_METHODS = ("lowrank", "contrast", "jacobian", "sefa", "ganspace", "multi")
#: The images a direction is transferred to are seeds TRANSFER_SEED_BASE, +1, ...: the same
#: for every cell (paired comparisons) and apart from the seeds under evaluation.
TRANSFER_SEED_BASE = 2_000_000
DEFAULT_TRANSFER = 5
DEFAULT_SAMPLES = 8
COLUMNS = (
    "method",
    "region",
    "seed",
    "kind",
    "image",
    "target",
    "change",
    "reached",
    "strength",
    "rms_inside",
    "rms_outside",
    "ratio",
    "energy_inside",
    "mse_kept",
    "psnr_kept",
    "candidate",
)
METRICS = ("rms_inside", "rms_outside", "ratio", "energy_inside", "mse_kept", "psnr_kept")


@dataclass(frozen=True)
class EvaluationConfig:
    """What to evaluate. `settings` are the analysis settings every method shares (ranks,
    RPCA, analysis size ...); `path` switches edits from one-shot to path-following."""

    regions: tuple[str, ...]
    methods: tuple[str, ...]
    seeds: tuple[int, ...]
    strengths: tuple[float, ...]
    transfer: int = DEFAULT_TRANSFER
    samples: int = DEFAULT_SAMPLES
    multi_method: str = "contrast"
    keep: str | None = None
    path: bool = False
    step: float = DEFAULT_STEP
    settings: AnalysisSettings = field(default_factory=AnalysisSettings)
    changes: tuple[float, ...] = ()
    max_strength: float | None = None

    def __post_init__(self) -> None:
        unknown = [m for m in self.methods if m not in EVAL_METHODS]
        if unknown:
            raise UserInputError(
                f"unknown method {unknown[0]!r}; choose from {', '.join(EVAL_METHODS)}"
            )
        for name in ("regions", "methods", "seeds", "strengths"):
            values = getattr(self, name)
            if not values:
                raise UserInputError(f"no {name} given")
            if len(set(values)) != len(values):
                raise UserInputError(f"{name} are repeated: {', '.join(map(str, values))}")
        if any(not math.isfinite(s) or s == 0 for s in self.strengths):
            raise UserInputError("strengths must be finite and non-zero")
        if self.changes:
            check_changes(self.changes)
            if any(c == 0 for c in self.changes) or len(set(self.changes)) != len(self.changes):
                raise UserInputError("changes must be non-zero and not repeated")
            check_at_most(len(self.changes), "strengths", "the number of changes")
        check_max_strength(self.max_strength)
        if isinstance(self.transfer, bool) or not 0 <= self.transfer <= 1000:
            raise UserInputError(f"transfer must be an integer in 0..1000, got {self.transfer}")
        if isinstance(self.samples, bool) or not 2 <= self.samples <= 1000:
            raise UserInputError(f"samples must be an integer in 2..1000, got {self.samples}")
        if not (math.isfinite(self.step) and self.step > 0):
            raise UserInputError(f"step must be a positive number, got {self.step}")
        check_at_most(len(self.strengths), "strengths", "the number of strengths")
        check_at_most(len(self.seeds), "seeds", "the number of seeds")
        if self.path:
            edits = len(self.seeds) * len(self.regions) * len(self.methods) * (1 + self.transfer)
            check_path_work(self.strengths, self.step, images=edits)
        if self.multi_method not in ("lowrank", "contrast"):
            raise UserInputError(f"multi extends lowrank or contrast, not {self.multi_method!r}")

    def fingerprint(self, model: Model) -> dict[str, Any]:
        """Everything a cell's numbers depend on besides its method, region and seed."""
        settings = {
            k: list(v) if isinstance(v, tuple) else v for k, v in self.settings.__dict__.items()
        }
        return {
            "model": model.name,
            "model_source": model.source,
            "space": model.space,
            "model_details": json.loads(json.dumps(dict(model.details), default=str)),
            "class": None
            if model.condition is None or model.class_names is None
            else model.class_names[model.condition],
            "strengths": list(self.strengths),
            "transfer": self.transfer,
            "samples": self.samples,
            "multi_method": self.multi_method,
            "keep": self.keep,
            "path": self.path,
            "step": self.step if self.path else None,
            "settings": settings,
            "changes": list(self.changes),
            "max_strength": self.max_strength,
        }


@dataclass
class Cell:
    """One finished cell: the direction used and its measured rows (dicts of COLUMNS)."""

    method: str
    region: str
    seed: int
    direction: list[float]
    candidate: int | None
    rows: list[dict[str, Any]]
    self_latents: list[list[float]]
    ranks: dict[str, int]
    #: the analysed image's edits at each change (empty without changes)
    change_latents: list[list[float]] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, allow_nan=True) + "\n"


def _slug(text: str) -> str:
    """A file-name-safe form of a region spec, unique thanks to a short hash."""
    cleaned = re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")[:40] or "region"
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    return f"{cleaned}-{digest}"


def cell_path(out: Path, method: str, region: str, seed: int) -> Path:
    return out / "cells" / method / _slug(region) / f"seed{seed}.json"


def load_cell(path: Path) -> Cell | None:
    """A finished cell, or None when absent or unreadable (then it is recomputed)."""
    try:
        return Cell(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _format(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return format(value, ".7g")
    return str(value)


def csv_text(rows: Sequence[dict[str, Any]]) -> str:
    """`rows` as CSV with the columns `COLUMNS`, numbers to 7 significant digits."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow([_format(row.get(name)) for name in COLUMNS])
    return buffer.getvalue()


def read_results(path: Path) -> list[dict[str, Any]]:
    """Rows of a `results.csv`, numbers parsed."""
    rows = []
    with open(path, newline="") as handle:
        for raw in csv.DictReader(handle):
            row: dict[str, Any] = dict(raw)
            row["seed"], row["image"] = int(raw["seed"]), int(raw["image"])
            row["strength"] = float(raw["strength"])
            row["change"] = float(raw["change"]) if raw["change"] else None
            row["reached"] = raw["reached"] == "True"
            for name in METRICS:
                row[name] = float(raw[name])
            row["candidate"] = int(raw["candidate"]) if raw["candidate"] else None
            rows.append(row)
    return rows


class _Evaluator:
    """The state of one run: the model, the masks, and what is computed once and shared
    (global candidates, the Gram matrices `multi` averages over)."""

    def __init__(self, model: Model, config: EvaluationConfig, progress: bool) -> None:
        self.model = model
        self.config = config
        self.progress = progress
        self.settings = resolved_settings(model, config.settings)
        self.region_masks = {r: region_mask(model, r) for r in config.regions}
        self.keep_masks = {
            r: keep_mask(model, self.region_masks[r], config.keep) for r in config.regions
        }
        for region, kept in self.keep_masks.items():
            if not kept.any():
                raise UserInputError(f"region {region!r} leaves nothing to keep still")
        self.masks = torch.stack(
            [m for r in config.regions for m in (self.region_masks[r], self.keep_masks[r])]
        )
        self.transfer_seeds = [TRANSFER_SEED_BASE + i for i in range(config.transfer)]
        self.max_strength = config.max_strength or default_max_strength(model.latent_dim)
        if config.path and config.changes:
            # Bounded by the search for each change, on each image and each transfer image.
            edits = len(config.seeds) * len(config.regions) * len(config.methods)
            bound = self.max_strength
            check_path_work([bound, -bound], config.step, images=edits * (1 + config.transfer))
        self._candidates: dict[str, torch.Tensor] = {}
        self._pool: torch.Tensor | None = None
        self._transfer: list[tuple[int, torch.Tensor, torch.Tensor]] | None = None

    @property
    def computed_candidates(self) -> dict[str, torch.Tensor]:
        """The global methods' directions computed so far, by method."""
        return dict(self._candidates)

    def candidates(self, method: str) -> torch.Tensor:
        if method not in self._candidates:
            s = self.settings
            self._candidates[method] = global_directions(
                self.model, method, s.top_k, s.pca_samples, s.pca_layer, progress=self.progress
            )
        return self._candidates[method]

    def pool_grams(self) -> torch.Tensor:
        """Sum of the Gram matrices `(2R, d, d)` over the other images `multi` uses."""
        if self._pool is None:
            others = multi_latents(self.model, self.config.samples)
            bar = tqdm(others, desc="multi: other images", leave=False, disable=not self.progress)
            self._pool = summed_grams(self.model, bar, self.masks, self.settings)
        return self._pool

    def grams_at(self, latent: torch.Tensor) -> torch.Tensor:
        return region_grams(self.model, latent, self.masks, self.settings).cpu()

    def find(self, method: str, index: int, grams: torch.Tensor) -> LocalDirections:
        region_gram, keep_gram = grams[2 * index], grams[2 * index + 1]
        if method == "multi":
            pool = self.pool_grams()
            count = self.config.samples
            region_gram = (region_gram + pool[2 * index]) / count
            keep_gram = (keep_gram + pool[2 * index + 1]) / count
        base = self.config.multi_method if method == "multi" else method
        settings = AnalysisSettings(**{**self.settings.__dict__, "method": base})
        candidates = self.candidates(method) if method in GLOBAL_METHODS else None
        return directions_from_grams(
            region_gram, keep_gram, settings, candidates, device=self.model.device
        )

    def edits(
        self,
        latent: torch.Tensor,
        direction: torch.Tensor,
        region: str,
        keep_rank: int | None,
        changes: Sequence[float] | None = None,
        strengths: Sequence[float] | None = None,
    ) -> Edits:
        """Edits of `latent` to `changes` inside the region, or at `strengths` (default the
        configured ones). Path-following needs the kept region's rank at `latent`:
        `keep_rank` when the analysis found it (the analysed image), or None to compute it
        there (transfer images)."""
        if changes is None and strengths is None:
            strengths = list(self.config.strengths)
        edited, kept = self.region_masks[region], self.keep_masks[region]
        if not self.config.path:
            # At strengths the cell measures its images itself, in shared batches.
            meter = None if changes is None else ChangeMeter(self.model, latent, edited)
            values = strengths if changes is None else changes
            return one_shot_edits(
                latent, direction, values, changes is not None, meter, self.max_strength
            )
        common = {"changes": changes, "step": self.config.step, "max_strength": self.max_strength}
        if keep_rank is None:
            return edit(
                self.model,
                latent,
                direction,
                strengths,
                keep=kept,
                region=edited,
                settings=self.settings,
                **common,
            )
        return follow_path(
            self.model,
            latent,
            direction,
            strengths,
            kept,
            keep_rank,
            self.settings,
            region=edited,
            **common,
        )

    def images_of(self, edits: Sequence[Edits], batch: int = 64) -> list[torch.Tensor]:
        """The images of every edit's latents, made in shared batches: one `(n, C, H, W)`
        per `Edits`."""
        latents = torch.cat([e.latents for e in edits]).to(self.model.device, self.model.dtype)
        with torch.no_grad():
            images = [
                self.model.synthesize(latents[i : i + batch]) for i in range(0, len(latents), batch)
            ]
        return list(torch.cat(images).split([len(e.latents) for e in edits]))

    def transfer_to_changes(
        self, direction: torch.Tensor, region: str, changes: Sequence[float]
    ) -> list[Edits]:
        """Every transfer image edited to `changes` (one-shot: all measured in shared
        batches)."""
        images = self.transfer_images()
        if self.config.path:
            return [self.edits(latent, direction, region, None, changes) for _, latent, _ in images]
        mask = self.region_masks[region]
        lines = [
            (latent, direction, ChangeMeter(self.model, latent, mask)) for _, latent, _ in images
        ]
        return reach_changes(lines, changes, self.max_strength)

    def measure(
        self,
        cell: tuple[str, str, int],
        image: int,
        kind: str,
        original: torch.Tensor,
        edits: Edits,
        candidate: int | None,
        changes: Sequence[float] | None = None,
        strengths: Sequence[float] | None = None,
        images: torch.Tensor | None = None,
    ) -> list[dict[str, Any]]:
        """One row per edit of the image `original` `(C, H, W)` (seed `image`), measured in
        the region of `cell = (method, region, seed)`. `changes`: the changes the edits were
        made for (rows of target `change`); `strengths`: the strengths to record (default
        those the edits travelled); `images`: the edits' images when already made."""
        method, region, seed = cell
        if images is None:
            images = self.images_of([edits])[0]
        strengths = edits.strengths if strengths is None else strengths
        targets = [None] * len(images) if changes is None else list(changes)
        reached = edits.reached if changes is not None and edits.changes is not None else None
        rows = []
        for index, after in enumerate(images):
            loc = locality(original, after, self.region_masks[region], self.keep_masks[region])
            rows.append(
                {
                    "method": method,
                    "region": region,
                    "seed": seed,
                    "kind": kind,
                    "image": image,
                    "target": "strength" if changes is None else "change",
                    "change": targets[index],
                    "reached": True if reached is None else bool(reached[index]),
                    "strength": float(strengths[index]),
                    **{name: float(getattr(loc, name)) for name in METRICS},
                    "candidate": candidate,
                }
            )
        return rows

    def transfer_images(self) -> list[tuple[int, torch.Tensor, torch.Tensor]]:
        """`(seed, latent (d,), image (C, H, W))` of every transfer image, made once."""
        if self._transfer is None:
            self._transfer = [self.image_of(seed) for seed in self.transfer_seeds]
        return self._transfer

    def image_of(self, seed: int) -> tuple[int, torch.Tensor, torch.Tensor]:
        latent = self.model.sample_latent(seed)
        with torch.no_grad():
            return seed, latent, self.model.synthesize(latent)[0]

    def cell(
        self,
        method: str,
        region: str,
        start: tuple[int, torch.Tensor, torch.Tensor],
        grams: torch.Tensor,
    ) -> Cell:
        """Find the direction at the image `start = (seed, latent, image)`, whose Gram matrices
        of every region and kept region are `grams` `(2R, d, d)`, then edit it and the
        transfer images."""
        seed, latent, original = start
        index = self.config.regions.index(region)
        found = self.find(method, index, grams)
        model = self.model
        direction = found.directions[:, 0].to(model.device, model.dtype)
        candidate = None
        if found.candidate_order is not None:
            candidate = int(found.candidate_order[0])
        keep_rank = found.keep_rank
        key = (method, region, seed)
        edited = self.edits(latent, direction, region, keep_rank)
        # (image seed, kind, original image, edits, changes asked, strengths recorded)
        jobs: list[tuple] = [(seed, "self", original, edited, None, None)]
        transfer = self.transfer_images()
        for other, other_latent, other_image in transfer:
            moved = self.edits(other_latent, direction, region, None)
            jobs.append((other, "transfer", other_image, moved, None, None))
        changed: Edits | None = None
        changes = list(self.config.changes)
        if changes:
            changed = self.edits(latent, direction, region, keep_rank, changes)
            jobs.append((seed, "self", original, changed, changes, None))
            at = [float(s) for s in changed.strengths]
            reached = self.transfer_to_changes(direction, region, changes)
            for (other, other_latent, other_image), own in zip(transfer, reached, strict=True):
                # The strength that reached each change on the analysed image ...
                moved = self.edits(other_latent, direction, region, None, strengths=at)
                jobs.append((other, "transfer", other_image, moved, changes, at))
                # ... and the change itself, reached on the other image.
                jobs.append((other, "transfer_change", other_image, own, changes, None))
        images = self.images_of([job[3] for job in jobs])
        rows = []
        for (image, kind, before, edits, asked, strengths), after in zip(jobs, images, strict=True):
            rows += self.measure(
                key, image, kind, before, edits, candidate, asked, strengths, after
            )
        return Cell(
            method=method,
            region=region,
            seed=seed,
            direction=found.directions[:, 0].tolist(),
            candidate=candidate,
            rows=rows,
            self_latents=edited.latents.detach().double().cpu().tolist(),
            ranks={"region": found.rank, "keep": found.keep_rank},
            change_latents=[]
            if changed is None
            else changed.latents.detach().double().cpu().tolist(),
        )


@dataclass
class EvaluationResult:
    """Rows of every cell in canonical order, and the cells themselves."""

    rows: list[dict[str, Any]]
    cells: dict[tuple[str, str, int], Cell]
    computed: int
    reused: int


#: Written into `OUT/cells` when we create it: what marks the folder as ours to rewrite.
CELLS_MARKER = ".lowrankgan-cells"
#: Every file we write below `OUT/cells`: the marker, cells, and atomic-write temp files.
_OUR_CELL_FILE = re.compile(
    r"(\.lowrankgan-cells|[a-z]+/[A-Za-z0-9_]+-[0-9a-f]{8}/(seed\d+\.json|\.seed\d+\.json\.\w+\.tmp))"
)


def _cells_folder(out: Path, recorded: bool) -> Path | None:
    """`out/cells` if it exists and holds only what we write there (None if absent).

    Refuses a symlink or a folder holding anything else, so that no later step can delete or
    overwrite a file the tool did not write. `recorded`: `out/evaluation.json` is ours, which
    vouches for a `cells/` written before the marker existed.
    """
    cells = out / "cells"
    if not os.path.lexists(cells):
        return None
    if cells.is_symlink() or not cells.is_dir():
        raise UserInputError(
            f"{cells} is not a folder of ours (a link or a file); use another --out"
        )
    if not recorded and not (cells / CELLS_MARKER).is_file():
        raise UserInputError(
            f"{cells} was not written by lowrankgan evaluate (no {CELLS_MARKER}); use another --out"
        )
    for path in cells.rglob("*"):
        relative = path.relative_to(cells).as_posix()
        if path.is_symlink() or (not path.is_dir() and not _OUR_CELL_FILE.fullmatch(relative)):
            raise UserInputError(
                f"{cells} holds {relative!r}, which lowrankgan did not write; use another --out"
            )
    return cells


def _remove_cells(cells: Path) -> None:
    """Delete our files below `cells` (checked by `_cells_folder`), then its empty folders."""
    for path in sorted(cells.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        relative = path.relative_to(cells).as_posix()
        if path.is_dir() and not path.is_symlink():
            with contextlib.suppress(OSError):
                path.rmdir()  # only while empty: whatever else appeared meanwhile stays
        elif _OUR_CELL_FILE.fullmatch(relative) and relative != CELLS_MARKER:
            path.unlink(missing_ok=True)


def _stored_fingerprint(record: Path) -> dict[str, Any] | None:
    """The fingerprint in our `evaluation.json`, None if absent or not one of ours."""
    if record.is_symlink() or not record.is_file():
        return None
    try:
        stored = json.loads(record.read_text(encoding="utf-8")).get("fingerprint")
    except (OSError, ValueError, AttributeError, RecursionError):
        return None
    return stored if isinstance(stored, dict) else None


def _stale_cells(out: Path, fingerprint: dict[str, Any], restart: bool) -> bool:
    """Whether `out/cells` must be discarded before this run (raises when it holds cells
    made with other settings or without a record of them, and `restart` is not given)."""
    record = out / "evaluation.json"
    stored = _stored_fingerprint(record)
    cells = _cells_folder(out, recorded=stored is not None)
    if stored is None:
        if cells is None:
            return False
        if not restart:
            # Cells without their settings cannot be trusted, nor silently thrown away.
            raise UserInputError(
                f"{cells} holds cells but {record.name} is missing, so their settings are "
                "unknown; use another --out, or --restart to discard them"
            )
        return True
    if stored == fingerprint:
        return False
    if not restart:
        differs = sorted(
            str(k) for k in set(fingerprint) | set(stored)
            if stored.get(k) != fingerprint.get(k)
        )  # fmt: skip
        raise UserInputError(
            f"{out} holds an evaluation made with other settings ({', '.join(differs)}); "
            "use another --out, or --restart to discard it"
        )
    return cells is not None


def _write_record(out: Path, config: EvaluationConfig, fingerprint: dict, command: str) -> None:
    record = {
        "version": __version__,
        "command": command,
        "fingerprint": fingerprint,
        "regions": list(config.regions),
        "methods": list(config.methods),
        "seeds": list(config.seeds),
        "transfer_seeds": [TRANSFER_SEED_BASE + i for i in range(config.transfer)],
    }
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "evaluation.json", json.dumps(record, indent=2) + "\n")


def run_cells(
    model: Model,
    config: EvaluationConfig,
    out: Path,
    *,
    restart: bool = False,
    progress: bool = True,
    command: str = "",
    on_cell: Callable[[Cell], None] | None = None,
) -> EvaluationResult:
    """Compute every missing cell into `out/cells` and return all rows in canonical order
    (methods, regions, seeds as configured; self before transfer; strengths as given)."""
    out = Path(out)
    fingerprint = config.fingerprint(model)
    discard = _stale_cells(out, fingerprint, restart)
    evaluator = _Evaluator(model, config, progress)
    for method in config.methods:
        if method in GLOBAL_METHODS:
            evaluator.candidates(method)  # fails on a model they do not apply to, up front
    if discard:
        _remove_cells(out / "cells")
    _write_record(out, config, fingerprint, command)
    (out / "cells").mkdir(exist_ok=True)
    atomic_write_text(out / "cells" / CELLS_MARKER, "cells of lowrankgan evaluate\n")
    cells: dict[tuple[str, str, int], Cell] = {}
    missing: dict[int, list[tuple[str, str]]] = {}
    for seed in config.seeds:
        for region in config.regions:
            for method in config.methods:
                found = load_cell(cell_path(out, method, region, seed))
                if found is not None and _matches(found, config, method, region, seed):
                    cells[(method, region, seed)] = found
                else:
                    missing.setdefault(seed, []).append((method, region))
    total = len(config.seeds) * len(config.regions) * len(config.methods)
    reused = len(cells)
    if reused and progress:
        tqdm.write(f"resuming: {reused} of {total} cells already done", file=sys.stderr)
    bar = tqdm(total=total, initial=reused, desc="Evaluate", unit="cell", disable=not progress)
    computed = 0
    for seed, todo in missing.items():
        start = evaluator.image_of(seed)
        grams = evaluator.grams_at(start[1])  # one Jacobian field for every cell of this seed
        for method, region in todo:
            cell = evaluator.cell(method, region, start, grams)
            path = cell_path(out, method, region, seed)
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, cell.to_json())
            cells[(method, region, seed)] = cell
            computed += 1
            bar.update(1)
            if on_cell is not None:
                on_cell(cell)
    bar.close()
    for method, directions in evaluator.computed_candidates.items():
        save_npz_atomic(out / f"{method}_directions.npz", directions=directions.numpy())
    rows = [
        row
        for method in config.methods
        for region in config.regions
        for seed in config.seeds
        for row in cells[(method, region, seed)].rows
    ]
    return EvaluationResult(rows=rows, cells=cells, computed=computed, reused=reused)


def _matches(cell: Cell, config: EvaluationConfig, method: str, region: str, seed: int) -> bool:
    """Whether a stored cell is complete for this configuration."""
    count, changes = len(config.strengths), len(config.changes)
    expected = count * (1 + config.transfer) + changes * (1 + 2 * config.transfer)
    asked = [
        row["strength"] if row.get("target", "strength") == "strength" else row["change"]
        for row in cell.rows
        if row["kind"] == "self"
    ]
    return (
        (cell.method, cell.region, cell.seed) == (method, region, seed)
        and len(cell.rows) == expected
        and asked == [float(s) for s in config.strengths] + [float(c) for c in config.changes]
    )


def parse_regions(text: str) -> tuple[str, ...]:
    """`"eyes,mouth"` -> region specs. Boxes hold commas, so `box:` runs to the next
    four numbers."""
    specs: list[str] = []
    parts = [p.strip() for p in text.split(",")]
    i = 0
    while i < len(parts):
        part = parts[i]
        if part.startswith("box:"):
            specs.append(",".join(parts[i : i + 4]))
            i += 4
            continue
        if part:
            specs.append(part)
        i += 1
    if not specs:
        raise UserInputError("no regions given")
    return tuple(specs)


__all__ = [
    "COLUMNS",
    "EVAL_METHODS",
    "Cell",
    "EvaluationConfig",
    "EvaluationResult",
    "csv_text",
    "parse_regions",
    "read_results",
    "run_cells",
]
