"""How local an edit is: the change inside a region against the change outside it.

`locality` compares two images of the same latent path and reports the root-mean-square
change inside the region and outside it (over pixels and channels), their ratio (lower is
more local) and the fraction of the change's energy that falls inside.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Locality:
    rms_inside: float
    rms_outside: float
    ratio: float
    energy_inside: float


def locality(
    original: torch.Tensor,
    edited: torch.Tensor,
    region: torch.Tensor,
    outside: torch.Tensor | None = None,
) -> Locality:
    """Locality of an edit.

    Args:
        original, edited: `(C, H, W)` (or `(1, C, H, W)`) images in [-1, 1].
        region: `(H, W)` bool, where the edit should act.
        outside: `(H, W)` bool, where it should not; default the complement of `region`.

    Returns:
        `Locality` with `ratio = rms_outside / rms_inside` (inf when nothing changed inside).
    """
    change = (edited.reshape(original.shape) - original).reshape(-1, *region.shape)
    change = change.to(torch.float64)
    region = region.to(change.device)
    outside = (~region if outside is None else outside).to(change.device)
    squared = (change**2).sum(dim=0)
    inside_energy = squared[region].sum()
    outside_energy = squared[outside].sum()
    channels = change.shape[0]
    rms_in = torch.sqrt(inside_energy / (region.sum() * channels)).item()
    rms_out = torch.sqrt(outside_energy / (outside.sum().clamp(min=1) * channels)).item()
    total = (inside_energy + outside_energy).item()
    return Locality(
        rms_inside=rms_in,
        rms_outside=rms_out,
        ratio=rms_out / rms_in if rms_in > 0 else float("inf"),
        energy_inside=inside_energy.item() / total if total > 0 else 0.0,
    )
