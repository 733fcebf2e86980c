"""`lowrankgan evaluate`: the ranking on a generator with known local structure, the rows
against the edits they describe, resuming after an interruption or a kill, the report files,
and bad input through the real console script."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lowrankgan import AnalysisSettings, locality
from lowrankgan.pipeline.evaluation import (
    COLUMNS,
    EvaluationConfig,
    cell_path,
    csv_text,
    parse_regions,
    read_results,
    run_cells,
)
from lowrankgan.report.evaluation import head_to_head, ranking, stat, write_outputs
from structured import layered_structured_model

SCRIPT = Path(sys.executable).with_name("lowrankgan")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
STRUCTURED = str(Path(__file__).with_name("structured.py")) + ":factory"
ALL_METHODS = ("lowrank", "contrast", "jacobian", "sefa", "ganspace", "multi")


def structured_config(**overrides) -> EvaluationConfig:
    values = {
        "regions": ("left",),
        "methods": ALL_METHODS,
        "seeds": (0, 1, 2, 3, 4),
        "strengths": (1.0, 2.0),
        "transfer": 2,
        "samples": 3,
        "settings": AnalysisSettings(pca_samples=200),
    }
    values.update(overrides)
    return EvaluationConfig(**values)


@pytest.fixture(scope="module")
def structured_run(tmp_path_factory):
    model = layered_structured_model()
    config = structured_config()
    out = tmp_path_factory.mktemp("structured")
    return model, config, out, run_cells(model, config, out, progress=False)


def test_known_structure_ranks_lowrank_and_contrast_first(structured_run):
    _model, config, _out, result = structured_run
    ranked = ranking(result.rows, "left", 2.0, config.methods)
    # Ours first (multi is contrast on averaged Grams: exact here too), then the baselines.
    assert {name for name, _ in ranked[:3]} == {"lowrank", "contrast", "multi"}
    medians = dict(ranked)
    # The left half has a 3-d subspace that leaves the right half exactly still.
    assert medians["lowrank"] < 1e-4 and medians["contrast"] < 1e-2
    # The region's own top direction also moves the shared direction: measurably worse.
    assert medians["jacobian"] > 0.05 and medians["jacobian"] > 20 * medians["contrast"]
    assert min(medians["sefa"], medians["ganspace"]) > 20 * medians["contrast"]
    shares = head_to_head(result.rows, "left", 2.0, config.methods)
    for ours in ("lowrank", "contrast"):
        for baseline in ("jacobian", "sefa", "ganspace"):
            assert shares[(ours, baseline)] == 1.0
    # The structure is the same on every image, so local directions transfer exactly.
    transfer = [r["ratio"] for r in result.rows if r["kind"] == "transfer"]
    assert len(transfer) == len(config.methods) * 5 * 2 * 2
    lowrank_transfer = [
        r["ratio"] for r in result.rows if r["kind"] == "transfer" and r["method"] == "lowrank"
    ]
    assert max(lowrank_transfer) < 1e-4


def test_rows_are_the_edits_they_describe(structured_run):
    model, config, out, result = structured_run
    assert len(result.rows) == 6 * 1 * 5 * 2 * (1 + 2)
    for row in result.rows:
        assert list(row) == list(COLUMNS)
    # Recompute a self row and a transfer row from the stored direction.
    cell = json.loads(cell_path(out, "sefa", "left", 3).read_text())
    direction = torch.tensor(cell["direction"], dtype=torch.float32)
    region = model.presets["left"].mask(16, 16)
    for row in cell["rows"]:
        if row["strength"] != 2.0:
            continue
        start = model.sample_latent(row["image"])
        images = model.synthesize(torch.stack([start, start + 2.0 * direction]))
        expected = locality(images[0], images[1], region)
        for name in ("rms_inside", "rms_outside", "ratio", "energy_inside", "mse_kept"):
            assert row[name] == pytest.approx(getattr(expected, name), rel=1e-5, abs=1e-12)
    assert cell["candidate"] is not None and 0 <= cell["candidate"] < 10
    images = {row["image"] for row in cell["rows"]}
    assert images == {3, 2_000_000, 2_000_001}


def test_interrupted_run_resumes_without_recomputing(tmp_path: Path, structured_run):
    model, config, _out, uninterrupted = structured_run
    finished: list[tuple[str, str, int]] = []

    def stop_after_seven(cell) -> None:  # noqa: ANN001
        finished.append((cell.method, cell.region, cell.seed))
        if len(finished) == 7:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_cells(model, config, tmp_path, progress=False, on_cell=stop_after_seven)
    stamps = {
        key: cell_path(tmp_path, *key).stat().st_mtime_ns for key in finished
    }  # fmt: skip
    resumed = run_cells(model, config, tmp_path, progress=False)
    assert (resumed.reused, resumed.computed) == (7, 30 - 7)
    for key, stamp in stamps.items():
        assert cell_path(tmp_path, *key).stat().st_mtime_ns == stamp
    assert csv_text(resumed.rows) == csv_text(uninterrupted.rows)


def test_other_settings_are_refused_then_restarted(tmp_path: Path):
    model = layered_structured_model()
    config = structured_config(methods=("lowrank",), seeds=(0,), transfer=0)
    run_cells(model, config, tmp_path, progress=False)
    changed = structured_config(methods=("lowrank",), seeds=(0,), transfer=0, strengths=(3.0,))
    from lowrankgan import UserInputError

    with pytest.raises(UserInputError, match="other settings.*strengths"):
        run_cells(model, changed, tmp_path, progress=False)
    again = run_cells(model, changed, tmp_path, progress=False, restart=True)
    assert again.computed == 1 and [r["strength"] for r in again.rows] == [3.0]
    # More seeds with the same settings reuse what is done.
    more = structured_config(methods=("lowrank",), seeds=(0, 1), transfer=0, strengths=(3.0,))
    extended = run_cells(model, more, tmp_path, progress=False)
    assert (extended.reused, extended.computed) == (1, 1)


def test_statistics_by_hand():
    s = stat([4.0, 1.0, 3.0, 2.0])
    assert (s.median, s.q1, s.q3, s.n) == (2.5, 1.75, 3.25, 4)
    assert stat([1.0, float("inf"), 2.0]).median == 2.0
    rows = [
        {"method": m, "region": "r", "seed": seed, "kind": "self", "strength": 2.0, "ratio": v}
        for m, values in (("a", [0.1, 0.5, 0.3]), ("b", [0.2, 0.4, 0.3]))
        for seed, v in enumerate(values)
    ]
    shares = head_to_head(rows, "r", 2.0, ["a", "b"])
    assert shares[("a", "b")] == pytest.approx(1.5 / 3)  # win, loss, tie
    assert shares[("b", "a")] == pytest.approx(1.5 / 3)
    assert ranking(rows, "r", 2.0, ["a", "b"]) == [("a", 0.3), ("b", 0.3)]


def test_report_strength():
    from lowrankgan.report.evaluation import report_strength

    assert report_strength([1.0, 2.0, 3.0, 5.0]) == 2.0
    assert report_strength([-3.0, 3.0]) == 3.0
    assert report_strength([1.0, 3.0, 5.0]) == 3.0
    assert report_strength([-4.0, -1.0]) == -4.0


def test_region_lists_keep_boxes_whole():
    assert parse_regions("eyes, box:1,2,3,4,mouth") == ("eyes", "box:1,2,3,4", "mouth")


def test_report_files(tmp_path: Path, structured_run):
    model, config, out, result = structured_run
    index = write_outputs(tmp_path, model, config, result, command="lowrankgan evaluate ...")
    html = index.read_text()
    assert html.count("data:image/png;base64,") == 1 + 3 + 1  # region, 3 charts, strip
    assert "lowrankgan evaluate ..." in html
    summary = (tmp_path / "summary.md").read_text()
    assert "| left | contrast |" in summary and "Ranking and head-to-head at strength 2" in summary
    assert read_results(tmp_path / "results.csv")[0]["method"] == "lowrank"
    assert (tmp_path / "results.csv").read_text() == csv_text(result.rows)
    for name in ("left_locality", "left_change_inside", "left_transfer_locality", "left_strip"):
        with Image.open(tmp_path / "plots" / f"{name}.png") as image:
            assert image.size[0] >= 400
    with Image.open(tmp_path / "plots" / "left_strip.png") as image:
        # rows: 6 methods; columns: original, 2 strengths, change
        assert image.size[1] > 6 * 64


def _evaluate(out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(SCRIPT), "evaluate", "--model", "dcgan-faces", "--regions", "eyes", "--out", str(out),
         "--methods", "lowrank,jacobian,sefa", "--seeds", "0-7", "--transfer", "1", *extra],
        env=ENV, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


@pytest.mark.slow  # two full evaluations of dcgan-faces through the console script
def test_killed_command_resumes_to_the_same_csv(tmp_path: Path):
    killed = tmp_path / "killed"
    command = [
        str(SCRIPT), "evaluate", "--model", "dcgan-faces", "--regions", "eyes", "--out",
        str(killed), "--methods", "lowrank,jacobian,sefa", "--seeds", "0-7", "--transfer", "1",
    ]  # fmt: skip
    process = subprocess.Popen(command, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if len(list((killed / "cells").glob("*/*/*.json"))) >= 2:
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (killed / "results.csv").exists(), "the run finished before it was killed"
    done = {path: path.stat().st_mtime_ns for path in (killed / "cells").glob("*/*/*.json")}
    assert 2 <= len(done) < 24
    resumed = _evaluate(killed)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming: {len(done)} of 24 cells already done" in resumed.stderr
    for path, stamp in done.items():
        assert path.stat().st_mtime_ns == stamp  # not recomputed
    whole = _evaluate(tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr
    assert (killed / "results.csv").read_text() == (tmp_path / "whole" / "results.csv").read_text()
    with open(killed / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 3 * 8 * 4 * 2
    # The run's claim on this real GAN: lowrank's eye edits are more local than the others'.
    ratio = {
        m: np.median([float(r["ratio"]) for r in rows if r["method"] == m and r["kind"] == "self"])
        for m in ("lowrank", "jacobian", "sefa")
    }
    assert ratio["lowrank"] < 0.6 < min(ratio["jacobian"], ratio["sefa"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--methods", "lowrank,magic"], "unknown method 'magic'"),
        (["--regions", "ears"], "ears"),
        (["--samples", "1"], "samples must be"),
        (["--strengths", "1,x"], "strengths must be"),
        (["--seeds", "3-1"], "inverted"),
        (["--methods", "ganspace"], "ganspace needs an early layer"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, args, message, run_main):
    # In this process through `lowrankgan.cli.main` (conftest): the console script adds only
    # its start-up here; tests/test_cli.py runs bad input through the script itself.
    out = tmp_path / "out"
    base = ["evaluate", "--model", STRUCTURED, "--regions", "left", "--seeds", "0-1"]
    if "--regions" in args:
        base = ["evaluate", "--model", STRUCTURED, "--seeds", "0-1"]
    result = run_main(*base, *args, "--out", out, "--quiet")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert not out.exists()


def test_command_on_a_user_generator(tmp_path: Path):
    out = tmp_path / "eval"
    result = subprocess.run(
        [str(SCRIPT), "evaluate", "--model", STRUCTURED, "--regions", "left", "--seeds", "0-2",
         "--strengths", "1,2", "--transfer", "1", "--samples", "2", "--ganspace-layer",
         "features", "--ganspace-samples", "100", "--out", str(out), "--quiet"],
        env=ENV, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(out / "index.html")
    rows = read_results(out / "results.csv")
    assert {r["method"] for r in rows} == set(ALL_METHODS)
    record = json.loads((out / "evaluation.json").read_text())
    assert record["command"].startswith("lowrankgan evaluate --model")
    assert record["fingerprint"]["settings"]["pca_layer"] == "features"
    assert np.load(out / "ganspace_directions.npz")["directions"].shape == (24, 10)


def test_path_following_edits(tmp_path: Path):
    model = layered_structured_model()
    config = structured_config(
        methods=("lowrank", "jacobian"), seeds=(0,), strengths=(1.0,), transfer=1, path=True,
        step=0.5,
    )  # fmt: skip
    result = run_cells(model, config, tmp_path, progress=False)
    ratios = {(r["method"], r["kind"]): r["ratio"] for r in result.rows}
    inside = {(r["method"], r["kind"]): r["rms_inside"] for r in result.rows}
    assert ratios[("lowrank", "self")] < 1e-3 and ratios[("lowrank", "transfer")] < 1e-3
    # The path re-projects every step onto the kept half's null space, so even the region's
    # own direction (0.05+ one-shot) becomes local; it still edits the region.
    assert ratios[("jacobian", "self")] < 1e-3 and inside[("jacobian", "self")] > 1e-2
    # Path-following moved by arc length 1 from the start, in two steps.
    start = model.sample_latent(0).double()
    latents = torch.tensor(result.cells[("lowrank", "left", 0)].self_latents)
    assert 0.5 < float((latents[0] - start).norm()) <= 1.0 + 1e-6


@pytest.fixture(scope="module")
def family_files(tmp_path_factory) -> dict[str, Path]:
    import sg2_checkpoints as sg2
    from biggan_checkpoints import write_biggan
    from lowrankgan.models.stylegan2.network import random_stylegan2

    folder = tmp_path_factory.mktemp("families")
    generator = random_stylegan2(resolution=16, channels_max=16, z_dim=8, w_dim=8)
    sg2.write_nvidia_pkl(folder / "sg2.pkl", generator.state_dict(), conv_clamp=None)
    write_biggan(folder / "biggan", output_dim=32, channel_width=4, num_classes=10)
    return {"stylegan2": folder / "sg2.pkl", "biggan": folder / "biggan"}


@pytest.mark.parametrize(
    ("family", "options"),
    [
        ("stylegan2", {"space": "w"}),
        ("stylegan2", {"space": "z"}),
        ("stylegan2", {"space": "wplus", "layers": "1-2"}),
        ("biggan", {}),
    ],
)
def test_every_method_runs_on_every_family(tmp_path: Path, family_files, family, options):
    from lowrankgan import load_model

    model = load_model(family_files[family], **options)
    config = EvaluationConfig(
        regions=("center",),
        methods=ALL_METHODS,
        seeds=(0,),
        strengths=(1.0,),
        transfer=1,
        samples=2,
        settings=AnalysisSettings(pca_samples=64),
    )
    result = run_cells(model, config, tmp_path, progress=False)
    assert len(result.rows) == len(ALL_METHODS) * 2
    for row in result.rows:
        assert np.isfinite(row["rms_inside"]) and row["rms_inside"] > 0
        assert np.isfinite(row["ratio"])


@pytest.mark.parametrize("base", ["contrast", "lowrank"])
def test_multi_is_the_analysis_on_averaged_grams(tmp_path: Path, base):
    from lowrankgan import analyze

    model = layered_structured_model()
    config = structured_config(
        methods=("multi",), seeds=(2,), transfer=0, samples=3, multi_method=base
    )
    result = run_cells(model, config, tmp_path, progress=False)
    found = np.asarray(result.cells[("multi", "left", 2)].direction)
    expected = analyze(model, model.sample_latent(2), "left", method=base, samples=3)
    np.testing.assert_allclose(found, expected.direction(0), atol=1e-10)
