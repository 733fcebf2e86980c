"""`make bench` must keep working: a quick run of every section writes its report."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quick_benchmark_writes_every_section(tmp_path: Path):
    out = tmp_path / "benchmarks.md"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [
            sys.executable,
            "bench/run.py",
            "--quick",
            "--sections",
            "jacobian,rpca",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    text = out.read_text()
    for heading in (
        "## Machine",
        "## Command",
        "## Jacobian field and region Gram",
        "## Robust PCA",
    ):
        assert heading in text
    assert "FAILED" not in text and "Skipped" not in text
