"""BigGAN-deep: loading the HF format, forward equations, spectral norm, truncation, sampling."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch
from torch.func import jvp, vmap

from biggan_checkpoints import write_biggan
from lowrankgan.errors import UserInputError
from lowrankgan.models.biggan.network import (
    BigGANDeep,
    load_biggan,
    read_config,
    spectral_sigma,
    standing_stats,
    truncated_normal,
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("biggan32")
    write_biggan(path, output_dim=32)
    return path


@pytest.fixture(scope="module")
def model(folder: Path) -> BigGANDeep:
    return load_biggan(folder)[0]


def _inputs(batch: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    z = truncated_normal(batch, 8, 0.5, seed)
    onehot = torch.nn.functional.one_hot(torch.arange(batch) % 10, 10).float()
    return z, onehot


@pytest.mark.parametrize("size", [16, 32])
def test_shapes_and_range(tmp_path: Path, size: int) -> None:
    write_biggan(tmp_path, output_dim=size)
    network, config = load_biggan(tmp_path)
    assert config.output_dim == size and config.n_stats == 51
    z, onehot = _inputs(3)
    with torch.no_grad():
        images = network(z, onehot, 0.5)
    assert images.shape == (3, 3, size, size)
    assert images.abs().max() <= 1 and images.std() > 1e-3


def test_state_dict_keys_match_file(folder: Path, model: BigGANDeep) -> None:
    stored = torch.load(folder / "pytorch_model.bin", weights_only=True)
    ours = model.state_dict()
    assert sorted(ours) == sorted(stored)
    assert all(ours[k].shape == stored[k].shape for k in stored)
    assert "generator.layers.4.snconv1x1_o_conv.weight_orig" in stored  # attention at entry 4
    assert "generator.layers.6.conv_3.bias" in stored  # 6 blocks + attention -> entries 0..6


def test_deterministic(folder: Path, model: BigGANDeep) -> None:
    z, onehot = _inputs()
    other, _ = load_biggan(folder)
    with torch.no_grad():
        assert torch.equal(model(z, onehot, 0.4), model(z, onehot, 0.4))
        assert torch.equal(model(z, onehot, 0.4), other(z, onehot, 0.4))


def test_class_changes_image(model: BigGANDeep) -> None:
    z = truncated_normal(1, 8, 0.5, 1)
    eye = torch.eye(10)
    with torch.no_grad():
        a, b = model(z, eye[:1], 0.5), model(z, eye[1:2], 0.5)
    assert (a - b).abs().max() > 1e-3


def test_truncation_picks_standing_stats(model: BigGANDeep) -> None:
    z, onehot = _inputs()
    with torch.no_grad():
        assert (model(z, onehot, 0.4) - model(z, onehot, 0.6)).abs().max() > 1e-3
    table = torch.arange(51.0)[:, None] * torch.ones(1, 2)
    assert torch.equal(standing_stats(table, 0.4), table[20])
    assert torch.equal(standing_stats(table, 0.7), table[35])  # 0.7 / 0.02 is exactly 35
    # Non-grid: mean[i] * frac + mean[i + 1] * (1 - frac), i = 20, frac = 0.25.
    assert torch.allclose(standing_stats(table, 0.405), torch.full((2,), 20 * 0.25 + 21 * 0.75))


@pytest.mark.parametrize(
    "truncation, row", [(0.14, 8), (0.28, 15), (0.56, 29), (0.58, 28), (0.94, 46)]
)
def test_truncation_rounds_as_pytorch_pretrained_biggan(truncation, row) -> None:
    """The package's `modf(t / step)` with its float rounding: near-grid values use the row
    its rounding lands on (a near-grid snap would use the other one)."""
    table = torch.randn(51, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    step = 1.0 / (51 - 1)
    coef, start = math.modf(truncation / step)
    reference = table[int(start)] * coef + table[int(start) + 1] * (1 - coef)
    torch.testing.assert_close(standing_stats(table, truncation), reference, rtol=0, atol=0)
    torch.testing.assert_close(standing_stats(table, truncation), table[row], rtol=0, atol=1e-13)
    assert round(truncation * 50) != row  # the nearest grid row, which a snap would take


def test_non_grid_truncation_matches_documented_weights(model: BigGANDeep) -> None:
    # Writing the documented mix into entry 20 must make t = 0.4 reproduce t = 0.405.
    patched = copy.deepcopy(model)
    for name, buf in patched.named_buffers():
        if name.endswith(("running_means", "running_vars")):
            buf[20] = buf[20] * 0.25 + buf[21] * 0.75
    z, onehot = _inputs()
    with torch.no_grad():
        expected = model(z, onehot, 0.405)
        assert torch.allclose(patched(z, onehot, 0.4), expected, atol=1e-6)
        assert (model(z, onehot, 0.4) - expected).abs().max() > 1e-4


def test_spectral_norm_divides_by_stored_sigma(folder: Path, model: BigGANDeep) -> None:
    stored = torch.load(folder / "pytorch_model.bin", weights_only=True)
    prefix = "generator.layers.1.conv_1."
    w, u, v = (stored[prefix + k].double() for k in ("weight_orig", "weight_u", "weight_v"))
    sigma = float(u @ (w.reshape(w.shape[0], -1) @ v))
    assert sigma > 0
    assert abs(float(spectral_sigma(w, u, v)) - sigma) < 1e-9
    layer = model.generator.layers[1].conv_1
    assert torch.allclose(layer.weight.double(), w / sigma, rtol=1e-6, atol=1e-7)
    # torch's own eval-mode spectral_norm reads the same stored u, v without iterating.
    reference = torch.nn.utils.spectral_norm(torch.nn.Conv2d(w.shape[1], w.shape[0], 3)).double()
    reference.load_state_dict({"weight_orig": w, "weight_u": u, "weight_v": v}, strict=False)
    reference.eval()
    reference(torch.zeros(1, w.shape[1], 3, 3, dtype=torch.float64))
    assert torch.allclose(reference.weight, w / sigma, rtol=1e-12)
    # No power iteration at run time: the stored u, v stay untouched by a forward pass.
    with torch.no_grad():
        model(*_inputs(), 0.5)
    assert torch.equal(layer.weight_u, stored[prefix + "weight_u"])


def test_vmap_jvp_matches_finite_differences(model: BigGANDeep) -> None:
    net = copy.deepcopy(model).double()
    z, onehot = _inputs(2, seed=3)
    z, onehot = z.double(), onehot.double()
    directions = torch.randn(3, *z.shape, generator=torch.Generator().manual_seed(0)).double()

    def image(latent: torch.Tensor) -> torch.Tensor:
        return net(latent, onehot, 0.5)

    tangents = vmap(lambda d: jvp(image, (z,), (d,))[1])(directions)
    step = 1e-6
    with torch.no_grad():
        for d, tangent in zip(directions, tangents, strict=True):
            fd = (image(z + step * d) - image(z - step * d)) / (2 * step)
            assert (tangent - fd).norm() / fd.norm() < 1e-6


def _rewrite_config(folder: Path, **changes: object) -> None:
    path = folder / "config.json"
    raw = json.loads(path.read_text())
    raw.update(changes)
    path.write_text(json.dumps(raw))


def test_mismatched_config_is_user_error(tmp_path: Path) -> None:
    write_biggan(tmp_path)
    _rewrite_config(tmp_path, channel_width=8)
    with pytest.raises(UserInputError, match="does not match"):
        load_biggan(tmp_path)
    _rewrite_config(tmp_path, channel_width=4, num_classes=11)
    with pytest.raises(UserInputError, match="embeddings.weight"):
        load_biggan(tmp_path)


@pytest.mark.parametrize(
    "changes",
    [
        {"eps": "small"},
        {"z_dim": 0},
        {"n_stats": True},
        {"layers": [[False, 8]]},
        {"attention_layer_position": 99},
        {"output_dim": 64},
    ],
)
def test_malformed_config(tmp_path: Path, changes: dict) -> None:
    write_biggan(tmp_path)
    _rewrite_config(tmp_path, **changes)
    with pytest.raises(UserInputError) as info:
        read_config(tmp_path / "config.json")
    assert "\n" not in str(info.value)


def test_missing_files_and_nan_weights(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="not found"):
        load_biggan(tmp_path / "nowhere")
    state = write_biggan(tmp_path)
    (tmp_path / "pytorch_model.bin").unlink()
    with pytest.raises(UserInputError, match="pytorch_model.bin"):
        load_biggan(tmp_path)
    state["generator.layers.0.conv_0.bias"][0] = float("nan")
    torch.save(state, tmp_path / "pytorch_model.bin")
    with pytest.raises(UserInputError, match="NaN"):
        load_biggan(tmp_path)
    (tmp_path / "pytorch_model.bin").write_bytes(b"not a checkpoint")
    with pytest.raises(UserInputError, match="cannot read"):
        load_biggan(tmp_path)


def test_truncated_normal() -> None:
    a = truncated_normal(64, 128, 0.5, seed=7)
    assert a.shape == (64, 128) and a.dtype == torch.float32
    assert a.abs().max() < 1.0  # |x| < 2 before scaling by 0.5
    assert torch.equal(a, truncated_normal(64, 128, 0.5, seed=7))
    assert not torch.equal(a, truncated_normal(64, 128, 0.5, seed=8))
    full = truncated_normal(64, 128, 1.0, seed=7)
    assert torch.allclose(full * 0.5, a) and full.abs().max() > 1.5
    assert 0.8 < float(full.std()) < 0.95  # truncnorm(-2, 2) has std 0.880


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.01, float("nan")])
def test_truncation_out_of_range(model: BigGANDeep, bad: float) -> None:
    with pytest.raises(UserInputError, match="truncation"):
        truncated_normal(1, 8, bad, 0)
    with pytest.raises(UserInputError, match="truncation"):
        model(*_inputs(), bad)
