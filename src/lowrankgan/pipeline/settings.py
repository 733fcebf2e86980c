"""How to analyse: `AnalysisSettings`, the methods, and the paper's own choices."""

from __future__ import annotations

import math
from dataclasses import dataclass

from lowrankgan.core.baselines import DEFAULT_PCA_SAMPLES, DEFAULT_TOP_K, GLOBAL_METHODS
from lowrankgan.errors import UserInputError
from lowrankgan.limits import check_at_most
from lowrankgan.models.base import Model

#: Local methods (from the region's and kept region's Gram matrices) and global baselines
#: (from the network alone; the analysis orders their candidates by region response).
LOCAL_METHODS = ("lowrank", "contrast", "jacobian")


METHODS = (*LOCAL_METHODS, *GLOBAL_METHODS)


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
    sketch / exact: Gram matrices from a `sketch_gram` of K products instead of the whole
    Jacobian field; by default (neither given) only models over `DEFAULT_ANALYSIS_SIZE` px
    on a CPU are sketched, with `CPU_DEFAULT_SKETCH` (`gram_sketch`); `exact` forces the
    field. sketch_test: `"region"` (the test matrix sampled from the region's rows) or
    `"gaussian"`; sketch_seed: its seed.
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
    sketch_test: str = "region"
    exact: bool = False
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
        if self.sketch_test not in ("region", "gaussian"):
            raise UserInputError(f"unknown sketch test {self.sketch_test!r}: region or gaussian")
        if self.exact and self.sketch is not None:
            raise UserInputError("exact Gram matrices and a sketch exclude each other")
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


#: Products of the default sketch of big models on a CPU. On the 1024-px MobileStyleGAN's
#: exact field (seed 0; 4 sketch seeds) the region test puts the eyes', mouth's and nose's
#: top-5 principal spaces within 3.2 degrees of exact with 25 (1.9 with 26-28), against up
#: to 6.1 with 24, 8.6 with 20 and 15 with 16 (the eyes' 5th and 6th eigenvalues are 6%
#: apart); each product more costs about 4.6 s on 2 cores (docs/benchmarks.md).
CPU_DEFAULT_SKETCH = 25


def gram_sketch(model: Model, settings: AnalysisSettings) -> int | None:
    """How many products the Gram matrices of an analysis sketch, None for exact ones: the
    user's `sketch`, else `CPU_DEFAULT_SKETCH` for a model over `DEFAULT_ANALYSIS_SIZE` px on
    a CPU (unless `exact`); accelerators are exact by default."""
    if settings.sketch is not None or settings.exact:
        return settings.sketch
    if model.device.type == "cpu" and max(model.resolution) > DEFAULT_ANALYSIS_SIZE:
        return min(CPU_DEFAULT_SKETCH, model.latent_dim)
    return None


#: The paper's choices: fixed-penalty ADMM, lambda = 1/60, rank = matrix_rank(L).
AUTHORS_SETTINGS = {"rpca_solver": "admm", "rpca_lambda": 1 / 60, "rank_rule": "numerical"}
