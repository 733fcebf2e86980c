"""What `lowrankgan evaluate` writes: statistics, `summary.md`, plots and `index.html`;
and `evaluate`, which runs the cells and writes them in one call.

Statistics are medians and interquartile ranges over seeds (for transfer, over seeds times
other images), per method, region and strength; `head_to_head` counts, seed by seed, how
often one method's edit is more local than another's (a paired comparison: both edited the
same image). The plots are locality, change inside and transfer locality against strength,
one line per method; the image strips show every method's edit of the same image.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lowrankgan.io.artifacts import atomic_write_bytes, atomic_write_text, staged_output
from lowrankgan.models.base import Model
from lowrankgan.pipeline.evaluation import (
    DEFAULT_SAMPLES,
    DEFAULT_TRANSFER,
    EVAL_METHODS,
    TRANSFER_SEED_BASE,
    Cell,
    EvaluationConfig,
    EvaluationResult,
    csv_text,
    run_cells,
)
from lowrankgan.pipeline.path import DEFAULT_STEP
from lowrankgan.pipeline.settings import AnalysisSettings
from lowrankgan.regions import region_mask
from lowrankgan.report.charts import Series, line_chart
from lowrankgan.report.html import Figure, ReportSection, render_html
from lowrankgan.report.outputs import change_label, render_latents, strength_label
from lowrankgan.report.render import change_heatmap, image_grid, overlay_region, png_bytes, upscale
from lowrankgan.version import __version__

#: The strength and change the ranking and head-to-head tables use when the run has them.
PREFERRED_STRENGTH = 2.0
PREFERRED_CHANGE = 0.1
_DISPLAY = 128


@dataclass(frozen=True)
class Stat:
    """Median and quartiles of one metric over `n` values."""

    median: float
    q1: float
    q3: float
    n: int

    def text(self, digits: int = 3) -> str:
        return f"{self.median:.{digits}g} [{self.q1:.{digits}g}, {self.q3:.{digits}g}]"


def stat(values: Sequence[float]) -> Stat:
    """Median and quartiles (linear interpolation); infinite values count as largest."""
    array = np.sort(np.asarray(values, dtype=np.float64))
    if array.size == 0:
        return Stat(float("nan"), float("nan"), float("nan"), 0)
    q1, median, q3 = (_quantile(array, q) for q in (0.25, 0.5, 0.75))
    return Stat(median, q1, q3, int(array.size))


def _quantile(sorted_values: np.ndarray, q: float) -> float:
    position = q * (sorted_values.size - 1)
    low, high = int(np.floor(position)), int(np.ceil(position))
    if low == high or sorted_values[low] == sorted_values[high]:
        return float(sorted_values[low])
    return float(sorted_values[low] + (position - low) * (sorted_values[high] - sorted_values[low]))


def stats(
    rows: Sequence[dict[str, Any]], metric: str, kind: str, target: str = "strength"
) -> dict[tuple[str, str, float], Stat]:
    """`(method, region, value) -> Stat` of `metric` over the rows of `kind` made for
    `target` (`strength`: value is the strength; `change`: the change asked for)."""
    groups: dict[tuple[str, str, float], list[float]] = {}
    for row in rows:
        if row["kind"] == kind and row.get("target", "strength") == target:
            value = row["strength"] if target == "strength" else row["change"]
            key = (row["method"], row["region"], float(value))
            groups.setdefault(key, []).append(float(row[metric]))
    return {key: stat(values) for key, values in groups.items()}


def headline(config: EvaluationConfig) -> tuple[str, tuple[float, ...]]:
    """What the report compares methods at: equal change when the run has changes (the
    fair comparison), else equal strength."""
    if config.changes:
        return "change", config.changes
    return "strength", config.strengths


def report_value(config: EvaluationConfig) -> float:
    """The change (0.1 when evaluated) or strength rankings are given at."""
    target, values = headline(config)
    if target == "change":
        if PREFERRED_CHANGE in values:
            return PREFERRED_CHANGE
        positive = sorted(c for c in values if c > 0) or sorted(values)
        return positive[(len(positive) - 1) // 2]
    return report_strength(values)


def value_label(target: str, value: float) -> str:
    return f"change {value:g}" if target == "change" else f"strength {value:g}"


def report_strength(strengths: Sequence[float]) -> float:
    """The strength rankings are given at: 2 when evaluated, else the median positive
    strength (the median strength when all are negative)."""
    if PREFERRED_STRENGTH in strengths:
        return PREFERRED_STRENGTH
    positive = sorted(s for s in strengths if s > 0) or sorted(strengths)
    return positive[(len(positive) - 1) // 2]


def head_to_head(
    rows: Sequence[dict[str, Any]],
    region: str,
    value: float,
    methods: Sequence[str],
    target: str = "strength",
) -> dict[tuple[str, str], float]:
    """`(a, b) -> share of seeds` where `a`'s edit is more local (lower ratio) than `b`'s on
    the same image at strength or change `value` (ties count half)."""
    key = "strength" if target == "strength" else "change"
    ratio: dict[tuple[str, int], float] = {
        (row["method"], row["seed"]): float(row["ratio"])
        for row in rows
        if row["kind"] == "self"
        and row.get("target", "strength") == target
        and row["region"] == region
        and row[key] == value
    }
    seeds = sorted({seed for _, seed in ratio})
    shares = {}
    for a in methods:
        for b in methods:
            if a == b:
                continue
            pairs = [
                (ratio[(a, s)], ratio[(b, s)]) for s in seeds if (a, s) in ratio and (b, s) in ratio
            ]
            wins = sum(1.0 if x < y else 0.5 if x == y else 0.0 for x, y in pairs)
            shares[(a, b)] = wins / len(pairs) if pairs else float("nan")
    return shares


def ranking(
    rows: Sequence[dict[str, Any]],
    region: str,
    value: float,
    methods: Sequence[str],
    target: str = "strength",
) -> list[tuple[str, float]]:
    """Methods by median locality ratio at strength or change `value`, most local first."""
    table = stats(rows, "ratio", "self", target)
    ranked = [(m, table[(m, region, value)].median) for m in methods]
    return sorted(ranked, key=lambda item: item[1])


# ---------------------------------------------------------------------------------------------
# summary.md

_TABLES = (
    ("ratio", "self", "Locality: rms change outside the region / inside it (lower is more local)"),
    ("rms_inside", "self", "Change inside the region: rms (images in [-1, 1])"),
    ("energy_inside", "self", "Share of the change's energy inside the region (higher is better)"),
    ("psnr_kept", "self", "Kept region preserved: PSNR in dB (peak-to-peak 2; higher is better)"),
    ("ratio", "transfer", "Transfer: locality of the same direction on other images"),
)
#: The tables at equal change, the headline when the run has changes.
_CHANGE_TABLES = (
    ("ratio", "self", "Locality at equal change inside the region (lower is more local)"),
    ("rms_inside", "self", "Change reached inside the region (asked: the column)"),
    ("strength", "self", "Strength needed: latent distance to reach the change"),
    ("psnr_kept", "self", "Kept region preserved at equal change: PSNR in dB"),
    ("ratio", "transfer_change", "Transfer at equal change: locality on other images edited "
     "to the same change"),
    ("ratio", "transfer", "Transfer at the analysed image's strength: locality on other images"),
    ("rms_inside", "transfer", "Transfer at the analysed image's strength: change inside"),
)  # fmt: skip


def _markdown_table(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines)


def _values(config: EvaluationConfig, target: str) -> tuple[float, ...]:
    return config.changes if target == "change" else config.strengths


def _metric_rows(
    rows: Sequence[dict[str, Any]],
    config: EvaluationConfig,
    metric: str,
    kind: str,
    target: str = "strength",
) -> list[list[str]]:
    table = stats(rows, metric, kind, target)
    values = _values(config, target)
    return [
        [region, method, *(table[(method, region, float(v))].text() for v in values)]
        for region in config.regions
        for method in config.methods
    ]


def _ranking_line(rows, region: str, value: float, methods: Sequence[str], target: str) -> str:  # noqa: ANN001
    ranked = ranking(rows, region, value, methods, target)
    return " < ".join(f"{method} {median:.3g}" for method, median in ranked)


def _head_to_head_rows(rows, region: str, value: float, methods, target: str) -> list[list[str]]:  # noqa: ANN001
    shares = head_to_head(rows, region, value, methods, target)
    return [
        [a, *("-" if a == b else f"{100 * shares[(a, b)]:.0f}%" for b in methods)] for a in methods
    ]


def unreached_count(rows: Sequence[dict[str, Any]]) -> tuple[int, int]:
    """`(unreached, total)` edits made for a change."""
    made = [row for row in rows if row.get("target") == "change" and row["kind"] != "transfer"]
    return sum(1 for row in made if not row["reached"]), len(made)


def describe_run(config: EvaluationConfig, model: Model) -> str:
    seeds = config.seeds
    if len(seeds) == 1:
        span = f"seed {seeds[0]}"
    elif list(seeds) == list(range(seeds[0], seeds[-1] + 1)):
        span = f"{len(seeds)} seeds ({seeds[0]}-{seeds[-1]})"
    else:
        span = f"{len(seeds)} seeds ({', '.join(map(str, seeds))})"
    other = "other image" if config.transfer == 1 else "other images"
    transfer_seeds = (
        f"seed {TRANSFER_SEED_BASE}"
        if config.transfer == 1
        else f"seeds {TRANSFER_SEED_BASE}-{TRANSFER_SEED_BASE + config.transfer - 1}"
    )
    edits = f"path-following edits (step {config.step:g})" if config.path else "one-shot edits"
    transfer = (
        f"each direction is also applied to {config.transfer} {other} ({transfer_seeds})"
        if config.transfer
        else "no transfer images"
    )
    changes = (
        f"changes {', '.join(f'{c:g}' for c in config.changes)} (rms change inside the region, "
        "images in [-1, 1]: every method moves the region as much) and "
        if config.changes
        else ""
    )
    return (
        f"Model {model.name} ({model.description or model.source}), {model.space} space. "
        f"{span}, regions {', '.join(config.regions)}, {changes}strengths "
        f"{', '.join(f'{s:g}' for s in config.strengths)} (distance in the latent space along "
        f"a unit direction), {edits}; {transfer}. `multi` is `{config.multi_method}` on Gram "
        f"matrices averaged over {config.samples} images; `sefa` and `ganspace` edit with "
        f"whichever of their top {config.settings.top_k} directions moves the region most on "
        "each image."
    )


def summary_markdown(
    rows: Sequence[dict[str, Any]], config: EvaluationConfig, model: Model, command: str
) -> str:
    parts = [f"# Evaluation: {model.name}", ""]
    if command:
        parts += ["```", command, "```", ""]
    parts += [
        describe_run(config, model),
        "",
        "Cells: median [first quartile, third quartile] over seeds (transfer: over seeds x "
        "other images).",
    ]
    groups = [("strength", _TABLES, "At equal strength (latent distance)")]
    if config.changes:
        missed, made = unreached_count(rows)
        parts += [
            "",
            f"Changes not reached (within 3 sqrt(d) or --max-strength; the edit stops at the "
            f"largest change it reached, measured as such): {missed} of {made} edits.",
        ]
        groups.insert(0, ("change", _CHANGE_TABLES, "At equal change inside the region"))
    for target, tables, heading in groups:
        values = _values(config, target)
        parts += ["", f"# {heading}"]
        for metric, kind, title in tables:
            if kind != "self" and config.transfer == 0:
                continue
            parts += ["", f"## {title}", ""]
            header = ["region", "method", *(value_label(target, v) for v in values)]
            parts.append(_markdown_table(header, _metric_rows(rows, config, metric, kind, target)))
    target, _ = headline(config)
    at = report_value(config)
    parts += ["", f"## Ranking and head-to-head at {value_label(target, at)}", ""]
    for region in config.regions:
        parts += [
            f"**{region}**, median locality, most local first: "
            + _ranking_line(rows, region, at, config.methods, target),
            "",
            "Share of seeds where the row's edit is more local than the column's (same image):",
            "",
            _markdown_table(
                ["", *config.methods],
                _head_to_head_rows(rows, region, at, config.methods, target),
            ),
            "",
        ]
    return "\n".join(parts).rstrip() + "\n"


# ---------------------------------------------------------------------------------------------
# Pictures


def _chart(
    rows,  # noqa: ANN001
    config: EvaluationConfig,
    region: str,
    metric: str,
    kind: str,
    title: str,
    y_label: str,
    target: str = "strength",
) -> bytes:
    table = stats(rows, metric, kind, target)
    values = _values(config, target)
    series = []
    for method in config.methods:
        cells = [table[(method, region, float(v))] for v in values]
        series.append(
            Series(
                name=method,
                x=list(values),
                y=[c.median for c in cells],
                low=[c.q1 for c in cells],
                high=[c.q3 for c in cells],
            )
        )
    image = line_chart(
        series,
        title=title,
        x_label="strength (distance in the latent space)"
        if target == "strength"
        else "change inside the region (rms, images in [-1, 1])",
        y_label=y_label,
        log_y=metric == "ratio",
        reference=1.0 if metric == "ratio" else None,
    )
    return png_bytes(image)


def _strip(
    model: Model,
    config: EvaluationConfig,
    cells: dict,
    region: str,
    seed: int,
    original: np.ndarray,
    mask: np.ndarray,
) -> bytes:
    """Rows: methods; columns: the original `(H, W, 3)` uint8 image of `seed`, each change
    (each strength when the run has no changes), the change at the largest (outlining the
    `(H, W)` bool `mask`)."""
    target, values = headline(config)
    largest = int(np.argmax(np.abs(values)))
    grid_rows, labels = [], []
    for method in config.methods:
        cell: Cell = cells[(method, region, seed)]
        edits = cell.change_latents if target == "change" else cell.self_latents
        latents = torch.tensor(edits, dtype=model.dtype, device=model.device)
        edited = render_latents(model, latents)
        heat = change_heatmap(original, edited[largest], mask)
        grid_rows.append([upscale(image, _DISPLAY) for image in (original, *edited, heat)])
        labels.append(method)
    label = change_label if target == "change" else strength_label
    columns = ["original", *(label(v) for v in values), f"where, at {label(values[largest])}"]
    return png_bytes(image_grid(grid_rows, row_labels=labels, col_labels=columns))


def _html_table(
    rows,  # noqa: ANN001
    config: EvaluationConfig,
    metric: str,
    kind: str,
    target: str = "strength",
) -> list[dict]:
    table = stats(rows, metric, kind, target)
    out = []
    for region in config.regions:
        for method in config.methods:
            entry: dict[str, object] = {"region": region, "method": method}
            for v in _values(config, target):
                entry[value_label(target, v)] = table[(method, region, float(v))].text()
            out.append(entry)
    return out


def write_outputs(
    out: Path,
    model: Model,
    config: EvaluationConfig,
    result: EvaluationResult,
    command: str = "",
    elapsed: float | None = None,
) -> Path:
    """Write `results.csv`, `summary.md`, `plots/*.png` and `index.html` into `out`
    (staged, so they appear together); returns the path of `index.html`."""
    out = Path(out)
    rows = result.rows
    target, _ = headline(config)
    at = report_value(config)
    where = value_label(target, at)
    sections = [
        ReportSection(
            title="Locality by method"
            + (" at equal change inside the region" if target == "change" else ""),
            text=(
                "rms change outside the region / inside it, median [first quartile, third "
                "quartile] over seeds; lower is more local.\n"
                + "\n".join(
                    f"{region} at {where}: "
                    + _ranking_line(rows, region, at, config.methods, target)
                    + "."
                    for region in config.regions
                )
            ),
            table=_html_table(rows, config, "ratio", "self", target),
        )
    ]
    charts: dict[str, bytes] = {}
    with staged_output(out) as staging:
        (staging / "plots").mkdir()
        shown = config.seeds[0]
        original = render_latents(model, model.sample_latent(shown).unsqueeze(0))[0]
        for region in config.regions:
            slug = "".join(c if c.isalnum() else "_" for c in region)
            mask = region_mask(model, region).cpu().numpy()
            overlay = png_bytes(upscale(overlay_region(original, mask), _DISPLAY))
            figures = [Figure(f"{region} on seed {shown}", overlay)]
            ratio = "rms outside / rms inside"
            specs = []
            if config.changes:
                specs.append(("ratio", "self", "change locality", ratio, "change"))
                if config.transfer:
                    specs.append(
                        ("ratio", "transfer_change", "transfer change locality", ratio, "change")
                    )
            specs += [
                ("ratio", "self", "locality", ratio, "strength"),
                ("rms_inside", "self", "change inside", "rms change inside", "strength"),
            ]
            if config.transfer:
                specs.append(("ratio", "transfer", "transfer locality", ratio, "strength"))
            for metric, kind, name, y_label, axis in specs:
                title = f"{region}: {name}" + (" (equal change)" if axis == "change" else "")
                data = _chart(rows, config, region, metric, kind, title, y_label, axis)
                file = f"plots/{slug}_{name.replace(' ', '_')}.png"
                charts[file] = data
                figures.append(Figure(f"{region}: {name} (median, bars: quartiles)", data))
            strip = _strip(model, config, result.cells, region, shown, original, mask)
            charts[f"plots/{slug}_strip.png"] = strip
            figures.append(Figure(f"every method's edit of seed {shown}, region {region}", strip))
            sections.append(
                ReportSection(
                    title=f"Region {region}",
                    text=(
                        f"Head-to-head at {where}: share of seeds where the row's edit "
                        "is more local than the column's on the same image."
                    ),
                    figures=figures,
                    table=[
                        {"method": r[0], **dict(zip(config.methods, r[1:], strict=True))}
                        for r in _head_to_head_rows(rows, region, at, config.methods, target)
                    ],
                )
            )
        tables = [("strength", entry) for entry in _TABLES]
        if config.changes:
            tables = [("change", entry) for entry in _CHANGE_TABLES[1:]] + tables
        else:
            tables = tables[1:]
        for axis, (metric, kind, title) in tables:
            if kind != "self" and config.transfer == 0:
                continue
            if axis == "strength" and config.changes:
                title = f"{title} (at equal strength)"
            sections.append(
                ReportSection(title=title, table=_html_table(rows, config, metric, kind, axis))
            )
        for file, data in charts.items():
            atomic_write_bytes(staging / file, data)
        atomic_write_text(staging / "results.csv", csv_text(rows))
        atomic_write_text(staging / "summary.md", summary_markdown(rows, config, model, command))
        timing = f" in {elapsed:.0f} s" if elapsed is not None else ""
        intro = (
            describe_run(config, model)
            + f"\n\n{result.computed} cells computed{timing}, {result.reused} reused from an "
            "earlier run. All numbers are in results.csv (one row per edit) and summary.md."
        )
        if command:
            intro = f"{command}\n\n{intro}"
        atomic_write_text(
            staging / "index.html",
            render_html(
                f"lowrankgan evaluate: {model.name}", intro, sections, f"lowrankgan {__version__}"
            ),
        )
    return out / "index.html"


def evaluate(
    model: Model,
    out: str | Path,
    regions: Sequence[str],
    *,
    methods: Sequence[str] = EVAL_METHODS,
    seeds: Sequence[int] = tuple(range(50)),
    strengths: Sequence[float] = (1.0, 2.0, 3.0, 5.0),
    transfer: int = DEFAULT_TRANSFER,
    samples: int = DEFAULT_SAMPLES,
    multi_method: str = "contrast",
    keep: str | None = None,
    path: bool = False,
    step: float = DEFAULT_STEP,
    settings: AnalysisSettings | None = None,
    changes: Sequence[float] = (),
    max_strength: float | None = None,
    restart: bool = False,
    progress: bool = True,
    command: str = "",
) -> Path:
    """Evaluate `methods` on `regions` of the images of `seeds` into `out` (resumable) and
    write the report; returns the path of `out/index.html`. See `EvaluationConfig`."""
    out = Path(out)
    config = EvaluationConfig(
        regions=tuple(regions),
        methods=tuple(methods),
        seeds=tuple(int(s) for s in seeds),
        strengths=tuple(float(s) for s in strengths),
        transfer=transfer,
        samples=samples,
        multi_method=multi_method,
        keep=keep,
        path=path,
        step=step,
        settings=settings or AnalysisSettings(),
        changes=tuple(float(c) for c in changes),
        max_strength=max_strength,
    )
    started = time.perf_counter()
    result = run_cells(model, config, out, restart=restart, progress=progress, command=command)
    return write_outputs(out, model, config, result, command, time.perf_counter() - started)
