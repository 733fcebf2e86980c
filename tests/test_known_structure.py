"""Known answers: principal space, null space and local directions of a generator built with
that structure (tests/structured.py), through the public API."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lowrankgan import analyze, edit, jacobian_gram
from lowrankgan.pipeline.edits import one_shot
from lowrankgan.pipeline.path import follow_path
from structured import LATENT_DIM, SIZE, structured_model


def residual_outside(vectors: np.ndarray, basis: torch.Tensor) -> float:
    """Largest norm of the part of each column of `vectors` outside span(basis)."""
    b = basis.double().numpy()
    rest = vectors - b @ (b.T @ vectors)
    return float(np.linalg.norm(rest, axis=0).max())


@pytest.fixture(scope="module")
def model():
    return structured_model()


@pytest.fixture(scope="module")
def latent(model):
    return model.sample_latent(3)


def test_region_gram_has_the_built_in_rank(model, latent):
    grams = jacobian_gram(
        model,
        latent,
        torch.stack(
            [model.presets["left"].mask(SIZE, SIZE), model.presets["right"].mask(SIZE, SIZE)]
        ),
    )
    left_values = torch.linalg.eigvalsh(grams[0]).flip(0)
    right_values = torch.linalg.eigvalsh(grams[1]).flip(0)
    assert (left_values[:4] > 1e-3 * left_values[0]).all()
    assert (left_values[4:].abs() < 1e-9 * left_values[0]).all()
    assert (right_values[:6] > 1e-3 * right_values[0]).all()
    assert (right_values[6:].abs() < 1e-9 * right_values[0]).all()


@pytest.mark.parametrize("use_rpca", [True, False])
def test_lowrank_recovers_principal_null_and_local_spaces(model, latent, use_rpca):
    result = analyze(model, latent, "left", rank=4, keep_rank=6, use_rpca=use_rpca)
    net = model.network
    assert result.region_basis.shape == (LATENT_DIM, 4)
    assert result.null_basis.shape == (LATENT_DIM, LATENT_DIM - 6)
    # principal space of the region = span(region_basis)
    assert residual_outside(result.region_basis, net.region_basis) < 1e-4
    # null space of the kept half = orthogonal complement of span(keep_basis)
    assert np.abs(net.keep_basis.double().numpy().T @ result.null_basis).max() < 1e-4
    # local directions lie in the region's subspace orthogonal to the kept one
    assert residual_outside(result.directions, net.local_basis) < 1e-4
    norms = np.linalg.norm(result.directions, axis=0)
    np.testing.assert_allclose(norms, 1.0, atol=1e-10)
    assert np.all(np.diff(result.direction_strengths) <= 1e-12)


def test_automatic_keep_rank_finds_the_built_in_rank(model, latent):
    result = analyze(model, latent, "left")
    assert result.info["ranks"]["keep"] == 6
    assert residual_outside(result.directions, model.network.local_basis) < 1e-4


def test_contrast_directions_stay_out_of_the_kept_subspace(model, latent):
    result = analyze(model, latent, "left", method="contrast", contrast_tau=1e-8, rank=4)
    top = result.directions[:, :3]
    assert residual_outside(top, model.network.local_basis) < 1e-3


@pytest.mark.parametrize("strength", [0.5, 3.0, 8.0])
def test_local_edit_leaves_the_kept_half_exactly_unchanged(model, latent, strength):
    result = analyze(model, latent, "left", rank=4, keep_rank=6)
    direction = torch.from_numpy(result.directions[:, 0]).float()
    edited = one_shot(latent, direction, [strength])
    before, after = model.synthesize(latent)[0], model.synthesize(edited)[0]
    right = slice(SIZE // 2, SIZE)
    assert (after[:, :, right] - before[:, :, right]).abs().max() < 1e-5
    assert (after[:, :, : SIZE // 2] - before[:, :, : SIZE // 2]).abs().max() > 1e-2


def test_region_own_direction_is_not_local(model, latent):
    result = analyze(model, latent, "left", rank=4, keep_rank=6)
    own = torch.from_numpy(result.region_basis).float()
    moved = [
        (model.synthesize(one_shot(latent, own[:, i], [1.0]))[0] - model.synthesize(latent)[0])[
            :, :, SIZE // 2 :
        ]
        .abs()
        .max()
        for i in range(4)
    ]
    assert max(moved) > 1e-2


def test_path_following_on_a_flat_null_space_is_the_straight_line(model, latent):
    result = analyze(model, latent, "left", rank=4, keep_rank=6)
    direction = torch.from_numpy(result.directions[:, 0]).float()
    keep = torch.from_numpy(result.keep_mask)
    path = follow_path(model, latent, direction, [-2.0, 0.0, 1.0, 2.0], keep, 6, step=0.5)
    path = path.latents
    line = one_shot(latent, direction, [-2.0, 0.0, 1.0, 2.0])
    torch.testing.assert_close(path, line, atol=1e-5, rtol=0)


def test_edit_api_path_and_one_shot_agree_here(model, latent):
    result = analyze(model, latent, "left", rank=4, keep_rank=6)
    path = edit(model, latent, result.directions[:, 0], [1.5], region="left", keep_rank=6, step=0.5)
    line = edit(model, latent, result.directions[:, 0], [1.5], one_shot_edit=True).latents
    path = path.latents
    torch.testing.assert_close(path, line, atol=1e-5, rtol=0)
    assert abs(float((line[0] - latent).norm()) - 1.5) < 1e-5


def test_sketched_analysis_recovers_the_same_spaces(model, latent):
    result = analyze(model, latent, "left", rank=4, keep_rank=6, sketch=12)
    assert residual_outside(result.region_basis, model.network.region_basis) < 1e-4
    assert residual_outside(result.directions, model.network.local_basis) < 1e-4
    assert result.info["settings"]["sketch"] == 12
