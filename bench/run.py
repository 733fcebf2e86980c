"""Run the benchmarks and write one Markdown report.

    python bench/run.py --out docs/benchmarks.md [--quick] [--sections jacobian,rpca,locality,path]

The report holds the date, the machine (CPU, cores, RAM, OS, Python, torch and its threads,
NumPy, the thread environment variables), the exact command, then each section's Markdown
and wall time. It is printed to stdout and written atomically (temporary file, then
`os.replace`). Thread settings are recorded, never changed: set OMP_NUM_THREADS yourself.
Each section is a module `bench_<name>.py` beside this file with `run(quick) -> str`,
imported only when its section runs. A section whose module does not exist is skipped with a
note; a section that fails is reported in the Markdown, the report is printed but not
written, and the exit status is 1.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import os
import platform
import shlex
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
SECTIONS = ("jacobian", "rpca", "locality", "path", "stylegan2", "biggan", "mobilestylegan")
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Hardware", "Processor"):
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _ram() -> str:
    try:
        with open("/proc/meminfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    return f"{int(line.split()[1]) / 2**20:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return "unknown"


def _usable_cores() -> str:
    logical = os.cpu_count()
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        return str(logical)
    return f"{logical} logical, {usable} usable by this process"


def machine_markdown() -> str:
    """The "Machine" section: hardware, software and the thread settings in force."""
    import numpy
    import torch

    env = ", ".join(f"{name}={os.environ.get(name, 'unset')}" for name in THREAD_VARIABLES)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "-"
    rows = [
        ("CPU", _cpu_model()),
        ("Cores", _usable_cores()),
        ("RAM", _ram()),
        ("OS", platform.platform()),
        ("Python", f"{platform.python_version()} ({platform.python_implementation()})"),
        (
            "torch",
            f"{torch.__version__}, {torch.get_num_threads()} threads "
            f"(torch.get_num_threads()), {torch.get_num_interop_threads()} inter-op",
        ),
        ("NumPy", numpy.__version__),
        ("Thread environment", env),
        ("Load average (1, 5, 15 min) at start", load),
    ]
    lines = ["## Machine", "", "| | |", "|---|---|"]
    lines += [f"| {key} | {value} |" for key, value in rows]
    return "\n".join(lines) + "\n"


def command_line(script: str, argv: list[str]) -> str:
    """The command as run, with the thread variables that were set in front of it."""
    prefix = [f"{name}={os.environ[name]}" for name in THREAD_VARIABLES if name in os.environ]
    python = sys.executable
    relative = os.path.relpath(python)
    if not relative.startswith(".."):
        python = relative if os.sep in relative else os.path.join(".", relative)
    return " ".join([*prefix, shlex.join([python, script, *argv])])


def load_section(name: str) -> Callable[..., str] | None:
    """`run` of `bench_<name>.py`, or None if that module does not exist."""
    if str(BENCH_DIR) not in sys.path:
        sys.path.insert(0, str(BENCH_DIR))
    module_name = f"bench_{name}"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            return None
        raise
    return module.run


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file in the same directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.unlink(temp)
        raise


def parse_sections(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [name for name in names if name not in SECTIONS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown section(s) {', '.join(unknown) or '(none)'}; choose from {','.join(SECTIONS)}"
        )
    return list(dict.fromkeys(names))


def main(argv: list[str] | None = None) -> int:
    script = sys.argv[0] if argv is None else os.path.relpath(__file__)
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="Markdown file to write")
    parser.add_argument("--quick", action="store_true", help="smoke run (under a minute)")
    parser.add_argument(
        "--sections",
        type=parse_sections,
        default=list(SECTIONS),
        help=f"comma-separated subset of {','.join(SECTIONS)}",
    )
    args = parser.parse_args(argv)

    started = dt.datetime.now(dt.timezone.utc).astimezone()
    total_start = time.perf_counter()
    parts = [
        "# lowrankgan benchmarks" + (" (quick smoke run)" if args.quick else ""),
        "",
        f"Date: {started.isoformat(timespec='seconds')}",
        "",
        machine_markdown(),
        "## Command",
        "",
        "```",
        command_line(script, argv),
        "```",
        "",
    ]
    failed = []
    walls = []
    for name in args.sections:
        start = time.perf_counter()
        try:
            run = load_section(name)
            if run is None:
                body = f"## {name}\n\nSkipped: `bench/bench_{name}.py` does not exist (yet).\n"
            else:
                body = run(quick=args.quick)
        except Exception:
            failed.append(name)
            body = f"## {name}\n\nFAILED:\n\n```\n{traceback.format_exc()}```\n"
        wall = time.perf_counter() - start
        walls.append((name, wall))
        parts += [body.rstrip("\n"), "", f"*Section `{name}` wall time: {wall:.1f} s.*", ""]
        print(f"[bench] {name}: {wall:.1f} s", file=sys.stderr, flush=True)
    total = time.perf_counter() - total_start
    summary = ", ".join(f"{name} {wall:.1f} s" for name, wall in walls)
    parts += [f"Total wall time: {total:.1f} s ({summary}).", ""]
    text = "\n".join(parts)
    print(text)
    if failed:
        print(
            f"[bench] failed sections: {', '.join(failed)}; {args.out} not written", file=sys.stderr
        )
        return 1
    write_atomic(args.out, text)
    print(f"[bench] wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
