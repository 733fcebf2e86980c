"""The README's Python example runs as written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def python_example() -> str:
    text = README.read_text()
    section = text.index("## Python API")
    start = text.index("```python", section) + len("```python")
    return text[start : text.index("```", start)]


def test_the_python_api_example_runs():
    code = python_example()
    assert "load_model" in code and "analyze" in code
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    ratio = float(done.stdout.strip().splitlines()[-1])
    assert 0 < ratio < 1  # the printed locality: the edit changes the eyes more than the rest
