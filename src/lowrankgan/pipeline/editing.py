"""Edits along local directions: one-shot, or following the path so strong edits stay local.

A one-shot edit moves the latent in a straight line, `x + alpha v`. The projection that made
`v` local was computed at the starting latent, so as `|alpha|` grows the kept region's null
space turns away from the line and the edit leaks. Path-following re-projects `v` onto the
kept region's null space at the current point at every step (`u = N_t N_t^T v`,
renormalised) and moves by arc length, then a corrector step pulls the kept region back to
the original image, so the kept region stays still along the whole path. Strength is the
distance travelled in the analysis space in both modes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from lowrankgan.core.directions import kept_null_space, low_rank_part
from lowrankgan.core.gram import gram_from_field, mask_weights
from lowrankgan.core.jacobian import analysis_view
from lowrankgan.core.precision import exact_math, linalg_device
from lowrankgan.core.subspace import eig_desc
from lowrankgan.errors import UserInputError
from lowrankgan.limits import check_at_most
from lowrankgan.models.base import Model
from lowrankgan.pipeline.analysis import (
    Analysis,
    analysis_field,
    check_analysis_fits,
    lifted_analysis,
    region_grams,
    settings_of,
)
from lowrankgan.pipeline.settings import AnalysisSettings, resolved_settings
from lowrankgan.ranges import parse_numbers
from lowrankgan.regions import RegionSpec, complement, region_mask

DEFAULT_STEP = 0.25


def parse_strengths(text: str) -> list[float]:
    """`"-5,-2.5,0,2.5,5"` -> floats (finite, at least one, at most `limit("strengths")`,
    counted before parsing: a 30,000-value list is refused without building anything)."""
    return parse_numbers(text, most="strengths", what="strengths")


def _reach(strengths: Sequence[float]) -> list[float]:
    """How far path-following travels each way: the largest positive and negative |strength|."""
    return [
        max((abs(s) for s in strengths if np.sign(s) == sign), default=0.0) for sign in (1.0, -1.0)
    ]


def path_steps(strengths: Sequence[float], step: float) -> int:
    """Jacobian fields path-following computes for one image: one per step, each way."""
    return sum(math.ceil(reach / step) for reach in _reach(strengths))


def check_path_work(strengths: Sequence[float], step: float, images: int = 1) -> None:
    """Refuse path-following that would compute more than `limit("path_steps")` fields
    (e.g. `--strengths 1e15` or `--step 1e-12`) before the first one is computed."""
    if not (math.isfinite(step) and step > 0):
        raise UserInputError(f"step must be a positive number, got {step}")
    if not all(math.isfinite(s) for s in strengths):
        raise UserInputError("strengths must be finite")
    # A float estimate: a ratio like 1e308 / 1e-12 is inf, which ceil() cannot take.
    estimate = images * (sum(_reach(strengths)) / step + 2)
    check_at_most(estimate, "path_steps", "path-following (steps x images)")


def one_shot(
    latent: torch.Tensor, direction: torch.Tensor, strengths: Sequence[float]
) -> torch.Tensor:
    """Straight-line edits `x + s v`: `(d,)`, `(d,)`, n strengths -> `(n, d)`."""
    alphas = torch.as_tensor(list(strengths), dtype=latent.dtype, device=latent.device)
    unit = direction / direction.norm()
    return latent.unsqueeze(0) + alphas.unsqueeze(1) * unit.unsqueeze(0)


@dataclass(frozen=True)
class _KeptState:
    """What the kept region looks like to the path at one latent (tensors on the CPU)."""

    null_basis: torch.Tensor  # (d, n) float64
    principal_basis: torch.Tensor  # (d, keep_rank) float64
    hessian: torch.Tensor  # (d, d) float64, J_B^T J_B per kept value
    region_hessian: torch.Tensor  # (d, d) float64, J_R^T J_R per region value
    gradient: torch.Tensor  # (d,) float64, J_B^T (view(x) - view(x0)) per kept value
    #: where the d x d problems run: the CPU, or the model's GPU for large d (`linalg_device`)
    linalg: torch.device = torch.device("cpu")


def _kept_state(
    model: Model,
    point: torch.Tensor,
    keep_weights: torch.Tensor,
    region_weights: torch.Tensor,
    reference: torch.Tensor,
    keep_rank: int,
    settings: AnalysisSettings,
) -> _KeptState:
    latent = point.to(device=model.device, dtype=model.dtype)
    field = analysis_field(model, latent, settings)
    with torch.no_grad():
        view = analysis_view(model.synthesize(latent), settings.size, settings.fuse_channels)[0]
    grams = gram_from_field(field, torch.stack([keep_weights, region_weights])).cpu()
    areas = torch.stack([keep_weights.sum(), region_weights.sum()]).double().cpu()
    areas = areas * field.shape[1]
    hessian, region_hessian = grams[0] / areas[0], grams[1] / areas[1]
    residual = (view - reference) * keep_weights
    gradient = _field_gradient(field, residual).cpu() / areas[0]
    linalg = linalg_device(hessian.shape[0], model.device)
    low_rank, _ = low_rank_part(hessian.to(linalg), settings)
    _, vectors = eig_desc(low_rank)
    vectors = vectors.cpu()
    return _KeptState(
        vectors[:, keep_rank:], vectors[:, :keep_rank], hessian, region_hessian, gradient, linalg
    )


# Rows of the field converted to float64 at a time by `_field_gradient`.
_GRADIENT_BLOCK_BYTES = 64 << 20


def _field_gradient(field: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
    """`J^T r`: `(d, C, h, w)` field, `(C, h, w)` residual -> `(d,)` float64, on the field's
    device. Exact products (float32 values multiply exactly in float64), summed in float64,
    in blocks of rows of at most `_GRADIENT_BLOCK_BYTES` of float64 instead of a float64 copy
    of the whole field (a field that fits one block, as dcgan-faces' does, gives the bits of
    the unblocked product; blocks of other sizes agree with it to about 1e-15 relative)."""
    values = residual.numel()
    rows = max(1, _GRADIENT_BLOCK_BYTES // (8 * values))
    target = residual.double()
    parts = [
        torch.einsum("dchw,chw->d", field[start : start + rows].double(), target)
        for start in range(0, field.shape[0], rows)
    ]
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def _correction(state: _KeptState) -> torch.Tensor:
    """Gauss-Newton step `(d,)` pulling the kept region back to the original image while
    leaving the edited region alone: the minimiser of
    `mean_B (J_B dx + r)^2 + mean_R (J_R dx)^2 + damping |dx|^2` (solved on
    `state.linalg`, returned on the CPU)."""
    system = (state.hessian + state.region_hessian).to(state.linalg)
    damping = 1e-3 * torch.trace(system) / system.shape[0]
    eye = torch.eye(system.shape[0], dtype=system.dtype, device=system.device)
    step = torch.linalg.solve(system + damping * eye, state.gradient.to(state.linalg))
    return -step.cpu()


@exact_math()
def follow_path(
    model: Model,
    latent: torch.Tensor,
    direction: torch.Tensor,
    strengths: Sequence[float],
    keep: torch.Tensor,
    keep_rank: int,
    settings: AnalysisSettings | None = None,
    *,
    step: float = DEFAULT_STEP,
    correct: bool = True,
    region: torch.Tensor | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Path-following edits: latents `(n, d)` at arc length `|s|` along `sign(s) v`.

    A predictor-corrector continuation: each step moves by `step` along `v` projected onto
    the kept region's null space at the current point (predictor), then, with the Jacobian
    at the new point, one regularised Gauss-Newton step brings the kept region back to the
    original image without undoing the change of the region (corrector). One Jacobian per
    step; every step runs with TF32 off (`exact_math`).

    Args:
        model: the generator.
        latent: `(d,)` start.
        direction: `(d,)` the edit direction.
        strengths: signed distances to travel.
        keep: `(H, W)` bool, the region to hold still.
        keep_rank: rank of the kept region's principal space (fixed along the path).
        settings: analysis settings for the kept region's Gram and RPCA.
        step: largest step between re-projections.
        correct: apply the corrector (False: projection only).
        region: `(H, W)` bool, the edited region; default the complement of `keep`.
        progress: show a progress bar over steps.
    """
    check_path_work(strengths, step)
    settings = resolved_settings(model, settings or AnalysisSettings())
    start = latent.detach().to(torch.float64).cpu()
    unit = direction.detach().to(torch.float64).cpu()
    unit = unit / unit.norm()
    with torch.no_grad():
        reference = analysis_view(model.synthesize(latent), settings.size, settings.fuse_channels)
    reference = reference[0]
    keep_weights = mask_weights(keep.unsqueeze(0), tuple(reference.shape[-2:]))[0]
    keep_weights = keep_weights.to(reference.device)
    region = ~keep if region is None else region
    region_weights = mask_weights(region.unsqueeze(0), tuple(reference.shape[-2:]))[0]
    region_weights = region_weights.to(reference.device)

    def state_at(point: torch.Tensor) -> _KeptState:
        return _kept_state(
            model, point, keep_weights, region_weights, reference, keep_rank, settings
        )

    results: dict[float, torch.Tensor] = {0.0: start}
    signs = [sign for sign in (1.0, -1.0) if any(np.sign(s) == sign for s in strengths)]
    bar = tqdm(
        total=path_steps(strengths, step),
        desc="Path",
        unit="step",
        disable=not progress,
        leave=False,
    )
    initial = state_at(start) if signs else None
    for sign in signs:
        targets = sorted(abs(s) for s in strengths if np.sign(s) == sign)
        point, state, travelled = start.clone(), initial, 0.0
        wanted = sign * unit
        for target in targets:
            while travelled < target - 1e-9:
                assert state is not None
                length = min(step, target - travelled)
                # Project the requested direction, not the previous heading: chained
                # projections drift away from what moves the region.
                projected = state.null_basis @ (state.null_basis.T @ wanted)
                norm = projected.norm()
                if norm < 1e-8:
                    raise UserInputError(
                        "the edit direction left the kept region's null space; "
                        "lower --keep-rank or use --one-shot"
                    )
                point = point + length * (projected / norm)
                travelled += length
                state = state_at(point)
                if correct:
                    point = point + _correction(state)
                bar.update(1)
            results[sign * target] = point.clone()
    bar.close()
    rows = [results[0.0 if s == 0 else float(s)] for s in strengths]
    return torch.stack(rows).to(device=latent.device, dtype=latent.dtype)


def edit(
    model: Model,
    latent: torch.Tensor,
    direction: torch.Tensor | np.ndarray,
    strengths: Sequence[float],
    *,
    region: RegionSpec | None = None,
    keep: RegionSpec | None = None,
    keep_rank: int | None = None,
    one_shot_edit: bool = False,
    settings: AnalysisSettings | None = None,
    step: float = DEFAULT_STEP,
    progress: bool = False,
) -> torch.Tensor:
    """Edited latents `(n, d)` along `direction` at each strength.

    One-shot needs nothing else. Path-following needs the region to keep still: `keep`, or
    the complement of `region`; `keep_rank` defaults to the energy rule at the start.
    A direction of another space lifts when the model's family lifts it: a W direction
    `(w_dim,)` on a W+ model drives its selected layers (the paper's edits on layers 4-7).
    """
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
    if one_shot_edit:
        return one_shot(latent, direction, strengths)
    if keep is not None:
        kept = region_mask(model, keep)
    elif region is not None:
        kept = complement(region_mask(model, region))
    else:
        raise UserInputError("path-following needs the region (or the region to keep)")
    settings = resolved_settings(model, settings or AnalysisSettings())
    if keep_rank is None:
        gram = region_grams(model, latent, kept.unsqueeze(0), settings)[0].cpu()
        _, keep_rank, _, _ = kept_null_space(gram, settings, device=model.device)
    return follow_path(
        model,
        latent,
        direction,
        strengths,
        kept,
        keep_rank,
        settings,
        step=step,
        progress=progress,
    )


def edit_analysis(
    model: Model,
    analysis: Analysis,
    strengths: Sequence[float],
    *,
    direction: int = 0,
    latent: torch.Tensor | None = None,
    one_shot_edit: bool = False,
    step: float = DEFAULT_STEP,
    progress: bool = False,
) -> torch.Tensor:
    """Edit with direction `direction` of `analysis`, at its latent or another one.

    An analysis of another space applies when the model's family lifts it: a W analysis on a
    W+ model (`load_model(..., space="wplus", layers="4-7")`) edits the selected layers.
    Returns `(n, d)` latents of the model's space, in the order of `strengths`.
    """
    check_analysis_fits(analysis, model, "the analysis")
    start = None if latent is None else model.latent_from_code(torch.as_tensor(latent))
    analysis = lifted_analysis(model, analysis, start, need_keep_rank=not one_shot_edit)
    start = torch.as_tensor(analysis.latent) if start is None else start
    start = start.reshape(-1).to(model.device, model.dtype)
    vector = torch.as_tensor(analysis.direction(direction)).to(model.device, model.dtype)
    if one_shot_edit:
        return one_shot(start, vector, strengths)
    keep = torch.as_tensor(analysis.keep_mask)
    if tuple(keep.shape) != tuple(model.resolution):
        raise UserInputError("the analysis's kept region does not match the model's resolution")
    return follow_path(
        model,
        start,
        vector,
        strengths,
        keep,
        analysis.keep_rank,
        settings_of(analysis),
        step=step,
        progress=progress,
    )


def edit_many(
    model: Model,
    analysis: Analysis,
    strengths: Sequence[float],
    seeds: Iterable[int],
    *,
    direction: int = 0,
    one_shot_edit: bool = False,
    step: float = DEFAULT_STEP,
    progress: bool = False,
) -> Iterator[tuple[int, torch.Tensor]]:
    """`edit_analysis` on the image of every seed, one at a time: yields `(seed, (n, d)
    latents)` so that thousands of seeds need the memory of one. The work is checked before
    the first image is edited."""
    seeds = list(seeds)
    if not one_shot_edit:
        check_path_work(strengths, step, images=len(seeds))
    check_analysis_fits(analysis, model, "the analysis")
    # Lifted once, at the analysis's own latent: every seed shares its kept-region rank.
    analysis = lifted_analysis(model, analysis, need_keep_rank=not one_shot_edit)
    for seed in seeds:
        latents = edit_analysis(
            model,
            analysis,
            strengths,
            direction=direction,
            latent=model.sample_latent(seed),
            one_shot_edit=one_shot_edit,
            step=step,
            progress=progress,
        )
        yield seed, latents
