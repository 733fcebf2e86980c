"""Jacobian fields and Gram matrices against a float64 full-Jacobian reference."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
import torch.nn.functional as F

from lowrankgan import jacobian_gram, load_model
from lowrankgan.core.gram import gram_from_field, mask_weights, sketch_gram
from lowrankgan.core.jacobian import analysis_view, chunk_size_for, jacobian_field
from lowrankgan.models.base import Model
from structured import structured_model


@pytest.fixture(scope="module")
def faces():
    return load_model("dcgan-faces")


def float64_jacobian(model: Model, latent: torch.Tensor) -> torch.Tensor:
    """Reference: the full Jacobian of a float64 copy, `(C, H, W, d)` float64."""
    network = copy.deepcopy(model.network).double()
    ref = dataclasses.replace(model, network=network)
    point = latent.double().reshape(1, -1)
    jac = torch.autograd.functional.jacobian(lambda z: ref.synthesize(z)[0], point)
    return jac.reshape(*jac.shape[:3], -1)


def reference_gram(jac: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    rows = jac * weights.double().sqrt().unsqueeze(0).unsqueeze(-1)
    rows = rows.reshape(-1, jac.shape[-1])
    return rows.T @ rows


def test_gram_matches_float64_reference_on_a_real_gan(faces):
    latent = faces.sample_latent(1)
    masks = torch.stack([faces.presets[n].mask(64, 64) for n in ("eyes", "mouth", "nose")])
    grams = jacobian_gram(faces, latent, masks)
    assert grams.dtype == torch.float64 and grams.shape == (3, 100, 100)
    jac = float64_jacobian(faces, latent)
    for gram, mask in zip(grams, masks, strict=True):
        expected = reference_gram(jac, mask.double())
        assert torch.allclose(gram, gram.T)
        rel = (gram - expected).abs().max() / expected.abs().max()
        assert rel < 1e-5, rel


def test_single_mask_returns_one_gram_equal_to_the_stacked_one(faces):
    latent = faces.sample_latent(2)
    eyes = faces.presets["eyes"].mask(64, 64)
    single = jacobian_gram(faces, latent, eyes)
    stacked = jacobian_gram(faces, latent, torch.stack([eyes, ~eyes]))
    assert single.shape == (100, 100)
    torch.testing.assert_close(single, stacked[0])


@pytest.mark.parametrize("chunk", [1, 7, 24])
def test_chunking_does_not_change_the_field(chunk):
    model = structured_model()
    latent = model.sample_latent(0)
    whole = jacobian_field(model, latent, chunk_size=24)
    torch.testing.assert_close(jacobian_field(model, latent, chunk_size=chunk), whole)


def test_downsampled_fused_gram_matches_reference_of_the_view():
    model = structured_model(torch.float64)
    latent = model.sample_latent(5)
    size = (8, 8)
    mask = torch.zeros(16, 16, dtype=torch.bool)
    mask[3:11, 2:9] = True  # straddles the 2x2 cells: fractional weights
    gram = jacobian_gram(model, latent, mask, size=size, fuse_channels=True)
    point = latent.double().reshape(1, -1)
    jac = torch.autograd.functional.jacobian(
        lambda z: analysis_view(model.synthesize(z), size, fuse_channels=True)[0], point
    )
    jac = jac.reshape(*jac.shape[:3], -1)
    weights = F.avg_pool2d(mask.double()[None, None], 2)[0, 0]
    expected = reference_gram(jac, weights)
    torch.testing.assert_close(gram, expected, rtol=1e-10, atol=1e-12)


def test_mask_weights_are_area_fractions():
    mask = torch.zeros(1, 4, 4, dtype=torch.bool)
    mask[0, 0, 0] = True
    mask[0, 2:4, 2:4] = True
    weights = mask_weights(mask, (2, 2))
    torch.testing.assert_close(weights, torch.tensor([[[0.25, 0.0], [0.0, 1.0]]]))


def test_gram_from_field_weights_pixels():
    field = torch.randn(5, 2, 3, 3)
    weights = torch.rand(2, 3, 3)
    weights[0, 0, 0] = 0.0
    grams = gram_from_field(field, weights)
    flat = field.double().reshape(5, 2, 9)
    for gram, w in zip(grams, weights, strict=True):
        expected = torch.einsum("icp,jcp,p->ij", flat, flat, w.double().reshape(9))
        torch.testing.assert_close(gram, expected)


def test_custom_directions_give_jacobian_vector_products():
    model = structured_model(torch.float64)
    latent = model.sample_latent(1)
    directions = torch.randn(3, model.latent_dim, dtype=torch.float64)
    field = jacobian_field(model, latent, directions=directions)
    full = jacobian_field(model, latent)
    expected = torch.einsum("kd,dchw->kchw", directions, full)
    torch.testing.assert_close(field, expected, rtol=1e-10, atol=1e-12)


def test_memory_budget_bounds_the_chunk(faces):
    assert chunk_size_for(faces, memory_budget=1) == 1
    assert chunk_size_for(faces, memory_budget=1 << 40) == faces.latent_dim
    small = chunk_size_for(faces, memory_budget=8 << 20)
    assert 1 <= small < faces.latent_dim


@pytest.mark.parametrize("sketch", [6, 9, 24])
def test_sketch_is_exact_when_the_gram_rank_fits(sketch):
    model = structured_model(torch.float64)
    latent = model.sample_latent(4)
    masks = torch.stack([model.presets[n].mask(16, 16) for n in ("left", "right", "center")])
    exact = jacobian_gram(model, latent, masks)
    approx = sketch_gram(model, latent, masks, sketch, seed=sketch)
    # left has rank 4 and right rank 6 by construction; center mixes both (rank 9)
    for i, rank in enumerate((4, 6, 9)):
        rel = (approx[i] - exact[i]).abs().max() / exact[i].abs().max()
        if sketch >= rank:
            assert rel < 1e-9, (i, rel)
        else:
            assert rel > 1e-6, (i, rel)


def test_sketch_approximates_the_principal_space_of_a_real_gan(faces):
    latent = faces.sample_latent(0)
    eyes = faces.presets["eyes"].mask(64, 64)
    exact = jacobian_gram(faces, latent, eyes)
    approx = sketch_gram(faces, latent, eyes, 60)
    top_exact = torch.linalg.eigh(exact)[1][:, -3:]
    top_approx = torch.linalg.eigh(approx)[1][:, -3:]
    cosines = torch.linalg.svdvals(top_exact.T @ top_approx)
    assert cosines.min() > 0.99
    assert torch.allclose(approx, approx.T) and torch.linalg.eigvalsh(approx).min() > -1e-9


def test_float32_gram_products_agree_with_float64_to_float32_rounding():
    gen = torch.Generator().manual_seed(7)
    field = torch.randn(20, 3, 40, 40, generator=gen)
    weights = torch.rand(2, 40, 40, generator=gen)
    exact = gram_from_field(field, weights)  # the default: float64 products
    fast = gram_from_field(field, weights, products="float32")
    assert fast.dtype == torch.float64
    rel = ((fast - exact).abs().max() / exact.abs().max()).item()
    assert 0 < rel < 1e-5, rel  # float32 rounding inside blocks, not float64's
    with pytest.raises(ValueError):
        gram_from_field(field, weights, products="float16")
