"""SeFa and GANSpace: the latent-facing weights of every family, known-answer PCA, and the
region-based selection that makes them comparable with the local methods."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import sg2_checkpoints as sg2
from biggan_checkpoints import write_biggan
from lowrankgan import UserInputError, analyze, load_model
from lowrankgan.core.baselines import (
    by_region_response,
    ganspace_directions,
    latent_layer_weights,
    sefa_directions,
)
from lowrankgan.models.base import Model
from lowrankgan.models.stylegan2.network import random_stylegan2, style_affines
from structured import LATENT_DIM, layered_structured_model, structured_model


def _model(network: nn.Module, dim: int, **extra) -> Model:
    return Model(
        name="toy",
        network=network.eval(),
        latent_dim=dim,
        resolution=(4, 4),
        synthesis_fn=lambda net, z, c: net(z),
        **extra,
    )


class _ConvFirst(nn.Module):
    """A condition appended to z, then a padded transposed convolution on the 1x1 latent."""

    def __init__(self, dim: int, classes: int, padding: int) -> None:
        super().__init__()
        self.dim, self.classes = dim, classes
        self.conv = nn.ConvTranspose2d(dim + classes, 3, 6, 1, padding, bias=False)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        onehot = torch.zeros(z.shape[0], self.classes, dtype=z.dtype)
        onehot[:, 1] = 1
        x = torch.cat([z, onehot], 1).reshape(z.shape[0], -1, 1, 1)
        image = torch.tanh(self.conv(x))
        return nn.functional.interpolate(image, size=(4, 4))


@pytest.mark.parametrize("padding", [0, 1])
def test_transposed_convolution_weights_are_the_linear_map(padding):
    torch.manual_seed(0)
    dim = 5
    network = _ConvFirst(dim, classes=3, padding=padding)
    weights = latent_layer_weights(_model(network, dim))
    # The layer's output on a 1x1 input is linear in z: check A v against the real layer.
    z, v = torch.randn(1, dim), torch.randn(1, dim)
    onehot = torch.zeros(1, 3)
    onehot[0, 1] = 1

    def layer(latent: torch.Tensor) -> torch.Tensor:
        return network.conv(torch.cat([latent, onehot], 1).reshape(1, -1, 1, 1)).reshape(-1)

    moved = (layer(z + v) - layer(z)).double()
    torch.testing.assert_close(weights @ v[0].double(), moved, rtol=1e-5, atol=1e-6)
    assert weights.shape == (3 * (6 - 2 * padding) ** 2, dim)


def test_sefa_on_the_face_gan_matches_its_first_layer_by_hand():
    faces = load_model("dcgan-faces")
    directions, values = sefa_directions(faces, count=5)
    weight = faces.network.convs[0].weight.detach().double().reshape(100, -1)
    expected_values, expected = torch.linalg.eigh(weight @ weight.T)
    expected_values, expected = expected_values.flip(0)[:5], expected.flip(1)[:, :5]
    torch.testing.assert_close(values, expected_values, rtol=1e-9, atol=0)
    cosines = (directions * expected).sum(0).abs()
    assert (cosines > 1 - 1e-9).all()
    torch.testing.assert_close(directions.T @ directions, torch.eye(5, dtype=torch.float64))


def test_sefa_is_refused_without_a_latent_reading_layer():
    with pytest.raises(UserInputError, match="sefa needs a first layer"):
        sefa_directions(structured_model())  # reads the latent with plain matmuls


def test_sefa_on_the_structured_generator_spans_both_halves():
    model = layered_structured_model()
    directions, values = sefa_directions(model, count=24)
    # A = [R K]^T: rank 9 (the halves share one direction), and that shared one is on top.
    assert (values[:9] > 0.5).all() and (values[9:] < 1e-12).all()
    shared = model.network.region_basis[:, 3].double()
    assert abs(float(directions[:, 0] @ shared)) > 1 - 1e-9


def _captured_affines(network, run) -> torch.Tensor:  # noqa: ANN001
    outputs: list[torch.Tensor] = []
    handles = [
        affine.register_forward_hook(lambda m, i, o: outputs.append(o.reshape(-1)))
        for _, affine in style_affines(network.synthesis)
    ]
    try:
        run()
    finally:
        for handle in handles:
            handle.remove()
    return torch.cat(outputs).double()


@pytest.fixture(scope="module")
def sg2_file(tmp_path_factory) -> Path:
    generator = random_stylegan2(resolution=16, channels_max=16, z_dim=8, w_dim=8)
    path = tmp_path_factory.mktemp("sg2") / "net.pkl"
    sg2.write_nvidia_pkl(path, generator.state_dict(), conv_clamp=None)
    return path


@pytest.mark.parametrize(
    "options", [{"space": "w"}, {"space": "wplus", "layers": "1-2"}, {"space": "z"}]
)
def test_stylegan2_latent_weights_are_what_the_network_reads(sg2_file: Path, options):
    model = load_model(sg2_file, truncation=1.0, **options)
    weights = latent_layer_weights(model)
    assert weights.shape[1] == model.latent_dim
    x = model.sample_latent(0)
    v = torch.randn(model.latent_dim, generator=torch.Generator().manual_seed(1))
    if options["space"] == "z":
        fc0 = model.network.mapping.fc0
        normalised = (x * x.square().mean().rsqrt()).double()
        expected = weights @ normalised
        got = (fc0.weight * fc0.weight_gain).double() @ normalised
        torch.testing.assert_close(got, expected)
        return
    # Style affines are affine in the latent: the change along v is A v, through the real
    # synthesis (which routes W+ blocks to layers).
    before = _captured_affines(model.network, lambda: model.synthesize(x))
    after = _captured_affines(model.network, lambda: model.synthesize(x + v))
    torch.testing.assert_close(after - before, weights @ v.double(), rtol=1e-4, atol=1e-5)
    directions, _ = sefa_directions(model, count=4)
    assert directions.shape == (model.latent_dim, 4)


def test_biggan_latent_weights_are_gen_z_on_z(tmp_path: Path):
    write_biggan(tmp_path, output_dim=32, channel_width=4, num_classes=10)
    model = load_model(tmp_path)
    weights = latent_layer_weights(model)
    gen_z = model.network.generator.gen_z
    z = model.sample_latent(0)
    v = torch.randn(model.latent_dim, generator=torch.Generator().manual_seed(2))
    outputs: list[torch.Tensor] = []
    handle = gen_z.register_forward_hook(lambda m, i, o: outputs.append(o.reshape(-1)))
    model.synthesize(z)
    model.synthesize(z + v)
    handle.remove()
    moved = (outputs[1] - outputs[0]).double()
    torch.testing.assert_close(weights @ v.double(), moved, rtol=1e-4, atol=1e-5)
    assert model.pca_features == "generator.layers.1"
    directions, _ = ganspace_directions(model, count=3, samples=64)
    assert directions.shape == (model.latent_dim, 3)


def test_ganspace_on_latents_finds_the_axes_of_largest_variance():
    scales = torch.tensor([0.5, 3.0, 1.0, 2.0, 0.2, 0.1] + [0.05] * 18, dtype=torch.float64)

    def sampler(model: Model, seed: int) -> torch.Tensor:
        noise = torch.randn(LATENT_DIM, generator=torch.Generator().manual_seed(seed))
        return (noise.double() * scales).float()

    model = _model(
        structured_model().network, LATENT_DIM, latent_sampler=sampler, pca_features="latent"
    )
    directions, variance = ganspace_directions(model, count=3, samples=4000)
    for column, axis in enumerate([1, 3, 2]):
        assert abs(float(directions[axis, column])) > 0.99
    np.testing.assert_allclose(variance.numpy(), [9.0, 4.0, 1.0], rtol=0.1)


def test_ganspace_on_linear_features_recovers_their_right_singular_vectors():
    # Features y = B z with z standard normal: PCA of y, regressed back onto z, gives B's
    # leading right singular vectors (well separated here: 8, 4, 2, then below 1).
    model = layered_structured_model()
    scales = torch.tensor([8.0, 4.0, 2.0, 0.5, 0.5, 0.4, 0.3, 0.3, 0.2, 0.2])
    with torch.no_grad():
        model.network.first.weight.mul_(scales.unsqueeze(1))
    weight = model.network.first.weight.detach().double()
    _, _, right = torch.linalg.svd(weight, full_matrices=False)
    directions, _ = ganspace_directions(model, count=3, samples=4000)
    cosines = (directions * right[:3].T).sum(0).abs()
    assert (cosines > 0.995).all(), cosines


def test_ganspace_needs_a_layer_and_a_real_module():
    model = structured_model()
    with pytest.raises(UserInputError, match="ganspace needs an early layer"):
        ganspace_directions(model)
    with pytest.raises(UserInputError, match="no module 'nope'"):
        ganspace_directions(layered_structured_model(), layer="nope")


def test_region_selection_orders_candidates_by_region_response():
    gram = torch.diag(torch.tensor([1.0, 5.0, 3.0], dtype=torch.float64))
    candidates = torch.eye(3, dtype=torch.float64)
    directions, responses, order = by_region_response(candidates, gram)
    assert order.tolist() == [1, 2, 0]
    assert responses.tolist() == [5.0, 3.0, 1.0]
    torch.testing.assert_close(directions, candidates[:, [1, 2, 0]])


@pytest.mark.parametrize("method", ["sefa", "ganspace", "jacobian"])
def test_analyze_offers_every_method_behind_one_interface(method):
    model = layered_structured_model()
    latent = model.sample_latent(0)
    result = analyze(model, latent, "left", method=method, pca_samples=500)
    strengths = result.direction_strengths
    assert np.all(np.diff(strengths) <= 1e-12)  # strongest region response first
    np.testing.assert_allclose(np.linalg.norm(result.directions, axis=0), 1.0, atol=1e-9)
    if method == "jacobian":
        np.testing.assert_array_equal(result.directions, result.region_basis)
    else:
        assert result.directions.shape[1] == 10 and result.info["method"] == method
        assert sorted(result.info["candidates"]) == list(range(10))


def test_multi_image_analysis_averages_grams_over_samples():
    model = layered_structured_model()
    latent = model.sample_latent(0)
    single = analyze(model, latent, "left", method="contrast")
    multi = analyze(model, latent, "left", method="contrast", samples=4)
    assert multi.info["samples"] == 4
    # The structure holds on every image, so the averaged Grams give local directions too.
    right = torch.zeros(16, 16, dtype=torch.bool)
    right[:, 8:] = True
    for result in (single, multi):
        top = torch.from_numpy(result.direction(0)).float()
        moved = model.synthesize(latent + 2 * top) - model.synthesize(latent)
        # contrast's ridge (tau) leaves a trace of the kept half, far below the edit
        assert moved[..., right].abs().max() < 1e-2 * moved[..., ~right].abs().max()
    assert not np.allclose(single.direction(0), multi.direction(0))


@settings(max_examples=30, deadline=None)
@given(
    dim=st.integers(min_value=2, max_value=10),
    outputs=st.integers(min_value=1, max_value=20),
    seed=st.integers(min_value=0, max_value=2**31 - 1),
)
def test_sefa_solves_its_eigenproblem(dim, outputs, seed):
    generator = torch.Generator().manual_seed(seed)
    network = nn.Sequential(nn.Linear(dim, outputs), nn.Unflatten(1, (outputs, 1, 1)))
    with torch.no_grad():
        network[0].weight.copy_(torch.randn(outputs, dim, generator=generator))
    model = _model(network, dim)
    directions, values = sefa_directions(model, count=dim)
    weights = network[0].weight.detach().double()
    gram = weights.T @ weights
    torch.testing.assert_close(gram @ directions, directions * values, rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(directions.T @ directions, torch.eye(dim, dtype=torch.float64))
    assert torch.all(values[:-1] >= values[1:] - 1e-9)


@settings(max_examples=40, deadline=None)
@given(
    dim=st.integers(min_value=2, max_value=12),
    count=st.integers(min_value=1, max_value=12),
    seed=st.integers(min_value=0, max_value=2**31 - 1),
)
def test_region_selection_is_a_sort_by_response(dim, count, seed):
    generator = torch.Generator().manual_seed(seed)
    factor = torch.randn(dim, dim, generator=generator, dtype=torch.float64)
    gram = factor @ factor.T
    candidates = torch.randn(dim, count, generator=generator, dtype=torch.float64)
    candidates = candidates / candidates.norm(dim=0)
    directions, responses, order = by_region_response(candidates, gram)
    assert sorted(order.tolist()) == list(range(count))
    torch.testing.assert_close(directions, candidates[:, order])
    torch.testing.assert_close(responses, torch.einsum("ik,ij,jk->k", directions, gram, directions))
    assert torch.all(responses[:-1] >= responses[1:])
