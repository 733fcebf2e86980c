"""What an edit did: `Edits`, the change it made inside the region, and straight-line edits
that reach a requested change.

A *change* is the signed root-mean-square change of the image inside the region, measured as
`locality` measures it (over the region's pixels and channels, images in [-1, 1]); its sign
is the side of the direction the edit went. Strength is latent distance: `|t|` along the unit
direction for one-shot edits, arc length for path-following.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from lowrankgan.core.metrics import locality
from lowrankgan.errors import UserInputError
from lowrankgan.models.base import Model
from lowrankgan.ranges import parse_numbers

#: Default bound of the search for a change, in units of `sqrt(d)` (the norm of a typical
#: Gaussian latent): far beyond any edit that stays on the data.
MAX_STRENGTH_SCALE = 3.0
#: A change counts as reached within this relative tolerance (root finders stop far closer).
CHANGE_TOLERANCE = 1e-3


@dataclass(frozen=True)
class Edits:
    """Edited latents and what each edit did, in the order asked.

    latents: `(n, d)` in the model's space.
    strengths: `(n,)` float64, signed latent distance (arc length for path-following).
    achieved: `(n,)` float64, the signed change measured inside the region (NaN where no
        region was given to measure it in).
    changes: `(n,)` float64, the signed changes asked for, or None when strengths were.
    reached: `(n,)` bool, whether each asked change was reached (all True for strengths).
    """

    latents: torch.Tensor
    strengths: np.ndarray
    achieved: np.ndarray
    changes: np.ndarray | None = None
    reached: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.reached is None:
            object.__setattr__(self, "reached", np.ones(len(self.strengths), dtype=bool))

    @property
    def unreachable(self) -> list[int]:
        """Indices of the asked changes that could not be reached."""
        assert self.reached is not None
        return [int(i) for i in np.flatnonzero(~self.reached)]

    def asked(self) -> np.ndarray:
        """`(n,)` what was asked: the changes, or the strengths."""
        return self.strengths if self.changes is None else self.changes


def parse_changes(text: str) -> list[float]:
    """`"-0.1,0,0.1"` -> floats: finite, at least one, not all zero (a list of zeros asks
    for no edit at all), counted before parsing as `--strengths` is."""
    values = parse_numbers(text, most="strengths", what="changes")
    check_changes(values)
    return values


def check_changes(changes: Sequence[float]) -> None:
    """Refuse an empty, non-finite or all-zero list of changes."""
    values = [float(c) for c in changes]
    if not values:
        raise UserInputError("no changes given")
    if not all(math.isfinite(c) for c in values):
        raise UserInputError("changes must be finite numbers")
    if all(c == 0 for c in values):
        raise UserInputError("changes are all zero: give at least one non-zero change")


def check_max_strength(value: float | None) -> None:
    if value is not None and not (math.isfinite(value) and value > 0):
        raise UserInputError(f"max strength must be a positive number, got {value}")


def default_max_strength(dim: int) -> float:
    """How far a search for a change may go in a `dim`-d latent space by default."""
    return MAX_STRENGTH_SCALE * math.sqrt(dim)


class ChangeMeter:
    """Measures the change of edited latents inside `region` against the image of `latent`.

    One forward pass per latent; images in the generator's [-1, 1], masks `(H, W)` bool at
    the model's resolution.
    """

    def __init__(self, model: Model, latent: torch.Tensor, region: torch.Tensor) -> None:
        if tuple(region.shape) != tuple(model.resolution):
            raise UserInputError("the region does not match the model's resolution")
        if not bool(region.any()):
            raise UserInputError("the region is empty: nothing to measure a change in")
        self.model = model
        self.region = region.to(torch.bool)
        with torch.no_grad():
            self.original = model.synthesize(self._batch(latent))[0]

    def _batch(self, latents: torch.Tensor) -> torch.Tensor:
        model = self.model
        return latents.reshape(-1, model.latent_dim).to(model.device, model.dtype)

    def of_images(self, images: torch.Tensor) -> np.ndarray:
        """`(n, C, H, W)` images -> `(n,)` float64 rms changes inside the region."""
        return np.array([locality(self.original, im, self.region).rms_inside for im in images])

    def __call__(self, latents: torch.Tensor) -> np.ndarray:
        """`(n, d)` latents -> `(n,)` float64 rms changes inside the region (unsigned)."""
        return self.of_images(synthesize_in_batches(self.model, self._batch(latents)))


def synthesize_in_batches(model: Model, latents: torch.Tensor) -> torch.Tensor:
    """`(n, d)` latents on the model's device -> `(n, C, H, W)` images, `_BATCH` per forward
    pass, without autograd."""
    with torch.no_grad():
        return torch.cat(
            [model.synthesize(latents[i : i + _BATCH]) for i in range(0, len(latents), _BATCH)]
        )


def signed(values: Sequence[float], signs: Sequence[float]) -> np.ndarray:
    return np.asarray(values, dtype=np.float64) * np.sign(np.asarray(signs, dtype=np.float64))


def one_shot(
    latent: torch.Tensor, direction: torch.Tensor, strengths: Sequence[float]
) -> torch.Tensor:
    """Straight-line edits `x + s v`: `(d,)`, `(d,)`, n strengths -> `(n, d)`."""
    alphas = torch.as_tensor(list(strengths), dtype=latent.dtype, device=latent.device)
    unit = direction / direction.norm()
    return latent.unsqueeze(0) + alphas.unsqueeze(1) * unit.unsqueeze(0)


def one_shot_to_changes(
    latent: torch.Tensor,
    direction: torch.Tensor,
    changes: Sequence[float],
    meter: ChangeMeter,
    max_strength: float,
) -> Edits:
    """Straight-line edits that reach each signed change: for each, the first `t` in
    `(0, max_strength]` along `sign(c) v` whose change is `|c|` (see `reach_changes`). A
    change the line never reaches gives the largest change seen on it (`reached` False)."""
    return reach_changes([(latent, direction, meter)], changes, max_strength)[0]


def reach_changes(
    lines: Sequence[tuple[torch.Tensor, torch.Tensor, ChangeMeter]],
    changes: Sequence[float],
    max_strength: float,
) -> list[Edits]:
    """`one_shot_to_changes` for many `(latent (d,), direction (d,), meter)` at once, every
    measurement of every line in one batch of forward passes.

    Each half-line `x + t sign(c) v` is measured on a geometric grid of `GRID` strengths up
    to `max_strength`; each change's first crossing on the grid is narrowed by bracketed
    false position (Illinois) until a measured change is within `CHANGE_TOLERANCE / 4` of
    the target; each round costs about one forward pass of every line's trial points.
    """
    for _, direction, _ in lines:
        if not (torch.isfinite(direction).all() and direction.norm() > 0):
            raise UserInputError("direction must be finite and non-zero")
    halves: list[_HalfLine] = []
    for index, (latent, direction, meter) in enumerate(lines):
        unit = direction / direction.norm()
        for sign in (1.0, -1.0):
            targets = [abs(c) for c in changes if c != 0 and math.copysign(1.0, c) == sign]
            if targets:
                halves.append(_HalfLine(index, sign, latent, sign * unit, meter, targets))
    grid = max_strength * np.power(2.0, -np.arange(GRID - 1, -1, -1, dtype=np.float64))
    for half, values in zip(halves, _measure(halves, [grid] * len(halves)), strict=True):
        half.seen_t, half.seen_c = np.concatenate([[0.0], grid]), np.concatenate([[0.0], values])
    brackets = [(half, target) for half in halves for target in half.targets]
    found = _narrow(halves, [b for b in brackets if b[0].bracket(b[1]) is not None])
    results = []
    for index, (latent, direction, _) in enumerate(lines):
        strengths, achieved, reached = [], [], []
        for change in changes:
            sign = math.copysign(1.0, change)
            t, value, ok = 0.0, 0.0, True
            if change != 0:
                half = next(h for h in halves if h.line == index and h.sign == sign)
                t, value, ok = found.get((id(half), abs(change))) or half.best()
            strengths.append(sign * t)
            achieved.append(sign * value)
            reached.append(ok)
        results.append(
            Edits(
                latents=one_shot(latent, direction, strengths),
                strengths=np.asarray(strengths, dtype=np.float64),
                achieved=np.asarray(achieved, dtype=np.float64),
                changes=np.asarray(changes, dtype=np.float64),
                reached=np.asarray(reached, dtype=bool),
            )
        )
    return results


#: Strengths on the first, geometric grid: `max_strength * 2**-k`, k < GRID.
GRID = 12
#: Points per bracket in each round of the multisection.
SECTIONS = 8
#: Rounds at most (each shrinks a bracket about SECTIONS + 1 times).
MAX_ROUNDS = 10


@dataclass
class _HalfLine:
    """One side of one line, its targets and every change measured on it."""

    line: int
    sign: float
    start: torch.Tensor
    heading: torch.Tensor
    meter: ChangeMeter
    targets: list[float]
    seen_t: np.ndarray = field(default_factory=lambda: np.zeros(0))
    seen_c: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def bracket(self, target: float) -> tuple[float, float, float, float] | None:
        """`(t_low, t_high, c_low, c_high)` around the first crossing of `target` on the
        grid, or None when the grid never reaches it."""
        above = np.flatnonzero(self.seen_c >= target)
        if above.size == 0:
            return None
        high = int(above[0])
        return (
            float(self.seen_t[high - 1]),
            float(self.seen_t[high]),
            float(self.seen_c[high - 1]),
            float(self.seen_c[high]),
        )

    def best(self) -> tuple[float, float, bool]:
        """The largest change measured: `(t, change, False)`."""
        index = int(np.argmax(self.seen_c))
        return float(self.seen_t[index]), float(self.seen_c[index]), False


def _measure(halves: Sequence[_HalfLine], strengths: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Changes at `strengths[i]` along `halves[i]`, in batches of forward passes."""
    points = [
        h.start.unsqueeze(0) + torch.as_tensor(t, dtype=h.start.dtype, device=h.start.device)
        .unsqueeze(1) * h.heading.unsqueeze(0)
        for h, t in zip(halves, strengths, strict=True)
    ]  # fmt: skip
    if not points:
        return []
    model = halves[0].meter.model
    images = synthesize_in_batches(model, torch.cat(points).to(model.device, model.dtype))
    out, offset = [], 0
    for half, chunk in zip(halves, points, strict=True):
        out.append(half.meter.of_images(images[offset : offset + len(chunk)]))
        offset += len(chunk)
    return out


#: Images per forward pass when measuring changes.
_BATCH = 64


def _narrow(
    halves: Sequence[_HalfLine], brackets: list[tuple[_HalfLine, float]]
) -> dict[tuple[int, float], tuple[float, float, bool]]:
    """The crossing of each `(half-line, target)` whose grid bracket exists: `(t, change at
    t, True)` by id of the half-line and target. Bracketed false position with the Illinois
    rule (superlinear on smooth changes, and the bracket always holds the crossing): each
    round measures one point per target, all targets of all lines in one batch."""
    by_id = {id(h): h for h in halves}
    state: dict[tuple[int, float], list] = {}
    for half, target in brackets:
        t_low, t_high, c_low, c_high = half.bracket(target)  # type: ignore[misc]
        # [t_low, f_low, t_high, f_high, side retained last, best (t, change)]
        state[(id(half), target)] = [
            t_low,
            c_low - target,
            t_high,
            c_high - target,
            0,
            (t_high, c_high),
        ]
    for _ in range(MAX_ROUNDS):
        active = [
            k for k, st in state.items() if abs(st[5][1] - k[1]) > CHANGE_TOLERANCE / 4 * k[1]
        ]
        if not active:
            break
        trials = [np.array([_false_position(state[k])]) for k in active]
        measured = _measure([by_id[k[0]] for k in active], trials)
        for key, ts, cs in zip(active, trials, measured, strict=True):
            st, t, f = state[key], float(ts[0]), float(cs[0]) - key[1]
            if abs(f) < abs(st[5][1] - key[1]):
                st[5] = (t, float(cs[0]))
            if f >= 0:
                st[2], st[3] = t, f
                if st[4] == 1:
                    st[1] /= 2  # Illinois: the low end was kept twice, halve its weight
                st[4] = 1
            else:
                st[0], st[1] = t, f
                if st[4] == -1:
                    st[3] /= 2
                st[4] = -1
    return {k: (st[5][0], st[5][1], True) for k, st in state.items()}


def _false_position(st: list) -> float:
    t_low, f_low, t_high, f_high = st[:4]
    if f_high <= f_low:
        return t_high
    return t_high - f_high * (t_high - t_low) / (f_high - f_low)


def crossing(t_low: float, t_high: float, c_low: float, c_high: float, target: float) -> float:
    """Where the change crosses `target` in a bracket, by linear interpolation."""
    if c_high <= c_low:
        return t_high
    return t_low + (target - c_low) / (c_high - c_low) * (t_high - t_low)
