"""Edits along local directions, to a latent distance or to a change inside the region.

`edit` applies any direction, `edit_analysis` a direction of an `Analysis` (at its latent or
another one), `edit_many` one analysis on many seeds. Each returns `Edits`: the latents and,
for each, the strength (latent distance), the change it made inside the region and, when
changes were asked for, whether each was reached. One-shot edits move in a straight line
(`pipeline/edits.py`), path-following ones keep the rest of the image still along the way
(`pipeline/path.py`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import torch

from lowrankgan.core.directions import kept_null_space
from lowrankgan.errors import UserInputError
from lowrankgan.models.base import Model
from lowrankgan.pipeline.analysis import (
    Analysis,
    check_analysis_fits,
    lifted_analysis,
    region_grams,
    settings_of,
)
from lowrankgan.pipeline.edits import (
    ChangeMeter,
    Edits,
    check_changes,
    check_max_strength,
    default_max_strength,
    one_shot,
    one_shot_to_changes,
)
from lowrankgan.pipeline.path import DEFAULT_STEP, check_path_work, follow_path
from lowrankgan.pipeline.settings import AnalysisSettings, gram_sketch, resolved_settings
from lowrankgan.ranges import parse_numbers
from lowrankgan.regions import RegionSpec, complement, region_mask

__all__ = [
    "DEFAULT_STEP",
    "Edits",
    "check_edit_work",
    "default_one_shot",
    "edit",
    "edit_analysis",
    "edit_many",
    "parse_strengths",
]


def default_one_shot(model: Model, settings: AnalysisSettings) -> bool:
    """Whether edits of `model` go one-shot unless asked otherwise: where its analyses are
    sketched by default (over 256 px on a CPU, `gram_sketch`), path-following would compute
    an exact Jacobian field per step and image (1024 px on 2 cores: about 6 minutes each).
    An explicit `exact` setting keeps path-following."""
    return gram_sketch(model, dataclasses.replace(settings, sketch=None)) is not None


def parse_strengths(text: str) -> list[float]:
    """`"-5,-2.5,0,2.5,5"` -> floats (finite, at least one, at most `limit("strengths")`,
    counted before parsing: a 30,000-value list is refused without building anything)."""
    return parse_numbers(text, most="strengths", what="strengths")


def _asked(
    strengths: Sequence[float] | None, changes: Sequence[float] | None
) -> tuple[list[float], bool]:
    """The values asked for and whether they are changes (exactly one list given)."""
    if (strengths is None) == (changes is None):
        raise UserInputError("give either strengths or changes, not both")
    if changes is not None:
        check_changes(changes)
        return [float(c) for c in changes], True
    values = [float(s) for s in strengths]  # type: ignore[union-attr]
    if not values:
        raise UserInputError("no strengths given")
    return values, False


def check_edit_work(
    strengths: Sequence[float] | None = None,
    changes: Sequence[float] | None = None,
    *,
    dim: int,
    one_shot_edit: bool,
    step: float,
    max_strength: float | None,
    images: int = 1,
) -> None:
    """Refuse, before any work, an edit request that is malformed or would take more than
    `limit("path_steps")` path steps (change targets count their search bound)."""
    values, are_changes = _asked(strengths, changes)
    check_max_strength(max_strength)
    if one_shot_edit:
        return
    if are_changes:
        bound = default_max_strength(dim) if max_strength is None else max_strength
        values = [bound, -bound]
    check_path_work(values, step, images=images)


def one_shot_edits(
    latent: torch.Tensor,
    direction: torch.Tensor,
    values: Sequence[float],
    are_changes: bool,
    meter: ChangeMeter | None,
    max_strength: float | None,
) -> Edits:
    """Straight-line edits of `latent` `(d,)` along `direction` `(d,)` to each value: a
    change inside the meter's region (searched up to `max_strength`, default `3 sqrt(d)`) or
    a strength. At strengths, `achieved` is measured by `meter`, or NaN without one."""
    values = [float(v) for v in values]
    if are_changes:
        if meter is None:
            raise UserInputError("an edit to a change needs the region to measure it in")
        bound = default_max_strength(latent.numel()) if max_strength is None else max_strength
        return one_shot_to_changes(latent, direction, values, meter, bound)
    latents = one_shot(latent, direction, values)
    achieved = np.full(len(values), np.nan) if meter is None else meter(latents)
    # Strength 0 is the image itself (a batched forward pass differs from it by ~1e-8).
    achieved[np.asarray(values) == 0] = 0.0
    return Edits(
        latents=latents,
        strengths=np.asarray(values, dtype=np.float64),
        achieved=np.copysign(achieved, np.asarray(values)),
    )


def edit(
    model: Model,
    latent: torch.Tensor,
    direction: torch.Tensor | np.ndarray,
    strengths: Sequence[float] | None = None,
    *,
    changes: Sequence[float] | None = None,
    region: RegionSpec | None = None,
    keep: RegionSpec | None = None,
    keep_rank: int | None = None,
    one_shot_edit: bool = False,
    settings: AnalysisSettings | None = None,
    step: float = DEFAULT_STEP,
    max_strength: float | None = None,
    progress: bool = False,
) -> Edits:
    """Edits along `direction` at each strength (latent distance) or each signed change
    inside `region` (rms over its pixels and channels, images in [-1, 1]).

    One-shot needs the region only to reach or measure changes. Path-following needs the
    region to keep still: `keep`, or the complement of `region`; `keep_rank` defaults to the
    energy rule at the start. `max_strength` bounds the search for a change (default
    `3 sqrt(d)`). A direction of another space lifts when the model's family lifts it: a W
    direction `(w_dim,)` on a W+ model drives its selected layers (the paper's edits on
    layers 4-7).
    """
    values, are_changes = _asked(strengths, changes)
    check_max_strength(max_strength)
    latent = model.latent_from_code(torch.as_tensor(latent)).to(model.device, model.dtype)
    direction = torch.as_tensor(np.asarray(direction)).reshape(-1)
    if direction.numel() != model.latent_dim and model.lifts_from(direction.numel()):
        direction = model.lift_directions(direction.to(torch.float64).unsqueeze(1))[:, 0]
    direction = direction.to(model.device, model.dtype)
    if direction.numel() != model.latent_dim:
        raise UserInputError(
            f"direction has {direction.numel()} values, the model expects {model.latent_dim}"
        )
    if not torch.isfinite(direction).all() or direction.norm() == 0:
        raise UserInputError("direction must be finite and non-zero")
    edited = None if region is None else region_mask(model, region)
    kept = None if keep is None else region_mask(model, keep)
    if edited is None and kept is not None:
        edited = complement(kept)
    if one_shot_edit:
        meter = None if edited is None else ChangeMeter(model, latent, edited)
        return one_shot_edits(latent, direction, values, are_changes, meter, max_strength)
    if kept is None:
        if edited is None:
            raise UserInputError("path-following needs the region (or the region to keep)")
        kept = complement(edited)
    settings = resolved_settings(model, settings or AnalysisSettings())
    if keep_rank is None:
        gram = region_grams(model, latent, kept.unsqueeze(0), settings)[0].cpu()
        _, keep_rank, _, _ = kept_null_space(gram, settings, device=model.device)
    return follow_path(
        model,
        latent,
        direction,
        None if are_changes else values,
        kept,
        keep_rank,
        settings,
        changes=values if are_changes else None,
        step=step,
        max_strength=max_strength,
        region=edited,
        progress=progress,
    )


def edit_analysis(
    model: Model,
    analysis: Analysis,
    strengths: Sequence[float] | None = None,
    *,
    changes: Sequence[float] | None = None,
    direction: int = 0,
    latent: torch.Tensor | None = None,
    one_shot_edit: bool = False,
    step: float = DEFAULT_STEP,
    max_strength: float | None = None,
    progress: bool = False,
) -> Edits:
    """Edit with direction `direction` of `analysis`, at its latent or another one, to each
    strength or each signed change inside the analysis's region.

    An analysis of another space applies when the model's family lifts it: a W analysis on a
    W+ model (`load_model(..., space="wplus", layers="4-7")`) edits the selected layers.
    Returns `Edits` with `(n, d)` latents of the model's space, in the order asked.
    """
    values, are_changes = _asked(strengths, changes)
    check_max_strength(max_strength)
    check_analysis_fits(analysis, model, "the analysis")
    start = None if latent is None else model.latent_from_code(torch.as_tensor(latent))
    analysis = lifted_analysis(model, analysis, start, need_keep_rank=not one_shot_edit)
    start = torch.as_tensor(analysis.latent) if start is None else start
    start = start.reshape(-1).to(model.device, model.dtype)
    vector = torch.as_tensor(analysis.direction(direction)).to(model.device, model.dtype)
    region = _analysis_mask(model, analysis.region_mask)
    if one_shot_edit:
        meter = None if region is None else ChangeMeter(model, start, region)
        return one_shot_edits(start, vector, values, are_changes, meter, max_strength)
    keep = _analysis_mask(model, analysis.keep_mask)
    if keep is None:
        raise UserInputError("the analysis's kept region does not match the model's resolution")
    return follow_path(
        model,
        start,
        vector,
        None if are_changes else values,
        keep,
        analysis.keep_rank,
        settings_of(analysis),
        changes=values if are_changes else None,
        step=step,
        max_strength=max_strength,
        region=region,
        progress=progress,
    )


def _analysis_mask(model: Model, mask: np.ndarray) -> torch.Tensor | None:
    """An analysis's `(H, W)` mask as a tensor, None when it is absent (an analysis adopted
    from another model) or of another resolution."""
    if mask.size == 0 or tuple(mask.shape) != tuple(model.resolution) or not mask.any():
        return None
    return torch.as_tensor(mask)


def edit_many(
    model: Model,
    analysis: Analysis,
    strengths: Sequence[float] | None = None,
    seeds: Iterable[int] = (),
    *,
    changes: Sequence[float] | None = None,
    direction: int = 0,
    one_shot_edit: bool = False,
    step: float = DEFAULT_STEP,
    max_strength: float | None = None,
    progress: bool = False,
) -> Iterator[tuple[int, Edits]]:
    """`edit_analysis` on the image of every seed, one at a time: yields `(seed, Edits)` so
    that thousands of seeds need the memory of one. The work is checked before the first
    image is edited."""
    seeds = list(seeds)
    check_edit_work(
        strengths,
        changes,
        dim=model.latent_dim,
        one_shot_edit=one_shot_edit,
        step=step,
        max_strength=max_strength,
        images=len(seeds),
    )
    check_analysis_fits(analysis, model, "the analysis")
    # Lifted once, at the analysis's own latent: every seed shares its kept-region rank.
    analysis = lifted_analysis(model, analysis, need_keep_rank=not one_shot_edit)
    for seed in seeds:
        edits = edit_analysis(
            model,
            analysis,
            strengths,
            changes=changes,
            direction=direction,
            latent=model.sample_latent(seed),
            one_shot_edit=one_shot_edit,
            step=step,
            max_strength=max_strength,
            progress=progress,
        )
        yield seed, edits
