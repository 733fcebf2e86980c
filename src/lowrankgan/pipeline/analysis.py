"""One analysis: from a model, a latent and two regions to local-edit directions.

The pipeline of the paper, end to end: masks -> one Jacobian field -> the Gram matrices of
the region and of the kept region (normalised per value) -> robust PCA of each -> the
region's principal space and the kept region's null space -> directions (`lowrank`, the
paper's projection, or `contrast`, our generalised eigenproblem). `Analysis` holds the result
with everything needed to reproduce or continue it (masks, ranks, solver statistics, timings)
and saves to `analysis.npz` + `analysis.json`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lowrankgan.core.baselines import GLOBAL_METHODS, global_directions
from lowrankgan.core.directions import directions_from_grams, kept_null_space, rule_name
from lowrankgan.core.gram import mask_weights, per_value_grams, region_values, sketch_gram
from lowrankgan.core.jacobian import jacobian_field
from lowrankgan.core.precision import precision_record
from lowrankgan.core.subspace import check_rank
from lowrankgan.errors import UserInputError, one_line
from lowrankgan.io.analysis_files import (
    ANALYSIS_ARRAYS,
    read_analysis_files,
    write_analysis_files,
)
from lowrankgan.limits import limit
from lowrankgan.models.base import Model
from lowrankgan.pipeline.settings import (
    MULTI_SEED_BASE,
    AnalysisSettings,
    gram_sketch,
    resolved_settings,
)
from lowrankgan.regions import RegionSpec, describe, keep_mask, region_mask
from lowrankgan.version import __version__


@dataclass
class Analysis:
    """Result of `analyze`. Arrays are float64 numpy on the CPU.

    latent (d,), region_basis (d, r), region_singular_values (r,), null_basis (d, n),
    directions (d, k) unit columns strongest first, direction_strengths (k,),
    region_mask / keep_mask (H, W) bool.
    """

    latent: np.ndarray
    region_basis: np.ndarray
    region_singular_values: np.ndarray
    null_basis: np.ndarray
    directions: np.ndarray
    direction_strengths: np.ndarray
    region_mask: np.ndarray
    keep_mask: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def keep_rank(self) -> int:
        return int(self.info["ranks"]["keep"])

    def adopted_by(self, model: Model) -> Analysis:
        """This analysis recorded as made on `model`, for a model that shares its latent space
        (one fine-tuned from it): masks of another resolution are dropped, so
        `check_analysis_fits` accepts it and only its directions and latent are used."""
        info = {**self.info, "model": model.name}
        info.pop("resolution", None)
        if self.region_mask.shape == tuple(model.resolution):
            return replace(self, info=info)
        empty = np.zeros((0, 0), dtype=bool)
        return replace(self, info=info, region_mask=empty, keep_mask=empty)

    def direction(self, index: int = 0) -> np.ndarray:
        """Direction `index` (0 = strongest) as `(d,)`."""
        count = self.directions.shape[1]
        if not 0 <= index < count:
            raise UserInputError(f"direction index {index} is out of range 0..{count - 1}")
        return self.directions[:, index]

    def save(self, out_dir: Path) -> tuple[Path, Path]:
        """Write `analysis.npz` and `analysis.json` into `out_dir` (atomically)."""
        arrays = {name: getattr(self, name) for name in ANALYSIS_ARRAYS}
        return write_analysis_files(Path(out_dir), arrays, self.info)

    @classmethod
    def load(cls, path: Path) -> Analysis:
        """Read an `analysis.npz` (and its `analysis.json` beside it, if present), every array
        and field checked: a hostile or damaged file is a one-line `UserInputError`."""
        npz, arrays, info = read_analysis_files(Path(path))
        _check_settings(info, npz.with_suffix(".json"))
        return cls(**arrays, info=info)


def _check_settings(info: dict[str, Any], path: Path) -> None:
    """The recorded settings pass the checks of settings given by hand."""
    settings = info.get("settings")
    if settings is None:
        return
    known = {k: v for k, v in settings.items() if k in AnalysisSettings.__dataclass_fields__}
    if isinstance(known.get("size"), list):
        known["size"] = tuple(known["size"])
    try:
        AnalysisSettings(**known)
    except (TypeError, ValueError) as exc:
        raise UserInputError(f"{path}: bad settings ({one_line(exc)})") from None
    size = known.get("size")
    if size is not None and max(size) > limit("resolution"):
        raise UserInputError(f"{path}: settings.size {list(size)} is too large")


def check_analysis_fits(analysis: Analysis, model: Model, source: str | Path) -> None:
    """Refuse an analysis made on another model: the recorded model, space, latent size and
    resolution must match `model` (a W analysis on a W+ model of the same network is lifted
    by the caller, so its space may differ)."""
    info = analysis.info
    recorded = info.get("model")
    if recorded is not None and not _same_model(recorded, model.name):
        raise UserInputError(
            f"{source} was made on model {recorded!r}, not {model.name!r}; analyse this model"
        )
    resolution = info.get("resolution")
    if resolution is not None and tuple(resolution) != tuple(model.resolution):
        raise UserInputError(
            f"{source} is for {resolution[1]}x{resolution[0]} images, the model outputs "
            f"{model.resolution[1]}x{model.resolution[0]}"
        )
    mask = analysis.keep_mask if analysis.keep_mask.size else analysis.region_mask
    if mask.size and tuple(mask.shape) != tuple(model.resolution):
        raise UserInputError(f"{source}: its masks do not match the model's resolution")


def _same_model(recorded: str, name: str) -> bool:
    """Names match; for checkpoints loaded from paths, the file names match (files move)."""
    if recorded == name:
        return True
    looks_like_path = ("/" in recorded or "\\" in recorded) and ("/" in name or "\\" in name)
    return looks_like_path and Path(recorded).name == Path(name).name


def analysis_field(
    model: Model, latent: torch.Tensor, settings: AnalysisSettings, progress: bool = False
) -> torch.Tensor:
    """The Jacobian field `(d, C', h, w)` of `latent` in the analysis view of `settings` (its
    size, channel fusion and memory budget): what `analyze(..., field=...)`, `region_grams`
    and path-following reuse for every region of the image."""
    settings = resolved_settings(model, settings)
    return jacobian_field(
        model,
        latent,
        size=settings.size,
        fuse_channels=settings.fuse_channels,
        chunk_size=settings.chunk_size,
        memory_budget=settings.memory_budget,
        progress=progress,
    )


def region_grams(
    model: Model,
    latent: torch.Tensor,
    masks: torch.Tensor,
    settings: AnalysisSettings,
    progress: bool = False,
    field: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-value Gram matrices `(m, d, d)` float64 of `(m, H, W)` masks at `latent`, from
    `field` when given (the `analysis_field` of `latent`), else from a new field or, when
    `gram_sketch` says so, a sketch. A sketch with the region test takes the masks as
    (region, kept region) pairs (a last one alone) and samples each pair's region."""
    settings = resolved_settings(model, settings)
    if field is not None:
        check_field(model, field, settings)
        return per_value_grams(field, masks)
    sketch = gram_sketch(model, settings)
    if sketch is None:
        return per_value_grams(analysis_field(model, latent, settings, progress), masks)
    by_region = settings.sketch_test == "region"
    groups = [masks[i : i + 2] for i in range(0, len(masks), 2)] if by_region else [masks]
    grams = torch.cat(
        [
            sketch_gram(
                model,
                latent,
                group,
                sketch,
                size=settings.size,
                fuse_channels=settings.fuse_channels,
                seed=settings.sketch_seed,
                range_mask=0 if by_region else None,
                chunk_size=settings.chunk_size,
                memory_budget=settings.memory_budget,
                progress=progress,
            )
            for group in groups
        ]
    )
    weights = mask_weights(masks, tuple(settings.size or model.resolution))
    channels = 1 if settings.fuse_channels else model.channels
    return grams / region_values(weights, channels, grams.device).view(-1, 1, 1)


def check_field(model: Model, field: torch.Tensor, settings: AnalysisSettings) -> None:
    """Refuse a precomputed field that is not of this model's analysis view."""
    size = tuple(settings.size or model.resolution)
    channels = 1 if settings.fuse_channels else model.channels
    expected = (model.latent_dim, channels, *size)
    if tuple(field.shape) != expected:
        raise UserInputError(
            f"the Jacobian field has shape {tuple(field.shape)}; this model and settings need "
            f"{expected}"
        )
    if settings.sketch is not None:
        raise UserInputError("a precomputed Jacobian field and sketch mode exclude each other")


def analyze(
    model: Model,
    latent: torch.Tensor,
    region: RegionSpec,
    keep: RegionSpec | None = None,
    settings: AnalysisSettings | None = None,
    *,
    progress: bool = False,
    field: torch.Tensor | None = None,
    grams: torch.Tensor | None = None,
    **overrides: Any,
) -> Analysis:
    """Find local-edit directions for `region` of the image of `latent`.

    Args:
        model: the generator.
        latent: `(d,)` point of the model's analysis space.
        region: the region to edit (preset name, `box:...`, PNG path or `(H, W)` bool mask).
        keep: the region to hold still; default everything outside `region`.
        settings: an `AnalysisSettings`; keyword `overrides` replace its fields
            (e.g. `method="contrast", rank=5`).
        progress: show a progress bar for the Jacobian.
        field: the `analysis_field` of `latent`, reused instead of recomputed (one field
            serves every region of an image; with `samples > 1` the other images' fields
            are still computed).
        grams: `(2, d, d)` float64 per-value Grams of the region and the kept region, used
            as given (e.g. summed over many images elsewhere); no Jacobian is computed.
    """
    settings = settings or AnalysisSettings()
    if overrides:
        settings = AnalysisSettings(**{**settings.__dict__, **overrides})
    settings = resolved_settings(model, settings)
    dim = model.latent_dim
    latent = checked_latent(model, latent)
    _check_ranks(settings, dim)
    if field is not None and grams is not None:
        raise UserInputError("give a precomputed Jacobian field or Grams, not both")

    timings: dict[str, float] = {}
    start = time.perf_counter()
    region_m = region_mask(model, region)
    keep_m = keep_mask(model, region_m, keep)
    given_grams = grams is not None
    if grams is None:
        masks = torch.stack([region_m, keep_m])
        grams = region_grams(model, latent, masks, settings, progress, field).cpu()
        for other in multi_latents(model, settings.samples):
            grams = grams + region_grams(model, other, masks, settings, progress).cpu()
        grams = grams / settings.samples
    elif tuple(grams.shape) != (2, dim, dim):
        raise UserInputError(f"grams must have shape (2, {dim}, {dim}), got {tuple(grams.shape)}")
    timings["jacobian_gram"] = time.perf_counter() - start

    candidates = None
    if settings.method in GLOBAL_METHODS:
        start = time.perf_counter()
        candidates = global_directions(
            model,
            settings.method,
            settings.top_k,
            settings.pca_samples,
            settings.pca_layer,
            progress=progress,
        )
        timings["global_directions"] = time.perf_counter() - start
    found = directions_from_grams(grams[0], grams[1], settings, candidates, device=model.device)
    timings.update(found.timings)
    info = analysis_info(
        model,
        settings,
        region,
        keep,
        method=settings.method,
        ranks={
            "region": found.rank,
            "keep": found.keep_rank,
            "null_space": int(found.null_basis.shape[1]),
            "directions": int(found.directions.shape[1]),
            "rule": "user" if settings.rank else rule_name(settings, settings.region_energy),
            "keep_rule": "user"
            if settings.keep_rank
            else rule_name(settings, settings.keep_energy),
        },
        region_pixels=int(region_m.sum()),
        keep_pixels=int(keep_m.sum()),
        samples=settings.samples,
        grams=gram_record(model, settings, given=given_grams, field=field is not None),
        # which of a global method's leading directions each of ours is (0 = its strongest)
        candidates=None
        if found.candidate_order is None
        else [int(i) for i in found.candidate_order],
        rpca=found.rpca_stats,
        timings_seconds=timings,
        device=str(model.device),
    )
    return Analysis(
        latent=latent.cpu().double().numpy(),
        region_basis=found.region_basis.numpy(),
        region_singular_values=found.singular_values.numpy(),
        null_basis=found.null_basis.numpy(),
        directions=found.directions.numpy(),
        direction_strengths=found.strengths.numpy(),
        region_mask=region_m.numpy(),
        keep_mask=keep_m.numpy(),
        info=info,
    )


def gram_record(model: Model, settings: AnalysisSettings, *, given: bool, field: bool) -> str:
    """How an analysis got its Gram matrices, for `analysis.json`: "given", "exact" or
    "sketch K (region test)"."""
    if given:
        return "given"
    sketch = None if field else gram_sketch(model, settings)
    if sketch is None:
        return "exact"
    return f"sketch {sketch} ({settings.sketch_test} test)"


def checked_latent(model: Model, latent: torch.Tensor) -> torch.Tensor:
    """`latent` as a finite `(d,)` tensor of the model's analysis space."""
    latent = torch.as_tensor(latent).detach().reshape(-1)
    if latent.numel() != model.latent_dim:
        raise UserInputError(
            f"latent has {latent.numel()} values, the model expects {model.latent_dim}"
        )
    if not torch.isfinite(latent).all():
        raise UserInputError("latent contains NaN or Inf")
    return latent


def _check_ranks(settings: AnalysisSettings, dim: int) -> None:
    if settings.rank is not None:
        check_rank(settings.rank, dim, "rank")
    if settings.keep_rank is not None:
        check_rank(settings.keep_rank, dim, "keep rank", allow_full=False)
    if settings.sketch is not None:
        check_rank(settings.sketch, dim, "sketch size")


def analysis_info(
    model: Model,
    settings: AnalysisSettings,
    region: RegionSpec | None,
    keep: RegionSpec | None,
    *,
    method: str,
    ranks: dict[str, Any],
    **extra: Any,
) -> dict[str, Any]:
    """What `analysis.json` records: the model and its space, the regions, the method, the
    ranks, the settings, and `extra` fields of the kind of analysis. The one place it is
    built."""
    info: dict[str, Any] = {
        "version": __version__,
        "model": model.name,
        "model_source": model.source,
        "space": model.space,
        "model_details": dict(model.details),
        "latent_dim": model.latent_dim,
        "resolution": list(model.resolution),
        "class": None
        if model.condition is None or model.class_names is None
        else model.class_names[model.condition],
        "region": describe(region) if region is not None else None,
        "keep": describe(keep),
        "method": method,
        "ranks": ranks,
        "settings": {
            k: (list(v) if isinstance(v, tuple) else v) for k, v in settings.__dict__.items()
        },
        # the arithmetic: TF32 off, Gram products and accumulation, where d x d problems ran
        "precision": precision_record(model.device, model.latent_dim),
    }
    info.update(extra)
    return info


def multi_latents(model: Model, samples: int) -> list[torch.Tensor]:
    """The `samples - 1` other latents a multi-image analysis averages over."""
    return [model.sample_latent(MULTI_SEED_BASE + i) for i in range(samples - 1)]


def summed_grams(
    model: Model,
    latents: Iterable[torch.Tensor],
    masks: torch.Tensor,
    settings: AnalysisSettings,
    progress: bool = False,
) -> torch.Tensor:
    """Per-value Gram matrices `(m, d, d)` float64 (CPU) of `(m, H, W)` masks, summed over
    `latents` (each `(d,)`, at least one)."""
    total = None
    for point in latents:
        grams = region_grams(model, point, masks, settings, progress).cpu()
        total = grams if total is None else total + grams
    if total is None:
        raise ValueError("no latents to sum Gram matrices over")
    return total


def directions_analysis(
    model: Model,
    latent: torch.Tensor,
    directions: np.ndarray,
    region: RegionSpec | None = None,
    keep: RegionSpec | None = None,
    settings: AnalysisSettings | None = None,
    *,
    need_keep_rank: bool = True,
    source: str = "",
) -> Analysis:
    """An `Analysis` around given directions `(d, k)` (no region analysis), so that they can
    be edited with like found ones; path-following needs the kept region (`keep`, or the
    complement of `region`) and computes its rank at `latent` with the energy rule."""
    settings = resolved_settings(model, settings or AnalysisSettings())
    dim = model.latent_dim
    latent = torch.as_tensor(latent).detach().reshape(-1)
    region_m = region_mask(model, region) if region is not None else None
    if keep is not None:
        keep_m = region_mask(model, keep)
    elif region_m is not None:
        keep_m = ~region_m
    else:
        keep_m = None
    null_basis = np.zeros((dim, 0))
    keep_rank = None
    if need_keep_rank:
        if keep_m is None:
            raise UserInputError(
                "path-following needs the region to keep still: give --region or --keep, "
                "or use --one-shot"
            )
        gram = region_grams(model, latent, keep_m.unsqueeze(0), settings)[0].cpu()
        null, keep_rank, _, _ = kept_null_space(
            gram, settings, settings.keep_rank, device=model.device
        )
        null_basis = null.numpy()
    empty_mask = np.zeros((0, 0), dtype=bool)
    info = analysis_info(
        model,
        settings,
        region,
        keep,
        method="direction-file",
        ranks={"keep": keep_rank, "directions": int(directions.shape[1])},
        directions_source=source,
    )
    return Analysis(
        latent=latent.cpu().double().numpy(),
        region_basis=np.zeros((dim, 0)),
        region_singular_values=np.zeros(0),
        null_basis=null_basis,
        directions=directions,
        direction_strengths=np.zeros(directions.shape[1]),
        region_mask=region_m.numpy() if region_m is not None else empty_mask,
        keep_mask=keep_m.numpy() if keep_m is not None else empty_mask,
        info=info,
    )


def lifted_analysis(
    model: Model,
    analysis: Analysis,
    latent: torch.Tensor | None = None,
    settings: AnalysisSettings | None = None,
    *,
    need_keep_rank: bool = True,
    source: str = "",
) -> Analysis:
    """An analysis of another space applied in `model`'s: the paper's "analyse in W, edit
    W+ layers 4-7". Its directions are lifted by the model's family, its latent read as a
    code of the model (or `latent` used instead), and, for path-following, the kept region's
    rank computed at the start in the model's own space (with `settings`, default the
    analysis's own).

    Returns an `Analysis` of `model`'s space; `analysis` itself when no lift is needed.
    """
    dim = analysis.latent.shape[0]
    if dim == model.latent_dim:
        return analysis
    if not model.lifts_from(dim):
        raise UserInputError(
            f"the analysis is for a {dim}-d latent, the model has {model.latent_dim}"
        )
    if latent is None:
        latent = model.latent_from_code(torch.from_numpy(analysis.latent).to(model.dtype))
    vectors = model.lift_directions(torch.from_numpy(analysis.directions)).numpy()
    region = analysis.region_mask if analysis.region_mask.size else None
    if region is not None and tuple(region.shape) != tuple(model.resolution):
        region = None
    return directions_analysis(
        model,
        latent,
        vectors,
        region,
        None,
        settings or settings_of(analysis),
        need_keep_rank=need_keep_rank,
        source=source or str(analysis.info.get("model", "")),
    )


def settings_of(analysis: Analysis) -> AnalysisSettings:
    """The settings an analysis was made with (defaults for any it does not record)."""
    stored = dict(analysis.info.get("settings", {}))
    if isinstance(stored.get("size"), list):
        stored["size"] = tuple(stored["size"])
    known = AnalysisSettings.__dataclass_fields__
    return AnalysisSettings(**{k: v for k, v in stored.items() if k in known})
