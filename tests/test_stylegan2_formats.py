"""Round trips and refusals for the StyleGAN2 checkpoint readers (models/stylegan2_formats.py).

Checkpoints are written by tests/sg2_checkpoints.py, which applies the inverse of each documented
conversion to a random NVIDIA-named state; reading must give back the same tensors bit for bit.
"""

from __future__ import annotations

import os
import pickle
import sys
from pathlib import Path

import pytest
import torch

import sg2_checkpoints as sg2
from lowrankgan.errors import UserInputError
from lowrankgan.models.stylegan2.formats import (
    SG2Checkpoint,
    detect_stylegan2_format,
    read_nvidia_pkl,
    read_rosinality_pt,
    read_stylegan2_checkpoint,
    read_tf_pkl,
    resample_filter,
)


@pytest.fixture(scope="module")
def state() -> dict[str, torch.Tensor]:
    return sg2.random_state(resolution=16, channels=32, w_dim=32, z_dim=24, mapping_layers=2)


def assert_same_state(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert sorted(got) == sorted(want)
    for key, value in want.items():
        assert got[key].shape == value.shape, key
        assert got[key].dtype == value.dtype, key
        assert torch.equal(got[key], value), key
        assert type(got[key]) is torch.Tensor, key  # not an nn.Parameter


def test_random_state_matches_documented_key_counts() -> None:
    # FORMATS.md: 182 keys for ADA-1024 (8 mapping layers), 144 for a 256 model.
    big = sg2.random_state(resolution=1024, channels=4, w_dim=8, z_dim=8, mapping_layers=8)
    assert len(big) == 182
    assert len(sg2.rosinality_state(big)) == 171
    assert len(sg2.random_state(resolution=256, channels=4, w_dim=8, mapping_layers=8)) == 144


def test_resample_filter_is_normalised() -> None:
    f = resample_filter()
    assert f.shape == (4, 4)
    assert float(f.sum()) == 1.0
    assert torch.equal(f, sg2.nvidia_filter())


# ---------------------------------------------------------------------------------------------
# NVIDIA pickles


def test_nvidia_round_trip(tmp_path: Path, state: dict[str, torch.Tensor]) -> None:
    marker = tmp_path / "module_src_ran"
    src = f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n"
    path = tmp_path / "net.pkl"
    sg2.write_nvidia_pkl(path, state, conv_clamp=256, module_src=src)
    assert "torch_utils" not in sys.modules and "dnnlib" not in sys.modules

    ckpt = read_stylegan2_checkpoint(path)
    assert isinstance(ckpt, SG2Checkpoint)
    assert ckpt.format == "nvidia-pkl"
    assert ckpt.source == str(path)
    assert list(ckpt.state) == list(state)  # same order as G_ema.state_dict()
    assert_same_state(ckpt.state, state)
    assert ckpt.conv_clamp == 256.0
    hyper = ckpt.hyper
    assert (hyper["z_dim"], hyper["w_dim"], hyper["c_dim"]) == (24, 32, 0)
    assert hyper["img_resolution"] == 16 and hyper["num_ws"] == 6
    assert hyper["mapping_kwargs"] == {"num_layers": 2}
    assert hyper["channel_base"] == 256 and hyper["init_kwargs_layout"] == "nested"
    assert hyper["truncation_psi"] == 1.0 and hyper["truncation_cutoff"] is None
    assert not marker.exists()  # module_src is never executed


def test_nvidia_sg3_layout_and_no_clamp(tmp_path: Path, state: dict[str, torch.Tensor]) -> None:
    path = tmp_path / "sg3repo.pkl"
    sg2.write_nvidia_pkl(path, state, conv_clamp=None, sg3_layout=True)
    ckpt = read_nvidia_pkl(path)
    assert_same_state(ckpt.state, state)
    assert ckpt.conv_clamp is None
    assert ckpt.hyper["init_kwargs_layout"] == "flat"
    assert ckpt.hyper["channel_base"] == 256 and ckpt.hyper["img_channels"] == 3


def test_nvidia_conditional(tmp_path: Path) -> None:
    cond = sg2.random_state(resolution=8, w_dim=16, z_dim=8, c_dim=5, seed=3)
    path = tmp_path / "cond.pkl"
    sg2.write_nvidia_pkl(path, cond, conv_clamp=128)
    ckpt = read_stylegan2_checkpoint(path)
    assert_same_state(ckpt.state, cond)
    assert (ckpt.hyper["c_dim"], ckpt.hyper["z_dim"], ckpt.conv_clamp) == (5, 8, 128.0)


def test_nvidia_without_g_ema(tmp_path: Path, state: dict[str, torch.Tensor]) -> None:
    path = tmp_path / "nog.pkl"
    sg2.write_nvidia_pkl(path, state, with_g_ema=False)
    with pytest.raises(UserInputError, match="no G_ema") as info:
        read_stylegan2_checkpoint(path)
    assert str(path) in str(info.value)


def test_stylegan3_is_refused_clearly(tmp_path: Path, state: dict[str, torch.Tensor]) -> None:
    sg3 = dict(state)
    sg3["synthesis.input.freqs"] = torch.zeros(32, 2)
    path = tmp_path / "sg3.pkl"
    sg2.write_nvidia_pkl(path, sg3)
    with pytest.raises(UserInputError, match="StyleGAN3 is not supported yet"):
        read_stylegan2_checkpoint(path)


# ---------------------------------------------------------------------------------------------
# TF pickles


@pytest.mark.parametrize("layout", ["components", "flat"])
def test_tf_round_trip(tmp_path: Path, state: dict[str, torch.Tensor], layout: str) -> None:
    path = tmp_path / f"tf-{layout}.pkl"
    sg2.write_tf_pkl(path, state, layout=layout)
    assert "dnnlib" not in sys.modules
    ckpt = read_stylegan2_checkpoint(path)
    assert ckpt.format == "tf-pkl"
    assert_same_state(ckpt.state, state)
    assert ckpt.conv_clamp is None
    assert ckpt.hyper["truncation_psi"] == 0.5 and ckpt.hyper["truncation_cutoff"] is None
    assert ckpt.hyper["channel_base"] == 256  # 2 * fmap_base
    assert ckpt.hyper["z_dim"] == 24 and ckpt.hyper["img_resolution"] == 16


def test_tf_conversion_details(state: dict[str, torch.Tensor]) -> None:
    # The writer's TF tensors relate to NVIDIA's as FORMATS.md says: flip + permute, +1 bias.
    tf = sg2.tf_variables(state)["synthesis"]
    up = torch.from_numpy(tf["8x8/Conv0_up/weight"])
    nv = state["synthesis.b8.conv0.weight"]
    assert torch.equal(up.flip(0, 1).permute(3, 2, 0, 1), nv)
    assert not torch.equal(up.permute(3, 2, 0, 1), nv)
    assert torch.equal(
        torch.from_numpy(tf["8x8/Conv1/mod_bias"]) + 1, state["synthesis.b8.conv1.affine.bias"]
    )
    # noise index rule: conv0 at r -> 2 log2 r - 5, conv1 -> 2 log2 r - 4
    assert torch.equal(
        torch.from_numpy(tf["noise3"])[0, 0], state["synthesis.b16.conv0.noise_const"]
    )
    assert torch.equal(
        torch.from_numpy(tf["noise4"])[0, 0], state["synthesis.b16.conv1.noise_const"]
    )


def test_tf_truncation_override_and_reader(tmp_path: Path, state: dict[str, torch.Tensor]) -> None:
    path = tmp_path / "tf.pkl"
    sg2.write_tf_pkl(path, state, static_kwargs={"resolution": 16, "truncation_psi": 0.7})
    ckpt = read_tf_pkl(path)
    assert ckpt.hyper["truncation_psi"] == 0.7
    assert ckpt.hyper["channel_base"] == 2 * 16384  # TF default fmap_base


def test_tf_reads_conv_clamp_and_mapping_lrmul(tmp_path: Path, state: dict[str, torch.Tensor]):
    """stylegan2-ada's TF pickles carry conv_clamp in static_kwargs; mapping_lrmul is read,
    not assumed 0.01: both reach the network that is built."""
    from lowrankgan.models.stylegan2.family import stylegan2_model

    base = {"num_channels": 3, "resolution": 16, "label_size": 0, "fmap_base": 128}
    plain, ada = tmp_path / "plain.pkl", tmp_path / "ada.pkl"
    sg2.write_tf_pkl(plain, state, static_kwargs=base)
    sg2.write_tf_pkl(ada, state, static_kwargs={**base, "conv_clamp": 256, "mapping_lrmul": 0.1})
    default, read = read_tf_pkl(plain), read_tf_pkl(ada)
    assert (default.conv_clamp, default.hyper["mapping_lr_multiplier"]) == (None, 0.01)
    assert (read.conv_clamp, read.hyper["mapping_lr_multiplier"]) == (256.0, 0.1)
    network = stylegan2_model(read, name="ada", space="z").network
    assert network.config.conv_clamp == 256.0
    fc0 = network.mapping.fc0
    assert fc0.bias_gain == 0.1 and fc0.weight_gain == pytest.approx(
        0.1 / fc0.weight.shape[1] ** 0.5
    )
    z = torch.randn(2, network.config.z_dim, generator=torch.Generator().manual_seed(0))
    other = stylegan2_model(default, name="plain", space="z").network
    with torch.no_grad():
        assert not torch.allclose(network.mapping(z), other.mapping(z))
    for bad in ({"conv_clamp": -1}, {"mapping_lrmul": 0}, {"mapping_lrmul": "x"}):
        sg2.write_tf_pkl(tmp_path / "bad.pkl", state, static_kwargs={**base, **bad})
        with pytest.raises(UserInputError):
            read_tf_pkl(tmp_path / "bad.pkl")


# ---------------------------------------------------------------------------------------------
# rosinality


def test_rosinality_round_trip(tmp_path: Path, state: dict[str, torch.Tensor]) -> None:
    path = tmp_path / "g.pt"
    sg2.write_rosinality_pt(path, state)
    ckpt = read_stylegan2_checkpoint(path)
    assert ckpt.format == "rosinality"
    assert_same_state(ckpt.state, state)
    assert ckpt.conv_clamp is None
    assert "w_avg_missing" not in ckpt.hyper
    assert ckpt.hyper["truncation_psi"] == 1.0


def test_rosinality_without_latent_avg(tmp_path: Path, state: dict[str, torch.Tensor]) -> None:
    path = tmp_path / "g.pt"
    sg2.write_rosinality_pt(path, state, with_latent_avg=False)
    ckpt = read_rosinality_pt(path)
    assert ckpt.hyper["w_avg_missing"] is True
    assert torch.equal(ckpt.state["mapping.w_avg"], torch.zeros(32))
    rest = {k: v for k, v in state.items() if k != "mapping.w_avg"}
    assert_same_state({k: v for k, v in ckpt.state.items() if k != "mapping.w_avg"}, rest)


def test_rosinality_train_checkpoint(tmp_path: Path, state: dict[str, torch.Tensor]) -> None:
    path = tmp_path / "050000.pt"
    sg2.write_rosinality_pt(path, state, with_latent_avg=False, train_format=True)
    ckpt = read_stylegan2_checkpoint(path)
    assert ckpt.hyper["w_avg_missing"] is True
    assert ckpt.hyper["args"]["size"] == 16 and ckpt.hyper["args"]["n_mlp"] == 2
    assert torch.equal(
        ckpt.state["synthesis.b16.torgb.weight"], state["synthesis.b16.torgb.weight"]
    )


def test_rosinality_without_g_ema(tmp_path: Path) -> None:
    path = tmp_path / "other.pt"
    torch.save({"generator": {"w": torch.zeros(2)}}, path)
    with pytest.raises(UserInputError, match="no 'g_ema'"):
        read_stylegan2_checkpoint(path)


# ---------------------------------------------------------------------------------------------
# Detection and refusals


def test_detection(tmp_path: Path, state: dict[str, torch.Tensor]) -> None:
    writers = {
        "nvidia-pkl": sg2.write_nvidia_pkl,
        "tf-pkl": sg2.write_tf_pkl,
        "rosinality": sg2.write_rosinality_pt,
    }
    for fmt, write in writers.items():
        path = tmp_path / "checkpoint.bin"  # the extension must not matter
        write(path, state)
        assert detect_stylegan2_format(path) == fmt
        assert read_stylegan2_checkpoint(path).format == fmt


def test_payload_is_refused_before_running(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    sg2.write_payload_pkl(path, marker)
    for reader in (read_stylegan2_checkpoint, read_nvidia_pkl):
        with pytest.raises(UserInputError, match=r"refused: the pickle references \w+\.system"):
            reader(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    "target", ["builtins.eval", "subprocess.Popen", "torch.load", "os.system", "builtins.getattr"]
)
def test_other_globals_are_refused(tmp_path: Path, target: str) -> None:
    module, name = target.rsplit(".", 1)
    # A hand-written pickle: GLOBAL then calls it with a string argument.
    data = b"\x80\x02c" + f"{module}\n{name}\n".encode() + b"X\x04\x00\x00\x00trueq\x00\x85R."
    path = tmp_path / "g.pkl"
    path.write_bytes(data)
    with pytest.raises(UserInputError, match=f"refused: the pickle references {module}.{name}"):
        read_stylegan2_checkpoint(path)


def test_unknown_pickle(tmp_path: Path) -> None:
    path = tmp_path / "strings.pkl"
    path.write_bytes(pickle.dumps({"a": "b", "c": "d"}, protocol=4))
    with pytest.raises(UserInputError, match="unknown checkpoint format") as info:
        read_stylegan2_checkpoint(path)
    assert str(path) in str(info.value)


def test_random_bytes(tmp_path: Path) -> None:
    path = tmp_path / "noise.pkl"
    path.write_bytes(b"GIF89a" + os.urandom(1000))
    with pytest.raises(UserInputError, match="unknown checkpoint format"):
        read_stylegan2_checkpoint(path)
    path.write_bytes(b"")
    with pytest.raises(UserInputError, match="unknown checkpoint format"):
        read_stylegan2_checkpoint(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="not found"):
        read_stylegan2_checkpoint(tmp_path / "nope.pkl")


@pytest.mark.parametrize("fmt", ["nvidia", "tf", "rosinality"])
def test_truncated_files(tmp_path: Path, state: dict[str, torch.Tensor], fmt: str) -> None:
    path = tmp_path / "cut.pkl"
    write = {
        "nvidia": sg2.write_nvidia_pkl,
        "tf": sg2.write_tf_pkl,
        "rosinality": sg2.write_rosinality_pt,
    }[fmt]
    write(path, state)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserInputError) as info:
        read_stylegan2_checkpoint(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    assert "truncated or corrupt" in message
