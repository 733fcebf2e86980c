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

from ..errors import UserInputError

# `main.{i}.*` as saved from the tutorial's `self.main = nn.Sequential(...)`, or a bare
# `nn.Sequential`'s `{i}.*`.
_KEY = re.compile(r"^(?:main\.)?(\d+)\.(weight|bias|running_mean|running_var|num_batches_tracked)$")


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


def build_dcgan(state: Mapping[str, torch.Tensor], source: str) -> DCGANGenerator:
    """Our `DCGANGenerator` with the weights of a `main.{i}.*` state dict."""
    layers = dcgan_layers(state)
    conv_weights = [t["weight"] for _, t in layers if "weight" in t and t["weight"].dim() == 4]
    norm_params = [t for _, t in layers if "running_mean" in t]
    if len(conv_weights) < 2 or len(norm_params) != len(conv_weights) - 1:
        raise UserInputError(
            f"{source}: not a DCGAN generator checkpoint (expected transposed convolutions "
            "with batch norm between them)"
        )
    channels = [conv_weights[0].shape[0]] + [w.shape[1] for w in conv_weights]
    for prev, weight in zip(conv_weights[:-1], conv_weights[1:], strict=True):
        if weight.shape[0] != prev.shape[1]:
            raise UserInputError(f"{source}: layer shapes do not chain ({tuple(weight.shape)})")
    net = DCGANGenerator(channels)
    ours: dict[str, torch.Tensor] = {}
    for i, weight in enumerate(conv_weights):
        ours[f"convs.{i}.weight"] = weight
    for i, params in enumerate(norm_params):
        for name in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
            if name not in params:
                raise UserInputError(f"{source}: batch norm {i} lacks {name}")
            ours[f"norms.{i}.{name}"] = params[name]
    try:
        net.load_state_dict(ours, strict=True)
    except RuntimeError as exc:
        raise UserInputError(f"{source}: {str(exc).splitlines()[0]}") from None
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
