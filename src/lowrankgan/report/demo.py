"""`lowrankgan demo`: local edits of the built-in face GAN, as pictures and one HTML report.

For each seed and region preset of `dcgan-faces` it runs the paper's method (`lowrank`) and
ours (`contrast`), edits along each top direction with path-following, measures locality
(rms change outside the region / inside it) and renders: the region, the edit strips, an
animation and a locality heat map per edit. A last section applies one direction found on
one face to other faces (transfer).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from lowrankgan.core.metrics import locality
from lowrankgan.io.artifacts import staged_output
from lowrankgan.models import load_model
from lowrankgan.pipeline.analysis import Analysis, analysis_field, analyze
from lowrankgan.pipeline.editing import Edits, edit_analysis
from lowrankgan.pipeline.settings import AnalysisSettings
from lowrankgan.report.html import Figure, ReportSection, write_report
from lowrankgan.report.outputs import change_label, render_latents, strength_label
from lowrankgan.report.render import (
    change_heatmap,
    gif_bytes,
    image_grid,
    overlay_region,
    png_bytes,
    upscale,
)
from lowrankgan.version import __version__

DEMO_MODEL = "dcgan-faces"
#: Changes inside the region the edits reach (rms, images in [-1, 1]): both methods move the
#: region as much, so the pictures compare how much each leaves the rest alone.
DEMO_CHANGES = (-0.12, -0.06, 0.0, 0.06, 0.12)
DEMO_STEP = 0.5
DISPLAY = 128


def _edit_rows(model, analysis: Analysis, latent: torch.Tensor) -> Edits:  # noqa: ANN001
    return edit_analysis(model, analysis, changes=DEMO_CHANGES, latent=latent, step=DEMO_STEP)


def _row_label(method: str, edits: Edits) -> str:
    """A method's row label; an edit that fell short of its change says what it reached."""
    missed = [float(a) for a, ok in zip(edits.achieved, edits.reached, strict=True) if not ok]
    if not missed:
        return method
    return f"{method} (reached {', '.join(f'{a:+.3f}' for a in missed)})"


def run_demo(
    out: Path,
    *,
    device: str = "cpu",
    seeds: Sequence[int] = (0, 1, 2),
    regions: Sequence[str] = ("eyes", "mouth", "nose"),
    progress: bool = True,
) -> Path:
    """Run the demo into `out` and return the path of `index.html`."""
    model = load_model(DEMO_MODEL, device=device)
    for region in regions:
        if region not in model.presets:
            from lowrankgan.errors import UserInputError

            raise UserInputError(
                f"unknown region {region!r} for the demo; presets: {', '.join(model.presets)}"
            )
    started = time.perf_counter()
    sections: list[ReportSection] = []
    measured: list[tuple[str, str, float, float]] = []
    jobs = [(seed, region) for seed in seeds for region in regions]
    with staged_output(out) as staging:
        first_analysis: Analysis | None = None
        fields: dict[int, torch.Tensor] = {}
        for seed, region in tqdm(jobs, desc="Demo", unit="edit", disable=not progress):
            latent = model.sample_latent(seed)
            if seed not in fields:  # one Jacobian field per image serves all its regions
                fields = {seed: analysis_field(model, latent, AnalysisSettings())}
            original = model.synthesize(latent)[0]
            strips, table, heatmaps, frames, labels = [], [], [], [], []
            mask = torch.from_numpy(np.asarray(model.presets[region].mask(*model.resolution)))
            for method in ("lowrank", "contrast"):
                analysis = analyze(model, latent, region, method=method, field=fields[seed])
                if first_analysis is None and method == "lowrank":
                    first_analysis = analysis
                edits = _edit_rows(model, analysis, latent)
                labels.append(_row_label(method, edits))
                images = render_latents(model, edits.latents)
                strips.append([upscale(image, DISPLAY) for image in images])
                edited = model.synthesize(edits.latents)
                for index, image in enumerate(edited):
                    change = DEMO_CHANGES[index]
                    if change == 0:
                        continue
                    loc = locality(original, image, mask)
                    table.append(
                        {
                            "method": method,
                            "change asked": change,
                            "change reached": float(edits.achieved[index]),
                            "strength": float(edits.strengths[index]),
                            "rms inside": loc.rms_inside,
                            "rms outside": loc.rms_outside,
                            "outside / inside": loc.ratio,
                            "energy inside": loc.energy_inside,
                        }
                    )
                    if abs(change) == max(DEMO_CHANGES):
                        measured.append((region, method, loc.ratio, loc.rms_inside))
                base = images[DEMO_CHANGES.index(0.0)]
                heatmaps.append(
                    Figure(
                        f"{method}: where it changed at {change_label(max(DEMO_CHANGES))}",
                        png_bytes(upscale(change_heatmap(base, images[-1], mask.numpy()), DISPLAY)),
                    )
                )
                frames.append(images)
            base = strips[0][DEMO_CHANGES.index(0.0)]
            region_view = upscale(
                overlay_region(render_latents(model, latent.unsqueeze(0))[0], mask.numpy()), DISPLAY
            )
            grid = image_grid(
                strips,
                row_labels=labels,
                col_labels=[change_label(c) for c in DEMO_CHANGES],
            )
            name = f"seed{seed}_{region}"
            grid_bytes = png_bytes(grid)
            (staging / f"{name}.png").write_bytes(grid_bytes)
            order = np.argsort(DEMO_CHANGES)
            gif_frames = [
                np.concatenate([upscale(frames[m][i], DISPLAY) for m in range(2)], axis=1)
                for i in order
            ]
            gif = gif_bytes(gif_frames, duration_ms=150)
            (staging / f"{name}.gif").write_bytes(gif)
            sections.append(
                ReportSection(
                    title=f"Seed {seed}: {region}",
                    text=(
                        f"Top local direction of each method, path-following edits to the "
                        f"changes {', '.join(f'{c:+g}' for c in DEMO_CHANGES)} inside the "
                        f"region (rms, images in [-1, 1]; the table gives the change each "
                        f"reached and the distance in z it took). Left animation: lowrank, "
                        f"right: contrast. Lower 'outside / inside' is more local."
                    ),
                    figures=[
                        Figure("region (red)", png_bytes(region_view)),
                        Figure("edits: rows lowrank, contrast", grid_bytes),
                        Figure("animation: lowrank | contrast", gif, "image/gif"),
                        *heatmaps,
                    ],
                    table=table,
                )
            )
        if first_analysis is not None:
            sections.append(_transfer_section(model, first_analysis, seeds, staging))
        elapsed = time.perf_counter() - started
        intro = (
            f"Model {DEMO_MODEL} ({model.description}); {len(jobs)} analyses per method on "
            f"{device}, {elapsed:.0f} s. Each section shows the region, edits along the top "
            "direction of the paper's method (lowrank) and of ours (contrast), and where each "
            "edit changed the image (heat maps, white outline = region)."
        )
        sections.insert(
            0,
            ReportSection(
                title="Summary",
                text=(
                    f"Medians over seeds {', '.join(map(str, seeds))} and both signs at change "
                    f"{max(DEMO_CHANGES):g} inside the region: rms change outside the region / "
                    "inside it (lower is more local) and the rms change reached inside (images "
                    "in [-1, 1])."
                ),
                table=_summary(measured),
            ),
        )
        write_report(
            staging / "index.html",
            "lowrankgan demo: local edits of a face GAN",
            intro,
            sections,
            footer=f"lowrankgan {__version__}",
        )
    return out / "index.html"


def _summary(measured: list[tuple[str, str, float, float]]) -> list[dict[str, object]]:
    """One row per region and method: median locality ratio and rms change inside."""
    rows = []
    for region in dict.fromkeys(r for r, _, _, _ in measured):
        for method in dict.fromkeys(m for _, m, _, _ in measured):
            cells = [
                (ratio, inside) for r, m, ratio, inside in measured if (r, m) == (region, method)
            ]
            rows.append(
                {
                    "region": region,
                    "method": method,
                    "outside / inside": float(np.median([c[0] for c in cells])),
                    "rms inside": float(np.median([c[1] for c in cells])),
                }
            )
    return rows


def _transfer_section(
    model, analysis: Analysis, seeds: Sequence[int], staging: Path
) -> ReportSection:  # noqa: ANN001
    """One direction, found on one face, applied to other faces."""
    others = [s for s in range(max(seeds) + 1, max(seeds) + 6)]
    strengths = (-3.0, 0.0, 3.0)
    rows, labels = [], []
    for seed in others:
        edits = edit_analysis(
            model, analysis, strengths, latent=model.sample_latent(seed), one_shot_edit=True
        )
        rows.append([upscale(image, 128) for image in render_latents(model, edits.latents)])
        pairs = zip(edits.achieved, strengths, strict=True)
        reached = ", ".join(change_label(a) for a, s in pairs if s)
        labels.append(f"seed {seed}: {reached}")
    grid = image_grid(
        rows,
        row_labels=labels,
        col_labels=[strength_label(s) for s in strengths],
    )
    data = png_bytes(grid)
    (staging / "transfer.png").write_bytes(data)
    return ReportSection(
        title="Transfer to other faces",
        text=(
            f"The top lowrank direction for '{analysis.info.get('region')}' found on seed "
            f"{seeds[0]}, applied unchanged (one-shot, strengths "
            f"{', '.join(strength_label(s) for s in strengths)}) to other seeds; each row says "
            "the change it reached inside the region."
        ),
        figures=[Figure("one direction, other faces", data)],
    )
