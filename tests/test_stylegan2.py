"""StyleGAN2 generator: exactness against golden tensors, names, config, forward mode, errors.

The golden tensors come from an independent, literal reference implementation of the official
equations in tests/make_stylegan2_golden.py (regenerate with
`.venv/bin/python tests/make_stylegan2_golden.py`).
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
from torch.func import jvp, vmap

from lowrankgan.errors import UserInputError
from lowrankgan.models.stylegan2.network import (
    StyleGAN2Config,
    StyleGAN2Generator,
    build_stylegan2,
    config_from_state_dict,
    official_channels,
    random_stylegan2,
)

DATA = Path(__file__).parent / "data" / "stylegan2"
GOLDEN = ["uncond16", "cond32_clamp256", "gray8_clamp05"]


def _load(name: str) -> dict:
    return torch.load(DATA / f"{name}.pt", weights_only=True)


def _close(actual: torch.Tensor, expected: torch.Tensor, rel: float = 1e-5) -> None:
    """Elementwise within rel * max|expected| (float32 sums of O(100) terms)."""
    torch.testing.assert_close(actual, expected, rtol=rel, atol=rel * expected.abs().max().item())


@pytest.fixture(scope="module")
def small() -> StyleGAN2Generator:
    return random_stylegan2(resolution=16, channels_max=16, z_dim=8, w_dim=8, seed=3)


# ---------------------------------------------------------------------------------------------
# Exactness


@pytest.mark.parametrize("name", GOLDEN)
def test_golden_mapping_and_synthesis(name: str) -> None:
    d = _load(name)
    G = build_stylegan2(d["state_dict"], conv_clamp=d["conv_clamp"])
    ws = G.mapping(d["z"], d["c"], truncation_psi=d["psi"], truncation_cutoff=d["cutoff"])
    _close(ws, d["ws"])
    for mode in ("const", "none"):
        _close(G.synthesis(d["ws"], noise_mode=mode), d[f"img_{mode}"])
    img = G(d["z"], d["c"], truncation_psi=d["psi"], truncation_cutoff=d["cutoff"])
    _close(img, d["img_const"], rel=3e-5)


def test_golden_clamp_is_exercised() -> None:
    # Without the clamp the 0.5-clamped net's output must differ, or the golden proves nothing.
    d = _load("gray8_clamp05")
    unclamped = build_stylegan2(d["state_dict"], conv_clamp=None)
    assert (unclamped.synthesis(d["ws"]) - d["img_const"]).abs().max() > 0.1


# ---------------------------------------------------------------------------------------------
# Config inference and names


@pytest.mark.parametrize("name", GOLDEN)
def test_config_from_golden(name: str) -> None:
    d = _load(name)
    cfg = config_from_state_dict(d["state_dict"], conv_clamp=d["conv_clamp"])
    sd = d["state_dict"]
    assert cfg.resolution == d["img_const"].shape[-1]
    assert cfg.img_channels == d["img_const"].shape[1]
    assert cfg.num_ws == d["ws"].shape[1] == 2 * int(math.log2(cfg.resolution)) - 2
    assert cfg.w_dim == d["ws"].shape[2]
    assert cfg.z_dim == d["z"].shape[1]
    assert cfg.c_dim == (0 if d["c"] is None else d["c"].shape[1])
    assert cfg.channels[4] == sd["synthesis.b4.const"].shape[0]
    for r in cfg.block_resolutions[1:]:
        assert cfg.channels[r] == sd[f"synthesis.b{r}.conv0.weight"].shape[0]


def test_config_from_random() -> None:
    G = random_stylegan2(
        resolution=64,
        channels_max=32,
        z_dim=12,
        w_dim=20,
        mapping_layers=4,
        c_dim=5,
        conv_clamp=256.0,
    )
    cfg = config_from_state_dict(G.state_dict(), conv_clamp=256.0)
    assert cfg == G.config
    assert cfg.channels == {4: 32, 8: 32, 16: 32, 32: 16, 64: 8}
    assert (cfg.z_dim, cfg.w_dim, cfg.c_dim, cfg.mapping_layers, cfg.num_ws) == (12, 20, 5, 4, 10)


def _nvidia_keys_1024() -> list[str]:
    """G_ema.state_dict() names of a config-F 1024 net, listed from FORMATS.md section 1."""
    keys = [f"mapping.fc{i}.{p}" for i in range(8) for p in ("weight", "bias")]
    keys.append("mapping.w_avg")
    layer = [
        "weight",
        "bias",
        "noise_strength",
        "noise_const",
        "affine.weight",
        "affine.bias",
        "resample_filter",
    ]
    torgb = ["weight", "bias", "affine.weight", "affine.bias"]
    keys.append("synthesis.b4.const")
    keys += [f"synthesis.b4.conv1.{p}" for p in layer]
    keys += [f"synthesis.b4.torgb.{p}" for p in torgb]
    keys.append("synthesis.b4.resample_filter")
    for k in range(3, 11):
        b = f"synthesis.b{2**k}"
        keys += [f"{b}.conv0.{p}" for p in layer] + [f"{b}.conv1.{p}" for p in layer]
        keys += [f"{b}.torgb.{p}" for p in torgb] + [f"{b}.resample_filter"]
    return keys


def test_names_match_nvidia_1024() -> None:
    cfg = StyleGAN2Config(
        z_dim=512,
        w_dim=512,
        c_dim=0,
        resolution=1024,
        img_channels=3,
        mapping_layers=8,
        channels=official_channels(1024, 32768, 512),
    )
    with torch.device("meta"):
        G = StyleGAN2Generator(cfg)
    sd = G.state_dict()
    expected = _nvidia_keys_1024()
    assert len(expected) == len(sd) == 182
    assert set(sd) == set(expected)
    assert cfg.num_ws == 18
    # Totals stated for FFHQ-1024 G_ema in FORMATS.md.
    assert sum(p.numel() for p in G.parameters()) == 30_370_060
    assert sum(b.numel() for b in G.buffers()) == 2_797_104
    assert sd["synthesis.b1024.conv0.weight"].shape == (32, 64, 3, 3)
    assert sd["synthesis.b1024.conv0.affine.weight"].shape == (64, 512)
    assert sd["synthesis.b1024.conv0.noise_const"].shape == (1024, 1024)
    assert sd["synthesis.b4.conv1.noise_strength"].shape == ()
    assert sd["synthesis.b4.torgb.weight"].shape == (3, 512, 1, 1)


def test_conditional_names() -> None:
    G = random_stylegan2(resolution=8, channels_max=8, z_dim=4, w_dim=6, c_dim=3)
    sd = G.state_dict()
    assert sd["mapping.embed.weight"].shape == (6, 3)
    assert sd["mapping.fc0.weight"].shape == (6, 4 + 6)


# ---------------------------------------------------------------------------------------------
# Forward mode


def test_vmap_jvp_matches_float64_finite_differences(small: StyleGAN2Generator) -> None:
    n = small.num_ws
    gen = torch.Generator().manual_seed(0)
    w = small.mapping(torch.randn(1, 8, generator=gen))[:, 0]
    tangents = torch.randn(4, 1, 8, generator=gen)

    def synth_w(G: StyleGAN2Generator, x: torch.Tensor) -> torch.Tensor:
        """(1, w_dim) -> (1, C, R, R): one w fed to every layer."""
        return G.synthesis(x.unsqueeze(1).repeat(1, n, 1))

    def directional(G: StyleGAN2Generator, w: torch.Tensor, vs: torch.Tensor) -> torch.Tensor:
        return vmap(lambda v: jvp(lambda x: synth_w(G, x), (w,), (v,))[1])(vs)

    G64 = copy.deepcopy(small).double()
    w64, t64 = w.double(), tangents.double()
    # Small step: larger ones cross lrelu kinks somewhere in the image.
    eps = 1e-6
    fd = torch.stack([(synth_w(G64, w64 + eps * v) - synth_w(G64, w64 - eps * v)) for v in t64])
    fd = fd / (2 * eps)
    j32 = directional(small, w, tangents).double()
    j64 = directional(G64, w64, t64)
    assert j32.shape == (4, 1, 3, 16, 16)
    assert (j64 - fd).norm() / fd.norm() < 1e-8
    assert (j32 - fd).norm() / fd.norm() < 2e-6


# ---------------------------------------------------------------------------------------------
# Truncation and noise


def test_truncation(small: StyleGAN2Generator) -> None:
    z = torch.randn(3, 8, generator=torch.Generator().manual_seed(1))
    w_avg = small.mapping.w_avg
    ws0 = small.mapping(z, truncation_psi=0.0)
    torch.testing.assert_close(ws0, w_avg.expand_as(ws0))
    full = small.mapping(z)
    cut = small.mapping(z, truncation_psi=0.0, truncation_cutoff=2)
    torch.testing.assert_close(cut[:, :2], w_avg.expand(3, 2, -1))
    torch.testing.assert_close(cut[:, 2:], full[:, 2:])
    half = small.mapping(z, truncation_psi=0.5)
    torch.testing.assert_close(half, 0.5 * (full + w_avg))


def test_noise_modes(small: StyleGAN2Generator) -> None:
    ws = small.mapping(torch.randn(2, 8, generator=torch.Generator().manual_seed(2)))
    const = small.synthesis(ws, noise_mode="const")
    none = small.synthesis(ws, noise_mode="none")
    assert (const - none).abs().max() > 1e-2
    r1 = small.synthesis(ws, "random", generator=torch.Generator().manual_seed(5))
    r2 = small.synthesis(ws, "random", generator=torch.Generator().manual_seed(5))
    r3 = small.synthesis(ws, "random", generator=torch.Generator().manual_seed(6))
    torch.testing.assert_close(r1, r2, rtol=0, atol=0)
    assert (r1 - r3).abs().max() > 1e-2
    with pytest.raises(UserInputError, match="noise_mode"):
        small.synthesis(ws, noise_mode="fixed")


# ---------------------------------------------------------------------------------------------
# build_stylegan2


def test_build_is_frozen_eval() -> None:
    d = _load("uncond16")
    G = build_stylegan2(d["state_dict"])
    assert not G.training
    assert not any(p.requires_grad for p in G.parameters())


def test_build_rejects_dcgan() -> None:
    dcgan = {"main.0.weight": torch.randn(100, 64, 4, 4), "main.1.weight": torch.ones(64)}
    with pytest.raises(UserInputError, match="unknown architecture"):
        build_stylegan2(dcgan)
    with pytest.raises(UserInputError, match="StyleGAN3"):
        build_stylegan2({"synthesis.input.freqs": torch.zeros(4, 2)})


def test_build_rejects_missing_unexpected_shape_nan() -> None:
    sd = _load("uncond16")["state_dict"]
    missing = {k: v for k, v in sd.items() if k != "synthesis.b8.conv1.noise_const"}
    with pytest.raises(UserInputError, match=r"missing .*b8\.conv1\.noise_const"):
        build_stylegan2(missing)
    with pytest.raises(UserInputError, match="unexpected keys synthesis.b8.extra"):
        build_stylegan2({**sd, "synthesis.b8.extra": torch.zeros(1)})
    bad_shape = {**sd, "synthesis.b8.conv0.bias": torch.zeros(5)}
    with pytest.raises(UserInputError, match="shape"):
        build_stylegan2(bad_shape)
    nan = dict(sd)
    nan["synthesis.b16.torgb.weight"] = sd["synthesis.b16.torgb.weight"].clone()
    nan["synthesis.b16.torgb.weight"][0, 0, 0, 0] = float("nan")
    with pytest.raises(UserInputError, match="NaN"):
        build_stylegan2(nan)
