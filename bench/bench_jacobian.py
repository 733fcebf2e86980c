"""Benchmark of the Jacobian field and region Gram matrices in `lowrankgan.core.jacobian`.

`run()` times, on the same network, latent and mask, in one process:

- ours: `jacobian_gram` (forward mode, `vmap` over chunks of the identity, one Gram);
- `torch.func.jacfwd` of the image at the latent, plus the same Gram from its output;
- the forward floor: one batched forward pass of d latents under `torch.no_grad`;
- the authors' method: one reverse-mode pass per output value (TF's non-vectorised
  `jacobian`), timed on K single-value passes and extrapolated to every output value;
- three masks in one `jacobian_gram` call against one mask;
- `jacobian_field` at several chunk sizes (speed against memory).

Repeats are interleaved (every method once per round, in turn) so background load on a
noisy machine lands on all methods alike; times are medians over the rounds, after one
untimed warm-up round. It returns a Markdown section and writes no files.
"""

from __future__ import annotations

import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from lowrankgan.core import jacobian as jac
from lowrankgan.core.gram import jacobian_gram
from lowrankgan.core.jacobian import chunk_size_for, jacobian_field
from lowrankgan.models import Model, load_model
from measure import MALLOC_ENV, RSS_PRELUDE, Timing, overlap, rounds

_SEED = 0
_REPEATS = 5
_REPEATS_SECOND = 3
_REVERSE_PASSES = 64
_REVERSE_PASSES_QUICK = 8
_CHUNKS = (10, 25, 50, 100)
_TARGET_VS_JACFWD = 1.0
_TARGET_VS_FLOOR = 4.0
_TARGET_THREE_MASKS = 1.3
_TARGET_AGREEMENT = 1e-6

# Run in a fresh interpreter: the peak resident memory of one `jacobian_field` call, sampled
# every millisecond by a thread (torch releases the GIL inside its kernels), above the
# resident memory just before the call. glibc's malloc is given a fixed mmap threshold
# (`MALLOC_ENV`): by default the threshold grows after the first large free and later
# tensors are carved from the heap, which stays resident, so a call after the warm-up would
# show little or no growth whatever its real peak.
_PEAK_SCRIPT = (
    RSS_PRELUDE
    + """
import sys
from lowrankgan.core.jacobian import jacobian_field
from lowrankgan.models import load_model
model = load_model(sys.argv[1])
latent = model.sample_latent(0)
chunk = int(sys.argv[2])
jacobian_field(model, latent, chunk_size=chunk)
print(peak_growth(lambda: jacobian_field(model, latent, chunk_size=chunk)))
"""
)


def _jacfwd_gram(model: Model, latent: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The region Gram `(d, d)` float64 from `torch.func.jacfwd` of the image, written
    independently of `gram_from_field`: J is `(C, H, W, d)`, its rows inside the mask are
    stacked and multiplied in float64."""
    jacobian = torch.func.jacfwd(lambda z: model.synthesize(z)[0])(latent)
    rows = jacobian[:, mask.to(jacobian.device), :].reshape(-1, jacobian.shape[-1])
    rows = rows.to(torch.float64)
    return rows.T @ rows


def _floor_batch(model: Model, latent: torch.Tensor) -> torch.Tensor:
    """d latents `(d, d)`: the point moved by each unit vector (the content is irrelevant to
    the cost; the batch is what a forward-mode field pushes)."""
    eye = torch.eye(model.latent_dim, device=model.device, dtype=model.dtype)
    return latent.unsqueeze(0) + eye


def _reverse_passes(
    model: Model, latent: torch.Tensor, indices: torch.Tensor
) -> tuple[float, float, torch.Tensor]:
    """The authors' construction on `indices` of the flattened output: one forward pass with
    a graph, then one `torch.autograd.grad` per output value reusing that graph
    (`retain_graph=True`), as TF's non-vectorised `jacobian` loops over one graph.

    Returns (forward seconds, seconds of the len(indices) backward passes, rows (k, d))."""
    point = latent.detach().clone().requires_grad_(True)
    start = time.perf_counter()
    flat = model.synthesize(point).reshape(-1)
    forward = time.perf_counter() - start
    rows = []
    start = time.perf_counter()
    for index in indices.tolist():
        (grad,) = torch.autograd.grad(flat[index], point, retain_graph=True)
        rows.append(grad)
    backward = time.perf_counter() - start
    return forward, backward, torch.stack(rows)


@dataclass
class _Comparison:
    model: Model
    mask_name: str
    masks_names: tuple[str, ...]
    repeats: int
    passes: int
    timings: dict[str, Timing]
    reverse_forward: float
    reverse_backward: Timing
    gram_agreement: float
    stack_agreement: float
    reverse_agreement: float
    default_chunk: int

    @property
    def outputs(self) -> int:
        height, width = self.model.resolution
        return self.model.channels * height * width

    @property
    def authors_seconds(self) -> float:
        per_pass = self.reverse_backward.median / self.passes
        return self.reverse_forward + per_pass * self.outputs


def _compare(
    model: Model, mask_name: str, masks_names: tuple[str, ...], repeats: int, passes: int
) -> _Comparison:
    latent = model.sample_latent(_SEED)
    height, width = model.resolution
    mask = model.presets[mask_name].mask(height, width)
    stack = torch.stack([model.presets[name].mask(height, width) for name in masks_names])
    batch = _floor_batch(model, latent)

    def floor() -> torch.Tensor:
        with torch.no_grad():
            return model.synthesize(batch)

    outputs = model.channels * height * width
    indices = torch.linspace(0, outputs - 1, passes).round().long()
    backward = Timing()
    forward_times: list[float] = []
    reverse_rows: list[torch.Tensor] = []

    def reverse() -> None:
        fwd, bwd, rows = _reverse_passes(model, latent, indices)
        forward_times.append(fwd)
        backward.times.append(bwd)
        reverse_rows[:] = [rows]

    cases: dict[str, Callable[[], object]] = {
        "ours": lambda: jacobian_gram(model, latent, mask),
        "jacfwd": lambda: _jacfwd_gram(model, latent, mask),
        "floor": floor,
        "three": lambda: jacobian_gram(model, latent, stack),
        "reverse": reverse,
    }
    timings = rounds(cases, repeats)
    backward.times = backward.times[1:]  # drop the warm-up call
    forward_times = forward_times[1:]

    ours = jacobian_gram(model, latent, mask)
    reference = _jacfwd_gram(model, latent, mask)
    gram_agreement = ((ours - reference).abs().max() / reference.abs().max()).item()
    three = jacobian_gram(model, latent, stack)
    single = jacobian_gram(model, latent, stack[0])
    stack_agreement = ((three[0] - single).abs().max() / single.abs().max()).item()
    field_ = jacobian_field(model, latent).reshape(model.latent_dim, -1)
    expected = field_[:, indices].T
    reverse_agreement = (
        (reverse_rows[0] - expected).abs().max() / field_.abs().max().clamp(min=1e-30)
    ).item()
    return _Comparison(
        model=model,
        mask_name=mask_name,
        masks_names=masks_names,
        repeats=repeats,
        passes=passes,
        timings=timings,
        reverse_forward=statistics.median(forward_times),
        reverse_backward=backward,
        gram_agreement=gram_agreement,
        stack_agreement=stack_agreement,
        reverse_agreement=reverse_agreement,
        default_chunk=chunk_size_for(model),
    )


def _met(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def _comparison_markdown(c: _Comparison) -> list[str]:
    t = c.timings
    ours = t["ours"].median
    jacfwd, floor, three = t["jacfwd"].median, t["floor"].median, t["three"].median
    authors = c.authors_seconds
    per_pass = c.reverse_backward.median / c.passes
    height, width = c.model.resolution
    masks = ", ".join(c.masks_names)
    chunks = math.ceil(c.model.latent_dim / c.default_chunk)
    lines = [
        "| Computation | Time (s) | Range (s) | Time is | Time / (a) |",
        "|---|---:|---:|---|---:|",
        f"| (a) ours: `jacobian_gram`, {c.mask_name} mask (default chunk "
        f"{c.default_chunk}, {chunks} chunk{'s' if chunks > 1 else ''}) | {ours:.3f} "
        f"| {t['ours'].spread} | measured | 1.00 |",
        f"| (b) `torch.func.jacfwd` + the same Gram | {jacfwd:.3f} | {t['jacfwd'].spread} "
        f"| measured | {jacfwd / ours:.2f} |",
        f"| (c) forward floor: one no-grad forward of {c.model.latent_dim} latents "
        f"| {floor:.3f} | {t['floor'].spread} | measured | {floor / ours:.2f} |",
        f"| (d) ours, three masks ({masks}) in one call | {three:.3f} | {t['three'].spread} "
        f"| measured | {three / ours:.2f} |",
        f"| (e) authors: {c.passes} single-value reverse passes (+ 1 forward) "
        f"| {c.reverse_forward + c.reverse_backward.median:.3f} | {c.reverse_backward.spread} "
        f"| measured | {(c.reverse_forward + c.reverse_backward.median) / ours:.2f} |",
        f"| (e) authors: all {c.outputs} = {c.model.channels}x{height}x{width} reverse passes "
        f"| {authors:.1f} | - | **extrapolated** ({per_pass * 1e3:.2f} ms/pass) "
        f"| {authors / ours:.0f} |",
        "",
        "| Target | Value | Target | Status |",
        "|---|---:|---:|---|",
        f"| ours / jacfwd | {ours / jacfwd:.2f} | <= {_TARGET_VS_JACFWD:g} "
        f"| {_met(ours / jacfwd <= _TARGET_VS_JACFWD)}"
        f"{' (time ranges of (a) and (b) overlap)' if overlap(t['ours'], t['jacfwd']) else ''} |",
        f"| ours / forward floor | {ours / floor:.2f} | <= {_TARGET_VS_FLOOR:g} "
        f"| {_met(ours / floor <= _TARGET_VS_FLOOR)} |",
        f"| three masks / one mask | {three / ours:.2f} | <= {_TARGET_THREE_MASKS:g} "
        f"| {_met(three / ours <= _TARGET_THREE_MASKS)} |",
        f"| speed-up over the authors' method (extrapolated) | {authors / ours:.0f}x | - | - |",
        f"| max abs(Gram ours - Gram jacfwd) / max abs(Gram) | {c.gram_agreement:.1e} "
        f"| <= {_TARGET_AGREEMENT:g} | {_met(c.gram_agreement <= _TARGET_AGREEMENT)} |",
        f"| three-mask Gram vs one-mask Gram (same mask), relative | {c.stack_agreement:.1e} "
        f"| <= {_TARGET_AGREEMENT:g} | {_met(c.stack_agreement <= _TARGET_AGREEMENT)} |",
        f"| reverse-pass rows vs the field's rows, max abs diff / max abs(J) "
        f"| {c.reverse_agreement:.1e} | <= {_TARGET_AGREEMENT:g} "
        f"| {_met(c.reverse_agreement <= _TARGET_AGREEMENT)} |",
    ]
    return lines


def _peak_memory(model_name: str, chunk: int) -> float:
    """Measured peak RSS growth in bytes of one `jacobian_field` call (fresh interpreter),
    NaN if the measurement failed."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", _PEAK_SCRIPT, model_name, str(chunk)],
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
            env={**os.environ, **MALLOC_ENV},
        )
        return float(done.stdout.strip().splitlines()[-1])
    except (subprocess.SubprocessError, ValueError, IndexError, OSError):
        return math.nan


def _chunk_markdown(model: Model, repeats: int, measure_memory: bool) -> list[str]:
    latent = model.sample_latent(_SEED)
    sizes = [c for c in _CHUNKS if c <= model.latent_dim]
    cases: dict[str, Callable[[], object]] = {
        str(c): (lambda c=c: jacobian_field(model, latent, chunk_size=c)) for c in sizes
    }
    timings = rounds(cases, repeats)
    point = latent.reshape(1, -1)
    push = jac.batched_jvp(model, point)
    eye = torch.eye(model.latent_dim, device=model.device, dtype=model.dtype)
    with torch.no_grad():
        pass_peaks = {c: jac.peak_bytes(model.device, lambda c=c: push(eye[:c]))[0] for c in sizes}
    largest = timings[str(sizes[-1])].median
    header = "| Chunk size | Chunks | Time (s) | Range (s) | Time / chunk " + str(sizes[-1])
    header += " | Peak of one pass (MiB) | Memory budget implied (MiB) |"
    divider = "|---:|---:|---:|---:|---:|---:|---:|"
    if measure_memory:
        header += " Measured peak RSS growth (MiB) |"
        divider += "---:|"
    lines = [header, divider]
    for c in sizes:
        t = timings[str(c)]
        row = (
            f"| {c} | {math.ceil(model.latent_dim / c)} | {t.median:.3f} | {t.spread} "
            f"| {t.median / largest:.2f} | {pass_peaks[c] / 2**20:.0f} "
            f"| {pass_peaks[c] / jac.BUDGET_SHARE / 2**20:.0f} |"
        )
        if measure_memory:
            peak = _peak_memory(model.name, c)
            row += " - |" if math.isnan(peak) else f" {peak / 2**20:.0f} |"
        lines.append(row)
    lines += [
        "",
        "The peak of one pass is what `chunk_size_for` calibrates from: one batched pass of "
        "that many directions, measured as the library does it (`peak_bytes`: the peak "
        "resident set above the level before the pass, after `malloc_trim`, in this "
        "process); the budget implied is the smallest `memory_budget` whose share "
        f"({jac.BUDGET_SHARE:g}) it fits. The default CPU budget is "
        f"{jac.DEFAULT_CPU_BUDGET / 2**30:.0f} GiB, which gives chunk {chunk_size_for(model)}.",
    ]
    if measure_memory:
        lines[-1] += (
            " The measured column is the peak resident memory of one `jacobian_field` call "
            "above the resident memory just before it, in a fresh interpreter after a warm-up "
            "call, sampled every millisecond, with glibc's mmap threshold fixed at 128 KiB "
            "(`MALLOC_MMAP_THRESHOLD_=131072`, so freed tensors leave the resident set): a "
            "rough figure (a peak shorter than the sampling interval is missed), not an exact "
            "one."
        )
    return lines


def run(quick: bool = False) -> str:
    """Run the benchmark and return a Markdown section (`quick`: one repeat, 8 reverse
    passes, no second network, no memory measurement)."""
    repeats = 1 if quick else _REPEATS
    passes = _REVERSE_PASSES_QUICK if quick else _REVERSE_PASSES
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else math.nan
    faces = load_model("dcgan-faces")
    main = _compare(faces, "eyes", ("eyes", "mouth", "nose"), repeats, passes)
    lines = [
        "## Jacobian field and region Gram",
        "",
        f"`{faces.name}` ({faces.description}; d = {faces.latent_dim}, output "
        f"{faces.channels}x{faces.resolution[0]}x{faces.resolution[1]}), seed {_SEED}. Times "
        f"are medians of {repeats} interleaved round{'s' if repeats > 1 else ''} (each method "
        "once per round, in turn) after one untimed warm-up round (time.perf_counter; torch "
        f"{torch.get_num_threads()} threads; 1-minute load average {load:.2f} at start). "
        "(b) is `torch.func.jacfwd(lambda z: model.synthesize(z)[0])` plus the Gram of the "
        "mask's rows in float64, written independently of `gram_from_field`. "
        f"(e) is the authors' construction (TF's non-vectorised reverse-mode `jacobian`): one "
        f"forward pass with a graph, then one `torch.autograd.grad` of a single output value "
        f"per pass, reusing that graph with `retain_graph=True`; {passes} passes at output "
        "values spread evenly over the image are timed and the full Jacobian is **extrapolated "
        "linearly** (forward + passes x time per pass), not measured.",
        "",
        *_comparison_markdown(main),
        "",
        f"### Chunk size ({faces.name}, `jacobian_field`, field only)",
        "",
        *_chunk_markdown(faces, repeats, measure_memory=not quick),
    ]
    if quick:
        lines += ["", "Second network (`omniart-eyes`): skipped in the quick run."]
    else:
        try:
            eyes = load_model("omniart-eyes")
        except Exception as exc:  # weights not installed: say so, keep the section
            lines += ["", f"Second network (`omniart-eyes`): not run ({exc})."]
        else:
            start = time.perf_counter()
            second = _compare(eyes, "iris", ("iris", "lids", "eye"), _REPEATS_SECOND, passes)
            cost = time.perf_counter() - start
            cls = eyes.class_names[eyes.condition or 0] if eyes.class_names else "-"
            lines += [
                "",
                f"### Second network: `{eyes.name}`",
                "",
                f"{eyes.description}; d = {eyes.latent_dim}, output "
                f"{eyes.channels}x{eyes.resolution[0]}x{eyes.resolution[1]}, class {cls!r}, "
                f"seed {_SEED}, iris mask. Same methods, {_REPEATS_SECOND} interleaved rounds "
                f"after a warm-up round; this comparison took {cost:.0f} s.",
                "",
                *_comparison_markdown(second),
            ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
