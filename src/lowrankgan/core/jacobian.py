"""Jacobian fields of a generator and the Gram matrices of image regions.

The Jacobian `J = dG(x)/dx` of a generator at a latent `x` has one column per latent direction
and one row per output value. LowRankGAN needs, for a region `R`, the Gram matrix
`J_R^T J_R` (d x d). We compute `J` in forward mode: d Jacobian-vector products, batched with
`torch.func.vmap` over chunks of the identity sized to a memory budget, instead of one
reverse pass per output value. The result is a *Jacobian field* `(d, C', h, w)`: the
derivative of every analysis pixel along every latent axis. One field serves every region of
the same image: each Gram is a weighted product of the field's columns, accumulated in
float64.

The analysis view of an image may be smaller than the output (area downsampling, the paper
uses 256 for 1024 images) and may fuse the colour channels into their mean; both are linear,
so they are applied to the tangents directly. Masks are downsampled by area too, so a pixel
half inside a region counts half.

Chunks are sized from measurements, not estimates (counting module outputs through hooks
misses the internals of a layer: on a config-F StyleGAN2 it sees about a tenth of the real
peak). The first time a network is differentiated in a view, real batched passes are run
and their peak memory measured (`torch.cuda.max_memory_allocated` on CUDA; on the CPU the
process's peak resident set, Linux `VmHWM` reset through `/proc/self/clear_refs`, after
`malloc_trim`), until the chunk that fits the budget rests on a measurement (`ChunkProfile`);
`jacobian_field` keeps what those passes compute as rows of the field, so they cost no
extra work. Every computation here runs inside `exact_math()` (no TF32).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import math
import sys
import threading
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from lowrankgan.core.linearize import TangentProgram, UntraceableError
from lowrankgan.core.precision import exact_math
from lowrankgan.models.base import Model

DEFAULT_CPU_BUDGET = 1 << 30  # bytes
CPU_CHUNK_CAP = 128
# Chunks are sized so that their measured (or bounded) peak is this share of the budget; the
# rest absorbs what differs between passes (allocator state, other threads).
BUDGET_SHARE = 0.85
# A chunk whose bound is within this share of the target needs no measurement of its own.
_AMPLE = 0.5
# A chunk this close below a measured pass is covered by that measurement.
_NEAR = 0.8
# Calibration: first passes of 1 (warm-up, unmeasured), 2 and 4, then at most this many at
# the chunk the measurements so far allow.
_CALIBRATION_SIZES = (2, 4)
_MAX_SIZING_PASSES = 4


def analysis_view(
    images: torch.Tensor, size: tuple[int, int] | None = None, fuse_channels: bool = False
) -> torch.Tensor:
    """What the analysis sees of images: `(B, C, H, W)` -> `(B, C', h, w)`.

    Area downsampling to `size` (h, w) (no-op when `None` or equal), then the mean over
    channels when `fuse_channels` (C' = 1).
    """
    if size is not None and tuple(images.shape[-2:]) != tuple(size):
        images = F.interpolate(images, size=size, mode="area")
    if fuse_channels:
        images = images.mean(dim=1, keepdim=True)
    return images


def default_memory_budget(device: torch.device) -> int:
    """Half the free accelerator memory, or 1 GiB on the CPU."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free * 0.5)
    return DEFAULT_CPU_BUDGET


def view_function(
    model: Model, size: tuple[int, int] | None = None, fuse_channels: bool = False
) -> Callable[[torch.Tensor], torch.Tensor]:
    """`z (1, d) -> (C', h, w)`: the analysis view of the image of one latent."""

    def view(z: torch.Tensor) -> torch.Tensor:
        return analysis_view(model.synthesize(z), size, fuse_channels)[0]

    return view


def _point(model: Model, latent: torch.Tensor | None) -> torch.Tensor:
    if latent is None:
        return torch.zeros(1, model.latent_dim, device=model.device, dtype=model.dtype)
    return latent.detach().reshape(1, model.latent_dim).to(device=model.device, dtype=model.dtype)


def batched_jvp(
    model: Model,
    point: torch.Tensor,
    size: tuple[int, int] | None = None,
    fuse_channels: bool = False,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """`(k, d)` tangents -> `(k, C', h, w)`: forward-mode products of the view at `point`."""
    view = view_function(model, size, fuse_channels)

    def push(tangent: torch.Tensor) -> torch.Tensor:
        return torch.func.jvp(view, (point,), (tangent.unsqueeze(0),))[1]

    mapped = torch.func.vmap(push)

    def batched(tangents: torch.Tensor) -> torch.Tensor:
        # one tangent without vmap: networks keep their fastest layouts (openvino ops)
        return push(tangents[0]).unsqueeze(0) if tangents.shape[0] == 1 else mapped(tangents)

    return batched


# ---------------------------------------------------------------------------------------------
# Memory calibration


@dataclass
class ChunkProfile:
    """Measured peak memory of batched passes of one network in one analysis view.

    `points` maps k (directions, or cotangents in reverse mode) to the peak bytes of one pass
    above the memory in use before it, measured by `method` ("cuda-peak", "vmhwm",
    "maxrss", "mps-driver"). A pass's live memory at any moment is `a_t + b_t k` with
    `a_t, b_t >= 0` (buffers that do not scale with k, and those that do), so its peak is a
    convex, non-decreasing function of k with `peak(k) / k` non-increasing: beyond the
    largest measured k, `peak(k) <= peak(K) k / K`; between two measured k, below the chord;
    below the smallest, below its peak. `bound` is that bound; a straight line through two
    small passes (`fit`) would underestimate large chunks whenever a constant part (weights
    reordered per call, workspaces) dominates small ones, as it does on dcgan-faces (about
    20 MB for 2 and for 4 directions, 2.6 MB a direction from 24 on).

    Allocators follow that model only roughly (glibc's moving mmap threshold sends a
    tensor to the heap or to its own mapping depending on what was freed before; measured
    on dcgan-faces: 87 MB for 48 directions, 132-149 MB for 54), so a chunk is only used
    once it is `settled`: a pass at least `_NEAR` of its size was measured, or its bound is
    within `_AMPLE` of the target.
    """

    mode: str
    method: str = ""
    points: dict[int, int] = field(default_factory=dict)
    warmed: bool = False
    #: chunks already decided, by (target bytes, limit): later fields (a path's steps, every
    #: image of an evaluation) reuse them without building probes or trimming the heap
    decided: dict[tuple[float, int], int] = field(default_factory=dict)

    def bound(self, k: int) -> float:
        """Upper bound on the peak bytes of a pass of `k`, from the measured points."""
        ks = sorted(self.points)
        if not ks:
            return math.inf
        # Non-decreasing by construction: a noisy smaller reading never lowers the bound.
        peaks, highest = [], 0
        for key in ks:
            highest = max(highest, self.points[key])
            peaks.append(highest)
        if k >= ks[-1]:
            return peaks[-1] * k / ks[-1]
        if k <= ks[0]:
            return float(peaks[0])
        for i in range(len(ks) - 1):
            if ks[i] <= k <= ks[i + 1]:
                k0, k1, p0, p1 = ks[i], ks[i + 1], peaks[i], peaks[i + 1]
                return p0 + (p1 - p0) * (k - k0) / (k1 - k0)
        return float(peaks[-1])  # not reached: k lies between two measured sizes

    def chunk(self, target: float, limit: int) -> int:
        """The largest k in `1..limit` whose bound is within `target` bytes (at least 1)."""
        low, high = 1, max(1, limit)
        if self.bound(high) <= target:
            return high
        while low < high:  # bound is non-decreasing in k
            middle = (low + high + 1) // 2
            if self.bound(middle) <= target:
                low = middle
            else:
                high = middle - 1
        return low

    def fit(self) -> tuple[float, float]:
        """`(base, per_direction)` bytes of the line through the two largest measured passes,
        clamped at zero: for reports; `bound` is what sizes chunks."""
        ks = sorted(self.points)
        if not ks:
            return math.nan, math.nan
        if len(ks) == 1:
            return 0.0, self.points[ks[0]] / ks[0]
        k0, k1 = ks[-2], ks[-1]
        per = max(0.0, (self.points[k1] - self.points[k0]) / (k1 - k0))
        return max(0.0, self.points[k1] - per * k1), per

    def settled(self, k: int, target: float) -> bool:
        """Whether a chunk of `k` is known to fit `target` bytes: its bound fits and is within
        `_AMPLE` of it, or rests on a pass measured near k (`_NEAR k` to `k / _NEAR`)."""
        bound = self.bound(k)
        if bound > target:
            return False
        return bound <= _AMPLE * target or any(_NEAR * k <= m <= k / _NEAR for m in self.points)

    def calibrate(
        self,
        run: Callable[[int], torch.Tensor | None],
        device: torch.device,
        target: float,
        limit: int,
    ) -> int:
        """The chunk for `target` bytes (1..`limit`), measuring passes `run(k)` until it is
        `settled`. `run(k)` does a real pass of up to k (it may do fewer, or return None
        when it has nothing left to do, which ends the measuring)."""
        if limit <= 1:
            return 1
        if not self.warmed:
            # The first pass of a network pays one-time costs (kernel caches, lazily built
            # dispatch tables: about 85 MB resident on dcgan-faces), not a chunk's: kept as
            # a point only when it is over the target even so, which settles the chunk at 1
            # without more passes (a 1024-px network on a CPU: 5-10 s a pass).
            peak, method, out = peak_bytes(device, lambda: run(1))
            if out is None:
                return self.safe_chunk(target, limit)
            self.warmed = True
            if peak > target:
                self.points[int(out.shape[0])], self.method = peak, method
                return 1
        for k in _CALIBRATION_SIZES:
            if k > limit or k in self.points:
                continue
            if self.points and self.bound(k) > target:
                break
            if not self._measure(run, device, k):
                return self.safe_chunk(target, limit)
        for _ in range(_MAX_SIZING_PASSES):
            chunk = self.chunk(target, limit)
            if chunk <= 1 or self.settled(chunk, target):
                break  # (1 is the answer whatever a pass of 1 would measure)
            # Probe a little below the candidate: a real pass can exceed the bound (by 17%
            # measured on dcgan-faces), and the probe should stay within the budget itself.
            probe = max(1, math.ceil(_NEAR * chunk))
            if probe in self.points or not self._measure(run, device, probe):
                break
        return self.safe_chunk(target, limit)

    def safe_chunk(self, target: float, limit: int) -> int:
        """`chunk` when settled, else the largest measured pass within `target` (else 1)."""
        chunk = self.chunk(target, limit)
        if self.settled(chunk, target):
            return chunk
        fits = [k for k, peak in self.points.items() if peak <= target and k <= limit]
        return max(fits, default=1)

    def _measure(
        self, run: Callable[[int], torch.Tensor | None], device: torch.device, k: int
    ) -> bool:
        peak, method, out = peak_bytes(device, lambda: run(k))
        if out is None:
            return False
        done = int(out.shape[0])
        self.points[done] = max(peak, self.points.get(done, 0))
        self.method = method
        return True


_PROFILES: weakref.WeakKeyDictionary[nn.Module, dict[tuple, ChunkProfile]] = (
    weakref.WeakKeyDictionary()
)
# One calibration at a time: the CPU measurement is of the whole process.
_CALIBRATION_LOCK = threading.RLock()


def chunk_profile(
    model: Model,
    size: tuple[int, int] | None = None,
    fuse_channels: bool = False,
    mode: str = "forward",
) -> ChunkProfile:
    """The cached `ChunkProfile` of `model`'s network in this view and mode ("forward": JVPs,
    "reverse": VJPs), empty until a calibration measures it. Kept as long as the network
    lives (a weak reference), per device, dtype, space and latent size."""
    if mode not in ("forward", "reverse"):
        raise ValueError(f"mode must be 'forward' or 'reverse', got {mode!r}")
    if size is not None and tuple(size) == tuple(model.resolution):
        size = None
    key = (
        mode,
        None if size is None else tuple(size),
        bool(fuse_channels),
        str(model.device),
        model.dtype,
        model.space,
        model.latent_dim,
    )
    with _CALIBRATION_LOCK:
        per_network = _PROFILES.setdefault(model.network, {})
        return per_network.setdefault(key, ChunkProfile(mode))


def chunk_size_for(
    model: Model,
    memory_budget: int | None = None,
    *,
    size: tuple[int, int] | None = None,
    fuse_channels: bool = False,
    mode: str = "forward",
    latent: torch.Tensor | None = None,
    count: int | None = None,
) -> int:
    """How many directions (or, `mode="reverse"`, cotangents) to push at once within
    `memory_budget` bytes, from measured passes (`ChunkProfile`; calibrated on the first
    call for a network and view, cached after).

    The budget covers one chunk's activations, tangents and temporaries, not the Jacobian
    field the chunks fill (`d x C' x h x w` values, which must exist anyway). The chunk is the
    largest whose measured bound is within `BUDGET_SHARE` of the budget, at most `count`
    (default d); on the CPU also at most `CPU_CHUNK_CAP`: larger batches only fall out of
    cache (measured 1.8x slower at 512 than at 32-128 on a StyleGAN2, docs/benchmarks.md).
    `latent` is where the calibration passes run (default the zero latent; memory does not
    depend on it).
    """
    target = _target(model, memory_budget)
    limit = _limit(model, model.latent_dim if count is None else count)
    if limit == 1:
        return 1
    profile = chunk_profile(model, size, fuse_channels, mode)
    decided = profile.decided.get((target, limit))
    if decided is not None:
        return decided
    point = _point(model, latent)
    if mode == "forward":
        push = batched_jvp(model, point, size, fuse_channels)
        eye = torch.eye(limit, model.latent_dim, device=model.device, dtype=model.dtype)

        def run(k: int) -> torch.Tensor:
            with torch.no_grad():
                return push(eye[:k])

    else:
        view = view_function(model, size, fuse_channels)

        def run(k: int) -> torch.Tensor:
            # The graph is built inside the measured pass: it is part of a reverse batch's
            # cost (sketch_gram builds it once and keeps it while the batches run).
            with torch.enable_grad():
                out, pull = torch.func.vjp(view, point)
            cotangents = torch.ones(k, *out.shape, device=out.device, dtype=out.dtype)
            if k == 1:  # as sketch_gram pulls a chunk of one: without vmap
                return pull(cotangents[0])[0]
            return torch.func.vmap(lambda c: pull(c)[0][0])(cotangents)

    with exact_math(), _CALIBRATION_LOCK:
        chunk = int(profile.calibrate(run, model.device, target, limit))
        profile.decided[(target, limit)] = chunk
    if model.device.type == "cpu":
        trim_heap()  # what the calibration passes freed
    return chunk


def _target(model: Model, memory_budget: int | None) -> float:
    """Bytes a chunk's measured peak may reach: `BUDGET_SHARE` of the budget."""
    budget = memory_budget if memory_budget is not None else default_memory_budget(model.device)
    return budget * BUDGET_SHARE


def _limit(model: Model, count: int) -> int:
    """The largest chunk of `count` rows: all of them, at most `CPU_CHUNK_CAP` on the CPU."""
    if model.device.type == "cpu":
        count = min(count, CPU_CHUNK_CAP)
    return max(1, count)


def peak_bytes(
    device: torch.device, fn: Callable[[], torch.Tensor | None]
) -> tuple[int, str, torch.Tensor | None]:
    """`(peak bytes of fn() above the memory in use before it, how it was measured, fn()'s
    result)`.

    CUDA: the caching allocator's peak (`reset_peak_memory_stats`, so it resets that
    device's peak statistics). CPU on Linux: the peak resident set (`VmHWM`, reset by
    writing 5 to `/proc/self/clear_refs`) after `malloc_trim` returned the heap's free pages,
    so reused free memory counts as it would in a fresh process; the whole process is
    measured, other threads included (which only makes chunks smaller). Elsewhere the
    process's maximum resident set, which moves only past its earlier maximum: a lower
    bound. At least the bytes of fn()'s result.
    """
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        out = fn()
        torch.cuda.synchronize(device)
        peak, method = torch.cuda.max_memory_allocated(device) - before, "cuda-peak"
    elif device.type == "mps":
        torch.mps.synchronize()
        torch.mps.empty_cache()
        before = torch.mps.driver_allocated_memory()
        out = fn()
        torch.mps.synchronize()
        peak, method = torch.mps.driver_allocated_memory() - before, "mps-driver"
    else:
        trim_heap()
        before = _proc_status_bytes("VmRSS")
        if before is not None and _reset_peak_rss():
            out = fn()
            after = _proc_status_bytes("VmHWM")
            peak, method = (after or before) - before, "vmhwm"
        else:
            before = _max_rss()
            out = fn()
            peak, method = _max_rss() - before, "maxrss"
    return max(int(peak), _tensor_bytes(out)), method, out


def _tensor_bytes(out: object) -> int:
    if isinstance(out, torch.Tensor):
        return out.numel() * out.element_size()
    return 0


def _proc_status_bytes(key: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as refs:
            refs.write("5")
        return True
    except OSError:
        return False


def _max_rss() -> int:
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


_LIBC: dict[str, object] = {}


def _libc_function(name: str) -> object:
    """glibc's `name`, or None elsewhere."""
    if name not in _LIBC:
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            _LIBC[name] = getattr(libc, name, None)
        except OSError:
            _LIBC[name] = None
    return _LIBC[name]


def trim_heap() -> None:
    """Give glibc's free heap pages back to the system (no-op elsewhere)."""
    trim = _libc_function("malloc_trim")
    if trim is not None:
        trim(0)  # type: ignore[operator]


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
#: glibc's ceiling for its moving mmap threshold on 64-bit systems, and its trim threshold
#: there (twice that): where a long-running process's allocator settles.
_GLIBC_MMAP_CEILING = 32 << 20
_HEAP_BLOCKS = 1 << 30
_INT_MAX = (1 << 31) - 1  # mallopt takes a C int
_heap_lock = threading.Lock()
_heap_depth = 0


@contextlib.contextmanager
def reused_heap() -> Iterator[None]:
    """Inside the block, blocks up to 1 GiB come from glibc's heap and are reused from one
    product to the next, instead of fresh mappings whose pages fault in again on every
    product (8 tangents of the 1024-px MobileStyleGAN on 2 cores: 14.5 s -> 8 s). After the
    outermost block the thresholds settle where glibc's moving ones end and the heap is
    trimmed. A no-op off glibc."""
    global _heap_depth
    mallopt = _libc_function("mallopt")
    with _heap_lock:
        if mallopt is not None and _heap_depth == 0:
            mallopt(_M_MMAP_THRESHOLD, _HEAP_BLOCKS)  # type: ignore[operator]
            mallopt(_M_TRIM_THRESHOLD, _INT_MAX)  # type: ignore[operator]
        _heap_depth += 1
    try:
        yield
    finally:
        with _heap_lock:
            _heap_depth -= 1
            if mallopt is not None and _heap_depth == 0:
                mallopt(_M_MMAP_THRESHOLD, _GLIBC_MMAP_CEILING)  # type: ignore[operator]
                mallopt(_M_TRIM_THRESHOLD, 2 * _GLIBC_MMAP_CEILING)  # type: ignore[operator]
                trim_heap()


# ---------------------------------------------------------------------------------------------

# A tangent program costs a trace once per model and view (13.6 s on the 1024-px
# MobileStyleGAN on 2 cores) and then about a forward pass per point; a product then costs
# 0.9 s against 4.8 s eagerly: worth it from this many products at a point.
_LINEARIZE_FROM = 6
_PROGRAMS: dict[int, dict[tuple, TangentProgram | None]] = {}
_PROGRAMS_LOCK = threading.Lock()


def linearized_view(
    model: Model,
    point: torch.Tensor,
    size: tuple[int, int] | None = None,
    fuse_channels: bool = False,
) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """`(d,)` tangent -> `(C', h, w)`: the view's forward-mode product at `point` from the
    model's `TangentProgram` (traced on first use, kept while the model lives): the point's
    own operations run once, each product only the tangent's, the same values as
    `batched_jvp` on one tangent. None when the network cannot be traced (Python control flow
    on tensor values): then `batched_jvp`.

    It keeps the point's activations, as a reverse pass keeps its graph: used where chunks
    of one tangent are all the memory allows anyway (big networks on a CPU).
    """
    key = (None if size is None else tuple(size), bool(fuse_channels), str(model.device),
           model.dtype)  # fmt: skip
    with _PROGRAMS_LOCK:
        if id(model) not in _PROGRAMS:
            _PROGRAMS[id(model)] = {}
            weakref.finalize(model, _PROGRAMS.pop, id(model), None)
        programs = _PROGRAMS[id(model)]
        if key not in programs:
            try:
                programs[key] = TangentProgram(view_function(model, size, fuse_channels), point)
            except UntraceableError:
                programs[key] = None
    program = programs[key]
    if program is None:
        return None
    push = program.at(point)
    return lambda tangent: push(tangent.unsqueeze(0))


@exact_math()
def jacobian_field(
    model: Model,
    latent: torch.Tensor,
    *,
    size: tuple[int, int] | None = None,
    fuse_channels: bool = False,
    chunk_size: int | None = None,
    memory_budget: int | None = None,
    progress: bool = False,
    directions: torch.Tensor | None = None,
) -> torch.Tensor:
    """Forward-mode Jacobian of the analysis view at `latent`.

    Args:
        model: the generator.
        latent: `(d,)` point of the analysis space.
        size: analysis `(h, w)`; default the output resolution.
        fuse_channels: differentiate the channel mean instead of each channel.
        chunk_size: directions per batched forward pass; default from `memory_budget`
            (`chunk_size_for`, calibrated on the first call for this network and view).
        memory_budget: bytes for one chunk's activations; default `default_memory_budget`.
        progress: show a progress bar over chunks.
        directions: `(k, d)` tangents to push instead of the identity (k columns of J·V).

    Returns:
        `(k, C', h, w)` in the model's precision (at least float32) on its device: row i
        is `d view / d x` along direction i (the identity by default, so k = d).
    """
    device, dtype = model.device, model.dtype
    point = _point(model, latent)
    if directions is None:
        directions = torch.eye(model.latent_dim, device=device, dtype=dtype)
    else:
        directions = directions.to(device=device, dtype=dtype)
    count = directions.shape[0]
    batched = batched_jvp(model, point, size, fuse_channels)
    with torch.no_grad():
        # Calibration passes are thrown away: every row of the field comes from a chunk of
        # the same size, so a field does not depend on whether its process had calibrated
        # before (batched kernels round differently at different batch sizes).
        step = chunk_size or chunk_size_for(
            model, memory_budget, size=size, fuse_channels=fuse_channels, count=count
        )
        step = max(1, min(step, count))
        if step >= count:
            block = batched(directions)
            return block.to(torch.promote_types(block.dtype, torch.float32))
        push = None
        if step == 1 and count >= _LINEARIZE_FROM:
            push = linearized_view(model, point, size, fuse_channels)
        if push is not None:
            batched = lambda tangents: push(tangents[0]).unsqueeze(0)  # noqa: E731
        # Sized to a budget on the CPU, each chunk starts from a trimmed heap as its
        # calibration pass did, and so does what follows (the Grams): without it glibc keeps
        # freed pages resident and successive passes pile up (measured 190 MB resident after
        # six passes whose own peaks were under 80 MB on dcgan-faces). About 20 ms a trim.
        # Chunks of one tangent (big networks) reuse one heap instead, trimmed after.
        single = step == 1 and device.type == "cpu"
        trim = not chunk_size and device.type == "cpu" and not single
        field: torch.Tensor | None = None
        with reused_heap() if single else contextlib.nullcontext():
            for start in tqdm(
                range(0, count, step),
                desc="Jacobian",
                unit="chunk",
                disable=not progress,
                leave=False,
            ):
                if trim:
                    trim_heap()
                block = batched(directions[start : start + step])
                if field is None:
                    # The model's precision, never below float32 (half models accumulate
                    # badly).
                    dtype = torch.promote_types(block.dtype, torch.float32)
                    field = torch.empty((count, *block.shape[1:]), device=block.device, dtype=dtype)
                field[start : start + block.shape[0]] = block
    # The products' kept values (the point's activations, gigabytes at 1024 px) go before
    # the heap is trimmed.
    batched = push = None  # type: ignore[assignment]
    if trim:
        trim_heap()
    assert field is not None
    return field
