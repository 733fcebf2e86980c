"""Honest memory sizing: Jacobian chunks come from measured passes (`ChunkProfile`), a CPU
run stays within its `--memory-budget`, sketch mode sizes its reverse passes too, and sizing
never changes the numbers."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from lowrankgan import load_model
from lowrankgan.core import jacobian as jac
from lowrankgan.core.gram import sketch_gram
from lowrankgan.core.jacobian import ChunkProfile, chunk_profile, chunk_size_for, jacobian_field

MIB = 1 << 20
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def faces():
    return load_model("dcgan-faces")


def forget(model) -> None:
    """Drop the cached calibrations of `model`'s network."""
    jac._PROFILES.pop(model.network, None)


# -- the sizing rule, on a synthetic memory model ----------------------------------------------


def fake_peaks(monkeypatch, peak_of) -> list[int]:
    """Make every measured pass of k report `peak_of(k)` bytes; returns the sizes measured."""
    measured: list[int] = []

    def peak_bytes(device, fn):
        out = fn()
        if out is not None:
            measured.append(int(out.shape[0]))
        return (0 if out is None else int(peak_of(out.shape[0]))), "fake", out

    monkeypatch.setattr(jac, "peak_bytes", peak_bytes)
    return measured


def runner(limit: int):
    def run(k: int) -> torch.Tensor:
        return torch.zeros(min(k, limit), 1)

    return run


@pytest.mark.parametrize(
    ("base", "per", "target", "efficient"),
    [
        (20e6, 2.6e6, 54e6, True),
        (20e6, 2.6e6, 870e6, True),
        (0.0, 1e6, 30e6, True),
        # a constant part near the target: a safe bound cannot tell 3 from 100 directions
        (100e6, 1e6, 130e6, False),
    ],
)
def test_chunk_fits_its_target_and_is_near_the_best(monkeypatch, base, per, target, efficient):
    # The shape measured on dcgan-faces: a constant part that the per-direction part
    # overtakes (not added to it), which a line through 2 and 4 directions misses entirely.
    def peak(k: int) -> float:
        return max(base, per * k)

    measured = fake_peaks(monkeypatch, peak)
    profile = ChunkProfile("forward")
    chunk = profile.calibrate(runner(100), torch.device("cpu"), target, 100)
    best = max(k for k in range(1, 101) if peak(k) <= target)
    assert 1 <= chunk <= best
    assert peak(chunk) <= target
    if efficient:
        assert chunk >= 0.75 * best, (chunk, best, measured)
    assert all(peak(k) <= target for k in measured), measured  # the probes stay within it
    assert len(measured) <= 3 + jac._MAX_SIZING_PASSES  # warm-up, 2, 4, sizing passes


def test_a_line_through_small_passes_would_overshoot(monkeypatch):
    """Why chunks are not `(budget - base) / per` from passes of 2 and 4: here both cost
    the constant part, the line's slope is zero and it would pick the largest chunk."""
    fake_peaks(monkeypatch, lambda k: max(20e6, 2.6e6 * k))
    profile = ChunkProfile("forward")
    for k in (2, 4):
        profile.points[k] = int(max(20e6, 2.6e6 * k))
    base, per = profile.fit()
    assert per == 0.0  # the naive rule: unbounded
    chunk = profile.calibrate(runner(100), torch.device("cpu"), 54e6, 100)
    assert 2.6e6 * chunk <= 54e6


def test_a_pass_over_the_target_shrinks_the_chunk(monkeypatch):
    # An allocator that turns out worse than the bound above 30 directions.
    measured = fake_peaks(monkeypatch, lambda k: 20e6 + 1e6 * k if k <= 30 else 3e6 * k)
    profile = ChunkProfile("forward")
    chunk = profile.calibrate(runner(100), torch.device("cpu"), 80e6, 100)
    assert chunk <= 30 and 20e6 + 1e6 * chunk <= 80e6, (chunk, measured)


def test_a_budget_below_one_direction_gives_one(monkeypatch):
    measured = fake_peaks(monkeypatch, lambda k: 20e6 + 1e6 * k)
    profile = ChunkProfile("forward")
    assert profile.calibrate(runner(100), torch.device("cpu"), 1.0, 100) == 1
    assert measured == [1]  # the warm-up pass alone is over the target: no further passes


def test_a_warm_up_within_the_target_is_not_a_point(monkeypatch):
    """The first pass carries one-time costs: it sizes nothing unless it is already over."""
    fake_peaks(monkeypatch, lambda k: 30e6 if k == 1 else 1e6 * k)
    profile = ChunkProfile("forward")
    chunk = profile.calibrate(runner(100), torch.device("cpu"), 40e6, 100)
    assert 1 not in profile.points and 30 <= chunk <= 40


# -- on a real network -----------------------------------------------------------------------


def test_calibrated_chunks_are_positive_and_shrink_with_the_budget(faces):
    forget(faces)
    budgets = [1 << 30, 128 * MIB, 64 * MIB, 24 * MIB, 1]
    profile = chunk_profile(faces)
    chunks = []
    for budget in budgets:
        chunks.append(chunk_size_for(faces, budget))
        # it rests on a measurement near it, or is far below the budget, or is 1
        target = budget * jac.BUDGET_SHARE
        assert profile.settled(chunks[-1], target) or chunks[-1] == 1
    assert chunks[0] == faces.latent_dim  # 1 GiB: one chunk
    assert chunks[-1] == 1
    assert all(c >= 1 for c in chunks)
    assert chunks == sorted(chunks, reverse=True), chunks
    assert chunks[2] < faces.latent_dim  # 64 MiB forces several chunks
    assert profile.method == "vmhwm" or sys.platform != "linux"


def test_calibration_is_cached_per_network_and_view(faces):
    chunk_size_for(faces, 64 * MIB)
    profile = chunk_profile(faces)
    points = dict(profile.points)
    assert chunk_size_for(faces, 64 * MIB) >= 1
    assert profile.points == points  # nothing measured again
    assert chunk_profile(faces) is profile
    assert chunk_profile(faces, size=(32, 32)) is not profile
    assert chunk_profile(faces, fuse_channels=True) is not profile
    assert chunk_profile(faces, mode="reverse") is not profile
    assert chunk_profile(faces, size=(64, 64)) is profile  # the output size: no resizing


def test_budget_sized_field_equals_the_single_chunk_field(faces, monkeypatch):
    latent = faces.sample_latent(3)
    whole = jacobian_field(faces, latent, chunk_size=faces.latent_dim)
    forget(faces)
    pushed: list[int] = []
    original = jac.batched_jvp

    def counting(*args, **kwargs):
        push = original(*args, **kwargs)

        def wrapped(directions: torch.Tensor) -> torch.Tensor:
            pushed.append(directions.shape[0])
            return push(directions)

        return wrapped

    monkeypatch.setattr(jac, "batched_jvp", counting)
    sized = jacobian_field(faces, latent, memory_budget=40 * MIB)
    step = jac.chunk_size_for(faces, 40 * MIB)  # cached now: no pass
    assert 1 <= step < faces.latent_dim
    # calibration passes are thrown away: every row comes from a chunk of one size, so the
    # field is the same whether or not the process had calibrated before
    rows = [step] * (faces.latent_dim // step) + [faces.latent_dim % step] * bool(
        faces.latent_dim % step
    )
    assert pushed[-len(rows) :] == rows and len(pushed) > len(rows), pushed
    assert torch.equal(sized, jacobian_field(faces, latent, chunk_size=step))
    torch.testing.assert_close(sized, whole, rtol=1e-6, atol=1e-9)
    again = jacobian_field(faces, latent, memory_budget=40 * MIB)  # sized from the cache
    torch.testing.assert_close(again, whole, rtol=1e-6, atol=1e-9)


def test_chunk_size_override_skips_the_calibration(faces, monkeypatch):
    forget(faces)

    def refuse(*args, **kwargs):
        raise AssertionError("measured although chunk_size was given")

    monkeypatch.setattr(jac, "peak_bytes", refuse)
    field = jacobian_field(faces, faces.sample_latent(0), chunk_size=30, memory_budget=1)
    assert field.shape[0] == faces.latent_dim
    assert not chunk_profile(faces).points


def test_sketch_sizes_its_reverse_passes_from_their_own_calibration(faces):
    forget(faces)
    latent = faces.sample_latent(0)
    eyes = faces.presets["eyes"].mask(64, 64)
    masks = torch.stack([eyes, ~eyes])
    big = sketch_gram(faces, latent, masks, 20, chunk_size=faces.latent_dim)
    small = sketch_gram(faces, latent, masks, 20, memory_budget=48 * MIB)
    reverse = chunk_profile(faces, mode="reverse")
    assert reverse.points and chunk_profile(faces).points
    assert reverse.points != chunk_profile(faces).points
    reverse_chunk = chunk_size_for(faces, 48 * MIB, mode="reverse", count=40)
    assert 1 <= reverse_chunk < 40  # several reverse batches at this budget
    assert reverse.bound(reverse_chunk) <= 48 * MIB * jac.BUDGET_SHARE
    torch.testing.assert_close(small, big, rtol=1e-6, atol=1e-9 * big.abs().max().item())


# -- the whole process, in a subprocess ------------------------------------------------------

_DRIVER = textwrap.dedent(
    """
    import json, sys
    import torch
    from lowrankgan import load_model
    from lowrankgan.core import jacobian as jac
    from lowrankgan.pipeline.analysis import analyze

    def status(key):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024

    budget = int(float(sys.argv[1]) * 2**20)  # what --memory-budget MiB gives
    model = load_model("dcgan-faces")
    latent = model.sample_latent(0)
    # The first forward-mode pass of a process pays one-time costs that are not a chunk's
    # (torch's kernel and dispatch caches, about 85 MB resident, whatever the chunk): paid
    # here, on another latent, before the baseline.
    other = model.sample_latent(1).reshape(1, -1)
    torch.func.jvp(model.synthesize, (other,), (torch.ones_like(other),))
    baseline = status("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # VmHWM := VmRSS
    analyze(model, latent, "eyes", memory_budget=budget)
    peak = status("VmHWM")
    chunk = jac.chunk_size_for(model, budget)
    print(json.dumps({"growth": peak - baseline, "budget": budget, "chunk": chunk}))
    """
)


def _can_reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
        return True
    except OSError:
        return False


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or not _can_reset_peak_rss(),
    reason="needs Linux /proc/self/clear_refs to read the peak resident set",
)
def test_cpu_analysis_stays_within_its_memory_budget():
    budget_mib = 64
    done = subprocess.run(
        [sys.executable, "-c", _DRIVER, str(budget_mib)],
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    # several chunks at this budget, or the test would not test the sizing
    assert math.ceil(100 / result["chunk"]) >= 3, result
    assert result["growth"] <= 1.2 * result["budget"], (
        f"peak RSS grew {result['growth'] / MIB:.1f} MiB for a {budget_mib} MiB budget "
        f"(chunk {result['chunk']})"
    )


def test_path_gradient_is_computed_in_float64_blocks(monkeypatch):
    from lowrankgan.pipeline import path

    gen = torch.Generator().manual_seed(5)
    field = torch.randn(30, 3, 16, 16, generator=gen)
    residual = torch.randn(3, 16, 16, generator=gen)
    whole = torch.einsum("dchw,chw->d", field.double(), residual.double())
    assert torch.equal(path._field_gradient(field, residual), whole)  # one block
    monkeypatch.setattr(path, "_GRADIENT_BLOCK_BYTES", 8 * 3 * 16 * 16 * 4)  # 4 rows
    converted = []
    original = torch.Tensor.double

    def spy(self):
        converted.append(self.shape[0])
        return original(self)

    monkeypatch.setattr(torch.Tensor, "double", spy)
    blocked = path._field_gradient(field, residual)
    monkeypatch.undo()
    assert max(converted) <= 4 and sum(c for c in converted if c != 3) == 30, converted
    torch.testing.assert_close(blocked, whole, rtol=1e-13, atol=1e-12)


def test_a_reused_heap_raises_the_thresholds_once_and_settles_them_after(monkeypatch):
    """Nested blocks set glibc's thresholds once; the outermost exit settles them where
    glibc's moving ones end and trims the heap (the speed is measured in make bench)."""
    calls: list[tuple] = []
    functions = {
        "mallopt": lambda option, value: calls.append(("mallopt", option, value)) or 1,
        "malloc_trim": lambda pad: calls.append(("trim", pad)) or 1,
    }
    monkeypatch.setattr(jac, "_libc_function", functions.get)
    with jac.reused_heap():
        with jac.reused_heap():
            pass
        assert calls == [("mallopt", -3, 1 << 30), ("mallopt", -1, (1 << 31) - 1)]
    assert calls[2:] == [("mallopt", -3, 32 << 20), ("mallopt", -1, 64 << 20), ("trim", 0)]
    monkeypatch.setattr(jac, "_libc_function", lambda name: None)
    with jac.reused_heap():  # no glibc: nothing to do
        pass
