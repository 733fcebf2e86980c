"""Line charts drawn with PIL, for reports: no matplotlib dependency.

This module owns the charts in evaluation reports, such as locality against edit strength per
method with interquartile-range error bars. `line_chart` returns an `(H, W, 3) uint8` RGB array;
encoding and writing it are other modules' jobs (`render.png_bytes`, `artifacts`).

The geometry lives in `Axes` (built by `chart_layout`), so callers and tests can work out where
a data point lands without re-deriving margins. Axis ticks come from `nice_ticks` (linear) and
`log_ticks` (log10). Everything is drawn at `SCALE` times the requested size and downsampled,
which antialiases lines, markers and text; the output is a pure function of the arguments.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = [
    "PALETTE",
    "SCALE",
    "Axes",
    "Series",
    "chart_layout",
    "format_tick",
    "line_chart",
    "log_ticks",
    "nice_ticks",
]

RGB = tuple[int, int, int]
Font = ImageFont.ImageFont | ImageFont.FreeTypeFont

# Okabe-Ito: distinguishable under the common colour-vision deficiencies. The yellow (#F0E442)
# is darkened to #B4AB32 because the original nearly vanishes against a white background.
PALETTE: tuple[RGB, ...] = (
    (0x00, 0x72, 0xB2),
    (0xD5, 0x5E, 0x00),
    (0x00, 0x9E, 0x73),
    (0xCC, 0x79, 0xA7),
    (0xE6, 0x9F, 0x00),
    (0x56, 0xB4, 0xE9),
    (0xB4, 0xAB, 0x32),
    (0x00, 0x00, 0x00),
)

# Supersampling factor: drawing at 2x and downsampling is the cheapest antialiasing PIL offers.
SCALE = 2

MIN_WIDTH, MIN_HEIGHT = 200, 150

BACKGROUND: RGB = (255, 255, 255)
INK: RGB = (33, 33, 33)
AXIS_COLOUR: RGB = (70, 70, 70)
GRID_COLOUR: RGB = (228, 228, 228)
REFERENCE_COLOUR: RGB = (120, 120, 120)
LEGEND_BORDER: RGB = (200, 200, 200)

# Sizes in output pixels.
TITLE_SIZE, LABEL_SIZE, TICK_SIZE, LEGEND_SIZE = 16, 13, 12, 12
LINE_WIDTH = 2.0
BAR_WIDTH = 1.5
CAP_HALF_WIDTH = 4.0
MARKER_RADIUS = 4.0
MARKER_OUTLINE = 1.0
TICK_LENGTH = 4.0
OUTER_PAD = 8.0
# Points at the ends of the axis range sit this far inside the box, so markers are not cut off.
INNER_PAD_FRACTION = 0.04
MAX_DODGE = 5.0
DASH, GAP = 6.0, 4.0


@dataclass(frozen=True)
class Series:
    """One line of a chart: points `(x[i], y[i])` with an optional error bar `low[i]..high[i]`.

    `x`, `y`, `low` and `high` are 1-D sequences of the same length `n`. Non-finite values are
    skipped when drawing (a skipped `y` breaks the line), so NaN is the way to say "missing".
    """

    name: str
    x: Sequence[float]
    y: Sequence[float]
    low: Sequence[float] | None = None
    high: Sequence[float] | None = None

    def __post_init__(self) -> None:
        _series_arrays(self)


@dataclass(frozen=True)
class Axes:
    """Where things go on a chart, in output pixels (origin top-left, y growing downwards).

    The plot box spans `left..right` by `top..bottom`; the axis ranges map onto it inset by
    `pad_x`/`pad_y` pixels. Series `i` of `n_series` is shifted horizontally by `dodge(i)` so
    that error bars of different series at the same x stay apart. The legend occupies
    `legend_box = (left, top, right, bottom)`, inside the plot box or to its right, and shows
    `legend_names` (the series names, shortened to fit).
    """

    width: int
    height: int
    left: float
    top: float
    right: float
    bottom: float
    pad_x: float
    pad_y: float
    x_range: tuple[float, float]
    y_range: tuple[float, float]
    x_ticks: tuple[float, ...]
    y_ticks: tuple[float, ...]
    log_y: bool
    n_series: int
    dodge_step: float
    legend_box: tuple[float, float, float, float] | None = None
    legend_names: tuple[str, ...] = ()

    def to_pixel(self, x: float, y: float) -> tuple[float, float]:
        """Pixel `(column, row)` of data point `(x, y)`, before dodging. `y > 0` if `log_y`."""
        x0, x1 = self.x_range
        y0, y1 = self.y_range
        ty = y
        if self.log_y:
            y0, y1, ty = math.log10(y0), math.log10(y1), math.log10(y)
        span_x = self.right - self.left - 2 * self.pad_x
        span_y = self.bottom - self.top - 2 * self.pad_y
        column = self.left + self.pad_x + (x - x0) / (x1 - x0) * span_x
        row = self.bottom - self.pad_y - (ty - y0) / (y1 - y0) * span_y
        return column, row

    def dodge(self, index: int) -> float:
        """Horizontal pixel offset of series `index`, centred so the offsets sum to zero."""
        return (index - (self.n_series - 1) / 2) * self.dodge_step

    def marker_centre(self, index: int, x: float, y: float) -> tuple[float, float]:
        """Pixel `(column, row)` where series `index` draws its marker for `(x, y)`."""
        column, row = self.to_pixel(x, y)
        return column + self.dodge(index), row


# ---------------------------------------------------------------------------------------------
# Ticks


def nice_ticks(lo: float, hi: float, *, max_count: int = 8) -> list[float]:
    """Evenly spaced round values (step 1, 2 or 5 x 10^k) covering `lo..hi`.

    Returns the densest such list with at most `max_count` entries; the first is `<= lo` and
    the last `>= hi`, and there are at least 4 when `max_count` is 8. A zero-width range is
    widened around its value first.
    """
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"tick range must be finite, got {lo}..{hi}")
    if max_count < 2:
        raise ValueError(f"max_count must be at least 2, got {max_count}")
    if lo > hi:
        lo, hi = hi, lo
    if lo == hi:
        half = abs(lo) * 0.1 if lo != 0 else 1.0
        lo, hi = lo - half, hi + half
    exponent = math.floor(math.log10(hi - lo))
    for power in range(exponent - 2, exponent + 3):
        for mantissa in (1, 2, 5):
            step = mantissa * 10.0**power
            # The tolerance keeps float noise (0.3 / 0.1 = 2.999...) from adding a tick.
            first = math.floor(lo / step + 1e-9)
            last = math.ceil(hi / step - 1e-9)
            if last - first + 1 <= max_count:
                return [_clean(k * step) for k in range(first, last + 1)]
    raise AssertionError("unreachable: a step of 10^(exponent+2) always fits")


def log_ticks(lo: float, hi: float, *, max_count: int = 8) -> list[float]:
    """Ticks for a log10 axis covering `lo..hi` (both > 0).

    1, 2 and 5 times each decade when that gives at most `max_count` ticks (ranges of up to
    about two decades), so a narrow range still gets several labelled ticks; otherwise whole
    decades only, keeping every n-th decade of very wide ranges. The first tick is `<= lo` and
    the last `>= hi`.
    """
    if not (lo > 0 and hi > 0 and math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"log ticks need a finite positive range, got {lo}..{hi}")
    if max_count < 3:
        raise ValueError(f"max_count must be at least 3 on a log axis, got {max_count}")
    if lo > hi:
        lo, hi = hi, lo
    first = math.floor(math.log10(lo) + 1e-9)
    last = math.ceil(math.log10(hi) - 1e-9)
    # One spare decade each side, so a very narrow range can be widened to three ticks.
    candidates = [_clean(m * 10.0**k) for k in range(first - 1, last + 2) for m in (1, 2, 5)]
    # The tolerance keeps a value that is a tick up to float noise from pulling in another.
    start = max(i for i, c in enumerate(candidates) if c <= lo * (1 + 1e-9))
    stop = min(i for i, c in enumerate(candidates) if c >= hi * (1 - 1e-9))
    while stop - start + 1 < 3:
        start, stop = (start - 1, stop) if (stop - start) % 2 else (start, stop + 1)
    if stop - start + 1 <= max_count:
        return candidates[start : stop + 1]
    stride = math.ceil((last - first) / (max_count - 1))
    last = first + math.ceil((last - first) / stride) * stride
    return [_clean(10.0**k) for k in range(first, last + 1, stride)]


def format_tick(value: float) -> str:
    """Short label for a tick value: '0', '0.25', '1', '2.5', '1e-3', '1e6'."""
    value = _clean(value)
    if value == 0:
        return "0"
    if 0.01 <= abs(value) < 1e6:
        return f"{value:.6g}"
    mantissa, exponent = f"{value:.6e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}"


def _clean(value: float) -> float:
    # Round away float noise (3 * 0.1) and negative zero, so ticks compare and print exactly.
    return float(f"{value:.12g}") + 0.0


# ---------------------------------------------------------------------------------------------
# Data preparation


def _series_arrays(series: Series) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """`(x, y, low, high)` as float64 arrays of one length; a missing bound is all NaN."""
    x = _as_vector(series.x, series.name, "x")
    arrays = [x]
    for field in ("y", "low", "high"):
        values = getattr(series, field)
        if values is None:
            arrays.append(np.full(x.shape, np.nan))
            continue
        vector = _as_vector(values, series.name, field)
        if vector.shape != x.shape:
            raise ValueError(
                f"series {series.name!r}: {field} has {vector.size} values but x has {x.size}"
            )
        arrays.append(vector)
    return arrays[0], arrays[1], arrays[2], arrays[3]


def _as_vector(values: Sequence[float], name: str, field: str) -> np.ndarray:
    try:
        vector = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"series {name!r}: {field} must be numbers ({error})") from None
    if vector.ndim != 1:
        raise ValueError(f"series {name!r}: {field} must be 1-D, got shape {vector.shape}")
    return vector


def _plottable(values: np.ndarray, log_y: bool) -> np.ndarray:
    """Mask of values that can be placed on the y axis."""
    with np.errstate(invalid="ignore"):
        return np.isfinite(values) & (values > 0) if log_y else np.isfinite(values)


def _point_mask(x: np.ndarray, y: np.ndarray, log_y: bool) -> np.ndarray:
    return np.isfinite(x) & _plottable(y, log_y)


def _axis_values(
    arrays: list[tuple[np.ndarray, ...]], log_y: bool
) -> tuple[list[float], list[float]]:
    """Finite x values, and the y values (centres and bounds) of drawable points."""
    xs: list[float] = []
    ys: list[float] = []
    for x, y, low, high in arrays:
        xs.extend(x[np.isfinite(x)].tolist())
        points = _point_mask(x, y, log_y)
        ys.extend(y[points].tolist())
        for bound in (low, high):
            keep = points & _plottable(bound, log_y)
            ys.extend(bound[keep].tolist())
    return xs, ys


def _y_limits(
    values: list[float],
    log_y: bool,
    y_min: float | None,
    y_max: float | None,
    max_count: int,
) -> tuple[tuple[float, float], list[float]]:
    """Axis range and ticks; explicit limits win, otherwise the range snaps to the ticks."""
    for name, limit in (("y_min", y_min), ("y_max", y_max)):
        if limit is not None and not math.isfinite(limit):
            raise ValueError(f"{name} must be finite, got {limit}")
        if log_y and limit is not None and limit <= 0:
            raise ValueError(f"{name} must be > 0 on a log axis, got {limit}")
    if y_min is not None and y_max is not None and y_min >= y_max:
        raise ValueError(f"y_min ({y_min}) must be below y_max ({y_max})")
    default = (1.0, 10.0) if log_y else (0.0, 1.0)
    lo = y_min if y_min is not None else min(values, default=default[0])
    hi = y_max if y_max is not None else max(values, default=default[1])
    if lo >= hi and (y_min is not None or y_max is not None):
        # Explicit limit on the wrong side of all the data: keep the limit, invent the other.
        if y_min is not None:
            hi = lo * 10 if log_y else lo + max(abs(lo), 1.0)
        else:
            lo = hi / 10 if log_y else hi - max(abs(hi), 1.0)
    ticks = (
        log_ticks(lo, hi, max_count=max_count) if log_y else nice_ticks(lo, hi, max_count=max_count)
    )
    lo = y_min if y_min is not None else min(ticks[0], lo)
    hi = y_max if y_max is not None else max(ticks[-1], hi)
    tolerance = 1e-9 * (hi - lo)
    inside = [t for t in ticks if lo - tolerance <= t <= hi + tolerance]
    return (lo, hi), inside


# ---------------------------------------------------------------------------------------------
# Text


@functools.lru_cache(maxsize=16)
def _font(size: int) -> Font:
    """Default font at `size` output pixels, loaded at the drawing scale."""
    try:
        return ImageFont.load_default(size=size * SCALE)
    except (TypeError, ValueError, OSError, ImportError):
        # Without FreeType, PIL only has its small bitmap font; still legible, just not sized.
        return ImageFont.load_default()


def _out_size(font: Font, text: str) -> tuple[float, float]:
    """Ink width and height of `text` in output pixels."""
    left, top, right, bottom = font.getbbox(text)
    return (right - left) / SCALE, (bottom - top) / SCALE


def _line_height(size: int) -> float:
    # Measured on a fixed string so labels with and without descenders line up.
    return _out_size(_font(size), "0Ag")[1]


def _fit(font: Font, text: str, width: float) -> str:
    """`text`, shortened with '...' until it fits `width` output pixels."""
    if _out_size(font, text)[0] <= width:
        return text
    while text and _out_size(font, text + "...")[0] > width:
        text = text[:-1]
    return text + "..."


# ---------------------------------------------------------------------------------------------
# Geometry: where each series' lines, markers and error bars land


def _runs(order: np.ndarray, valid: np.ndarray) -> list[list[int]]:
    """Indices (in x order) of consecutive drawable points; a skipped point ends a run."""
    runs: list[list[int]] = [[]]
    for index in order:
        if valid[index]:
            runs[-1].append(int(index))
        elif runs[-1]:
            runs.append([])
    return [run for run in runs if run]


Runs = list[list[tuple[float, float]]]
Bars = list[tuple[float, float, float]]


def _series_geometry(axes: Axes, index: int, arrays: tuple[np.ndarray, ...]) -> tuple[Runs, Bars]:
    """Polyline runs `[(col, row), ...]` and error bars `(col, row_top, row_bottom)`."""
    x, y, low, high = arrays
    valid = _point_mask(x, y, axes.log_y)
    order = np.argsort(x, kind="stable")
    runs = [[axes.marker_centre(index, x[i], y[i]) for i in run] for run in _runs(order, valid)]
    bars: Bars = []
    for i in np.flatnonzero(valid):
        column, row = axes.marker_centre(index, x[i], y[i])
        ends = [
            axes.to_pixel(x[i], bound[i])[1]
            for bound in (low, high)
            if _plottable(bound[i : i + 1], axes.log_y)[0]
        ]
        if ends:
            bars.append((column, min([*ends, row]), max([*ends, row])))
    return runs, bars


def _occupied_points(geometry: list[tuple[Runs, Bars]]) -> list[tuple[float, float]]:
    """Pixels the data covers, sampled along lines and bars, for legend placement."""
    points: list[tuple[float, float]] = []
    for runs, bars in geometry:
        for run in runs:
            points.extend(run)
            for (c0, r0), (c1, r1) in zip(run, run[1:], strict=False):
                points.extend(
                    (c0 + (c1 - c0) * t / 12, r0 + (r1 - r0) * t / 12) for t in range(1, 12)
                )
        for column, row_a, row_b in bars:
            points.extend((column, row_a + (row_b - row_a) * t / 4) for t in range(5))
    return points


# ---------------------------------------------------------------------------------------------
# Layout

LEGEND_SAMPLE, LEGEND_GAP, LEGEND_PADDING, LEGEND_INSET = 22.0, 6.0, 6.0, 6.0


def _tick_budget(length: float, spacing: float) -> int:
    """How many ticks fit along `length` pixels at least `spacing` apart (3 to 8)."""
    # Never below 3: a log axis needs that many, and two ticks barely make a scale.
    return max(3, min(8, math.floor(length / spacing) + 1))


def _x_ticks(xs: list[float], length: float) -> list[float]:
    """The densest nice ticks over the x values whose labels do not touch along `length`."""
    lo, hi = (min(xs), max(xs)) if xs else (0.0, 1.0)
    font = _font(TICK_SIZE)
    for max_count in range(8, 2, -1):
        ticks = nice_ticks(lo, hi, max_count=max_count)
        widest = max(_out_size(font, format_tick(t))[0] for t in ticks)
        if widest + 10 <= length / (len(ticks) - 1):
            return ticks
    return nice_ticks(lo, hi, max_count=2)


def _legend_size(names: list[str]) -> tuple[float, float]:
    text_width = max(_out_size(_font(LEGEND_SIZE), name)[0] for name in names)
    return (
        2 * LEGEND_PADDING + LEGEND_SAMPLE + LEGEND_GAP + text_width,
        2 * LEGEND_PADDING + _legend_row_height() * len(names) - 5,
    )


def _legend_row_height() -> float:
    return max(_line_height(LEGEND_SIZE), 2 * MARKER_RADIUS) + 5


def _legend_names(series: Sequence[Series], width: float) -> list[str]:
    """Series names shortened so the legend is at most `width` pixels wide."""
    room = width - 2 * LEGEND_PADDING - LEGEND_SAMPLE - LEGEND_GAP
    return [_fit(_font(LEGEND_SIZE), s.name, room) for s in series]


def _best_corner(
    axes: Axes, size: tuple[float, float], occupied: list[tuple[float, float]]
) -> tuple[tuple[float, float], int]:
    """Top-left of the plot corner covering fewest data points, and how many it covers.

    Top-right wins ties, which is where readers look first.
    """
    w, h = size
    corners = [
        (axes.right - LEGEND_INSET - w, axes.top + LEGEND_INSET),
        (axes.left + LEGEND_INSET, axes.top + LEGEND_INSET),
        (axes.right - LEGEND_INSET - w, axes.bottom - LEGEND_INSET - h),
        (axes.left + LEGEND_INSET, axes.bottom - LEGEND_INSET - h),
    ]

    def covered(corner: tuple[float, float]) -> int:
        x0, y0 = corner
        return sum(x0 - 4 <= c <= x0 + w + 4 and y0 - 4 <= r <= y0 + h + 4 for c, r in occupied)

    best = min(corners, key=covered)
    return best, covered(best)


def _frame_axes(
    width: int,
    height: int,
    box: tuple[float, float, float, float],
    xs: list[float],
    y_range: tuple[float, float],
    y_ticks: list[float],
    log_y: bool,
    n_series: int,
) -> Axes:
    """Axes for a plot box whose right edge may still move to fit the last x tick label."""
    left, top, right, bottom = box
    pad_x = INNER_PAD_FRACTION * (right - left)
    x_ticks = _x_ticks(xs, right - left - 2 * pad_x)
    last_label = _out_size(_font(TICK_SIZE), format_tick(x_ticks[-1]))[0]
    # The last x tick label is centred on the box edge; leave room for its right half.
    right = min(right, width - last_label / 2 - 4)
    pad_x = INNER_PAD_FRACTION * (right - left)
    x_range = (x_ticks[0], x_ticks[-1])

    span = right - left - 2 * pad_x
    gaps = np.diff(np.unique(np.asarray(xs, dtype=np.float64))) / (x_range[1] - x_range[0])
    # Dodge within a third of the narrowest gap, so neighbouring x values never interleave.
    room = float(gaps.min()) * span / 3 if gaps.size else MAX_DODGE * n_series
    dodge_step = min(MAX_DODGE, room / (n_series - 1)) if n_series > 1 else 0.0
    return Axes(
        width=width,
        height=height,
        left=left,
        top=top,
        right=right,
        bottom=bottom,
        pad_x=pad_x,
        pad_y=INNER_PAD_FRACTION * (bottom - top),
        x_range=x_range,
        y_range=y_range,
        x_ticks=tuple(x_ticks),
        y_ticks=tuple(y_ticks),
        log_y=log_y,
        n_series=n_series,
        dodge_step=dodge_step,
    )


def chart_layout(
    series: Sequence[Series],
    *,
    title: str = "",
    x_label: str = "",
    y_label: str = "",
    width: int = 640,
    height: int = 420,
    log_y: bool = False,
    y_min: float | None = None,
    y_max: float | None = None,
    reference: float | None = None,
) -> Axes:
    """The `Axes` that `line_chart` draws with for the same arguments.

    The legend goes in the plot corner covering the fewest data points; if every corner
    covers some and the chart is wide enough, it moves outside to the right of the plot.
    Raises `ValueError` like `line_chart`.
    """
    if width < MIN_WIDTH or height < MIN_HEIGHT:
        raise ValueError(
            f"chart must be at least {MIN_WIDTH}x{MIN_HEIGHT} pixels, got {width}x{height}"
        )
    arrays = [_series_arrays(s) for s in series]
    xs, ys = _axis_values(arrays, log_y)
    if reference is not None and _shows_reference(reference, log_y):
        ys.append(reference)

    tick_height = _line_height(TICK_SIZE)
    label_height = _line_height(LABEL_SIZE)
    top = OUTER_PAD + (_line_height(TITLE_SIZE) + 10 if title else tick_height / 2)
    bottom = height - OUTER_PAD - tick_height - TICK_LENGTH - 4
    if x_label:
        bottom -= label_height + 8
    plot_height = (bottom - top) * (1 - 2 * INNER_PAD_FRACTION)
    budget = _tick_budget(plot_height, 2.5 * tick_height)
    y_range, y_ticks = _y_limits(ys, log_y, y_min, y_max, budget)

    widest = max((_out_size(_font(TICK_SIZE), format_tick(t))[0] for t in y_ticks), default=0)
    left = OUTER_PAD + widest + TICK_LENGTH + 4
    if y_label:
        left += label_height + 8
    right = width - OUTER_PAD - 4

    def frame(right: float) -> Axes:
        box = (left, top, right, bottom)
        return _frame_axes(width, height, box, xs, y_range, y_ticks, log_y, len(series))

    axes = frame(right)
    if not series:
        return axes
    names = _legend_names(series, 0.45 * (axes.right - axes.left))
    size = _legend_size(names)
    geometry = [_series_geometry(axes, i, a) for i, a in enumerate(arrays)]
    (x0, y0), covered = _best_corner(axes, size, _occupied_points(geometry))

    outside_names = _legend_names(series, 0.25 * width)
    outside = _legend_size(outside_names)
    narrower = width - OUTER_PAD - outside[0] - 10
    # Moving out only pays if the plot keeps most of its width and the legend fits its height.
    if covered and narrower - left >= 0.5 * width and outside[1] <= bottom - top:
        axes = frame(narrower)
        names, size, (x0, y0) = outside_names, outside, (axes.right + 10, axes.top)
    return replace(axes, legend_box=(x0, y0, x0 + size[0], y0 + size[1]), legend_names=tuple(names))


def _shows_reference(reference: float | None, log_y: bool) -> bool:
    return reference is not None and math.isfinite(reference) and (reference > 0 or not log_y)


# ---------------------------------------------------------------------------------------------
# Drawing (arguments are output pixels; `_s` converts to drawing pixels)


def _s(value: float) -> float:
    return value * SCALE


def _width(value: float) -> int:
    return max(1, round(value * SCALE))


def _line(
    draw: ImageDraw.ImageDraw,
    points: Sequence[tuple[float, float]],
    fill: RGB,
    width: float = 1.0,
) -> None:
    draw.line([(_s(c), _s(r)) for c, r in points], fill=fill, width=_width(width), joint="curve")


def _draw_text(
    draw: ImageDraw.ImageDraw,
    xy: tuple[float, float],
    text: str,
    font: Font,
    fill: RGB,
    *,
    align: str = "centre",
    valign: str = "middle",
) -> None:
    """Place the ink box of `text` relative to output point `xy`.

    Positioning by the measured box (rather than PIL anchors) works for the bitmap fallback
    font too.
    """
    left, top, right, bottom = font.getbbox(text)
    offset_x = {"left": 0.0, "centre": (right - left) / 2, "right": right - left}[align]
    offset_y = {"top": 0.0, "middle": (bottom - top) / 2, "bottom": bottom - top}[valign]
    draw.text((_s(xy[0]) - offset_x - left, _s(xy[1]) - offset_y - top), text, fill, font)


def _draw_rotated_text(
    image: Image.Image, centre: tuple[float, float], text: str, font: Font, fill: RGB
) -> None:
    """Draw `text` reading bottom-to-top, centred on output point `centre`."""
    left, top, right, bottom = font.getbbox(text)
    mask = Image.new("L", (right - left + 2, bottom - top + 2), 0)
    ImageDraw.Draw(mask).text((1 - left, 1 - top), text, fill=255, font=font)
    mask = mask.rotate(90, expand=True)
    x = round(_s(centre[0]) - mask.width / 2)
    y = round(_s(centre[1]) - mask.height / 2)
    image.paste(Image.new("RGB", mask.size, fill), (x, y), mask)


def _draw_grid(draw: ImageDraw.ImageDraw, axes: Axes) -> None:
    for tick in axes.x_ticks:
        column = axes.to_pixel(tick, axes.y_range[0])[0]
        _line(draw, [(column, axes.top), (column, axes.bottom)], GRID_COLOUR)
    for tick in axes.y_ticks:
        row = axes.to_pixel(axes.x_range[0], tick)[1]
        _line(draw, [(axes.left, row), (axes.right, row)], GRID_COLOUR)


def _draw_reference(draw: ImageDraw.ImageDraw, axes: Axes, value: float) -> None:
    row = axes.to_pixel(axes.x_range[0], value)[1]
    start = axes.left
    while start < axes.right:
        stop = min(start + DASH, axes.right)
        _line(draw, [(start, row), (stop, row)], REFERENCE_COLOUR, 1.5)
        start += DASH + GAP


def _draw_marker(
    draw: ImageDraw.ImageDraw, centre: tuple[float, float], colour: RGB, radius: float
) -> None:
    # A thin white rim keeps overlapping markers of different series apart.
    x, y = _s(centre[0]), _s(centre[1])
    for r, fill in ((radius + MARKER_OUTLINE, BACKGROUND), (radius, colour)):
        draw.ellipse([x - _s(r), y - _s(r), x + _s(r), y + _s(r)], fill=fill)


def _draw_series(draw: ImageDraw.ImageDraw, colour: RGB, runs: Runs, bars: Bars) -> None:
    for run in runs:
        if len(run) > 1:
            _line(draw, run, colour, LINE_WIDTH)
    for column, row_top, row_bottom in bars:
        _line(draw, [(column, row_top), (column, row_bottom)], colour, BAR_WIDTH)
        for row in (row_top, row_bottom):
            cap = [(column - CAP_HALF_WIDTH, row), (column + CAP_HALF_WIDTH, row)]
            _line(draw, cap, colour, BAR_WIDTH)
    for run in runs:
        for centre in run:
            _draw_marker(draw, centre, colour, MARKER_RADIUS)


def _clip_to_box(draw: ImageDraw.ImageDraw, axes: Axes) -> None:
    """Paint the margins white again, hiding data drawn outside an explicit y range."""
    w, h = _s(axes.width), _s(axes.height)
    left, top, right, bottom = _s(axes.left), _s(axes.top), _s(axes.right), _s(axes.bottom)
    for box in ((0, 0, w, top), (0, bottom, w, h), (0, 0, left, h), (right, 0, w, h)):
        draw.rectangle(box, fill=BACKGROUND)


def _draw_frame(draw: ImageDraw.ImageDraw, axes: Axes) -> None:
    box = [_s(axes.left), _s(axes.top), _s(axes.right), _s(axes.bottom)]
    draw.rectangle(box, outline=AXIS_COLOUR, width=_width(1))
    font = _font(TICK_SIZE)
    for tick in axes.x_ticks:
        column = axes.to_pixel(tick, axes.y_range[0])[0]
        end = axes.bottom + TICK_LENGTH
        _line(draw, [(column, axes.bottom), (column, end)], AXIS_COLOUR)
        _draw_text(draw, (column, end + 4), format_tick(tick), font, INK, valign="top")
    for tick in axes.y_ticks:
        row = axes.to_pixel(axes.x_range[0], tick)[1]
        end = axes.left - TICK_LENGTH
        _line(draw, [(end, row), (axes.left, row)], AXIS_COLOUR)
        _draw_text(draw, (end - 4, row), format_tick(tick), font, INK, align="right")


def _draw_labels(
    image: Image.Image,
    draw: ImageDraw.ImageDraw,
    axes: Axes,
    title: str,
    x_label: str,
    y_label: str,
) -> None:
    centre_x = (axes.left + axes.right) / 2
    if title:
        _draw_text(draw, (centre_x, OUTER_PAD), title, _font(TITLE_SIZE), INK, valign="top")
    font = _font(LABEL_SIZE)
    if x_label:
        xy = (centre_x, axes.height - OUTER_PAD)
        _draw_text(draw, xy, x_label, font, INK, valign="bottom")
    if y_label:
        centre = (OUTER_PAD + _line_height(LABEL_SIZE) / 2, (axes.top + axes.bottom) / 2)
        _draw_rotated_text(image, centre, y_label, font, INK)


def _draw_legend(draw: ImageDraw.ImageDraw, axes: Axes) -> None:
    if axes.legend_box is None:
        return
    x0, y0, x1, y1 = axes.legend_box
    box = [_s(x0), _s(y0), _s(x1), _s(y1)]
    draw.rectangle(box, fill=BACKGROUND, outline=LEGEND_BORDER, width=_width(1))
    font = _font(LEGEND_SIZE)
    row_height = _legend_row_height()
    for index, name in enumerate(axes.legend_names):
        colour = PALETTE[index % len(PALETTE)]
        row = y0 + LEGEND_PADDING + row_height * index + (row_height - 5) / 2
        start, stop = x0 + LEGEND_PADDING, x0 + LEGEND_PADDING + LEGEND_SAMPLE
        _line(draw, [(start, row), (stop, row)], colour, LINE_WIDTH)
        _draw_marker(draw, ((start + stop) / 2, row), colour, MARKER_RADIUS)
        _draw_text(draw, (stop + LEGEND_GAP, row), name, font, INK, align="left")


def line_chart(
    series: Sequence[Series],
    *,
    title: str = "",
    x_label: str = "",
    y_label: str = "",
    width: int = 640,
    height: int = 420,
    log_y: bool = False,
    y_min: float | None = None,
    y_max: float | None = None,
    reference: float | None = None,
) -> np.ndarray:
    """`(height, width, 3) uint8` RGB image of one line per series, with optional error bars.

    Series `i` is drawn in `PALETTE[i % 8]`: a line through its points in x order, a filled
    marker per point and an error bar from `low` to `high` where given. Non-finite values (and
    non-positive ones when `log_y`) are skipped, and a skipped `y` breaks the line. `y_min` and
    `y_max` fix the y range (otherwise it snaps to round ticks around the data); `reference`
    adds a dashed grey horizontal line at that y. With nothing drawable the axes still appear,
    with "no data" in the middle. `chart_layout` gives the geometry used.

    Raises `ValueError` for a chart smaller than 200x150, a series whose `x`, `y`, `low` and
    `high` lengths differ, or `y_min`/`y_max` that are non-finite, out of order, or not
    positive on a log axis.
    """
    axes = chart_layout(
        series,
        title=title,
        x_label=x_label,
        y_label=y_label,
        width=width,
        height=height,
        log_y=log_y,
        y_min=y_min,
        y_max=y_max,
        reference=reference,
    )
    image = Image.new("RGB", (width * SCALE, height * SCALE), BACKGROUND)
    draw = ImageDraw.Draw(image)
    _draw_grid(draw, axes)
    if reference is not None and _shows_reference(reference, log_y):
        _draw_reference(draw, axes, reference)
    geometry = [_series_geometry(axes, i, _series_arrays(s)) for i, s in enumerate(series)]
    for index, (runs, bars) in enumerate(geometry):
        _draw_series(draw, PALETTE[index % len(PALETTE)], runs, bars)
    _clip_to_box(draw, axes)

    _draw_frame(draw, axes)
    _draw_labels(image, draw, axes, title, x_label, y_label)
    if not any(runs for runs, _ in geometry):
        centre = ((axes.left + axes.right) / 2, (axes.top + axes.bottom) / 2)
        _draw_text(draw, centre, "no data", _font(LABEL_SIZE + 1), AXIS_COLOUR)
    _draw_legend(draw, axes)

    image = image.resize((width, height), Image.Resampling.LANCZOS)
    return np.asarray(image, dtype=np.uint8).copy()
