"""Comma-separated lists from the command line: integers and ranges (`"0-3,7"`) and numbers
(`"-5,-2.5,0,2.5,5"`), the one parser behind `--seeds`, `--layers` and `--strengths`.

Counts are checked before anything is built: `0-1000000000` is refused from its two ends
and a 30,000-item list from its commas, so a typo costs a one-line `UserInputError`, never
the memory of the list it describes. Limits come from `lowrankgan.limits` (a name there, so
that `LOWRANKGAN_MAX_<NAME>` raises them) or are given as numbers.
"""

from __future__ import annotations

import math
import re

from lowrankgan.errors import UserInputError
from lowrankgan.limits import check_at_most

__all__ = ["parse_int_ranges", "parse_numbers"]

#: One item: `N` or `A-B`, each end an optional minus sign and ASCII digits.
_ITEM = re.compile(r"\s*(-?[0-9]+)\s*(?:-\s*(-?[0-9]+)\s*)?")
#: Digits past which an integer is out of any bound (and `int()` would be slow or refuse).
_MAX_DIGITS = 40


def parse_int_ranges(
    text: str,
    *,
    low: int | None = 0,
    high: int | None = None,
    most: str | int,
    what: str,
    example: str = "0-15 or 0,2,4",
) -> list[int]:
    """`"0-3,7"` -> `[0, 1, 2, 3, 7]`, in the order written (duplicates kept).

    Args:
        low, high: bounds of every value, inclusive (None: unbounded on that side); negative
            numbers are written as such (`-3--1` is -3, -2, -1) where `low` allows them.
        most: the most values the list may give: a limit's name (`"seeds"`) or a number;
            counted from the ranges' ends before any range is expanded.
        what: the values' name in messages (`"seeds"`).
        example: a well-formed list, shown when an item is not one.

    Raises:
        UserInputError: nothing given, an empty item (`1,,2`), an item that is not an integer
            or `A-B` range, an inverted range (`5-2`), a value out of bounds, or too many
            values.
    """
    shown = _shown(text)
    if not text.strip():
        raise UserInputError(f"no {what} given")
    # Each item gives at least one value: the commas alone may already be too many.
    _check_count(text.count(",") + 1, most, what)
    spans: list[tuple[int, int]] = []
    for part in text.split(","):
        match = _ITEM.fullmatch(part)
        if match is None:
            raise UserInputError(
                f"{what} must be integers or ranges like {example}; got {shown!r}"
                + _which(part, text)
            )
        first = _integer(match.group(1), low, high, what)
        last = first if match.group(2) is None else _integer(match.group(2), low, high, what)
        if last < first:
            raise UserInputError(
                f"the {what} range {part.strip()!r} is inverted; write it low-high"
            )
        spans.append((first, last))
    # Counted before expanding: a typo like 0-1000000000 must not eat the memory.
    _check_count(sum(last - first + 1 for first, last in spans), most, what)
    values: list[int] = []
    for first, last in spans:
        values.extend(range(first, last + 1))
    return values


def parse_numbers(text: str, *, most: str | int, what: str) -> list[float]:
    """`"-5,-2.5,0,2.5,5"` -> finite floats, at least one, counted before any is parsed.

    Raises:
        UserInputError: nothing given, an empty item, an item that is not a number, one that is
            not finite (nan, inf, 1e999), or more items than `most` (a limit's name or a number).
    """
    shown = _shown(text)
    if not text.strip():
        raise UserInputError(f"no {what} given")
    _check_count(text.count(",") + 1, most, what)
    values: list[float] = []
    for part in text.split(","):
        try:
            value = float(part)
        except ValueError:
            raise UserInputError(
                f"{what} must be comma-separated numbers, got {shown!r}" + _which(part, text)
            ) from None
        if not math.isfinite(value):
            raise UserInputError(f"{what} must be finite numbers, got {shown!r}")
        values.append(value)
    return values


def _integer(token: str, low: int | None, high: int | None, what: str) -> int:
    """One end of an item, within the bounds."""
    if len(token.lstrip("-")) > _MAX_DIGITS:
        value_text = f"a {len(token.lstrip('-'))}-digit number"
        value = None
    else:
        value = int(token)
        value_text = str(value)
    if value is None or (low is not None and value < low) or (high is not None and value > high):
        raise UserInputError(f"{what} must be integers {_bounds(low, high)}, got {value_text}")
    return value


def _bounds(low: int | None, high: int | None) -> str:
    if low is not None and high is not None:
        return f"in {low}..{high}"
    if low is not None:
        return f">= {low}"
    if high is not None:
        return f"<= {high}"
    return f"of at most {_MAX_DIGITS} digits"


def _check_count(count: int, most: str | int, what: str) -> None:
    if isinstance(most, str):
        check_at_most(count, most, f"the number of {what}")
    elif count > most:
        raise UserInputError(f"the number of {what} is {count:,}, over the limit of {most:,}")


def _which(part: str, text: str) -> str:
    """Which item of a longer list is wrong: `" (an empty item)"`, `" ('x')"`, or nothing
    when the list is that one item."""
    if not part.strip():
        return " (an empty item)"
    return "" if part.strip() == text.strip() else f" ({_shown(part.strip())!r})"


def _shown(text: str) -> str:
    return text if len(text) <= 60 else text[:57] + "..."
