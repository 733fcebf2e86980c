"""The one interface every generator family plugs into: `Model`.

A `Model` is a loaded generator seen from its analysis space: a function from latents
`(B, latent_dim)` to images `(B, C, H, W)` in [-1, 1], plus what the tools need to know about
it (resolution, named region presets, classes). Families (DCGAN, user factories, later
StyleGAN2's W/W+ spaces and BigGAN's class-conditional z) differ only in how they build the
network and how `synthesize` maps the analysis space to pixels; everything downstream
(Jacobians, subspaces, edits) sees this class alone.

`synthesize` must be a pure function of its input so that `torch.func` transforms (forward
mode, vmap) apply: networks are kept in eval mode and carry no randomness.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property

import torch
from torch import nn

from lowrankgan.errors import UserInputError
from lowrankgan.shapes import Shape

#: synthesize function: (network, latents (B, d), condition (B, K) one-hot or None) -> images
SynthesisFn = Callable[[nn.Module, torch.Tensor, "torch.Tensor | None"], torch.Tensor]


@dataclass(frozen=True)
class Model:
    """A pretrained generator, its analysis space and its presets.

    Attributes:
        name: registry name or a path the model was loaded from.
        network: the `nn.Module`, in eval mode, on `device`.
        latent_dim: d, the dimension of the analysis space.
        space: name of the analysis space (`"z"` for DCGAN/BigGAN, `"w"` for StyleGAN2 ...).
        resolution: output `(H, W)`.
        channels: output channels C (3 for RGB).
        presets: named regions, in output pixels.
        source: where the weights came from (file path, package, factory).
        class_names: for class-conditional models, the classes in index order.
        condition: the class index in use (conditional models only).
    """

    name: str
    network: nn.Module
    latent_dim: int
    resolution: tuple[int, int]
    synthesis_fn: SynthesisFn = field(repr=False)
    channels: int = 3
    space: str = "z"
    presets: Mapping[str, Shape] = field(default_factory=dict)
    source: str = ""
    description: str = ""
    class_names: tuple[str, ...] | None = None
    condition: int | None = None
    #: (model, seed) -> (d,) latent; families with a mapping network sample through it.
    latent_sampler: Callable[[Model, int], torch.Tensor] | None = field(default=None, repr=False)
    #: what the family records in analyses (space details, truncation, layers).
    details: Mapping[str, object] = field(default_factory=dict)
    #: network -> `(m, d)` weights of the layers that read the analysis latent directly, in
    #: the latent's coordinates (what SeFa factorises); None: found from standard layers.
    latent_layer: Callable[[nn.Module], torch.Tensor] | None = field(default=None, repr=False)
    #: What GANSpace's PCA reads: the name of a module whose input is an early activation,
    #: or `"latent"` for spaces made by a mapping network (PCA of the sampled latents).
    pca_features: str | None = None

    @property
    def device(self) -> torch.device:
        for tensor in self.network.parameters():
            return tensor.device
        for tensor in self.network.buffers():
            return tensor.device
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        for tensor in (*self.network.parameters(), *self.network.buffers()):
            if tensor.is_floating_point():
                return tensor.dtype
        return torch.float32

    @cached_property
    def activation_bytes(self) -> int:
        """Bytes of every module output in one forward pass of one latent (measured once):
        what sizes Jacobian chunks to a memory budget."""
        total = 0

        def hook(_module: nn.Module, _inputs: object, output: object) -> None:
            nonlocal total
            if isinstance(output, torch.Tensor):
                total += output.numel() * output.element_size()

        handles = [m.register_forward_hook(hook) for m in self.network.modules()]
        try:
            with torch.no_grad():
                probe = torch.zeros(1, self.latent_dim, device=self.device, dtype=self.dtype)
                out = self.synthesize(probe)
        finally:
            for handle in handles:
                handle.remove()
        return max(total, out.numel() * out.element_size())

    @property
    def is_conditional(self) -> bool:
        return self.class_names is not None

    def sample_latent(self, seed: int) -> torch.Tensor:
        """The latent of `seed`: `(d,)` standard normal, identical on every device."""
        if self.latent_sampler is not None:
            return self.latent_sampler(self, int(seed))
        generator = torch.Generator().manual_seed(int(seed))
        latent = torch.randn(self.latent_dim, generator=generator, dtype=torch.float32)
        return latent.to(device=self.device, dtype=self.dtype)

    def condition_vector(self, batch: int) -> torch.Tensor | None:
        """`(batch, K)` one-hot rows of the active class, or None for unconditional models."""
        if self.class_names is None:
            return None
        onehot = torch.zeros(batch, len(self.class_names), device=self.device, dtype=self.dtype)
        onehot[:, self.condition or 0] = 1.0
        return onehot

    def synthesize(self, latents: torch.Tensor) -> torch.Tensor:
        """Images of latents: `(B, d)` or `(d,)` -> `(B, C, H, W)` float in [-1, 1]."""
        if latents.dim() == 1:
            latents = latents.unsqueeze(0)
        return self.synthesis_fn(self.network, latents, self.condition_vector(latents.shape[0]))

    def with_class(self, which: int | str | None) -> Model:
        """The same model with another active class (index or name)."""
        if which is None:
            return self
        if self.class_names is None:
            raise UserInputError(f"model {self.name} is not class-conditional; drop --class")
        return replace(self, condition=resolve_class(which, self.class_names))

    def to(self, device: str | torch.device) -> Model:
        return replace(self, network=self.network.to(device))


def resolve_class(which: int | str, class_names: Sequence[str]) -> int:
    """A class index from an index or a (case-insensitive) name."""
    text = str(which).strip()
    if text.lstrip("-").isdigit():
        index = int(text)
        if not 0 <= index < len(class_names):
            raise UserInputError(f"class index {index} is out of range 0..{len(class_names) - 1}")
        return index
    lowered = [name.lower() for name in class_names]
    if text.lower() in lowered:
        return lowered.index(text.lower())
    if len(class_names) <= 20:
        raise UserInputError(f"unknown class {text!r}; choose one of: {', '.join(class_names)}")
    close = difflib.get_close_matches(text.lower(), lowered, n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise UserInputError(f"unknown class {text!r}{hint} (give a name or an index)")
