"""Line charts for evaluation reports, drawn with matplotlib.

`build_figure` makes a `matplotlib.figure.Figure` with one line per `Series` (markers, optional
error bars, an optional dashed reference line); `line_chart` renders the same figure to an
`(H, W, 3) uint8` RGB array, which `render.png_bytes` encodes. Only `Figure` and the Agg canvas
are used, never `pyplot`: no global figure manager or backend switch, so importing this module
changes nothing for other matplotlib users.

Styles: a chart is drawn under `HOUSE_STYLE` (Okabe-Ito colours, light grid, open top and right
spines) layered over the current `matplotlib.rcParams`, and then under the caller's `style`,
anything `matplotlib.style.context` accepts: a style name (`"ggplot"`), a path to a `.mplstyle`
file, an rcParams dict (`{"font.size": 12}`), or a list of these. Series colours come from the
active `axes.prop_cycle`, so a style can change them; `figure.dpi` sets the text size relative
to the fixed pixel size. rcParams are restored afterwards, and a lock keeps two charts drawn
at once from seeing each other's temporary settings (rcParams are process-global).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib as mpl
import matplotlib.style
import numpy as np
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.ticker import LogFormatter
from matplotlib.transforms import ScaledTranslation

__all__ = ["HOUSE_STYLE", "PALETTE", "Series", "build_figure", "line_chart"]

Style = str | Path | dict[str, Any] | Sequence[str | Path | dict[str, Any]] | None

# Okabe-Ito: distinguishable under the common colour-vision deficiencies. The yellow (#F0E442)
# is darkened to #B4AB32 because the original nearly vanishes against a white background.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#B4AB32", "#000000")

# Only what differs from matplotlib's defaults, so a user's own rcParams show through elsewhere.
# The dpi is pinned because the chart's size is given in pixels: it fixes the text size.
HOUSE_STYLE: dict[str, Any] = {
    "axes.prop_cycle": mpl.cycler(color=PALETTE),
    "axes.grid": True,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "grid.color": "#e4e4e4",
    "legend.edgecolor": "#c8c8c8",
    "lines.linewidth": 1.8,
    "figure.dpi": 100,
}

MIN_WIDTH, MIN_HEIGHT = 200, 150
REFERENCE_COLOUR = "#787878"
MAX_LEGEND_NAME = 32  # characters; longer series names end in "..." in the legend
# Series at the same x are shifted sideways by this many points each (at most MAX_DODGE in
# all) so their error bars stay visible; a fixed size in points, unlike data units, does not
# depend on the x spacing and leaves the data values on the artists untouched.
DODGE_STEP, MAX_DODGE = 3.0, 15.0

_RC_LOCK = threading.RLock()


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
        self.arrays()

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """`(x, y, low, high)` as float64 arrays of one length; a missing bound is all NaN."""
        x = _as_vector(self.x, "x", self)
        out = [x]
        for field in ("y", "low", "high"):
            values = getattr(self, field)
            vector = np.full(x.shape, np.nan) if values is None else _as_vector(values, field, self)
            if vector.shape != x.shape:
                raise ValueError(
                    f"series {self.name!r}: {field} has {vector.size} values but x has {x.size}"
                )
            out.append(vector)
        return out[0], out[1], out[2], out[3]


def _as_vector(values: Sequence[float], field: str, series: Series) -> np.ndarray:
    try:
        vector = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"series {series.name!r}: {field} must be numbers ({error})") from None
    if vector.ndim != 1:
        raise ValueError(f"series {series.name!r}: {field} must be 1-D, got {vector.shape}")
    return vector


@contextmanager
def _styled(style: Style) -> Iterator[None]:
    """rcParams for one chart: house style, then the caller's, restored on exit."""
    with _RC_LOCK, mpl.rc_context(HOUSE_STYLE), matplotlib.style.context(style or {}):
        yield


def _plottable(values: np.ndarray, log_y: bool) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.isfinite(values) & (values > 0) if log_y else np.isfinite(values)


def _check_limits(log_y: bool, y_min: float | None, y_max: float | None) -> None:
    for name, limit in (("y_min", y_min), ("y_max", y_max)):
        if limit is not None and not math.isfinite(limit):
            raise ValueError(f"{name} must be finite, got {limit}")
        if log_y and limit is not None and limit <= 0:
            raise ValueError(f"{name} must be > 0 on a log axis, got {limit}")
    if y_min is not None and y_max is not None and y_min >= y_max:
        raise ValueError(f"y_min ({y_min}) must be below y_max ({y_max})")


def _shorten(name: str) -> str:
    return name if len(name) <= MAX_LEGEND_NAME else name[: MAX_LEGEND_NAME - 3].rstrip() + "..."


def _draw_series(ax: Axes, index: int, series: Series, colour: Any, dodge: float) -> list[Artist]:
    """Error bars, then the line with markers (on top); returns the artists drawn."""
    x, y, low, high = series.arrays()
    order = np.argsort(x, kind="stable")  # the line joins points in x order
    x, y, low, high = x[order], y[order], low[order], high[order]
    log_y = ax.get_yscale() == "log"
    valid = np.isfinite(x) & _plottable(y, log_y)
    # NaN in the data is what makes matplotlib break the line, so every skipped point is NaN.
    y = np.where(valid, y, np.nan)
    ends = [np.where(valid & _plottable(b, log_y), b, y) for b in (low, high)]
    bottom, top = np.fmin.reduce([y, *ends]), np.fmax.reduce([y, *ends])
    has_bar = valid & (bottom < top)
    artists: list[Artist] = []
    if has_bar.any():
        bars = ax.vlines(x[has_bar], bottom[has_bar], top[has_bar], colors=colour, linewidth=1.2)
        artists.append(bars)
        caps = [(x[has_bar & (e != y)], e[has_bar & (e != y)]) for e in ends]
        cap_x, cap_y = (np.concatenate(c) for c in zip(*caps, strict=True))
        artists += ax.plot(cap_x, cap_y, "_", color=colour, markersize=8, markeredgewidth=1.2)
    # A thin white rim keeps overlapping markers of different series apart.
    artists += ax.plot(x, y, "-o", color=colour, markeredgecolor="white", markeredgewidth=0.8)
    artists[-1].set(label=_shorten(series.name), gid=f"series-{index}")
    # Shift only after adding: matplotlib takes data limits from artists drawn in plain data
    # coordinates, and ignores those whose transform is already shifted.
    shift = ax.transData + ScaledTranslation(dodge / 72, 0, ax.figure.dpi_scale_trans)
    for artist in artists:
        artist.set_transform(shift)
    # x values whose y is missing still belong on the axis, as for the other series.
    finite_x = x[np.isfinite(x)]
    ax.update_datalim(np.column_stack([finite_x, np.zeros_like(finite_x)]), updatey=False)
    return artists


def _display_points(artist: Artist) -> np.ndarray:
    """Pixel points along an artist's lines (vertices and 8 samples per segment)."""
    if isinstance(artist, LineCollection):
        runs = [artist.get_transform().transform(s) for s in artist.get_segments()]
    else:
        runs = [artist.get_transform().transform(artist.get_xydata())]
    t = np.linspace(0.0, 1.0, 10)[:, None, None]
    # Segments touching a NaN vertex sample to NaN, which no box contains: gaps stay gaps.
    return np.concatenate(
        [r if len(r) < 2 else (r[:-1] * (1 - t) + r[1:] * t).reshape(-1, 2) for r in runs]
    )


def _place_legend(figure: Figure, ax: Axes, data: list[Artist]) -> None:
    """Legend where matplotlib finds it best; outside on the right if that still covers data."""
    legend = ax.legend(loc="best")
    figure.draw_without_rendering()  # resolves "best" and the constrained layout
    box = legend.get_window_extent().padded(4)
    points = np.concatenate([_display_points(a) for a in data])
    with np.errstate(invalid="ignore"):
        inside = (points >= box.min) & (points <= box.max)
    if inside.all(axis=1).any():
        legend.remove()
        figure.legend(*ax.get_legend_handles_labels(), loc="outside right upper")
        figure.draw_without_rendering()


def build_figure(
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
    style: Style = None,
) -> Figure:
    """The laid-out `Figure` that `line_chart` renders for the same arguments; see there.

    On its one `Axes`, series `i`'s data line has gid `"series-i"` and the reference line gid
    `"reference"`; error bars are `LineCollection`s, their caps `"_"` markers.
    """
    if width < MIN_WIDTH or height < MIN_HEIGHT:
        raise ValueError(
            f"chart must be at least {MIN_WIDTH}x{MIN_HEIGHT} pixels, got {width}x{height}"
        )
    _check_limits(log_y, y_min, y_max)
    with _styled(style):
        dpi = mpl.rcParams["figure.dpi"]
        figure = Figure(figsize=(width / dpi, height / dpi), dpi=dpi, layout="constrained")
        FigureCanvasAgg(figure)  # attaches the Agg canvas to this figure only
        ax = figure.add_subplot()
        ax.set(title=title, xlabel=x_label, ylabel=y_label, yscale="log" if log_y else "linear")
        colours = mpl.rcParams["axes.prop_cycle"].by_key().get("color", PALETTE)
        step = min(DODGE_STEP, MAX_DODGE / max(len(series) - 1, 1))
        data: list[Artist] = []
        for i, one in enumerate(series):
            dodge = (i - (len(series) - 1) / 2) * step
            data += _draw_series(ax, i, one, colours[i % len(colours)], dodge)
        _finish_y_axis(ax, data, log_y, y_min, y_max, reference)
        if series:
            _place_legend(figure, ax, data)
        else:
            figure.draw_without_rendering()  # lays the figure out, as _place_legend does
    return figure


def _finish_y_axis(
    ax: Axes,
    data: list[Artist],
    log_y: bool,
    y_min: float | None,
    y_max: float | None,
    reference: float | None,
) -> None:
    """Reference line, "no data" note, explicit limits and log tick labels."""
    drawn = any(np.isfinite(a.get_ydata()).any() for a in data if _is_series(a))
    if reference is not None and math.isfinite(reference) and (reference > 0 or not log_y):
        line = ax.axhline(reference, color=REFERENCE_COLOUR, linestyle="--", linewidth=1.2)
        line.set(zorder=1, gid="reference")  # under the data
    elif not drawn:
        ax.set_ylim((1.0, 10.0) if log_y else (0.0, 1.0))  # not matplotlib's -0.05..0.05
    if not drawn:
        ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center",
                color="#555555", fontsize="large")  # fmt: skip
    if y_min is not None or y_max is not None:
        ax.set_ylim(bottom=y_min, top=y_max)
        lo, hi = ax.get_ylim()
        if lo >= hi:  # an explicit limit beyond all the data: keep it, invent the other end
            if y_min is not None:
                ax.set_ylim(y_min, y_min * 10 if log_y else y_min + max(abs(y_min), 1.0))
            elif y_max is not None:
                ax.set_ylim(y_max / 10 if log_y else y_max - max(abs(y_max), 1.0), y_max)
    if log_y:
        # Plain numbers (0.2, 1, 50) read better than 2x10^-1 over the few decades a ratio
        # spans; matplotlib's own rule still picks which minor ticks get a label.
        ax.yaxis.set_major_formatter(_PlainLogFormatter())
        ax.yaxis.set_minor_formatter(_PlainLogFormatter(labelOnlyBase=False))


class _PlainLogFormatter(LogFormatter):
    def _num_to_string(self, x: float, vmin: float, vmax: float) -> str:
        # The hook LogFormatter offers for the text of a label it has decided to show.
        return f"{x:.6g}"


def _is_series(artist: Artist) -> bool:
    return str(artist.get_gid()).startswith("series-")


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
    style: Style = None,
) -> np.ndarray:
    """`(height, width, 3) uint8` RGB image of one line per series, with optional error bars.

    Series `i` takes colour `i` of the style's colour cycle (`PALETTE` by default): a line
    through its points in x order, a marker per point and an error bar from `low` to `high`
    where given; series are dodged sideways a few points so bars at one x stay apart.
    Non-finite values (and non-positive ones when `log_y`) are skipped, and a skipped `y`
    breaks the line. `y_min` and `y_max` fix the y range; `reference` adds a dashed grey
    horizontal line at that y. With nothing drawable the axes still appear, with "no data" in
    the middle. The output depends only on the arguments, the rcParams and `style`.

    Raises `ValueError` for a chart smaller than 200x150, a series whose `x`, `y`, `low` and
    `high` lengths differ, or `y_min`/`y_max` that are non-finite, out of order, or not
    positive on a log axis.
    """
    # Rendering reads rcParams too (tick labels), so it happens under the same style.
    with _styled(style):
        figure = build_figure(
            series, title=title, x_label=x_label, y_label=y_label, width=width, height=height,
            log_y=log_y, y_min=y_min, y_max=y_max, reference=reference, style=style,
        )  # fmt: skip
        canvas = figure.canvas
        assert isinstance(canvas, FigureCanvasAgg)
        canvas.draw()
        return np.asarray(canvas.buffer_rgba())[..., :3].copy()
