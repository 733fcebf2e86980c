"""Absurd model files are refused before anything is built: DCGAN layer shapes (resolution,
latent, parameters, activations), BigGAN config.json (size, nesting, every integer field, the
size of the network it describes), --device values torch knows but we do not run on, and files
that are no checkpoint at all (text, HTML, empty, folders).

Every input is generated here in tmp_path. The console-script cases run in one module fixture,
two at a time, and are each checked with `hostile.assert_refused` (exit 2, one error line, no
traceback, under the RSS and time budgets, nothing written).
"""

from __future__ import annotations

import json
import pickle
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from biggan_checkpoints import write_biggan
from hostile import ConsoleRun, assert_refused, run_console
from lowrankgan import UserInputError, load_model
from lowrankgan.models.biggan import network as biggan_module
from lowrankgan.models.biggan.network import (
    BigGANDeep,
    config_state_elements,
    load_biggan,
    read_config,
)
from lowrankgan.models.dcgan.network import build_dcgan, check_dcgan_size, is_dcgan_state
from lowrankgan.models.registry import _resolve_device

ON = ("--seed", "0", "--region", "center")


# ---------------------------------------------------------------------------------------------
# Inputs


def dcgan_state(channels: list[int]) -> dict[str, torch.Tensor]:
    """A tutorial-layout DCGAN state dict with the given channels (latent first, image last)."""
    state: dict[str, torch.Tensor] = {}
    index = 0
    for i, (cin, cout) in enumerate(zip(channels[:-1], channels[1:], strict=True)):
        state[f"main.{index}.weight"] = torch.full((cin, cout, 4, 4), 0.01)
        index += 1
        if i < len(channels) - 2:
            state[f"main.{index}.weight"] = torch.ones(cout)
            state[f"main.{index}.bias"] = torch.zeros(cout)
            state[f"main.{index}.running_mean"] = torch.zeros(cout)
            state[f"main.{index}.running_var"] = torch.ones(cout)
            state[f"main.{index}.num_batches_tracked"] = torch.tensor(0)
            index += 2  # batch norm, ReLU
    return state


def rewrite_config(folder: Path, **changes: object) -> Path:
    path = folder / "config.json"
    raw = json.loads(path.read_text())
    raw.update(changes)
    path.write_text(json.dumps(raw))
    return path


def biggan_folder(folder: Path, **changes: object) -> Path:
    """A small valid BigGAN-deep (32 px, 8 channels at most) with config fields replaced."""
    write_biggan(folder, output_dim=32)
    rewrite_config(folder, **changes)
    return folder


def deep_json(depth: int) -> str:
    return '{"a": ' * depth + "1" + "}" * depth


#: 4096 px from 10 upsampling blocks of 8 channels, self-attention in front of the 2048-px
#: block: a (2048^2, 1024^2) attention map, 4.4e12 values, from a few thousand parameters.
ATTENTION_AT_2048 = {
    "output_dim": 4096,
    "channel_width": 8,
    "layers": [[True, 1, 1]] * 10,
    "attention_layer_position": 9,
}
#: Every field within its maximum, but the convolutions of 262144 channels (conv_to_rgb is
#: channels x channels x 3 x 3) need about 3 TiB of weights.
HUGE_NETWORK = {
    "output_dim": 8,
    "channel_width": 16_384,
    "layers": [[True, 16, 16]],
    "attention_layer_position": 0,
}


def _make_inputs(work: Path) -> None:
    torch.save(dcgan_state([4] + [1] * 11 + [3]), work / "dcgan8192.pt")
    # 4096 px, but 600 channels at 2048 px: 2.5e9 activation values in one forward pass.
    torch.save(dcgan_state([4] + [1] * 9 + [600, 3]), work / "dcgan_activations.pt")
    biggan_folder(work / "bg_width", channel_width=2**20)
    biggan_folder(work / "bg_deep")
    (work / "bg_deep" / "config.json").write_text(deep_json(100_000))
    biggan_folder(work / "bg_bigfile")
    with open(work / "bg_bigfile" / "config.json", "r+b") as handle:
        handle.truncate(3 * 2**30)  # sparse: 3 GiB that take no disk
    (work / "page.html").write_text("<!DOCTYPE html>\n<html><body>Sign in</body></html>\n")
    (work / "notes.txt").write_text("weights: see the shared drive\n")
    (work / "folder").mkdir()
    (work / "folder" / "random.bin").write_bytes(np.random.default_rng(0).bytes(256))


#: name -> (arguments after `analyze`, phrase the error line must contain).
CLI: dict[str, tuple[tuple[str, ...], str]] = {
    "dcgan-8192-px": (("--model", "{w}/dcgan8192.pt"), "is 8,192 pixels, over the limit"),
    "dcgan-activations": (
        ("--model", "{w}/dcgan_activations.pt"),
        "activations of one forward pass is 2,568,312,144 elements",
    ),
    "biggan-channel-width": (("--model", "{w}/bg_width"), "channel_width is 1,048,576"),
    "biggan-deep-json": (("--model", "{w}/bg_deep"), "nested deeper than 200 levels"),
    "biggan-3-gib-config": (("--model", "{w}/bg_bigfile"), "is 3 GiB, over the limit of 16 MiB"),
    "device-meta": (("--model", "dcgan-faces", "--device", "meta"), "unknown device 'meta'"),
    "html-as-model": (("--model", "{w}/page.html"), "page.html: not a recognised checkpoint"),
    "text-as-checkpoint": (
        ("--model", "dcgan-faces", "--checkpoint", "{w}/notes.txt"),
        "notes.txt: not a recognised checkpoint (it is a text file",
    ),
    "folder-as-model": (("--model", "{w}/folder"), "folder: not a recognised checkpoint"),
}


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[ConsoleRun, Path]]:
    work = tmp_path_factory.mktemp("hostile_inputs")
    _make_inputs(work)

    def run(name: str) -> tuple[ConsoleRun, Path]:
        cwd = tmp_path_factory.mktemp(name)
        args = [arg.format(w=work) for arg in CLI[name][0]]
        return run_console("analyze", *args, *ON, "--out", cwd / "out", "--quiet", cwd=cwd), cwd

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(CLI, pool.map(run, CLI), strict=True))


@pytest.mark.parametrize("name", list(CLI))
def test_console_refuses(name: str, cli_runs: dict[str, tuple[ConsoleRun, Path]]) -> None:
    run, cwd = cli_runs[name]
    assert_refused(run, CLI[name][1], unchanged=cwd)


# ---------------------------------------------------------------------------------------------
# DCGAN shapes


@pytest.mark.parametrize(
    ("channels", "expect"),
    [
        ([4] + [1] * 100_000 + [3], "100001 transposed convolutions would make a 4*2^100000"),
        ([4] + [1] * 11 + [3], "8,192 pixels, over the limit of 4,096 pixels"),
        ([70_000, 8, 3], "(the latent) is 70,000 values"),
        ([100, 0, 3], "zero channels"),
        ([100, 8, 4], "makes 4 channels; images have 1 or 3"),
        ([100, 65_536, 65_536, 3], "parameter count is 68,828,004,354 elements"),
    ],
)
def test_dcgan_size_checks(channels: list[int], expect: str) -> None:
    with pytest.raises(UserInputError, match="^x.pt: ") as info:
        check_dcgan_size(channels, "x.pt")
    assert expect in str(info.value)
    assert "\n" not in str(info.value)


def test_dcgan_limits_can_be_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    check_dcgan_size([100, 8, 8, 3], "x.pt")  # 16 px, fine
    monkeypatch.setenv("LOWRANKGAN_MAX_RESOLUTION", "8")
    with pytest.raises(UserInputError, match="16 pixels.*LOWRANKGAN_MAX_RESOLUTION"):
        check_dcgan_size([100, 8, 8, 3], "x.pt")


def test_huge_layer_shapes_are_refused_before_any_allocation() -> None:
    # Views of one value: 2.7e11 bytes if anything touched or copied them.
    channels = [100, 65_536, 65_536, 3]
    state = dcgan_state([100, 1, 1, 3])
    for i, key in enumerate(("main.0.weight", "main.3.weight", "main.6.weight")):
        state[key] = torch.zeros(1).expand(channels[i], channels[i + 1], 4, 4)
    for index in (1, 4):
        for name in ("weight", "bias", "running_mean", "running_var"):
            state[f"main.{index}.{name}"] = torch.ones(65_536)
    with pytest.raises(UserInputError, match="parameter count is 68,828,004,354"):
        build_dcgan(state, "views.pt")


def test_dcgan_is_built_from_the_stored_tensors_not_allocated_twice() -> None:
    state = dcgan_state([6, 4, 1])
    state["main.0.weight"] = torch.randn(6, 4, 4, 4, dtype=torch.float64)
    network = build_dcgan(state, "small.pt")
    tensors = network.state_dict()
    assert not any(t.is_meta for t in tensors.values())
    assert tensors["convs.0.weight"].dtype == torch.float32
    torch.testing.assert_close(tensors["convs.0.weight"], state["main.0.weight"].float())
    assert network(torch.randn(2, 6)).shape == (2, 1, 8, 8)


def test_odd_dcgan_entries_are_user_errors() -> None:
    state = dcgan_state([6, 4, 3])
    # a 5000-digit layer index (Python refuses to convert it) and non-tensor values: ignored
    state["main." + "9" * 5000 + ".weight"] = torch.zeros(1, 1, 4, 4)
    state["main.40.weight"] = "not a tensor"
    assert is_dcgan_state(state)
    assert build_dcgan(state, "odd.pt").resolution == 8
    state["main.3.weight"] = torch.zeros(4, 3, 4, 4, dtype=torch.int32)
    with pytest.raises(UserInputError, match="convs.1.weight is not a floating-point tensor"):
        build_dcgan(state, "odd.pt")
    state["main.3.weight"] = torch.zeros(4, 3, 3, 3)
    with pytest.raises(UserInputError, match=r"convolution 1 has a \(3, 3\) kernel"):
        build_dcgan(state, "odd.pt")


# ---------------------------------------------------------------------------------------------
# BigGAN config.json


@pytest.fixture(scope="module")
def biggan(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("biggan")
    write_biggan(folder, output_dim=32)
    return folder


def _config(tmp_path: Path, biggan: Path, **changes: object) -> Path:
    raw = json.loads((biggan / "config.json").read_text())
    raw.update(changes)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(raw))
    return path


@pytest.mark.parametrize(
    ("changes", "expect"),
    [
        ({"channel_width": 2**20}, "channel_width is 1,048,576, over the maximum of 16,384"),
        ({"num_classes": 10**12}, "num_classes is 1,000,000,000,000, over the maximum"),
        ({"n_stats": 10**12}, "n_stats is 1,000,000,000,000, over the maximum of 1,000"),
        ({"z_dim": 10**12}, "z_dim is 1,000,000,000,000 values, over the limit of 65,536"),
        ({"class_embed_dim": 10**30}, "class_embed_dim is a 31-digit number, over the limit"),
        ({"output_dim": 8192}, "output_dim is 8,192 pixels, over the limit of 4,096"),
        ({"attention_layer_position": 10**12}, "attention_layer_position 1,000,000,000,000"),
        ({"layers": [[True, 10**12, 10**12]]}, "layers[0] has a channel multiplier of 1,000,0"),
        ({"layers": [[False, 1, 1]] * 10_000}, "layers has 10,000 blocks, over the maximum"),
        (ATTENTION_AT_2048, "the self-attention map at 2048px is 4,398,046,511,104 elements"),
        (HUGE_NETWORK, "float32 weights of the network it describes is 2.97 TiB"),
    ],
)
def test_config_bounds(tmp_path: Path, biggan: Path, changes: dict, expect: str) -> None:
    with pytest.raises(UserInputError) as info:
        read_config(_config(tmp_path, biggan, **changes))
    assert expect in str(info.value) and "\n" not in str(info.value)


def test_config_size_nesting_and_long_numbers(tmp_path: Path, biggan: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(deep_json(100_000))  # json.loads raises RecursionError on this
    with pytest.raises(UserInputError, match="nested deeper than 200 levels"):
        read_config(path)
    path.write_text(json.dumps({"x": json.loads(deep_json(300))}))
    with pytest.raises(UserInputError, match="nested deeper than 200 levels"):
        read_config(path)  # parses, but is deeper than the limit
    path.write_text('{"z_dim": ' + "9" * 5000 + "}")
    with pytest.raises(UserInputError, match="cannot read BigGAN config .*4300 digits"):
        read_config(path)
    with open(path, "wb") as handle:
        handle.truncate(16 * 2**20 + 1)
    with pytest.raises(UserInputError, match="is 16 MiB, over the limit of 16 MiB"):
        read_config(path)
    path.unlink()
    path.mkdir()
    with pytest.raises(UserInputError, match="is not a regular file"):
        read_config(path)


def test_state_count_from_the_config_equals_the_stored_weights(tmp_path: Path) -> None:
    for size, width in ((32, 4), (64, 8)):
        state = write_biggan(tmp_path / str(size), output_dim=size, channel_width=width)
        config = read_config(tmp_path / str(size) / "config.json")
        assert config_state_elements(config) == sum(t.numel() for t in state.values())


def test_biggan_weights_go_through_the_shared_checks(
    tmp_path: Path, biggan: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    read: list[Path] = []
    shared = biggan_module.load_state_file
    monkeypatch.setattr(biggan_module, "load_state_file", lambda p: read.append(p) or shared(p))
    network, _ = load_biggan(biggan)
    assert isinstance(network, BigGANDeep) and read == [biggan / "pytorch_model.bin"]
    assert not any(t.is_meta for t in network.buffers())
    folder = tmp_path / "bg"
    write_biggan(folder, output_dim=32)
    weights = folder / "pytorch_model.bin"
    weights.write_text("<html>404 Not Found</html>")
    with pytest.raises(UserInputError, match="pytorch_model.bin: not a torch.save file"):
        load_biggan(folder)
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (marker.touch, ())

    torch.save({"generator.gen_z.bias": Payload()}, weights)
    with pytest.raises(UserInputError, match="pytorch_model.bin"):
        load_biggan(folder)
    assert not marker.exists()
    state = write_biggan(folder, output_dim=32)
    state["embeddings.weight"] = torch.zeros(8, 11)
    torch.save(state, weights)
    with pytest.raises(UserInputError, match=r"embeddings.weight has shape \[8, 11\]"):
        load_biggan(folder)


# ---------------------------------------------------------------------------------------------
# --device


@pytest.mark.parametrize(
    "device",
    ["meta", "xpu", "hpu", "vulkan", "ipu", "lazy", "privateuseone", "garbage", "cpu:0", "mps:1"],
)
def test_unsupported_devices(device: str) -> None:
    with pytest.raises(UserInputError) as info:
        _resolve_device(device)
    assert str(info.value) == f"unknown device {device!r}; use cpu, cuda, cuda:N, mps or auto"


def test_supported_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _resolve_device("cpu") == torch.device("cpu")
    assert _resolve_device(" CPU ") == torch.device("cpu")
    assert _resolve_device(None).type in ("cpu", "cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert _resolve_device("auto") == torch.device("cpu")
    with pytest.raises(UserInputError, match="^device cuda:0 requested but CUDA is not available"):
        _resolve_device("cuda:0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert _resolve_device("cuda:1") == torch.device("cuda", 1)
    assert _resolve_device("cuda") == torch.device("cuda")
    with pytest.raises(UserInputError, match=r"cuda:2 requested but this machine has 2 CUDA"):
        _resolve_device("cuda:2")


# ---------------------------------------------------------------------------------------------
# Files that are no checkpoint


def _npz(path: Path) -> None:
    with open(path, "wb") as handle:  # a path would get .npz appended
        np.savez(handle, a=np.zeros(3))


def _zip_without_data_pkl(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "hello")


FILES: dict[str, tuple[Callable[[Path], None], str]] = {
    "html-with-bom": (
        lambda p: p.write_bytes(b"\xef\xbb\xbf  <!doctype html><title>x</title>"),
        "it is an HTML page",
    ),
    "xml": (lambda p: p.write_text('<?xml version="1.0"?><a/>'), "it looks like HTML or XML"),
    "text": (lambda p: p.write_text("model weights\n"), "it is a text file"),
    "empty": (lambda p: p.write_bytes(b""), "the file is empty"),
    "npz": (_npz, "a zip archive that torch.save did not write"),
    "zip": (_zip_without_data_pkl, "a zip archive that torch.save did not write"),
    "binary": (lambda p: p.write_bytes(bytes(range(1, 40))), "unknown binary format"),
}


@pytest.mark.parametrize("kind", list(FILES))
@pytest.mark.parametrize("as_checkpoint", [False, True])
def test_files_that_are_no_checkpoint(tmp_path: Path, kind: str, as_checkpoint: bool) -> None:
    write, expect = FILES[kind]
    path = tmp_path / "weights.pt"
    write(path)
    with pytest.raises(UserInputError) as info:
        if as_checkpoint:
            load_model("dcgan-faces", checkpoint=path)
        else:
            load_model(path)
    message = str(info.value)
    assert message.startswith(f"{path}: not a recognised checkpoint") and expect in message


def test_folders_that_are_no_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "random.bin").write_bytes(b"\x80random")
    with pytest.raises(UserInputError, match="not a recognised checkpoint .*config.json"):
        load_model(tmp_path)
    with pytest.raises(UserInputError, match="not a recognised checkpoint \\(it is a folder"):
        load_model("dcgan-faces", checkpoint=tmp_path)


def test_a_real_pickle_still_reaches_its_loader(tmp_path: Path) -> None:
    path = tmp_path / "plain.pkl"
    path.write_bytes(pickle.dumps({"no": "generator"}))
    with pytest.raises(UserInputError) as info:
        load_model(path)
    assert "not a recognised checkpoint" not in str(info.value)
