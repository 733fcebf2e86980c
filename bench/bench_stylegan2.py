"""Benchmark of region Gram matrices on random-weight StyleGAN2 generators in W space.

`run()` builds `random_stylegan2` networks (w_dim 512, 8 mapping layers, channels_max 64) at
output resolutions 64, 128 and 256 and measures, in one process, on one centre-box region:

- `jacobian_gram` at full resolution against the output resolution, and on the 256 network
  also at 64x64 with area downsampling and fused channels (the paper analyses 1024 at 256);
- the forward floor: one no-grad batched forward of a chunk of w's, extrapolated to 512;
- `jacobian_gram` on the 64 network at several chunk sizes, with the memory budget each
  implies through `chunk_size_for`;
- `sketch_gram` with K = 32, 64, 128 against the exact Gram at the same settings: time and
  accuracy (principal angles of the top eigenvector subspaces, relative Frobenius error).

Repeats are interleaved (every case once per round, in turn, the order rotating) after one
untimed warm-up call; times are medians over the rounds. Peak memory is measured in fresh
interpreters (see `_PEAK_SCRIPT`). It returns a Markdown section and writes no files.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

from lowrankgan.core import jacobian as jac
from lowrankgan.core.gram import jacobian_gram, sketch_gram
from lowrankgan.core.jacobian import chunk_size_for, jacobian_field
from lowrankgan.models import Model
from lowrankgan.models.stylegan2.network import random_stylegan2
from lowrankgan.shapes import Box
from measure import MALLOC_ENV, RSS_PRELUDE, Timing, largest_angle, rounds

_SEED = 0
_W_DIM = 512
_MAPPING_LAYERS = 8
_CHANNELS_MAX = 64
_RESOLUTIONS = (64, 128, 256)
_SMALL_VIEW = 64  # the largest network is also analysed at this size, channels fused
_REPEATS = 3
_CHUNK_RESOLUTION = 64
_CHUNKS = (32, 128, 512)
_SKETCH_RESOLUTION = 128
_SKETCHES = (32, 64, 128)
_TOPS = (5, 20)
_MEMORY_WORKERS = 2

# Run in a fresh interpreter: the peak resident memory of one `jacobian_gram` call, sampled
# every millisecond by a thread (torch releases the GIL inside its kernels), above the
# resident memory just before the call. glibc's mmap threshold is fixed (`MALLOC_ENV`) so
# that freed tensors leave the resident set (see bench_jacobian.py). To save time there is no
# warm-up Gram: the call is the first of the process, after the model is built, its
# activation size probed and one w pushed through the network without gradients.
_PEAK_SCRIPT = (
    RSS_PRELUDE
    + """
import sys
sys.path.insert(0, sys.argv[1])
from bench_stylegan2 import _build, _centre_box
from lowrankgan.core.jacobian import jacobian_gram
resolution, chunk, view, fuse = (int(a) for a in sys.argv[2:6])
model, w = _build(resolution)
mask = _centre_box(resolution)
size = (view, view) if view != resolution else None
chunk = chunk or None
model.synthesize(w)
print(peak_growth(lambda: jacobian_gram(
    model, w, mask, size=size, fuse_channels=bool(fuse), chunk_size=chunk
)))
"""
)


#: The old sizing rule, kept here to compare with the calibrated chunks: peak bytes per
#: direction as a multiple of the module outputs of one forward pass.
_ACTIVATION_FACTOR = 2


def activation_bytes(model: Model) -> int:
    """Bytes of every module output in one forward pass of one latent (forward hooks): the
    estimate chunks were sized from before calibration, which misses layers' internals."""
    total = 0

    def hook(_module, _inputs, output) -> None:  # noqa: ANN001
        nonlocal total
        if isinstance(output, torch.Tensor):
            total += output.numel() * output.element_size()

    handles = [m.register_forward_hook(hook) for m in model.network.modules()]
    try:
        with torch.no_grad():
            out = model.synthesize(torch.zeros(1, model.latent_dim))
    finally:
        for handle in handles:
            handle.remove()
    return max(total, out.numel() * out.element_size())


def _synthesis(network: torch.nn.Module, latents: torch.Tensor, _c: object) -> torch.Tensor:
    """W space: the same w for every layer."""
    ws = latents.unsqueeze(1).repeat(1, network.num_ws, 1)
    return network.synthesis(ws, noise_mode="const")


def _build(resolution: int) -> tuple[Model, torch.Tensor]:
    """The random network at `resolution` as a W-space `Model`, and the w of seed `_SEED`
    (z standard normal through the mapping network, no truncation)."""
    network = random_stylegan2(
        resolution=resolution,
        channels_max=_CHANNELS_MAX,
        z_dim=_W_DIM,
        w_dim=_W_DIM,
        mapping_layers=_MAPPING_LAYERS,
        seed=_SEED,
    )
    model = Model(
        name=f"random-stylegan2-{resolution}",
        network=network,
        latent_dim=_W_DIM,
        resolution=(resolution, resolution),
        synthesis_fn=_synthesis,
        space="w",
    )
    z = torch.randn(1, _W_DIM, generator=torch.Generator().manual_seed(_SEED))
    with torch.no_grad():
        w = network.mapping(z, None)[0, 0]
    return model, w


def _centre_box(resolution: int) -> torch.Tensor:
    """The centre box, half the side of the image (a quarter of its area)."""
    low, high = resolution // 4, 3 * resolution // 4
    return Box(low, low, high, high).mask(resolution, resolution)


def _warm(model: Model, w: torch.Tensor, chunk: int) -> None:
    """Warm-up: one chunk of the identity pushed forward (the shapes of the timed calls)."""
    eye = torch.eye(model.latent_dim, dtype=model.dtype)[:chunk]
    jacobian_field(model, w, directions=eye, chunk_size=chunk)


def _floor_case(model: Model, w: torch.Tensor, batch: int) -> Callable[[], object]:
    latents = w.unsqueeze(0) + torch.eye(model.latent_dim, dtype=model.dtype)[:batch]

    def floor() -> torch.Tensor:
        with torch.no_grad():
            return model.synthesize(latents)

    return floor


def _peak_memory(job: tuple[int, int, int, int]) -> float:
    """Measured peak RSS growth in bytes of one `jacobian_gram` call (fresh interpreter) for
    (resolution, chunk or 0, view size, fuse), NaN if the measurement failed."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", _PEAK_SCRIPT, str(Path(__file__).resolve().parent)]
            + [str(x) for x in job],
            capture_output=True,
            text=True,
            timeout=600,
            check=True,
            env={**os.environ, **MALLOC_ENV},
        )
        return float(done.stdout.strip().splitlines()[-1])
    except (subprocess.SubprocessError, ValueError, IndexError, OSError):
        return math.nan


def _peak_memories(jobs: list[tuple[int, int, int, int]]) -> dict[tuple[int, ...], float]:
    """`_peak_memory` of every job, `_MEMORY_WORKERS` interpreters at a time (resident memory
    is per process, so running side by side changes the wall time, not the figures)."""
    with ThreadPoolExecutor(_MEMORY_WORKERS) as pool:
        return dict(zip(jobs, pool.map(_peak_memory, jobs), strict=True))


def _mib(value: float) -> str:
    return "-" if math.isnan(value) else f"{value / 2**20:.0f}"


def _largest_angle(exact: torch.Tensor, approx: torch.Tensor, top: int) -> float:
    """Largest principal angle (degrees) between the top-`top` eigenvector subspaces."""
    return largest_angle(
        torch.linalg.eigh(exact)[1][:, -top:], torch.linalg.eigh(approx)[1][:, -top:]
    )


@dataclass
class _Row:
    label: str
    resolution: int
    view: int
    fuse: bool
    chunk: int
    timing: Timing
    floor: Timing
    floor_scale: float
    peak: float = math.nan

    @property
    def floor_seconds(self) -> float:
        return self.floor.median * self.floor_scale

    @property
    def field_bytes(self) -> float:
        channels = 1 if self.fuse else 3
        return _W_DIM * channels * self.view * self.view * 4


def run(quick: bool = False) -> str:
    """Run the benchmark and return a Markdown section (`quick`: the 64 network only, one
    round, the sketches on it, no memory measurement)."""
    section_start = time.perf_counter()
    repeats = 1 if quick else _REPEATS
    resolutions = (_RESOLUTIONS[0],) if quick else _RESOLUTIONS
    sketch_resolution = _RESOLUTIONS[0] if quick else _SKETCH_RESOLUTION
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else math.nan

    rows: list[_Row] = []
    sketch_timings: dict[str, Timing] = {}
    sketch_grams: dict[int, torch.Tensor] = {}
    exact_sketch_gram: torch.Tensor | None = None
    peaks: dict[tuple[int, ...], float] = {}
    networks: dict[int, tuple[Model, torch.Tensor]] = {}
    channels: dict[int, dict[int, int]] = {}
    for resolution in resolutions:
        model, w = _build(resolution)
        networks[resolution] = (model, w)
        channels[resolution] = dict(model.network.config.channels)
        mask = _centre_box(resolution)
        chunk = chunk_size_for(model)
        _warm(model, w, chunk)
        cases: dict[str, Callable[[], object]] = {
            "gram": lambda m=model, w=w, k=mask: jacobian_gram(m, w, k),
            "floor": _floor_case(model, w, chunk),
        }
        small = resolution == resolutions[-1] and resolution > _SMALL_VIEW
        if small:
            size = (_SMALL_VIEW, _SMALL_VIEW)
            cases["small"] = lambda m=model, w=w, k=mask, s=size: jacobian_gram(
                m, w, k, size=s, fuse_channels=True
            )
        if resolution == sketch_resolution:
            for k in _SKETCHES:
                cases[f"sketch{k}"] = lambda m=model, w=w, g=mask, k=k: sketch_gram(
                    m, w, g, k, seed=_SEED
                )
        timings = rounds(cases, repeats, warm_up=False, digits=2)
        scale = _W_DIM / chunk
        rows.append(
            _Row(
                "full",
                resolution,
                resolution,
                False,
                chunk,
                timings["gram"],
                timings["floor"],
                scale,
            )
        )
        if small:
            rows.append(
                _Row(
                    f"{_SMALL_VIEW}x{_SMALL_VIEW}, area + fused",
                    resolution,
                    _SMALL_VIEW,
                    True,
                    chunk,
                    timings["small"],
                    timings["floor"],
                    scale,
                )
            )
        if resolution == sketch_resolution:
            sketch_timings = {"exact": timings["gram"]}
            sketch_timings |= {str(k): timings[f"sketch{k}"] for k in _SKETCHES}
            exact_sketch_gram = jacobian_gram(model, w, mask)
            sketch_grams = {k: sketch_gram(model, w, mask, k, seed=_SEED) for k in _SKETCHES}

    # Chunk sizes on the smallest network.
    chunk_model, chunk_w = networks[_CHUNK_RESOLUTION]
    chunk_mask = _centre_box(_CHUNK_RESOLUTION)
    for c in _CHUNKS:
        _warm(chunk_model, chunk_w, c)
    chunk_timings = rounds(
        {
            str(c): (lambda c=c: jacobian_gram(chunk_model, chunk_w, chunk_mask, chunk_size=c))
            for c in _CHUNKS
        },
        repeats,
        warm_up=False,
        digits=2,
    )

    memory_seconds = 0.0
    if not quick:
        jobs = [(row.resolution, 0, row.view, int(row.fuse)) for row in rows]
        jobs += [(_CHUNK_RESOLUTION, c, _CHUNK_RESOLUTION, 0) for c in _CHUNKS]
        jobs.sort(key=lambda job: -job[0])  # longest first: two workers finish together
        start = time.perf_counter()
        peaks = _peak_memories(jobs)
        memory_seconds = time.perf_counter() - start
        for row in rows:
            row.peak = peaks[(row.resolution, 0, row.view, int(row.fuse))]

    # ---- Markdown ----
    base = rows[0].timing.median
    channel_text = "; ".join(
        f"{r}: " + ", ".join(f"{k}:{v}" for k, v in channels[r].items()) for r in channels
    )
    memory_note = (
        "not measured in the quick run"
        if quick
        else "peak resident-set (RSS) growth of one `jacobian_gram` call in a fresh interpreter, "
        "sampled every millisecond by a thread, above the RSS just before the call, with "
        "glibc's mmap threshold fixed at 128 KiB (`MALLOC_MMAP_THRESHOLD_=131072`, so freed "
        "tensors leave the resident set); to save time the measured call is the process's "
        "first Gram (after the model is built and one w is pushed through it), not one after a "
        "warm-up, and two such interpreters run side by side (RSS is per process); a rough "
        f"figure (a peak shorter than 1 ms is missed). These measurements took "
        f"{memory_seconds:.0f} s"
    )
    lines = [
        "## StyleGAN2 (random weights, W space): region Gram, chunks and sketches",
        "",
        f"Random-weight StyleGAN2 generators from `random_stylegan2` (config-F architecture, "
        f"skip ToRGB, NVIDIA parameter names) in W space: w_dim = d = {_W_DIM} like the real "
        f"networks, {_MAPPING_LAYERS} mapping layers (irrelevant in W: the analysis starts "
        f"after the mapping), channels_max = {_CHANNELS_MAX} (channel_base "
        f"{16 * _CHANNELS_MAX}, at least 4 channels per block; channels per block resolution: "
        f"{channel_text}). Real config-F networks have up to 512 channels (and 1024 output), "
        "so absolute times and memory scale up on real models; the channel count was chosen "
        "to keep the section near 6 minutes on 2 CPU cores, but at 128 and 256 the time is "
        "dominated by the convolutions of the high-resolution blocks (4-8 channels whatever "
        "channels_max), so a smaller channels_max barely helps (checked while writing this "
        "benchmark, not in this run: a no-grad forward of 64 w's at 256 took 2.2, 2.1 and "
        "2.6 s with channels_max 16, 32 and 64). The "
        f"latent is the w of z seed {_SEED} (no truncation); the region is the centre box "
        "[R/4, 3R/4) x [R/4, 3R/4) of the R x R output. Every Gram is `jacobian_gram` with "
        "the default chunk size (`chunk_size_for` with the default 1 GiB CPU budget) unless "
        "the chunk is stated. Times are medians of "
        f"{repeats} interleaved round{'s' if repeats > 1 else ''} (every case once per round, "
        "in turn, the order rotating) after one untimed warm-up call per network that pushes "
        "one chunk of the identity through `jacobian_field` (the shapes of the timed calls); "
        f"time.perf_counter, torch {torch.get_num_threads()} threads, 1-minute load average "
        f"{load:.2f} at start. The forward floor is one no-grad batched forward of one "
        "default chunk of w's (the w plus unit vectors: the batch a Jacobian chunk pushes), "
        f"measured, times {_W_DIM} / chunk: **extrapolated linearly** to the {_W_DIM} w's a "
        "Jacobian pushes, not measured (the cost per w depends on the batch size, so the floor "
        f"is taken at the batch the Jacobian uses). Memory: {memory_note}.",
        "",
        f"### Gram of the centre box against resolution (d = {_W_DIM})",
        "",
        "| Output | Analysis view | Default chunk (chunks) | Gram time (s) | Range (s) "
        f"| Time / {rows[0].resolution} full | Floor, one chunk (s) "
        f"| Floor, {_W_DIM} w's (s) | Gram / floor | Field (MiB) | Peak RSS growth (MiB) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        channels_view = 1 if row.fuse else 3
        view = f"{channels_view}x{row.view}x{row.view}" + (
            " (area, fused)" if row.fuse else " (full)"
        )
        lines.append(
            f"| 3x{row.resolution}x{row.resolution} | {view} "
            f"| {row.chunk} ({math.ceil(_W_DIM / row.chunk)}) | {row.timing.median:.2f} "
            f"| {row.timing.spread} | {row.timing.median / base:.2f} "
            f"| {row.floor.median:.2f} (measured) | {row.floor_seconds:.2f} (**extrapolated**) "
            f"| {row.timing.median / row.floor_seconds:.2f} | {row.field_bytes / 2**20:.0f} "
            f"| {_mib(row.peak)} |"
        )
    lines += [
        "",
        "Field is the computed size of the float32 Jacobian field `(d, C', h, w)` the Gram is "
        "formed from (not measured). Peak RSS growth is measured (see above). The chunk is "
        "what `chunk_size_for` picks from its measured calibration passes.",
    ]

    # Chunk table.
    per_direction = _ACTIVATION_FACTOR * activation_bytes(chunk_model)
    reference = chunk_timings[str(_CHUNKS[-1])].median
    lines += [
        "",
        f"### Chunk size (output 3x{_CHUNK_RESOLUTION}x{_CHUNK_RESOLUTION}, full view, "
        "`jacobian_gram(..., chunk_size=c)`)",
        "",
        f"| Chunk size | Chunks | Time (s) | Range (s) | Time / chunk {_CHUNKS[-1]} "
        "| Memory budget implied (MiB) | `chunk_size_for` at that budget "
        "| Peak RSS growth (MiB) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in _CHUNKS:
        t = chunk_timings[str(c)]
        budget = c * per_direction
        peak = peaks.get((_CHUNK_RESOLUTION, c, _CHUNK_RESOLUTION, 0), math.nan)
        lines.append(
            f"| {c} | {math.ceil(_W_DIM / c)} | {t.median:.2f} | {t.spread} "
            f"| {t.median / reference:.2f} | {budget / 2**20:.0f} "
            f"| {chunk_size_for(chunk_model, budget)} | {_mib(peak)} |"
        )
    lines += [
        "",
        f"The budget implied is what the old sizing rule needed to pick that chunk: chunk x "
        f"{_ACTIVATION_FACTOR} x the module outputs of one forward pass "
        f"({activation_bytes(chunk_model) / 2**20:.2f} MiB on this network, forward hooks); "
        f"the next column is what the calibrated `chunk_size_for` picks at that budget, from "
        f"measured passes. The default CPU budget "
        f"({jac.DEFAULT_CPU_BUDGET / 2**30:.0f} GiB) gives chunk {chunk_size_for(chunk_model)} "
        "here.",
    ]

    # Sketch table.
    assert exact_sketch_gram is not None
    exact = sketch_timings["exact"].median
    norm = torch.linalg.matrix_norm(exact_sketch_gram).item()
    top_headers = " | ".join(f"Largest angle, top {k} (deg)" for k in _TOPS)
    lines += [
        "",
        f"### Sketch mode (output 3x{sketch_resolution}x{sketch_resolution}, full view, "
        "centre box)",
        "",
        f"| Method | Time (s) | Range (s) | Speed-up over exact | {top_headers} "
        "| Relative Frobenius error |",
        "|---|---:|---:|---:|" + "---:|" * len(_TOPS) + "---:|",
        f"| exact `jacobian_gram` (d = {_W_DIM} forward products) | {exact:.2f} "
        f"| {sketch_timings['exact'].spread} | 1.00 | " + " | ".join("0" for _ in _TOPS) + " | 0 |",
    ]
    for k in _SKETCHES:
        t = sketch_timings[str(k)]
        approx = sketch_grams[k]
        angles = " | ".join(
            f"{_largest_angle(exact_sketch_gram, approx, top):.2f}" for top in _TOPS
        )
        error = torch.linalg.matrix_norm(approx - exact_sketch_gram).item() / norm
        lines.append(
            f"| `sketch_gram`, K = {k} ({k} forward + {k} reverse products) | {t.median:.2f} "
            f"| {t.spread} | {exact / t.median:.2f} | {angles} | {error:.3f} |"
        )
    lines += [
        "",
        f"Same network, w, mask, view and default chunk for all rows, timed in the same rounds "
        f"as the resolution table's {sketch_resolution} row (the exact time is that row's). "
        f"The sketch's test matrix has seed {_SEED}; accuracy is of that one draw. Angles: the "
        "largest principal angle between the spans of the top-k eigenvectors of the exact and "
        "the sketched Gram (`eigh`, float64); error: ||sketch - exact||_F / ||exact||_F.",
        "",
        f"Section measurements took {time.perf_counter() - section_start:.0f} s in all.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
