"""Property tests (hypothesis) for the subspace linear algebra."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lowrankgan.core.subspace import (
    canonical_signs,
    contrast_directions,
    eig_desc,
    energy_rank,
    null_space_basis,
    numerical_rank,
    principal_subspace,
    projected_directions,
)

dims = st.integers(min_value=3, max_value=12)
seeds = st.integers(min_value=0, max_value=2**31 - 1)
SETTINGS = settings(max_examples=40, deadline=None)


def random_psd(dim: int, rank: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    factor = torch.randn(dim, rank, generator=gen, dtype=torch.float64)
    return factor @ factor.T


@SETTINGS
@given(dims, st.data(), seeds)
def test_principal_and_null_spaces_split_the_latent_space(dim, data, seed):
    rank = data.draw(st.integers(min_value=1, max_value=dim - 1))
    gram = random_psd(dim, dim, seed)
    principal, values = principal_subspace(gram, rank)
    null = null_space_basis(gram, rank)
    assert principal.shape == (dim, rank) and null.shape == (dim, dim - rank)
    full = torch.cat([principal, null], dim=1)
    torch.testing.assert_close(
        full.T @ full, torch.eye(dim, dtype=torch.float64), atol=1e-9, rtol=0
    )
    assert torch.all(values[:-1] >= values[1:])
    # the null space carries the smallest part of the spectrum
    all_values, _ = eig_desc(gram)
    torch.testing.assert_close(torch.trace(null.T @ gram @ null), all_values[rank:].sum())


@SETTINGS
@given(dims, st.data(), seeds)
def test_projected_directions_are_unit_sorted_and_in_the_null_space(dim, data, seed):
    rank = data.draw(st.integers(min_value=1, max_value=dim - 1))
    region = random_psd(dim, dim, seed)
    keep = random_psd(dim, dim, seed + 1)
    principal, _ = principal_subspace(region, data.draw(st.integers(1, dim)))
    null = null_space_basis(keep, rank)
    directions, strengths = projected_directions(principal, null, region)
    torch.testing.assert_close(
        directions.norm(dim=0), torch.ones(directions.shape[1], dtype=torch.float64)
    )
    inside = null @ (null.T @ directions)
    torch.testing.assert_close(inside, directions, atol=1e-9, rtol=0)
    assert torch.all(strengths[:-1] >= strengths[1:] - 1e-12)
    expected = torch.einsum("ik,ij,jk->k", directions, region, directions)
    torch.testing.assert_close(strengths, expected)


@SETTINGS
@given(dims, seeds, st.floats(min_value=1e-6, max_value=1.0), st.floats(0.1, 100.0))
def test_contrast_solves_the_generalised_eigenproblem(dim, seed, tau, scale):
    region = random_psd(dim, dim, seed)
    keep = random_psd(dim, max(1, dim // 2), seed + 7)  # singular: the ridge matters
    directions, values = contrast_directions(region, keep, tau)
    ridge = tau * torch.trace(keep) / dim
    rhs = keep + ridge * torch.eye(dim, dtype=torch.float64)
    lhs_v = region @ directions
    rhs_v = rhs @ directions * values
    assert (lhs_v - rhs_v).abs().max() <= 1e-6 * lhs_v.abs().max()
    assert torch.all(values[:-1] >= values[1:])
    # scaling both matrices leaves the directions unchanged
    scaled, scaled_values = contrast_directions(region * scale, keep * scale, tau)
    # eigenvalue errors scale with the largest one (a tiny ridge makes the spread huge)
    atol = 1e-9 + 1e-12 * float(values.abs().max())
    torch.testing.assert_close(scaled_values, values, rtol=1e-6, atol=atol)
    overlap = (scaled.T @ directions).diagonal().abs()
    gaps = (values[:-1] - values[1:]).abs() / values[0].abs()
    distinct = torch.cat([gaps, gaps.new_ones(1)]) > 1e-4
    distinct &= torch.cat([gaps.new_ones(1), gaps]) > 1e-4
    assert torch.all(overlap[distinct] > 1 - 1e-5)


@SETTINGS
@given(
    st.lists(st.floats(min_value=0.0, max_value=1e3), min_size=1, max_size=20),
    st.floats(0.01, 1.0),
    st.floats(0.01, 1.0),
)
def test_energy_rank_is_monotone_and_sufficient(values, low, high):
    spectrum = torch.tensor(sorted(values, reverse=True), dtype=torch.float64)
    low, high = min(low, high), max(low, high)
    r_low, r_high = energy_rank(spectrum, low), energy_rank(spectrum, high)
    assert 1 <= r_low <= r_high <= spectrum.numel()
    if spectrum.sum() > 0:
        assert spectrum[:r_high].sum() >= high * spectrum.sum() * (1 - 1e-12)


def test_numerical_rank_matches_numpy():
    for seed, rank in [(0, 1), (1, 3), (2, 7)]:
        gram = random_psd(9, rank, seed)
        values, _ = eig_desc(gram)
        assert numerical_rank(values) == np.linalg.matrix_rank(gram.numpy()) == rank


@SETTINGS
@given(st.integers(2, 10), st.integers(1, 5), seeds)
def test_canonical_signs_is_idempotent_and_sign_invariant(dim, count, seed):
    gen = torch.Generator().manual_seed(seed)
    vectors = torch.randn(dim, count, generator=gen, dtype=torch.float64)
    fixed = canonical_signs(vectors)
    torch.testing.assert_close(canonical_signs(fixed), fixed)
    torch.testing.assert_close(canonical_signs(-vectors), fixed)
    rows = fixed.abs().argmax(dim=0)
    assert torch.all(fixed[rows, torch.arange(count)] > 0)
