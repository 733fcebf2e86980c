"""Tests for plots: tick choice and labels, and where line_chart puts its pixels."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lowrankgan.report.charts import (
    PALETTE,
    Series,
    chart_layout,
    format_tick,
    line_chart,
    log_ticks,
    nice_ticks,
)

STRENGTHS = [1.0, 2.0, 3.0, 5.0]
WHITE = (255, 255, 255)


def colour_distance(image: np.ndarray, column: float, row: float, colour: tuple) -> int:
    """Largest channel difference between `colour` and the pixel containing `(column, row)`."""
    pixel = image[math.floor(row), math.floor(column)].astype(int)
    return int(np.abs(pixel - np.array(colour)).max())


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
# Ticks and labels


@pytest.mark.parametrize(
    ("lo", "hi", "expected"),
    [
        (0.03, 0.97, [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]),
        (1, 5, [1.0, 2.0, 3.0, 4.0, 5.0]),
        (0, 100, [0.0, 20.0, 40.0, 60.0, 80.0, 100.0]),
        (-1, 1, [-1.0, -0.5, 0.0, 0.5, 1.0]),
        (0.09, 1.45, [0.0, 0.5, 1.0, 1.5]),
        (0.0001, 0.0009, [0.0, 0.0002, 0.0004, 0.0006, 0.0008, 0.001]),
        (1, 1, [0.9, 0.95, 1.0, 1.05, 1.1]),
        (0, 0, [-1.0, -0.5, 0.0, 0.5, 1.0]),
        (5, 1, [1.0, 2.0, 3.0, 4.0, 5.0]),
    ],
)
def test_nice_ticks_are_round_steps_covering_the_range(lo, hi, expected):
    ticks = nice_ticks(lo, hi)
    assert ticks == expected
    assert 4 <= len(ticks) <= 8


def test_nice_ticks_rejects_non_finite_ranges():
    with pytest.raises(ValueError, match="finite"):
        nice_ticks(0.0, math.inf)


def test_nice_ticks_respect_a_smaller_budget():
    assert nice_ticks(0.03, 0.97, max_count=3) == [0.0, 0.5, 1.0]
    with pytest.raises(ValueError, match="max_count"):
        nice_ticks(0.0, 1.0, max_count=1)


@pytest.mark.parametrize(
    ("lo", "hi", "expected"),
    [
        (0.09, 1.45, [0.05, 0.1, 0.2, 0.5, 1.0, 2.0]),
        (1, 100, [1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0]),
        (1, 1000, [1.0, 10.0, 100.0, 1000.0]),
        (0.001, 0.5, [0.001, 0.01, 0.1, 1.0]),
        (1, 1, [0.5, 1.0, 2.0]),
        (1e-9, 1e9, [1e-9, 1e-6, 1e-3, 1.0, 1e3, 1e6, 1e9]),
    ],
)
def test_log_ticks_use_decades_with_2_and_5_only_for_narrow_ranges(lo, hi, expected):
    assert log_ticks(lo, hi) == expected


def test_log_ticks_reject_non_positive_ranges():
    with pytest.raises(ValueError, match="positive"):
        log_ticks(0.0, 1.0)


@pytest.mark.parametrize(
    ("value", "label"),
    [
        (0.0, "0"),
        (-0.0, "0"),
        (0.25, "0.25"),
        (1.0, "1"),
        (2.5, "2.5"),
        (0.6000000000000001, "0.6"),
        (0.01, "0.01"),
        (0.001, "1e-3"),
        (0.00025, "2.5e-4"),
        (20000.0, "20000"),
        (1e6, "1e6"),
        (-0.5, "-0.5"),
    ],
)
def test_format_tick_is_compact(value, label):
    assert format_tick(value) == label


# ---------------------------------------------------------------------------------------------
# Output and validation


def test_output_is_uint8_rgb_of_the_requested_size():
    image = line_chart(two_series(), title="t", x_label="x", y_label="y")
    assert image.shape == (420, 640, 3)
    assert image.dtype == np.uint8
    small = line_chart(two_series(), width=200, height=150)
    assert small.shape == (150, 200, 3)


def test_output_is_deterministic():
    arguments = dict(title="Locality", x_label="strength", y_label="ratio", reference=1.0)
    first = line_chart(two_series(), **arguments)
    second = line_chart(two_series(), **arguments)
    assert first.tobytes() == second.tobytes()


@pytest.mark.parametrize("field", ["y", "low", "high"])
def test_mismatched_lengths_raise(field):
    values = {"y": [1.0, 2.0, 3.0], "low": None, "high": None}
    values[field] = [1.0, 2.0]
    with pytest.raises(ValueError, match=f"{field} has 2 values but x has 3"):
        line_chart([Series("bad", [1.0, 2.0, 3.0], **values)])


@pytest.mark.parametrize(("width", "height"), [(199, 420), (640, 149)])
def test_too_small_charts_raise(width, height):
    with pytest.raises(ValueError, match="at least 200x150"):
        line_chart(two_series(), width=width, height=height)


def test_inconsistent_y_limits_raise():
    with pytest.raises(ValueError, match="y_min"):
        line_chart(two_series(), y_min=2.0, y_max=1.0)
    with pytest.raises(ValueError, match="log axis"):
        line_chart(two_series(), log_y=True, y_min=0.0)


# ---------------------------------------------------------------------------------------------
# Pixels


@pytest.mark.parametrize("log_y", [False, True])
def test_each_marker_is_drawn_in_its_series_colour_where_the_layout_says(log_y):
    series = two_series()
    image = line_chart(series, log_y=log_y, title="t", x_label="x", y_label="y")
    axes = chart_layout(series, log_y=log_y, title="t", x_label="x", y_label="y")
    for index, one in enumerate(series):
        for x, y in zip(one.x, one.y, strict=True):
            column, row = axes.marker_centre(index, x, y)
            assert colour_distance(image, column, row, PALETTE[index]) <= 8, (index, x, y)


def test_log_axis_places_points_by_decade():
    axes = chart_layout(two_series(), log_y=True)
    rows = [axes.to_pixel(1.0, y)[1] for y in (0.01, 0.1, 1.0)]
    assert rows[0] - rows[1] == pytest.approx(rows[1] - rows[2])
    assert rows[0] > rows[1] > rows[2]


def test_colours_cycle_after_eight_series():
    series = [Series(f"s{i}", [1.0, 2.0], [i, i + 0.5]) for i in range(9)]
    image = line_chart(series, height=600)
    axes = chart_layout(series, height=600)
    column, row = axes.marker_centre(8, 2.0, 8.5)
    assert colour_distance(image, column, row, PALETTE[0]) <= 8


def test_error_bar_is_drawn_between_low_and_high():
    series = [Series("a", [1.0], [1.0], low=[0.2], high=[1.8])]
    image = line_chart(series)
    axes = chart_layout(series)
    column, row = axes.marker_centre(0, 1.0, 1.0)
    row_low = axes.to_pixel(1.0, 0.2)[1]
    row_high = axes.to_pixel(1.0, 1.8)[1]
    for t in (0.3, 0.6):
        assert nearest_distance(image, column, row_low + (row - row_low) * t, PALETTE[0]) <= 40
        assert nearest_distance(image, column, row_high + (row - row_high) * t, PALETTE[0]) <= 40
    # Caps extend sideways at both ends; a bar alone would leave these pixels white.
    for end in (row_low, row_high):
        assert nearest_distance(image, column + 3, end, PALETTE[0]) <= 40
        assert colour_distance(image, column + 8, end, WHITE) <= 30


def test_series_at_the_same_x_are_dodged_so_their_error_bars_stay_visible():
    series = [
        Series("a", [1.0, 2.0], [1.0, 1.0], low=[0.2, 0.2]),
        Series("b", [1.0, 2.0], [1.0, 1.0], low=[0.2, 0.2]),
    ]
    image = line_chart(series)
    axes = chart_layout(series)
    assert axes.marker_centre(1, 1.0, 1.0)[0] - axes.marker_centre(0, 1.0, 1.0)[0] >= 3
    row = (axes.to_pixel(1.0, 0.2)[1] + axes.to_pixel(1.0, 1.0)[1]) / 2
    for index in (0, 1):
        column = axes.marker_centre(index, 1.0, 1.0)[0]
        assert nearest_distance(image, column, row, PALETTE[index]) <= 40


@pytest.mark.parametrize("missing", [math.nan, math.inf])
def test_non_finite_points_are_skipped_and_break_the_line(missing):
    complete = [Series("a", [1.0, 2.0, 3.0], [1.0, 2.0, 3.0])]
    gappy = [Series("a", [1.0, 2.0, 3.0], [1.0, missing, 3.0])]
    axes = chart_layout(complete)
    assert chart_layout(gappy) == axes
    column, row = axes.marker_centre(0, 2.0, 2.0)
    # Unbroken, the straight line 1 -> 3 would pass through (2, 2) even without the marker.
    assert colour_distance(line_chart(complete), column, row, PALETTE[0]) <= 8
    assert colour_distance(line_chart(gappy), column, row, PALETTE[0]) > 100
    # The finite neighbours are still drawn.
    end_column, end_row = axes.marker_centre(0, 3.0, 3.0)
    assert colour_distance(line_chart(gappy), end_column, end_row, PALETTE[0]) <= 8


def test_non_finite_error_bounds_are_skipped_without_losing_the_point():
    series = [Series("a", [1.0, 2.0], [1.0, 2.0], low=[math.nan, 1.5], high=[math.inf, 2.5])]
    axes = chart_layout(series)
    assert axes.y_range[1] < 10  # an infinite bound did not stretch the axis
    image = line_chart(series)
    column, row = axes.marker_centre(0, 1.0, 1.0)
    assert colour_distance(image, column, row, PALETTE[0]) <= 8


def test_all_nan_chart_still_draws_axes_and_says_no_data():
    series = [Series("a", [1.0, 2.0], [math.nan, math.nan])]
    labels = dict(title="empty", x_label="x", y_label="y")
    image = line_chart(series, **labels)
    assert image.shape == (420, 640, 3)
    axes = chart_layout(series, **labels)
    centre_row = round((axes.top + axes.bottom) / 2)
    centre_column = round((axes.left + axes.right) / 2)
    centre = image[centre_row - 10 : centre_row + 10, centre_column - 40 : centre_column + 40]
    assert (centre.max(axis=-1) < 120).sum() > 20
    # The axes box is there too: its left edge is a dark vertical line.
    edge = image[round(axes.top) + 5 : round(axes.bottom) - 5, math.floor(axes.left)]
    assert (edge.max(axis=-1) < 150).all()


def test_no_series_at_all_still_renders():
    image = line_chart([])
    assert image.shape == (420, 640, 3)
    assert (image.max(axis=-1) < 120).any()


def grey_pixels_on_row(image: np.ndarray, axes, row: float) -> int:
    """Pixels on `row` inside the plot box that are mid grey (darker than the grid)."""
    line = image[math.floor(row), math.ceil(axes.left) + 2 : math.floor(axes.right) - 2]
    line = line.astype(int)
    neutral = (line.max(axis=-1) - line.min(axis=-1)) <= 6
    mid = (line.mean(axis=-1) > 80) & (line.mean(axis=-1) < 190)
    return int((neutral & mid).sum())


def test_reference_line_is_dashed_grey_at_its_value():
    series = [Series("a", STRENGTHS, [2.0, 2.5, 3.0, 3.5])]
    axes = chart_layout(series, reference=1.0)
    row = axes.to_pixel(1.0, 1.0)[1]
    with_line = grey_pixels_on_row(line_chart(series, reference=1.0), axes, row)
    without = grey_pixels_on_row(line_chart(series), axes, row)
    width = axes.right - axes.left
    assert without == 0
    # Dashed: well over a third of the row is grey, but not all of it.
    assert 0.35 * width < with_line < 0.9 * width


def test_reference_value_is_kept_inside_the_y_range():
    series = [Series("a", STRENGTHS, [2.0, 2.5, 3.0, 3.5])]
    axes = chart_layout(series, reference=1.0)
    assert axes.y_range[0] <= 1.0


def test_explicit_y_limits_are_the_axis_range():
    axes = chart_layout(two_series(), y_min=0.0, y_max=1.2)
    assert axes.y_range == (0.0, 1.2)
    assert axes.y_ticks == (0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.2)
    # The point at y = 4 lies above the box; neither it nor the line rising to it may spill
    # into the margin above the plot.
    assert axes.marker_centre(1, 5.0, 4.0)[1] < axes.top
    image = line_chart(two_series(), y_min=0.0, y_max=1.2)
    margin = image[: math.floor(axes.top) - 1].astype(int)
    assert (np.abs(margin - np.array(PALETTE[1])).max(axis=-1) > 60).all()


def rising_series() -> list[Series]:
    return [
        Series("subspace", STRENGTHS, [0.1, 0.2, 0.3, 0.5]),
        Series("baseline", STRENGTHS, [0.4, 0.6, 0.8, 1.0]),
    ]


def test_legend_shows_each_series_colour_in_a_corner_free_of_data():
    series = rising_series()
    axes = chart_layout(series)
    assert axes.legend_names == ("subspace", "baseline")
    x0, y0, x1, y1 = axes.legend_box
    assert axes.left <= x0 < x1 <= axes.right and axes.top <= y0 < y1 <= axes.bottom
    # Lines rise to the top right, so the legend must sit elsewhere.
    assert x1 < (axes.left + axes.right) / 2
    for index, one in enumerate(series):
        for x, y in zip(one.x, one.y, strict=True):
            column, row = axes.marker_centre(index, x, y)
            assert not (x0 <= column <= x1 and y0 <= row <= y1)
    image = line_chart(series)
    box = image[math.ceil(y0) : math.floor(y1), math.ceil(x0) : math.floor(x1)].astype(int)
    for index in range(len(series)):
        assert (np.abs(box - np.array(PALETTE[index])).max(axis=-1) <= 8).any(), index


def test_legend_moves_outside_the_plot_when_every_corner_is_busy():
    series = [
        Series(f"s{i}", [0.0, 1.0, 2.0, 3.0], [i, 9 - i, i, 9 - i], low=[0, 0, 0, 0])
        for i in range(10)
    ]
    axes = chart_layout(series)
    x0, _, x1, _ = axes.legend_box
    assert axes.right < x0 < x1 <= axes.width
    assert len(axes.legend_names) == 10


def test_long_names_are_shortened_in_the_legend():
    series = [Series("a very long method name " * 6, [1.0, 2.0], [1.0, 2.0])]
    axes = chart_layout(series)
    (name,) = axes.legend_names
    assert name.endswith("...")
    assert axes.legend_box[2] - axes.legend_box[0] < 0.5 * (axes.right - axes.left)
