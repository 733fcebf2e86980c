"""Reading checkpoint files without running code they contain, and without trusting their sizes.

Every torch weight file goes through `safe_torch_load` (plain state dicts through
`load_state_file`): before `torch.load(weights_only=True)` runs, the file's declared sizes are
checked against the central limits (`lowrankgan.limits`), so a hostile file costs a one-line
`UserInputError` instead of gigabytes of memory:

- torch zip files: the central directory only (cheap) - `data.pkl` within `pickle_bytes`, all
  entries within `checkpoint_bytes`, no compressed entry expanding more than
  `MAX_DEFLATE_RATIO` times (torch.save stores entries uncompressed; torch's reader would inflate
  a deflated one whole), no overlapping or duplicate entries;
- the pickle that indexes the tensors (`data.pkl`, or the pickles of the legacy pre-zip format,
  which NVIDIA pickles also nest for each storage) is scanned first by `BoundedUnpickler`, which
  builds inert stand-ins only: its opcodes within `pickle_objects`, its tuples nested within
  `nesting_depth`, and (legacy format) its storages within the bytes the file holds.

`torch.load` then refuses any pickle that would import or call something outside torch's tensor
allow-list, and `check_tensors` refuses a tensor that claims more elements than its storage holds
(a zero-stride or overlapping view) or more than `tensor_elements`, before anything touches it.

`BoundedUnpickler` is also the base of the restricted unpickler of NVIDIA/TF pickles
(`stylegan2_formats`): a pure-Python unpickler (iterative, so deep nesting in the stream cannot
exhaust the C stack) that counts opcodes, bounds reads to the bytes actually present, bounds
tuple nesting (hashing a deeply nested tuple crashes CPython), and lets state be set (BUILD) or
items added only on objects the pickle itself created - never on a class, function, module or
any global it referenced, which are shared by the whole process.
"""

from __future__ import annotations

import argparse
import functools
import io
import pickle
import types
import warnings
import zipfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import torch

from lowrankgan.errors import UserInputError, one_line
from lowrankgan.io.datafiles import MAX_DEFLATE_RATIO, open_checked_zip
from lowrankgan.limits import LIMITS, check_at_most, human_bytes, limit

__all__ = [
    "MAX_DEFLATE_RATIO",
    "BoundedUnpickler",
    "check_tensor",
    "check_tensors",
    "check_torch_zip",
    "find_state_dict",
    "load_state_file",
    "safe_torch_load",
]

_ZIP_MAGIC = b"PK\x03\x04"
#: torch.save's legacy format starts with this magic number and protocol version.
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
#: Objects whose attributes or items are shared by the whole process.
_SHARED_TYPES = (
    type,
    types.FunctionType,
    types.BuiltinFunctionType,
    types.MethodType,
    types.ModuleType,
    types.MethodWrapperType,
    types.WrapperDescriptorType,
    functools.partial,
)


# ---------------------------------------------------------------------------------------------
# Loading torch files


def load_state_file(path: str | Path) -> Mapping[str, Any]:
    """The dict stored in a torch checkpoint, tensors on the CPU, nothing executed."""
    path = Path(path)
    obj = safe_torch_load(path)
    if not isinstance(obj, Mapping):
        raise UserInputError(f"checkpoint {path} does not hold a dict of tensors")
    return obj


def safe_torch_load(
    source: str | Path | bytes | bytearray | memoryview,
    *,
    what: str | None = None,
    extra_globals: Iterable[Any] = (),
) -> Any:
    """`torch.load(weights_only=True)` of a file (or the bytes of one), after its declared sizes
    and its pickle were checked, with every loaded tensor checked by `check_tensors`.

    `what` names the source in messages (default: the path); `extra_globals` are allowed next to
    torch's tensor allow-list (e.g. `argparse.Namespace`). Raises `UserInputError`.
    """
    data: bytes | None = None
    path: Path | None = None
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        name = what or "checkpoint data"
        size = len(data)
    else:
        path = Path(source)
        name = what or str(path)
        if not path.exists():
            raise UserInputError(f"checkpoint not found: {path}")
        if not path.is_file():
            raise UserInputError(f"checkpoint is not a file: {path}")
        size = path.stat().st_size
    check_at_most(size, "checkpoint_bytes", name)
    try:
        with io.BytesIO(data) if data is not None else open(path, "rb") as f:  # type: ignore[arg-type]
            is_zip = f.read(4) == _ZIP_MAGIC
            f.seek(0)
            (_scan_torch_zip if is_zip else _scan_legacy)(f, size, name)
    except UserInputError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure to parse means a damaged file
        raise UserInputError(f"{name}: {_corrupt(exc)}") from None
    try:
        with warnings.catch_warnings(), torch.serialization.safe_globals(list(extra_globals)):
            # e.g. "Detected pickle protocol 4": noise on stderr next to the one-line error.
            warnings.simplefilter("ignore")
            obj = torch.load(
                io.BytesIO(data) if data is not None else path,
                map_location="cpu",
                weights_only=True,
            )
    except UserInputError:
        raise
    except pickle.UnpicklingError as exc:
        # weights_only refuses globals outside the allow-list: a payload or a foreign format.
        raise UserInputError(
            f"{name}: refused: the checkpoint holds more than tensors ({_unpickling_reason(exc)})"
        ) from None
    except Exception as exc:  # noqa: BLE001 - torch's reader fails in many ways on bad bytes
        raise UserInputError(f"{name}: {_corrupt(exc)}") from None
    check_tensors(obj, name)
    return obj


def _corrupt(exc: BaseException) -> str:
    return f"cannot read checkpoint: truncated or corrupt ({one_line(exc)})"


def _unpickling_reason(exc: Exception) -> str:
    """The informative line of torch's weights-only refusal (it starts with boilerplate)."""
    boilerplate = ("Weights only load failed", "Check the documentation", "Please file an issue")
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(boilerplate)]
    return (useful or lines or [type(exc).__name__])[0][:160]


def find_state_dict(obj: Mapping[str, Any], keys: tuple[str, ...]) -> Mapping[str, torch.Tensor]:
    """The first nested state dict under one of `keys`, or `obj` itself if it is one."""
    for key in keys:
        inner = obj.get(key)
        if isinstance(inner, Mapping):
            return inner
    return obj


# ---------------------------------------------------------------------------------------------
# Declared sizes of torch files


def check_torch_zip(path: str | Path) -> list[str]:
    """The entry names of a zip, after refusing one whose central directory declares hostile
    sizes (reads no entry)."""
    path = Path(path)
    size = path.stat().st_size
    try:
        with open(path, "rb") as f, _open_zip(f, size, str(path)) as archive:
            return archive.namelist()
    except UserInputError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise UserInputError(f"{path}: {_corrupt(exc)}") from None


def _open_zip(f: BinaryIO, size: int, name: str) -> zipfile.ZipFile:
    """The torch zip in `f`, its directory checked (`open_checked_zip`), data.pkl bounded."""

    def bounded_index(info: zipfile.ZipInfo) -> None:
        if info.filename.rsplit("/", 1)[-1] == "data.pkl":
            check_at_most(info.file_size, "pickle_bytes", f"{name}: {info.filename}")

    return open_checked_zip(f, size, name, "checkpoint_bytes", bounded_index)


def _scan_torch_zip(f: BinaryIO, size: int, name: str) -> None:
    """Check a torch zip's directory, then scan its data.pkl (bounded, nothing executed)."""
    with _open_zip(f, size, name) as archive:
        infos = archive.infolist()
        if not infos:
            raise zipfile.BadZipFile("empty zip")
        prefix = infos[0].filename.split("/", 1)[0]
        try:
            info = archive.getinfo(f"{prefix}/data.pkl")
        except KeyError:
            return  # not a torch checkpoint: torch.load says so
        with archive.open(info) as pkl:
            scan = _TorchPickleScan(pkl, what=f"{name}: {info.filename}", size=info.file_size)
            scan.load()
        declared = sum(scan.storages.values())
        check_at_most(declared, "checkpoint_bytes", f"{name}: the tensor data it declares")


def _scan_legacy(f: BinaryIO, size: int, name: str) -> None:
    """Scan the pickles of torch.save's legacy format: the storages they declare must fit in
    the file (the legacy format allocates each storage before reading its bytes)."""
    scan = _TorchPickleScan(f, what=name, size=size, budget=limit("pickle_bytes"))
    if scan.load() != _LEGACY_MAGIC or scan.load() != _LEGACY_PROTOCOL:
        raise UserInputError(f"{name}: cannot read checkpoint: not a file written by torch.save")
    scan.load()  # system info
    scan.load()  # the object
    scan.load()  # the storage keys
    declared = sum(scan.storages.values())
    if declared > size:
        raise UserInputError(
            f"{name}: refused: its tensors declare {human_bytes(declared)} of data but the file "
            f"holds {human_bytes(size)} (a corrupt or hostile checkpoint)"
        )
    check_at_most(declared, "checkpoint_bytes", f"{name}: the tensor data it declares")


# ---------------------------------------------------------------------------------------------
# Tensors that claim more than their storage


def check_tensor(tensor: torch.Tensor, what: str) -> None:
    """Refuse a sparse/nested tensor, one over `tensor_elements`, or a view that claims more
    elements than its storage holds (zero strides or overlapping strides)."""
    if tensor.layout != torch.strided or tensor.is_nested:
        raise UserInputError(f"{what} is a {tensor.layout} tensor; only dense tensors are read")
    numel = tensor.numel()
    check_at_most(numel, "tensor_elements", what)
    if numel == 0:
        return
    shape, stride = tuple(tensor.shape), tuple(tensor.stride())
    held = tensor.untyped_storage().nbytes() // tensor.element_size() - tensor.storage_offset()
    expanded = any(n > 1 and s == 0 for n, s in zip(shape, stride, strict=True))
    if expanded or numel > held:
        raise UserInputError(
            f"{what} is an expanded or overlapping view: {numel:,} elements "
            f"(shape {_short(shape)}, stride {_short(stride)}) over a storage of "
            f"{max(held, 0):,} (refused: it claims memory the file does not hold)"
        )


def _short(values: tuple[int, ...]) -> str:
    return str(values) if len(values) <= 8 else f"({', '.join(map(str, values[:8]))}, ...)"


def check_tensors(obj: Any, what: str) -> None:
    """`check_tensor` on every tensor in `obj` (dicts, lists, tuples, sets, Namespaces), each
    object visited once, naming the tensor's key; refuses nesting beyond `nesting_depth` and more
    than `pickle_objects` containers and tensors."""
    max_depth, budget = limit("nesting_depth"), limit("pickle_objects")
    seen: set[int] = set()
    # (value, (parent link, key) or None, depth); key texts are built only for a message.
    stack: list[tuple[Any, Any, int]] = [(obj, None, 0)]
    while stack:
        value, link, depth = stack.pop()
        if isinstance(value, torch.Tensor):
            if id(value) not in seen:
                seen.add(id(value))
                check_tensor(value, f"{what}: tensor {_key_path(link)}")
            continue
        if isinstance(value, Mapping):
            children: Iterable[tuple[Any, Any]] = value.items()
        elif isinstance(value, list | tuple | set | frozenset):
            children = enumerate(value)
        elif isinstance(value, argparse.Namespace):
            children = vars(value).items()
        else:
            continue
        if id(value) in seen:
            continue
        seen.add(id(value))
        if len(seen) > budget:
            raise UserInputError(
                f"{what}: refused: it holds more than {budget:,} containers and tensors "
                f"(raise it with {LIMITS['pickle_objects'].env_var})"
            )
        if depth >= max_depth:
            raise nesting_error(what)
        for key, child in children:
            stack.append((child, (link, key), depth + 1))


def _key_path(link: Any) -> str:
    keys: list[str] = []
    while link is not None:
        link, key = link
        keys.append(key_text(key))
    return ".".join(reversed(keys)) or "(the whole file)"


def key_text(key: Any) -> str:
    """A dict key or attribute name for a message: short, whatever its type."""
    if isinstance(key, str):
        return key if len(key) <= 80 else key[:77] + "..."
    if isinstance(key, bool | int) and abs(key) < 10**20:
        return str(key)
    return f"<{type(key).__name__}>"


def nesting_error(what: str) -> UserInputError:
    bound = limit("nesting_depth")
    return UserInputError(
        f"{what}: refused: it nests containers deeper than {bound} levels "
        f"(raise it with {LIMITS['nesting_depth'].env_var})"
    )


# ---------------------------------------------------------------------------------------------
# A bounded pure-Python unpickler


class _Reader:
    """The file an unpickler reads: never past the bytes present (a length field claiming more
    is a truncated file, not an allocation) nor past `budget` bytes."""

    def __init__(self, file: BinaryIO, size: int, budget: int | None, what: str) -> None:
        self._file = file
        self._left = size  # bytes from the current position on
        self._budget = size if budget is None else budget
        self._what = what

    def _take(self, n: int) -> int:
        if n > self._left:
            raise pickle.UnpicklingError("pickle data was truncated")
        if n > self._budget:
            spec = LIMITS["pickle_bytes"]
            raise UserInputError(
                f"{self._what}: refused: its pickle is over the limit of "
                f"{human_bytes(limit('pickle_bytes'))} (raise it with {spec.env_var})"
            )
        self._left -= n
        self._budget -= n
        return n

    def read(self, n: int = -1) -> bytes:
        n = self._take(self._left if n is None or n < 0 else n)
        data = self._file.read(n)
        if len(data) != n:
            raise pickle.UnpicklingError("pickle data was truncated")
        return data

    def readline(self) -> bytes:
        line = self._file.readline(min(self._left, self._budget, 2**16))
        self._take(len(line))
        if not line.endswith(b"\n"):
            raise pickle.UnpicklingError("pickle data was truncated (or a line is too long)")
        return line


class _Dispatch(dict):  # type: ignore[type-arg]
    def __missing__(self, key: int) -> Any:
        raise pickle.UnpicklingError(f"invalid load key, {bytes([key])!r}")


class BoundedUnpickler(pickle._Unpickler):  # type: ignore[name-defined,misc]
    """A pure-Python unpickler whose work is bounded and which cannot change shared objects.

    - at most `pickle_objects` opcodes, reads only within the bytes present (and `budget`);
    - tuples and frozensets nested at most `nesting_depth` deep;
    - BUILD only on objects this load created (REDUCE/NEWOBJ), never on a class, function,
      module or global; items added only to non-global containers; no protocol 5 buffers.

    Subclasses say what globals mean (`resolve`) and what calling them builds (`call`), and may
    check state before it is set (`check_state`).
    """

    def __init__(self, file: BinaryIO, *, what: str, size: int, budget: int | None = None) -> None:
        super().__init__(_Reader(file, size, budget, what))
        self.what = what
        self.dispatch = _BOUNDED_DISPATCH
        self._ops_left = limit("pickle_objects")
        self._max_depth = limit("nesting_depth")
        self._depths: dict[int, int] = {}
        self._created: dict[int, Any] = {}
        self._global_ids: set[int] = set()
        self._keep: list[Any] = []

    # -- hooks for subclasses

    def resolve(self, module: str, name: str) -> Any:
        raise UserInputError(f"{self.what}: refused: the pickle references {module}.{name}")

    def call(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], new: bool) -> Any:
        raise UserInputError(f"{self.what}: refused: the pickle calls {describe(func)}")

    def check_state(self, inst: Any, state: Any) -> None:
        """Default: attribute state only with plain names (no `__class__`, `__dict__`, ...)."""
        if getattr(type(inst), "__setstate__", None) is None:
            check_attribute_state(state, self.what)

    # -- the machinery

    def load(self) -> Any:
        try:
            return super().load()
        finally:
            # Free what this load built now (the unpickler may sit in a reference cycle).
            self.memo.clear()
            self._created.clear()
            self._depths.clear()
            self._keep.clear()
            self.stack = self.metastack = []

    def find_class(self, module: str, name: str) -> Any:
        found = self.resolve(module, name)
        self._global_ids.add(id(found))
        self._keep.append(found)
        return found

    def _too_many(self) -> None:
        bound = limit("pickle_objects")
        raise UserInputError(
            f"{self.what}: refused: the pickle builds more than {bound:,} objects "
            f"(raise it with {LIMITS['pickle_objects'].env_var})"
        )

    def _new(self, func: Any, args: Any, kwargs: Any, new: bool) -> Any:
        if type(args) is not tuple or not isinstance(kwargs, dict):
            raise pickle.UnpicklingError("call arguments are not a tuple")
        obj = self.call(func, args, kwargs, new)
        self._created[id(obj)] = obj
        return obj

    def _instantiate(self, klass: Any, args: list[Any]) -> None:  # OBJ and INST
        self.append(self._new(klass, tuple(args), {}, False))

    def _is_shared(self, obj: Any) -> bool:
        return id(obj) in self._global_ids or isinstance(obj, _SHARED_TYPES)

    def _check_target(self, target: Any) -> None:
        if self._is_shared(target):
            raise UserInputError(
                f"{self.what}: refused: the pickle modifies {describe(target)} "
                "(only objects it creates may be changed)"
            )

    def _note_depth(self) -> None:
        new = self.stack[-1]
        depth = 1
        for item in new:
            if type(item) is tuple or type(item) is frozenset:
                # Only depths over 1 are recorded (with the tuple kept alive, so ids stay put).
                depth = max(depth, 1 + self._depths.get(id(item), 1))
        if depth > self._max_depth:
            raise nesting_error(self.what)
        if depth > 1:
            self._depths[id(new)] = depth
            self._keep.append(new)


def describe(obj: Any) -> str:
    """'the class X', 'the function Y' or 'a Z object', for messages."""
    if isinstance(obj, types.ModuleType):
        return f"the module {key_text(obj.__name__)}"
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
    if not isinstance(name, str) or not isinstance(obj, _SHARED_TYPES):
        return f"a {type(obj).__name__} object"
    module = getattr(obj, "__module__", None)
    full = f"{module}.{name}" if isinstance(module, str) else name
    return f"the {'class' if isinstance(obj, type) else 'function'} {key_text(full)}"


def check_attribute_state(state: Any, what: str) -> None:
    """BUILD state setting attributes (`dict` or `(dict, slots)`): plain names only."""
    parts = state if isinstance(state, tuple) and len(state) == 2 else (state,)
    for part in parts:
        if part is None:
            continue
        if not isinstance(part, dict):
            raise UserInputError(f"{what}: refused: malformed object state in the pickle")
        for key in part:
            if not isinstance(key, str) or key.startswith("__"):
                raise UserInputError(
                    f"{what}: refused: the pickle sets the attribute {key_text(key)}"
                )


def _counted(fn: Callable[[Any], None]) -> Callable[[Any], None]:
    def op(self: BoundedUnpickler) -> None:
        self._ops_left -= 1
        if self._ops_left < 0:
            self._too_many()
        fn(self)

    return op


def _peek(seq: list[Any], index: int) -> Any:
    try:
        return seq[index]
    except IndexError:
        raise pickle.UnpicklingError("unpickling stack underflow") from None


def _load_reduce(self: BoundedUnpickler) -> None:
    args = self.stack.pop()
    func = _peek(self.stack, -1)
    self.stack[-1] = self._new(func, args, {}, False)


def _load_newobj(self: BoundedUnpickler) -> None:
    args = self.stack.pop()
    cls = self.stack.pop()
    self.append(self._new(cls, args, {}, True))


def _load_newobj_ex(self: BoundedUnpickler) -> None:
    kwargs = self.stack.pop()
    args = self.stack.pop()
    cls = self.stack.pop()
    self.append(self._new(cls, args, kwargs, True))


def _load_build(self: BoundedUnpickler) -> None:
    state = _peek(self.stack, -1)
    inst = _peek(self.stack, -2)
    if self._is_shared(inst) or self._created.get(id(inst)) is not inst:
        raise UserInputError(
            f"{self.what}: refused: the pickle sets state on {describe(inst)}, which it did not "
            "create (only objects it creates may receive state)"
        )
    self.check_state(inst, state)
    pickle._Unpickler.load_build(self)  # type: ignore[attr-defined]


def _checking(fn: Callable[[Any], None], where: Callable[[Any], Any]) -> Callable[[Any], None]:
    def op(self: BoundedUnpickler) -> None:
        self._check_target(where(self))
        fn(self)

    return op


def _after_mark(self: BoundedUnpickler) -> Any:
    return _peek(_peek(self.metastack, -1), -1)


def _tuple_op(fn: Callable[[Any], None]) -> Callable[[Any], None]:
    def op(self: BoundedUnpickler) -> None:
        fn(self)
        self._note_depth()

    return op


def _refuse_buffers(self: BoundedUnpickler) -> None:
    raise pickle.UnpicklingError("protocol 5 bytearrays and buffers are not supported")


def _bounded_dispatch() -> _Dispatch:
    base = pickle._Unpickler.dispatch  # type: ignore[attr-defined]
    ops: dict[int, Callable[[Any], None]] = dict(base)
    ops[pickle.REDUCE[0]] = _load_reduce
    ops[pickle.NEWOBJ[0]] = _load_newobj
    ops[pickle.NEWOBJ_EX[0]] = _load_newobj_ex
    ops[pickle.BUILD[0]] = _load_build
    ops[pickle.APPEND[0]] = _checking(base[pickle.APPEND[0]], lambda u: _peek(u.stack, -2))
    ops[pickle.SETITEM[0]] = _checking(base[pickle.SETITEM[0]], lambda u: _peek(u.stack, -3))
    for code in (pickle.APPENDS, pickle.SETITEMS, pickle.ADDITEMS):
        ops[code[0]] = _checking(base[code[0]], _after_mark)
    for code in (pickle.TUPLE, pickle.TUPLE1, pickle.TUPLE2, pickle.TUPLE3, pickle.FROZENSET):
        ops[code[0]] = _tuple_op(base[code[0]])
    for code in (pickle.BYTEARRAY8, pickle.NEXT_BUFFER, pickle.READONLY_BUFFER):
        ops[code[0]] = _refuse_buffers
    return _Dispatch({code: _counted(fn) for code, fn in ops.items()})


_BOUNDED_DISPATCH = _bounded_dispatch()


# ---------------------------------------------------------------------------------------------
# Scanning torch's own pickles (nothing real is built)


class _Inert:
    """What every global and call stands for while scanning: accepts items and state."""

    def __call__(self, *args: Any, **kwargs: Any) -> _Inert:
        return _Inert()

    def __setstate__(self, state: Any) -> None:
        pass

    def __setitem__(self, key: Any, value: Any) -> None:
        pass

    def append(self, item: Any) -> None:
        pass

    def extend(self, items: Any) -> None:
        pass

    def add(self, item: Any) -> None:
        pass

    def update(self, items: Any) -> None:
        pass


class _StorageType(_Inert):
    def __init__(self, element_size: int) -> None:
        self.element_size = element_size


@functools.lru_cache(maxsize=64)
def _element_size(name: str) -> int:
    if name == "UntypedStorage":
        return 1
    try:
        dtype = torch.serialization.StorageType(name).dtype
    except (KeyError, AttributeError, RuntimeError):
        return 1  # not a storage torch knows: torch.load refuses it
    return torch.empty((), dtype=dtype).element_size()


class _TorchPickleScan(BoundedUnpickler):
    """Runs a torch pickle with inert stand-ins to bound it and sum the storages it declares."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.storages: dict[Any, int] = {}

    def resolve(self, module: str, name: str) -> Any:
        if module == "torch" and name.endswith("Storage"):
            return _StorageType(_element_size(name))
        return _Inert()

    def call(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], new: bool) -> Any:
        return _Inert()

    def persistent_load(self, pid: Any) -> Any:
        if not isinstance(pid, tuple) or len(pid) < 5:
            raise pickle.UnpicklingError("malformed persistent id")
        kind = pid[0].decode("ascii", "replace") if isinstance(pid[0], bytes) else pid[0]
        if kind == "storage":
            storage_type, key, numel = pid[1], pid[2], pid[4]
            if type(numel) is not int or numel < 0:
                raise pickle.UnpicklingError("malformed storage size")
            size = getattr(storage_type, "element_size", 1)
            self.storages[key if isinstance(key, str | int) else id(pid)] = numel * size
        return _Inert()


#: What `--model`/`--checkpoint` files may be, for the message refusing anything else.
_CHECKPOINT_KINDS = "a PyTorch .pt/.pth/.tar/.bin file or a StyleGAN2 .pkl"


def check_checkpoint_file(path: Path) -> None:
    """Refuse, naming the file, what cannot be a checkpoint: a folder, an empty file, text or
    HTML (a saved error page), a zip that `torch.save` did not write, any other non-pickle.
    Reads the first bytes only (and a zip's directory, with its declared sizes checked: the
    loaders and `_mentions_g_ema` read entries after this); the loaders check the rest."""
    if not path.exists():
        raise UserInputError(f"checkpoint not found: {path}")
    if path.is_dir():
        raise UserInputError(f"{path}: not a recognised checkpoint (it is a folder)")
    if not path.is_file():
        raise UserInputError(f"{path}: not a recognised checkpoint (not a regular file)")
    try:
        with open(path, "rb") as handle:
            head = handle.read(64)
    except OSError as exc:
        raise UserInputError(f"cannot read checkpoint {path}: {exc.strerror or exc}") from None
    if not head:
        raise UserInputError(f"{path}: not a recognised checkpoint (the file is empty)")
    if head.startswith(b"PK\x03\x04"):
        # The directory's sizes are checked here, before anything reads an entry of it.
        if not any(name.endswith("data.pkl") for name in check_torch_zip(path)):
            raise UserInputError(
                f"{path}: not a recognised checkpoint (a zip archive that torch.save did not "
                f"write; expected {_CHECKPOINT_KINDS})"
            )
        return
    if head[:1] == b"\x80":  # a pickle: torch's legacy format, NVIDIA or TF StyleGAN2
        return
    raise UserInputError(
        f"{path}: not a recognised checkpoint ({_describe_head(head)}; "
        f"expected {_CHECKPOINT_KINDS})"
    )


def _describe_head(head: bytes) -> str:
    """What a file starting with `head` looks like, in a few words."""
    text = head.decode("utf-8", "ignore").lstrip("\ufeff \t\r\n")
    if text[:1] == "<":
        lowered = text.lower()
        if lowered.startswith(("<!doctype html", "<html", "<head", "<body")):
            return "it is an HTML page"
        return "it looks like HTML or XML"
    printable = all(c.isprintable() or c in "\t\r\n" for c in text)
    if text and printable and len(text.encode()) >= len(head) - 3:
        return "it is a text file"
    return "unknown binary format"
