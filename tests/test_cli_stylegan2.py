"""The command line with StyleGAN2 checkpoints, the zoo and direction files, run in this
process through `lowrankgan.cli.main` (tests/test_cli.py runs the console script itself)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import sg2_checkpoints as sg2
from conftest import MainRun, run_main
from hostile import assert_one_error_line
from lowrankgan import load_model
from lowrankgan.models.stylegan2.network import random_stylegan2


def run(*args: object, env: dict | None = None) -> MainRun:
    return run_main(*args, env=env)


def assert_usage_error(proc: MainRun, phrase: str, out: Path | None = None) -> None:
    assert_one_error_line(proc)
    assert proc.stderr.count("\n") == 1 and phrase in proc.stderr, proc.stderr
    assert out is None or not out.exists(), "a refused command wrote its output folder"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    network = random_stylegan2(resolution=32, channels_max=32, z_dim=16, w_dim=16)
    path = tmp_path_factory.mktemp("sg2") / "ffhq-tiny.pkl"
    sg2.write_nvidia_pkl(path, network.state_dict(), conv_clamp=256)
    return path


def test_analyze_and_edit_a_stylegan2_pickle_in_w_and_z(tmp_path: Path, checkpoint: Path):
    out = tmp_path / "w"
    proc = run(
        "analyze", "--model", checkpoint, "--seed", 0, "--region", "mouth", "--out", out, "--quiet"
    )
    assert proc.returncode == 0, proc.stderr
    with np.load(out / "analysis.npz") as data:
        assert data["latent"].shape == (16,) and data["directions"].shape[0] == 16
    assert '"space": "w"' in (out / "analysis.json").read_text()
    edited = tmp_path / "e"
    proc = run(
        "edit",
        "--model",
        checkpoint,
        "--analysis",
        out / "analysis.npz",
        "--strengths",
        "-1,0,1",
        "--one-shot",
        "--out",
        edited,
        "--quiet",
    )
    assert proc.returncode == 0, proc.stderr
    assert (edited / "edits.gif").stat().st_size > 0
    proc = run(
        "analyze",
        "--model",
        checkpoint,
        "--space",
        "z",
        "--truncation",
        "0.7",
        "--seed",
        1,
        "--region",
        "eyes",
        "--sketch",
        8,
        "--out",
        tmp_path / "z",
        "--quiet",
    )
    assert proc.returncode == 0, proc.stderr
    assert '"space": "z"' in (tmp_path / "z" / "analysis.json").read_text()


def test_direction_file_one_shot_and_path_following(tmp_path: Path):
    directions = np.random.default_rng(0).normal(size=(3, 100))
    path = tmp_path / "dirs.npy"
    np.save(path, directions)
    out = tmp_path / "one"
    proc = run(
        "edit",
        "--model",
        "dcgan-faces",
        "--seed",
        0,
        "--direction-file",
        path,
        "--direction",
        2,
        "--strengths",
        "0,2",
        "--one-shot",
        "--out",
        out,
        "--quiet",
    )
    assert proc.returncode == 0, proc.stderr
    with np.load(out / "edits.npz") as data:
        step = data["latents"][1] - data["latents"][0]
    unit = directions[2] / np.linalg.norm(directions[2])
    np.testing.assert_allclose(step, 2 * unit, atol=1e-5)
    assert not (out / "analysis.npz").exists()
    proc = run(
        "edit",
        "--model",
        "dcgan-faces",
        "--seed",
        0,
        "--direction-file",
        path,
        "--region",
        "eyes",
        "--strengths",
        "0,1",
        "--step",
        1,
        "--out",
        tmp_path / "p",
        "--quiet",
    )
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(
    ("make", "phrase"),
    [
        (lambda p: np.save(p, np.zeros((2, 50))), "expected (100,)"),
        (lambda p: np.save(p, np.full(100, np.nan)), "NaN"),
        (lambda p: p.write_bytes(b"junk"), "is not a .npy array"),
    ],
)
def test_bad_direction_files(tmp_path: Path, make, phrase):
    path = tmp_path / "d.npy"
    make(path)
    out = tmp_path / "out"
    proc = run(
        "edit",
        "--model",
        "dcgan-faces",
        "--seed",
        0,
        "--direction-file",
        path,
        "--one-shot",
        "--out",
        out,
        "--quiet",
    )
    assert_usage_error(proc, phrase, out)


def test_direction_file_path_following_needs_a_region(tmp_path: Path):
    path = tmp_path / "d.npy"
    np.save(path, np.ones(100))
    proc = run(
        "edit",
        "--model",
        "dcgan-faces",
        "--seed",
        0,
        "--direction-file",
        path,
        "--out",
        tmp_path / "o",
        "--quiet",
    )
    assert_usage_error(proc, "--region or --keep", tmp_path / "o")


def test_bad_stylegan2_options(tmp_path: Path, checkpoint: Path):
    for args, phrase in [
        (("--truncation", "1.5"), "truncation"),
        (("--truncation", "nan"), "truncation"),
        (("--space", "q"), "unknown latent space"),
        (("--layers", "4-5"), "--layers applies to --space wplus"),
        (("--space", "wplus", "--layers", "9"), "layers must lie in 0..7 (this model has 8 ws)"),
        (("--space", "wplus", "--layers", "5-2"), "the layers range '5-2' is inverted"),
        (("--space", "wplus", "--layers", "0-99999999999"), "the number of layers is"),
        (("--space", "wplus", "--layers", "4,x"), "layers must be integers or ranges like 4-7"),
        (("--exact", "--sketch", "4"), "exact Gram matrices and a sketch exclude each other"),
    ]:
        proc = run(
            "analyze",
            "--model",
            checkpoint,
            "--seed",
            0,
            "--region",
            "eyes",
            *args,
            "--out",
            tmp_path / "o",
            "--quiet",
        )
        assert_usage_error(proc, phrase, tmp_path / "o")
    proc = run(
        "analyze",
        "--model",
        "dcgan-faces",
        "--space",
        "w",
        "--seed",
        0,
        "--region",
        "eyes",
        "--out",
        tmp_path / "o",
        "--quiet",
    )
    assert_usage_error(proc, "only the z space", tmp_path / "o")


def test_models_lists_the_zoo_and_fetch_fails_cleanly_offline(tmp_path: Path):
    proc = run("models")
    assert proc.returncode == 0
    assert "church-256-tf" in proc.stdout and "ffhq-1024" in proc.stdout
    proc = run("fetch", "ffhq1024", env={"LOWRANKGAN_CACHE": str(tmp_path / "cache")})
    assert_usage_error(proc, "did you mean ffhq-1024")


def test_wplus_codes_and_lifted_w_directions(tmp_path: Path, checkpoint: Path):
    gen = np.random.default_rng(1)
    w = gen.normal(size=16).astype(np.float32)
    code = np.tile(w, (8, 1))  # 32 px: 8 ws
    code[4] = gen.normal(size=16)
    code_path = tmp_path / "code.npy"
    np.save(code_path, code)
    direction = gen.normal(size=16)
    dir_path = tmp_path / "eyes_size.npy"
    np.save(dir_path, direction)
    out = tmp_path / "edit"
    proc = run(
        "edit",
        "--model",
        checkpoint,
        "--space",
        "wplus",
        "--layers",
        "4-5",
        "--latent",
        code_path,
        "--direction-file",
        dir_path,
        "--strengths",
        "0,2",
        "--one-shot",
        "--out",
        out,
        "--quiet",
    )
    assert proc.returncode == 0, proc.stderr
    with np.load(out / "edits.npz") as data:
        start, moved = data["latents"]
    assert start.shape == (48,)  # layers 4 and 5, plus the shared block
    np.testing.assert_allclose(start[:16], code[4], atol=1e-6)
    np.testing.assert_allclose(start[32:], w, atol=1e-6)
    unit = direction / np.linalg.norm(direction)
    np.testing.assert_allclose(
        moved - start, np.concatenate([unit, unit, 0 * unit]) * 2 / 2**0.5, atol=1e-5
    )
    proc = run(
        "analyze",
        "--model",
        checkpoint,
        "--space",
        "wplus",
        "--layers",
        "0-1",
        "--latent",
        code_path,
        "--region",
        "eyes",
        "--out",
        tmp_path / "a",
        "--quiet",
    )
    assert_usage_error(proc, "unselected layers differ", tmp_path / "a")


def test_analyse_in_w_then_edit_selected_wplus_layers(tmp_path: Path, checkpoint: Path):
    """The paper's workflow: Jacobian in W, edit applied to some layers of W+."""
    analysis = tmp_path / "w"
    proc = run(
        "analyze",
        "--model",
        checkpoint,
        "--seed",
        4,
        "--region",
        "eyes",
        "--out",
        analysis,
        "--quiet",
    )
    assert proc.returncode == 0, proc.stderr
    with np.load(analysis / "analysis.npz") as data:
        w, direction = data["latent"], data["directions"][:, 0]
    moved_by = {}
    for extra in (["--one-shot"], ["--step", "1"]):
        out = tmp_path / f"edit{len(extra)}"
        proc = run(
            "edit",
            "--model",
            checkpoint,
            "--space",
            "wplus",
            "--layers",
            "4-5",
            "--analysis",
            analysis / "analysis.npz",
            "--strengths",
            "0,1",
            *extra,
            "--out",
            out,
            "--quiet",
        )
        assert proc.returncode == 0, proc.stderr
        with np.load(out / "edits.npz") as data:
            start, moved = data["latents"]
        np.testing.assert_allclose(start, np.tile(w, 3), atol=1e-6)
        if extra == ["--one-shot"]:
            lifted = np.concatenate([direction, direction, 0 * direction]) / 2**0.5
            np.testing.assert_allclose(moved - start, lifted, atol=1e-5)
        moved_by[len(extra)] = moved
    # path-following keeps the rest of the image closer to the original than one-shot
    model = load_model(checkpoint, space="wplus", layers="4-5")
    outside = ~model.presets["eyes"].mask(32, 32)

    def change_outside(latent: np.ndarray) -> float:
        images = model.synthesize(torch.from_numpy(np.stack([start, latent])).float())
        return float((images[1] - images[0])[:, outside].pow(2).mean())

    assert change_outside(moved_by[2]) < change_outside(moved_by[1])
