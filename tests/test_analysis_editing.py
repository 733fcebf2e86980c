"""Analysis artifacts, locality metrics and edits on the real face GAN."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from lowrankgan import Analysis, UserInputError, analyze, edit_analysis, load_model, locality
from lowrankgan.io.analysis_files import ANALYSIS_ARRAYS
from lowrankgan.pipeline.editing import parse_strengths
from lowrankgan.pipeline.edits import one_shot


@pytest.fixture(scope="module")
def faces():
    return load_model("dcgan-faces")


@pytest.fixture(scope="module")
def eyes_analysis(faces):
    return analyze(faces, faces.sample_latent(0), "eyes")


def test_locality_known_values():
    original = torch.zeros(3, 2, 2, dtype=torch.float64)
    edited = original.clone()
    edited[:, 0, 0] = 0.6  # inside: one pixel, change 0.6 in each channel
    edited[:, 1, 1] = 0.3  # outside: one of three pixels
    region = torch.tensor([[True, False], [False, False]])
    result = locality(original, edited, region)
    assert math.isclose(result.rms_inside, 0.6)
    assert math.isclose(result.rms_outside, math.sqrt(0.09 / 3))
    assert math.isclose(result.ratio, math.sqrt(0.09 / 3) / 0.6)
    assert math.isclose(result.energy_inside, 0.36 / (0.36 + 0.09))
    assert locality(original, original, region).ratio == float("inf")


def test_analysis_fields_and_round_trip(tmp_path: Path, eyes_analysis: Analysis):
    a = eyes_analysis
    d = 100
    r, n, k = a.region_basis.shape[1], a.null_basis.shape[1], a.directions.shape[1]
    assert a.latent.shape == (d,) and a.region_singular_values.shape == (r,)
    assert a.null_basis.shape == (d, n) and a.directions.shape == (d, k)
    np.testing.assert_allclose(np.linalg.norm(a.directions, axis=0), 1.0, atol=1e-12)
    assert np.all(np.diff(a.region_singular_values) <= 0)
    assert n == d - a.info["ranks"]["keep"]
    a.save(tmp_path)
    again = Analysis.load(tmp_path / "analysis.npz")
    for name in ANALYSIS_ARRAYS:
        np.testing.assert_array_equal(getattr(again, name), getattr(a, name))
    info = json.loads((tmp_path / "analysis.json").read_text())
    assert info["model"] == "dcgan-faces" and info["region"] == "eyes"
    assert info["rpca"]["region"]["converged"] and info["rpca"]["keep"]["converged"]
    assert set(info["timings_seconds"]) == {"jacobian_gram", "rpca_subspaces", "directions"}


def test_rank_overrides_and_validation(faces):
    z = faces.sample_latent(1)
    a = analyze(faces, z, "mouth", rank=3, keep_rank=40)
    assert a.region_basis.shape[1] == 3 and a.null_basis.shape[1] == 60
    for bad in ({"rank": 0}, {"rank": 101}, {"keep_rank": 100}):
        with pytest.raises(UserInputError):
            analyze(faces, z, "mouth", **bad)


def test_local_direction_beats_the_regions_own_direction(faces, eyes_analysis):
    z = faces.sample_latent(0)
    region = torch.from_numpy(eyes_analysis.region_mask)
    base = faces.synthesize(z)[0]

    def ratio(vector: np.ndarray) -> float:
        moved = one_shot(z, torch.from_numpy(vector).float(), [2.0])
        return locality(base, faces.synthesize(moved)[0], region).ratio

    assert ratio(eyes_analysis.directions[:, 0]) < 0.8 * ratio(eyes_analysis.region_basis[:, 0])


def test_path_following_is_more_local_than_one_shot(faces, eyes_analysis):
    z = faces.sample_latent(0)
    region = torch.from_numpy(eyes_analysis.region_mask)
    base = faces.synthesize(z)[0]
    path = edit_analysis(faces, eyes_analysis, [4.0], step=0.5).latents
    line = edit_analysis(faces, eyes_analysis, [4.0], one_shot_edit=True).latents
    path_loc = locality(base, faces.synthesize(path)[0], region)
    line_loc = locality(base, faces.synthesize(line)[0], region)
    assert path_loc.ratio < line_loc.ratio
    assert path_loc.rms_inside > 0.01  # the region still changes


def test_contrast_is_more_local_than_lowrank_here(faces, eyes_analysis):
    z = faces.sample_latent(0)
    contrast = analyze(faces, z, "eyes", method="contrast")
    region = torch.from_numpy(eyes_analysis.region_mask)
    base = faces.synthesize(z)[0]

    def ratio(a: Analysis) -> float:
        moved = one_shot(z, torch.from_numpy(a.directions[:, 0]).float(), [2.0])
        return locality(base, faces.synthesize(moved)[0], region).ratio

    assert ratio(contrast) < ratio(eyes_analysis)


def test_contrast_on_low_rank_parts(faces):
    z = faces.sample_latent(0)
    plain = analyze(faces, z, "mouth", method="contrast")
    low = analyze(faces, z, "mouth", method="contrast", contrast_on_low_rank=True)
    assert low.info["settings"]["contrast_on_low_rank"] is True
    np.testing.assert_allclose(np.linalg.norm(low.directions, axis=0), 1.0, atol=1e-12)
    assert not np.allclose(np.abs(low.directions[:, 0]), np.abs(plain.directions[:, 0]))


def test_transfer_to_another_latent_starts_there(faces, eyes_analysis):
    other = faces.sample_latent(9)
    latents = edit_analysis(
        faces, eyes_analysis, [-1.0, 0.0, 1.0], latent=other, one_shot_edit=True
    ).latents
    torch.testing.assert_close(latents[1], other)
    torch.testing.assert_close((latents[2] - other).norm(), torch.tensor(1.0))


def test_strength_parsing():
    assert parse_strengths("-5,-2.5,0,2.5,5") == [-5.0, -2.5, 0.0, 2.5, 5.0]
    for bad in ("", "a,b", "1,nan", "inf"):
        with pytest.raises(UserInputError):
            parse_strengths(bad)


def test_big_models_are_analysed_at_256_by_default():
    from torch import nn

    from lowrankgan.models.base import Model

    class Tall(nn.Module):
        latent_dim = 6

        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.fc = nn.Linear(6, 3 * 16 * 12)

        def forward(self, z: torch.Tensor) -> torch.Tensor:
            small = torch.tanh(self.fc(z)).view(-1, 3, 16, 12)
            return nn.functional.interpolate(small, scale_factor=32, mode="nearest")

    model = Model(
        name="tall",
        network=Tall().eval(),
        latent_dim=6,
        resolution=(512, 384),
        synthesis_fn=lambda net, z, c: net(z),
    )
    mask = torch.zeros(512, 384, dtype=torch.bool)
    mask[100:300, 50:200] = True
    result = analyze(model, model.sample_latent(0), mask, rank=2, keep_rank=3)
    assert result.info["settings"]["size"] == [256, 192]
    # over 256 px on a CPU: sketched by default (K = min(16, d)), exact on request
    assert result.info["grams"] == "sketch 6 (region test)"
    exact = analyze(model, model.sample_latent(0), mask, rank=2, keep_rank=3, exact=True)
    assert exact.info["grams"] == "exact"
    np.testing.assert_allclose(np.abs(result.region_basis), np.abs(exact.region_basis), atol=1e-5)
    full = analyze(model, model.sample_latent(0), mask, rank=2, keep_rank=3, size=(512, 384))
    # the image is piecewise constant on 32x32 cells, so area downsampling loses nothing here
    np.testing.assert_allclose(np.abs(result.region_basis), np.abs(full.region_basis), atol=1e-5)


def test_a_precomputed_field_or_grams_give_the_same_analysis(faces, eyes_analysis: Analysis):
    """`analyze(field=...)` reuses one Jacobian field for every region of an image and
    `analyze(grams=...)` takes Grams made elsewhere: both give the analysis computed from
    scratch, bit for bit."""
    from lowrankgan import analysis_field
    from lowrankgan.pipeline.analysis import region_grams
    from lowrankgan.pipeline.settings import AnalysisSettings
    from lowrankgan.regions import keep_mask, region_mask

    latent = faces.sample_latent(0)
    field = analysis_field(faces, latent, AnalysisSettings())
    assert field.shape == (100, 3, 64, 64)
    reused = analyze(faces, latent, "eyes", field=field)
    for name in ("directions", "null_basis", "region_basis", "direction_strengths"):
        np.testing.assert_array_equal(getattr(reused, name), getattr(eyes_analysis, name))
    mouth = analyze(faces, latent, "mouth", method="contrast", field=field)
    np.testing.assert_array_equal(
        mouth.directions, analyze(faces, latent, "mouth", method="contrast").directions
    )
    eyes = region_mask(faces, "eyes")
    grams = region_grams(faces, latent, torch.stack([eyes, keep_mask(faces, eyes, None)]),
                         AnalysisSettings(), field=field)  # fmt: skip
    given = analyze(faces, latent, "eyes", grams=grams)
    np.testing.assert_array_equal(given.directions, eyes_analysis.directions)
    assert given.info["ranks"] == eyes_analysis.info["ranks"]
    with pytest.raises(UserInputError, match="field has shape"):
        analyze(faces, latent, "eyes", field=field[:, :1])
    with pytest.raises(UserInputError, match="not both"):
        analyze(faces, latent, "eyes", field=field, grams=grams)
    with pytest.raises(UserInputError, match="grams must have shape"):
        analyze(faces, latent, "eyes", grams=grams[:1])


def test_only_big_models_on_a_cpu_are_sketched_by_default():
    from types import SimpleNamespace

    from lowrankgan.pipeline.settings import CPU_DEFAULT_SKETCH, AnalysisSettings, gram_sketch

    def model(device: str, side: int) -> SimpleNamespace:
        return SimpleNamespace(device=torch.device(device), resolution=(side, side), latent_dim=512)

    default = AnalysisSettings()
    assert gram_sketch(model("cpu", 1024), default) == CPU_DEFAULT_SKETCH == 25
    assert gram_sketch(model("cpu", 256), default) is None
    assert gram_sketch(model("cuda", 1024), default) is None
    assert gram_sketch(model("cpu", 1024), AnalysisSettings(exact=True)) is None
    assert gram_sketch(model("cuda", 1024), AnalysisSettings(sketch=8)) == 8
    with pytest.raises(UserInputError, match="exclude each other"):
        AnalysisSettings(exact=True, sketch=8)
    with pytest.raises(UserInputError, match="unknown sketch test"):
        AnalysisSettings(sketch_test="uniform")
