"""Test helper that WRITES a small random BigGAN-deep in the HF pytorch-pretrained-BigGAN format.

The key names, shapes and spectral-norm triplets are spelled out here from FORMATS.md section 4,
independently of `lowrankgan.models.biggan.network`, so loading the written folder checks the reader
against the spec rather than against itself.
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from pathlib import Path

import torch


def small_layers(output_dim: int) -> tuple[list[list[object]], int]:
    """Layers [[up, in, out], ...] for 4 -> output_dim in (F, m, m), (T, m, m/2) pairs.

    Returns the layers and an attention position at output_dim / 2 (the block whose input has
    in_mult 2, so with channel_width 4 the attention sees 8 channels).
    """
    ups = int(math.log2(output_dim // 4))
    if 4 * 2**ups != output_dim or ups < 1:
        raise ValueError(f"output_dim must be 4 * 2**k, k >= 1, got {output_dim}")
    layers: list[list[object]] = []
    mult = 2**ups
    for _ in range(ups):
        layers += [[False, mult, mult], [True, mult, mult // 2]]
        mult //= 2
    return layers, 2 * (ups - 1)


def _sn(state: dict, prefix: str, shape: tuple[int, ...], gen: torch.Generator, bias: bool):
    """Add a spectral-norm triplet whose u, v include one power iteration, like torch's."""
    weight = torch.randn(shape, generator=gen) * 0.5
    matrix = weight.reshape(shape[0], -1)
    u0 = torch.randn(shape[0], generator=gen)
    v = torch.nn.functional.normalize(matrix.T @ u0, dim=0)
    u = torch.nn.functional.normalize(matrix @ v, dim=0)
    state[prefix + "weight_orig"] = weight
    state[prefix + "weight_u"] = u
    state[prefix + "weight_v"] = v
    if bias:
        state[prefix + "bias"] = torch.randn(shape[0], generator=gen) * 0.1


def _stats(state: dict, prefix: str, n_stats: int, channels: int, gen: torch.Generator) -> None:
    state[prefix + "running_means"] = torch.randn(n_stats, channels, generator=gen) * 0.3
    state[prefix + "running_vars"] = torch.rand(n_stats, channels, generator=gen) + 0.5


def write_biggan(
    folder: str | Path,
    output_dim: int = 32,
    channel_width: int = 4,
    num_classes: int = 10,
    seed: int = 0,
    z_dim: int = 8,
    class_embed_dim: int = 8,
    n_stats: int = 51,
    eps: float = 1e-4,
) -> dict[str, torch.Tensor]:
    """Write config.json + pytorch_model.bin for a random BigGAN-deep; return the state dict."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    layers, attention = small_layers(output_dim)
    config = {
        "output_dim": output_dim,
        "z_dim": z_dim,
        "class_embed_dim": class_embed_dim,
        "channel_width": channel_width,
        "num_classes": num_classes,
        "layers": layers,
        "attention_layer_position": attention,
        "eps": eps,
        "n_stats": n_stats,
    }
    gen = torch.Generator().manual_seed(seed)
    cond = z_dim + class_embed_dim
    cw = channel_width
    state: dict[str, torch.Tensor] = OrderedDict()
    state["embeddings.weight"] = torch.randn(class_embed_dim, num_classes, generator=gen)
    _sn(state, "generator.gen_z.", (4 * 4 * layers[0][1] * cw, cond), gen, bias=True)
    index = 0
    for i, (_, in_mult, out_mult) in enumerate(layers):
        c_in, c_out = in_mult * cw, out_mult * cw
        if i == attention:
            p = f"generator.layers.{index}."
            state[p + "gamma"] = torch.tensor([0.7])
            _sn(state, p + "snconv1x1_theta.", (c_in // 8, c_in, 1, 1), gen, bias=False)
            _sn(state, p + "snconv1x1_phi.", (c_in // 8, c_in, 1, 1), gen, bias=False)
            _sn(state, p + "snconv1x1_g.", (c_in // 2, c_in, 1, 1), gen, bias=False)
            _sn(state, p + "snconv1x1_o_conv.", (c_in, c_in // 2, 1, 1), gen, bias=False)
            index += 1
        p = f"generator.layers.{index}."
        mid = c_in // 4
        for k, channels in enumerate((c_in, mid, mid, mid)):
            _stats(state, f"{p}bn_{k}.", n_stats, channels, gen)
            _sn(state, f"{p}bn_{k}.scale.", (channels, cond), gen, bias=False)
            _sn(state, f"{p}bn_{k}.offset.", (channels, cond), gen, bias=False)
        convs = ((mid, c_in, 1), (mid, mid, 3), (mid, mid, 3), (c_out, mid, 1))
        for k, (o, c, s) in enumerate(convs):
            _sn(state, f"{p}conv_{k}.", (o, c, s, s), gen, bias=True)
        index += 1
    last = layers[-1][2] * cw
    state["generator.bn.weight"] = torch.rand(last, generator=gen) + 0.5
    state["generator.bn.bias"] = torch.randn(last, generator=gen) * 0.1
    _stats(state, "generator.bn.", n_stats, last, gen)
    _sn(state, "generator.conv_to_rgb.", (last, last, 3, 3), gen, bias=True)
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    torch.save(state, folder / "pytorch_model.bin")
    return dict(state)
