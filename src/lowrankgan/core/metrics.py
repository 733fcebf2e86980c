"""How local an edit is: the change inside a region against the change in the kept region.

`locality` compares two images of the same latent path and reports the root-mean-square
change inside the region and in the kept region (over pixels and channels; by default the
kept region is everything outside), their ratio (lower is more local), the fraction of the
change's energy that falls inside, and the kept region's mean squared error and PSNR (how
well it was preserved, in the generator's [-1, 1] range: PSNR's peak-to-peak is 2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

#: Peak-to-peak range of images in [-1, 1], for PSNR.
PEAK = 2.0


@dataclass(frozen=True)
class Locality:
    rms_inside: float
    rms_outside: float
    ratio: float
    energy_inside: float
    mse_kept: float
    psnr_kept: float


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
        outside: `(H, W)` bool, the kept region, where it should not; default the complement
            of `region`.

    Returns:
        `Locality` with `ratio = rms_outside / rms_inside` (inf when nothing changed inside),
        `energy_inside` = inside / (inside + outside) squared change, `mse_kept =
        rms_outside**2` and `psnr_kept = 10 log10(PEAK**2 / mse_kept)` (inf when unchanged).
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
    mse_out = (outside_energy / (outside.sum().clamp(min=1) * channels)).item()
    rms_out = math.sqrt(mse_out)
    total = (inside_energy + outside_energy).item()
    return Locality(
        rms_inside=rms_in,
        rms_outside=rms_out,
        ratio=rms_out / rms_in if rms_in > 0 else float("inf"),
        energy_inside=inside_energy.item() / total if total > 0 else 0.0,
        mse_kept=mse_out,
        psnr_kept=10 * math.log10(PEAK**2 / mse_out) if mse_out > 0 else float("inf"),
    )
