"""One analysis: from a model, a latent and two regions to local-edit directions.

The pipeline of the paper, end to end: masks -> one Jacobian field -> the Gram matrices of
the region and of the kept region (normalised per value) -> robust PCA of each -> the
region's principal space and the kept region's null space -> directions (`lowrank`, the
paper's projection, or `contrast`, our generalised eigenproblem). `Analysis` holds the result
with everything needed to reproduce or continue it (masks, ranks, solver statistics, timings)
and saves to `analysis.npz` + `analysis.json`.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lowrankgan import __version__
from lowrankgan.core.baselines import (
    DEFAULT_PCA_SAMPLES,
    DEFAULT_TOP_K,
    GLOBAL_METHODS,
    by_region_response,
    global_directions,
)
from lowrankgan.core.jacobian import gram_from_field, jacobian_field, mask_weights, sketch_gram
from lowrankgan.core.rpca import solve_rpca
from lowrankgan.core.subspace import (
    check_rank,
    contrast_directions,
    eig_desc,
    energy_rank,
    null_space_basis,
    numerical_rank,
    principal_subspace,
    projected_directions,
    response,
)
from lowrankgan.errors import UserInputError, one_line
from lowrankgan.io.artifacts import atomic_write_text, save_npz_atomic
from lowrankgan.io.datafiles import read_json, read_npy, read_npz
from lowrankgan.limits import check_at_most, limit
from lowrankgan.models.base import Model
from lowrankgan.regions import RegionSpec, describe, keep_mask, region_mask

#: Local methods (from the region's and kept region's Gram matrices) and global baselines
#: (from the network alone; the analysis orders their candidates by region response).
LOCAL_METHODS = ("lowrank", "contrast", "jacobian")
METHODS = (*LOCAL_METHODS, *GLOBAL_METHODS)
DEFAULT_LAMBDA_SCALE = 4.0
#: With `samples = N > 1`, the Gram matrices are averaged over the analysed latent and the
#: latents of seeds MULTI_SEED_BASE, ..., MULTI_SEED_BASE + N - 2.
MULTI_SEED_BASE = 1_000_000


@dataclass(frozen=True)
class AnalysisSettings:
    """How to analyse: ranks, rules and solver choices (all recorded in the results).

    region_energy / keep_energy: the automatic rank rules, the fraction of the low-rank
    Gram's spectrum the principal spaces hold; `rank` / `keep_rank` override them. The kept
    region's rule is strict (0.999) because its null space must leave it still.
    rpca_lambda: sparsity weight; default `4 / sqrt(d)` (the textbook `1 / sqrt(d)` and the
    authors' 1/60 both leave too little of a Jacobian Gram in `L` for a stable null space:
    measured on dcgan-faces, see docs/benchmarks.md).
    rank_rule: `"energy"` (ours) or `"numerical"` (the authors': `matrix_rank(L)`).
    `AUTHORS_SETTINGS` reproduces the paper's choices.
    method: `lowrank` (the paper), `contrast` (ours), `jacobian` (the region's own principal
    directions, no projection), `sefa` or `ganspace` (global baselines: their `top_k`
    leading directions, ordered by how much they move the region).
    samples: average the Gram matrices over this many images (the latent and seeds from
    `MULTI_SEED_BASE`), for directions that hold on many images.
    pca_samples / pca_layer: GANSpace's sample count and feature layer.
    """

    method: str = "lowrank"
    rank: int | None = None
    keep_rank: int | None = None
    region_energy: float = 0.9
    keep_energy: float = 0.999
    rank_rule: str = "energy"
    rpca_solver: str = "ialm"
    rpca_lambda: float | None = None
    rpca_tol: float = 1e-7
    use_rpca: bool = True
    contrast_tau: float = 1e-2
    contrast_on_low_rank: bool = False
    size: tuple[int, int] | None = None
    fuse_channels: bool = False
    memory_budget: int | None = None
    chunk_size: int | None = None
    sketch: int | None = None
    sketch_seed: int = 0
    samples: int = 1
    top_k: int = DEFAULT_TOP_K
    pca_samples: int = DEFAULT_PCA_SAMPLES
    pca_layer: str | None = None

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise UserInputError(f"unknown method {self.method!r}; choose {', '.join(METHODS)}")
        for name in ("region_energy", "keep_energy"):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0.0 < value <= 1.0):
                raise UserInputError(f"{name} must be in (0, 1], got {value}")
        if self.rank_rule not in ("energy", "numerical"):
            raise UserInputError(f"unknown rank rule {self.rank_rule!r}")
        if not math.isfinite(self.contrast_tau) or self.contrast_tau <= 0:
            raise UserInputError(f"contrast tau must be positive, got {self.contrast_tau}")
        for name, low in (("samples", 1), ("top_k", 1), ("pca_samples", 2)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise UserInputError(f"{name} must be an integer >= {low}, got {value!r}")
        check_at_most(self.samples, "samples", "samples")
        check_at_most(self.pca_samples, "samples", "ganspace samples")
        for name in ("rank", "keep_rank", "sketch", "chunk_size", "memory_budget"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise UserInputError(f"{name} must be a positive integer, got {value!r}")
        if self.size is not None and (
            len(self.size) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in self.size)
        ):
            raise UserInputError(f"size must be two positive integers, got {self.size!r}")
        if self.rpca_lambda is not None and not (
            math.isfinite(self.rpca_lambda) and self.rpca_lambda > 0
        ):
            raise UserInputError(f"RPCA lambda must be positive, got {self.rpca_lambda}")


#: Models larger than this are analysed at this size by default (area downsampling), as the
#: paper analyses its 1024 models at 256.
DEFAULT_ANALYSIS_SIZE = 256


def resolved_settings(model: Model, settings: AnalysisSettings) -> AnalysisSettings:
    """`settings` with the analysis size filled in: `DEFAULT_ANALYSIS_SIZE` on the long side
    for models larger than that, the output size otherwise."""
    if settings.size is not None or max(model.resolution) <= DEFAULT_ANALYSIS_SIZE:
        return settings
    height, width = model.resolution
    scale = DEFAULT_ANALYSIS_SIZE / max(height, width)
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    return AnalysisSettings(**{**settings.__dict__, "size": size})


#: The paper's choices: fixed-penalty ADMM, lambda = 1/60, rank = matrix_rank(L).
AUTHORS_SETTINGS = {"rpca_solver": "admm", "rpca_lambda": 1 / 60, "rank_rule": "numerical"}


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

    ARRAYS = (
        "latent",
        "region_basis",
        "region_singular_values",
        "null_basis",
        "directions",
        "direction_strengths",
        "region_mask",
        "keep_mask",
    )

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
        out_dir.mkdir(parents=True, exist_ok=True)
        npz = out_dir / "analysis.npz"
        save_npz_atomic(npz, **{name: getattr(self, name) for name in self.ARRAYS})
        meta = out_dir / "analysis.json"
        atomic_write_text(meta, json.dumps(self.info, indent=2, sort_keys=True) + "\n")
        return npz, meta

    @classmethod
    def load(cls, path: Path) -> Analysis:
        """Read an `analysis.npz` (and its `analysis.json` beside it, if present), every array
        and field checked: a hostile or damaged file is a one-line `UserInputError`."""
        path = Path(path)
        if path.is_dir():
            path = path / "analysis.npz"
        arrays = read_npz(path, "analysis")
        missing = [name for name in ("latent", "directions", "null_basis") if name not in arrays]
        if missing:
            raise UserInputError(f"{path} is not an analysis file (missing {', '.join(missing)})")
        meta_path = path.with_suffix(".json")
        info = _checked_info(read_json(meta_path, "analysis") if meta_path.is_file() else {},
                             meta_path)  # fmt: skip
        d = arrays["latent"].shape[0] if arrays["latent"].ndim == 1 else -1
        empty = np.zeros((max(d, 0), 0))
        analysis = cls(
            latent=arrays["latent"],
            region_basis=arrays.get("region_basis", empty),
            region_singular_values=arrays.get("region_singular_values", np.zeros(0)),
            null_basis=arrays["null_basis"],
            directions=arrays["directions"],
            direction_strengths=arrays.get(
                "direction_strengths", np.zeros(arrays["directions"].shape[-1])
            ),
            region_mask=arrays.get("region_mask", np.zeros((0, 0), dtype=bool)),
            keep_mask=arrays.get("keep_mask", np.zeros((0, 0), dtype=bool)),
            info=info,
        )
        _check_arrays(analysis, path)
        return analysis


def _check_arrays(analysis: Analysis, path: Path) -> None:
    """Shapes, dtypes and values of a loaded analysis: real floats of consistent sizes, finite,
    unit directions, bool-valued masks; float arrays converted to float64."""
    latent = analysis.latent
    if latent.ndim != 1 or not 1 <= latent.shape[0] <= limit("latent_dim"):
        raise UserInputError(f"{path}: latent has shape {latent.shape}, expected (d,)")
    d = latent.shape[0]
    expected = {
        "latent": (d,),
        "region_basis": (d, None),
        "region_singular_values": (None,),
        "null_basis": (d, None),
        "directions": (d, None),
        "direction_strengths": (analysis.directions.shape[-1],),
    }
    for name, shape in expected.items():
        array = getattr(analysis, name)
        if array.dtype.kind not in "fiu":
            raise UserInputError(f"{path}: {name} holds {array.dtype} values, expected floats")
        if array.ndim != len(shape) or any(
            want is not None and got != want for got, want in zip(array.shape, shape, strict=True)
        ):
            wanted = "(" + ", ".join("k" if w is None else str(w) for w in shape)
            wanted += ",)" if len(shape) == 1 else ")"
            raise UserInputError(f"{path}: {name} has shape {array.shape}, expected {wanted}")
        array = array.astype(np.float64)
        if not np.isfinite(array).all():
            raise UserInputError(f"{path}: {name} holds NaN or Inf")
        setattr(analysis, name, array)
    if analysis.directions.shape[1] == 0:
        raise UserInputError(f"{path}: the analysis holds no directions")
    norms = np.linalg.norm(analysis.directions, axis=0)
    if (norms < 1e-6).any():
        raise UserInputError(f"{path}: direction {int(np.argmin(norms))} is zero")
    if not np.allclose(norms, 1.0, rtol=0, atol=1e-9):  # keep saved unit columns bit-exact
        analysis.directions = analysis.directions / norms
    for name in ("region_mask", "keep_mask"):
        mask = getattr(analysis, name)
        if mask.dtype.kind not in "biu" or (mask.size and mask.ndim != 2):
            raise UserInputError(f"{path}: {name} must be a 2-d bool array, got {mask.dtype}")
        setattr(analysis, name, mask.reshape(mask.shape if mask.size else (0, 0)) != 0)
    both = analysis.region_mask.size and analysis.keep_mask.size
    if both and analysis.region_mask.shape != analysis.keep_mask.shape:
        raise UserInputError(f"{path}: region_mask and keep_mask differ in shape")


def _checked_info(info: Any, path: Path) -> dict[str, Any]:
    """`analysis.json` as a dict whose fields the tool reads have the right types and ranges."""
    if not isinstance(info, dict):
        raise UserInputError(f"{path} does not hold a JSON object")
    for key in ("model", "space", "method"):
        if key in info and not isinstance(info[key], str):
            raise UserInputError(f"{path}: {key!r} must be a string")
    for key in ("settings", "ranks"):
        if key in info and not isinstance(info[key], dict):
            raise UserInputError(f"{path}: {key!r} must be an object")
    if "latent_dim" in info and not _small_int(info["latent_dim"], 1, limit("latent_dim")):
        raise UserInputError(f"{path}: 'latent_dim' must be an integer in 1..{limit('latent_dim')}")
    resolution = info.get("resolution")
    if resolution is not None and not (
        isinstance(resolution, list)
        and len(resolution) == 2
        and all(_small_int(v, 1, limit("resolution")) for v in resolution)
    ):
        raise UserInputError(
            f"{path}: 'resolution' must be two integers in 1..{limit('resolution')}"
        )
    for key, value in (info.get("ranks") or {}).items():
        if key in ("region", "keep", "null_space", "directions") and not _small_int(
            value, 0, limit("latent_dim")
        ):
            raise UserInputError(
                f"{path}: ranks.{key} must be an integer in 0..{limit('latent_dim')}"
            )
    settings = info.get("settings")
    if settings is not None:
        known = {k: v for k, v in settings.items() if k in AnalysisSettings.__dataclass_fields__}
        if isinstance(known.get("size"), list):
            known["size"] = tuple(known["size"])
        try:
            AnalysisSettings(**known)  # the same checks as for settings given by hand
        except (TypeError, ValueError) as exc:
            raise UserInputError(f"{path}: bad settings ({one_line(exc)})") from None
        size = known.get("size")
        if size is not None and max(size) > limit("resolution"):
            raise UserInputError(f"{path}: settings.size {list(size)} is too large")
    return info


def _small_int(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


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


def low_rank_part(matrix: torch.Tensor, settings: AnalysisSettings) -> tuple[torch.Tensor, dict]:
    """`L` of the Gram and the solver's statistics (plain Gram when RPCA is off)."""
    if not settings.use_rpca:
        return matrix, {"solver": "none"}
    start = time.perf_counter()
    lam = settings.rpca_lambda or DEFAULT_LAMBDA_SCALE / math.sqrt(matrix.shape[0])
    result = solve_rpca(matrix, lam, solver=settings.rpca_solver, tol=settings.rpca_tol)
    stats = {
        "solver": result.solver,
        "lambda": result.lam,
        "iterations": result.iterations,
        "converged": result.converged,
        "residual": result.residual,
        "sparse_fraction": float(
            (result.sparse.abs() > 1e-12 * matrix.abs().max()).double().mean()
        ),
        "seconds": time.perf_counter() - start,
    }
    return result.low_rank, stats


def kept_null_space(
    keep_gram: torch.Tensor, settings: AnalysisSettings, keep_rank: int | None = None
) -> tuple[torch.Tensor, int, torch.Tensor, dict]:
    """Null space `(d, n)` of the kept region, its rank, its low-rank Gram and the RPCA
    statistics."""
    low_rank, stats = low_rank_part(keep_gram, settings)
    dim = keep_gram.shape[0]
    if keep_rank is None:
        values, _ = eig_desc(low_rank)
        keep_rank = min(auto_rank(values, settings.keep_energy, settings.rank_rule), dim - 1)
    return null_space_basis(low_rank, keep_rank), keep_rank, low_rank, stats


def region_grams(
    model: Model,
    latent: torch.Tensor,
    masks: torch.Tensor,
    settings: AnalysisSettings,
    progress: bool = False,
) -> torch.Tensor:
    """Per-value Gram matrices `(m, d, d)` float64 of `(m, H, W)` masks at `latent`."""
    size = settings.size
    if settings.sketch is not None:
        grams = sketch_gram(
            model,
            latent,
            masks,
            settings.sketch,
            size=size,
            fuse_channels=settings.fuse_channels,
            seed=settings.sketch_seed,
            chunk_size=settings.chunk_size,
            memory_budget=settings.memory_budget,
            progress=progress,
        )
        out_size = size or model.resolution
        channels = 1 if settings.fuse_channels else model.channels
        weights = mask_weights(masks, tuple(out_size))
        areas = weights.sum(dim=(-2, -1)).to(torch.float64).to(grams.device) * channels
        return grams / areas.view(-1, 1, 1)
    field_ = jacobian_field(
        model,
        latent,
        size=size,
        fuse_channels=settings.fuse_channels,
        chunk_size=settings.chunk_size,
        memory_budget=settings.memory_budget,
        progress=progress,
    )
    weights = mask_weights(masks, field_.shape[-2:])
    grams = gram_from_field(field_, weights)
    values_per_pixel = field_.shape[1]
    areas = weights.sum(dim=(-2, -1)).to(torch.float64).to(grams.device) * values_per_pixel
    return grams / areas.view(-1, 1, 1)


def analyze(
    model: Model,
    latent: torch.Tensor,
    region: RegionSpec,
    keep: RegionSpec | None = None,
    settings: AnalysisSettings | None = None,
    *,
    progress: bool = False,
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
    """
    settings = settings or AnalysisSettings()
    if overrides:
        settings = AnalysisSettings(**{**settings.__dict__, **overrides})
    settings = resolved_settings(model, settings)
    dim = model.latent_dim
    latent = torch.as_tensor(latent).detach().reshape(-1)
    if latent.numel() != dim:
        raise UserInputError(f"latent has {latent.numel()} values, the model expects {dim}")
    if not torch.isfinite(latent).all():
        raise UserInputError("latent contains NaN or Inf")
    if settings.rank is not None:
        check_rank(settings.rank, dim, "rank")
    if settings.keep_rank is not None:
        check_rank(settings.keep_rank, dim, "keep rank", allow_full=False)
    if settings.sketch is not None:
        check_rank(settings.sketch, dim, "sketch size")

    timings: dict[str, float] = {}
    start = time.perf_counter()
    region_m = region_mask(model, region)
    keep_m = keep_mask(model, region_m, keep)
    latents = [latent, *multi_latents(model, settings.samples)]
    grams = averaged_grams(model, latents, torch.stack([region_m, keep_m]), settings, progress)
    region_gram, keep_gram = grams[0], grams[1]
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
    found = directions_from_grams(region_gram, keep_gram, settings, candidates)
    timings.update(found.timings)
    directions, strengths = found.directions, found.strengths
    rank, keep_rank, null_basis = found.rank, found.keep_rank, found.null_basis
    region_basis, singular_values = found.region_basis, found.singular_values
    region_stats, keep_stats = found.rpca_stats["region"], found.rpca_stats["keep"]

    info = {
        "version": __version__,
        "model": model.name,
        "model_source": model.source,
        "space": model.space,
        "model_details": dict(model.details),
        "latent_dim": dim,
        "resolution": list(model.resolution),
        "class": None
        if model.condition is None or model.class_names is None
        else model.class_names[model.condition],
        "region": describe(region),
        "keep": describe(keep),
        "region_pixels": int(region_m.sum()),
        "keep_pixels": int(keep_m.sum()),
        "method": settings.method,
        "samples": settings.samples,
        # which of a global method's leading directions each of ours is (0 = its strongest)
        "candidates": None
        if found.candidate_order is None
        else [int(i) for i in found.candidate_order],
        "ranks": {
            "region": int(rank),
            "keep": int(keep_rank),
            "null_space": int(null_basis.shape[1]),
            "directions": int(directions.shape[1]),
            "rule": "user" if settings.rank else _rule_name(settings, settings.region_energy),
            "keep_rule": "user"
            if settings.keep_rank
            else _rule_name(settings, settings.keep_energy),
        },
        "rpca": {"region": region_stats, "keep": keep_stats},
        "settings": {
            k: (list(v) if isinstance(v, tuple) else v) for k, v in settings.__dict__.items()
        },
        "timings_seconds": timings,
        "device": str(model.device),
    }
    return Analysis(
        latent=latent.cpu().double().numpy(),
        region_basis=region_basis.numpy(),
        region_singular_values=singular_values.numpy(),
        null_basis=null_basis.numpy(),
        directions=directions.numpy(),
        direction_strengths=strengths.numpy(),
        region_mask=region_m.numpy(),
        keep_mask=keep_m.numpy(),
        info=info,
    )


@dataclass
class LocalDirections:
    """What `directions_from_grams` finds. Tensors float64 on the CPU.

    directions (d, k) unit columns, strengths (k,) (region response, or the generalised
    eigenvalues for `contrast`), region_basis (d, rank), singular_values (rank,),
    null_basis (d, d - keep_rank); `candidate_order` (k,) for global methods: which of their
    candidates each direction is.
    """

    directions: torch.Tensor
    strengths: torch.Tensor
    region_basis: torch.Tensor
    singular_values: torch.Tensor
    null_basis: torch.Tensor
    rank: int
    keep_rank: int
    rpca_stats: dict[str, dict]
    timings: dict[str, float]
    candidate_order: torch.Tensor | None = None


def directions_from_grams(
    region_gram: torch.Tensor,
    keep_gram: torch.Tensor,
    settings: AnalysisSettings,
    candidates: torch.Tensor | None = None,
) -> LocalDirections:
    """Directions of `settings.method` from the per-value Gram matrices `(d, d)` float64 of
    the region and of the kept region; `candidates` `(d, K)` are a global method's
    directions, which are ordered by region response."""
    timings: dict[str, float] = {}
    start = time.perf_counter()
    region_low, region_stats = low_rank_part(region_gram, settings)
    values, _ = eig_desc(region_low)
    rank = settings.rank or auto_rank(values, settings.region_energy, settings.rank_rule)
    region_basis, singular_values = principal_subspace(region_low, rank)
    null_basis, keep_rank, keep_low, keep_stats = kept_null_space(
        keep_gram, settings, settings.keep_rank
    )
    timings["rpca_subspaces"] = time.perf_counter() - start

    start = time.perf_counter()
    order = None
    if settings.method == "lowrank":
        directions, strengths = projected_directions(region_basis, null_basis, region_gram)
        if directions.shape[1] == 0:
            raise UserInputError(
                "no principal direction of the region has a part in the kept region's null "
                "space; lower --keep-rank or raise --rank"
            )
    elif settings.method == "contrast":
        if settings.contrast_on_low_rank:
            target, against = _psd(region_low), _psd(keep_low)
        else:
            target, against = region_gram, keep_gram
        directions, strengths = contrast_directions(
            target, against, settings.contrast_tau, count=max(rank, 1)
        )
    elif settings.method == "jacobian":
        directions, strengths = region_basis, response(region_basis, region_gram)
    else:
        if candidates is None:
            raise ValueError(f"method {settings.method!r} needs its candidate directions")
        directions, strengths, order = by_region_response(candidates, region_gram)
    timings["directions"] = time.perf_counter() - start
    return LocalDirections(
        directions=directions,
        strengths=strengths,
        region_basis=region_basis,
        singular_values=singular_values,
        null_basis=null_basis,
        rank=int(rank),
        keep_rank=int(keep_rank),
        rpca_stats={"region": region_stats, "keep": keep_stats},
        timings=timings,
        candidate_order=order,
    )


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


def averaged_grams(
    model: Model,
    latents: Sequence[torch.Tensor],
    masks: torch.Tensor,
    settings: AnalysisSettings,
    progress: bool = False,
) -> torch.Tensor:
    """`summed_grams` divided by the number of latents."""
    return summed_grams(model, latents, masks, settings, progress) / len(latents)


def auto_rank(values: torch.Tensor, energy: float, rule: str) -> int:
    """Rank of a low-rank Gram from its decreasing spectrum `(d,)` under `rule`."""
    if rule == "numerical":
        return numerical_rank(values)
    return energy_rank(values, energy)


def _rule_name(settings: AnalysisSettings, energy: float) -> str:
    return "numerical rank" if settings.rank_rule == "numerical" else f"energy {energy}"


def _psd(matrix: torch.Tensor) -> torch.Tensor:
    """Nearest PSD matrix (negative eigenvalues clipped): `(d, d)`."""
    values, vectors = torch.linalg.eigh(0.5 * (matrix + matrix.T))
    return (vectors * values.clamp(min=0)) @ vectors.T


def load_direction_file(path: Path, dim: int) -> np.ndarray:
    """Directions from a `.npy` file, `(d,)` or `(k, d)` (e.g. the authors' released W
    directions) -> `(d, k)` float64 unit columns."""
    path = Path(path)
    array = read_npy(path, "direction file")
    array = np.atleast_2d(array.astype(np.float64))
    if array.ndim != 2 or array.shape[1] != dim:
        raise UserInputError(
            f"{path} has shape {array.shape}; expected ({dim},) or (k, {dim}) for this model"
        )
    norms = np.linalg.norm(array, axis=1)
    if not np.isfinite(array).all() or (norms == 0).any():
        raise UserInputError(f"{path} holds NaN, Inf or zero directions")
    return (array / norms[:, None]).T


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
        null, keep_rank, _, _ = kept_null_space(gram, settings, settings.keep_rank)
        null_basis = null.numpy()
    empty_mask = np.zeros((0, 0), dtype=bool)
    info = {
        "version": __version__,
        "model": model.name,
        "space": model.space,
        "latent_dim": dim,
        "method": "direction-file",
        "directions_source": source,
        "region": describe(region) if region is not None else None,
        "keep": describe(keep),
        "ranks": {"keep": keep_rank, "directions": int(directions.shape[1])},
        "settings": {
            k: (list(v) if isinstance(v, tuple) else v) for k, v in settings.__dict__.items()
        },
    }
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
