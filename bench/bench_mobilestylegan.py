"""The 1024-px FFHQ MobileStyleGAN on this machine's CPU: forward floor, exact Gram, the
default (sketched) analysis, their ratios and how far the default lands from exact.

The exact analysis needs the whole Jacobian field (512 forward-mode passes through the 1024-px
network, one tangent each on the CPU). Its time is the fixed part of a field (linearising the
network at the point) plus 512 tangents, both from timed fields of `EXACT_SLICE` and twice as
many tangents. The angles need the whole field: it is read from `LOWRANKGAN_EXACT_FIELD` (default
`~/.cache/lowrankgan/bench/mobilestylegan-ffhq-seed0-field.pt`) when that holds the field of
this model, seed and view, else computed here (with a progress bar) and saved there.
"""

from __future__ import annotations

import io
import math
import os
import time
from pathlib import Path

import torch

from lowrankgan import AnalysisSettings, analysis_field, analyze, load_model
from lowrankgan.core.gram import per_value_grams
from lowrankgan.core.jacobian import chunk_size_for, jacobian_field
from lowrankgan.io.artifacts import atomic_write_bytes
from lowrankgan.pipeline.settings import CPU_DEFAULT_SKETCH
from lowrankgan.regions import keep_mask, region_mask
from measure import largest_angle

SEED = 0
REGIONS = ("eyes", "mouth", "nose")
EXACT_SLICE = 16
TOP = 5
FIELD_PATH = Path(
    os.environ.get(
        "LOWRANKGAN_EXACT_FIELD",
        Path.home() / ".cache/lowrankgan/bench/mobilestylegan-ffhq-seed0-field.pt",
    )
)


def leak(direction: torch.Tensor, grams: torch.Tensor) -> float:
    """Outside/inside rms change of a unit step, from exact per-value Grams (region, kept)."""
    v = direction.double()
    return math.sqrt(float(v @ grams[1] @ v) / float(v @ grams[0] @ v))


def _exact_field(model, latent: torch.Tensor, settings: AnalysisSettings) -> torch.Tensor:
    expected = (model.latent_dim, model.channels, *settings.size)
    if FIELD_PATH.exists():
        stored = torch.load(FIELD_PATH, weights_only=True)
        if tuple(stored["field"].shape) == expected and torch.equal(stored["latent"], latent):
            return stored["field"]
    field = analysis_field(model, latent, settings, progress=True)
    FIELD_PATH.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save({"field": field, "latent": latent}, buffer)
    atomic_write_bytes(FIELD_PATH, buffer.getvalue())
    return field


def run(quick: bool = False) -> str:
    model = load_model("mobilestylegan-ffhq")
    latent = model.sample_latent(SEED)
    settings = AnalysisSettings(size=(256, 256))
    point = latent.reshape(1, -1)
    threads = torch.get_num_threads()

    with torch.no_grad():
        model.synthesize(point)  # warm-up
        start = time.perf_counter()
        for _ in range(3):
            model.synthesize(point)
        forward = (time.perf_counter() - start) / 3

    # First the default, as a fresh process runs it: the first analysis pays the chunk
    # calibrations and the tracing of the network's tangent program.
    defaults = {}
    for region in [] if quick else REGIONS:
        start = time.perf_counter()
        defaults[region] = analyze(model, latent, region)
        defaults[region].info["bench_seconds"] = time.perf_counter() - start

    # the chunk calibration (once per process and view) is not a tangent's cost
    chunk = chunk_size_for(model, size=settings.size, count=EXACT_SLICE, latent=latent)
    # the network's tangent program is traced once per model and view, not per field
    jacobian_field(
        model, latent, size=settings.size, directions=torch.eye(model.latent_dim)[:EXACT_SLICE]
    )
    seconds_for = {}
    for count in (EXACT_SLICE, 2 * EXACT_SLICE):
        start = time.perf_counter()
        jacobian_field(
            model, latent, size=settings.size, directions=torch.eye(model.latent_dim)[:count]
        )
        seconds_for[count] = time.perf_counter() - start
    # a field costs a fixed part (linearising the network at the point) plus its tangents
    per_tangent = (seconds_for[2 * EXACT_SLICE] - seconds_for[EXACT_SLICE]) / EXACT_SLICE
    fixed = max(0.0, seconds_for[EXACT_SLICE] - EXACT_SLICE * per_tangent)
    exact_seconds = fixed + per_tangent * model.latent_dim

    field = _exact_field(model, latent, settings)
    rows = []
    for region in [] if quick else REGIONS:
        region_m = region_mask(model, region)
        masks = torch.stack([region_m, keep_mask(model, region_m, None)])
        grams = per_value_grams(field, masks)
        exact = analyze(model, latent, region, field=field)
        default = defaults[region]
        seconds = default.info["bench_seconds"]
        k = min(TOP, default.directions.shape[1], exact.directions.shape[1])
        rows.append(
            (
                region,
                seconds,
                largest_angle(
                    torch.from_numpy(default.region_basis[:, :TOP]),
                    torch.from_numpy(exact.region_basis[:, :TOP]),
                ),
                largest_angle(
                    torch.from_numpy(default.directions[:, :k]),
                    torch.from_numpy(exact.directions[:, :k]),
                ),
                leak(torch.from_numpy(default.directions[:, 0]), grams),
                leak(torch.from_numpy(exact.directions[:, 0]), grams),
                default.info["grams"],
                exact.info["ranks"],
            )
        )

    lines = [
        "## MobileStyleGAN FFHQ 1024 px on the CPU: exact Gram and the default sketch",
        "",
        f"`mobilestylegan-ffhq`, seed {SEED}, w space, analysis view 256 x 256, "
        f"{threads} torch threads.",
        "",
        "| pass | seconds | / forward |",
        "| --- | --- | --- |",
        f"| forward floor (one 1024-px image, no grad) | {forward:.2f} | 1.0 |",
        f"| a field's fixed part (the point's own operations, chunks of {chunk}) | "
        f"{fixed:.1f} | {fixed / forward:.1f} |",
        f"| one forward-mode tangent after it | {per_tangent:.2f} | {per_tangent / forward:.2f} |",
        f"| exact Gram: {model.latent_dim} tangents (fixed part + {model.latent_dim} x "
        f"tangent; fields of {EXACT_SLICE} and {2 * EXACT_SLICE} timed) | "
        f"{exact_seconds:.0f} | {exact_seconds / forward:.0f} |",
    ]
    for region, seconds, *_ in rows:
        lines.append(
            f"| default analysis of {region} (sketch {CPU_DEFAULT_SKETCH}, region test) | "
            f"{seconds:.0f} | {seconds / forward:.0f} |"
        )
    if rows:
        lines += [
            "",
            "| region | default / exact time | top-5 principal space vs exact | top-5 "
            "directions vs exact | leak of the first direction: default / exact | exact ranks |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for region, seconds, principal, directions, ours, theirs, _grams, ranks in rows:
            lines.append(
                f"| {region} | {seconds / exact_seconds:.3f} | {principal:.1f} deg | "
                f"{directions:.1f} deg | {ours:.3f} / {theirs:.3f} | "
                f"region {ranks['region']}, kept {ranks['keep']} |"
            )
        lines += [
            "",
            "The default analyses ran first, in region order, as in a fresh process: the "
            "first one includes the one-time chunk calibrations and the tracing of the "
            "network's tangent program. Angles: the largest principal angle between the "
            "spans (float64 QR + SVD). Leak: "
            "outside/inside rms change of a unit step along the first direction, both "
            "measured with the exact Grams. The default records "
            f"`grams: {rows[0][6]}` in analysis.json; `--exact` gives the exact analysis.",
        ]
    return "\n".join(lines) + "\n"
