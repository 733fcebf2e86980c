"""Tests for plots: what build_figure draws, and where line_chart puts its pixels."""

from __future__ import annotations

import math
import subprocess
import sys
import threading

import matplotlib as mpl
import numpy as np
import pytest
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.colors import to_hex, to_rgb
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from lowrankgan.report.charts import PALETTE, Series, build_figure, line_chart
from lowrankgan.report.render import png_bytes

STRENGTHS = [1.0, 2.0, 3.0, 5.0]
WHITE = (255, 255, 255)


def rgb(colour: str) -> tuple[int, int, int]:
    r, g, b = to_rgb(colour)
    return round(r * 255), round(g * 255), round(b * 255)


def series_lines(figure: Figure) -> list[Line2D]:
    """The data line of each series, in series order."""
    lines = [line for line in figure.axes[0].lines if str(line.get_gid()).startswith("series-")]
    return sorted(lines, key=lambda line: int(line.get_gid().split("-")[1]))


def error_bars(figure: Figure) -> list[LineCollection]:
    return [c for c in figure.axes[0].collections if isinstance(c, LineCollection)]


def pixel(artist, x: float, y: float) -> tuple[float, float]:
    """Image `(column, row)` (origin top-left) where `artist` (or an Axes) draws `(x, y)`."""
    transform = artist.transData if isinstance(artist, Axes) else artist.get_transform()
    column, up = transform.transform((x, y))
    return column, artist.figure.bbox.height - up


def colour_distance(image: np.ndarray, column: float, row: float, colour: tuple) -> int:
    """Largest channel difference between `colour` and the pixel containing `(column, row)`."""
    value = image[math.floor(row), math.floor(column)].astype(int)
    return int(np.abs(value - np.array(colour)).max())


def nearest_distance(image: np.ndarray, column: float, row: float, colour: tuple) -> int:
    """Like `colour_distance` but the best of the 3x3 pixels around the point.

    Thin lines are antialiased, so their colour is only exact on the pixel nearest their axis.
    """
    r, c = math.floor(row), math.floor(column)
    window = image[r - 1 : r + 2, c - 1 : c + 2].astype(int)
    return int(np.abs(window - np.array(colour)).max(axis=-1).min())


def two_series() -> list[Series]:
    return [
        Series("subspace", STRENGTHS, [0.1, 0.5, 0.3, 0.9]),
        Series("baseline", STRENGTHS, [0.6, 0.02, 0.8, 4.0]),
    ]


# ---------------------------------------------------------------------------------------------
# Output and validation


def test_output_is_uint8_rgb_of_the_requested_size():
    image = line_chart(two_series(), title="t", x_label="x", y_label="y")
    assert image.shape == (420, 640, 3)
    assert image.dtype == np.uint8
    small = line_chart(two_series(), width=200, height=150)
    assert small.shape == (150, 200, 3)
    # The size is in pixels whatever the dpi (which only scales the text).
    assert line_chart(two_series(), width=333, style={"figure.dpi": 72}).shape == (420, 333, 3)


def test_output_is_deterministic():
    arguments = dict(title="Locality", x_label="strength", y_label="ratio", reference=1.0)
    first = line_chart(two_series(), **arguments)
    second = line_chart(two_series(), **arguments)
    assert first.tobytes() == second.tobytes()
    assert png_bytes(first) == png_bytes(second)


def test_labels_and_title_are_set():
    figure = build_figure(two_series(), title="Locality", x_label="strength", y_label="ratio")
    ax = figure.axes[0]
    assert (ax.get_title(), ax.get_xlabel(), ax.get_ylabel()) == ("Locality", "strength", "ratio")
    assert [line.get_label() for line in series_lines(figure)] == ["subspace", "baseline"]


@pytest.mark.parametrize("field", ["y", "low", "high"])
def test_mismatched_lengths_raise(field):
    values = {"y": [1.0, 2.0, 3.0], "low": None, "high": None}
    values[field] = [1.0, 2.0]
    with pytest.raises(ValueError, match=f"{field} has 2 values but x has 3"):
        line_chart([Series("bad", [1.0, 2.0, 3.0], **values)])


def test_non_numeric_or_nested_values_raise():
    with pytest.raises(ValueError, match="y must be numbers"):
        Series("bad", [1.0, 2.0], ["a", "b"])
    with pytest.raises(ValueError, match="x must be 1-D"):
        Series("bad", [[1.0, 2.0]], [1.0, 2.0])


@pytest.mark.parametrize(("width", "height"), [(199, 420), (640, 149)])
def test_too_small_charts_raise(width, height):
    with pytest.raises(ValueError, match="at least 200x150"):
        line_chart(two_series(), width=width, height=height)


def test_inconsistent_y_limits_raise():
    with pytest.raises(ValueError, match="y_min"):
        line_chart(two_series(), y_min=2.0, y_max=1.0)
    with pytest.raises(ValueError, match="log axis"):
        line_chart(two_series(), log_y=True, y_min=0.0)
    with pytest.raises(ValueError, match="y_max must be finite"):
        line_chart(two_series(), y_max=math.inf)


def test_pyplot_is_never_imported():
    code = "import sys, lowrankgan.report.charts; sys.exit('matplotlib.pyplot' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0


# ---------------------------------------------------------------------------------------------
# What is drawn


@pytest.mark.parametrize("log_y", [False, True])
def test_each_marker_is_drawn_in_its_series_colour_where_the_figure_says(log_y):
    series = two_series()
    labels = dict(log_y=log_y, title="t", x_label="x", y_label="y")
    image = line_chart(series, **labels)
    lines = series_lines(build_figure(series, **labels))
    for index, (one, line) in enumerate(zip(series, lines, strict=True)):
        assert to_hex(line.get_color()) == PALETTE[index].lower()
        assert line.get_marker() == "o"
        for x, y in zip(one.x, one.y, strict=True):
            column, row = pixel(line, x, y)
            assert colour_distance(image, column, row, rgb(PALETTE[index])) <= 8, (index, x, y)


def test_log_axis_places_points_by_decade():
    figure = build_figure(two_series(), log_y=True)
    ax = figure.axes[0]
    assert ax.get_yscale() == "log"
    rows = [pixel(ax, 1.0, y)[1] for y in (0.01, 0.1, 1.0)]
    assert rows[0] - rows[1] == pytest.approx(rows[1] - rows[2])
    assert rows[0] > rows[1] > rows[2]
    labels = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
    assert "0.1" in labels and "1" in labels  # plain numbers, not 10^-1


def test_log_axis_skips_non_positive_values():
    series = [Series("a", STRENGTHS, [-1.0, 0.0, 0.5, 2.0], low=[0.1, 0.1, -1.0, 1.0])]
    figure = build_figure(series, log_y=True)
    (line,) = series_lines(figure)
    assert np.isnan(line.get_ydata()[:2]).all()
    assert line.get_ydata()[2:].tolist() == [0.5, 2.0]
    # The non-positive low bound of 0.5 is dropped; the bar of 2.0 still reaches 1.0.
    (bars,) = error_bars(figure)
    assert [seg[:, 1].tolist() for seg in bars.get_segments()] == [[1.0, 2.0]]
    assert figure.axes[0].get_ylim()[0] > 0


def test_colours_cycle_after_eight_series():
    series = [Series(f"s{i}", [1.0, 2.0], [i, i + 0.5]) for i in range(9)]
    image = line_chart(series, height=600)
    line = series_lines(build_figure(series, height=600))[8]
    assert to_hex(line.get_color()) == PALETTE[0].lower()
    column, row = pixel(line, 2.0, 8.5)
    assert colour_distance(image, column, row, rgb(PALETTE[0])) <= 8


def test_error_bar_is_drawn_between_low_and_high():
    series = [Series("a", [1.0], [1.0], low=[0.2], high=[1.8])]
    figure = build_figure(series)
    (bars,) = error_bars(figure)
    (segment,) = bars.get_segments()
    assert segment.tolist() == [[1.0, 0.2], [1.0, 1.8]]
    caps = [line for line in figure.axes[0].lines if line.get_marker() == "_"]
    assert [sorted(cap.get_ydata().tolist()) for cap in caps] == [[0.2, 1.8]]
    image = line_chart(series)
    (line,) = series_lines(figure)
    column, row = pixel(line, 1.0, 1.0)
    row_low, row_high = pixel(bars, 1.0, 0.2)[1], pixel(bars, 1.0, 1.8)[1]
    colour = rgb(PALETTE[0])
    for t in (0.3, 0.6):
        assert nearest_distance(image, column, row_low + (row - row_low) * t, colour) <= 40
        assert nearest_distance(image, column, row_high + (row - row_high) * t, colour) <= 40
    # Caps extend sideways at both ends; a bar alone would leave these pixels white.
    for end in (row_low, row_high):
        assert nearest_distance(image, column + 3, end, colour) <= 40
        assert colour_distance(image, column + 10, end, WHITE) <= 30


def test_series_at_the_same_x_are_dodged_so_their_error_bars_stay_visible():
    series = [
        Series("a", [1.0, 2.0], [1.0, 1.0], low=[0.2, 0.2]),
        Series("b", [1.0, 2.0], [1.0, 1.0], low=[0.2, 0.2]),
    ]
    figure = build_figure(series)
    lines = series_lines(figure)
    # Shifted on screen only: the data on the artists is unchanged.
    assert [line.get_xdata().tolist() for line in lines] == [[1.0, 2.0], [1.0, 2.0]]
    columns = [pixel(line, 1.0, 1.0)[0] for line in lines]
    assert columns[1] - columns[0] >= 3
    image = line_chart(series)
    for index, bars in enumerate(error_bars(figure)):
        column, row = pixel(bars, 1.0, 0.6)
        assert column == pytest.approx(columns[index])
        assert nearest_distance(image, column, row, rgb(PALETTE[index])) <= 40


@pytest.mark.parametrize("missing", [math.nan, math.inf])
def test_non_finite_points_are_skipped_and_break_the_line(missing):
    complete = build_figure([Series("a", [1.0, 2.0, 3.0], [1.0, 2.0, 3.0])])
    gappy = build_figure([Series("a", [1.0, 2.0, 3.0], [1.0, missing, 3.0])])
    (line,) = series_lines(gappy)
    assert np.isnan(line.get_ydata()[1])
    # Two runs of one point each: each starts with a MOVETO once NaNs are removed.
    path = line.get_path().cleaned(remove_nans=True)
    assert (path.codes == path.MOVETO).sum() == 2
    ax, gappy_ax = complete.axes[0], gappy.axes[0]
    assert (gappy_ax.get_xlim(), gappy_ax.get_ylim()) == (ax.get_xlim(), ax.get_ylim())
    column, row = pixel(series_lines(complete)[0], 2.0, 2.0)
    colour = rgb(PALETTE[0])
    # Unbroken, the straight line 1 -> 3 would pass through (2, 2) even without the marker.
    assert (
        colour_distance(line_chart([Series("a", [1, 2, 3], [1, 2, 3])]), column, row, colour) <= 8
    )
    image = line_chart([Series("a", [1.0, 2.0, 3.0], [1.0, missing, 3.0])])
    assert colour_distance(image, column, row, colour) > 100
    # The finite neighbours are still drawn.
    assert colour_distance(image, *pixel(line, 3.0, 3.0), colour) <= 8


def test_points_are_joined_in_x_order():
    (line,) = series_lines(build_figure([Series("a", [3.0, 1.0, 2.0], [30.0, 10.0, 20.0])]))
    assert line.get_xdata().tolist() == [1.0, 2.0, 3.0]
    assert line.get_ydata().tolist() == [10.0, 20.0, 30.0]


def test_non_finite_error_bounds_are_skipped_without_losing_the_point():
    series = [Series("a", [1.0, 2.0], [1.0, 2.0], low=[math.nan, 1.5], high=[math.inf, 2.5])]
    figure = build_figure(series)
    assert figure.axes[0].get_ylim()[1] < 10  # an infinite bound did not stretch the axis
    (bars,) = error_bars(figure)
    assert [seg.tolist() for seg in bars.get_segments()] == [[[2.0, 1.5], [2.0, 2.5]]]
    (line,) = series_lines(figure)
    column, row = pixel(line, 1.0, 1.0)
    assert colour_distance(line_chart(series), column, row, rgb(PALETTE[0])) <= 8


def test_all_nan_chart_still_draws_axes_and_says_no_data():
    series = [Series("a", [1.0, 2.0], [math.nan, math.nan])]
    labels = dict(title="empty", x_label="x", y_label="y")
    figure = build_figure(series, **labels)
    ax = figure.axes[0]
    assert [t.get_text() for t in ax.texts] == ["no data"]
    assert ax.get_ylim() == (0.0, 1.0)
    lo, hi = ax.get_xlim()
    assert lo <= 1.0 and hi >= 2.0  # the x values are still on the axis
    image = line_chart(series, **labels)
    assert image.shape == (420, 640, 3)
    x0, y0, x1, y1 = ax.bbox.extents
    top, bottom = figure.bbox.height - y1, figure.bbox.height - y0
    centre_row, centre_column = round((top + bottom) / 2), round((x0 + x1) / 2)
    centre = image[centre_row - 10 : centre_row + 10, centre_column - 40 : centre_column + 40]
    assert (centre.max(axis=-1) < 120).sum() > 20
    # The left spine is there: a dark vertical line along the plot box.
    edge = image[round(top) + 5 : round(bottom) - 5, math.floor(x0) - 1 : math.floor(x0) + 2]
    assert (edge.min(axis=1).max(axis=-1) < 150).all()


def test_no_series_at_all_still_renders():
    figure = build_figure([])
    assert figure.axes[0].get_legend() is None and not figure.legends
    assert [t.get_text() for t in figure.axes[0].texts] == ["no data"]
    image = line_chart([])
    assert image.shape == (420, 640, 3)
    assert (image.max(axis=-1) < 120).any()


def reference_lines(figure: Figure) -> list[Line2D]:
    return [line for line in figure.axes[0].lines if line.get_gid() == "reference"]


def grey_pixels_on_row(image: np.ndarray, figure: Figure, row: float) -> int:
    """Pixels on `row` inside the plot box that are mid grey (darker than the grid)."""
    x0, _, x1, _ = figure.axes[0].bbox.extents
    line = image[math.floor(row), math.ceil(x0) + 2 : math.floor(x1) - 2].astype(int)
    neutral = (line.max(axis=-1) - line.min(axis=-1)) <= 6
    mid = (line.mean(axis=-1) > 80) & (line.mean(axis=-1) < 190)
    return int((neutral & mid).sum())


def test_reference_line_is_dashed_grey_at_its_value():
    series = [Series("a", STRENGTHS, [2.0, 2.5, 3.0, 3.5])]
    figure = build_figure(series, reference=1.0)
    (line,) = reference_lines(figure)
    assert line.get_ydata() == [1.0, 1.0]
    assert line.get_linestyle() == "--"
    red, green, blue = rgb(line.get_color())
    assert red == green == blue and 80 < red < 190
    assert reference_lines(build_figure(series)) == []
    row = pixel(figure.axes[0], 1.0, 1.0)[1]
    with_line = grey_pixels_on_row(line_chart(series, reference=1.0), figure, row)
    without = grey_pixels_on_row(line_chart(series), figure, row)
    width = figure.axes[0].bbox.width
    assert without == 0
    # Dashed: well over a third of the row is grey, but not all of it.
    assert 0.35 * width < with_line < 0.9 * width


def test_reference_value_is_kept_inside_the_y_range():
    series = [Series("a", STRENGTHS, [2.0, 2.5, 3.0, 3.5])]
    assert build_figure(series, reference=1.0).axes[0].get_ylim()[0] <= 1.0


def test_reference_that_a_log_axis_cannot_show_is_left_out():
    series = [Series("a", STRENGTHS, [2.0, 2.5, 3.0, 3.5])]
    assert reference_lines(build_figure(series, log_y=True, reference=0.0)) == []
    assert reference_lines(build_figure(series, reference=math.nan)) == []


def test_explicit_y_limits_are_the_axis_range():
    figure = build_figure(two_series(), y_min=0.0, y_max=1.2)
    assert figure.axes[0].get_ylim() == (0.0, 1.2)
    # The point at y = 4 lies above the box; neither it nor the line rising to it may spill
    # into the margin above the plot.
    line = series_lines(figure)[1]
    assert line.get_clip_on()
    top = figure.bbox.height - figure.axes[0].bbox.y1
    assert pixel(line, 5.0, 4.0)[1] < top
    image = line_chart(two_series(), y_min=0.0, y_max=1.2)
    margin = image[: math.floor(top) - 1].astype(int)
    assert (np.abs(margin - np.array(rgb(PALETTE[1]))).max(axis=-1) > 60).all()


def test_one_explicit_limit_beyond_all_data_keeps_that_limit():
    series = [Series("a", STRENGTHS, [2.0, 2.5, 3.0, 3.5])]
    assert build_figure(series, y_min=5.0).axes[0].get_ylim() == (5.0, 10.0)
    assert build_figure(series, y_max=1.0).axes[0].get_ylim() == (0.0, 1.0)
    assert build_figure(series, log_y=True, y_max=1.0).axes[0].get_ylim() == (0.1, 1.0)


# ---------------------------------------------------------------------------------------------
# Legend


def rising_series() -> list[Series]:
    return [
        Series("subspace", STRENGTHS, [0.1, 0.2, 0.3, 0.5]),
        Series("baseline", STRENGTHS, [0.4, 0.6, 0.8, 1.0]),
    ]


def test_legend_shows_each_series_colour_inside_the_plot_clear_of_data():
    series = rising_series()
    figure = build_figure(series)
    ax = figure.axes[0]
    legend = ax.get_legend()
    assert legend is not None and not figure.legends
    assert [t.get_text() for t in legend.get_texts()] == ["subspace", "baseline"]
    box = legend.get_window_extent()
    assert ax.bbox.x0 <= box.x0 < box.x1 <= ax.bbox.x1
    assert ax.bbox.y0 <= box.y0 < box.y1 <= ax.bbox.y1
    for line in series_lines(figure):
        for x, y in zip(line.get_xdata(), line.get_ydata(), strict=True):
            assert not box.contains(*line.get_transform().transform((x, y)))
    image = line_chart(series)
    height = figure.bbox.height
    rows = slice(math.ceil(height - box.y1), math.floor(height - box.y0))
    inside = image[rows, math.ceil(box.x0) : math.floor(box.x1)].astype(int)
    for index in range(len(series)):
        assert (np.abs(inside - np.array(rgb(PALETTE[index]))).max(axis=-1) <= 8).any(), index


def test_legend_moves_outside_the_plot_when_it_would_cover_data():
    series = [
        Series(f"s{i}", [0.0, 1.0, 2.0, 3.0], [i, 9 - i, i, 9 - i], low=[0, 0, 0, 0])
        for i in range(10)
    ]
    figure = build_figure(series)
    ax = figure.axes[0]
    assert ax.get_legend() is None
    (legend,) = figure.legends
    box = legend.get_window_extent()
    assert ax.bbox.x1 < box.x0 < box.x1 <= figure.bbox.width
    assert len(legend.get_texts()) == 10


def test_long_names_are_shortened_in_the_legend():
    figure = build_figure([Series("a very long method name " * 6, [1.0, 2.0], [1.0, 2.0])])
    legend = figure.axes[0].get_legend() or figure.legends[0]
    (text,) = legend.get_texts()
    assert text.get_text().endswith("...")
    assert legend.get_window_extent().width < 0.5 * figure.axes[0].bbox.width


# ---------------------------------------------------------------------------------------------
# Styles


def test_a_style_overrides_the_house_style_and_leaves_rcparams_alone():
    before = dict(mpl.rcParams)
    style = {"axes.prop_cycle": mpl.cycler(color=["#ff0000", "#00ff00"]), "axes.titlesize": 20}
    figure = build_figure(two_series(), title="t", style=style)
    assert [to_hex(line.get_color()) for line in series_lines(figure)] == ["#ff0000", "#00ff00"]
    assert figure.axes[0].title.get_fontsize() == 20
    assert dict(mpl.rcParams) == before
    # Without a style, the house look: Okabe-Ito colours and a grid.
    plain = build_figure(two_series(), title="t")
    assert to_hex(series_lines(plain)[0].get_color()) == PALETTE[0].lower()
    assert plain.axes[0].title.get_fontsize() == 12
    assert plain.axes[0].xaxis.get_gridlines()[0].get_visible()


def test_named_styles_and_lists_are_accepted():
    figure = build_figure(two_series(), style=["ggplot", {"axes.grid": False}])
    ax = figure.axes[0]
    assert to_hex(ax.get_facecolor()) == "#e5e5e5"  # ggplot's grey panel
    assert not ax.xaxis.get_gridlines()[0].get_visible()


def test_charts_drawn_at_once_in_threads_match_those_drawn_one_by_one():
    styles = [None, {"font.size": 14}, "ggplot", {"lines.linewidth": 4}]
    expected = [line_chart(two_series(), title="t", style=s).tobytes() for s in styles]
    results: list[bytes | None] = [None] * len(styles)

    def draw(i: int) -> None:
        results[i] = line_chart(two_series(), title="t", style=styles[i]).tobytes()

    threads = [threading.Thread(target=draw, args=(i,)) for i in range(len(styles))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == expected
    assert len(set(expected)) == len(styles)  # the styles really differ
