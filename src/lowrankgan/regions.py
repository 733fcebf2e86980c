"""Regions of a generated image: parsing user specs into boolean masks.

A region spec is one of
- a preset name of the model (`eyes`, `mouth`, `iris`, ...);
- `box:x0,y0,x1,y1` in output pixels (x to the right, y down, half-open);
- a path to a PNG mask of the output size, non-zero pixels being the region;
- in Python, a `(H, W)` bool tensor or array.
Masks are `(H, W)` bool tensors on the CPU; `complement` gives the rest of the image, the
default region to keep still.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from lowrankgan.errors import UserInputError
from lowrankgan.io.datafiles import read_mask_image
from lowrankgan.models.base import Model
from lowrankgan.shapes import Box

RegionSpec = str | Path | torch.Tensor | np.ndarray


def parse_box(text: str, height: int, width: int) -> Box:
    """`"x0,y0,x1,y1"` -> `Box`, checked against an image of `height` x `width`."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 4:
        raise UserInputError(f"box needs four integers x0,y0,x1,y1, got {text!r}")
    try:
        x0, y0, x1, y1 = (int(p) for p in parts)
    except ValueError:
        raise UserInputError(f"box coordinates must be integers, got {text!r}") from None
    if x0 >= x1 or y0 >= y1:
        raise UserInputError(f"box {text!r} is empty or inverted (need x0 < x1 and y0 < y1)")
    if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
        raise UserInputError(
            f"box {text!r} lies outside the {width}x{height} image (x in 0..{width}, "
            f"y in 0..{height})"
        )
    return Box(x0, y0, x1, y1)


def load_mask_file(path: Path, height: int, width: int) -> torch.Tensor:
    """A PNG mask -> `(H, W)` bool; any non-zero channel value is in the region."""
    array = read_mask_image(path, "mask", size=(width, height))
    if array.shape != (height, width):
        raise UserInputError(
            f"mask {path} is {array.shape[1]}x{array.shape[0]}, the model outputs {width}x{height}"
        )
    return torch.from_numpy(array != 0)


def region_mask(model: Model, spec: RegionSpec) -> torch.Tensor:
    """The `(H, W)` bool mask of a region spec on `model`'s output."""
    height, width = model.resolution
    if isinstance(spec, torch.Tensor | np.ndarray):
        mask = torch.as_tensor(spec).to("cpu")
        if mask.shape != (height, width):
            raise UserInputError(
                f"mask has shape {tuple(mask.shape)}, the model outputs {(height, width)}"
            )
        mask = mask != 0
    else:
        text = str(spec).strip()
        if text.startswith("box:"):
            mask = parse_box(text[4:], height, width).mask(height, width)
        elif text in model.presets:
            mask = model.presets[text].mask(height, width)
        elif text.lower().endswith(".png") or Path(text).exists():
            mask = load_mask_file(Path(text), height, width)
        else:
            names = ", ".join(sorted(model.presets))
            raise UserInputError(
                f"unknown region {text!r}; use a preset ({names}), box:x0,y0,x1,y1 or a .png mask"
            )
    if not mask.any():
        raise UserInputError(f"region {describe(spec)} is empty")
    if mask.all():
        raise UserInputError(f"region {describe(spec)} covers the whole image; nothing to keep")
    return mask


def complement(mask: torch.Tensor) -> torch.Tensor:
    """Everything outside `mask`: `(H, W)` bool."""
    return ~mask


def keep_mask(model: Model, region: torch.Tensor, keep: RegionSpec | None) -> torch.Tensor:
    """The region to hold still: `keep` if given, else the complement of `region`."""
    if keep is None:
        return complement(region)
    kept = region_mask(model, keep)
    if torch.equal(kept, region):
        raise UserInputError("the kept region equals the edited region")
    return kept


def describe(spec: RegionSpec | None) -> str:
    """A short printable name of a region spec."""
    if spec is None:
        return "rest of the image"
    if isinstance(spec, torch.Tensor | np.ndarray):
        return f"mask({int(np.asarray(spec).astype(bool).sum())} px)"
    return str(spec)
