"""Model registry: names, checkpoint files and user factories behind `load_model`.

`load_model` accepts
- a registered name (`dcgan-faces`, `omniart-eyes`), weights found where the model's wheel
  installed them (never by importing that package), or in `checkpoint=` if given;
- a checkpoint path, its family detected from the tensors it holds;
- `path/to/file.py:factory`, where `factory()` returns an `nn.Module` with an integer
  `latent_dim` mapping `(B, latent_dim)` to `(B, C, H, W)` in [-1, 1].

Families register a detector and a builder in `FAMILIES`; later families (StyleGAN2, BigGAN)
add themselves there and to `BUILTIN`.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import sys
import uuid
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from lowrankgan.errors import UserInputError
from lowrankgan.models.base import Model
from lowrankgan.models.biggan.family import biggan_model
from lowrankgan.models.checkpoints import check_torch_zip, find_state_dict, load_state_file
from lowrankgan.models.dcgan import build_dcgan, is_dcgan_state, synthesize_dcgan
from lowrankgan.models.stylegan2.family import stylegan2_model
from lowrankgan.models.stylegan2.formats import is_torch_file, read_stylegan2_checkpoint
from lowrankgan.shapes import Box, Difference, Ellipse, Shape, Union


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


# Placed on the average of 256 samples of the DigiFace DCGAN (64x64, faces centred).
_FACE = Ellipse(32.0, 36.0, 20.0, 27.0)
DCGAN_FACES_PRESETS: dict[str, Shape] = {
    "eyes": Box(14, 25, 50, 35),
    "left_eye": Box(14, 25, 31, 35),
    "right_eye": Box(33, 25, 50, 35),
    "nose": Box(26, 33, 38, 46),
    "mouth": Box(21, 46, 43, 56),
    "hair": Box(6, 0, 58, 12),
    "face": _FACE,
    "background": Difference(Box(0, 0, 64, 64), Ellipse(32.0, 36.0, 24.0, 31.0)),
}

# Placed on the average of 64 samples of the OmniArt eye DCGAN (128x128, eye centred).
OMNIART_EYE_CLASSES = ("amber", "blue", "brown", "gray", "grayscale", "green", "hazel", "red")
OMNIART_EYES_PRESETS: dict[str, Shape] = {
    "iris": Ellipse(64.0, 63.0, 24.0, 23.0),
    "lids": Union((Box(12, 30, 116, 46), Box(12, 82, 116, 96))),
    "eye": Ellipse(64.0, 63.0, 52.0, 30.0),
    "skin": Difference(Box(0, 0, 128, 128), Ellipse(64.0, 63.0, 56.0, 34.0)),
}


@dataclass(frozen=True)
class BuiltinModel:
    """A named model: what it is and where its weights live."""

    name: str
    description: str
    distribution: str
    weights_file: str
    state_keys: tuple[str, ...]
    presets: Mapping[str, Shape]
    class_names: tuple[str, ...] | None = None
    latent_dim: int | None = None

    def weights_path(self) -> Path | None:
        """The weight file inside the installed wheel, located without importing it."""
        try:
            dist = importlib.metadata.distribution(self.distribution)
        except importlib.metadata.PackageNotFoundError:
            return None
        path = Path(str(dist.locate_file(self.weights_file)))
        return path if path.is_file() else None

    @property
    def weights_source(self) -> str:
        return f"pip wheel {self.distribution} ({self.weights_file})"


BUILTIN: dict[str, BuiltinModel] = {
    "dcgan-faces": BuiltinModel(
        name="dcgan-faces",
        description="DCGAN, 64x64 faces trained on DigiFace-1M (z, 100-d)",
        distribution="gan-face-generate",
        weights_file="gan_face_generate/weights.tar",
        state_keys=("netG_state_dict",),
        presets=DCGAN_FACES_PRESETS,
    ),
    "omniart-eyes": BuiltinModel(
        name="omniart-eyes",
        description="class-conditional DCGAN, 128x128 eyes, 8 colour classes (z, 100-d)",
        distribution="omniart-eye-generator",
        weights_file="omniart_eye_generator/generator_model_state.pth",
        state_keys=(),
        presets=OMNIART_EYES_PRESETS,
        class_names=OMNIART_EYE_CLASSES,
        latent_dim=100,
    ),
}


@dataclass(frozen=True)
class ModelListing:
    name: str
    description: str
    weights: str
    available: bool


def list_models() -> list[ModelListing]:
    """Every registered model, where its weights come from and whether they are here."""
    return [
        ModelListing(
            spec.name, spec.description, spec.weights_source, spec.weights_path() is not None
        )
        for spec in BUILTIN.values()
    ]


def _dcgan_model(
    state: Mapping[str, torch.Tensor],
    name: str,
    source: str,
    presets: Mapping[str, Shape] | None = None,
    class_names: tuple[str, ...] | None = None,
    latent_dim: int | None = None,
    description: str = "",
) -> Model:
    network = build_dcgan(state, source)
    in_dim = network.in_dim
    n_classes = len(class_names) if class_names else 0
    if latent_dim is None:
        latent_dim = in_dim - n_classes
    if latent_dim + n_classes != in_dim:
        raise UserInputError(
            f"{source}: first layer takes {in_dim} inputs, expected {latent_dim}+{n_classes}"
        )
    size = network.resolution
    all_presets = generic_presets(size, size)
    all_presets.update(presets or {})
    return Model(
        name=name,
        network=network,
        latent_dim=latent_dim,
        resolution=(size, size),
        synthesis_fn=synthesize_dcgan,
        channels=network.out_channels,
        space="z",
        presets=all_presets,
        source=source,
        description=description or f"DCGAN {size}x{size}",
        class_names=class_names,
        condition=0 if class_names else None,
        # The second transposed convolution reads the first block's rectified features.
        pca_features="convs.1",
    )


def _load_builtin(spec: BuiltinModel, checkpoint: Path | None) -> Model:
    path = checkpoint if checkpoint is not None else spec.weights_path()
    if path is None:
        raise UserInputError(
            f"weights of {spec.name} are not installed: run `make install` or "
            f"`pip install --no-deps {spec.distribution}`"
        )
    check_checkpoint_file(path)
    state = find_state_dict(load_state_file(path), spec.state_keys)
    return _dcgan_model(
        state,
        spec.name,
        str(path),
        spec.presets,
        spec.class_names,
        spec.latent_dim,
        spec.description,
    )


#: Checkpoint families: (name, detector on the loaded dict, builder).
FAMILIES: list[tuple[str, Callable[[Mapping], bool], Callable[[Mapping, Path], Model]]] = [
    (
        "dcgan",
        lambda obj: is_dcgan_state(find_state_dict(obj, ("netG_state_dict", "generator"))),
        lambda obj, path: _dcgan_model(
            find_state_dict(obj, ("netG_state_dict", "generator")), str(path), str(path)
        ),
    ),
]


def _load_checkpoint(
    path: Path, space: str | None, truncation: float | None, layers: str | None
) -> Model:
    check_checkpoint_file(path)
    if is_stylegan2_file(path):
        checkpoint = read_stylegan2_checkpoint(path)
        return stylegan2_model(
            checkpoint, name=str(path), space=space or "w", truncation=truncation, layers=layers
        )
    obj = load_state_file(path)
    for _family, detect, build in FAMILIES:
        if detect(obj):
            _only_z(space, truncation, str(path), layers)
            return build(obj, path)
    raise UserInputError(f"{path}: unrecognised checkpoint (no known generator layout)")


def _load_folder(
    path: Path, space: str | None, truncation: float | None, layers: str | None
) -> Model:
    """A model stored as a folder: BigGAN-deep's `config.json` + `pytorch_model.bin`."""
    if not (path / "config.json").is_file() and next(path.glob("*-config.json"), None) is None:
        raise UserInputError(
            f"{path}: not a recognised checkpoint (a folder, but without the config.json and "
            "pytorch_model.bin of a BigGAN-deep model)"
        )
    if layers is not None or space not in (None, "z"):
        raise UserInputError(f"{path}: BigGAN models are analysed in z (drop --space/--layers)")
    return biggan_model(path, name=str(path), truncation=truncation)


#: What `--model`/`--checkpoint` files may be, for the message refusing anything else.
_CHECKPOINT_KINDS = "a PyTorch .pt/.pth/.tar/.bin file or a StyleGAN2 .pkl"


def check_checkpoint_file(path: Path) -> None:
    """Refuse, naming the file, what cannot be a checkpoint: a folder, an empty file, text or
    HTML (a saved error page), a zip that `torch.save` did not write, any other non-pickle.
    Reads the first bytes only (and a zip's directory, with its declared sizes checked: the
    loaders and `_mentions_g_ema` read entries after this); the loaders check the rest."""
    if not path.exists():
        raise UserInputError(f"checkpoint not found: {path}")
    if path.is_dir():
        raise UserInputError(f"{path}: not a recognised checkpoint (it is a folder)")
    if not path.is_file():
        raise UserInputError(f"{path}: not a recognised checkpoint (not a regular file)")
    try:
        with open(path, "rb") as handle:
            head = handle.read(64)
    except OSError as exc:
        raise UserInputError(f"cannot read checkpoint {path}: {exc.strerror or exc}") from None
    if not head:
        raise UserInputError(f"{path}: not a recognised checkpoint (the file is empty)")
    if head.startswith(b"PK\x03\x04"):
        # The directory's sizes are checked here, before anything reads an entry of it.
        if not any(name.endswith("data.pkl") for name in check_torch_zip(path)):
            raise UserInputError(
                f"{path}: not a recognised checkpoint (a zip archive that torch.save did not "
                f"write; expected {_CHECKPOINT_KINDS})"
            )
        return
    if head[:1] == b"\x80":  # a pickle: torch's legacy format, NVIDIA or TF StyleGAN2
        return
    raise UserInputError(
        f"{path}: not a recognised checkpoint ({_describe_head(head)}; "
        f"expected {_CHECKPOINT_KINDS})"
    )


def _describe_head(head: bytes) -> str:
    """What a file starting with `head` looks like, in a few words."""
    text = head.decode("utf-8", "ignore").lstrip("\ufeff \t\r\n")
    if text[:1] == "<":
        lowered = text.lower()
        if lowered.startswith(("<!doctype html", "<html", "<head", "<body")):
            return "it is an HTML page"
        return "it looks like HTML or XML"
    printable = all(c.isprintable() or c in "\t\r\n" for c in text)
    if text and printable and len(text.encode()) >= len(head) - 3:
        return "it is a text file"
    return "unknown binary format"


def is_stylegan2_file(path: Path) -> bool:
    """A plain pickle (NVIDIA or TF StyleGAN2) or a torch file holding rosinality's `g_ema`."""
    if is_torch_file(path):
        return _mentions_g_ema(path)
    with open(path, "rb") as handle:
        return handle.read(1) == b"\x80"


def _mentions_g_ema(path: Path) -> bool:
    """Whether a torch file holds rosinality's `g_ema`, without loading its tensors twice: the
    zip format's `data.pkl` names the dict keys in plain text (the legacy format is loaded)."""
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [n for n in archive.namelist() if n.endswith("/data.pkl")]
            if len(pickles) == 1:
                return b"g_ema" in archive.read(pickles[0])
    except zipfile.BadZipFile:
        pass
    return "g_ema" in load_state_file(path)


def _only_z(
    space: str | None, truncation: float | None, name: str, layers: str | None = None
) -> None:
    if layers is not None:
        raise UserInputError(f"{name} has no W+ layers (drop --layers)")
    if space not in (None, "z"):
        raise UserInputError(f"{name} has only the z space (got --space {space})")
    if truncation is not None:
        raise UserInputError(f"{name} has no mapping network to truncate (drop --truncation)")


def _load_factory(spec: str) -> Model:
    file_part, _, factory_name = spec.rpartition(":")
    path = Path(file_part)
    if not path.is_file():
        raise UserInputError(f"model file not found: {path}")
    if not factory_name.isidentifier():
        raise UserInputError(f"bad factory name {factory_name!r} in {spec!r}")
    module_name = f"lowrankgan_user_{uuid.uuid4().hex}"
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    if module_spec is None or module_spec.loader is None:
        raise UserInputError(f"cannot import {path}")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_name] = module
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:  # the user's file: report its error on one line
        raise UserInputError(f"importing {path} failed: {type(exc).__name__}: {exc}") from None
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        raise UserInputError(f"{path} has no callable {factory_name!r}")
    try:
        network = factory()
    except Exception as exc:
        raise UserInputError(f"{spec}: factory failed: {type(exc).__name__}: {exc}") from None
    if not isinstance(network, nn.Module):
        raise UserInputError(f"{spec}: factory must return a torch.nn.Module")
    latent_dim = getattr(network, "latent_dim", None)
    if not isinstance(latent_dim, int) or isinstance(latent_dim, bool) or latent_dim < 1:
        raise UserInputError(f"{spec}: the module needs a positive integer attribute latent_dim")
    network = network.eval().requires_grad_(False)
    try:
        with torch.no_grad():
            probe = network(torch.zeros(1, latent_dim, device=_module_device(network)))
    except Exception as exc:  # the user's network: report its error on one line
        raise UserInputError(
            f"{spec}: forward of a (1, {latent_dim}) latent failed: {type(exc).__name__}: {exc}"
        ) from None
    if not isinstance(probe, torch.Tensor) or probe.dim() != 4:
        raise UserInputError(f"{spec}: forward must return a (B, C, H, W) tensor")
    _, channels, height, width = probe.shape
    if channels not in (1, 3):
        raise UserInputError(f"{spec}: images must have 1 or 3 channels, got {channels}")
    return Model(
        name=spec,
        network=network,
        latent_dim=latent_dim,
        resolution=(height, width),
        synthesis_fn=lambda net, latents, condition: net(latents),
        channels=channels,
        space="z",
        presets=generic_presets(height, width),
        source=f"factory {factory_name}() in {path}",
        description=f"user generator {height}x{width}",
    )


def _module_device(network: nn.Module) -> torch.device:
    for tensor in network.parameters():
        return tensor.device
    return torch.device("cpu")


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
    """Load a model by registered name, checkpoint path or `file.py:factory`.

    Args:
        name_or_path: see the module docstring.
        device: `"cpu"`, `"cuda"`, `"cuda:1"`, `"mps"` or `"auto"`.
        checkpoint: other weights for a registered model, in the same layout.
        class_: class index or name for class-conditional models.
        space: analysis space (`"z"`; StyleGAN2 also `"w"`, its default).
        truncation: psi in (0, 1] for models with a mapping network.
        layers: W+ layer selection (`"4-7"`), with `space="wplus"`.
    """
    target = _resolve_device(device)
    text = str(name_or_path)
    if text in BUILTIN:
        _only_z(space, truncation, text, layers)
        model = _load_builtin(BUILTIN[text], Path(checkpoint) if checkpoint else None)
    elif checkpoint is not None:
        raise UserInputError(f"--checkpoint applies to registered models, not {text!r}")
    elif ":" in text and text.rpartition(":")[0].endswith(".py"):
        _only_z(space, truncation, text, layers)
        model = _load_factory(text)
    elif Path(text).suffix in {".py"}:
        raise UserInputError(f"name the factory: {text}:factory_function")
    elif Path(text).is_dir():
        model = _load_folder(Path(text), space, truncation, layers)
    elif Path(text).exists():
        model = _load_checkpoint(Path(text), space, truncation, layers)
    elif any(sep in text for sep in ("/", "\\")) or Path(text).suffix:
        raise UserInputError(f"model file not found: {text}")
    else:
        raise UserInputError(
            f"unknown model {text!r}; available: {', '.join(BUILTIN)} "
            "(or a checkpoint path, or file.py:factory)"
        )
    return model.to(target).with_class(class_)
