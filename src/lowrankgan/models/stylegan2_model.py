"""StyleGAN2 as a lowrankgan `Model`: latent spaces, truncation and region presets.

Turns a checkpoint read by `stylegan2_formats` into a `Model` whose analysis space is
- `w` (default, as in the paper): one `w` broadcast to every layer; seeds are sampled as
  `z -> mapping -> w` with truncation `psi` towards `w_avg`;
- `z`: the mapping network is part of the function, truncation included.
Noise is the checkpoint's constant noise, so the function is deterministic (and
differentiable in forward mode). Presets for aligned faces are the LowRankGAN authors' boxes
(256x256 coordinates) plus ours, scaled to the model's resolution; church and car models get
sky/ground and body/ground presets.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..errors import UserInputError
from ..shapes import Box, Difference, Ellipse, Shape
from .base import Model
from .stylegan2 import StyleGAN2Generator, build_stylegan2
from .stylegan2_formats import SG2Checkpoint

SPACES = ("w", "z")


def _centre_box(row: float, col: float, height: float, width: float) -> Box:
    return Box(
        round(col - width / 2),
        round(row - height / 2),
        round(col + width / 2),
        round(row + height / 2),
    )


# The authors' boxes (center_row, center_col, height, width) on 256x256 aligned faces.
FACE_PRESETS_256: dict[str, Shape] = {
    "eyes": _centre_box(120, 128, 20, 115),
    "left_eye": _centre_box(120, 95, 20, 38),
    "right_eye": _centre_box(120, 159, 20, 38),
    "nose": _centre_box(142, 131, 40, 46),
    "mouth": _centre_box(184, 127, 30, 70),
    "chin": _centre_box(217, 130, 42, 110),
    # ours, on the same aligned layout
    "forehead": _centre_box(78, 128, 36, 110),
    "hair": Box(40, 0, 216, 50),
    "face": Ellipse(128.0, 140.0, 72.0, 96.0),
    "background": Difference(Box(0, 0, 256, 256), Ellipse(128.0, 128.0, 100.0, 128.0)),
}
CHURCH_PRESETS_256: dict[str, Shape] = {"sky": Box(0, 0, 256, 64), "ground": Box(0, 208, 256, 256)}
# The car model is 512 wide with 512x384 content (rows 64..448); coordinates in 256 units.
CAR_PRESETS_256: dict[str, Shape] = {"body": Box(24, 96, 232, 184), "ground": Box(0, 184, 256, 224)}

PRESET_FAMILIES = {"faces": FACE_PRESETS_256, "church": CHURCH_PRESETS_256, "car": CAR_PRESETS_256}
_NAME_HINTS = {
    "faces": ("ffhq", "metfaces", "celeba", "face"),
    "church": ("church",),
    "car": ("car",),
}


def guess_presets(name: str) -> str | None:
    """Which preset family a checkpoint's file name suggests (`ffhq` -> faces ...)."""
    lowered = Path(name).name.lower()
    for family, hints in _NAME_HINTS.items():
        if any(hint in lowered for hint in hints):
            return family
    return None


def scaled_presets(family: str | None, resolution: int) -> dict[str, Shape]:
    if family is None:
        return {}
    scale = resolution / 256
    return {name: shape.scaled(scale, scale) for name, shape in PRESET_FAMILIES[family].items()}


def _w_synthesis(network: nn.Module, latents: torch.Tensor, condition: torch.Tensor | None):
    assert isinstance(network, StyleGAN2Generator)
    ws = latents.unsqueeze(1).repeat(1, network.num_ws, 1)
    return network.synthesis(ws, noise_mode="const")


def _z_synthesis_for(psi: float, cutoff: int | None):
    def synthesize(network: nn.Module, latents: torch.Tensor, condition: torch.Tensor | None):
        assert isinstance(network, StyleGAN2Generator)
        ws = network.mapping(latents, condition, psi, cutoff)
        return network.synthesis(ws, noise_mode="const")

    return synthesize


def stylegan2_model(
    checkpoint: SG2Checkpoint,
    *,
    name: str,
    space: str = "w",
    truncation: float | None = None,
    presets: str | None = None,
) -> Model:
    """A `Model` of a StyleGAN2 checkpoint in latent space `space` (`"w"` or `"z"`).

    Args:
        truncation: psi; default the checkpoint's own default (1.0, or 0.5 for TF pickles).
        presets: `"faces"`, `"church"`, `"car"` or None to guess from the file name.
    """
    if space not in SPACES:
        raise UserInputError(f"unknown latent space {space!r} for StyleGAN2; choose w or z")
    psi = float(checkpoint.hyper.get("truncation_psi", 1.0) if truncation is None else truncation)
    if not 0.0 < psi <= 1.0:
        raise UserInputError(f"truncation must be in (0, 1], got {psi}")
    cutoff = checkpoint.hyper.get("truncation_cutoff")
    network = build_stylegan2(checkpoint.state, conv_clamp=checkpoint.conv_clamp)
    if checkpoint.hyper.get("w_avg_missing"):
        network.mapping.w_avg.copy_(_estimate_w_avg(network))
    config = network.config
    family = presets or guess_presets(name)
    if family is not None and family not in PRESET_FAMILIES:
        raise UserInputError(
            f"unknown preset family {family!r}; choose {', '.join(PRESET_FAMILIES)}"
        )
    from .registry import generic_presets  # the registry imports this module

    all_presets = generic_presets(config.resolution, config.resolution)
    all_presets.update(scaled_presets(family, config.resolution))
    class_names = tuple(str(i) for i in range(config.c_dim)) if config.c_dim else None

    def sample(model: Model, seed: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)
        z = torch.randn(1, config.z_dim, generator=generator).to(model.device, model.dtype)
        if space == "z":
            return z[0]
        with torch.no_grad():
            ws = model.network.mapping(z, model.condition_vector(1), psi, None)
        return ws[0, 0]

    return Model(
        name=name,
        network=network,
        latent_dim=config.w_dim if space == "w" else config.z_dim,
        resolution=(config.resolution, config.resolution),
        synthesis_fn=_w_synthesis if space == "w" else _z_synthesis_for(psi, cutoff),
        channels=config.img_channels,
        space=space,
        presets=all_presets,
        source=f"{checkpoint.format} {checkpoint.source}",
        description=f"StyleGAN2 {config.resolution}x{config.resolution} ({checkpoint.format})",
        class_names=class_names,
        condition=0 if class_names else None,
        latent_sampler=sample,
        details={"truncation": psi, "noise": "const", "preset_family": family},
    )


def _estimate_w_avg(network: StyleGAN2Generator, samples: int = 4096) -> torch.Tensor:
    """Mean of mapped z over many samples, for checkpoints that do not store `w_avg`."""
    generator = torch.Generator().manual_seed(0)
    config = network.config
    z = torch.randn(samples, config.z_dim, generator=generator)
    c = None
    if config.c_dim:
        c = torch.zeros(samples, config.c_dim)
        c[:, 0] = 1.0
    with torch.no_grad():
        return network.mapping(z, c, 1.0, None)[:, 0].mean(0)
