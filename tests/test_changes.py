"""Edits to a requested change inside the region (`--change`, `changes=`): reached to the
asked precision on generators whose structure is known, refused or reported honestly when
they cannot be, recorded in `edits.npz` / `edits.json`, and evaluated at equal change."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hostile import assert_refused, run_console
from lowrankgan import AnalysisSettings, analyze, edit, edit_analysis, locality
from lowrankgan.models.base import Model
from lowrankgan.pipeline import path as path_module
from lowrankgan.pipeline.edits import ChangeMeter, one_shot_to_changes, parse_changes
from lowrankgan.pipeline.evaluation import EvaluationConfig, read_results, run_cells
from structured import SIZE, structured_model

# A generator whose centre 8x8 (the generic `center` preset) saturates: it is
# 0.05 * tanh(...) of z[:4], so its rms change can never pass 0.1; the rest depends on z[4:].
SATURATING = """
import torch
from torch import nn


class Saturating(nn.Module):
    latent_dim = 8

    def __init__(self):
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.inner = nn.Parameter(torch.randn(3 * 64, 4, generator=gen))
        self.outer = nn.Parameter(torch.randn(3 * 256, 4, generator=gen) * 0.3)
        centre = torch.zeros(16, 16, dtype=torch.bool)
        centre[4:12, 4:12] = True
        self.register_buffer("centre", centre)

    def forward(self, z):
        inside = 0.05 * torch.tanh(3 * z[:, :4] @ self.inner.T).reshape(-1, 3, 8, 8)
        outside = torch.tanh(z[:, 4:] @ self.outer.T).reshape(-1, 3, 16, 16)
        # the centre 8x8 from `inside`, the rest from `outside`, without in-place writes
        padded = torch.nn.functional.pad(inside, (4, 4, 4, 4))
        return torch.where(self.centre, padded, outside)


def factory():
    return Saturating()
"""


@pytest.fixture(scope="module")
def model():
    return structured_model()


@pytest.fixture(scope="module")
def latent(model):
    return model.sample_latent(3)


@pytest.fixture(scope="module")
def analysis(model, latent):
    return analyze(model, latent, "left", rank=4, keep_rank=6)


def measured(model, latent, latents, region) -> np.ndarray:
    """rms change inside `region` of each edit, by `locality` itself."""
    with torch.no_grad():
        original = model.synthesize(latent)[0]
        images = model.synthesize(latents)
    return np.array([locality(original, image, region).rms_inside for image in images])


@pytest.mark.parametrize("one_shot", [True, False])
def test_changes_are_reached_to_one_percent_and_the_rest_stays_still(
    model, latent, analysis, one_shot
):
    asked = [-0.1, -0.05, 0.0, 0.05, 0.1, 0.15]
    edits = edit_analysis(model, analysis, changes=asked, one_shot_edit=one_shot, step=0.5)
    region = torch.from_numpy(analysis.region_mask)
    reached = measured(model, latent, edits.latents, region)
    np.testing.assert_allclose(reached, np.abs(asked), rtol=0.01, atol=1e-6)
    np.testing.assert_allclose(edits.achieved, np.sign(asked) * reached, rtol=1e-6, atol=1e-9)
    assert edits.reached.all() and list(edits.changes) == asked
    # strengths are latent distances, signed by the side of the edit
    distances = (edits.latents - latent).norm(dim=1).numpy()
    np.testing.assert_allclose(np.abs(edits.strengths), distances, rtol=1e-4, atol=1e-6)
    assert np.all(np.sign(edits.strengths) == np.sign(asked))
    with torch.no_grad():
        before, after = model.synthesize(latent)[0], model.synthesize(edits.latents)
    right = slice(SIZE // 2, SIZE)
    assert (after[:, :, :, right] - before[:, :, right]).abs().max() < 1e-5


def test_edit_with_any_direction_reaches_changes(model, latent, analysis):
    direction = analysis.directions[:, 1]
    edits = edit(model, latent, direction, changes=[0.08], region="left", keep_rank=6, step=0.5)
    region = torch.from_numpy(analysis.region_mask)
    assert measured(model, latent, edits.latents, region)[0] == pytest.approx(0.08, rel=0.01)


def test_strength_edits_record_the_change_they_made(model, latent, analysis):
    edits = edit_analysis(model, analysis, [-2.0, 0.0, 2.0], one_shot_edit=True)
    region = torch.from_numpy(analysis.region_mask)
    expected = np.sign([-2.0, 0.0, 2.0]) * measured(model, latent, edits.latents, region)
    np.testing.assert_allclose(edits.achieved, expected, rtol=1e-6)
    assert edits.changes is None and edits.reached.all()


def line_model(profile) -> Model:
    """A 1x1x2 "image" whose every pixel is `profile(t)` at latent `(t, 0)`: the change
    along the first axis from the origin is exactly `|profile(t) - profile(0)|`."""

    def synthesis(network, latents, condition):
        values = profile(latents[:, :1].double()).to(latents.dtype)
        return values.reshape(-1, 1, 1, 1).expand(-1, 1, 1, 2)

    return Model(
        name="line", network=torch.nn.Identity(), latent_dim=2, resolution=(1, 2),
        synthesis_fn=synthesis, channels=1,
    )  # fmt: skip


def reach_on(model: Model, changes, bound):
    meter = ChangeMeter(model, torch.zeros(2), torch.ones(1, 2, dtype=torch.bool))
    return one_shot_to_changes(torch.zeros(2), torch.tensor([1.0, 0.0]), changes, meter, bound)


def test_a_saturating_line_reports_the_largest_change_it_reached():
    # The change along the line is 0.1 * tanh(|t|): it never reaches 0.2.
    edits = reach_on(line_model(lambda t: 0.1 * torch.tanh(t.abs())), [0.05, 0.2, -0.2], 20.0)
    assert edits.reached.tolist() == [True, False, False]
    assert edits.achieved[0] == pytest.approx(0.05, rel=1e-3)
    assert 0.0999 < edits.achieved[1] <= 0.1 + 1e-7 and -0.1 - 1e-7 <= edits.achieved[2] < -0.0999
    assert edits.strengths[1] > 5 and edits.strengths[2] < -5  # went far before giving up


def test_a_path_goes_on_through_a_dip_in_the_change():
    """The region's change rises to 0.05, falls back to 0.04 over 4 units of arc length (16
    steps) and then grows again: the path does not give up on the dip, it searches to
    `max_strength` as one-shot does. The kept pixel depends on the other coordinate only, so
    the path is the straight line."""

    def profile(t):
        dip = 0.01 * torch.sigmoid(2 * (t - 2))
        return 0.05 * torch.tanh(3 * t) - dip + 0.0125 * torch.nn.functional.softplus(4 * (t - 6))

    def synthesis(network, latents, condition):
        region = profile(latents[:, :1].double()) - profile(torch.zeros((), dtype=torch.float64))
        kept = 0.5 * torch.tanh(latents[:, 1:].double())
        return torch.cat([region, kept], dim=1).to(latents.dtype).reshape(-1, 1, 1, 2)

    model = Model(
        name="dip", network=torch.nn.Identity(), latent_dim=2, resolution=(1, 2),
        synthesis_fn=synthesis, channels=1,
    )  # fmt: skip
    region = torch.tensor([[True, False]])
    edits = edit(
        model, torch.zeros(2), torch.tensor([1.0, 0.0]), changes=[0.08],
        region=region, keep=~region, keep_rank=1, max_strength=10.0,
    )  # fmt: skip
    assert edits.reached.tolist() == [True]
    assert edits.achieved[0] == pytest.approx(0.08, rel=1e-3)
    assert 6.5 < edits.strengths[0] < 7.0  # beyond the dip, where 0.04 + 0.0125 softplus = 0.08
    np.testing.assert_allclose(edits.latents[0, 1].item(), 0.0, atol=1e-6)


@settings(max_examples=40, deadline=None)
@given(
    gain=st.floats(0.01, 100.0),
    power=st.floats(0.5, 3.0),
    target=st.floats(1e-3, 1.0),
    sign=st.sampled_from([-1.0, 1.0]),
)
def test_one_shot_root_finder_on_monotone_lines(gain, power, target, sign):
    """Any increasing change `gain * |t|**power` within reach is met to 0.1%, at the root."""
    bound = 50.0
    model = line_model(lambda t: gain * t.abs() ** power)
    edits = reach_on(model, [sign * target], bound)
    reachable = gain * bound**power >= target
    assert bool(edits.reached[0]) == reachable
    if reachable:
        assert abs(abs(edits.achieved[0]) - target) <= 1e-3 * target
        root = (target / gain) ** (1 / power)
        assert abs(abs(edits.strengths[0]) - root) <= 1e-3 * root / power + 1e-9
        assert math.copysign(1, edits.strengths[0]) == sign


def test_path_following_reuses_the_field(model, latent, analysis, monkeypatch):
    calls = []
    real = path_module.analysis_field

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(path_module, "analysis_field", counting)
    edits = edit_analysis(model, analysis, [4.0], step=0.25)
    # 16 steps; the kept region's null space is flat here, so the first field serves them all
    assert len(calls) == 1
    assert edits.strengths[0] == pytest.approx(4.0)


def test_parse_changes_refuses_empty_nonfinite_and_zero_lists():
    assert parse_changes("-0.1,0,0.1") == [-0.1, 0.0, 0.1]
    for bad in ("", "nan", "0.1,inf", "0", "0,0,-0"):
        with pytest.raises(Exception) as info:
            parse_changes(bad)
        assert type(info.value).__name__ == "UserInputError"


# ---------------------------------------------------------------------------------------------
# The command line


@pytest.fixture(scope="module")
def saturating(tmp_path_factory):
    folder = tmp_path_factory.mktemp("saturating")
    (folder / "gen.py").write_text(SATURATING)
    return f"{folder / 'gen.py'}:factory"


@pytest.mark.parametrize("one_shot", [True, False])
def test_an_unreachable_change_is_said_and_recorded(run_main, saturating, tmp_path, one_shot):
    out = tmp_path / "edit"
    args = ["edit", "--model", saturating, "--seed", "0", "--region", "center"]
    args += ["--change", "-0.05,0,0.05,0.3", "--max-strength", "8", "--out", out, "--quiet"]
    run = run_main(*args, *(["--one-shot"] if one_shot else []))
    assert run.returncode == 0, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "1 of 4 changes not reached" in lines[0], run.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "analysis.json",
        "analysis.npz",
        "edits.gif",
        "edits.json",
        "edits.npz",
        "edits.png",
    ]
    record = json.loads((out / "edits.json").read_text())
    assert record["asked"] == "changes" and record["values"] == [-0.05, 0.0, 0.05, 0.3]
    assert [m["asked"] for m in record["unreachable"]] == [0.3]
    missed = record["unreachable"][0]
    assert 0.05 < missed["achieved"] < 0.1 and 0 < missed["strength"] <= 8 + 1e-9
    with np.load(out / "edits.npz") as npz:
        assert npz["reached"].tolist() == [True, True, True, False]
        assert npz["changes"].tolist() == [-0.05, 0.0, 0.05, 0.3]
        np.testing.assert_allclose(npz["achieved"][:3], [-0.05, 0.0, 0.05], rtol=0.01)
        assert npz["achieved"][3] == pytest.approx(missed["achieved"])


def test_changes_and_achieved_round_trip_through_edits_npz(run_main, tmp_path):
    from structured import structured_model as make

    out = tmp_path / "edit"
    factory = structured_factory(tmp_path)
    run = run_main(
        "edit", "--model", f"{factory}:factory", "--seed", "3", "--region", "left",
        "--rank", "4", "--keep-rank", "6", "--change", "0.1,-0.05", "--seeds", "3,4",
        "--out", out, "--quiet",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""
    model = make()
    with np.load(out / "edits.npz") as npz:
        latents = torch.from_numpy(npz["latents"]).float()
        assert npz["changes"].tolist() == [0.1, -0.05, 0.1, -0.05]
        assert npz["seeds"].tolist() == [3, 3, 4, 4]
        region = torch.from_numpy(json_mask(out))
        for row, seed in enumerate(npz["seeds"]):
            start = model.sample_latent(int(seed))
            again = measured(model, start, latents[row : row + 1], region)[0]
            assert np.sign(npz["changes"][row]) * again == pytest.approx(npz["achieved"][row])
            assert abs(npz["achieved"][row]) == pytest.approx(abs(npz["changes"][row]), rel=0.01)
        distances = [
            float((latents[row] - model.sample_latent(int(seed))).norm())
            for row, seed in enumerate(npz["seeds"])
        ]
        np.testing.assert_allclose(np.abs(npz["strengths"]), distances, rtol=1e-4)


def structured_factory(folder: Path) -> Path:
    """A `file.py` whose `factory` is tests/structured.py's generator, for the command line."""
    factory = folder / "gen.py"
    factory.write_text(
        f"import sys\nsys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from structured import StructuredGenerator\n\n"
        "def factory():\n    return StructuredGenerator()\n"
    )
    return factory


def json_mask(out) -> np.ndarray:
    with np.load(out / "analysis.npz") as npz:
        return npz["region_mask"]


@pytest.mark.parametrize(
    ("extra", "expect"),
    [
        (["--change", "0.1", "--strengths", "1"], "either --strengths or --change"),
        (["--change", "nan"], "finite"),
        (["--change", "0.1,inf"], "finite"),
        (["--change", ""], "no changes"),
        (["--change", "0,0"], "all zero"),
        (["--change", "0.1", "--max-strength", "0"], "--max-strength"),
        (["--change", "0.1", "--max-strength", "-3"], "--max-strength"),
        (["--change", "0.1", "--max-strength", "inf"], "--max-strength"),
        (["--change", "0.1", "--max-strength", "nan"], "--max-strength"),
    ],
)
def test_bad_change_requests_are_refused_in_one_line(saturating, tmp_path, extra, expect):
    out = tmp_path / "out"
    run = run_console(
        "edit", "--model", saturating, "--seed", "0", "--region", "center", *extra, "--out", out
    )
    assert_refused(run, expect)
    assert not out.exists()


# ---------------------------------------------------------------------------------------------
# Evaluation at equal change


def test_evaluation_compares_methods_at_equal_change(model, tmp_path):
    config = EvaluationConfig(
        regions=("left",),
        methods=("lowrank", "jacobian"),
        seeds=(0, 1),
        strengths=(1.0, 2.0),
        changes=(0.05, 0.1),
        transfer=1,
        settings=AnalysisSettings(rank=4, keep_rank=6),
    )
    result = run_cells(model, config, tmp_path, progress=False)
    rows = result.rows
    change_rows = [r for r in rows if r["target"] == "change"]
    kinds = sorted({r["kind"] for r in change_rows})
    assert kinds == ["self", "transfer", "transfer_change"]
    # 2 methods x 2 seeds x 2 changes x (self + 2 transfer kinds x 1 image)
    assert len(change_rows) == 2 * 2 * 2 * 3
    for row in change_rows:
        if row["kind"] != "transfer":  # edited to the change on its own image
            assert row["rms_inside"] == pytest.approx(row["change"], rel=0.01)
    # the local direction keeps the right half still at equal change; the region's own
    # principal direction does not
    local = [r["ratio"] for r in change_rows if r["method"] == "lowrank" and r["kind"] == "self"]
    own = [r["ratio"] for r in change_rows if r["method"] == "jacobian" and r["kind"] == "self"]
    assert max(local) < 1e-3 < min(own)

    # transfer rows at the analysed image's strength carry that strength
    def lowrank(seed, kind, change):
        key = ("lowrank", seed, kind, change)
        return [r for r in change_rows if (r["method"], r["seed"], r["kind"], r["change"]) == key]

    for seed in (0, 1):
        for change in (0.05, 0.1):
            (self_row,) = lowrank(seed, "self", change)
            moved = lowrank(seed, "transfer", change)
            assert moved and all(
                r["strength"] == pytest.approx(self_row["strength"]) for r in moved
            )
    again = run_cells(model, config, tmp_path, progress=False)
    assert again.computed == 0 and again.rows == rows


def test_evaluate_command_writes_the_equal_change_headline(run_main, tmp_path):
    factory = structured_factory(tmp_path)
    out = tmp_path / "eval"
    run = run_main(
        "evaluate", "--model", f"{factory}:factory", "--regions", "left", "--methods",
        "lowrank,contrast", "--seeds", "0-1", "--strengths", "1,2", "--changes", "0.05,0.1",
        "--transfer", "1", "--rank", "4", "--keep-rank", "6", "--out", out, "--quiet",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    summary = (out / "summary.md").read_text()
    assert "# At equal change inside the region" in summary
    assert summary.index("At equal change") < summary.index("At equal strength")
    assert "Ranking and head-to-head at change 0.1" in summary
    assert "0 of 16 edits" in summary  # none unreached
    rows = read_results(out / "results.csv")
    assert {r["target"] for r in rows} == {"strength", "change"}
    assert all(r["reached"] for r in rows)
    assert (out / "plots" / "left_change_locality.png").is_file()
    assert (out / "plots" / "left_transfer_change_locality.png").is_file()
