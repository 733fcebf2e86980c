"""Shared test set-up: tests import their helpers (tests/structured.py) by module name, and
the `run_main` fixture runs the command line in this process.

The command line's error handling lives in `lowrankgan.cli.main` (exit code 2 and one
`error:` line on stderr, no traceback), so most command-line tests call it directly: the
same argv, the same checks, without the seconds a fresh interpreter and `import torch`
cost. Tests of the installed console script itself (entry point, `--help`, exit codes, peak
memory of a refusal) run it in a subprocess (tests/hostile.py).
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hostile import assert_one_error_line

sys.path.insert(0, str(Path(__file__).parent))


@dataclass
class MainRun:
    """What `main(argv)` did: like `subprocess.CompletedProcess` (text mode)."""

    returncode: int
    stdout: str
    stderr: str
    args: list[str]


@contextlib.contextmanager
def _environment(changes: dict[str, str | None] | None) -> Iterator[None]:
    """`os.environ` with `changes` (None removes a variable), restored afterwards."""
    saved = dict(os.environ)
    try:
        for name, value in (changes or {}).items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """One torch thread, as the console script gets from `OMP_NUM_THREADS=1` in tests: small
    linear algebra gets ten times slower when two threads fight over two busy cores."""
    import torch

    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


@contextlib.contextmanager
def _working_folder(folder: Path | None) -> Iterator[None]:
    """`folder` as the working folder (None: unchanged), restored afterwards (Python 3.10
    has no `contextlib.chdir`)."""
    if folder is None:
        yield
        return
    saved = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(saved)


def run_main(
    *args: object, env: dict[str, str | None] | None = None, cwd: Path | None = None
) -> MainRun:
    """`lowrankgan ARGS` through `lowrankgan.cli.main` in this process: its exit code and
    what it wrote to stdout and stderr. `env` changes environment variables for the call,
    `cwd` is the working folder during it. An exception that `main` lets through (a bug, with
    its traceback) propagates to the test."""
    from lowrankgan.cli import main

    argv = [os.fsdecode(a) if isinstance(a, bytes) else str(a) for a in args]
    out, err = io.StringIO(), io.StringIO()
    with (
        _environment({"LOWRANKGAN_TEST_CALLS": None, **(env or {})}),
        _working_folder(cwd),
        _one_thread(),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        code = main(argv)
    return MainRun(code, out.getvalue(), err.getvalue(), argv)


@pytest.fixture(scope="session", name="run_main")
def run_main_fixture() -> Callable[..., MainRun]:
    """`run_main(*args, env=None, cwd=None) -> MainRun`: the command line in-process."""
    return run_main


@pytest.fixture(scope="session", name="assert_one_error_line")
def assert_one_error_line_fixture() -> Callable[..., str]:
    return assert_one_error_line
