"""The console script as tests run it (`SCRIPT`, `ENV`), and the helper for hostile-input
tests: run the real console script and check that it refused cleanly: exit 2, one `error:`
line on stderr, no traceback, nothing written, within a time and memory budget measured on
the child process itself (`os.wait4`'s peak RSS).

Importing torch alone costs about 230 MiB of RSS here, so `MAX_REFUSAL_RSS_MIB` leaves a
couple of hundred MiB for the refusal; a bomb that got decoded would blow far past it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

SCRIPT = Path(sys.executable).with_name("lowrankgan")
if not SCRIPT.exists():  # pragma: no cover - run from another interpreter
    SCRIPT = Path(shutil.which("lowrankgan") or "lowrankgan")

# One OpenMP thread: small linear algebra gets very slow when threads fight over 2 cores.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
ENV.pop("LOWRANKGAN_TEST_CALLS", None)

#: Peak RSS a refusal may reach (torch's import is ~230 MiB of it).
MAX_REFUSAL_RSS_MIB = 500
#: Seconds a refusal may take, torch's import included.
MAX_REFUSAL_SECONDS = 30


@dataclass
class ConsoleRun:
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    peak_rss_mib: float


#: Runs ARGV and writes its peak RSS (KiB) to a file. A child's high-water mark starts at its
#: parent's size when forked, so the measured command is forked from this small process, not
#: from a pytest process that may have grown to gigabytes.
_LAUNCHER = """
import os, sys
report, argv = sys.argv[1], sys.argv[2:]
pid = os.fork()
if pid == 0:
    try:
        os.execvp(argv[0], argv)
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
with open(report, "w") as f:
    f.write(str(usage.ru_maxrss))
code = os.waitstatus_to_exitcode(status)
sys.exit(code if code >= 0 else 128 - code)
"""


def run_console(
    *args: object,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 120,
    command: list | None = None,
) -> ConsoleRun:
    """Run `lowrankgan ARGS` (or `command`) and measure its wall time and peak RSS."""
    argv = command if command is not None else [str(SCRIPT), *map(str, args)]
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.TemporaryDirectory() as scratch,
    ):
        report = os.path.join(scratch, "rss")
        start = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-S", "-c", _LAUNCHER, report, *argv],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            cwd=cwd,
            env=env or ENV,
            start_new_session=True,
        )
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
        seconds = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        peak = int(Path(report).read_text()) / 1024 if os.path.exists(report) else float("inf")
        return ConsoleRun(
            returncode=proc.returncode,
            stdout=out.read().decode("utf-8", "replace"),
            stderr=err.read().decode("utf-8", "replace"),
            seconds=seconds,
            peak_rss_mib=peak,
        )


def tree(folder: Path) -> dict[str, bytes | None]:
    """Every path below `folder` (relative), with file contents; folders map to None."""
    found: dict[str, bytes | None] = {}
    for path in sorted(folder.rglob("*")):
        key = str(path.relative_to(folder))
        found[key] = path.read_bytes() if path.is_file() and not path.is_symlink() else None
    return found


def assert_refused(
    run: ConsoleRun,
    expect: str,
    *,
    unchanged: Path | None = None,
    before: dict[str, bytes | None] | None = None,
    max_rss_mib: float = MAX_REFUSAL_RSS_MIB,
    max_seconds: float = MAX_REFUSAL_SECONDS,
) -> str:
    """The run refused: exit 2, one `error:` line containing `expect` (case-insensitive), no
    traceback, within the budgets; `unchanged` (a folder) holds what it held `before` (default:
    nothing). Returns the error line."""
    line = assert_one_error_line(run, expect)
    assert run.peak_rss_mib < max_rss_mib, f"peak RSS {run.peak_rss_mib:.0f} MiB: {line}"
    assert run.seconds < max_seconds, f"{run.seconds:.1f} s: {line}"
    if unchanged is not None:
        assert tree(unchanged) == (before or {}), sorted(tree(unchanged))
    return line


def assert_one_error_line(run: object, phrase: str = "") -> str:
    """`run` (anything with `returncode`, `stdout`, `stderr`) failed as bad input must: exit 2,
    exactly one `error: ...` line on stderr containing `phrase`
    (case-insensitive), no traceback; returns the line."""
    detail = f"exit {run.returncode}\nstdout: {run.stdout[-2000:]}\nstderr: {run.stderr[-2000:]}"
    assert run.returncode == 2, detail
    assert "Traceback" not in run.stderr + run.stdout, detail
    lines = run.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), detail
    assert phrase.lower() in lines[0].lower(), lines[0]
    return lines[0]
