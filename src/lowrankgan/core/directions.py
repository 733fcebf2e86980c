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
from lowrankgan.core.rpca import solve_rpca
from lowrankgan.core.subspace import (
    contrast_directions,
    eig_desc,
    energy_rank,
    null_space_basis,
    numerical_rank,
    principal_subspace,
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


def low_rank_part(matrix: torch.Tensor, settings: DirectionRules) -> tuple[torch.Tensor, dict]:
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
    keep_gram: torch.Tensor, settings: DirectionRules, keep_rank: int | None = None
) -> tuple[torch.Tensor, int, torch.Tensor, dict]:
    """Null space `(d, n)` of the kept region, its rank, its low-rank Gram and the RPCA
    statistics."""
    low_rank, stats = low_rank_part(keep_gram, settings)
    dim = keep_gram.shape[0]
    if keep_rank is None:
        values, _ = eig_desc(low_rank)
        keep_rank = min(auto_rank(values, settings.keep_energy, settings.rank_rule), dim - 1)
    return null_space_basis(low_rank, keep_rank), keep_rank, low_rank, stats


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
    settings: DirectionRules,
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


def auto_rank(values: torch.Tensor, energy: float, rule: str) -> int:
    """Rank of a low-rank Gram from its decreasing spectrum `(d,)` under `rule`."""
    if rule == "numerical":
        return numerical_rank(values)
    return energy_rank(values, energy)


def rule_name(settings: DirectionRules, energy: float) -> str:
    return "numerical rank" if settings.rank_rule == "numerical" else f"energy {energy}"


def _psd(matrix: torch.Tensor) -> torch.Tensor:
    """Nearest PSD matrix (negative eigenvalues clipped): `(d, d)`."""
    values, vectors = torch.linalg.eigh(0.5 * (matrix + matrix.T))
    return (vectors * values.clamp(min=0)) @ vectors.T
