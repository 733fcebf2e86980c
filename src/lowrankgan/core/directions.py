"""Local directions from two Gram matrices: the region's and the kept region's.

Robust PCA keeps the low-rank part `L` of each Gram; the region's principal space and the
kept region's null space follow from their spectra, and the method turns them into
directions: `lowrank` (the paper: principal directions projected onto the null space),
`contrast` (ours: a generalised eigenproblem of the two Grams), `jacobian` (the region's own
principal directions) or a global method's candidates ordered by region response.

The functions read their choices from any object with the fields of `DirectionRules`
(`AnalysisSettings` is one), so the math does not depend on the pipeline.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Protocol

import torch

from lowrankgan.core.baselines import by_region_response
from lowrankgan.core.precision import exact_math, linalg_device
from lowrankgan.core.rpca import solve_rpca
from lowrankgan.core.subspace import (
    contrast_directions,
    descending,
    eigh_symmetric,
    energy_rank,
    numerical_rank,
    projected_directions,
    response,
)
from lowrankgan.errors import UserInputError

#: lambda = DEFAULT_LAMBDA_SCALE / sqrt(d) when none is given (docs/benchmarks.md).
DEFAULT_LAMBDA_SCALE = 4.0


class DirectionRules(Protocol):
    """The choices `directions_from_grams` reads (see `AnalysisSettings` for their meaning)."""

    method: str
    rank: int | None
    keep_rank: int | None
    region_energy: float
    keep_energy: float
    rank_rule: str
    rpca_solver: str
    rpca_lambda: float | None
    rpca_tol: float
    use_rpca: bool
    contrast_tau: float
    contrast_on_low_rank: bool


def low_rank_part(
    matrix: torch.Tensor, settings: DirectionRules, device: torch.device | str | None = None
) -> tuple[torch.Tensor, dict]:
    """`L` of the Gram and the solver's statistics (plain Gram when RPCA is off). `device`:
    where the solver iterates (default the matrix's); `L` comes back on the matrix's."""
    if not settings.use_rpca:
        return matrix, {"solver": "none"}
    start = time.perf_counter()
    lam = settings.rpca_lambda or DEFAULT_LAMBDA_SCALE / math.sqrt(matrix.shape[0])
    result = solve_rpca(
        matrix, lam, solver=settings.rpca_solver, tol=settings.rpca_tol, device=device
    )
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
    keep_gram: torch.Tensor,
    settings: DirectionRules,
    keep_rank: int | None = None,
    *,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, int, torch.Tensor, dict]:
    """Null space `(d, n)` of the kept region, its rank, its low-rank Gram and the RPCA
    statistics, on `keep_gram`'s device; robust PCA and the one eigendecomposition run on
    `linalg_device(d, device)` (`device` default: `default_linalg_device`)."""
    home = keep_gram.device
    if device is None:
        device = default_linalg_device(keep_gram)
    work = linalg_device(keep_gram.shape[0], device)
    null_basis, keep_rank, low_rank, stats, _ = _kept_null_space(
        keep_gram.to(work), settings, keep_rank
    )
    return null_basis.to(home), keep_rank, low_rank.to(home), stats


def _kept_null_space(
    keep_gram: torch.Tensor, settings: DirectionRules, keep_rank: int | None
) -> tuple[torch.Tensor, int, torch.Tensor, dict, tuple[torch.Tensor, torch.Tensor]]:
    """`kept_null_space` where the Gram is, plus the raw spectrum of `L` (`eigh_symmetric`):
    one eigendecomposition serves the rank, the null space and the PSD part."""
    low_rank, stats = low_rank_part(keep_gram, settings)
    dim = keep_gram.shape[0]
    spectrum = eigh_symmetric(low_rank)
    values, vectors = descending(*spectrum)
    if keep_rank is None:
        keep_rank = min(auto_rank(values, settings.keep_energy, settings.rank_rule), dim - 1)
    return vectors[:, keep_rank:], keep_rank, low_rank, stats, spectrum


def default_linalg_device(gram: torch.Tensor) -> torch.device:
    """Where large Gram problems go when no device is named: the Gram's own device when it
    is an accelerator, else the current CUDA device if there is one, else the CPU (only
    latents of `LINALG_DEVICE_MIN_DIM` or more ever leave the CPU)."""
    if gram.device.type != "cpu":
        return gram.device
    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


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


@exact_math()
def directions_from_grams(
    region_gram: torch.Tensor,
    keep_gram: torch.Tensor,
    settings: DirectionRules,
    candidates: torch.Tensor | None = None,
    *,
    device: torch.device | str | None = None,
) -> LocalDirections:
    """Directions of `settings.method` from the per-value Gram matrices `(d, d)` float64 of
    the region and of the kept region; `candidates` `(d, K)` are a global method's
    directions, which are ordered by region response.

    Robust PCA and the eigendecompositions run on `linalg_device(d, device)`: the CPU below
    `LINALG_DEVICE_MIN_DIM` (bit-for-bit the results it always gave), the model's CUDA
    device above (`device`, default `default_linalg_device`); each Gram's low-rank part is
    decomposed once. The results come back as float64 on the CPU."""
    timings: dict[str, float] = {}
    start = time.perf_counter()
    dim = region_gram.shape[0]
    if device is None:
        device = default_linalg_device(region_gram)
    work = linalg_device(dim, device)
    region_gram, keep_gram = region_gram.to(work), keep_gram.to(work)
    region_low, region_stats = low_rank_part(region_gram, settings)
    region_spectrum = eigh_symmetric(region_low)
    values, vectors = descending(*region_spectrum)
    rank = settings.rank or auto_rank(values, settings.region_energy, settings.rank_rule)
    region_basis, singular_values = vectors[:, :rank], values[:rank]
    null_basis, keep_rank, keep_low, keep_stats, keep_spectrum = _kept_null_space(
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
            target, against = _psd(*region_spectrum), _psd(*keep_spectrum)
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
        directions, strengths, order = by_region_response(candidates.to(work), region_gram)
    timings["directions"] = time.perf_counter() - start
    cpu = torch.device("cpu")
    return LocalDirections(
        directions=directions.to(cpu),
        strengths=strengths.to(cpu),
        region_basis=region_basis.to(cpu),
        singular_values=singular_values.to(cpu),
        null_basis=null_basis.to(cpu),
        rank=int(rank),
        keep_rank=int(keep_rank),
        rpca_stats={"region": region_stats, "keep": keep_stats},
        timings=timings,
        candidate_order=None if order is None else order.to(cpu),
    )


def auto_rank(values: torch.Tensor, energy: float, rule: str) -> int:
    """Rank of a low-rank Gram from its decreasing spectrum `(d,)` under `rule`."""
    if rule == "numerical":
        return numerical_rank(values)
    return energy_rank(values, energy)


def rule_name(settings: DirectionRules, energy: float) -> str:
    return "numerical rank" if settings.rank_rule == "numerical" else f"energy {energy}"


def _psd(values: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
    """Nearest PSD matrix (negative eigenvalues clipped) from an `eigh_symmetric` result:
    `(d, d)`."""
    return (vectors * values.clamp(min=0)) @ vectors.T
