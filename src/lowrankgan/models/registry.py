"""The registry behind `load_model`: families, built-in names and devices.

`load_model` accepts
- a built-in name (`dcgan-faces`, `omniart-eyes`), weights found where the model's wheel
  installed them (never by importing that package), or in `checkpoint=` if given;
- a checkpoint file or folder, its family detected from what it holds;
- `path/to/file.py:factory` (a user generator, see `models.factory`).

A family (`models.base.Family`) registers in `FAMILIES`; its built-in models register with
it. Nothing else here knows a family.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch

from lowrankgan.errors import UserInputError
from lowrankgan.models.base import BuiltinSpec, Family, LoadOptions, Model, Source
from lowrankgan.models.biggan.family import BigGANFamily
from lowrankgan.models.checkpoints import check_checkpoint_file, load_state_file
from lowrankgan.models.dcgan.family import DCGANFamily
from lowrankgan.models.factory import FactoryFamily
from lowrankgan.models.openvino.family import OpenVINOFamily
from lowrankgan.models.stylegan2.family import StyleGAN2Family

#: Every family, in the order detection tries them: factories by their spec and OpenVINO IR
#: by its XML (both before any checkpoint check), StyleGAN2 by its pickles (before DCGAN,
#: whose detection loads the file), BigGAN folders.
FAMILIES: list[Family] = [
    FactoryFamily(),
    StyleGAN2Family(),
    DCGANFamily(),
    BigGANFamily(),
    OpenVINOFamily(),
]
#: What families read that is not a binary checkpoint: they are asked before the checkpoint
#: checks (which refuse text files).
_TEXT_SOURCES = ("spec", "xml")


def register_family(family: Family, *, first: bool = False) -> None:
    """Add a family (see `docs/architecture.md`); `first` makes detection try it first."""
    FAMILIES.insert(0, family) if first else FAMILIES.append(family)


def builtin_models() -> dict[str, tuple[Family, BuiltinSpec]]:
    """Every built-in name, its family and its spec."""
    return {name: (family, spec) for family in FAMILIES for name, spec in family.builtins().items()}


#: The built-in models' specs by name.
BUILTIN: dict[str, BuiltinSpec] = {name: spec for name, (_, spec) in builtin_models().items()}


@dataclass(frozen=True)
class ModelListing:
    name: str
    description: str
    weights: str
    available: bool
    notes: tuple[str, ...] = ()


def list_models() -> list[ModelListing]:
    """Every built-in model, where its weights come from and whether they are here."""
    return [
        ModelListing(
            spec.name,
            spec.description,
            spec.weights_source,
            spec.weights_path() is not None,
            spec.notes,
        )
        for _, spec in builtin_models().values()
    ]


#: The `--device` values accepted, for messages.
DEVICES = "cpu, cuda, cuda:N, mps or auto"


def _resolve_device(device: str | torch.device | None) -> torch.device:
    """`device` as a torch device, if it is one we run on: cpu, cuda, cuda:N (an existing
    GPU), mps (where available) or auto (cuda if available, else cpu). Anything torch also
    knows (meta, xpu, lazy, ...) is refused: the networks neither compute nor load there."""
    text = "auto" if device is None else str(device).strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    match = re.fullmatch(r"(cpu|cuda|mps)(?::(\d{1,4}))?", text)
    if match is None or (match.group(2) is not None and match.group(1) != "cuda"):
        raise UserInputError(f"unknown device {str(device)[:100]!r}; use {DEVICES}")
    kind, index = match.group(1), match.group(2)
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise UserInputError(f"device {text} requested but CUDA is not available")
        count = torch.cuda.device_count()
        if index is not None and int(index) >= count:
            raise UserInputError(
                f"device {text} requested but this machine has {count} CUDA device(s) "
                f"(cuda:0..cuda:{count - 1})"
            )
    if kind == "mps" and not torch.backends.mps.is_available():
        raise UserInputError(f"device {text} requested but MPS is not available")
    return torch.device(text)


def load_model(
    name_or_path: str | Path,
    *,
    device: str | torch.device | None = "cpu",
    checkpoint: str | Path | None = None,
    class_: int | str | None = None,
    space: str | None = None,
    truncation: float | None = None,
    layers: str | tuple[int, ...] | None = None,
) -> Model:
    """Load a model by built-in name, checkpoint path or `file.py:factory`.

    Args:
        name_or_path: see the module docstring.
        device: `"cpu"`, `"cuda"`, `"cuda:1"`, `"mps"` or `"auto"`.
        checkpoint: other weights for a built-in model, in the same layout.
        class_: class index or name for class-conditional models.
        space: analysis space (`"z"`; StyleGAN2 also `"w"`, its default, and `"wplus"`).
        truncation: psi in (0, 1] for models with a mapping network.
        layers: W+ layer selection (`"4-7"`), with `space="wplus"`.
    """
    target = _resolve_device(device)
    text = str(name_or_path)
    options = LoadOptions(space, truncation, layers, Path(checkpoint) if checkpoint else None)
    builtins = builtin_models()
    if text in builtins:
        family, _ = builtins[text]
        model = family.load_builtin(text, options)
    elif checkpoint is not None:
        raise UserInputError(f"--checkpoint applies to built-in models, not {text!r}")
    else:
        model = _load_source(Source(text, load_state_file), options, builtins)
    return model.to(target).with_class(class_)


def _load_source(source: Source, options: LoadOptions, builtins: dict) -> Model:
    """The first family that recognises `source` loads it; a clear error when none does."""
    text, path = source.text, source.path
    # Texts such as file.py:name are read by the families that take specs, before any path
    # check: they name no file of their own.
    for family in FAMILIES:
        if family.reads in _TEXT_SOURCES and family.detect(source):
            return family.load(source, options)
    if path.suffix == ".py":
        raise UserInputError(f"name the factory: {text}:factory_function")
    if path.is_file():
        check_checkpoint_file(path)
    elif not path.exists():
        if any(sep in text for sep in ("/", "\\")) or path.suffix:
            raise UserInputError(f"model file not found: {text}")
        raise UserInputError(
            f"unknown model {text!r}; available: {', '.join(builtins)} "
            "(or a checkpoint path, or file.py:factory)"
        )
    for family in FAMILIES:
        if family.reads not in _TEXT_SOURCES and family.detect(source):
            return family.load(source, options)
    if path.is_dir():
        expected = " or ".join(f.expects for f in FAMILIES if f.reads == "folder") or "a model"
        raise UserInputError(
            f"{path}: not a recognised checkpoint (a folder, but without {expected})"
        )
    raise UserInputError(f"{path}: unrecognised checkpoint (no known generator layout)")
