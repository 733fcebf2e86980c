"""Benchmark of how local the edits of each method are, against the project's targets.

`run()` analyses `dcgan-faces` at seeds 0..4 for the `eyes` and `mouth` presets and edits
along each method's top direction. Locality is `metrics.locality(...).ratio`, the rms change
outside the region over the rms change inside (lower is more local); the rms inside is
reported too, to show the edit is visible. It returns a Markdown section and writes no files.
"""

from __future__ import annotations

import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from lowrankgan.core.metrics import Locality, locality
from lowrankgan.models import Model, load_model
from lowrankgan.pipeline.analysis import Analysis, analyze, settings_of
from lowrankgan.pipeline.edits import one_shot
from lowrankgan.pipeline.path import follow_path
from lowrankgan.pipeline.settings import AUTHORS_SETTINGS

_MODEL = "dcgan-faces"
_SEEDS = (0, 1, 2, 3, 4)
_SEEDS_QUICK = (0,)
_REGIONS = ("eyes", "mouth")
_STRENGTH = 2.0
_PATH_STRENGTH = 5.0
_STEP = 0.25
_STEP_QUICK = 2.5
# The authors' settings run on every case only if the first case takes less than this.
_AUTHORS_CASE_LIMIT = 60.0
_TARGET_LOWRANK = 0.45
_TARGET_VS_JACOBIAN = 0.6
_TARGET_PATH = 0.40
_TARGET_CONTRAST = 0.30


@dataclass(frozen=True)
class _Edit:
    """One measured edit: which method, how it moved, at what strength."""

    key: str
    label: str


_EDITS = (
    _Edit("lowrank", f"(1) lowrank, top local direction, one-shot {_STRENGTH:g}"),
    _Edit("jacobian", f"(2) jacobian: region's top principal direction, one-shot {_STRENGTH:g}"),
    _Edit("lowrank_path", f"(3) lowrank, path-following {_PATH_STRENGTH:g}"),
    _Edit("lowrank_shot5", f"(3) lowrank, one-shot {_PATH_STRENGTH:g}"),
    _Edit("contrast", f"(4) contrast, top direction, one-shot {_STRENGTH:g}"),
    _Edit("contrast_path", f"(4) contrast, path-following {_PATH_STRENGTH:g}"),
    _Edit("contrast_shot5", f"(4) contrast, one-shot {_PATH_STRENGTH:g}"),
    _Edit("authors", f"(5) paper's settings, top local direction, one-shot {_STRENGTH:g}"),
)


@dataclass
class _Case:
    seed: int
    region: str
    results: dict[str, Locality] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    ranks: dict[str, str] = field(default_factory=dict)


def _measure(model: Model, original: torch.Tensor, latents: torch.Tensor, region: torch.Tensor):
    """Locality of each row of `latents` `(n, d)` against `original` `(C, H, W)`."""
    with torch.no_grad():
        images = model.synthesize(latents)
    return [locality(original, image, region) for image in images]


def _vector(model: Model, array: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(array)).to(model.device, model.dtype)


def _ranks(analysis: Analysis) -> str:
    ranks = analysis.info["ranks"]
    return f"{ranks['region']}/{ranks['keep']}"


def _timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def _directional(
    model: Model,
    case: _Case,
    analysis: Analysis,
    prefix: str,
    latent: torch.Tensor,
    original: torch.Tensor,
    step: float,
) -> None:
    """One-shot at 2 and 5 and path-following at 5 along the analysis's top direction."""
    region = torch.as_tensor(analysis.region_mask)
    keep = torch.as_tensor(analysis.keep_mask)
    direction = _vector(model, analysis.directions[:, 0])
    shots = one_shot(latent, direction, [_STRENGTH, _PATH_STRENGTH])
    at2, at5 = _measure(model, original, shots, region)
    case.results[prefix] = at2
    case.results[f"{prefix}_shot5"] = at5
    seconds, path = _timed(
        lambda: follow_path(
            model,
            latent,
            direction,
            [_PATH_STRENGTH],
            keep,
            analysis.keep_rank,
            settings_of(analysis),
            step=step,
            region=region,
        )
    )
    case.seconds[f"{prefix}_path"] = seconds
    case.results[f"{prefix}_path"] = _measure(model, original, path.latents, region)[0]


def _authors(model: Model, case: _Case, latent: torch.Tensor, original: torch.Tensor) -> float:
    """Analysis with the paper's settings and its top local direction at strength 2;
    returns the seconds the analysis took (inf when it failed)."""
    start = time.perf_counter()
    try:
        analysis = analyze(model, latent, case.region, **AUTHORS_SETTINGS)
    except Exception as exc:  # report what happened instead of stopping the benchmark
        case.notes["authors"] = f"failed: {type(exc).__name__}: {str(exc)[:120]}"
        case.seconds["authors"] = time.perf_counter() - start
        return math.inf
    seconds = time.perf_counter() - start
    case.seconds["authors"] = seconds
    case.ranks["authors"] = _ranks(analysis)
    rpca = analysis.info["rpca"]
    case.notes["authors"] = "ADMM iterations region/keep: {}/{}{}".format(
        rpca["region"].get("iterations"),
        rpca["keep"].get("iterations"),
        ""
        if rpca["region"].get("converged") and rpca["keep"].get("converged")
        else " (not converged)",
    )
    region = torch.as_tensor(analysis.region_mask)
    direction = _vector(model, analysis.directions[:, 0])
    shot = one_shot(latent, direction, [_STRENGTH])
    case.results["authors"] = _measure(model, original, shot, region)[0]
    return seconds


def _run_case(
    model: Model, seed: int, region: str, step: float, authors: bool
) -> tuple[_Case, float]:
    case = _Case(seed, region)
    latent = model.sample_latent(seed)
    with torch.no_grad():
        original = model.synthesize(latent)[0]

    seconds, lowrank = _timed(lambda: analyze(model, latent, region))
    case.seconds["lowrank"] = seconds
    case.ranks["lowrank"] = _ranks(lowrank)
    _directional(model, case, lowrank, "lowrank", latent, original, step)
    region_m = torch.as_tensor(lowrank.region_mask)
    own = one_shot(latent, _vector(model, lowrank.region_basis[:, 0]), [_STRENGTH])
    case.results["jacobian"] = _measure(model, original, own, region_m)[0]

    seconds, contrast = _timed(lambda: analyze(model, latent, region, method="contrast"))
    case.seconds["contrast"] = seconds
    case.ranks["contrast"] = _ranks(contrast)
    _directional(model, case, contrast, "contrast", latent, original, step)

    authors_seconds = _authors(model, case, latent, original) if authors else math.nan
    return case, authors_seconds


def _median(cases: list[_Case], key: str, attribute: str = "ratio") -> float:
    values = [getattr(c.results[key], attribute) for c in cases if key in c.results]
    return statistics.median(values) if values else math.nan


def _fmt(value: float, spec: str = ".3f") -> str:
    return "-" if math.isnan(value) else format(value, spec)


def _met(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def run(quick: bool = False) -> str:
    """Run the benchmark and return a Markdown section (`quick`: seed 0 only, path step
    2.5 instead of 0.25, the paper's settings skipped)."""
    seeds = _SEEDS_QUICK if quick else _SEEDS
    step = _STEP_QUICK if quick else _STEP
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else math.nan
    model = load_model(_MODEL)
    cases: list[_Case] = []
    authors_note = ""
    authors_on = not quick
    total_start = time.perf_counter()
    for seed in seeds:
        for region in _REGIONS:
            case, authors_seconds = _run_case(model, seed, region, step, authors_on)
            cases.append(case)
            if authors_on and len(cases) == 1 and not authors_seconds < _AUTHORS_CASE_LIMIT:
                authors_on = False
                authors_note = (
                    f"The paper's settings took {authors_seconds:.0f} s on the first case "
                    f"(limit {_AUTHORS_CASE_LIMIT:.0f} s per case), so they were run on that "
                    "case only."
                )
    total = time.perf_counter() - total_start
    if quick:
        authors_note = "The paper's settings were skipped in the quick run."
    elif not authors_note:
        authors_note = (
            f"The first case of the paper's settings took {cases[0].seconds['authors']:.0f} s "
            f"(under the {_AUTHORS_CASE_LIMIT:.0f} s limit), so they ran on every case."
        )

    med = {e.key: _median(cases, e.key) for e in _EDITS}
    rms = {e.key: _median(cases, e.key, "rms_inside") for e in _EDITS}
    counts = {e.key: sum(e.key in c.results for c in cases) for e in _EDITS}

    lines = [
        "## Locality of edits",
        "",
        f"`{_MODEL}`, seeds {', '.join(map(str, seeds))}, regions "
        f"{', '.join(_REGIONS)} (preset boxes; the kept region is the rest of the image). "
        "Ratio = `locality(original, edited, region).ratio` = rms change outside the region / "
        "rms change inside it (lower is more local); the rms change inside (images in "
        "[-1, 1]) shows the edit is visible. Strengths are distances in z along a unit "
        "direction. Directions: `analyze(...)` with default settings (`lowrank`), its "
        "`region_basis[:, 0]` (the region's own top principal direction, no projection: the "
        "`jacobian` baseline), `analyze(..., method='contrast')`, and `analyze(..., "
        "**AUTHORS_SETTINGS)` (fixed-penalty ADMM, lambda 1/60, numerical rank). "
        f"Path-following is `follow_path` with the analysis's keep mask and keep rank, step "
        f"{step:g}, region = the region mask. 1-minute load average {load:.2f} at start; "
        f"all cases took {total:.0f} s.",
        "",
        "| Edit | Median ratio | Median rms inside | Cases |",
        "|---|---:|---:|---:|",
    ]
    for e in _EDITS:
        lines.append(f"| {e.label} | {_fmt(med[e.key])} | {_fmt(rms[e.key])} | {counts[e.key]} |")
    vs_jacobian = med["lowrank"] / med["jacobian"]
    lines += [
        "",
        "| Target | Value | Target | Status |",
        "|---|---:|---:|---|",
        f"| (1) lowrank one-shot {_STRENGTH:g}, median ratio | {_fmt(med['lowrank'])} "
        f"| <= {_TARGET_LOWRANK:g} | {_met(med['lowrank'] <= _TARGET_LOWRANK)} |",
        f"| (1) lowrank / jacobian baseline, medians | {_fmt(vs_jacobian, '.2f')} "
        f"| <= {_TARGET_VS_JACOBIAN:g} | {_met(vs_jacobian <= _TARGET_VS_JACOBIAN)} |",
        f"| (3) lowrank path-following {_PATH_STRENGTH:g}, median ratio "
        f"| {_fmt(med['lowrank_path'])} | <= {_TARGET_PATH:g} "
        f"| {_met(med['lowrank_path'] <= _TARGET_PATH)} |",
        f"| (4) contrast one-shot {_STRENGTH:g}, median ratio | {_fmt(med['contrast'])} "
        f"| <= {_TARGET_CONTRAST:g} | {_met(med['contrast'] <= _TARGET_CONTRAST)} |",
        "",
    ]
    if quick:
        lines += [
            "Quick smoke run: one seed and a coarse path step, so these numbers are not the "
            "benchmark's; run without `--quick` for them.",
            "",
        ]
    lines += [authors_note, ""]

    header = "| Seed | Region | " + " | ".join(_case_columns()) + " |"
    lines += [
        "Per case, ratio (rms inside) for each edit; columns in the order of the table above; "
        "ranks are region/keep of each analysis; times are the analysis and each "
        "path-following run.",
        "",
        header,
        "|---:|---|" + "---:|" * len(_EDITS) + "---|---|",
    ]
    for c in cases:
        cells = []
        for e in _EDITS:
            result = c.results.get(e.key)
            cells.append("-" if result is None else f"{result.ratio:.3f} ({result.rms_inside:.3f})")
        ranks = ", ".join(f"{k} {v}" for k, v in c.ranks.items())
        times = ", ".join(f"{k} {v:.1f}" for k, v in c.seconds.items())
        lines.append(f"| {c.seed} | {c.region} | " + " | ".join(cells) + f" | {ranks} | {times} |")
    notes = [
        f"seed {c.seed} {c.region}: {c.notes['authors']}" for c in cases if "authors" in c.notes
    ]
    if notes:
        lines += ["", "Paper's settings: " + "; ".join(notes) + "."]
    return "\n".join(lines) + "\n"


def _case_columns() -> list[str]:
    """Short column names of the per-case table, in `_EDITS` order, plus ranks and times."""
    names = {
        "lowrank": "1 lowrank@2",
        "jacobian": "2 jacobian@2",
        "lowrank_path": "3 lowrank path@5",
        "lowrank_shot5": "3 lowrank @5",
        "contrast": "4 contrast@2",
        "contrast_path": "4 contrast path@5",
        "contrast_shot5": "4 contrast @5",
        "authors": "5 paper@2",
    }
    return [names[e.key] for e in _EDITS] + ["ranks", "seconds"]


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
