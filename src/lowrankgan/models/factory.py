"""User generators: `path/to/file.py:factory`, where `factory()` returns an `nn.Module`
with an integer `latent_dim` mapping `(B, latent_dim)` to `(B, C, H, W)` in [-1, 1].

This is the one family that runs code: the user's own file, which they name explicitly.
"""

from __future__ import annotations

import importlib.util
import sys
import uuid
from pathlib import Path

import torch
from torch import nn

from lowrankgan.errors import UserInputError
from lowrankgan.models.base import LoadOptions, Model, NoBuiltins, Source, generic_presets, only_z


def is_factory_spec(text: str) -> bool:
    """`file.py:name` (the part before the last colon ends in .py)."""
    return ":" in text and text.rpartition(":")[0].endswith(".py")


class FactoryFamily(NoBuiltins):
    """A module built by a function in a Python file the user names."""

    name = "factory"
    spaces = ("z",)
    reads = "spec"
    expects = "file.py:factory"

    def detect(self, source: Source) -> bool:
        return is_factory_spec(source.text)

    def load(self, source: Source, options: LoadOptions) -> Model:
        only_z(options, source.text)
        return load_factory(source.text)


def load_factory(spec: str) -> Model:
    """Import the file of `spec`, call its factory and probe the module with one latent."""
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
