"""The README's Python example runs as written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import sg2_checkpoints as sg2
from lowrankgan.models.stylegan2.network import random_stylegan2

README = Path(__file__).resolve().parents[1] / "README.md"


def python_example(number: int = 0) -> str:
    """The `number`-th Python block of the README's Python API section."""
    text = README.read_text()
    start = text.index("## Python API")
    for _ in range(number + 1):
        start = text.index("```python", start) + len("```python")
    return text[start : text.index("```", start)]


def run_example(code: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run a README example in a fresh interpreter (one thread); it must succeed."""
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def test_the_python_api_example_runs():
    code = python_example()
    assert "load_model" in code and "analyze" in code
    done = run_example(code)
    lines = done.stdout.strip().splitlines()
    ratio = float(lines[-2])
    assert 0 < ratio < 1  # the printed locality: the edit changes the eyes more than the rest
    # the edit to a change: distances, the changes reached (to 0.1%), both reached
    assert lines[-1].endswith("[ True  True]"), lines[-1]
    achieved = [float(v) for v in lines[-1].split("]")[1].strip(" [").split()]
    assert achieved == pytest.approx([-0.1, 0.1], rel=1e-3)


def test_the_evaluation_example_runs(tmp_path: Path):
    code = python_example(1)
    assert "evaluate" in code
    done = run_example(code, tmp_path)
    out = tmp_path / "runs" / "eval-api"
    assert done.stdout.strip() == "runs/eval-api/index.html"
    rows = (out / "results.csv").read_text().splitlines()
    assert len(rows) == 1 + 4 * 2 * 4 * 2 * (
        1 + 2
    )  # methods x regions x seeds x strengths x images


def test_the_w_analysis_w_plus_edit_example_runs(tmp_path: Path):
    """The StyleGAN2 example, on a small random generator saved as an original TF pickle
    under the name the example uses (FFHQ presets come from the file name)."""
    code = python_example(2)
    assert 'space="wplus", layers="4-7"' in code and "edit_many" in code
    network = random_stylegan2(resolution=32, channels_max=32, z_dim=16, w_dim=16)
    sg2.write_tf_pkl(tmp_path / "stylegan2-ffhq-config-f.pkl", network.state_dict())
    done = run_example(code, tmp_path)
    lines = done.stdout.strip().splitlines()
    # 8 ws at 32 px: layers 4-7 get their own w, the other four share one -> 5 blocks of 16
    assert lines[0] == "(3, 80) (3, 3, 32, 32)"
    assert lines[1:] == ["0 (1, 80)", "1 (1, 80)"]
