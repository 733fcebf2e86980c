"""The one interface every generator family plugs into: `Model`.

A `Model` is a loaded generator seen from its analysis space: a function from latents
`(B, latent_dim)` to images `(B, C, H, W)` in [-1, 1], plus what the tools need to know about
it (resolution, named region presets, classes). Families (DCGAN, user factories, later
StyleGAN2's W/W+ spaces and BigGAN's class-conditional z) differ only in how they build the
network and how `synthesize` maps the analysis space to pixels; everything downstream
(Jacobians, subspaces, edits) sees this class alone.

`synthesize` must be a pure function of its input so that `torch.func` transforms (forward
mode, vmap) apply: networks are kept in eval mode and carry no randomness.

A *family* (`Family`) is how one kind of generator plugs in: it recognises its checkpoints
(`detect`), loads them as a `Model` in one of the spaces it offers, and may register named
built-in models. What differs between spaces of one network (reading a latent code of
another shape, lifting a W direction onto W+ layers) travels with the `Model` as
`code_reader` / `direction_lifter`, so nothing outside `models/` needs to know the family.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from lowrankgan.errors import UserInputError
from lowrankgan.shapes import Box, Difference, Shape

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
    #: (model, code) -> `(d,)` latent, for codes of another shape than `(d,)` (a W+ model
    #: reads `(num_ws, w_dim)` and `(w_dim,)` codes); raises `UserInputError` for others.
    code_reader: Callable[[Model, torch.Tensor], torch.Tensor] | None = field(
        default=None, repr=False
    )
    #: (model, `(m, k)` directions of another space) -> `(d, k)` unit directions, or None
    #: when directions of size m do not lift (a W+ model lifts W directions, m = w_dim).
    direction_lifter: Callable[[Model, torch.Tensor], torch.Tensor | None] | None = field(
        default=None, repr=False
    )

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

    def latent_from_code(self, code: torch.Tensor) -> torch.Tensor:
        """A latent code as this model's `(d,)` latent: `(d,)` or `(1, d)` as it is, other
        shapes through the family's `code_reader` (a W+ model reads W and W+ codes)."""
        code = torch.as_tensor(code)
        if code.numel() == self.latent_dim and (
            code.dim() == 1
            or tuple(code.shape)
            == (
                1,
                self.latent_dim,
            )
        ):
            return code.reshape(self.latent_dim)
        if self.code_reader is not None:
            return self.code_reader(self, code)
        raise UserInputError(
            f"the latent has shape {tuple(code.shape)}, the model expects ({self.latent_dim},)"
        )

    def lifts_from(self, dim: int) -> bool:
        """Whether directions of a `dim`-d space lift into this model's space (a W analysis
        applied to a W+ model's selected layers)."""
        if dim == self.latent_dim or self.direction_lifter is None:
            return False
        probe = torch.zeros(dim, 1, dtype=torch.float64)
        probe[0, 0] = 1.0
        return self.direction_lifter(self, probe) is not None

    def lift_directions(self, directions: torch.Tensor) -> torch.Tensor:
        """`(m, k)` directions -> `(d, k)` unit directions of this model's space: unchanged
        when m = d, lifted by the family otherwise (W -> W+ layers)."""
        if directions.shape[0] == self.latent_dim:
            return directions
        lifted = None if self.direction_lifter is None else self.direction_lifter(self, directions)
        if lifted is None:
            raise UserInputError(
                f"directions of a {directions.shape[0]}-d space do not apply to this model's "
                f"{self.latent_dim}-d {self.space} space"
            )
        return lifted


def generic_presets(height: int, width: int) -> dict[str, Shape]:
    """Presets every model has: the centre of the frame, the border around it, and halves."""
    center = Box(width // 4, height // 4, width - width // 4, height - height // 4)
    return {
        "center": center,
        "border": Difference(Box(0, 0, width, height), center),
        "top": Box(0, 0, width, height // 2),
        "bottom": Box(0, height // 2, width, height),
        "left": Box(0, 0, width // 2, height),
        "right": Box(width // 2, 0, width, height),
    }


@dataclass(frozen=True)
class LoadOptions:
    """What `load_model` passes a family besides the source: the space to analyse in, the
    truncation psi, the W+ layer selection and other weights for a built-in model."""

    space: str | None = None
    truncation: float | None = None
    layers: str | tuple[int, ...] | None = None
    checkpoint: Path | None = None


class Source:
    """A `--model` value as families see it: the text, and for an existing file its loaded
    contents, read once however many families look at it."""

    def __init__(self, text: str, read_state: Callable[[Path], Any]) -> None:
        self.text = text
        self.path = Path(text)
        self._read_state = read_state

    @cached_property
    def state(self) -> Any:
        """The file loaded with the safe loader (a dict of tensors and plain values)."""
        return self._read_state(self.path)


class Family(Protocol):
    """One generator family. Families are tried in registration order; the first whose
    `detect` accepts a source loads it."""

    #: short name, as in `lowrankgan models` and error messages
    name: str
    #: the analysis spaces it offers, default first
    spaces: tuple[str, ...]
    #: what it loads from: `"file"`, `"folder"`, `"xml"` (a text file with its companions,
    #: such as an IR's .xml and .bin) or `"spec"` (a text such as file.py:name)
    reads: str
    #: what such a file or folder holds, for the message refusing unknown ones
    expects: str

    def detect(self, source: Source) -> bool:
        """Whether `source` (a path that exists, or a `file.py:factory` spec) is ours. Cheap
        checks first: `source.state` loads the file."""
        ...

    def load(self, source: Source, options: LoadOptions) -> Model:
        """The model of `source` in `options.space` (refusing options it does not have)."""
        ...

    def builtins(self) -> Mapping[str, BuiltinSpec]:
        """Named models whose weights ship in pip wheels (may be empty)."""
        ...

    def load_builtin(self, name: str, options: LoadOptions) -> Model:
        """The built-in model `name` (one of `builtins()`)."""
        ...


class NoBuiltins:
    """For families without built-in models: the protocol's built-in half, empty."""

    def builtins(self) -> Mapping[str, BuiltinSpec]:
        return {}

    def load_builtin(self, name: str, options: LoadOptions) -> Model:
        raise KeyError(name)


@dataclass(frozen=True)
class BuiltinSpec:
    """A built-in model: what it is and where its weights live (a file inside a wheel)."""

    name: str
    description: str
    distribution: str
    weights_file: str
    #: lines `lowrankgan models` prints under it (spaces, layers, licence)
    notes: tuple[str, ...] = ()

    def weights_path(self) -> Path | None:
        """The weight file inside the installed wheel, located without importing it."""
        import importlib.metadata

        try:
            dist = importlib.metadata.distribution(self.distribution)
        except importlib.metadata.PackageNotFoundError:
            return None
        path = Path(str(dist.locate_file(self.weights_file)))
        return path if path.is_file() else None

    @property
    def weights_source(self) -> str:
        return f"pip wheel {self.distribution} ({self.weights_file})"

    def installed_weights(self, checkpoint: Path | None = None) -> Path:
        """`checkpoint` if given, else the wheel's weight file; an error naming the wheel to
        install when it is missing."""
        path = checkpoint if checkpoint is not None else self.weights_path()
        if path is None:
            raise UserInputError(
                f"weights of {self.name} are not installed: run `make install` or "
                f"`pip install --no-deps {self.distribution}`"
            )
        return path


def only_z(options: LoadOptions, name: str) -> None:
    """Refuse the options of models with a single z space and no mapping network."""
    if options.layers is not None:
        raise UserInputError(f"{name} has no W+ layers (drop --layers)")
    if options.space not in (None, "z"):
        raise UserInputError(f"{name} has only the z space (got --space {options.space})")
    if options.truncation is not None:
        raise UserInputError(f"{name} has no mapping network to truncate (drop --truncation)")


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
