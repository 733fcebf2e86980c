"""Shared measuring tools for the benchmark sections: interleaved timing rounds and the
peak-memory sampler run in fresh interpreters.

Timings are medians over rounds in which every case runs once, the order rotating by one case
each round, so that background load falls on all cases alike. Peak memory is the growth of
the resident set during one call, sampled every millisecond by a thread.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

# glibc's mmap threshold is fixed so that freed tensors leave the resident set: by default it
# grows after the first large free, and later tensors are carved from a heap that stays
# resident, so a call after a warm-up would show little growth whatever its real peak.
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "131072"}

# Python source that defines `peak_growth(fn) -> bytes`, for the memory scripts to build on.
RSS_PRELUDE = """
import resource, threading
_page = resource.getpagesize()
def rss():
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * _page
def peak_growth(fn):
    before = rss()
    peak = [before]
    done = threading.Event()
    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss())
            done.wait(0.001)
    thread = threading.Thread(target=sample)
    thread.start()
    fn()
    done.set()
    thread.join()
    return max(peak[0], rss()) - before
"""


@dataclass
class Timing:
    """Wall times of one case over the rounds; `digits` for the printed range."""

    times: list[float] = field(default_factory=list)
    digits: int = 3

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def spread(self) -> str:
        if len(self.times) < 2:
            return "-"
        return f"{min(self.times):.{self.digits}f}-{max(self.times):.{self.digits}f}"


def rounds(
    cases: dict[str, Callable[[], object]],
    repeats: int,
    *,
    warm_up: bool = True,
    digits: int = 3,
) -> dict[str, Timing]:
    """`repeats` rounds calling each case in turn, the order rotating by one case every
    round, after one untimed call of every case when `warm_up`."""
    if warm_up:
        for fn in cases.values():
            fn()
    names = list(cases)
    timings = {name: Timing(digits=digits) for name in names}
    for round_ in range(repeats):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            cases[name]()
            timings[name].times.append(time.perf_counter() - start)
    return timings


def overlap(a: Timing, b: Timing) -> bool:
    """Whether the ranges of two timings overlap (a difference within the noise)."""
    return len(a.times) > 1 and min(a.times) <= max(b.times) and min(b.times) <= max(a.times)


def largest_angle(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest principal angle in degrees between the spans of `(d, k)` a and b (float64 QR
    + SVD; the columns need not be orthonormal)."""
    qa, qb = torch.linalg.qr(a.double())[0], torch.linalg.qr(b.double())[0]
    cosine = torch.linalg.svdvals(qa.T @ qb).min().clamp(0.0, 1.0)
    return math.degrees(math.acos(float(cosine)))
