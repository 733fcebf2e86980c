"""`lowrankgan.ranges`: the one parser of `--seeds`, `--layers` and `--strengths` lists, its
click types, and the thin wrappers the rest of the package keeps calling."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable

import click
import click.testing
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lowrankgan.cli.options import LAYERS, MAX_SEED, SEEDS, STRENGTHS, IntRanges, parse_seeds
from lowrankgan.errors import UserInputError
from lowrankgan.limits import limit
from lowrankgan.models.stylegan2.family import parse_layers
from lowrankgan.pipeline.editing import parse_strengths
from lowrankgan.ranges import parse_int_ranges, parse_numbers


def format_int_ranges(values: Iterable[int]) -> str:
    """`[0, 1, 2, 3, 7]` -> `"0-3,7"`, the text the property tests write: the shortest that
    `parse_int_ranges` reads back as the sorted distinct values."""
    ordered = sorted(set(values))
    parts: list[str] = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(parts)


def ints(text: str, **kw: object) -> list[int]:
    options = {"low": 0, "high": None, "most": 10_000, "what": "values", **kw}
    return parse_int_ranges(text, **options)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- integers


def test_values_and_ranges_in_the_order_written():
    assert ints("0-3,7") == [0, 1, 2, 3, 7]
    assert ints("7, 0 - 2 ,5") == [7, 0, 1, 2, 5]
    assert ints("4-4") == [4]
    assert ints("3,3") == [3, 3]  # duplicates are the caller's business (layers drop them)


def test_negative_numbers_where_the_bounds_allow_them():
    assert ints("-3--1,2", low=-5) == [-3, -2, -1, 2]
    with pytest.raises(UserInputError, match="the values range '-1--4' is inverted"):
        ints("-1--4", low=-5)
    assert ints("-2-1", low=None) == [-2, -1, 0, 1]
    with pytest.raises(UserInputError, match=r"values must be integers >= 0, got -1"):
        ints("-1")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("5-2", "the values range '5-2' is inverted"),
        ("0-3,9-3", "the values range '9-3' is inverted"),
        ("", "no values given"),
        ("  ", "no values given"),
        ("1,,2", "(an empty item)"),
        ("0-3,", "(an empty item)"),
        (",", "(an empty item)"),
        ("a", "values must be integers or ranges like"),
        ("1,x", "('x')"),
        ("1.5", "values must be integers"),
        ("1e3", "values must be integers"),
        ("0x10", "values must be integers"),
        ("1-2-3", "values must be integers"),
        ("--1", "values must be integers"),
        ("١٢", "values must be integers"),  # non-ASCII digits, which int() would accept
        ("1_000", "values must be integers"),
        ("11", "values must be integers in 0..10, got 11"),
        ("3-11", "values must be integers in 0..10, got 11"),
        ("9" * 5000, "a 5000-digit number"),  # past int()'s own digit limit
    ],
)
def test_bad_lists_are_one_message(text: str, message: str):
    with pytest.raises(UserInputError, match="^[^\n]+$") as raised:
        ints(text, high=10)
    assert message in str(raised.value)


@pytest.mark.parametrize("text", ["0-1000000000000", "0-10,5-1000000000000", "1-" + "9" * 19])
def test_counts_are_refused_before_any_range_is_expanded(text: str):
    start = time.perf_counter()
    with pytest.raises(UserInputError, match="the number of seeds is .* over the limit of 10,000"):
        parse_int_ranges(text, low=0, high=MAX_SEED, most="seeds", what="seeds")
    assert time.perf_counter() - start < 0.5


def test_counts_are_checked_from_the_commas_first():
    text = ",".join(["1"] * 20_001)
    with pytest.raises(UserInputError, match="the number of values is 20,001"):
        ints(text)
    assert len(ints(",".join(["1"] * 10_000))) == 10_000


def test_a_limit_name_is_read_when_parsing(monkeypatch):
    with pytest.raises(UserInputError, match="LOWRANKGAN_MAX_SEEDS"):
        parse_int_ranges("0-10000", most="seeds", what="seeds")
    monkeypatch.setenv("LOWRANKGAN_MAX_SEEDS", "20000")
    assert len(parse_int_ranges("0-10000", most="seeds", what="seeds")) == 10_001


def test_format_int_ranges():
    assert format_int_ranges([7, 0, 1, 2, 3, -4, -3, 3]) == "-4--3,0-3,7"
    assert format_int_ranges([5]) == "5"
    assert format_int_ranges([]) == ""


@settings(max_examples=300, deadline=None)
@given(st.sets(st.integers(min_value=-1000, max_value=1000), min_size=1, max_size=200))
def test_formatted_ranges_parse_back_to_the_sorted_values(values: set[int]):
    text = format_int_ranges(values)
    assert parse_int_ranges(text, low=None, most=10_000, what="values") == sorted(values)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 50), st.integers(0, 50)).map(sorted), min_size=1, max_size=20
    ),
    st.sampled_from([",", ", ", " ,"]),
)
def test_any_list_of_ranges_expands_in_order(spans: list[list[int]], comma: str):
    text = comma.join(f"{a}-{b}" if a != b else str(a) for a, b in spans)
    expected = [v for a, b in spans for v in range(a, b + 1)]
    assert parse_int_ranges(text, most=10_000, what="values") == expected


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=30))
def test_any_text_is_a_list_or_one_user_error(text: str):
    try:
        values = ints(text, high=100)
    except UserInputError as exc:
        assert "\n" not in str(exc)
    else:
        assert values and all(0 <= v <= 100 for v in values)


# --------------------------------------------------------------------------- numbers


def test_numbers():
    got = parse_numbers("-5,-2.5,0, 2.5 ,5e0", most="strengths", what="strengths")
    assert got == [-5.0, -2.5, 0.0, 2.5, 5.0]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no strengths given"),
        ("1,,2", "strengths must be comma-separated numbers, got '1,,2' (an empty item)"),
        ("1,x", "strengths must be comma-separated numbers, got '1,x' ('x')"),
        ("nan", "strengths must be finite numbers"),
        ("1,-inf", "strengths must be finite numbers"),
        ("1e999", "strengths must be finite numbers"),
    ],
)
def test_bad_numbers(text: str, message: str):
    with pytest.raises(UserInputError) as raised:
        parse_numbers(text, most="strengths", what="strengths")
    assert message in str(raised.value)


def test_numbers_are_counted_before_parsing():
    text = ",".join(["x"] * (limit("strengths") + 1))  # not one of them is parsed
    with pytest.raises(UserInputError, match="the number of strengths is 1,001 values"):
        parse_numbers(text, most="strengths", what="strengths")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=50))
def test_numbers_round_trip(values: list[float]):
    text = ",".join(repr(v) for v in values)
    assert parse_numbers(text, most=1000, what="values") == values


# --------------------------------------------------------------------------- the wrappers


def test_parse_seeds_wrapper():
    assert parse_seeds("0-3,7") == [0, 1, 2, 3, 7]
    assert parse_seeds(f"{MAX_SEED}") == [MAX_SEED]
    for bad, message in [
        ("5-2", "inverted"),
        (f"{MAX_SEED + 1}", f"0..{MAX_SEED}"),
        ("0-99999999999", "the number of seeds"),
        ("", "no seeds given"),
    ]:
        with pytest.raises(UserInputError, match=message):
            parse_seeds(bad)


def test_parse_layers_wrapper():
    assert parse_layers("4-7", 18) == (4, 5, 6, 7)
    assert parse_layers("6,0-2,1", 8) == (0, 1, 2, 6)  # sorted, distinct
    assert parse_layers((3, 1, 3), 8) == (1, 3)
    assert parse_layers(None, 4) == (0, 1, 2, 3)
    for bad, message in [
        ("8", "layers must be integers in 0..7, got 8 (this model has 8 ws)"),
        ("3-1", "inverted"),
        ("a-b", "layers must be integers or ranges like 4-7 or 0,2,4"),
        ("0-100000000", "(this model has 8 ws)"),
    ]:
        with pytest.raises(UserInputError) as raised:
            parse_layers(bad, 8)
        assert message in str(raised.value)
    with pytest.raises(UserInputError, match=r"layers must lie in 0..7 \(this model has 8 ws\)"):
        parse_layers((9,), 8)


def test_parse_strengths_wrapper():
    assert parse_strengths("-1,0,1") == [-1.0, 0.0, 1.0]
    with pytest.raises(UserInputError, match="strengths must be finite"):
        parse_strengths("inf")


# --------------------------------------------------------------------------- click types


def test_click_types_convert_and_fail_as_bad_parameters():
    assert SEEDS.convert("0-2", None, None) == (0, 1, 2)
    assert SEEDS.convert((4, 5), None, None) == (4, 5)  # already values
    assert LAYERS.convert("4-5", None, None) == (4, 5)
    assert STRENGTHS.convert("-1,1", None, None) == (-1.0, 1.0)
    for kind, text, message in [
        (SEEDS, "3-1", "inverted"),
        (LAYERS, "-1", ">= 0"),
        (STRENGTHS, "1,x", "comma-separated"),
        (IntRanges(0, 9, 5, "picks"), "0-9", "the number of picks is 10, over the limit of 5"),
    ]:
        with pytest.raises(click.BadParameter, match=message):
            kind.convert(text, None, None)


def test_click_types_in_a_command():
    @click.command()
    @click.option("--seeds", type=SEEDS, default="0-2")
    @click.option("--strengths", type=STRENGTHS, default="1,2")
    def show(seeds: tuple[int, ...], strengths: tuple[float, ...]) -> None:
        click.echo(f"{list(seeds)} {list(strengths)}")

    runner = click.testing.CliRunner()
    assert runner.invoke(show, []).output == "[0, 1, 2] [1.0, 2.0]\n"
    assert runner.invoke(show, ["--seeds", "5,1-2"]).output == "[5, 1, 2] [1.0, 2.0]\n"
    bad = runner.invoke(show, ["--strengths", "nan"])
    assert bad.exit_code == 2
    assert "Invalid value for '--strengths': strengths must be finite numbers" in bad.output
    assert all(math.isfinite(v) for v in STRENGTHS.convert("1e308", None, None))
