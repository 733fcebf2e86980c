"""Model loading: our DCGAN against reference networks, real weights, golden images,
classes, user factories and refusing checkpoints that carry code."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from lowrankgan import UserInputError, list_models, load_model
from lowrankgan.models.registry import BUILTIN
from lowrankgan.report.render import to_uint8
from make_golden import CASES, DATA, golden_name


def tutorial_dcgan(nz: int, ngf: int, nc: int, depth: int, dropout: bool) -> nn.Sequential:
    """The reference layout the checkpoints were saved from (PyTorch DCGAN tutorial)."""
    layers: list[nn.Module] = []
    channels = [nz] + [ngf * 2 ** (depth - 2 - i) for i in range(depth - 1)] + [nc]
    for i, (cin, cout) in enumerate(zip(channels[:-1], channels[1:], strict=True)):
        stride, pad = (1, 0) if i == 0 else (2, 1)
        layers.append(nn.ConvTranspose2d(cin, cout, 4, stride, pad, bias=False))
        if i < depth - 1:
            layers += [nn.BatchNorm2d(cout), nn.ReLU(True)]
            if dropout and i == 0:
                layers.append(nn.Dropout(0.2))
        else:
            layers.append(nn.Tanh())
    net = nn.Sequential(*layers)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.1, generator=gen)
                module.running_var.uniform_(0.5, 1.5, generator=gen)
                module.weight.normal_(1, 0.1, generator=gen)
                module.bias.normal_(0, 0.1, generator=gen)
    return net.eval()


def test_checkpoint_path_is_detected_and_matches_the_reference(tmp_path: Path):
    reference = tutorial_dcgan(nz=20, ngf=8, nc=3, depth=4, dropout=False)
    path = tmp_path / "weights.tar"
    state = {f"main.{key}": value for key, value in reference.state_dict().items()}
    torch.save({"netG_state_dict": state}, path)
    model = load_model(path)
    assert (model.latent_dim, model.resolution, model.channels) == (20, (32, 32), 3)
    z = torch.randn(4, 20)
    torch.testing.assert_close(model.synthesize(z), reference(z.view(4, 20, 1, 1)))


def test_a_bare_sequential_state_dict_loads(tmp_path: Path):
    reference = tutorial_dcgan(nz=10, ngf=4, nc=1, depth=3, dropout=False)
    path = tmp_path / "bare.pt"
    torch.save(reference.state_dict(), path)
    model = load_model(path)
    assert (model.latent_dim, model.resolution, model.channels) == (10, (16, 16), 1)
    z = torch.randn(3, 10)
    torch.testing.assert_close(model.synthesize(z), reference(z.view(3, 10, 1, 1)))


def test_conditional_layout_with_dropout_loads_through_a_named_model(tmp_path: Path):
    reference = tutorial_dcgan(nz=108, ngf=4, nc=3, depth=6, dropout=True)
    path = tmp_path / "generator_model_state.pth"
    torch.save({f"main.{key}": value for key, value in reference.state_dict().items()}, path)
    model = load_model("omniart-eyes", checkpoint=path, class_="green")
    assert model.latent_dim == 100 and model.resolution == (128, 128)
    z = torch.randn(2, 100)
    onehot = torch.zeros(2, 8)
    onehot[:, 5] = 1.0
    expected = reference(torch.cat([z, onehot], 1).view(2, 108, 1, 1))
    torch.testing.assert_close(model.synthesize(z), expected)


def test_real_face_weights_equal_the_reference_network():
    model = load_model("dcgan-faces")
    path = BUILTIN["dcgan-faces"].weights_path()
    state = torch.load(path, map_location="cpu", weights_only=True)["netG_state_dict"]
    reference = tutorial_dcgan(nz=100, ngf=64, nc=3, depth=5, dropout=False)
    reference.load_state_dict({key.removeprefix("main."): value for key, value in state.items()})
    z = torch.stack([model.sample_latent(s) for s in range(3)])
    torch.testing.assert_close(model.synthesize(z), reference(z.view(3, 100, 1, 1)))


@pytest.mark.parametrize(("name", "class_", "seed"), CASES)
def test_golden_images(name, class_, seed):
    model = load_model(name, class_=class_)
    image = to_uint8(model.synthesize(model.sample_latent(seed)))[0].astype(int)
    golden = np.asarray(Image.open(DATA / golden_name(name, class_, seed))).astype(int)
    assert image.shape == golden.shape
    # identical up to float rounding on another CPU: no pixel off by more than one level
    assert np.abs(image - golden).max() <= 1


def test_latents_are_seeded_and_standard_normal():
    model = load_model("dcgan-faces")
    torch.testing.assert_close(model.sample_latent(7), model.sample_latent(7))
    assert not torch.equal(model.sample_latent(7), model.sample_latent(8))
    many = torch.stack([model.sample_latent(s) for s in range(200)])
    assert abs(many.mean().item()) < 0.02 and abs(many.std().item() - 1) < 0.02


def test_classes_by_name_and_index_change_the_image():
    eyes = load_model("omniart-eyes", class_="blue")
    assert eyes.condition == 1 and eyes.with_class(1).condition == 1
    z = eyes.sample_latent(0)
    assert not torch.allclose(eyes.synthesize(z), eyes.with_class("red").synthesize(z))
    with pytest.raises(UserInputError, match="unknown class"):
        eyes.with_class("purple")
    with pytest.raises(UserInputError, match="out of range"):
        eyes.with_class(8)
    with pytest.raises(UserInputError, match="not class-conditional"):
        load_model("dcgan-faces", class_=1)


def test_listing_names_sources():
    rows = {row.name: row for row in list_models()}
    assert set(rows) >= {"dcgan-faces", "omniart-eyes"}
    assert all(row.available for row in rows.values())
    assert "gan-face-generate" in rows["dcgan-faces"].weights


def test_user_factory(tmp_path: Path):
    source = tmp_path / "gen.py"
    source.write_text(
        "import torch\n"
        "class G(torch.nn.Module):\n"
        "    latent_dim = 6\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.fc = torch.nn.Linear(6, 3 * 8 * 10)\n"
        "    def forward(self, z):\n"
        "        return torch.tanh(self.fc(z)).view(-1, 3, 8, 10)\n"
        "def make():\n"
        "    torch.manual_seed(0)\n"
        "    return G()\n"
    )
    model = load_model(f"{source}:make")
    assert (model.latent_dim, model.resolution) == (6, (8, 10))
    assert model.synthesize(model.sample_latent(0)).shape == (1, 3, 8, 10)
    with pytest.raises(UserInputError, match="no callable"):
        load_model(f"{source}:missing")


class Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("via_torch", [True, False])
def test_checkpoint_with_a_payload_is_refused_without_running_it(tmp_path: Path, via_torch):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    if via_torch:
        torch.save({"netG_state_dict": Payload(marker)}, path)
    else:
        path.write_bytes(pickle.dumps({"netG_state_dict": Payload(marker)}))
    with pytest.raises(UserInputError, match="refused|cannot read"):
        load_model(path)
    with pytest.raises(UserInputError):
        load_model("dcgan-faces", checkpoint=path)
    assert not marker.exists()


def test_unknown_and_missing_models():
    with pytest.raises(UserInputError, match="unknown model"):
        load_model("stylegan9")
    with pytest.raises(UserInputError, match="not found"):
        load_model("nowhere/model.pt")


def test_generic_presets_partition_the_frame():
    model = load_model("dcgan-faces")
    center = model.presets["center"].mask(64, 64)
    border = model.presets["border"].mask(64, 64)
    assert center.sum() == 32 * 32 and not (center & border).any() and (center | border).all()
    top, bottom = model.presets["top"].mask(64, 64), model.presets["bottom"].mask(64, 64)
    assert not (top & bottom).any() and (top | bottom).all()
