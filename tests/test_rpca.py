"""Tests for `lowrankgan.core.rpca`: principal component pursuit solvers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from lowrankgan.core.rpca import AUTHORS_LAMBDA, rpca, solve_rpca


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return (torch.linalg.matrix_norm(a - b) / torch.linalg.matrix_norm(b)).item()


def _orthonormal(rows: int, cols: int, gen: torch.Generator) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(rows, cols, generator=gen, dtype=torch.float64))
    return q


def _sparse_symmetric(n: int, density: float, gen: torch.Generator) -> torch.Tensor:
    """(n, n) symmetric, ~`density` of the entries nonzero, magnitudes 5..10, random signs."""
    upper = torch.triu(torch.rand(n, n, generator=gen) < density)
    mags = 5 + 5 * torch.rand(n, n, generator=gen, dtype=torch.float64)
    signs = torch.randint(0, 2, (n, n), generator=gen).to(torch.float64) * 2 - 1
    s = torch.triu(upper * mags * signs)
    return s + torch.triu(s, 1).T


def _symmetric_problem(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """M = L0 + S0 with L0 = n U diag(1..2) U^T rank 5 (incoherent) and S0 5% sparse."""
    gen = torch.Generator().manual_seed(seed)
    u = _orthonormal(n, 5, gen)
    weights = 1 + torch.rand(5, generator=gen, dtype=torch.float64)
    low = n * (u * weights) @ u.T
    low = 0.5 * (low + low.T)
    sparse = _sparse_symmetric(n, 0.05, gen)
    return low + sparse, low, sparse


@pytest.mark.parametrize(("n", "seed"), [(100, 0), (150, 1), (200, 2)])
def test_ialm_recovers_symmetric_low_rank_plus_sparse(n: int, seed: int) -> None:
    matrix, low0, sparse0 = _symmetric_problem(n, seed)
    result = solve_rpca(matrix)
    assert result.converged
    assert result.iterations <= 60  # inexact ALM: tens of iterations, not thousands
    assert _rel(result.low_rank, low0) < 1e-5
    assert _rel(result.sparse, sparse0) < 1e-5
    assert torch.linalg.matrix_rank(result.low_rank, rtol=1e-8).item() == 5


def test_ialm_recovers_rectangular_non_symmetric_input() -> None:
    gen = torch.Generator().manual_seed(3)
    n, m = 120, 150
    low0 = math.sqrt(n * m) * _orthonormal(n, 5, gen) @ _orthonormal(m, 5, gen).T
    support = torch.rand(n, m, generator=gen) < 0.05
    sparse0 = support * (5 + 5 * torch.rand(n, m, generator=gen, dtype=torch.float64))
    sparse0 = sparse0 * (torch.randint(0, 2, (n, m), generator=gen) * 2 - 1)
    result = solve_rpca(low0 + sparse0)
    assert result.converged
    assert result.lam == pytest.approx(1 / math.sqrt(m))
    assert _rel(result.low_rank, low0) < 1e-5
    assert _rel(result.sparse, sparse0) < 1e-5


def test_ialm_recovers_non_symmetric_square_input_through_svd_path() -> None:
    gen = torch.Generator().manual_seed(4)
    n = 120
    low0 = n * _orthonormal(n, 5, gen) @ _orthonormal(n, 5, gen).T
    sparse0 = torch.triu(_sparse_symmetric(n, 0.05, gen))  # sparse but not symmetric
    result = solve_rpca(low0 + sparse0)
    assert result.converged
    assert _rel(result.low_rank, low0) < 1e-5
    assert _rel(result.sparse, sparse0) < 1e-5


def test_eigh_and_svd_paths_agree_on_symmetric_input() -> None:
    matrix, _, _ = _symmetric_problem(80, 5)
    by_eigh = solve_rpca(matrix, symmetric=True)
    by_svd = solve_rpca(matrix, symmetric=False)
    assert by_eigh.converged and by_svd.converged
    assert _rel(by_eigh.low_rank, by_svd.low_rank) < 1e-5
    assert _rel(by_eigh.sparse, by_svd.sparse) < 1e-5


def test_symmetric_true_decomposes_the_symmetric_part() -> None:
    matrix, _, _ = _symmetric_problem(60, 6)
    skew = torch.randn(60, 60, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    skew = skew - skew.T
    forced = solve_rpca(matrix + skew, symmetric=True)
    plain = solve_rpca(matrix)
    assert _rel(forced.low_rank, plain.low_rank) < 1e-10
    assert torch.equal(forced.low_rank, forced.low_rank.T)


# --- properties on small random matrices ------------------------------------------------------

_sizes = st.integers(min_value=1, max_value=10)


@st.composite
def _symmetric_matrices(draw: st.DrawFn) -> torch.Tensor:
    n = draw(_sizes)
    a = draw(arrays(np.float64, (n, n), elements=st.floats(-100, 100, allow_subnormal=False)))
    a = torch.from_numpy(a)
    return 0.5 * (a + a.T)


@settings(max_examples=40, deadline=None)
@given(matrix=_symmetric_matrices())
def test_property_parts_sum_to_matrix_and_stay_symmetric(matrix: torch.Tensor) -> None:
    tol = 1e-7
    result = solve_rpca(matrix, tol=tol)
    assert result.converged
    gap = torch.linalg.matrix_norm(result.low_rank + result.sparse - matrix).item()
    assert gap <= 1.01 * tol * torch.linalg.matrix_norm(matrix).item() + 1e-300
    assert torch.equal(result.low_rank, result.low_rank.T)
    assert torch.equal(result.sparse, result.sparse.T)


@settings(max_examples=40, deadline=None)
@given(matrix=_symmetric_matrices(), scale=st.floats(1e-3, 1e3))
def test_property_scale_equivariance(matrix: torch.Tensor, scale: float) -> None:
    low, sparse = rpca(matrix)
    low_c, sparse_c = rpca(scale * matrix)
    bound = 1e-6 * scale * torch.linalg.matrix_norm(matrix).item()
    assert torch.linalg.matrix_norm(low_c - scale * low).item() <= bound
    assert torch.linalg.matrix_norm(sparse_c - scale * sparse).item() <= bound


@settings(max_examples=40, deadline=None)
@given(matrix=_symmetric_matrices(), seed=st.integers(0, 2**32 - 1))
def test_property_permutation_equivariance(matrix: torch.Tensor, seed: int) -> None:
    n = matrix.shape[0]
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    low, sparse = rpca(matrix)
    low_p, sparse_p = rpca(matrix[perm][:, perm])
    bound = 1e-6 * torch.linalg.matrix_norm(matrix).item()
    assert torch.linalg.matrix_norm(low_p - low[perm][:, perm]).item() <= bound
    assert torch.linalg.matrix_norm(sparse_p - sparse[perm][:, perm]).item() <= bound


@settings(max_examples=25, deadline=None)
@given(
    matrix=st.integers(1, 8).flatmap(
        lambda n: st.integers(1, 8).flatmap(
            lambda m: arrays(np.float64, (n, m), elements=st.floats(-100, 100, width=32))
        )
    )
)
def test_property_rectangular_parts_sum_to_matrix(matrix: np.ndarray) -> None:
    result = solve_rpca(torch.from_numpy(matrix))
    assert result.converged
    total = result.low_rank + result.sparse
    target = torch.from_numpy(matrix)
    assert torch.linalg.matrix_norm(total - target).item() <= 1.01e-7 * np.linalg.norm(matrix)


def test_permutation_equivariance_with_float32_warmup() -> None:
    # Properties above run on matrices too small for the float32 warm-up; this one is not.
    gen = torch.Generator().manual_seed(13)
    n = 96
    q = _orthonormal(n, n, gen)
    matrix = (q * (n / torch.arange(1, n + 1, dtype=torch.float64) ** 2)) @ q.T
    matrix = matrix + _sparse_symmetric(n, 0.03, gen) / 10
    perm = torch.randperm(n, generator=gen)
    low, sparse = rpca(matrix)
    low_p, sparse_p = rpca(matrix[perm][:, perm])
    assert _rel(low_p, low[perm][:, perm]) < 1e-4
    assert _rel(sparse_p, sparse[perm][:, perm]) < 1e-4


# --- the authors' ADMM baseline ---------------------------------------------------------------


def test_admm_converges_and_agrees_with_ialm() -> None:
    matrix, low0, _ = _symmetric_problem(80, 7)
    lam = 1 / math.sqrt(80)
    admm = solve_rpca(matrix, lam, solver="admm")
    ialm = solve_rpca(matrix, lam)
    assert admm.solver == "admm" and ialm.solver == "ialm"
    assert admm.converged and admm.residual <= 1e-7
    assert 1 < admm.iterations < 10_000
    assert _rel(admm.low_rank, ialm.low_rank) < 1e-3
    assert _rel(admm.low_rank, low0) < 1e-3


def test_admm_defaults_are_the_authors() -> None:
    matrix, _, _ = _symmetric_problem(40, 8)
    matrix = matrix[:, :30]
    default = solve_rpca(matrix, solver="admm", max_iter=5)
    assert default.lam == AUTHORS_LAMBDA == 1 / 60
    # Default penalty mu = n m / (4 ||M||_1), ||M||_1 the largest absolute column sum.
    mu = 40 * 30 / (4 * matrix.abs().sum(dim=0).max().item())
    explicit = solve_rpca(matrix, solver="admm", max_iter=5, mu=mu)
    assert _rel(default.low_rank, explicit.low_rank) < 1e-10
    other = solve_rpca(matrix, solver="admm", max_iter=5, mu=2 * mu)
    assert _rel(default.low_rank, other.low_rank) > 1e-6


# --- result fields, options and edge cases ----------------------------------------------------


def test_result_fields() -> None:
    matrix, _, _ = _symmetric_problem(50, 9)
    result = solve_rpca(matrix, tol=1e-8)
    assert isinstance(result.iterations, int) and 1 <= result.iterations < 1000
    assert result.converged is True
    assert 0 < result.residual <= 1e-8
    assert result.lam == pytest.approx(1 / math.sqrt(50))
    # The residual reported is the one of the returned parts.
    actual = _rel(result.low_rank + result.sparse, matrix)
    assert actual == pytest.approx(result.residual, rel=1e-3, abs=1e-15)
    capped = solve_rpca(matrix, max_iter=3)
    assert capped.iterations == 3
    assert capped.converged is False
    assert capped.residual > 1e-7
    assert _rel(capped.low_rank + capped.sparse, matrix) == pytest.approx(capped.residual, 1e-3)


def test_given_initial_penalty_is_in_the_units_of_the_input() -> None:
    matrix, _, _ = _symmetric_problem(60, 10)
    mu0 = 1.25 / torch.linalg.matrix_norm(matrix, ord=2).item()
    default = solve_rpca(matrix)
    explicit = solve_rpca(matrix, mu=mu0)
    assert explicit.iterations == default.iterations
    assert _rel(explicit.low_rank, default.low_rank) < 1e-6
    slow_start = solve_rpca(matrix, mu=mu0 / 1000)
    assert slow_start.iterations > default.iterations


def test_rpca_wrapper_matches_solve_rpca() -> None:
    matrix, _, _ = _symmetric_problem(40, 11)
    low, sparse = rpca(matrix, 0.2, tol=1e-6)
    result = solve_rpca(matrix, 0.2, tol=1e-6)
    assert torch.equal(low, result.low_rank) and torch.equal(sparse, result.sparse)


@pytest.mark.parametrize("solver", ["ialm", "admm"])
def test_zero_matrix(solver: str) -> None:
    result = solve_rpca(torch.zeros(5, 7, dtype=torch.float64), solver=solver)
    assert result.iterations == 0 and result.converged and result.residual == 0.0
    assert result.low_rank.shape == (5, 7) and not result.low_rank.any()
    assert not result.sparse.any()


def test_float32_input_returns_float32() -> None:
    matrix, low0, _ = _symmetric_problem(80, 12)
    result = solve_rpca(matrix.float())
    assert result.low_rank.dtype == torch.float32 and result.sparse.dtype == torch.float32
    assert result.converged
    assert _rel(result.low_rank.double(), low0) < 1e-5


def test_numpy_input_is_accepted() -> None:
    low, sparse = rpca(np.eye(4))
    assert isinstance(low, torch.Tensor) and low.dtype == torch.float64
    assert torch.allclose(low + sparse, torch.eye(4, dtype=torch.float64), atol=1e-6)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_input_raises(bad: float) -> None:
    matrix = torch.ones(4, 4, dtype=torch.float64)
    matrix[1, 2] = bad
    with pytest.raises(ValueError, match="NaN or Inf"):
        solve_rpca(matrix)


@pytest.mark.parametrize("shape", [(2, 3, 3), (4,), ()])
def test_non_matrix_input_raises(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="2-D"):
        solve_rpca(torch.ones(shape, dtype=torch.float64))


@pytest.mark.parametrize("lam", [0.0, -0.1, math.nan])
@pytest.mark.parametrize("solver", ["ialm", "admm"])
def test_non_positive_lambda_raises(lam: float, solver: str) -> None:
    with pytest.raises(ValueError, match="lam"):
        solve_rpca(torch.eye(3, dtype=torch.float64), lam, solver=solver)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"solver": "pcp"}, "unknown RPCA solver"),
        ({"tol": 0.0}, "tol"),
        ({"max_iter": 0}, "max_iter"),
        ({"mu": -1.0}, "mu"),
    ],
)
def test_bad_options_raise(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        solve_rpca(torch.eye(3, dtype=torch.float64), **kwargs)


def test_bad_shapes_raise() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        solve_rpca(torch.zeros(0, 3))
    with pytest.raises(ValueError, match="square"):
        solve_rpca(torch.ones(2, 3), symmetric=True)
