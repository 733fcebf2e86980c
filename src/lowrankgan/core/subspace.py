"""Subspaces of the latent space from region Gram matrices, and local-edit directions.

Pure functions on `(d, d)` symmetric matrices (float64):
- the principal space of a region: leading eigenvectors of its low-rank Gram `L_R`;
- the null space of the region to keep: eigenvectors of `L_B` beyond its rank, where moving
  the latent barely changes that region;
- `--method lowrank` (the paper): principal directions of the region projected into the null
  space of the kept region, normalised, sorted by how much they move the region;
- `--method contrast` (ours, after ReSeFa): generalised eigenvectors of
  `M_R v = lambda (M_B + tau tr(M_B)/d I) v`, the directions that move the region most per
  unit of change in the kept region, solved in the stable symmetric-definite form.
Ranks come from an energy rule unless the user fixes them.
"""

from __future__ import annotations

import torch

from lowrankgan.core.precision import exact_math
from lowrankgan.errors import UserInputError


def symmetrize(matrix: torch.Tensor) -> torch.Tensor:
    """`(M + M^T) / 2`: `(d, d)`."""
    return 0.5 * (matrix + matrix.T)


def canonical_signs(vectors: torch.Tensor) -> torch.Tensor:
    """Flip columns so each one's largest-magnitude entry is positive: `(d, k)` -> `(d, k)`.

    Eigenvectors are defined up to sign; fixing it makes results reproducible across runs,
    devices and solvers.
    """
    if vectors.numel() == 0:
        return vectors
    rows = vectors.abs().argmax(dim=0)
    signs = torch.sign(vectors[rows, torch.arange(vectors.shape[1], device=vectors.device)])
    signs = torch.where(signs == 0, torch.ones_like(signs), signs)
    return vectors * signs


def eigh_symmetric(
    matrix: torch.Tensor, device: torch.device | str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """`torch.linalg.eigh` of `(M + M^T) / 2`, ascending, as it comes: `(values (d,),
    vectors (d, d))` on `matrix`'s device, computed on `device` when given (see
    `lowrankgan.core.precision.linalg_device`), under `exact_math()`."""
    with exact_math():
        home = matrix.device
        work = matrix if device is None else matrix.to(torch.device(device))
        values, vectors = torch.linalg.eigh(symmetrize(work))
        return values.to(home), vectors.to(home)


def descending(values: torch.Tensor, vectors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """An `eigh_symmetric` result by decreasing |eigenvalue|, signs canonical: `(|values| (d,),
    vectors (d, d))`."""
    order = torch.argsort(values.abs(), descending=True)
    return values.abs()[order], canonical_signs(vectors[:, order])


def eig_desc(
    matrix: torch.Tensor, device: torch.device | str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigen-decomposition of a symmetric matrix, by decreasing |eigenvalue|.

    Returns `(values (d,), vectors (d, d))`; for a PSD matrix these are its singular values
    and singular vectors. `device`: where the eigh runs (default the matrix's).
    """
    return descending(*eigh_symmetric(matrix, device))


def energy_rank(values: torch.Tensor, energy: float) -> int:
    """Smallest r whose leading `values` (decreasing, >= 0) hold `energy` of their sum."""
    if not 0.0 < energy <= 1.0:
        raise ValueError(f"energy must be in (0, 1], got {energy}")
    total = values.sum()
    if total <= 0:
        return 1
    cumulative = torch.cumsum(values, 0) / total
    rank = (
        int(
            torch.searchsorted(
                cumulative, torch.tensor(energy, dtype=cumulative.dtype, device=cumulative.device)
            ).item()
        )
        + 1
    )
    return max(1, min(rank, values.numel()))


def numerical_rank(values: torch.Tensor) -> int:
    """`numpy.linalg.matrix_rank`'s rule on a decreasing spectrum: values above
    `max * n * eps` (at least 1)."""
    if values.numel() == 0:
        return 1
    threshold = values[0] * values.numel() * torch.finfo(values.dtype).eps
    return max(1, int((values > threshold).sum().item()))


def check_rank(rank: int, dim: int, name: str, allow_full: bool = True) -> int:
    """A user rank, validated against the latent dimension."""
    upper = dim if allow_full else dim - 1
    if isinstance(rank, bool) or not isinstance(rank, int) or not 1 <= rank <= upper:
        raise UserInputError(f"{name} must be an integer in 1..{upper} (latent dimension {dim})")
    return rank


def principal_subspace(low_rank: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The leading `rank` singular vectors of a symmetric matrix.

    Returns `(basis (d, rank), singular_values (rank,))`.
    """
    values, vectors = eig_desc(low_rank)
    return vectors[:, :rank], values[:rank]


def null_space_basis(low_rank: torch.Tensor, keep_rank: int) -> torch.Tensor:
    """Orthonormal basis `(d, d - keep_rank)` of the complement of the leading `keep_rank`
    singular vectors: directions that barely move the kept region."""
    _values, vectors = eig_desc(low_rank)
    return vectors[:, keep_rank:]


def response(directions: torch.Tensor, gram: torch.Tensor) -> torch.Tensor:
    """`v^T M v` per column: the squared change a unit step causes. `(d, k)` -> `(k,)`."""
    return torch.einsum("ik,ij,jk->k", directions, gram, directions)


def projected_directions(
    principal_basis: torch.Tensor,
    null_basis: torch.Tensor,
    region_gram: torch.Tensor,
    min_norm: float = 1e-6,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The paper's local directions: principal directions of the region projected into the
    null space of the kept region, normalised, strongest first.

    Args:
        principal_basis: `(d, r)` orthonormal principal space of the region.
        null_basis: `(d, n)` orthonormal null space of the kept region.
        region_gram: `(d, d)` Gram of the region, for the strength of each direction.
        min_norm: projections shorter than this are dropped (no local part).

    Returns:
        `(directions (d, k), strengths (k,))`, unit columns, `strengths = v^T M_R v`
        decreasing.
    """
    projected = null_basis @ (null_basis.T @ principal_basis)
    norms = projected.norm(dim=0)
    keep = norms > min_norm
    directions = projected[:, keep] / norms[keep]
    strengths = response(directions, region_gram)
    order = torch.argsort(strengths, descending=True)
    return canonical_signs(directions[:, order]), strengths[order]


def contrast_directions(
    region_gram: torch.Tensor,
    keep_gram: torch.Tensor,
    tau: float = 1e-3,
    count: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Directions maximising region energy against kept-region energy.

    Solves `M_R v = lambda (M_B + tau * tr(M_B) / d * I) v` through the Cholesky factor of the
    right-hand side (symmetric-definite form, no explicit inverse).

    Returns:
        `(directions (d, k), contrast (k,))`: unit columns, generalised eigenvalues
        decreasing; `k = count` or d.
    """
    dim = region_gram.shape[0]
    eye = torch.eye(dim, dtype=region_gram.dtype, device=region_gram.device)
    keep = symmetrize(keep_gram)
    ridge = tau * torch.clamp(torch.trace(keep), min=torch.finfo(keep.dtype).tiny) / dim
    factor = torch.linalg.cholesky(keep + ridge * eye)
    # C = F^-1 M_R F^-T has the generalised eigenvalues; v = F^-T u.
    half = torch.linalg.solve_triangular(factor, symmetrize(region_gram), upper=False)
    whitened = torch.linalg.solve_triangular(factor, half.T, upper=False)
    values, vectors = torch.linalg.eigh(symmetrize(whitened))
    order = torch.argsort(values, descending=True)[: count or dim]
    directions = torch.linalg.solve_triangular(factor.T, vectors[:, order], upper=True)
    directions = directions / directions.norm(dim=0)
    return canonical_signs(directions), values[order]
