"""BigGAN-deep in the HF pytorch-pretrained-BigGAN format: config, network, loader, z sampler.

This module owns the whole BigGAN-deep family: `BigGANConfig` and `read_config` (config.json),
`BigGANDeep` (the generator, with module and tensor names exactly as stored in
`pytorch_model.bin`), `load_biggan` (folder -> validated, ready-to-run network) and
`truncated_normal` (the truncnorm(-2, 2) * t latents the model was made for). The format and the
forward equations follow /work/shared/FORMATS.md section 4.

Spectral norm is resolved once, at load time: every spectrally normalised layer keeps its stored
`weight_orig`, `weight_u`, `weight_v` and gets a non-persistent effective `weight` buffer. The
forward pass never runs a power iteration, so it is a pure function of its inputs and works under
`torch.func.jvp` and `vmap`. All stored tensors are buffers: the network is frozen.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from lowrankgan.errors import UserInputError
from lowrankgan.io.datafiles import read_json
from lowrankgan.limits import check_at_most
from lowrankgan.models.checkpoints import load_state_file

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "pytorch_model.bin"
#: a GenBlock's bottleneck: mid channels = in channels / 4.
CHANNEL_RATIO = 4
#: truncnorm bounds of the latent distribution, in standard deviations.
Z_BOUND = 2.0

#: Largest value config.json may give each integer field (the released BigGAN-deep models use
#: 128, 1000, 51, 16 and well under 100 layers). `output_dim` is bounded by the `resolution`
#: limit, `z_dim` and `class_embed_dim` by `latent_dim`, and the network as a whole by
#: `checkpoint_bytes` (its float32 weights) and `tensor_elements` (its largest activation).
MAX_CHANNEL_WIDTH = 16_384
MAX_NUM_CLASSES = 100_000
MAX_N_STATS = 1_000
MAX_CHANNEL_MULT = 1_024
MAX_LAYERS = 256


# ---------------------------------------------------------------------------------------------
# Config


@dataclass(frozen=True)
class BigGANConfig:
    """The fields of a BigGAN-deep config.json.

    Attributes:
        output_dim: image side R (128, 256, 512 for the released models).
        z_dim: latent size.
        class_embed_dim: size of the class embedding concatenated to z.
        channel_width: base channel count; block channels are multiples of it.
        num_classes: size of the one-hot class input.
        layers: per GenBlock `(up, in_mult, out_mult)`.
        attention_layer_position: list index the self-attention is inserted at (before that block).
        eps: batch-norm epsilon.
        n_stats: number of standing-statistics entries (truncation grid 0, 1/(n-1), ..., 1).
    """

    output_dim: int
    z_dim: int
    class_embed_dim: int
    channel_width: int
    num_classes: int
    layers: tuple[tuple[bool, int, int], ...]
    attention_layer_position: int
    eps: float
    n_stats: int

    @property
    def cond_dim(self) -> int:
        """Size of the conditioning vector cat(z, embedding)."""
        return self.z_dim + self.class_embed_dim


def _int_field(
    raw: Mapping[str, object], name: str, minimum: int, maximum: int | str | None = None
) -> int:
    """`raw[name]`, an integer >= minimum and <= maximum (a number, or the name of a limit)."""
    value = raw[name]
    # bool is an int subclass; `true` is never a valid size.
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise UserInputError(
            f"config.json: {name} must be an integer >= {minimum}, got {_short(value)}"
        )
    if isinstance(maximum, str):
        check_at_most(value, maximum, f"config.json: {name}")
    elif maximum is not None and value > maximum:
        raise UserInputError(
            f"config.json: {name} is {_number(value)}, over the maximum of {maximum:,}"
        )
    return value


def _number(value: int) -> str:
    """An integer for a message: with thousands separators, or its length if very long."""
    text = str(value)
    return f"{value:,}" if len(text) <= 18 else f"a {len(text)}-digit number"


def _short(value: object) -> str:
    """repr(value), cut to fit a one-line message."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _layers_field(raw: Mapping[str, object]) -> tuple[tuple[bool, int, int], ...]:
    value = raw["layers"]
    if not isinstance(value, list) or not value:
        raise UserInputError("config.json: layers must be a non-empty list of [up, in, out]")
    if len(value) > MAX_LAYERS:
        raise UserInputError(
            f"config.json: layers has {len(value):,} blocks, over the maximum of {MAX_LAYERS}"
        )
    layers = []
    for i, entry in enumerate(value):
        ok = isinstance(entry, list) and len(entry) == 3
        ok = ok and (isinstance(entry[0], bool) or entry[0] in (0, 1))
        ok = ok and all(isinstance(m, int) and not isinstance(m, bool) and m > 0 for m in entry[1:])
        if not ok:
            raise UserInputError(f"config.json: layers[{i}] must be [up, in_mult, out_mult]")
        if max(entry[1:]) > MAX_CHANNEL_MULT:
            raise UserInputError(
                f"config.json: layers[{i}] has a channel multiplier of {_number(max(entry[1:]))}, "
                f"over the maximum of {MAX_CHANNEL_MULT:,}"
            )
        layers.append((bool(entry[0]), int(entry[1]), int(entry[2])))
    return tuple(layers)


def _check_consistent(cfg: BigGANConfig) -> None:
    """Raise if the layer list cannot build a network producing `output_dim` images."""
    cw = cfg.channel_width
    for i, (_, in_mult, out_mult) in enumerate(cfg.layers):
        if i and cfg.layers[i - 1][2] != in_mult:
            raise UserInputError(f"config.json: layers[{i}] input does not match layers[{i - 1}]")
        if out_mult > in_mult:
            # The skip path drops channels (x[:, :out]); it cannot add them.
            raise UserInputError(f"config.json: layers[{i}] widens channels, which is unsupported")
        if (in_mult * cw) % CHANNEL_RATIO:
            raise UserInputError(f"config.json: layers[{i}] channels not divisible by 4")
    ups = sum(up for up, _, _ in cfg.layers)
    if 4 * 2**ups != cfg.output_dim:
        raise UserInputError(
            f"config.json: layers upsample 4 to {4 * 2**ups}, not {cfg.output_dim}"
        )
    if (cfg.layers[cfg.attention_layer_position][1] * cw) % 8:
        raise UserInputError("config.json: attention channels must be divisible by 8")
    if cfg.layers[-1][2] * cw < 3:
        raise UserInputError("config.json: the last layer needs at least 3 channels for RGB")


def config_state_elements(cfg: BigGANConfig) -> int:
    """Number of values in the state dict (`pytorch_model.bin`) of the network `cfg` describes,
    computed from the config alone; the effective spectral-norm weights (derived at load time)
    add about as many again."""

    def sn(out_ch: int, in_ch: int, kernel: int = 1, bias: bool = False) -> int:
        # weight_orig, u, v (and bias)
        return out_ch * in_ch * kernel**2 + out_ch + in_ch * kernel**2 + (out_ch if bias else 0)

    def cbn(channels: int) -> int:
        return 2 * cfg.n_stats * channels + 2 * sn(channels, cfg.cond_dim)

    cw = cfg.channel_width
    total = cfg.class_embed_dim * cfg.num_classes
    total += sn(16 * cfg.layers[0][1] * cw, cfg.cond_dim, bias=True)
    for i, (_, in_mult, out_mult) in enumerate(cfg.layers):
        cin, cout = in_mult * cw, out_mult * cw
        mid = cin // CHANNEL_RATIO
        if i == cfg.attention_layer_position:
            total += 1 + 2 * sn(cin // 8, cin) + sn(cin // 2, cin) + sn(cin, cin // 2)
        total += cbn(cin) + 3 * cbn(mid)
        total += sn(mid, cin, bias=True) + 2 * sn(mid, mid, 3, bias=True)
        total += sn(cout, mid, bias=True)
    last = cfg.layers[-1][2] * cw
    total += 2 * last + 2 * cfg.n_stats * last + sn(last, last, 3, bias=True)
    return total


def config_largest_activation(cfg: BigGANConfig) -> tuple[int, str]:
    """Elements of the largest tensor one forward pass of one latent makes, and what it is."""
    cw = cfg.channel_width
    side = 4
    largest = (16 * cfg.layers[0][1] * cw, "the first block's input")
    for i, (up, in_mult, out_mult) in enumerate(cfg.layers):
        cin, cout = in_mult * cw, out_mult * cw
        if i == cfg.attention_layer_position:
            pixels = side * side
            # theta^T phi: (pixels, pixels / 4) attention weights
            largest = max(largest, (pixels * pixels // 4, f"the self-attention map at {side}px"))
        out_side = 2 * side if up else side
        block = max(cin * side**2, (cin // CHANNEL_RATIO) * out_side**2, cout * out_side**2)
        largest = max(largest, (block, f"block {i}'s activations at {out_side}px"))
        side = out_side
    return largest


def _check_size(cfg: BigGANConfig) -> None:
    """Refuse a config whose network would be absurdly large, before anything is allocated."""
    check_at_most(
        4 * config_state_elements(cfg),
        "checkpoint_bytes",
        "config.json: the float32 weights of the network it describes",
    )
    elements, what = config_largest_activation(cfg)
    check_at_most(elements, "tensor_elements", f"config.json: {what}")


def read_config(path: str | Path) -> BigGANConfig:
    """Read and validate a BigGAN-deep config.json (one-line `UserInputError` if malformed).

    The file's size is checked before it is read (`json_bytes`), its nesting (`nesting_depth`),
    every integer field against its maximum (see `MAX_CHANNEL_WIDTH` ...) and the size of the
    network it describes (`checkpoint_bytes`, `tensor_elements`) before anything is built.
    """
    path = Path(path)
    raw = read_json(path, "BigGAN config")
    if not isinstance(raw, dict):
        raise UserInputError(f"BigGAN config {path} is not a JSON object")
    required = [field.name for field in fields(BigGANConfig)]
    missing = [name for name in required if name not in raw]
    if missing:
        raise UserInputError(f"config.json: missing field(s) {', '.join(missing)}")
    eps = raw["eps"]
    if not isinstance(eps, int | float) or isinstance(eps, bool) or not 0 < eps < 1:
        raise UserInputError(f"config.json: eps must be a number in (0, 1), got {_short(eps)}")
    layers = _layers_field(raw)
    position = _int_field(raw, "attention_layer_position", 0)
    if position >= len(layers):
        raise UserInputError(
            f"config.json: attention_layer_position {_number(position)} is past the layers"
        )
    cfg = BigGANConfig(
        output_dim=_int_field(raw, "output_dim", 4, "resolution"),
        z_dim=_int_field(raw, "z_dim", 1, "latent_dim"),
        class_embed_dim=_int_field(raw, "class_embed_dim", 1, "latent_dim"),
        channel_width=_int_field(raw, "channel_width", 1, MAX_CHANNEL_WIDTH),
        num_classes=_int_field(raw, "num_classes", 1, MAX_NUM_CLASSES),
        layers=layers,
        attention_layer_position=position,
        eps=float(eps),
        n_stats=_int_field(raw, "n_stats", 2, MAX_N_STATS),
    )
    _check_consistent(cfg)
    _check_size(cfg)
    return cfg


# ---------------------------------------------------------------------------------------------
# Spectral norm and standing statistics


def spectral_sigma(
    weight_orig: torch.Tensor, weight_u: torch.Tensor, weight_v: torch.Tensor
) -> torch.Tensor:
    """sigma = u . (W v) with W = weight_orig reshaped to (out, -1); returns a 0-d tensor.

    The stored u, v already include the last power iteration (torch's eval-mode spectral_norm
    uses them as-is), so no further iteration is run.
    """
    matrix = weight_orig.reshape(weight_orig.shape[0], -1)
    return torch.dot(weight_u, matrix @ weight_v)


def stats_position(truncation: float, n_stats: int) -> tuple[int, float]:
    """Index i and weight `coef` of the standing statistics for `truncation` in (0, 1].

    Exactly as pytorch-pretrained-biggan (what users compare against): `coef, i =
    modf(truncation / step)` with `step = 1 / (n_stats - 1)`; coef 0 uses entry i alone,
    otherwise `table[i] * coef + table[i + 1] * (1 - coef)` (the weights look swapped versus
    linear interpolation, FORMATS.md section 4). The division's float rounding is kept, not
    snapped to the grid: 0.14 / 0.02 = 7.000000000000001 mixes in entry 7 by 9e-16 and so
    uses entry 8 (as do 0.28, 0.56), while 0.58 and 0.94 land just below 29 and 47 and use
    entries 28 and 46; a snapping rule would pick the other row at those values.
    """
    check_truncation(truncation)
    coef, start = math.modf(truncation / (1.0 / (n_stats - 1)))
    return int(start), coef


def standing_stats(table: torch.Tensor, truncation: float) -> torch.Tensor:
    """Pick the standing statistics (n_stats, C) -> (C,) for `truncation` (see stats_position)."""
    index, coef = stats_position(truncation, table.shape[0])
    if coef == 0.0:
        return table[index]
    return table[index] * coef + table[index + 1] * (1.0 - coef)


def check_truncation(truncation: float) -> float:
    """Return `truncation` as a float if it is a number in (0, 1], else raise."""
    if isinstance(truncation, bool) or not isinstance(truncation, int | float):
        raise UserInputError(f"truncation must be a number in (0, 1], got {truncation!r}")
    if not 0.0 < truncation <= 1.0:  # also rejects NaN
        raise UserInputError(f"truncation must be in (0, 1], got {truncation}")
    return float(truncation)


# ---------------------------------------------------------------------------------------------
# Layers


class _SNLayer(nn.Module):
    """Stored spectral-norm triplet (+ optional bias) and the effective weight W / sigma."""

    def __init__(self, shape: tuple[int, ...], bias: bool) -> None:
        super().__init__()
        self.register_buffer("weight_orig", torch.zeros(shape))
        self.register_buffer("weight_u", torch.zeros(shape[0]))
        self.register_buffer("weight_v", torch.zeros(math.prod(shape[1:])))
        self.register_buffer("bias", torch.zeros(shape[0]) if bias else None)
        # Derived, not stored in the file: filled by `normalize`.
        self.register_buffer("weight", torch.zeros(shape), persistent=False)

    def normalize(self) -> None:
        """Set `weight` = weight_orig / sigma from the stored u, v (call after loading)."""
        with torch.no_grad():
            sigma = spectral_sigma(self.weight_orig, self.weight_u, self.weight_v)
            self.weight = self.weight_orig / sigma


class _SNLinear(_SNLayer):
    def __init__(self, in_features: int, out_features: int, bias: bool) -> None:
        super().__init__((out_features, in_features), bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in) -> (B, out)."""
        return F.linear(x, self.weight, self.bias)


class _SNConv(_SNLayer):
    def __init__(self, in_ch: int, out_ch: int, kernel: int, bias: bool) -> None:
        super().__init__((out_ch, in_ch, kernel, kernel), bias)
        self.padding = kernel // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in, H, W) -> (B, out, H, W)."""
        return F.conv2d(x, self.weight, self.bias, padding=self.padding)


class _ConditionalBN(nn.Module):
    """cbn(x) = (x - mu_t) / sqrt(var_t + eps) * (1 + scale(cond)) + offset(cond)."""

    def __init__(self, channels: int, cond_dim: int, n_stats: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.register_buffer("running_means", torch.zeros(n_stats, channels))
        self.register_buffer("running_vars", torch.ones(n_stats, channels))
        self.scale = _SNLinear(cond_dim, channels, bias=False)
        self.offset = _SNLinear(cond_dim, channels, bias=False)

    def forward(self, x: torch.Tensor, cond: torch.Tensor, truncation: float) -> torch.Tensor:
        """x (B, C, H, W), cond (B, cond_dim) -> (B, C, H, W)."""
        mean = standing_stats(self.running_means, truncation)[:, None, None]
        var = standing_stats(self.running_vars, truncation)[:, None, None]
        gain = 1.0 + self.scale(cond)[:, :, None, None]
        shift = self.offset(cond)[:, :, None, None]
        return (x - mean) / torch.sqrt(var + self.eps) * gain + shift


class _TailBN(nn.Module):
    """Affine BN with standing statistics picked by truncation (no conditioning)."""

    def __init__(self, channels: int, n_stats: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(channels))
        self.register_buffer("bias", torch.zeros(channels))
        self.register_buffer("running_means", torch.zeros(n_stats, channels))
        self.register_buffer("running_vars", torch.ones(n_stats, channels))

    def forward(self, x: torch.Tensor, truncation: float) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        mean = standing_stats(self.running_means, truncation)[:, None, None]
        var = standing_stats(self.running_vars, truncation)[:, None, None]
        gain, shift = self.weight[:, None, None], self.bias[:, None, None]
        return (x - mean) / torch.sqrt(var + self.eps) * gain + shift


class _SelfAttention(nn.Module):
    """SAGAN self-attention: x + gamma * o(g_pooled @ softmax(theta^T phi_pooled)^T)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.register_buffer("gamma", torch.zeros(1))
        self.snconv1x1_theta = _SNConv(channels, channels // 8, 1, bias=False)
        self.snconv1x1_phi = _SNConv(channels, channels // 8, 1, bias=False)
        self.snconv1x1_g = _SNConv(channels, channels // 2, 1, bias=False)
        self.snconv1x1_o_conv = _SNConv(channels // 2, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W); H, W even."""
        batch, channels, height, width = x.shape
        pixels = height * width
        theta = self.snconv1x1_theta(x).reshape(batch, channels // 8, pixels)
        # phi and g are pooled 2x2: keys/values live on a 4x coarser grid.
        phi = F.max_pool2d(self.snconv1x1_phi(x), 2).reshape(batch, channels // 8, pixels // 4)
        g = F.max_pool2d(self.snconv1x1_g(x), 2).reshape(batch, channels // 2, pixels // 4)
        attn = torch.softmax(theta.transpose(1, 2) @ phi, dim=-1)  # (B, HW, HW/4)
        attended = (g @ attn.transpose(1, 2)).reshape(batch, channels // 2, height, width)
        return x + self.gamma * self.snconv1x1_o_conv(attended)


class _GenBlock(nn.Module):
    """Bottleneck residual block: 1x1 down to in/4, (up), 3x3, 3x3, 1x1 to out; skip drops/ups."""

    def __init__(
        self, in_ch: int, out_ch: int, up: bool, cond_dim: int, n_stats: int, eps: float
    ) -> None:
        super().__init__()
        mid = in_ch // CHANNEL_RATIO
        self.up = up
        self.out_ch = out_ch
        self.bn_0 = _ConditionalBN(in_ch, cond_dim, n_stats, eps)
        self.conv_0 = _SNConv(in_ch, mid, 1, bias=True)
        self.bn_1 = _ConditionalBN(mid, cond_dim, n_stats, eps)
        self.conv_1 = _SNConv(mid, mid, 3, bias=True)
        self.bn_2 = _ConditionalBN(mid, cond_dim, n_stats, eps)
        self.conv_2 = _SNConv(mid, mid, 3, bias=True)
        self.bn_3 = _ConditionalBN(mid, cond_dim, n_stats, eps)
        self.conv_3 = _SNConv(mid, out_ch, 1, bias=True)

    def forward(self, x: torch.Tensor, cond: torch.Tensor, truncation: float) -> torch.Tensor:
        """x (B, in, H, W), cond (B, cond_dim) -> (B, out, H', W') with H' = 2H if up."""
        h = self.conv_0(F.relu(self.bn_0(x, cond, truncation)))
        h = F.relu(self.bn_1(h, cond, truncation))
        if self.up:
            h = F.interpolate(h, scale_factor=2, mode="nearest")
        h = self.conv_1(h)
        h = self.conv_2(F.relu(self.bn_2(h, cond, truncation)))
        h = self.conv_3(F.relu(self.bn_3(h, cond, truncation)))
        skip = x[:, : self.out_ch]
        if self.up:
            skip = F.interpolate(skip, scale_factor=2, mode="nearest")
        return h + skip


class _Generator(nn.Module):
    """gen_z -> 4x4 -> GenBlocks (+ attention) -> BN -> relu -> conv_to_rgb; names as stored."""

    def __init__(self, cfg: BigGANConfig) -> None:
        super().__init__()
        cw = cfg.channel_width
        self.first_channels = cfg.layers[0][1] * cw
        self.gen_z = _SNLinear(cfg.cond_dim, 4 * 4 * self.first_channels, bias=True)
        layers: list[nn.Module] = []
        for i, (up, in_mult, out_mult) in enumerate(cfg.layers):
            if i == cfg.attention_layer_position:
                layers.append(_SelfAttention(in_mult * cw))
            layers.append(
                _GenBlock(in_mult * cw, out_mult * cw, up, cfg.cond_dim, cfg.n_stats, cfg.eps)
            )
        self.layers = nn.ModuleList(layers)
        last = cfg.layers[-1][2] * cw
        self.bn = _TailBN(last, cfg.n_stats, cfg.eps)
        self.conv_to_rgb = _SNConv(last, last, 3, bias=True)

    def forward(self, cond: torch.Tensor, truncation: float) -> torch.Tensor:
        """cond (B, cond_dim) -> images (B, 3, R, R) in [-1, 1]."""
        # The stored gen_z output is laid out NHWC (TF origin).
        h = self.gen_z(cond).reshape(cond.shape[0], 4, 4, self.first_channels)
        h = h.permute(0, 3, 1, 2)
        for layer in self.layers:
            h = layer(h, cond, truncation) if isinstance(layer, _GenBlock) else layer(h)
        h = self.conv_to_rgb(F.relu(self.bn(h, truncation)))
        return torch.tanh(h[:, :3])


class _Embedding(nn.Module):
    """Class embedding: a bias-free linear map on the one-hot, weight (class_embed_dim, K)."""

    def __init__(self, num_classes: int, embed_dim: int) -> None:
        super().__init__()
        self.register_buffer("weight", torch.zeros(embed_dim, num_classes))

    def forward(self, onehot: torch.Tensor) -> torch.Tensor:
        """(B, K) -> (B, embed_dim)."""
        return F.linear(onehot, self.weight)


class BigGANDeep(nn.Module):
    """BigGAN-deep generator; `state_dict()` keys and shapes equal the HF `pytorch_model.bin`.

    Build it from a config, then `load_state` the stored tensors (which also resolves spectral
    norm). Stays in eval mode; there is no train-mode behaviour.
    """

    def __init__(self, config: BigGANConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = _Embedding(config.num_classes, config.class_embed_dim)
        self.generator = _Generator(config)
        self.eval()

    def load_state(self, state: Mapping[str, torch.Tensor]) -> None:
        """Copy a stored state dict in (keys, shapes must match exactly); resolve spectral norm."""
        expected = self.state_dict()
        missing = sorted(set(expected) - set(state), key=str)
        extra = sorted(set(state) - set(expected), key=str)
        if missing or extra:
            what = f"missing {missing[0]}" if missing else f"unexpected {str(extra[0])[:80]}"
            raise UserInputError(
                f"config.json does not match pytorch_model.bin: {len(missing)} missing, "
                f"{len(extra)} unexpected keys ({what})"
            )
        for name, tensor in state.items():
            if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point():
                raise UserInputError(f"pytorch_model.bin: {name} is not a floating-point tensor")
            if tensor.shape != expected[name].shape:
                raise UserInputError(
                    f"config.json does not match pytorch_model.bin: {name} has shape "
                    f"{list(tensor.shape)}, config implies {list(expected[name].shape)}"
                )
            if not torch.isfinite(tensor).all():
                raise UserInputError(f"pytorch_model.bin: {name} contains NaN or inf values")
        # assign: the stored tensors become the buffers (a network built on the meta device
        # never allocates its own).
        converted = {name: tensor.to(torch.float32).contiguous() for name, tensor in state.items()}
        self.load_state_dict(converted, strict=True, assign=True)
        self.normalize_spectral()

    def normalize_spectral(self) -> None:
        """Recompute every effective weight W = weight_orig / sigma from the stored u, v."""
        for module in self.modules():
            if isinstance(module, _SNLayer):
                module.normalize()
                if not torch.isfinite(module.weight).all():
                    raise UserInputError("pytorch_model.bin: a spectral norm sigma is zero")

    def train(self, mode: bool = True) -> BigGANDeep:
        """Ignore train mode: the standing statistics and stored u, v are eval-only."""
        return super().train(False)

    def forward(
        self, z: torch.Tensor, class_onehot: torch.Tensor, truncation: float
    ) -> torch.Tensor:
        """z (B, z_dim), class_onehot (B, num_classes), truncation in (0, 1] -> (B, 3, R, R)."""
        check_truncation(truncation)
        cfg = self.config
        if z.ndim != 2 or z.shape[1] != cfg.z_dim:
            raise UserInputError(f"z must have shape (B, {cfg.z_dim}), got {tuple(z.shape)}")
        if class_onehot.shape != (z.shape[0], cfg.num_classes):
            raise UserInputError(
                f"class_onehot must have shape ({z.shape[0]}, {cfg.num_classes}), "
                f"got {tuple(class_onehot.shape)}"
            )
        cond = torch.cat([z, self.embeddings(class_onehot.to(z.dtype))], dim=1)
        return self.generator(cond, float(truncation))


# ---------------------------------------------------------------------------------------------
# Loading and sampling


def _resolve_files(folder_or_files: str | Path | Sequence[str | Path]) -> tuple[Path, Path]:
    """(config path, weights path) from a folder, one of its two files, or an explicit pair."""
    if isinstance(folder_or_files, str | Path):
        path = Path(folder_or_files)
        if not path.exists():
            raise UserInputError(f"BigGAN folder not found: {path}")
        folder = path if path.is_dir() else path.parent
        paths = []
        for name in (CONFIG_NAME, WEIGHTS_NAME):
            candidates = [folder / name] if (folder / name).exists() else []
            # The package's S3 mirror prefixes names: biggan-deep-128-config.json.
            candidates = candidates or sorted(folder.glob(f"*-{name}"))
            if len(candidates) != 1:
                raise UserInputError(f"BigGAN folder {folder} has no single {name}")
            paths.append(candidates[0])
        return paths[0], paths[1]
    files = [Path(p) for p in folder_or_files]
    if len(files) != 2:
        raise UserInputError("give a BigGAN folder or the pair (config.json, pytorch_model.bin)")
    config, weights = sorted(files, key=lambda p: p.suffix != ".json")
    for path in (config, weights):
        if not path.is_file():
            raise UserInputError(f"BigGAN file not found: {path}")
    return config, weights


def load_biggan(
    folder_or_files: str | Path | Sequence[str | Path],
) -> tuple[BigGANDeep, BigGANConfig]:
    """Read config.json + pytorch_model.bin, check they agree, return (eval network, config).

    The config is bounded first (`read_config`), the weights file is read through the shared
    `load_state_file` checks, and the network is built on the meta device, so nothing is
    allocated until every stored tensor's name and shape has matched the config.
    """
    config_path, weights_path = _resolve_files(folder_or_files)
    config = read_config(config_path)
    try:
        with open(weights_path, "rb") as handle:
            head = handle.read(4)
    except OSError as err:
        raise UserInputError(
            f"cannot read BigGAN weights {weights_path}: {type(err).__name__}"
        ) from None
    # torch.save's zip format, or its legacy format (a pickle)
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):
        raise UserInputError(f"cannot read BigGAN weights {weights_path}: not a torch.save file")
    state = load_state_file(weights_path)
    with torch.device("meta"):
        network = BigGANDeep(config)
    network.load_state(state)
    return network, config


def truncated_normal(batch: int, dim: int, truncation: float, seed: int) -> torch.Tensor:
    """(batch, dim) float32 samples of truncnorm(-2, 2) * truncation, reproducible per seed.

    Rejection sampling from a seeded torch.Generator (about 95% of normals are kept).
    """
    truncation = check_truncation(truncation)
    for name, value in (("batch", batch), ("dim", dim)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UserInputError(f"{name} must be a positive integer, got {value!r}")
    generator = torch.Generator().manual_seed(int(seed))
    needed = batch * dim
    kept: list[torch.Tensor] = []
    count = 0
    while count < needed:
        draw = torch.randn(needed - count + 16, generator=generator, dtype=torch.float64)
        draw = draw[draw.abs() < Z_BOUND]
        kept.append(draw)
        count += draw.numel()
    samples = torch.cat(kept)[:needed].reshape(batch, dim)
    return (samples * truncation).to(torch.float32)
