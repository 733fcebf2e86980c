"""BigGAN-deep through the public loader and the command line: classes, truncation, analysis."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from biggan_checkpoints import write_biggan
from lowrankgan import UserInputError, analyze, load_model
from lowrankgan.models.biggan.network import truncated_normal

SCRIPT = Path(sys.executable).parent / "lowrankgan"
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("biggan")
    write_biggan(path, output_dim=32, channel_width=4, num_classes=1000)
    return path


def test_folder_loads_as_a_class_conditional_z_model(folder: Path):
    model = load_model(folder, class_="golden retriever", truncation=0.5)
    assert (model.space, model.latent_dim, model.resolution) == ("z", 8, (32, 32))
    assert model.condition == 207 and model.class_names[207] == "golden retriever"
    z = model.sample_latent(3)
    torch.testing.assert_close(z, truncated_normal(1, 8, 0.5, 3)[0])
    assert z.abs().max() <= 2 * 0.5
    image = model.synthesize(z)
    assert image.shape == (1, 3, 32, 32) and image.abs().max() <= 1
    other = model.with_class(1).synthesize(z)
    assert not torch.allclose(image, other)
    assert {"center", "border", "top", "bottom"} <= set(model.presets)


def test_analysis_with_a_fixed_class(folder: Path):
    model = load_model(folder, class_=207)
    result = analyze(model, model.sample_latent(0), "center", method="contrast")
    assert result.directions.shape[0] == 8
    assert result.info["class"] == "golden retriever"


@pytest.mark.parametrize(
    ("kwargs", "phrase"),
    [
        ({"class_": "golden retreiver"}, "did you mean 'golden retriever'"),
        ({"class_": 1000}, "out of range"),
        ({"truncation": 0.0}, "truncation"),
        ({"truncation": 1.5}, "truncation"),
        ({"space": "w"}, "analysed in z"),
    ],
)
def test_bad_input(folder: Path, kwargs, phrase):
    with pytest.raises(UserInputError, match=phrase):
        load_model(folder, **kwargs)


def test_command_line(folder: Path, tmp_path: Path, run_main):
    out = tmp_path / "a"
    proc = subprocess.run(
        [
            str(SCRIPT),
            "analyze",
            "--model",
            folder,
            "--class",
            "golden retriever",
            "--seed",
            "1",
            "--region",
            "border",
            "--out",
            out,
            "--quiet",
        ],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    with np.load(out / "analysis.npz") as data:
        assert data["latent"].shape == (8,)
    # Bad input in this process through `lowrankgan.cli.main` (conftest): the same exit code
    # and error line as the console script above, without its start-up.
    for args, phrase in [
        (["--class", "spaceship"], "unknown class"),
        (["--class", "1000"], "out of range"),
        (["--truncation", "2"], "truncation"),
    ]:
        proc = run_main(
            "analyze", "--model", folder, "--seed", "1", "--region", "center", *args,
            "--out", tmp_path / "b", "--quiet",
        )  # fmt: skip
        assert proc.returncode == 2 and proc.stderr.startswith("error: ")
        assert proc.stderr.count("\n") == 1 and phrase in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr and not (tmp_path / "b").exists()
    (folder / "broken").mkdir(exist_ok=True)
    proc = run_main(
        "analyze", "--model", folder / "broken", "--seed", "1", "--region", "center",
        "--out", tmp_path / "c",
    )  # fmt: skip
    assert proc.returncode == 2 and "config.json" in proc.stderr
    assert proc.stderr.count("\n") == 1 and not (tmp_path / "c").exists()


def test_config_that_does_not_match_the_weights(tmp_path: Path):
    write_biggan(tmp_path, output_dim=32, channel_width=4, num_classes=10)
    text = (
        (tmp_path / "config.json").read_text().replace('"channel_width": 4', '"channel_width": 8')
    )
    (tmp_path / "config.json").write_text(text)
    with pytest.raises(UserInputError):
        load_model(tmp_path)
