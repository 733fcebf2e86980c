"""DCGAN generators: our own network, built from the shapes in a checkpoint.

The DCGAN layout (Radford et al. 2016, as in the PyTorch tutorial) is a stack of transposed
convolutions: the first maps the latent, seen as a 1x1 image, to 4x4 (kernel 4, stride 1, no
padding); each following one doubles the size (kernel 4, stride 2, padding 1). Every layer
but the last has batch norm (running statistics, eval mode) and ReLU; the last has tanh.
A class-conditional DCGAN concatenates a one-hot class vector to z.

Checkpoints store this as `main.{i}.weight` etc. of an `nn.Sequential`, with indices that
shift when the author put dropout in between; we read the layer order from the tensors, not
from the indices, so any depth, width and number of channels loads.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from lowrankgan.errors import UserInputError
from lowrankgan.limits import LIMITS, check_at_most, limit

# `main.{i}.*` as saved from the tutorial's `self.main = nn.Sequential(...)`, or a bare
# `nn.Sequential`'s `{i}.*`. At most 9 digits: Python refuses to convert 4300-digit strings.
_KEY = re.compile(
    r"^(?:main\.)?(\d{1,9})\.(weight|bias|running_mean|running_var|num_batches_tracked)$"
)
#: Channels of the generated image: grey or RGB.
IMAGE_CHANNELS = (1, 3)


class DCGANGenerator(nn.Module):
    """Transposed-conv generator: `(B, in_dim)` -> `(B, C, 4 * 2**(n-1), same)` in [-1, 1].

    Args:
        channels: feature channels from input to output, e.g. `[100, 512, 256, 128, 64, 3]`.
        bn_eps: batch-norm epsilon.
    """

    def __init__(self, channels: list[int], bn_eps: float = 1e-5) -> None:
        super().__init__()
        if len(channels) < 2:
            raise ValueError("a DCGAN needs at least one layer")
        self.in_dim = channels[0]
        self.convs = nn.ModuleList(
            nn.ConvTranspose2d(cin, cout, 4, 1 if i == 0 else 2, 0 if i == 0 else 1, bias=False)
            for i, (cin, cout) in enumerate(zip(channels[:-1], channels[1:], strict=True))
        )
        self.norms = nn.ModuleList(nn.BatchNorm2d(c, eps=bn_eps) for c in channels[1:-1])
        self.eval()

    @property
    def resolution(self) -> int:
        return 4 * 2 ** (len(self.convs) - 1)

    @property
    def out_channels(self) -> int:
        return self.convs[-1].out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.reshape(x.shape[0], self.in_dim, 1, 1)
        for conv, norm in zip(self.convs[:-1], self.norms, strict=True):
            h = F.relu(norm(conv(h)))
        return torch.tanh(self.convs[-1](h))


def dcgan_layers(state: Mapping[str, torch.Tensor]) -> list[tuple[int, dict[str, torch.Tensor]]]:
    """Group `main.{i}.*` tensors by index, in order: [(index, {name: tensor})]."""
    grouped: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        match = _KEY.match(key)
        if match is None:
            continue
        grouped.setdefault(int(match.group(1)), {})[match.group(2)] = value
    return sorted(grouped.items())


def is_dcgan_state(state: Mapping[str, object]) -> bool:
    """Whether a state dict looks like a DCGAN generator (4x4 transposed convs, BN)."""
    layers = dcgan_layers({k: v for k, v in state.items() if isinstance(v, torch.Tensor)})
    convs = [t for _, t in layers if "weight" in t and t["weight"].dim() == 4]
    return len(convs) >= 2 and all(t["weight"].shape[2:] == (4, 4) for t in convs)


def check_dcgan_size(channels: list[int], source: str) -> None:
    """Refuse a DCGAN whose layer shapes imply an absurd network, before anything is built.

    `channels` runs from the latent to the image (`[in_dim, c1, ..., C]`). Bounds: the output
    side (4 * 2**(layers - 1)) by the `resolution` limit, the latent by `latent_dim`, every
    channel count >= 1, C in (1, 3), and both the parameter count and the activations of one
    forward pass of one latent by `tensor_elements`.
    """
    layers = len(channels) - 1
    ups = layers - 1
    if ups > 60:  # 4 * 2**ups is astronomically large: say so without printing it
        spec = LIMITS["resolution"]
        raise UserInputError(
            f"{source}: its {layers} transposed convolutions would make a 4*2^{ups}-pixel "
            f"image, over the limit of {limit('resolution'):,} pixels (raise it with "
            f"{spec.env_var})"
        )
    check_at_most(
        4 * 2**ups,
        "resolution",
        f"{source}: the image side its {layers} transposed convolutions make",
    )
    check_at_most(channels[0], "latent_dim", f"{source}: the first layer's input (the latent)")
    if min(channels) < 1:
        raise UserInputError(f"{source}: a layer has zero channels (channels {channels})")
    if channels[-1] not in IMAGE_CHANNELS:
        raise UserInputError(
            f"{source}: the last layer makes {channels[-1]} channels; images have 1 or 3"
        )
    weights = sum(16 * cin * cout for cin, cout in zip(channels[:-1], channels[1:], strict=True))
    norms = sum(4 * c + 1 for c in channels[1:-1])
    check_at_most(weights + norms, "tensor_elements", f"{source}: the generator's parameter count")
    activations = sum(c * (4 * 2**i) ** 2 for i, c in enumerate(channels[1:]))
    check_at_most(activations, "tensor_elements", f"{source}: the activations of one forward pass")


def build_dcgan(state: Mapping[str, object], source: str) -> DCGANGenerator:
    """Our `DCGANGenerator` with the weights of a `main.{i}.*` state dict.

    The layer shapes are checked (`check_dcgan_size`) before the network is built; it is built
    on the meta device and takes the stored tensors (as float32), so no memory is spent on
    weights that would be overwritten.
    """
    layers = dcgan_layers({k: v for k, v in state.items() if isinstance(v, torch.Tensor)})
    conv_weights = [t["weight"] for _, t in layers if "weight" in t and t["weight"].dim() == 4]
    norm_params = [t for _, t in layers if "running_mean" in t]
    if len(conv_weights) < 2 or len(norm_params) != len(conv_weights) - 1:
        raise UserInputError(
            f"{source}: not a DCGAN generator checkpoint (expected transposed convolutions "
            "with batch norm between them)"
        )
    for i, weight in enumerate(conv_weights):
        if weight.shape[2:] != (4, 4):
            raise UserInputError(
                f"{source}: transposed convolution {i} has a {tuple(weight.shape[2:])} kernel, "
                "a DCGAN's are 4x4"
            )
    channels = [conv_weights[0].shape[0]] + [w.shape[1] for w in conv_weights]
    for prev, weight in zip(conv_weights[:-1], conv_weights[1:], strict=True):
        if weight.shape[0] != prev.shape[1]:
            raise UserInputError(f"{source}: layer shapes do not chain ({tuple(weight.shape)})")
    check_dcgan_size(channels, source)
    ours: dict[str, torch.Tensor] = {}
    for i, weight in enumerate(conv_weights):
        ours[f"convs.{i}.weight"] = weight
    for i, params in enumerate(norm_params):
        for name in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
            if name not in params:
                raise UserInputError(f"{source}: batch norm {i} lacks {name}")
            ours[f"norms.{i}.{name}"] = params[name]
    for name, tensor in ours.items():
        if name.endswith("num_batches_tracked"):
            ours[name] = tensor.to(torch.long)
        elif not tensor.is_floating_point():
            raise UserInputError(f"{source}: {name} is not a floating-point tensor")
        else:
            ours[name] = tensor.to(torch.float32).contiguous()
    with torch.device("meta"):
        net = DCGANGenerator(channels)
    try:
        net.load_state_dict(ours, strict=True, assign=True)
    except RuntimeError as exc:
        # The first line is "Error(s) in loading state_dict for ...": report the reason.
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        reason = lines[1] if len(lines) > 1 else (lines or ["cannot load"])[0]
        raise UserInputError(f"{source}: {reason[:200]}") from None
    for name, tensor in net.state_dict().items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise UserInputError(f"{source}: weights contain NaN or Inf ({name})")
    return net.eval().requires_grad_(False)


def synthesize_dcgan(
    network: nn.Module, latents: torch.Tensor, condition: torch.Tensor | None
) -> torch.Tensor:
    """`(B, d)` latents (and `(B, K)` one-hot classes) -> `(B, C, H, W)`."""
    if condition is not None:
        latents = torch.cat([latents, condition], dim=1)
    return network(latents)
