"""OpenVINO IR generators as models: `--model generator.xml` (mapping optional), the spaces
w, z and wplus (style slots in network order), truncation, the built-in
`mobilestylegan-ffhq`, the authors' released directions, and bad generator files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ir_generators import W_DIM, save_style_generator, set_first_attribute
from lowrankgan import load_model
from lowrankgan.errors import UserInputError
from lowrankgan.io.latents import authors_directions, direction_path
from lowrankgan.models.openvino.family import MOBILESTYLEGAN_SLOT_SIDES
from lowrankgan.models.openvino.ir import read_ir
from lowrankgan.models.openvino.network import IRNetwork


@pytest.fixture(scope="module")
def generator(tmp_path_factory):
    return save_style_generator(tmp_path_factory.mktemp("ir"))


def test_an_ir_generator_loads_in_w_with_its_slots_in_network_order(generator):
    model = load_model(str(generator))
    assert (model.latent_dim, model.resolution, model.space) == (W_DIM, (16, 16), "w")
    slots = model.details["slots"]
    assert [s["name"] for s in slots] == [
        "early.modulation.weight",
        "middle.modulation.weight",
        "late.modulation.weight",
    ]
    assert [s["resolution"] for s in slots] == [4, 8, 16]
    raw = IRNetwork(read_ir(generator))
    w = model.sample_latent(3)
    with torch.no_grad():
        torch.testing.assert_close(model.synthesize(w), raw(w.unsqueeze(0)), rtol=0, atol=0)


def test_z_goes_through_the_mapping_and_truncation(generator):
    mapping = IRNetwork(read_ir(generator.with_name("MappingNetwork.xml")))
    synthesis = IRNetwork(read_ir(generator))
    z = torch.randn(2, W_DIM, generator=torch.Generator().manual_seed(1))
    plain = load_model(str(generator), space="z")
    truncated = load_model(str(generator), space="z", truncation=0.5)
    w_avg = truncated.network.w_avg
    assert w_avg.shape == (W_DIM,)
    with torch.no_grad():
        w = mapping(z)
        torch.testing.assert_close(plain.synthesize(z), synthesis(w))
        torch.testing.assert_close(truncated.synthesize(z), synthesis(w_avg + 0.5 * (w - w_avg)))
        # w_avg is the mean of 4096 mapped seeds, seed 0
        expected = mapping(torch.randn(4096, W_DIM, generator=torch.Generator().manual_seed(0)))
    torch.testing.assert_close(w_avg, expected.mean(0))


def test_wplus_with_one_w_everywhere_is_w_and_slots_act_alone(generator):
    w_model = load_model(str(generator))
    plus = load_model(str(generator), space="wplus")
    assert plus.latent_dim == 3 * W_DIM
    w = w_model.sample_latent(0)
    with torch.no_grad():
        same = plus.synthesize(w.repeat(3))
        torch.testing.assert_close(same, w_model.synthesize(w), rtol=1e-6, atol=1e-6)
        # moving only the 16 px slot changes the image, and differs from moving the 4 px one
        late = w.repeat(3).clone()
        late[2 * W_DIM :] += 1.0
        early = w.repeat(3).clone()
        early[:W_DIM] += 1.0
        assert not torch.allclose(plus.synthesize(late), same)
        assert not torch.allclose(plus.synthesize(late), plus.synthesize(early))


def test_wplus_layers_select_slots_and_lift_w_directions(generator):
    model = load_model(str(generator), space="wplus", layers="1-2")
    assert model.latent_dim == 3 * W_DIM  # slots 1, 2 and one shared by slot 0
    direction = torch.zeros(W_DIM, 1, dtype=torch.float64)
    direction[0] = 1.0
    lifted = model.lift_directions(direction)[:, 0].reshape(3, W_DIM)
    assert lifted[:2, 0].tolist() == pytest.approx([2**-0.5, 2**-0.5])
    assert lifted[2].abs().sum() == 0


def test_without_a_mapping_network_only_w_and_wplus(tmp_path):
    generator = save_style_generator(tmp_path / "alone", mapping=False)
    assert load_model(str(generator)).latent_dim == W_DIM
    with pytest.raises(UserInputError, match="no mapping network"):
        load_model(str(generator), space="z")
    with pytest.raises(UserInputError, match="no mapping network"):
        load_model(str(generator), truncation=0.7)


def test_an_ir_whose_output_is_not_an_image_is_refused(generator, run_main, tmp_path):
    mapping = generator.with_name("MappingNetwork.xml")
    out = tmp_path / "out"
    run = run_main("analyze", "--model", str(mapping), "--seed", "0", "--region", "center",
                   "--out", out)  # fmt: skip
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1 and "not an image" in run.stderr, run.stderr
    assert not out.exists()


def test_analyze_and_edit_an_ir_generator_through_the_cli(generator, run_main, tmp_path):
    out = tmp_path / "edit"
    run = run_main("edit", "--model", str(generator), "--seed", "1", "--region", "center",
                   "--change", "0.05", "--one-shot", "--out", out, "--quiet")  # fmt: skip
    assert run.returncode == 0, run.stderr
    record = json.loads((out / "edits.json").read_text())
    assert record["unreachable"] == []
    with np.load(out / "edits.npz") as npz:
        assert npz["achieved"][0] == pytest.approx(0.05, rel=1e-3)


def test_edits_of_a_model_sketched_by_default_go_one_shot_and_say_so(run_main, tmp_path):
    """Over 256 px on a CPU, path-following (an exact field per step) is opt-in."""
    big = save_style_generator(tmp_path / "big", upscale=32)  # 512 x 512
    out = tmp_path / "edit"
    args = ("edit", "--model", str(big), "--seed", "1", "--region", "center",
            "--strengths", "-1,0,1", "--out")  # fmt: skip
    run = run_main(*args, out)
    assert run.returncode == 0, run.stderr
    assert "editing one-shot" in run.stderr and "--path-following" in run.stderr
    assert json.loads((out / "edits.json").read_text())["mode"] == "one-shot"
    run = run_main(*args, tmp_path / "path", "--path-following", "--quiet")
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""
    assert json.loads((tmp_path / "path" / "edits.json").read_text())["mode"] == "path-following"
    exact = tmp_path / "exact"
    run = run_main("edit", "--model", str(big), "--seed", "1", "--region", "center",
                   "--strengths", "1", "--exact", "--out", exact)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert json.loads((exact / "edits.json").read_text())["mode"] == "path-following"


def test_the_authors_directions_ship_as_package_data():
    assert authors_directions() == [
        "ffhq1024/expression", "ffhq1024/eyes_size", "ffhq1024/mouth_open", "ffhq1024/nose",
        "metfaces1024/eyeballs", "metfaces1024/eyes_size", "metfaces1024/mouth",
        "metfaces1024/nose",
    ]  # fmt: skip
    path = direction_path("authors:ffhq1024/eyes_size")
    array = np.load(path)
    assert array.shape == (1, 512) and np.linalg.norm(array) == pytest.approx(1.0)
    assert (path.parent.parent / "LICENSE").read_text().startswith("MIT License")
    with pytest.raises(UserInputError, match="unknown released direction 'ffhq1024/smile'"):
        direction_path("authors:ffhq1024/smile")


def test_mobilestylegan_is_built_in_with_its_slots_and_face_presets():
    model = load_model("mobilestylegan-ffhq")
    assert (model.latent_dim, model.resolution) == (512, (1024, 1024))
    sides = tuple(s["resolution"] for s in model.details["slots"])
    assert sides == MOBILESTYLEGAN_SLOT_SIDES
    names = [s["name"] for s in model.details["slots"]]
    # slots 5-10 are the paper's layers 4-7: 16 px conv1, conv2, then 32 px, then 64 px up
    assert names[5:11] == [
        "m.layers.1.conv1.conv.modulation.weight", "m.layers.1.conv2.conv.modulation.weight",
        "m.layers.2.up.modulation.weight", "m.layers.2.conv1.conv.modulation.weight",
        "m.layers.2.conv2.conv.modulation.weight", "m.layers.3.up.modulation.weight",
    ]  # fmt: skip
    # the authors' eye box (center row 120, col 128, 20 x 115 at 256 px), scaled by 4
    eyes = model.presets["eyes"]
    assert (eyes.x0, eyes.y0, eyes.x1, eyes.y1) == (4 * 70, 4 * 110, 4 * 186, 4 * 130)
    assert {"eyes", "mouth", "nose", "left_eye", "right_eye", "chin"} <= set(model.presets)


@pytest.mark.slow
def test_mobilestylegan_samples_natural_faces_in_w():
    model = load_model("mobilestylegan-ffhq")
    w = model.sample_latent(0)
    with torch.no_grad():
        image = model.synthesize(w)[0]
    assert image.shape == (3, 1024, 1024)
    assert float(image.std()) > 0.2 and float(image.min()) > -1.6 and float(image.max()) < 1.6


def test_sefa_reads_the_style_affines(generator):
    from lowrankgan.core.baselines import latent_layer_weights

    model = load_model(str(generator))
    weights = latent_layer_weights(model)
    assert weights.shape == (4 + 6 + 6, W_DIM)  # one row per modulated channel
    graph = read_ir(generator)
    early = next(layer for layer in graph.layers if layer.name == "early.modulation.weight")
    torch.testing.assert_close(weights[:4].float(), torch.from_numpy(early.value))
    plus = load_model(str(generator), space="wplus", layers="2")
    placed = latent_layer_weights(plus)
    assert placed.shape == (16, 2 * W_DIM)
    torch.testing.assert_close(placed[10:, :W_DIM], weights[10:])  # slot 2 owns block 0
    assert placed[10:, W_DIM:].abs().sum() == 0 and placed[:10, :W_DIM].abs().sum() == 0


@pytest.mark.slow
def test_the_authors_eye_direction_is_local_on_the_paper_layers():
    """The authors' `eyes_size` applied their way (W+ layers 4-7 = slots 5-10) changes the
    eyes and little else; applied in W (every layer) it moves the rest of the face more."""
    from lowrankgan import edit, locality

    direction = torch.from_numpy(np.load(direction_path("authors:ffhq1024/eyes_size"))[0])
    ratios = {}
    for space, layers in (("wplus", "5-10"), ("w", None)):
        model = load_model("mobilestylegan-ffhq", space=space, layers=layers)
        latent = model.sample_latent(0)
        eyes = model.presets["eyes"].mask(*model.resolution)
        edits = edit(model, latent, direction, [4.0], region=eyes, one_shot_edit=True)
        with torch.no_grad():
            original, edited = model.synthesize(torch.stack([latent, edits.latents[0]]))
        change = locality(original, edited, eyes)
        assert change.rms_inside > 0.1  # a clearly visible edit of the eyes (0.13-0.18)
        ratios[space] = change.ratio
    # measured on seed 0: 0.49 on slots 5-10 against 0.81 in W
    assert ratios["wplus"] < 0.7 * ratios["w"], ratios


def _corrupt(xml, how: str):
    weights = xml.with_suffix(".bin")
    text = xml.read_text()
    if how == "no bin":
        weights.unlink()
    elif how == "truncated bin":
        weights.write_bytes(weights.read_bytes()[:64])
    elif how == "offset past the end":
        set_first_attribute(xml, "offset", "99999999")
    elif how == "unknown op":
        xml.write_text(text.replace('type="Tanh"', 'type="Gelu"', 1))
    elif how == "not ir":
        xml.write_text("<html><body>Not found</body></html>")
    return xml


@pytest.mark.parametrize(
    "how, message",
    [
        ("no bin", "weights file SynthesisNetwork.bin is missing"),
        ("truncated bin", "runs past the end of SynthesisNetwork.bin"),
        ("offset past the end", "runs past the end"),
        ("unknown op", "op 'Gelu' (node"),
        ("not ir", "not an OpenVINO IR"),
    ],
)
def test_bad_ir_files_are_one_line_errors(run_main, tmp_path, how, message):
    xml = _corrupt(save_style_generator(tmp_path / "model"), how)
    out = tmp_path / "out"
    run = run_main("edit", "--model", xml, "--seed", "0", "--region", "center",
                   "--one-shot", "--out", out)  # fmt: skip
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], lines
    assert not out.exists()


def test_large_models_are_analysed_at_256_by_default():
    from lowrankgan.pipeline.settings import AnalysisSettings, resolved_settings

    model = load_model("mobilestylegan-ffhq")
    assert resolved_settings(model, AnalysisSettings()).size == (256, 256)
