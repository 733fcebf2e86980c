"""The `lowrankgan` command line, outcomes read back from the files it writes.

The commands run in this process through `lowrankgan.cli.main` (`cli(...)`, conftest's
`run_main`): the same argv, exit code and stderr as the console script, without a fresh
interpreter per run. What only the installed console script can show runs it in a
subprocess (`console(...)`): the entry point, `--help`/`--version`, exit codes, progress bars
on stderr, the demo end to end, and a few representative bad inputs (`CONSOLE_BAD`).

Most cases use small user generators written into a temp folder (`file.py:factory`); a few
run the built-in GANs end to end. Every bad input must end with exit code 2, exactly one
`error: ...` line on stderr, no traceback and no output folder (nor a staging folder) left
behind.
"""

from __future__ import annotations

import json
import os
import pickle
import shlex
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import lowrankgan
from conftest import MainRun, run_main
from hostile import ENV, SCRIPT  # the console script, one OpenMP thread

TIMEOUT = 300

# Generators for the tests. `local` draws a 3x16x16 image whose centre 8x8 (the generic
# `center` preset) depends on z[:4] only and the rest on z[4:] only, so the correct local
# directions of `center` are known exactly. Every forward call is logged to the file named by
# LOWRANKGAN_TEST_CALLS, which shows how far a run got before it failed.
FACTORIES = """
import os

import torch
from torch import nn


def _log_call():
    path = os.environ.get("LOWRANKGAN_TEST_CALLS")
    if path:
        with open(path, "a") as handle:
            handle.write("forward\\n")


class Local(nn.Module):
    latent_dim = 8

    def __init__(self):
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        weight = torch.randn(3, 16, 16, 8, generator=gen) * 0.4
        centre = torch.zeros(16, 16, dtype=torch.bool)
        centre[4:12, 4:12] = True
        weight[:, centre, 4:] = 0.0
        weight[:, ~centre, :4] = 0.0
        self.weight = nn.Parameter(weight.reshape(-1, 8))

    def forward(self, z):
        _log_call()
        return torch.tanh(z @ self.weight.T).reshape(-1, 3, 16, 16)


class Gray(nn.Module):
    latent_dim = 8

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(32 * 32, 8, generator=torch.Generator()) * 0.4)

    def forward(self, z):
        return torch.tanh(z @ self.weight.T).reshape(-1, 1, 32, 32)


class BadForward(nn.Module):
    latent_dim = 8

    def forward(self, z):
        raise ValueError("forward broke")


class FourChannels(nn.Module):
    latent_dim = 8

    def forward(self, z):
        return torch.zeros(z.shape[0], 4, 16, 16)


def local():
    return Local()


def gray():
    return Gray()


def broken():
    raise RuntimeError("factory broke\\non two lines")


def bad_forward():
    return BadForward()


def four_channels():
    return FourChannels()
"""

CENTRE = np.zeros((16, 16), dtype=bool)
CENTRE[4:12, 4:12] = True


def console(*args: object, cwd: Path | None = None, env: dict | None = None):
    """Run the installed console script; returns the CompletedProcess (text mode)."""
    return subprocess.run(
        [str(SCRIPT), *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env or ENV,
        timeout=TIMEOUT,
    )


def words(command: str, **fields: object) -> list[str]:
    """`command` split on spaces first, then `{name}` in a word replaced by `fields[name]`,
    so paths may contain spaces."""
    return [word.format(**fields) for word in command.split()]


def cli(command: str, **fields: object) -> MainRun:
    """Run `lowrankgan <command>` in this process (see `words`)."""
    return run_main(*words(command, **fields))


def check_ok(proc: subprocess.CompletedProcess | MainRun) -> None:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr


def load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


def import_factory_file(path: Path):
    """The generators module, imported in this process to render latents."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("lowrankgan_cli_test_factories", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def small_dcgan_state() -> dict[str, torch.Tensor]:
    """A DCGAN generator state dict in the `main.{i}.*` layout: 8-d z -> 3x8x8."""
    gen = torch.Generator().manual_seed(0)
    return {
        "main.0.weight": torch.randn(8, 16, 4, 4, generator=gen) * 0.2,
        "main.1.weight": torch.ones(16),
        "main.1.bias": torch.zeros(16),
        "main.1.running_mean": torch.zeros(16),
        "main.1.running_var": torch.ones(16),
        "main.1.num_batches_tracked": torch.tensor(0),
        "main.3.weight": torch.randn(16, 3, 4, 4, generator=gen) * 0.2,
    }


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """Shared inputs: the generators file, masks, latents, checkpoints."""
    folder = tmp_path_factory.mktemp("cli_inputs")
    (folder / "gens.py").write_text(FACTORIES)
    return folder


@pytest.fixture(scope="module")
def local(work) -> str:
    return f"{work / 'gens.py'}:local"


@pytest.fixture(scope="module")
def local_analysis(work, local) -> Path:
    """`analyze` of the local generator's centre at seed 0."""
    out = work / "local_analysis"
    check_ok(
        cli(
            "analyze --model {local} --seed 0 --region center --out {out} --quiet",
            local=local,
            out=out,
        )
    )
    return out


@pytest.fixture(scope="module")
def faces_analysis(work) -> Path:
    """`analyze` of dcgan-faces, eyes, seed 0."""
    out = work / "faces_eyes"
    check_ok(cli("analyze --model dcgan-faces --seed 0 --region eyes --out {out} --quiet", out=out))
    return out


# --------------------------------------------------------------------------- happy paths


def test_models_lists_both_builtins_as_installed():
    proc = console("models")  # the installed entry point
    check_ok(proc)
    lines = proc.stdout.splitlines()
    for name in ("dcgan-faces", "omniart-eyes"):
        index = next(i for i, line in enumerate(lines) if line.startswith(name))
        assert "[installed]" in lines[index + 1], proc.stdout
    assert "missing" not in proc.stdout


def test_analyze_faces_writes_arrays_and_metadata(faces_analysis):
    arrays = load_npz(faces_analysis / "analysis.npz")
    info = json.loads((faces_analysis / "analysis.json").read_text())
    latent, basis = arrays["latent"], arrays["region_basis"]
    null, directions = arrays["null_basis"], arrays["directions"]
    r, n, k = info["ranks"]["region"], info["ranks"]["null_space"], info["ranks"]["directions"]
    assert latent.shape == (100,)
    assert basis.shape == (100, r) and r >= 1
    assert arrays["region_singular_values"].shape == (r,)
    assert null.shape == (100, n) and n == 100 - info["ranks"]["keep"]
    assert directions.shape == (100, k) and k >= 1
    np.testing.assert_allclose(np.linalg.norm(directions, axis=0), 1.0, atol=1e-9)
    # The paper's directions live in the kept region's null space.
    np.testing.assert_allclose(null @ (null.T @ directions), directions, atol=1e-8)
    # A seed's latent is the standard normal draw of that seed.
    expected = torch.randn(100, generator=torch.Generator().manual_seed(0)).double().numpy()
    np.testing.assert_array_equal(latent, expected)
    assert info["model"] == "dcgan-faces"
    assert info["region"] == "eyes"
    assert info["version"] == lowrankgan.__version__
    assert info["method"] == "lowrank"
    assert info["seed"] == 0
    for part in ("region", "keep"):
        stats = info["rpca"][part]
        assert stats["converged"] is True and stats["iterations"] > 0
        assert stats["solver"] == "ialm"
    assert set(info["timings_seconds"]) >= {"jacobian_gram", "rpca_subspaces", "directions"}
    assert all(t >= 0 for t in info["timings_seconds"].values())
    assert arrays["region_mask"].shape == (64, 64)
    assert info["region_pixels"] == int(arrays["region_mask"].sum())


def test_analyze_rank_and_keep_rank_are_honoured(tmp_path):
    out = tmp_path / "ranks"
    check_ok(
        cli(
            "analyze --model dcgan-faces --seed 0 --region eyes --rank 3 --keep-rank 50 "
            "--out {out} --quiet",
            out=out,
        )
    )
    arrays = load_npz(out / "analysis.npz")
    info = json.loads((out / "analysis.json").read_text())
    assert arrays["region_basis"].shape == (100, 3)
    assert arrays["region_singular_values"].shape == (3,)
    assert arrays["null_basis"].shape == (100, 50)
    assert arrays["directions"].shape[0] == 100 and 1 <= arrays["directions"].shape[1] <= 3
    assert info["ranks"]["region"] == 3 and info["ranks"]["keep"] == 50
    assert info["ranks"]["null_space"] == 50
    assert info["ranks"]["rule"] == "user" and info["ranks"]["keep_rule"] == "user"


def test_local_directions_move_only_the_centre_latents(local_analysis):
    arrays = load_npz(local_analysis / "analysis.npz")
    info = json.loads((local_analysis / "analysis.json").read_text())
    assert info["ranks"]["keep"] == 4 and info["ranks"]["null_space"] == 4
    directions, null = arrays["directions"], arrays["null_basis"]
    # The rest of the image depends on z[4:] only: the local directions leave it alone.
    np.testing.assert_allclose(directions[4:], 0.0, atol=1e-6)
    np.testing.assert_allclose(null[4:], 0.0, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(directions, axis=0), 1.0, atol=1e-9)
    np.testing.assert_array_equal(arrays["region_mask"], CENTRE)
    np.testing.assert_array_equal(arrays["keep_mask"], ~CENTRE)


def test_analyze_contrast_method(tmp_path, local):
    out = tmp_path / "contrast"
    check_ok(
        cli(
            "analyze --model {local} --seed 0 --region center --method contrast "
            "--out {out} --quiet",
            local=local,
            out=out,
        )
    )
    arrays = load_npz(out / "analysis.npz")
    info = json.loads((out / "analysis.json").read_text())
    assert info["method"] == "contrast"
    directions = arrays["directions"]
    assert directions.shape[0] == 8 and directions.shape[1] >= 1
    np.testing.assert_allclose(np.linalg.norm(directions, axis=0), 1.0, atol=1e-9)
    np.testing.assert_allclose(directions[4:], 0.0, atol=1e-4)


def test_analyze_latent_file(tmp_path, local):
    latent = np.linspace(-1.0, 1.0, 8).astype(np.float32)
    np.save(tmp_path / "z.npy", latent)
    out = tmp_path / "from_file"
    check_ok(
        cli(
            "analyze --model {local} --latent {z} --region center --out {out} --quiet",
            local=local,
            z=tmp_path / "z.npy",
            out=out,
        )
    )
    np.testing.assert_array_equal(load_npz(out / "analysis.npz")["latent"], latent)


@pytest.mark.parametrize("mode", ["L", "RGBA"])
def test_analyze_png_mask(tmp_path, local, mode):
    mask = np.zeros((16, 16), dtype=bool)
    mask[2:7, 3:13] = True
    if mode == "L":
        image = Image.fromarray(mask.astype(np.uint8) * 255, "L")
    else:  # white region on an opaque black background: alpha is not the region
        rgba = np.zeros((16, 16, 4), dtype=np.uint8)
        rgba[..., 3] = 255
        rgba[mask, :3] = 255
        image = Image.fromarray(rgba, "RGBA")
    image.save(tmp_path / "mask.png")
    out = tmp_path / "masked"
    check_ok(
        cli(
            "analyze --model {local} --seed 0 --region {mask} --out {out} --quiet",
            local=local,
            mask=tmp_path / "mask.png",
            out=out,
        )
    )
    arrays = load_npz(out / "analysis.npz")
    info = json.loads((out / "analysis.json").read_text())
    np.testing.assert_array_equal(arrays["region_mask"], mask)
    assert info["region_pixels"] == int(mask.sum())


def test_analyze_box(tmp_path, local):
    out = tmp_path / "box"
    check_ok(
        cli(
            "analyze --model {local} --seed 0 --region box:2,3,10,12 --out {out} --quiet",
            local=local,
            out=out,
        )
    )
    arrays = load_npz(out / "analysis.npz")
    expected = np.zeros((16, 16), dtype=bool)
    expected[3:12, 2:10] = True
    np.testing.assert_array_equal(arrays["region_mask"], expected)
    assert json.loads((out / "analysis.json").read_text())["region"] == "box:2,3,10,12"


def test_analyze_detects_a_dcgan_checkpoint(tmp_path):
    torch.save({"netG_state_dict": small_dcgan_state()}, tmp_path / "small.pt")
    out = tmp_path / "ckpt"
    check_ok(
        cli(
            "analyze --model {ckpt} --seed 0 --region left --out {out} --quiet",
            ckpt=tmp_path / "small.pt",
            out=out,
        )
    )
    arrays = load_npz(out / "analysis.npz")
    assert arrays["latent"].shape == (8,)
    assert arrays["region_mask"].shape == (8, 8)
    assert arrays["region_mask"][:, :4].all() and not arrays["region_mask"][:, 4:].any()


def test_edit_one_shot_from_faces_analysis(tmp_path, faces_analysis):
    out = tmp_path / "edits"
    check_ok(
        cli(
            "edit --model dcgan-faces --analysis {analysis} --strengths -2,0,2 --one-shot "
            "--out {out} --quiet",
            analysis=faces_analysis / "analysis.npz",
            out=out,
        )
    )
    analysis = load_npz(faces_analysis / "analysis.npz")
    edits = load_npz(out / "edits.npz")
    latents, direction = edits["latents"], analysis["directions"][:, 0]
    assert latents.shape == (3, 100)
    np.testing.assert_array_equal(edits["strengths"], [-2.0, 0.0, 2.0])
    np.testing.assert_allclose(latents[1], analysis["latent"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(latents[0], analysis["latent"] - 2 * direction, atol=1e-5)
    np.testing.assert_allclose(latents[2], analysis["latent"] + 2 * direction, atol=1e-5)
    with Image.open(out / "edits.png") as png:
        assert png.format == "PNG" and png.width > png.height > 64
    with Image.open(out / "edits.gif") as gif:
        assert gif.format == "GIF" and gif.is_animated and gif.n_frames >= 3
    names = sorted(p.name for p in out.iterdir())
    assert names == ["edits.gif", "edits.json", "edits.npz", "edits.png"]


def test_one_shot_edit_changes_only_the_region(tmp_path, work, local, local_analysis):
    out = tmp_path / "edits"
    check_ok(
        cli(
            "edit --model {local} --analysis {analysis} --strengths 1.5,0,-1.5 --one-shot "
            "--out {out} --quiet",
            local=local,
            analysis=local_analysis,
            out=out,
        )
    )
    edits = load_npz(out / "edits.npz")
    np.testing.assert_array_equal(edits["strengths"], [1.5, 0.0, -1.5])
    net = import_factory_file(work / "gens.py").local()
    with torch.no_grad():
        images = net(torch.from_numpy(edits["latents"]).float()).numpy()
    original = images[1]
    for edited in (images[0], images[2]):
        assert np.abs(edited - original)[:, ~CENTRE].max() < 1e-6
        assert np.abs(edited - original)[:, CENTRE].max() > 0.05


def test_edit_path_following_with_region(tmp_path, local):
    out = tmp_path / "path"
    check_ok(
        cli(
            "edit --model {local} --region center --seed 1 --strengths -1,0,1 --step 1 "
            "--out {out} --quiet",
            local=local,
            out=out,
        )
    )
    for name in (
        "analysis.npz",
        "analysis.json",
        "edits.npz",
        "edits.json",
        "edits.png",
        "edits.gif",
    ):
        assert (out / name).is_file(), name
    start = load_npz(out / "analysis.npz")["latent"]
    latents = load_npz(out / "edits.npz")["latents"]
    assert latents.shape == (3, 8)
    np.testing.assert_allclose(latents[1], start, atol=1e-6)
    for row in (0, 2):
        np.testing.assert_allclose(latents[row, 4:], start[4:], atol=1e-5)
        assert np.linalg.norm(latents[row] - start) == pytest.approx(1.0, rel=1e-3)
    assert json.loads((out / "analysis.json").read_text())["seed"] == 1


def test_edit_seeds_gives_a_row_per_seed(tmp_path, local, local_analysis):
    out = tmp_path / "seeds"
    check_ok(
        cli(
            "edit --model {local} --analysis {analysis} --seeds 0-2 --strengths -1,0,1 "
            "--one-shot --out {out} --quiet",
            local=local,
            analysis=local_analysis,
            out=out,
        )
    )
    edits = load_npz(out / "edits.npz")
    assert edits["latents"].shape == (9, 8)
    np.testing.assert_array_equal(edits["seeds"], [0, 0, 0, 1, 1, 1, 2, 2, 2])
    np.testing.assert_array_equal(edits["strengths"], [-1, 0, 1] * 3)
    starts = edits["latents"][1::3]
    assert len({tuple(np.round(row, 6)) for row in starts}) == 3
    np.testing.assert_allclose(
        starts[0], load_npz(local_analysis / "analysis.npz")["latent"], atol=1e-6
    )  # the analysis was made at seed 0


def test_edit_refuses_an_analysis_of_another_model(tmp_path, work, local_analysis):
    out = tmp_path / "gray"
    proc = cli(
        "edit --model {work}/gens.py:gray --analysis {analysis} --strengths -1,0,1 "
        "--one-shot --out {out} --quiet",
        work=work,
        analysis=local_analysis,
        out=out,
    )
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "was made on model" in proc.stderr and "gens.py:local" in proc.stderr
    assert not out.exists()


def test_edit_with_analysis_of_another_resolution(tmp_path, work, local_analysis):
    # With --other-model a one-shot edit needs only the direction; a 1-channel 32x32 model of
    # the same latent size must not trip over the 16x16 region mask stored in the analysis.
    out = tmp_path / "gray"
    check_ok(
        cli(
            "edit --model {work}/gens.py:gray --analysis {analysis} --strengths -1,0,1 "
            "--one-shot --other-model --out {out} --quiet",
            work=work,
            analysis=local_analysis,
            out=out,
        )
    )
    assert load_npz(out / "edits.npz")["latents"].shape == (3, 8)


@pytest.mark.slow  # a 128 px class-conditional GAN
def test_analyze_omniart_eyes_class_and_iris(tmp_path):
    out = tmp_path / "iris"
    check_ok(
        cli(
            "analyze --model omniart-eyes --class blue --seed 0 --region iris --out {out} --quiet",
            out=out,
        )
    )
    arrays = load_npz(out / "analysis.npz")
    info = json.loads((out / "analysis.json").read_text())
    assert info["model"] == "omniart-eyes" and info["class"] == "blue"
    assert info["region"] == "iris" and info["resolution"] == [128, 128]
    assert arrays["latent"].shape == (100,)
    assert arrays["directions"].shape[0] == 100 and arrays["directions"].shape[1] >= 1


# --------------------------------------------------------------------------- bad input


@dataclass(frozen=True)
class Bad:
    """A bad command line. `command` is split on spaces, then {work}, {local}, {analysis} and
    {tmp} are filled in; `--out <out> --quiet` is appended.

    expect: a phrase the error must contain. calls: most forward calls of the local generator
    allowed before the error (0: refused before loading the model, 1: right after its probe,
    before any Jacobian); None when the case does not use it. marker: a file that the
    checkpoint's payload would create if it ran.
    """

    command: str
    expect: str
    calls: int | None = None
    marker: str | None = None
    out: str = "{tmp}/results/run"


REGULAR_FILE_TEXT = "a file, not a folder\n"
FACES = "analyze --model dcgan-faces --seed 0 --region eyes"
LOCAL = "analyze --model {local} --seed 0"
EDIT = "edit --model {local} --analysis {analysis}"
OMNI = "analyze --model omniart-eyes --seed 0 --region iris"
ON = "--seed 0 --region center"

BAD: dict[str, Bad] = {
    "unknown-model": Bad("analyze --model no-such-gan --seed 0 --region eyes", "unknown model"),
    "missing-checkpoint-for-named-model": Bad(
        f"{FACES} --checkpoint {{work}}/missing.tar", "not found"
    ),
    "missing-checkpoint-path": Bad(f"analyze --model {{work}}/missing.pt {ON}", "not found"),
    "random-bytes-checkpoint": Bad(f"analyze --model {{work}}/random.pt {ON}", "random.pt"),
    "truncated-torch-save": Bad(f"analyze --model {{work}}/truncated.pt {ON}", "truncated.pt"),
    "pickle-payload": Bad(
        f"analyze --model {{work}}/payload.pkl {ON}", "refused", marker="payload.pkl.ran"
    ),
    "torch-save-payload": Bad(
        f"analyze --model {{work}}/payload.pt {ON}", "refused", marker="payload.pt.ran"
    ),
    "legacy-torch-save-payload-as-checkpoint": Bad(
        f"{FACES} --checkpoint {{work}}/payload_legacy.pt",
        "refused",
        marker="payload_legacy.pt.ran",
    ),
    "box-outside-image": Bad(f"{LOCAL} --region box:0,0,17,8", "outside", 1),
    "box-inverted": Bad(f"{LOCAL} --region box:8,8,4,12", "inverted", 1),
    "box-three-numbers": Bad(f"{LOCAL} --region box:1,2,3", "four integers", 1),
    "box-not-numbers": Bad(f"{LOCAL} --region box:a,b,c,d", "integers", 1),
    "unknown-preset": Bad("analyze --model dcgan-faces --seed 0 --region ears", "unknown region"),
    "mask-missing": Bad(f"{LOCAL} --region {{work}}/missing.png", "not found", 1),
    "mask-wrong-size": Bad(f"{LOCAL} --region {{work}}/mask_16x20.png", "16x20", 1),
    "mask-empty": Bad(f"{LOCAL} --region {{work}}/mask_empty.png", "empty", 1),
    "mask-not-an-image": Bad(f"{LOCAL} --region {{work}}/not_image.png", "cannot read", 1),
    "keep-equals-region": Bad(f"{LOCAL} --region center --keep center", "equals", 1),
    "seed-not-integer": Bad("analyze --model {local} --seed abc --region center", "--seed", 0),
    "seed-negative": Bad("analyze --model {local} --seed -1 --region center", "--seed", 1),
    "seed-too-large": Bad(f"analyze --model {{local}} --seed {2**64} --region center", "--seed", 1),
    "latent-wrong-shape": Bad(
        "analyze --model {local} --latent {work}/z7.npy --region center", "shape", 1
    ),
    "latent-nan": Bad(
        "analyze --model {local} --latent {work}/z_nan.npy --region center", "nan", 1
    ),
    "latent-beyond-float32": Bad(
        "analyze --model {local} --latent {work}/z_huge.npy --region center", "inf", 1
    ),
    "rank-0": Bad(f"{FACES} --rank 0", "rank"),
    "rank-above-latent-dim": Bad(f"{FACES} --rank 101", "1..100"),
    "keep-rank-full": Bad(f"{FACES} --keep-rank 100", "1..99"),
    "memory-budget-nan": Bad(f"{LOCAL} --region center --memory-budget nan", "finite", 1),
    "contrast-tau-inf": Bad(
        f"{LOCAL} --region center --method contrast --contrast-tau inf", "finite", 1
    ),
    "out-under-regular-file": Bad(
        f"{LOCAL} --region center", "not a directory", 0, out="{work}/regular_file/out"
    ),
    "strengths-malformed": Bad(f"{EDIT} --strengths 1,,x --one-shot", "strengths", 0),
    "strengths-nan": Bad(f"{EDIT} --strengths nan --one-shot", "finite", 0),
    "step-nan": Bad(f"{EDIT} --step nan", "--step", 0),
    "seeds-inverted": Bad(f"{EDIT} --seeds 5-2 --one-shot", "inverted", 0),
    "seeds-too-many": Bad(f"{EDIT} --seeds 0-99999999999 --one-shot", "seeds", 0),
    "class-on-unconditional-model": Bad(
        f"{LOCAL} --region center --class 0", "not class-conditional", 1
    ),
    "unknown-class-name": Bad(f"{OMNI} --class purple", "unknown class"),
    "class-index-out-of-range": Bad(f"{OMNI} --class 8", "out of range"),
    "direction-out-of-range": Bad(f"{EDIT} --direction 999 --one-shot", "999", 1),
    "analysis-truncated": Bad(
        "edit --model {local} --analysis {work}/truncated_analysis.npz --one-shot", "analysis", 1
    ),
    "analysis-without-json-path-following": Bad(
        "edit --model {local} --analysis {work}/no_json/analysis.npz --step 1", "--one-shot", 1
    ),
    "factory-raises": Bad(
        f"analyze --model {{work}}/gens.py:broken {ON}", "factory broke on two lines", 0
    ),
    "factory-forward-raises": Bad(
        f"analyze --model {{work}}/gens.py:bad_forward {ON}", "forward broke"
    ),
    "factory-four-channels": Bad(
        f"analyze --model {{work}}/gens.py:four_channels {ON}", "channels"
    ),
    "device-cuda": Bad(f"{LOCAL} --region center --device cuda", "cuda", 0),
}


def _payload_files(work: Path) -> None:
    """Checkpoints whose unpickling would run `touch <name>.ran`; each is shown to be live
    (loading it unsafely does create the marker) before the CLI gets it."""

    class Payload:
        def __init__(self, marker: Path) -> None:
            self.marker = marker

        def __reduce__(self):
            return (os.system, (f"touch {shlex.quote(str(self.marker))}",))

    def live(path: Path, unsafe_load) -> None:
        marker = Path(f"{path}.ran")
        unsafe_load(path)
        assert marker.exists(), f"the payload in {path.name} does not run"
        marker.unlink()

    path = work / "payload.pkl"
    with open(path, "wb") as handle:
        pickle.dump({"main.0.weight": Payload(Path(f"{path}.ran"))}, handle, protocol=4)
    live(path, lambda p: pickle.loads(p.read_bytes()))
    for name, zipped in (("payload.pt", True), ("payload_legacy.pt", False)):
        path = work / name
        torch.save(
            {"netG_state_dict": Payload(Path(f"{path}.ran"))},
            path,
            _use_new_zipfile_serialization=zipped,
        )
        live(path, lambda p: torch.load(p, weights_only=False))


def _bad_input_files(work: Path, local_analysis: Path) -> None:
    rng = np.random.default_rng(0)
    (work / "random.pt").write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    torch.save(small_dcgan_state(), work / "real.pt")
    data = (work / "real.pt").read_bytes()
    (work / "truncated.pt").write_bytes(data[: len(data) // 2])
    _payload_files(work)
    wrong = np.zeros((20, 16), dtype=np.uint8)
    wrong[2:6, 2:6] = 255
    Image.fromarray(wrong).save(work / "mask_16x20.png")
    Image.fromarray(np.zeros((16, 16), dtype=np.uint8)).save(work / "mask_empty.png")
    (work / "not_image.png").write_bytes(b"this is not a png")
    np.save(work / "z_ok.npy", np.zeros(8))
    np.save(work / "z7.npy", np.zeros(7))
    np.save(work / "z_nan.npy", np.array([0, 1, 2, np.nan, 4, 5, 6, 7], dtype=np.float64))
    np.save(work / "z_huge.npy", np.full(8, 1e300))
    (work / "regular_file").write_text(REGULAR_FILE_TEXT)
    analysis = (local_analysis / "analysis.npz").read_bytes()
    (work / "truncated_analysis.npz").write_bytes(analysis[: len(analysis) // 2])
    (work / "no_json").mkdir()
    (work / "no_json" / "analysis.npz").write_bytes(analysis)


@dataclass
class BadRun:
    proc: subprocess.CompletedProcess | MainRun
    tmp: Path
    out: Path
    calls: int
    seconds: float


#: Bad inputs also run through the installed console script: a refusal before the model
#: loads, one while loading a checkpoint (its payload must not run), one from a factory, one
#: about the output folder and a count refused before any work.
CONSOLE_BAD = (
    "unknown-model",
    "pickle-payload",
    "factory-raises",
    "out-under-regular-file",
    "seeds-too-many",
)


@pytest.fixture(scope="module")
def bad_inputs(work, local, local_analysis) -> dict[str, object]:
    """The files the bad command lines name, made once; the fields their commands use."""
    _bad_input_files(work, local_analysis)
    return {"work": work, "local": local, "analysis": local_analysis}


def run_bad(name: str, fields: dict[str, object], tmp: Path, through_console: bool) -> BadRun:
    """Run the bad command line `name` in the empty folder `tmp`, in this process or
    through the console script, counting the local generator's forward calls."""
    case = BAD[name]
    fields = {**fields, "tmp": tmp}
    args = [*words(case.command, **fields), "--out", case.out.format(**fields), "--quiet"]
    log = tmp.parent / f"{tmp.name}-forward_calls.log"
    env = {"LOWRANKGAN_TEST_CALLS": str(log)}
    start = time.perf_counter()
    if through_console:
        proc = console(*args, cwd=tmp, env={**ENV, **env})
    else:
        proc = run_main(*args, cwd=tmp, env=env)
    seconds = time.perf_counter() - start
    calls = len(log.read_text().splitlines()) if log.exists() else 0
    log.unlink(missing_ok=True)
    return BadRun(proc, tmp, Path(case.out.format(**fields)), calls, seconds)


def check_refused(name: str, result: BadRun, work: Path) -> None:
    case, proc = BAD[name], result.proc
    assert proc.returncode == 2, f"exit {proc.returncode}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert case.expect.lower() in lines[0].lower(), lines[0]
    # Nothing half-written: no output folder, no staging folder, no folders made for them.
    if result.out.is_relative_to(result.tmp):
        assert sorted(p.name for p in result.tmp.iterdir()) == [], list(result.tmp.iterdir())
    else:  # under (or at) a regular file, which must be left as it was
        assert not result.out.is_dir()
        assert (work / "regular_file").read_text() == REGULAR_FILE_TEXT
    assert not [p for p in work.iterdir() if "partial" in p.name]
    if case.marker is not None:
        assert not (work / case.marker).exists(), "the checkpoint's payload ran"
    if case.calls is not None:
        assert result.calls <= case.calls, f"{result.calls} forward calls before the error"
    assert result.seconds < 60  # a bad input is refused, not worked on (e.g. --seeds 0-1e11)


@pytest.mark.parametrize("name", list(BAD))
def test_bad_input_is_one_error_line_and_leaves_nothing(name, bad_inputs, work, tmp_path):
    if name.startswith("device-cuda") and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    folder = tmp_path / "run"
    folder.mkdir()
    check_refused(name, run_bad(name, bad_inputs, folder, through_console=False), work)


@pytest.mark.parametrize("name", CONSOLE_BAD)
def test_bad_input_through_the_console_script(name, bad_inputs, work, tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    check_refused(name, run_bad(name, bad_inputs, folder, through_console=True), work)


def test_console_script_help_version_and_exit_codes():
    version = console("--version")
    assert version.returncode == 0 and version.stdout.strip().endswith(lowrankgan.__version__)
    helped = console("--help")
    assert helped.returncode == 0 and helped.stderr == ""
    for command in ("models", "fetch", "analyze", "edit", "evaluate", "demo"):
        assert command in helped.stdout
    unknown = console("frobnicate")
    assert unknown.returncode == 2 and "Traceback" not in unknown.stderr
    assert unknown.stderr.count("\n") == 1 and unknown.stderr.startswith("error: ")
    assert "frobnicate" in unknown.stderr and unknown.stdout == ""


def test_console_script_progress_goes_to_stderr(tmp_path, local):
    # Without --quiet the bars go to stderr; stdout holds only the result line.
    out = tmp_path / "out"
    proc = console(
        *words(
            "edit --model {local} --region center --seed 1 --strengths -1,1 --step 0.5", local=local
        ),
        "--out",
        out,
    )
    check_ok(proc)
    assert proc.stdout == f"2 edited images -> {out}\n"
    assert "Path" in proc.stderr and "step" in proc.stderr
    assert "error" not in proc.stderr.lower()


@pytest.mark.slow
def test_demo_writes_a_self_contained_report(tmp_path: Path):
    out = tmp_path / "demo"  # as `make demo` runs it: the installed console script
    proc = console(*words("demo --out {out} --seeds 0 --regions mouth --quiet", out=out))
    check_ok(proc)
    report = out / "index.html"
    assert proc.stdout.strip() == str(report)
    html = report.read_text()
    assert html.count("data:image/png;base64,") >= 5  # region, strip, heat maps, transfer
    assert html.count("data:image/gif;base64,") == 1
    assert "Seed 0: mouth" in html and "Transfer to other faces" in html
    assert "change reached" in html  # edits are labelled by the change they reached
    assert 'src="http' not in html
    for name in ("seed0_mouth.png", "seed0_mouth.gif", "transfer.png"):
        assert (out / name).stat().st_size > 1000


def test_demo_rejects_an_unknown_region(tmp_path: Path):
    out = tmp_path / "demo"
    proc = cli("demo --out {out} --regions elbow --quiet", out=out)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ")
    assert not out.exists()
