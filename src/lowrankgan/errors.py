"""The one exception type for bad user input.

Anything a user can get wrong (a model name, a region, a file) raises `UserInputError` with a
message that fits on one line; the CLI prints it as `error: <message>` and exits with code 2.
Everything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserInputError(ValueError):
    """Bad input from the user: a one-line message, exit code 2 on the command line."""


def one_line(exc: BaseException, width: int = 160) -> str:
    """An exception's text folded onto one line and cut to `width` (its type if it has none),
    for the `UserInputError` messages that wrap a library's error."""
    return " ".join(str(exc).split())[:width] or type(exc).__name__
