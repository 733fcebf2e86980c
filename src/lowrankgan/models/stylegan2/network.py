"""StyleGAN2 generators (config F, skip ToRGB): our own network, loaded from NVIDIA's weights.

This module owns the StyleGAN2 generator: its configuration (`StyleGAN2Config`, inferred from a
state dict by `config_from_state_dict`), the network (`StyleGAN2Generator`, parameter and
buffer names exactly those of NVIDIA's `G_ema.state_dict()`), building it from a state dict
with one-line errors (`build_stylegan2`) and random networks for tests (`random_stylegan2`).
Converting other checkpoint formats into NVIDIA's naming is the loaders' job, not this one's.

The forward pass follows the official equations (docs: FORMATS.md section 1) in plain PyTorch,
without custom ops, so that `torch.func.jvp` and `torch.func.vmap` apply: nothing is done in
place and no control flow depends on tensor values. Two exact rewrites keep it simple:
- the modulated convolution scales the activations instead of the weights,
  `conv(x * s, W) * d == conv(x, W * s) * d`, so one shared weight serves the whole batch;
- the FIR resampling (`upfirdn2d`) is zero insertion, zero padding and a depthwise conv2d.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from lowrankgan.errors import UserInputError

__all__ = [
    "StyleGAN2Config",
    "StyleGAN2Generator",
    "build_stylegan2",
    "config_from_state_dict",
    "official_channels",
    "random_stylegan2",
]

_LRELU_SLOPE = 0.2
_LRELU_GAIN = math.sqrt(2.0)
_NOISE_MODES = ("const", "none", "random")
_BLOCK_KEY = re.compile(r"^synthesis\.b(\d+)\.")
_FC_KEY = re.compile(r"^mapping\.fc(\d+)\.weight$")


@dataclass(frozen=True)
class StyleGAN2Config:
    """Everything needed to build the network; all of it but `conv_clamp` is in the tensors.

    Attributes:
        z_dim: latent size (0 is not supported).
        w_dim: intermediate latent size, also the width of the mapping layers.
        c_dim: class-label size, 0 for unconditional models.
        resolution: output size R, a power of two in 4..1024 (larger powers of two work too).
        img_channels: output channels (3 for RGB).
        mapping_layers: fully connected layers in the mapping network (8 in config F).
        channels: feature channels per block resolution, e.g. `{4: 512, ..., 1024: 32}`.
        conv_clamp: activation clamp, 256 in ADA/SG3-trained pickles, None for TF-converted.
        mapping_lr_multiplier: equalised-lr multiplier of the mapping layers (0.01).
    """

    z_dim: int
    w_dim: int
    c_dim: int
    resolution: int
    img_channels: int
    mapping_layers: int
    channels: dict[int, int]
    conv_clamp: float | None = None
    mapping_lr_multiplier: float = 0.01

    def __post_init__(self) -> None:
        r = self.resolution
        if r < 4 or r & (r - 1):
            raise ValueError(f"resolution must be a power of two >= 4, got {r}")
        if sorted(self.channels) != list(self.block_resolutions):
            raise ValueError(f"channels must list {self.block_resolutions}, got {self.channels}")
        if min(self.z_dim, self.w_dim, self.img_channels, self.mapping_layers) < 1:
            raise ValueError("z_dim, w_dim, img_channels and mapping_layers must be >= 1")

    @property
    def num_ws(self) -> int:
        """Number of w vectors the synthesis network takes: 2 per block but one less at 4x4,
        plus the last ToRGB."""
        return 2 * int(math.log2(self.resolution)) - 2

    @property
    def block_resolutions(self) -> tuple[int, ...]:
        """`(4, 8, ..., resolution)`."""
        return tuple(2**k for k in range(2, int(math.log2(self.resolution)) + 1))


def official_channels(
    resolution: int, channel_base: int = 32768, channel_max: int = 512
) -> dict[int, int]:
    """NVIDIA's channel rule `min(channel_base // r, channel_max)` per block resolution r."""
    blocks = (2**k for k in range(2, int(math.log2(resolution)) + 1))
    return {r: min(channel_base // r, channel_max) for r in blocks}


# ---------------------------------------------------------------------------------------------
# Functional pieces


def _normalize_2nd_moment(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(B, D) -> (B, D), each row scaled to unit mean square."""
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


def _lrelu(x: torch.Tensor) -> torch.Tensor:
    """Leaky ReLU 0.2 times sqrt(2), which keeps the second moment of a unit Gaussian."""
    return F.leaky_relu(x, _LRELU_SLOPE) * _LRELU_GAIN


def _clamp(x: torch.Tensor, clamp: float | None) -> torch.Tensor:
    return x if clamp is None else x.clamp(-clamp, clamp)


def _fir_filter(taps: tuple[float, ...] = (1.0, 3.0, 3.0, 1.0)) -> torch.Tensor:
    """(K, K) separable FIR filter normalised to sum 1, as NVIDIA stores `resample_filter`."""
    f = torch.tensor(taps, dtype=torch.float32)
    f = torch.outer(f, f)
    return f / f.sum()


def _zero_insert2(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, 2H, 2W): samples at even positions, zeros at odd ones."""
    b, c, h, w = x.shape
    x = F.pad(x.unsqueeze(-1), (0, 1)).reshape(b, c, h, 2 * w)
    return F.pad(x.unsqueeze(-2), (0, 0, 0, 1)).reshape(b, c, 2 * h, 2 * w)


def _fir(x: torch.Tensor, f: torch.Tensor, pad: tuple[int, int], gain: float) -> torch.Tensor:
    """Depthwise FIR filtering with zero padding `pad = (before, after)` on both axes.

    x: (B, C, H, W), f: (K, K) -> (B, C, H + before + after - K + 1, same).
    conv2d correlates, so the filter is flipped to make this a true convolution as in
    `upfirdn2d`; the [1, 3, 3, 1] filters are symmetric, so the flip changes nothing for them.
    """
    c = x.shape[1]
    x = F.pad(x, (pad[0], pad[1], pad[0], pad[1]))
    kernel = (f.flip((0, 1)) * gain).to(x.dtype)
    kernel = kernel.unsqueeze(0).unsqueeze(0).expand(c, 1, *f.shape)
    return F.conv2d(x, kernel, groups=c)


def upsample2d(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, 2H, 2W): zero insertion, pad (2, 1), FIR with gain 4."""
    return _fir(_zero_insert2(x), f, pad=(2, 1), gain=4.0)


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    demodulate: bool = True,
    up: bool = False,
) -> torch.Tensor:
    """Modulated (and demodulated) convolution, without the FIR of the upsampling case.

    x: (B, Cin, H, W), weight: (Cout, Cin, k, k), styles: (B, Cin) -> (B, Cout, H', W') with
    H' = H for `up=False` (padding k // 2) and H' = 2H + k - 2 for `up=True` (transposed conv,
    stride 2, no padding; NVIDIA uses the weight with in/out swapped and not flipped).
    Scaling x by s before a shared conv equals convolving with W * s per sample; the
    demodulation `d = (sum_{i,kh,kw} (W s)^2 + 1e-8)^-1/2` is a per-sample per-output scale.
    """
    y = x * styles.unsqueeze(-1).unsqueeze(-1)
    if up:
        y = F.conv_transpose2d(y, weight.transpose(0, 1), stride=2)
    else:
        y = F.conv2d(y, weight, padding=weight.shape[-1] // 2)
    if demodulate:
        # sum_i s_i^2 sum_k W_oik^2: the squared norm of W * s without forming it per sample.
        d = (styles.square() @ weight.square().sum(dim=(2, 3)).T + 1e-8).rsqrt()
        y = y * d.unsqueeze(-1).unsqueeze(-1)
    return y


# ---------------------------------------------------------------------------------------------
# Modules; attribute names are NVIDIA's so that state dicts load unchanged.


class FullyConnectedLayer(nn.Module):
    """Equalised-lr linear layer: `x (W lr/sqrt(in))^T + b lr`, optionally lrelu * sqrt(2).

    Stored weights are `(out, in)`; NVIDIA stores them divided by the lr multiplier.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        activation: bool = False,
        lr_multiplier: float = 1.0,
        bias_init: float = 0.0,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init)))
        self.activation = activation
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in) -> (B, out)."""
        y = F.linear(x, self.weight * self.weight_gain, self.bias * self.bias_gain)
        return _lrelu(y) if self.activation else y


class MappingNetwork(nn.Module):
    """z (and c) -> ws: normalise, `mapping_layers` lrelu FC layers, broadcast, truncate."""

    def __init__(self, cfg: StyleGAN2Config) -> None:
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim = cfg.z_dim, cfg.c_dim, cfg.w_dim
        self.num_ws = cfg.num_ws
        self.num_layers = cfg.mapping_layers
        if cfg.c_dim > 0:
            self.embed = FullyConnectedLayer(cfg.c_dim, cfg.w_dim)
        in_features = cfg.z_dim + (cfg.w_dim if cfg.c_dim > 0 else 0)
        for i in range(cfg.mapping_layers):
            fc = FullyConnectedLayer(
                in_features if i == 0 else cfg.w_dim,
                cfg.w_dim,
                activation=True,
                lr_multiplier=cfg.mapping_lr_multiplier,
            )
            setattr(self, f"fc{i}", fc)
        self.register_buffer("w_avg", torch.zeros(cfg.w_dim))

    def forward(
        self,
        z: torch.Tensor,
        c: torch.Tensor | None = None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
    ) -> torch.Tensor:
        """z: (B, z_dim), c: (B, c_dim) or None -> ws: (B, num_ws, w_dim).

        Truncation `w_avg + psi (w - w_avg)` applies to the first `truncation_cutoff` ws
        (None: all of them).
        """
        x = _normalize_2nd_moment(z)
        if self.c_dim > 0:
            if c is None:
                raise UserInputError(
                    f"this generator is conditional: pass c with {self.c_dim} dims"
                )
            y = _normalize_2nd_moment(self.embed(c.to(x.dtype)))
            x = torch.cat([x, y], dim=1)
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)
        ws = x.unsqueeze(1).repeat(1, self.num_ws, 1)
        if truncation_psi == 1:
            return ws
        cutoff = self.num_ws if truncation_cutoff is None else min(truncation_cutoff, self.num_ws)
        w_avg = self.w_avg.to(ws.dtype)
        truncated = w_avg + truncation_psi * (ws[:, :cutoff] - w_avg)
        # concatenation rather than slice assignment: no in-place writes under torch.func.
        return torch.cat([truncated, ws[:, cutoff:]], dim=1)


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv (optionally upsampling x2), noise, bias, lrelu * sqrt(2), clamp."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        up: bool = False,
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        self.up = up
        self.resolution = resolution
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 3, 3))
        self.noise_strength = nn.Parameter(torch.zeros(()))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.register_buffer("resample_filter", _fir_filter())
        self.register_buffer("noise_const", torch.randn(resolution, resolution))

    def forward(
        self,
        x: torch.Tensor,
        w: torch.Tensor,
        noise_mode: str = "const",
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """x: (B, Cin, H, H), w: (B, w_dim) -> (B, Cout, R, R) with R = 2H if up else H."""
        styles = self.affine(w)
        x = modulated_conv2d(x, self.weight, styles, demodulate=True, up=self.up)
        if self.up:
            # (2H+1) after the transposed conv; pad 1 and the 4-tap FIR bring it to 2H.
            x = _fir(x, self.resample_filter, pad=(1, 1), gain=4.0)
        if noise_mode == "const":
            x = x + self.noise_const * self.noise_strength
        elif noise_mode == "random":
            shape = (x.shape[0], 1, self.resolution, self.resolution)
            noise = torch.randn(shape, generator=generator, device=x.device, dtype=x.dtype)
            x = x + noise * self.noise_strength
        x = _lrelu(x + self.bias.reshape(1, -1, 1, 1))
        return _clamp(x, self.conv_clamp)


class ToRGBLayer(nn.Module):
    """1x1 modulated conv without demodulation, styles scaled by 1/sqrt(Cin), bias, clamp."""

    def __init__(
        self, in_channels: int, out_channels: int, w_dim: int, conv_clamp: float | None = None
    ) -> None:
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.weight_gain = 1.0 / math.sqrt(in_channels)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """x: (B, Cin, H, H), w: (B, w_dim) -> (B, img_channels, H, H)."""
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False)
        return _clamp(x + self.bias.reshape(1, -1, 1, 1), self.conv_clamp)


class SynthesisBlock(nn.Module):
    """One resolution: (const at 4x4 | conv0 up), conv1, ToRGB added to the upsampled image."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        img_channels: int,
        conv_clamp: float | None,
    ) -> None:
        super().__init__()
        self.resolution = resolution
        if resolution == 4:
            self.const = nn.Parameter(torch.randn(out_channels, 4, 4))
        else:
            self.conv0 = SynthesisLayer(
                in_channels, out_channels, w_dim, resolution, up=True, conv_clamp=conv_clamp
            )
        self.conv1 = SynthesisLayer(
            out_channels, out_channels, w_dim, resolution, conv_clamp=conv_clamp
        )
        self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, conv_clamp=conv_clamp)
        self.register_buffer("resample_filter", _fir_filter())
        self.num_ws = 2 if resolution == 4 else 3

    def forward(
        self,
        x: torch.Tensor | None,
        img: torch.Tensor | None,
        ws: torch.Tensor,
        noise_mode: str,
        generator: torch.Generator | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (B, Cin, R/2, R/2) or None at 4x4, img: (B, C, R/2, R/2) or None,
        ws: (B, num_ws, w_dim) for this block -> x (B, Cout, R, R), img (B, C, R, R)."""
        if x is None:
            x = self.const.to(ws.dtype).unsqueeze(0).expand(ws.shape[0], -1, -1, -1)
            x = self.conv1(x, ws[:, 0], noise_mode, generator)
        else:
            x = self.conv0(x, ws[:, 0], noise_mode, generator)
            x = self.conv1(x, ws[:, 1], noise_mode, generator)
        y = self.torgb(x, ws[:, -1])
        img = y if img is None else upsample2d(img, self.resample_filter) + y
        return x, img


class SynthesisNetwork(nn.Module):
    """ws -> image through blocks `b4, b8, ..., b{R}` (skip architecture)."""

    def __init__(self, cfg: StyleGAN2Config) -> None:
        super().__init__()
        self.resolution = cfg.resolution
        self.num_ws = cfg.num_ws
        self.block_resolutions = cfg.block_resolutions
        for r in self.block_resolutions:
            block = SynthesisBlock(
                cfg.channels[r // 2] if r > 4 else 0,
                cfg.channels[r],
                cfg.w_dim,
                r,
                cfg.img_channels,
                cfg.conv_clamp,
            )
            setattr(self, f"b{r}", block)

    def forward(
        self,
        ws: torch.Tensor,
        noise_mode: str = "const",
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """ws: (B, num_ws, w_dim) -> img: (B, img_channels, R, R), roughly in [-1, 1].

        noise_mode: "const" (the stored noise, as NVIDIA's generate.py), "none", or "random"
        (fresh Gaussian noise drawn from `generator`).
        """
        if noise_mode not in _NOISE_MODES:
            raise UserInputError(f"noise_mode must be one of {_NOISE_MODES}, got {noise_mode!r}")
        if ws.ndim != 3 or ws.shape[1] != self.num_ws:
            raise UserInputError(f"ws must be (B, {self.num_ws}, w_dim), got {tuple(ws.shape)}")
        x = img = None
        # Consecutive blocks share one w: a block's ToRGB w is the next block's conv0 w.
        w_idx = 0
        for r in self.block_resolutions:
            block = getattr(self, f"b{r}")
            x, img = block(x, img, ws[:, w_idx : w_idx + block.num_ws], noise_mode, generator)
            w_idx += block.num_ws - 1
        return img


def style_affines(synthesis: SynthesisNetwork) -> list[tuple[int, FullyConnectedLayer]]:
    """Every style affine of the synthesis network with the index of the w it reads, in the
    order `forward` uses them (the weights SeFa factorises)."""
    affines: list[tuple[int, FullyConnectedLayer]] = []
    w_idx = 0
    for r in synthesis.block_resolutions:
        block = getattr(synthesis, f"b{r}")
        layers = [block.conv1] if r == 4 else [block.conv0, block.conv1]
        for offset, layer in enumerate([*layers, block.torgb]):
            affines.append((w_idx + offset, layer.affine))
        w_idx += block.num_ws - 1
    return affines


class StyleGAN2Generator(nn.Module):
    """StyleGAN2 generator: `mapping` (z, c -> ws) and `synthesis` (ws -> image)."""

    def __init__(self, cfg: StyleGAN2Config) -> None:
        super().__init__()
        self.config = cfg
        self.mapping = MappingNetwork(cfg)
        self.synthesis = SynthesisNetwork(cfg)

    @property
    def num_ws(self) -> int:
        return self.config.num_ws

    def forward(
        self,
        z: torch.Tensor,
        c: torch.Tensor | None = None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        noise_mode: str = "const",
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """z: (B, z_dim), c: (B, c_dim) or None -> img: (B, img_channels, R, R)."""
        ws = self.mapping(z, c, truncation_psi, truncation_cutoff)
        return self.synthesis(ws, noise_mode=noise_mode, generator=generator)


# ---------------------------------------------------------------------------------------------
# Building from state dicts


def _shape(state: Mapping[str, torch.Tensor], key: str) -> tuple[int, ...]:
    if key not in state:
        raise UserInputError(f"not a complete StyleGAN2 generator: missing key {key}")
    value = state[key]
    if not isinstance(value, torch.Tensor):
        raise UserInputError(f"{key} is a {type(value).__name__}, not a tensor")
    return tuple(value.shape)


def config_from_state_dict(
    state: Mapping[str, torch.Tensor],
    conv_clamp: float | None = None,
    mapping_lr_multiplier: float = 0.01,
) -> StyleGAN2Config:
    """Infer the configuration from NVIDIA-named tensors; conv_clamp and the mapping's lr
    multiplier are not in them (the checkpoint's readers find them)."""
    keys = list(state)
    if "synthesis.b4.const" not in state or "mapping.fc0.weight" not in state:
        if "synthesis.input.freqs" in state:
            raise UserInputError("unknown architecture: a StyleGAN3 generator, not StyleGAN2")
        shown = ", ".join(keys[:3]) + (", ..." if len(keys) > 3 else "")
        raise UserInputError(
            f"unknown architecture: not a StyleGAN2 generator state dict (keys: {shown or 'none'})"
        )
    blocks = sorted({int(m.group(1)) for k in keys if (m := _BLOCK_KEY.match(k))})
    resolution = blocks[-1]
    expected = [2**k for k in range(2, int(math.log2(resolution)) + 1)]
    if resolution & (resolution - 1) or blocks != expected:
        raise UserInputError(f"StyleGAN2 blocks must be b4, b8, ... b{resolution}: got {blocks}")
    channels = {4: _shape(state, "synthesis.b4.const")[0]}
    for r in blocks[1:]:
        channels[r] = _shape(state, f"synthesis.b{r}.conv1.weight")[0]
    fcs = sorted(int(m.group(1)) for k in keys if (m := _FC_KEY.match(k)))
    if fcs != list(range(len(fcs))):
        raise UserInputError(f"mapping layers must be fc0, fc1, ...: got {fcs}")
    w_dim = _shape(state, f"mapping.fc{fcs[-1]}.weight")[0]
    in_features = _shape(state, "mapping.fc0.weight")[1]
    c_dim = 0
    if "mapping.embed.weight" in state:
        embed_out, c_dim = _shape(state, "mapping.embed.weight")
        in_features -= embed_out
    try:
        return StyleGAN2Config(
            z_dim=in_features,
            w_dim=w_dim,
            c_dim=c_dim,
            resolution=resolution,
            img_channels=_shape(state, "synthesis.b4.torgb.weight")[0],
            mapping_layers=len(fcs),
            channels=channels,
            conv_clamp=conv_clamp,
            mapping_lr_multiplier=mapping_lr_multiplier,
        )
    except ValueError as err:
        raise UserInputError(f"not a valid StyleGAN2 generator: {err}") from None


def _list(names: list[str], limit: int = 3) -> str:
    return ", ".join(names[:limit]) + (
        f" (+{len(names) - limit} more)" if len(names) > limit else ""
    )


def build_stylegan2(
    state: Mapping[str, torch.Tensor],
    conv_clamp: float | None = None,
    mapping_lr_multiplier: float = 0.01,
) -> StyleGAN2Generator:
    """A float32 generator in eval mode without gradients, loaded strictly from `state`.

    Raises UserInputError for anything but a complete, finite, NVIDIA-named StyleGAN2 state.
    """
    if not isinstance(state, Mapping):
        raise UserInputError(f"unknown architecture: expected a state dict, got {type(state)}")
    cfg = config_from_state_dict(state, conv_clamp, mapping_lr_multiplier)
    with torch.device("meta"):
        own = StyleGAN2Generator(cfg).state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing:
        raise UserInputError(f"StyleGAN2 state dict is missing {_list(missing)}")
    if unexpected:
        raise UserInputError(f"StyleGAN2 state dict has unexpected keys {_list(unexpected)}")
    for key, ref in own.items():
        value = state[key]
        if not isinstance(value, torch.Tensor):
            raise UserInputError(f"{key} is a {type(value).__name__}, not a tensor")
        if value.shape != ref.shape:
            raise UserInputError(
                f"{key} has shape {tuple(value.shape)}, expected {tuple(ref.shape)}"
            )
        if not bool(torch.isfinite(value).all()):
            raise UserInputError(f"{key} has NaN or infinite values")
    net = StyleGAN2Generator(cfg)
    net.load_state_dict(dict(state), strict=True)
    return net.eval().requires_grad_(False)


def random_stylegan2(
    resolution: int = 32,
    channels_max: int = 64,
    z_dim: int = 32,
    w_dim: int = 32,
    mapping_layers: int = 2,
    c_dim: int = 0,
    conv_clamp: float | None = None,
    seed: int = 0,
    img_channels: int = 3,
) -> StyleGAN2Generator:
    """A generator with random weights of trained-like scale, for tests and benchmarks.

    Weights are standard normal as in NVIDIA's init (mapping weights stored / lr multiplier);
    biases, noise strengths and the noise itself are random and non-zero so that every term of
    the forward pass matters; affine biases are around 1; w_avg is the mean of 1024 mapped z.
    Channels follow NVIDIA's rule with channel_base = 16 * channels_max (at least 4).
    """
    channels = {
        r: max(c, 4)
        for r, c in official_channels(resolution, 16 * channels_max, channels_max).items()
    }
    cfg = StyleGAN2Config(
        z_dim=z_dim,
        w_dim=w_dim,
        c_dim=c_dim,
        resolution=resolution,
        img_channels=img_channels,
        mapping_layers=mapping_layers,
        channels=channels,
        conv_clamp=conv_clamp,
    )
    gen = torch.Generator().manual_seed(seed)
    net = StyleGAN2Generator(cfg)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(shape, generator=gen)

    with torch.no_grad():
        for name, p in net.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            lr = cfg.mapping_lr_multiplier if name.startswith("mapping.fc") else 1.0
            if leaf == "noise_strength":
                p.copy_(0.05 + 0.25 * torch.rand((), generator=gen))
            elif name.endswith("affine.bias"):
                p.copy_(1.0 + 0.1 * randn(*p.shape))
            elif leaf == "bias":
                p.copy_(0.1 * randn(*p.shape) / lr)
            else:
                p.copy_(randn(*p.shape) / lr)
        for name, b in net.named_buffers():
            if name.endswith("noise_const"):
                b.copy_(randn(*b.shape))
        z = randn(1024, z_dim)
        c = F.one_hot(torch.arange(1024) % c_dim, c_dim).float() if c_dim else None
        net.mapping.w_avg.copy_(net.mapping(z, c)[:, 0].mean(dim=0))
    return net.eval().requires_grad_(False)
