"""StyleGAN2 checkpoints through the public loader: W and Z spaces, truncation, presets,
and an analysis end to end on a small network written in each official format."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import sg2_checkpoints as sg2
from lowrankgan import UserInputError, analyze, load_model
from lowrankgan.models.presets import FACE_PRESETS_256
from lowrankgan.models.stylegan2.network import build_stylegan2, random_stylegan2


@pytest.fixture(scope="module")
def generator():
    return random_stylegan2(resolution=32, channels_max=32, z_dim=16, w_dim=16, mapping_layers=2)


@pytest.fixture(scope="module")
def state(generator):
    return {k: v.clone() for k, v in generator.state_dict().items()}


@pytest.mark.parametrize("fmt", ["nvidia", "tf", "rosinality"])
def test_each_format_loads_to_the_same_images(tmp_path: Path, state, generator, fmt):
    path = tmp_path / ("ffhq-small.pkl" if fmt != "rosinality" else "ffhq-small.pt")
    if fmt == "nvidia":
        sg2.write_nvidia_pkl(path, state, conv_clamp=None)
    elif fmt == "tf":
        sg2.write_tf_pkl(path, state)
    else:
        sg2.write_rosinality_pt(path, state)
    model = load_model(path, truncation=1.0)
    assert model.space == "w" and model.latent_dim == 16 and model.resolution == (32, 32)
    w = model.sample_latent(3)
    z = torch.randn(1, 16, generator=torch.Generator().manual_seed(3))
    expected_w = generator.mapping(z, None, 1.0, None)[0, 0]
    torch.testing.assert_close(w, expected_w, rtol=1e-5, atol=1e-6)
    expected = generator.synthesis(expected_w.view(1, 1, -1).repeat(1, generator.num_ws, 1))
    torch.testing.assert_close(model.synthesize(w), expected, rtol=1e-4, atol=1e-5)
    assert "eyes" in model.presets  # "ffhq" in the file name -> face presets


def test_z_space_and_truncation(tmp_path: Path, state, generator):
    path = tmp_path / "net.pkl"
    sg2.write_nvidia_pkl(path, state, conv_clamp=None)
    model = load_model(path, space="z", truncation=0.5)
    assert model.space == "z" and model.latent_dim == 16
    z = model.sample_latent(0)
    expected = generator(z.unsqueeze(0), None, truncation_psi=0.5)
    torch.testing.assert_close(model.synthesize(z), expected, rtol=1e-4, atol=1e-5)
    w_model = load_model(path, truncation=0.5)
    w = w_model.sample_latent(0)
    w_avg = generator.mapping.w_avg
    w_full = load_model(path, truncation=1.0).sample_latent(0)
    torch.testing.assert_close(w, w_avg + 0.5 * (w_full - w_avg), rtol=1e-5, atol=1e-6)
    for bad in ({"space": "q"}, {"truncation": 0.0}, {"truncation": 1.5}):
        with pytest.raises(UserInputError):
            load_model(path, **bad)


def test_tf_pickles_default_to_the_authors_truncation(tmp_path: Path, state):
    path = tmp_path / "church.pkl"
    sg2.write_tf_pkl(path, state)
    model = load_model(path)
    assert model.details["truncation"] == 0.5
    assert {"sky", "ground"} <= set(model.presets)


def test_face_presets_scale_from_256():
    network = random_stylegan2(resolution=64, channels_max=16, z_dim=8, w_dim=8)
    assert network.config.resolution == 64
    box = FACE_PRESETS_256["mouth"].scaled(0.25, 0.25)
    assert (box.x0, box.y0, box.x1, box.y1) == (23, 42, 40, 50)


def test_analysis_in_w_space_end_to_end(tmp_path: Path, state):
    path = tmp_path / "ffhq-32.pkl"
    sg2.write_nvidia_pkl(path, state, conv_clamp=256)
    model = load_model(path)
    result = analyze(model, model.sample_latent(1), "box:8,8,24,20", method="contrast")
    assert result.directions.shape[0] == 16
    assert result.info["space"] == "w"
    sketched = analyze(model, model.sample_latent(1), "box:8,8,24,20", sketch=16)
    exact = analyze(model, model.sample_latent(1), "box:8,8,24,20")
    torch.testing.assert_close(
        torch.from_numpy(sketched.region_basis[:, :1]).abs(),
        torch.from_numpy(exact.region_basis[:, :1]).abs(),
        rtol=0,
        atol=1e-3,
    )


def test_dcgan_models_reject_stylegan_options():
    with pytest.raises(UserInputError, match="only the z space"):
        load_model("dcgan-faces", space="w")
    with pytest.raises(UserInputError, match="truncate"):
        load_model("dcgan-faces", truncation=0.7)


def test_loaded_network_is_the_reference_build(state):
    network = build_stylegan2(state)
    assert network.num_ws == 2 * 5 - 2


@pytest.fixture(scope="module")
def pkl(tmp_path_factory, state):
    path = tmp_path_factory.mktemp("wplus") / "net.pkl"
    sg2.write_nvidia_pkl(path, state, conv_clamp=None)
    return path


def test_wplus_with_every_layer_is_w_repeated(pkl, generator):
    plus = load_model(pkl, space="wplus", truncation=1.0)
    w_model = load_model(pkl, truncation=1.0)
    assert plus.latent_dim == generator.num_ws * 16
    latent = plus.sample_latent(2)
    torch.testing.assert_close(latent, w_model.sample_latent(2).repeat(generator.num_ws))
    torch.testing.assert_close(
        plus.synthesize(latent), w_model.synthesize(w_model.sample_latent(2))
    )
    assert plus.details["layers"] == list(range(generator.num_ws))


def test_wplus_layer_selection_drives_only_those_layers(pkl, generator):
    from lowrankgan.models.stylegan2.family import lift_w_directions, wplus_latent_from_code

    model = load_model(pkl, space="wplus", layers="1-2", truncation=1.0)
    assert model.latent_dim == 3 * 16  # layers 1 and 2, plus one shared block
    gen = torch.Generator().manual_seed(0)
    w_a, w_b, w_rest = (torch.randn(16, generator=gen) for _ in range(3))
    latent = torch.cat([w_a, w_b, w_rest])
    ws = w_rest.repeat(generator.num_ws, 1)
    ws[1], ws[2] = w_a, w_b
    torch.testing.assert_close(model.synthesize(latent), generator.synthesis(ws.unsqueeze(0)))
    torch.testing.assert_close(wplus_latent_from_code(model, ws), latent)
    bad = ws.clone()
    bad[5] += 1.0
    with pytest.raises(UserInputError, match="unselected layers differ"):
        wplus_latent_from_code(model, bad)
    direction = torch.randn(16, 1, generator=gen, dtype=torch.float64)
    lifted = lift_w_directions(model, direction)[:, 0]
    unit = (direction[:, 0] / direction[:, 0].norm()).float()
    expected = torch.cat([unit, unit, torch.zeros(16)]) / 2**0.5
    torch.testing.assert_close(lifted.float(), expected)
    for bad_layers in ("9", "a-b", "3-1"):
        with pytest.raises(UserInputError):
            load_model(pkl, space="wplus", layers=bad_layers)
    with pytest.raises(UserInputError, match="wplus"):
        load_model(pkl, layers="1-2")


def test_wplus_analysis_records_its_layers(pkl):
    model = load_model(pkl, space="wplus", layers="2-3")
    result = analyze(model, model.sample_latent(0), "box:8,8,24,20", sketch=24)
    assert result.directions.shape[0] == 48
    assert result.info["model_details"]["layers"] == [2, 3]


@pytest.mark.parametrize("resolution", [4, 8, 64])
def test_any_resolution_round_trips_through_the_builder(resolution):
    network = random_stylegan2(resolution=resolution, channels_max=16, z_dim=8, w_dim=8)
    rebuilt = build_stylegan2(network.state_dict())
    z = torch.randn(2, 8, generator=torch.Generator().manual_seed(resolution))
    out = rebuilt(z)
    assert out.shape == (2, 3, resolution, resolution)
    torch.testing.assert_close(out, network(z))
    assert rebuilt.num_ws == 2 * resolution.bit_length() - 4


def test_the_api_applies_a_w_analysis_to_chosen_wplus_layers(pkl, generator):
    """`edit_analysis`, `edit` and `edit_many` do what the CLI's `--analysis` on a W+ model
    does: the W directions drive only the selected layers, from the analysed `w`."""
    from lowrankgan import edit, edit_analysis, edit_many

    w_model = load_model(pkl, truncation=1.0)
    plus = load_model(pkl, space="wplus", layers="1-2", truncation=1.0)
    result = analyze(w_model, w_model.sample_latent(0), "box:8,8,24,20")
    w0, unit = torch.from_numpy(result.latent).float(), torch.from_numpy(result.direction(0))
    latents = edit_analysis(plus, result, [0.0, 3.0], one_shot_edit=True).latents
    assert latents.shape == (2, 48)
    torch.testing.assert_close(latents[0], w0.repeat(3))
    step = (latents[1] - latents[0]).double()
    lifted = torch.cat([unit, unit, torch.zeros(16, dtype=torch.float64)]) / 2**0.5
    torch.testing.assert_close(step, 3.0 * lifted, atol=1e-5, rtol=1e-5)
    # the same through `edit` with the (w_dim,) direction, and per seed through `edit_many`
    direct = edit(plus, w0, unit.numpy(), [3.0], one_shot_edit=True).latents
    torch.testing.assert_close(direct[0], latents[1])
    rows = dict(edit_many(plus, result, [3.0], seeds=[5], one_shot_edit=True))
    start = plus.sample_latent(5)
    torch.testing.assert_close(
        rows[5].latents[0].double() - start.double(), 3.0 * lifted, atol=1e-5, rtol=1e-5
    )
    # path-following from the lifted analysis keeps the kept region's rank of the W+ space
    path = edit_analysis(plus, result, [1.0], step=0.5).latents
    assert path.shape == (1, 48) and torch.isfinite(path).all()
    # nothing lifts the other way: a W+ analysis is refused by the W model
    wide = replace(result, latent=np.zeros(48), directions=np.eye(48)[:, :1])
    with pytest.raises(UserInputError, match="48-d"):
        edit_analysis(w_model, wide, [1.0], one_shot_edit=True)
