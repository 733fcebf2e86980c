"""Hostile checkpoint files are refused cheaply: zip bombs in torch files (data.pkl or a storage
deflated to 3 GiB, also nested in a NVIDIA pickle), storages declared larger than the file,
zero-stride tensors claiming gigabytes, module trees and `_init_kwargs` shared as DAGs (2^64
paths), cycles, deep nesting, deep tuples (which crash CPython when hashed), too many objects;
and a pickle may not change shared objects of the process (BUILD on a function or class).

Every file is generated here in tmp_path: pickles written opcode by opcode, zips written by hand
(`write_zip`: a deflate stream of zeros is a repeated fully-flushed block, so a 3 GiB entry takes
3 MB and no memory to write). The console-script cases run in one module fixture, two at a time,
each checked with `hostile.assert_refused` (exit 2, one error line, no traceback, under the RSS
and time budgets, nothing written).
"""

from __future__ import annotations

import collections
import functools
import io
import pickle
import struct
import warnings
import zipfile
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

import sg2_checkpoints as sg2
from hostile import ConsoleRun, assert_refused, run_console
from lowrankgan.errors import UserInputError
from lowrankgan.models.checkpoints import load_state_file, safe_torch_load
from lowrankgan.models.stylegan2.formats import (
    EasyDictStub,
    TFNetworkStub,
    _RestrictedUnpickler,
    read_nvidia_pkl,
    read_rosinality_pt,
    read_stylegan2_checkpoint,
    read_tf_pkl,
)

MiB, GiB = 2**20, 2**30
BOMB = 3 * GiB

# ---------------------------------------------------------------------------------------------
# A tiny pickle assembler (protocol 2 opcodes)

PROTO, STOP, MARK, POP = b"\x80\x02", b".", b"(", b"0"
NONE, FALSE = b"N", b"\x89"
EMPTY_DICT, EMPTY_LIST, EMPTY_TUPLE = b"}", b"]", b")"
TUPLE, TUPLE1, TUPLE2 = b"t", b"\x85", b"\x86"
SETITEM, SETITEMS, APPEND, APPENDS = b"s", b"u", b"a", b"e"
REDUCE, BUILD, BINPERSID = b"R", b"b", b"Q"


def glob(module: str, name: str) -> bytes:
    return b"c" + f"{module}\n{name}\n".encode()


def text(value: str) -> bytes:
    data = value.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def num(value: int) -> bytes:
    if -(2**31) <= value < 2**31:
        return b"J" + struct.pack("<i", value)
    data = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(data)]) + data


def raw(data: bytes) -> bytes:  # BINBYTES (protocol 3)
    return b"B" + struct.pack("<I", len(data)) + data


def put(slot: int) -> bytes:
    return b"r" + struct.pack("<I", slot)


def get(slot: int) -> bytes:
    return b"j" + struct.pack("<I", slot)


def dict_of(*pairs: tuple[str, bytes]) -> bytes:
    return EMPTY_DICT + MARK + b"".join(text(k) + v for k, v in pairs) + SETITEMS


def module(class_name: str, state: bytes) -> bytes:
    """A NVIDIA persistent object: _reconstruct_persistent_obj({'type': 'class', ...})."""
    meta = dict_of(("type", text("class")), ("class_name", text(class_name)), ("state", state))
    return glob("torch_utils.persistence", "_reconstruct_persistent_obj") + meta + TUPLE1 + REDUCE


def nvidia(g_ema: bytes) -> bytes:
    """{'G_ema': <g_ema>} as a whole pickle (`g_ema` may use memo slots set before it)."""
    return PROTO + EMPTY_DICT + text("G_ema") + g_ema + SETITEM + STOP


def tensor(storage: bytes, size: tuple[int, ...], stride: tuple[int, ...]) -> bytes:
    """torch._utils._rebuild_tensor_v2(storage, 0, size, stride, False, OrderedDict())."""

    def ints(values: tuple[int, ...]) -> bytes:
        return MARK + b"".join(num(v) for v in values) + TUPLE

    hooks = glob("collections", "OrderedDict") + EMPTY_TUPLE + REDUCE
    args = MARK + storage + num(0) + ints(size) + ints(stride) + FALSE + hooks + TUPLE
    return glob("torch._utils", "_rebuild_tensor_v2") + args + REDUCE


def zip_pickle(numel: int) -> bytes:
    """A torch zip's data.pkl: {'w': float tensor of `numel` elements in storage '0'}."""
    pid = MARK + text("storage") + glob("torch", "FloatStorage") + text("0") + text("cpu")
    storage = pid + num(numel) + TUPLE + BINPERSID
    return PROTO + EMPTY_DICT + text("w") + tensor(storage, (numel,), (1,)) + SETITEM + STOP


def legacy_torch_file(numel: int, data: bytes) -> bytes:
    """torch.save's legacy format holding {'w': float tensor}, storage declaring `numel`."""
    sys_info = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"int": 4}}
    head = b"".join(pickle.dumps(v, protocol=2) for v in (0x1950A86A20F9469CFC6C, 1001, sys_info))
    pid = MARK + text("storage") + glob("torch", "FloatStorage") + text("0") + text("cpu")
    storage = pid + num(numel) + NONE + TUPLE + BINPERSID
    body = PROTO + EMPTY_DICT + text("w") + tensor(storage, (numel,), (1,)) + SETITEM + STOP
    keys = pickle.dumps(["0"], protocol=2)
    return head + body + keys + struct.pack("<q", numel) + data


def legacy_storage_blob(values: list[float]) -> bytes:
    """What NVIDIA pickles store per storage: torch.save(storage) in the legacy format."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TypedStorage is deprecated, but that is what they hold
        storage = torch.tensor(values).storage()
    torch.save(storage, buffer, _use_new_zipfile_serialization=False)
    return buffer.getvalue()


def load_from_bytes(blob: bytes) -> bytes:
    return glob("torch.storage", "_load_from_bytes") + raw(blob) + TUPLE1 + REDUCE


# ---------------------------------------------------------------------------------------------
# Zips written by hand, with deflated zeros that cost no memory


class Zeros:
    """`size` zero bytes, stored deflated (size: a multiple of 1 MiB)."""

    def __init__(self, size: int) -> None:
        assert size % MiB == 0
        self.size = size


@functools.cache
def _zero_block() -> tuple[bytes, bytes]:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(bytes(MiB)) + compressor.flush(zlib.Z_FULL_FLUSH)
    return block, compressor.flush()


@functools.cache
def _zeros_crc(size: int) -> int:
    crc, chunk = 0, bytes(MiB)
    for _ in range(size // MiB):
        crc = zlib.crc32(chunk, crc)
    return crc


def write_zip(path: Path, entries: list[tuple[str, bytes | Zeros]]) -> Path:
    """A zip (no zip64) of STORED bytes and DEFLATED `Zeros`, streamed to disk."""
    central = []
    with open(path, "wb") as f:
        for name, payload in entries:
            encoded, offset = name.encode(), f.tell()
            if isinstance(payload, Zeros):
                block, tail = _zero_block()
                method, crc, size = 8, _zeros_crc(payload.size), payload.size
                compressed = len(block) * (size // MiB) + len(tail)
            else:
                method, crc, size, compressed = 0, zlib.crc32(payload), len(payload), len(payload)
            fields = (20, 0, method, 0, 33, crc, compressed, size, len(encoded), 0)
            f.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, *fields) + encoded)
            if isinstance(payload, Zeros):
                for _ in range(size // MiB):
                    f.write(block)
                f.write(tail)
            else:
                f.write(payload)
            central.append(
                struct.pack("<IH", 0x02014B50, 20)
                + struct.pack("<HHHHHIIIHHHHHII", *fields, 0, 0, 0, 0, offset)
                + encoded
            )
        start = f.tell()
        directory = b"".join(central)
        f.write(directory)
        end = (0x06054B50, 0, 0, len(entries), len(entries), len(directory), start, 0)
        f.write(struct.pack("<IHHHHIIH", *end))
    return path


def torch_zip(path: Path, data_pkl: bytes | Zeros, storage: bytes | Zeros) -> Path:
    """A torch zip in torch.save's layout (torch.load reads it when sizes are honest)."""
    return write_zip(
        path,
        [
            ("archive/data.pkl", data_pkl),
            ("archive/byteorder", b"little"),
            ("archive/data/0", storage),
            ("archive/version", b"3\n"),
        ],
    )


def storage_bomb(path: Path) -> Path:
    """data.pkl honest; its storage (a 3 GiB float tensor) deflated to 3 MB."""
    return torch_zip(path, zip_pickle(BOMB // 4), Zeros(BOMB))


# ---------------------------------------------------------------------------------------------
# Hostile pickles


def module_dag(levels: int = 64) -> bytes:
    """G_ema whose `_modules` holds the same child twice at each of `levels` levels."""
    out = module("Leaf", dict_of()) + put(0) + POP
    for level in range(1, levels + 1):
        children = dict_of(("a", get(level - 1)), ("b", get(level - 1)))
        out += module("Node", dict_of(("_modules", children))) + put(level) + POP
    return nvidia(out + get(levels))


def module_cycle() -> bytes:
    """G_ema listed among its own submodules."""
    out = EMPTY_DICT + put(0) + POP  # its _modules dict
    out += module("Node", dict_of(("_modules", get(0)))) + put(1) + POP
    out += get(0) + text("self") + get(1) + SETITEM + POP
    return nvidia(out + get(1))


def module_chain(depth: int) -> bytes:
    out = module("Leaf", dict_of()) + put(0) + POP
    for level in range(1, depth + 1):
        children = dict_of(("c", get(level - 1)))
        out += module("Node", dict_of(("_modules", children))) + put(level) + POP
    return nvidia(out + get(depth))


def init_kwargs_dag(levels: int = 64) -> bytes:
    """_init_kwargs = {'mapping_kwargs': L64}, L0 = [1], Lk = [Lk-1, Lk-1]."""
    out = EMPTY_LIST + num(1) + APPEND + put(0) + POP
    for level in range(1, levels + 1):
        out += EMPTY_LIST + MARK + get(level - 1) + get(level - 1) + APPENDS + put(level) + POP
    kwargs = dict_of(("mapping_kwargs", get(levels)))
    return nvidia(out + module("Generator", dict_of(("_init_kwargs", kwargs))))


def init_kwargs_deep(depth: int) -> bytes:
    """_init_kwargs = {'x': [[[...]]]} nested `depth` lists deep."""
    nested = EMPTY_LIST * depth + APPEND * (depth - 1)
    kwargs = dict_of(("x", nested))
    return nvidia(module("Generator", dict_of(("_init_kwargs", kwargs))))


def deep_tuple_key(depth: int) -> bytes:
    """{((((),),),): 1} nested `depth` deep: hashing it overflows CPython's C stack."""
    key = EMPTY_TUPLE + TUPLE1 * depth
    return PROTO + EMPTY_DICT + key + num(1) + SETITEM + STOP


def zero_stride_module(numel: int) -> bytes:
    """G_ema with a parameter of `numel` elements, all one float (stride 0)."""
    storage = load_from_bytes(legacy_storage_blob([0.0]))
    params = dict_of(("weight", tensor(storage, (numel,), (0,))))
    return nvidia(module("Generator", dict_of(("_parameters", params))))


def build_on(target: bytes, attribute: str, value: bytes) -> bytes:
    """BUILD with slot state {attribute: value} applied to `target` (a global)."""
    state = NONE + EMPTY_DICT + text(attribute) + value + SETITEM + TUPLE2
    return PROTO + target + state + BUILD + STOP


# ---------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def small_state() -> dict[str, torch.Tensor]:
    return sg2.random_state(resolution=8, channels=8, w_dim=8, z_dim=8, mapping_layers=2)


def rosinality_with_expanded_latent(path: Path, state: dict[str, torch.Tensor]) -> Path:
    """An honest rosinality file whose latent_avg claims 2^30 floats of one stored value."""
    sg2.write_rosinality_pt(path, state)
    obj = torch.load(path, weights_only=False)
    obj["latent_avg"] = torch.zeros(1, 1).expand(2**15, 2**15)
    torch.save(obj, path)
    return path


def written(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def nested_bomb(path: Path, work: Path) -> Path:
    blob = storage_bomb(work / "blob.zip").read_bytes()
    path.write_bytes(nvidia(load_from_bytes(blob)))
    return path


CONSOLE: dict[str, tuple[Callable[[Path, dict[str, torch.Tensor]], Path], str]] = {
    "data-pkl-bomb": (
        lambda p, s: torch_zip(p, Zeros(BOMB), b""),
        "archive/data.pkl is 3 GiB, over the limit of 64 MiB",
    ),
    "storage-bomb": (
        lambda p, s: storage_bomb(p),
        "zip entry archive/data/0 would inflate to 3 GiB",
    ),
    "storage-bomb-in-nvidia-pickle": (
        lambda p, s: nested_bomb(p, p.parent),
        "a tensor storage in the pickle: refused: zip entry archive/data/0 would inflate",
    ),
    "module-dag": (
        lambda p, s: written(p, module_dag()),
        "is reached twice (a shared or cyclic module tree)",
    ),
    "init-kwargs-dag": (
        lambda p, s: written(p, init_kwargs_dag()),
        "hyper-parameters expand to more than",
    ),
    "deep-tuple-key": (
        lambda p, s: written(p, deep_tuple_key(1_000_000)),
        "nests containers deeper than 200 levels",
    ),
    "zero-stride-latent": (
        rosinality_with_expanded_latent,
        "tensor latent_avg is an expanded or overlapping view",
    ),
}


@pytest.fixture(scope="module")
def console_runs(
    tmp_path_factory: pytest.TempPathFactory, small_state: dict[str, torch.Tensor]
) -> dict[str, tuple[ConsoleRun, Path]]:
    root = tmp_path_factory.mktemp("hostile_checkpoints")

    def one(name: str) -> tuple[ConsoleRun, Path]:
        folder = root / name
        folder.mkdir()
        make, _ = CONSOLE[name]
        checkpoint = make(folder / f"{name}.pkl", small_state)
        work = folder / "out"
        work.mkdir()
        args = ("--seed", "0", "--region", "center", "--out", work / "run", "--quiet")
        run = run_console("analyze", "--model", checkpoint, *args, cwd=folder)
        return run, work

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(CONSOLE, pool.map(one, CONSOLE), strict=True))


@pytest.mark.parametrize("name", list(CONSOLE))
def test_console_refuses(console_runs: dict[str, tuple[ConsoleRun, Path]], name: str) -> None:
    run, work = console_runs[name]
    assert_refused(run, CONSOLE[name][1], unchanged=work)


# ---------------------------------------------------------------------------------------------
# The hand-written files are real: with honest sizes, torch and our readers load them


def test_hand_written_torch_files_load(tmp_path: Path) -> None:
    values = torch.arange(4, dtype=torch.float32)
    path = torch_zip(tmp_path / "w.pt", zip_pickle(4), values.numpy().tobytes())
    assert torch.equal(torch.load(path, weights_only=True)["w"], values)
    assert torch.equal(load_state_file(path)["w"], values)
    legacy = tmp_path / "legacy.pt"
    legacy.write_bytes(legacy_torch_file(4, values.numpy().tobytes()))
    assert torch.equal(torch.load(legacy, weights_only=True)["w"], values)
    assert torch.equal(load_state_file(legacy)["w"], values)
    # The bomb's entry really inflates to zeros.
    with zipfile.ZipFile(storage_bomb(tmp_path / "bomb.pt")) as archive:
        info = archive.getinfo("archive/data/0")
        assert info.file_size == BOMB and info.compress_size < 4 * MiB
        with archive.open(info) as entry:
            assert entry.read(MiB) == bytes(MiB)


def test_hand_written_pickles_load(tmp_path: Path) -> None:
    path = tmp_path / "one.pkl"
    storage = load_from_bytes(legacy_storage_blob([1.0, 2.0]))
    params = dict_of(("w", tensor(storage, (2,), (1,))))
    path.write_bytes(nvidia(module("Generator", dict_of(("_parameters", params)))))
    with pytest.raises(UserInputError, match="not a StyleGAN2 generator"):
        read_nvidia_pkl(path)  # read whole: only the generator layout is missing


# ---------------------------------------------------------------------------------------------
# Torch files: declared sizes


def test_zip_bombs_are_refused_from_the_directory(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match=r"data\.pkl is 3 GiB, over the limit of 64 MiB"):
        load_state_file(torch_zip(tmp_path / "a.pt", Zeros(BOMB), b""))
    path = storage_bomb(tmp_path / "b.pt")
    with pytest.raises(UserInputError, match=r"archive/data/0 would inflate to 3 GiB .* zip bomb"):
        load_state_file(path)
    with pytest.raises(UserInputError, match="zip bomb") as info:
        read_rosinality_pt(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_nested_storage_blobs_are_checked(tmp_path: Path) -> None:
    blob = storage_bomb(tmp_path / "blob.zip").read_bytes()
    with pytest.raises(UserInputError, match="storage in the pickle: refused: zip entry"):
        safe_torch_load(blob, what="x: a tensor storage in the pickle")
    path = tmp_path / "legacy-blob.pkl"
    path.write_bytes(nvidia(load_from_bytes(legacy_torch_file(2**28, b"\0" * 16))))
    with pytest.raises(UserInputError, match=r"declare 1 GiB of data but the file holds \d+ bytes"):
        read_stylegan2_checkpoint(path)


def test_legacy_storage_larger_than_the_file(tmp_path: Path) -> None:
    path = tmp_path / "legacy.pt"
    path.write_bytes(legacy_torch_file(2**30, b"\0" * 16))
    with pytest.raises(UserInputError, match="declare 4 GiB of data but the file holds"):
        load_state_file(path)


def test_checkpoint_bytes_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "w.pt"
    torch.save({"w": torch.zeros(1000)}, path)
    monkeypatch.setenv("LOWRANKGAN_MAX_CHECKPOINT_BYTES", "2000")
    with pytest.raises(UserInputError, match="over the limit of 1.95 KiB .*CHECKPOINT_BYTES"):
        load_state_file(path)


def test_pickle_objects_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "many.pt"
    torch.save({"w": torch.zeros(1), "names": list(range(3000))}, path)
    nvidia_path = tmp_path / "G.pkl"
    sg2.write_nvidia_pkl(nvidia_path, sg2.random_state(resolution=8, channels=8, w_dim=8, z_dim=8))
    assert load_state_file(path)["names"][-1] == 2999
    monkeypatch.setenv("LOWRANKGAN_MAX_PICKLE_OBJECTS", "2000")
    for read in (lambda: load_state_file(path), lambda: read_nvidia_pkl(nvidia_path)):
        with pytest.raises(UserInputError, match="builds more than 2,000 objects"):
            read()


# ---------------------------------------------------------------------------------------------
# Tensors claiming more than their storage


def test_zero_stride_tensors_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.pt"
    torch.save({"net": {"x": torch.zeros(1).expand(2**30)}}, path)
    with pytest.raises(UserInputError, match=r"tensor net\.x is an expanded or overlapping view"):
        load_state_file(path)
    torch.save({"x": torch.zeros(1).expand(2**31 + 1)}, path)
    with pytest.raises(UserInputError, match="tensor x is 2,147,483,649 elements, over the limit"):
        load_state_file(path)
    torch.save({"x": torch.zeros(8)[:4], "y": torch.zeros(3, 4).t()}, path)  # honest views
    assert load_state_file(path)["y"].shape == (4, 3)


def test_zero_stride_tensor_in_a_nvidia_pickle(tmp_path: Path) -> None:
    path = tmp_path / "G.pkl"
    path.write_bytes(zero_stride_module(2**30))
    with pytest.raises(UserInputError, match="a tensor in the pickle is an expanded or overlap"):
        read_nvidia_pkl(path)


# ---------------------------------------------------------------------------------------------
# Walks: each object once, cycles and depth refused


def test_module_dag_cycle_and_depth(tmp_path: Path) -> None:
    path = tmp_path / "G.pkl"
    cases = {
        "reached twice": module_dag(),
        "module self is reached twice": module_cycle(),
        "modules: refused: it nests containers deeper than 200": module_chain(5000),
    }
    for message, data in cases.items():
        path.write_bytes(data)
        with pytest.raises(UserInputError, match=message):
            read_nvidia_pkl(path)
    path.write_bytes(module_chain(150))  # deep but within the limit
    with pytest.raises(UserInputError, match="not a StyleGAN2 generator"):
        read_nvidia_pkl(path)


def test_init_kwargs_dag_and_depth(tmp_path: Path) -> None:
    path = tmp_path / "G.pkl"
    path.write_bytes(init_kwargs_dag())
    with pytest.raises(UserInputError, match="expand to more than 2,000,000 values"):
        read_nvidia_pkl(path)
    path.write_bytes(init_kwargs_deep(100_000))
    with pytest.raises(UserInputError, match="hyper-parameters: refused: it nests containers"):
        read_nvidia_pkl(path)
    path.write_bytes(init_kwargs_dag(levels=10))  # shared, but small once expanded
    with pytest.raises(UserInputError, match="not a StyleGAN2 generator"):
        read_nvidia_pkl(path)


def test_deep_tuples_and_protocol_5(tmp_path: Path) -> None:
    path = tmp_path / "t.pkl"
    path.write_bytes(deep_tuple_key(5_000))  # the console case crashes CPython if unchecked
    with pytest.raises(UserInputError, match="deeper than 200 levels"):
        read_stylegan2_checkpoint(path)
    path.write_bytes(b"\x80\x05\x96" + struct.pack("<Q", BOMB) + b".")  # BYTEARRAY8
    with pytest.raises(UserInputError, match="bytearrays and buffers are not supported"):
        read_stylegan2_checkpoint(path)
    path.write_bytes(b"\x80\x04\x8e" + struct.pack("<Q", 2**60) + b".")  # BINBYTES8
    with pytest.raises(UserInputError, match="truncated or corrupt"):
        read_stylegan2_checkpoint(path)


def test_hostile_tf_variables(tmp_path: Path) -> None:
    """A TF network whose variable is a list DAG (np.asarray would expand it) is refused."""
    out = EMPTY_LIST + num(1) + APPEND + put(0) + POP
    for level in range(1, 40):
        out += EMPTY_LIST + MARK + get(level - 1) + get(level - 1) + APPENDS + put(level) + POP
    variables = EMPTY_LIST + MARK + text("w") + get(39) + TUPLE2 + APPENDS
    state = dict_of(("variables", variables))
    network = glob("dnnlib.tflib.network", "Network") + EMPTY_TUPLE + b"\x81" + state + BUILD
    path = tmp_path / "tf.pkl"
    path.write_bytes(PROTO + out + MARK + network + network + network + TUPLE + STOP)
    with pytest.raises(UserInputError, match="TensorFlow variable w is not an array"):
        read_tf_pkl(path)


# ---------------------------------------------------------------------------------------------
# In-process state: a refused file changes nothing for the next one


def test_build_cannot_change_shared_objects(tmp_path: Path) -> None:
    rebuild = torch._utils._rebuild_tensor_v2
    defaults, tf_setstate = rebuild.__defaults__, TFNetworkStub.__dict__["__setstate__"]
    honest = tmp_path / "honest.pkl"
    sg2.write_nvidia_pkl(honest, sg2.random_state(resolution=8, channels=8, w_dim=8, z_dim=8))
    before = read_nvidia_pkl(honest).state
    ordered_dict = glob("collections", "OrderedDict")
    rebuild_global = glob("torch._utils", "_rebuild_tensor_v2")
    network = glob("dnnlib.tflib.network", "Network")
    stubs = "the class lowrankgan.models.stylegan2.formats"
    hostile = [
        ("the function", build_on(rebuild_global, "__defaults__", MARK + num(1) + TUPLE)),
        (f"{stubs}.TFNetworkStub", build_on(network, "__setstate__", ordered_dict)),
        (f"{stubs}.EasyDictStub", build_on(glob("dnnlib.util", "EasyDict"), "__init__", NONE)),
        ("the function", build_on(ordered_dict, "__code__", NONE)),
    ]
    path = tmp_path / "hostile.pkl"
    for described, data in hostile:
        path.write_bytes(data)
        with pytest.raises(UserInputError, match=f"sets state on {described}"):
            read_stylegan2_checkpoint(path)
    # A numpy dtype may not be marked as holding Python objects (raw bytes read as pointers).
    dtype = glob("numpy", "dtype") + MARK + text("f8") + FALSE + b"\x88" + TUPLE + REDUCE
    flags = MARK + num(3) + text("<") + NONE + NONE + NONE + num(8) + num(8) + num(63) + TUPLE
    path.write_bytes(PROTO + dtype + flags + BUILD + STOP)
    with pytest.raises(UserInputError, match="numpy dtype in the pickle is not a plain one"):
        read_stylegan2_checkpoint(path)
    assert torch._utils._rebuild_tensor_v2 is rebuild and rebuild.__defaults__ == defaults
    assert TFNetworkStub.__dict__["__setstate__"] is tf_setstate
    assert "__init__" not in EasyDictStub.__dict__
    after = read_nvidia_pkl(honest).state
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_refusals_name_the_file_on_one_line(tmp_path: Path) -> None:
    path = tmp_path / "G.pkl"
    path.write_bytes(module_dag())
    with pytest.raises(UserInputError) as info:
        read_stylegan2_checkpoint(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_sets_and_ordered_dicts_take_lists_only(tmp_path: Path) -> None:
    path = tmp_path / "s.pkl"
    # set(<a 2^30-element zero-stride tensor>) would iterate it element by element.
    storage = load_from_bytes(legacy_storage_blob([0.0]))
    path.write_bytes(PROTO + glob("builtins", "set") + text("abc") + TUPLE1 + REDUCE + STOP)
    with pytest.raises(UserInputError, match="set from something other than a list"):
        read_stylegan2_checkpoint(path)
    arg = tensor(storage, (2,), (1,))
    path.write_bytes(PROTO + glob("collections", "OrderedDict") + arg + TUPLE1 + REDUCE + STOP)
    with pytest.raises(UserInputError, match="OrderedDict from something other than a list"):
        read_stylegan2_checkpoint(path)


def test_pickled_numpy_values_still_load() -> None:
    """The honest numpy pickles NVIDIA/TF files use pass the argument checks."""
    values = [np.float64(1.5), np.bool_(True), np.arange(6, dtype=np.float32).reshape(2, 3)]
    values.append(collections.OrderedDict(a=np.int64(3)))
    for protocol in (3, 4):  # what the official TF and NVIDIA pickles use
        data = pickle.dumps(values, protocol=protocol)
        got = _RestrictedUnpickler(io.BytesIO(data), Path("v.pkl"), len(data)).load()
        assert got[0] == 1.5 and got[1] == np.True_ and got[3]["a"] == 3
        assert np.array_equal(got[2], values[2]) and got[2].dtype == np.float32
