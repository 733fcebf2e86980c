"""Jacobian fields and Gram matrices against a float64 full-Jacobian reference."""

from __future__ import annotations

import copy
import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from lowrankgan import jacobian_gram, load_model
from lowrankgan.core import jacobian as jac
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


def test_chunks_of_one_are_linearised_and_give_the_same_field(faces, monkeypatch):
    """Chunks of one tangent (big networks on a CPU) run through `torch.func.linearize`."""
    calls: list[int] = []
    original = jac.linearized_view

    def spy(*args):
        push = original(*args)
        calls.append(push is not None)
        return push

    monkeypatch.setattr(jac, "linearized_view", spy)
    latent = faces.sample_latent(3)
    one = jacobian_field(faces, latent, chunk_size=1)
    assert calls == [True]
    whole = jacobian_field(faces, latent, chunk_size=faces.latent_dim)
    torch.testing.assert_close(one, whole, rtol=1e-5, atol=1e-6)
    assert calls == [True]  # a single chunk needs no linearisation


def test_a_network_that_cannot_be_traced_falls_back_to_eager_products():
    model = structured_model(torch.float64)
    plain = model.synthesis_fn

    def branching(network, latents, condition):
        # Python control flow on a tensor value: tracing cannot follow it
        return plain(network, latents, condition) * (2.0 if bool(latents.sum() > -1e9) else 1.0)

    branchy = dataclasses.replace(model, synthesis_fn=branching)
    latent = model.sample_latent(0)
    assert jac.linearized_view(branchy, latent.reshape(1, -1)) is None
    field = jacobian_field(branchy, latent, chunk_size=1)
    torch.testing.assert_close(field, 2.0 * jacobian_field(model, latent, chunk_size=1))


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


def test_a_region_test_matrix_is_exact_on_its_region_and_sees_others_only_there():
    """`range_mask=0`: the test matrix samples the left half's rows (rank 4), so the left
    Gram is exact from K = 4, and the right half's is exact on the span of those rows only
    (a Nystrom approximation is exact on its test matrix's range), not elsewhere."""
    model = structured_model(torch.float64)
    latent = model.sample_latent(4)
    masks = torch.stack([model.presets[n].mask(16, 16) for n in ("left", "right")])
    exact = jacobian_gram(model, latent, masks)
    values, vectors = torch.linalg.eigh(exact[0])
    rows = vectors[:, values > 1e-9 * values.max()]
    assert rows.shape[1] == 4
    for sketch in (4, 7):
        approx = sketch_gram(model, latent, masks, sketch, range_mask=0)
        assert (approx[0] - exact[0]).abs().max() / exact[0].abs().max() < 1e-9
        on_rows = rows.T @ (approx[1] - exact[1]) @ rows
        assert on_rows.abs().max() < 1e-9 * exact[1].abs().max()
        assert (approx[1] - exact[1]).abs().max() > 1e-3 * exact[1].abs().max()


def _decaying_linear_model(seed: int, dim: int = 48) -> Model:
    """A linear generator `(dim,) -> (3, 16, 16)` whose top half has Jacobian
    `U diag(0.8^i) V^T` (full rank, a slowly decaying spectrum) and a random bottom half."""
    generator = torch.Generator().manual_seed(seed)
    half = 3 * 8 * 16
    left = torch.linalg.qr(torch.randn(half, dim, generator=generator, dtype=torch.float64))[0]
    right = torch.linalg.qr(torch.randn(dim, dim, generator=generator, dtype=torch.float64))[0]
    top = left * 0.8 ** torch.arange(dim, dtype=torch.float64) @ right.T
    bottom = torch.randn(half, dim, generator=generator, dtype=torch.float64)
    weight = torch.cat([top.reshape(3, 8, 16, dim), bottom.reshape(3, 8, 16, dim)], 1)
    network = torch.nn.Linear(dim, 3 * 16 * 16, bias=False).double()
    with torch.no_grad():
        network.weight.copy_(weight.reshape(-1, dim))
    network.requires_grad_(False)
    return Model(
        name="decaying",
        network=network,
        latent_dim=dim,
        resolution=(16, 16),
        synthesis_fn=lambda net, z, c: net(z).view(-1, 3, 16, 16),
    )


def test_a_region_test_matrix_finds_the_region_principal_space_better_than_a_gaussian():
    """Top-3 principal angle of the region's Gram at K = 8 of 48, on generators whose
    region spectrum decays by 0.8 per index: the region test matrix is one subspace
    iteration ahead (error ~ 0.8^(2K) against ~0.8^K): measured over 6
    generators and seeds."""
    top = torch.zeros(16, 16, dtype=torch.bool)
    top[:8] = True
    masks = torch.stack([top, ~top])

    def angle(a: torch.Tensor, b: torch.Tensor) -> float:
        lead = [torch.linalg.eigh(g)[1][:, -3:] for g in (a, b)]
        cosine = torch.linalg.svdvals(lead[0].T @ lead[1]).min().clamp(max=1)
        return math.degrees(math.acos(float(cosine)))

    region, gaussian = [], []
    for seed in range(6):
        model = _decaying_linear_model(seed)
        exact = jacobian_gram(model, torch.zeros(48, dtype=torch.float64), masks)[0]
        for test, out in ((0, region), (None, gaussian)):
            approx = sketch_gram(model, torch.zeros(48), masks, 8, seed=seed, range_mask=test)
            out.append(angle(approx[0], exact))
    assert sorted(region)[3] < 3.0, region
    assert sum(region) * 3 < sum(gaussian), (region, gaussian)


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


def test_region_grams_sketch_each_pair_from_its_own_region():
    """In sketch mode with the region test, `region_grams` takes the masks as (region, kept)
    pairs: each pair's region builds its own test matrix, so both regions (left rank 4,
    right rank 6) come out exact, where one test matrix from the first mask alone leaves the
    right half inexact."""
    from lowrankgan.pipeline.analysis import region_grams
    from lowrankgan.pipeline.settings import AnalysisSettings

    model = structured_model(torch.float64)
    latent = model.sample_latent(2)
    left, right = (model.presets[n].mask(16, 16) for n in ("left", "right"))
    masks = torch.stack([left, right, right, left])
    exact = region_grams(model, latent, masks, AnalysisSettings())
    sketched = region_grams(model, latent, masks, AnalysisSettings(sketch=6))
    for i in (0, 2):
        assert (sketched[i] - exact[i]).abs().max() < 1e-9 * exact[i].abs().max()
    one_test = sketch_gram(model, latent, masks, 6, range_mask=0)
    raw = jacobian_gram(model, latent, masks)
    assert (one_test[2] - raw[2]).abs().max() > 1e-6 * raw[2].abs().max()
