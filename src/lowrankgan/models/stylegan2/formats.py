"""Reading StyleGAN2 generator checkpoints in the three official formats, without running them.

This module owns turning a downloaded file into one `SG2Checkpoint`: the generator's weights in
NVIDIA's `G_ema.state_dict()` naming, plus the conv clamp and the hyper-parameters the file holds.

- NVIDIA `.pkl` (stylegan2-ada-pytorch, stylegan3 repo, NGC): plain pickles of persistent
  classes whose loading normally `exec`s source code stored in the file. We unpickle them with a
  restricted unpickler that keeps each object's state and never runs that code.
- Original TensorFlow `.pkl` (`dnnlib.tflib.network.Network` tuples): the same restricted
  unpickler, then variable names and layouts converted to NVIDIA's.
- rosinality `.pt`: `checkpoints.safe_torch_load` (weights only), then key names converted.

Anything a checkpoint would need to import beyond tensors, numpy arrays and plain containers is
refused before it can be called. The restricted unpickler is a `checkpoints.BoundedUnpickler`:
its work, reads and nesting are bounded, and it cannot set state on shared functions or
classes. Each storage nested in a NVIDIA pickle goes through `safe_torch_load`, each tensor
through `check_tensor`; the walks over what was unpickled (`_modules_of`, `_plain`) visit each
object once and refuse cycles, shared modules and deep nesting.

The network that consumes the state lives in `stylegan2.py`; docs/formats.md describes the
formats for users.
"""

from __future__ import annotations

import argparse
import collections
import math
import pickle
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lowrankgan.errors import UserInputError, one_line
from lowrankgan.limits import check_at_most, limit
from lowrankgan.models.checkpoints import (
    BoundedUnpickler,
    check_attribute_state,
    check_tensor,
    describe,
    key_text,
    nesting_error,
    safe_torch_load,
)

__all__ = [
    "SG2Checkpoint",
    "detect_stylegan2_format",
    "read_nvidia_pkl",
    "read_rosinality_pt",
    "read_stylegan2_checkpoint",
    "read_tf_pkl",
    "resample_filter",
]

FORMATS = ("nvidia-pkl", "tf-pkl", "rosinality")

_ZIP_MAGIC = b"PK\x03\x04"
# torch.save's legacy (pre-zip) format starts with this magic number pickled at protocol 2.
_LEGACY_TORCH_MAGIC = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)[:-1]


@dataclass
class SG2Checkpoint:
    """A StyleGAN2 generator as read from disk, in NVIDIA `G_ema.state_dict()` naming."""

    state: dict[str, torch.Tensor]
    conv_clamp: float | None
    format: str
    hyper: dict[str, Any] = field(default_factory=dict)
    source: str = ""


# ---------------------------------------------------------------------------------------------
# Restricted unpickling (NVIDIA and TF pickles)


class PersistentObject:
    """What a NVIDIA `@persistent_class` instance unpickles to here: its class name and state.

    The real loader `exec`s `meta['module_src']` to rebuild the class; we keep the data only.
    """

    def __init__(self, class_name: str, state: Mapping[str, Any]) -> None:
        self.class_name = class_name
        self.state = state

    def __repr__(self) -> str:
        return f"PersistentObject({self.class_name!r})"


class EasyDictStub(dict):
    """Stands in for `dnnlib.util.EasyDict` (a dict with attribute access) while unpickling."""


class TFNetworkStub:
    """Stands in for `dnnlib.tflib.network.Network`: keeps the state its `__setstate__` gets.

    Never imports TensorFlow and never runs `build_module_src`.
    """

    version: int
    name: str
    static_kwargs: dict[str, Any]
    components: dict[str, Any]
    build_module_src: str
    build_func_name: str
    variables: list[tuple[str, Any]]

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, Mapping):
            raise pickle.UnpicklingError("TF Network state is not a dict")
        version, variables = state.get("version", 0), state.get("variables") or []
        static_kwargs, components = state.get("static_kwargs") or {}, state.get("components") or {}
        if not (
            type(version) is int
            and isinstance(variables, list | tuple)
            and isinstance(static_kwargs, Mapping)
            and isinstance(components, Mapping)
        ):
            raise pickle.UnpicklingError("malformed TF Network state")
        self.version = version
        self.name = _text(state.get("name", ""))
        self.static_kwargs = dict(static_kwargs)
        self.components = dict(components)
        self.build_module_src = _text(state.get("build_module_src", ""))
        self.build_func_name = _text(state.get("build_func_name", ""))
        self.variables = list(variables)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else f"<{type(value).__name__}>"


def _reconstruct_persistent_obj(meta: Any) -> PersistentObject:
    """Replacement for `torch_utils.persistence._reconstruct_persistent_obj` that runs nothing."""
    if not isinstance(meta, Mapping) or meta.get("type") != "class":
        raise pickle.UnpicklingError("unsupported persistent object")
    state = meta.get("state")
    if not isinstance(state, Mapping):
        raise pickle.UnpicklingError("persistent object without state")
    return PersistentObject(_text(meta.get("class_name", "")), state)


def _numpy_multiarray() -> Any:
    # numpy 2 renamed numpy.core to numpy._core; pickles from numpy 1.x still name the old path.
    return np._core.multiarray if hasattr(np, "_core") else np.core.multiarray  # type: ignore[attr-defined]


# What the allow-listed globals stand for. Each callable builds a new object from plain
# arguments (checked), so no call can return, or expose to BUILD, an object of the process.


def _ordered_dict(*args: Any) -> collections.OrderedDict[Any, Any]:
    if args and not (len(args) == 1 and isinstance(args[0], list | tuple)):
        raise pickle.UnpicklingError("OrderedDict from something other than a list")
    return collections.OrderedDict(*args)


def _new_set(*args: Any) -> set[Any]:
    if args and not (len(args) == 1 and isinstance(args[0], list | tuple | set | frozenset)):
        raise pickle.UnpicklingError("set from something other than a list")
    return set(*args)


def _new_dtype(obj: Any, align: Any = False, copy: Any = True) -> np.dtype[Any]:
    if not isinstance(obj, str):
        raise pickle.UnpicklingError("numpy dtype from something other than a type code")
    dtype = np.dtype(obj, align=bool(align), copy=True)  # a copy: never numpy's shared one
    if dtype.hasobject or dtype.kind in "OV" or dtype.fields is not None:
        raise pickle.UnpicklingError(f"numpy dtype {obj!r} is not a plain number type")
    return dtype


def _np_reconstruct(subtype: Any, shape: Any, typecode: Any) -> np.ndarray:
    # numpy pickles every array as _reconstruct(ndarray, (0,), b'b') + BUILD of its data.
    if subtype is not np.ndarray or shape != (0,) or typecode not in (b"b", "b"):
        raise pickle.UnpicklingError("numpy array reconstructed from unexpected arguments")
    return _numpy_multiarray()._reconstruct(np.ndarray, (0,), b"b")


def _np_scalar(dtype: Any, data: Any = None) -> Any:
    if not (
        isinstance(dtype, np.dtype)
        and not dtype.hasobject
        and dtype.fields is None
        and isinstance(data, bytes)
        and len(data) == dtype.itemsize
    ):
        raise pickle.UnpicklingError("numpy scalar from unexpected arguments")
    return _numpy_multiarray().scalar(dtype, data)


def _rebuild_tensor_args(storage: Any, offset: Any, size: Any, stride: Any) -> None:
    if not isinstance(storage, torch.storage.TypedStorage | torch.UntypedStorage):
        raise pickle.UnpicklingError("tensor rebuilt from something other than a storage")
    if not (
        type(offset) is int
        and isinstance(size, tuple)
        and isinstance(stride, tuple)
        and len(size) == len(stride)
        and all(type(n) is int for n in size + stride)
    ):
        raise pickle.UnpicklingError("tensor rebuilt with malformed offset, size or stride")


def _hooks(value: Any) -> None:
    if not isinstance(value, Mapping) or value:
        raise pickle.UnpicklingError("tensor with backward hooks")


class _RestrictedUnpickler(BoundedUnpickler):
    """Resolves only the allow-listed globals; refuses anything else before it can be called.

    Calls build only through the checked stand-ins above (and `__new__` of the two stub
    classes); BUILD is accepted only on TF networks, numpy arrays and dtypes (checked) and plain
    dicts this load created. Bounds come from `BoundedUnpickler`.
    """

    def __init__(self, file: Any, path: Path, size: int) -> None:
        super().__init__(file, what=str(path), size=size)
        self._path = path
        callables: dict[tuple[str, str], Any] = {
            ("torch_utils.persistence", "_reconstruct_persistent_obj"): (
                _reconstruct_persistent_obj
            ),
            ("torch.storage", "_load_from_bytes"): self._load_storage_bytes,
            ("collections", "OrderedDict"): _ordered_dict,
            ("torch._utils", "_rebuild_tensor_v2"): self._rebuild_tensor_v2,
            ("torch._utils", "_rebuild_parameter"): self._rebuild_parameter,
            ("torch._utils", "_rebuild_parameter_with_state"): self._rebuild_parameter_with_state,
            ("numpy", "dtype"): _new_dtype,
            ("builtins", "set"): _new_set,
        }
        for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            callables[(module, "_reconstruct")] = _np_reconstruct
            callables[(module, "scalar")] = _np_scalar
        self._callables = {id(f) for f in callables.values()}
        self._allowed: dict[tuple[str, str], Any] = {
            **callables,
            ("dnnlib.util", "EasyDict"): EasyDictStub,
            ("dnnlib.tflib.network", "Network"): TFNetworkStub,
            ("numpy", "ndarray"): np.ndarray,  # an argument of _reconstruct, never called
        }

    def resolve(self, module: str, name: str) -> Any:
        found = self._allowed.get((module, name))
        if found is None:
            raise UserInputError(
                f"{self._path}: refused: the pickle references {module}.{name} "
                "(checkpoints may only hold tensors and plain data; no code is run)"
            )
        return found

    def call(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], new: bool) -> Any:
        if new:
            if func is not EasyDictStub and func is not TFNetworkStub:
                raise UserInputError(
                    f"{self._path}: refused: the pickle creates {describe(func)} "
                    "(only NVIDIA/TF network stand-ins may be created that way)"
                )
            return func.__new__(func)
        if id(func) not in self._callables or kwargs:
            raise UserInputError(
                f"{self._path}: refused: the pickle calls {describe(func)} "
                "(checkpoints may only hold tensors and plain data; no code is run)"
            )
        return func(*args)

    def check_state(self, inst: Any, state: Any) -> None:
        if isinstance(inst, TFNetworkStub):
            return  # its __setstate__ keeps checked plain fields only
        if type(inst) is np.ndarray:
            _check_array_state(state, self._path)
        elif isinstance(inst, np.dtype):
            _check_dtype_state(inst, state, self._path)
        elif type(inst) in (collections.OrderedDict, EasyDictStub):
            check_attribute_state(state, str(self._path))
        else:
            raise UserInputError(
                f"{self._path}: refused: the pickle sets state on {describe(inst)}"
            )

    # Tensors: rebuilt through torch's functions from checked arguments, checked at once.

    def _load_storage_bytes(self, data: Any) -> Any:
        """`torch.storage._load_from_bytes`, through `safe_torch_load` (weights only)."""
        if not isinstance(data, bytes):
            raise pickle.UnpicklingError("tensor storage that is not bytes")
        storage = safe_torch_load(data, what=f"{self._path}: a tensor storage in the pickle")
        if not isinstance(storage, torch.storage.TypedStorage | torch.UntypedStorage):
            raise UserInputError(f"{self._path}: a tensor storage in the pickle is not a storage")
        return storage

    def _tensor(self, tensor: Any) -> torch.Tensor:
        if not isinstance(tensor, torch.Tensor):
            raise pickle.UnpicklingError("parameter from something other than a tensor")
        check_tensor(tensor, f"{self._path}: a tensor in the pickle")
        return tensor

    def _rebuild_tensor_v2(
        self,
        storage: Any,
        offset: Any,
        size: Any,
        stride: Any,
        requires_grad: Any,
        backward_hooks: Any,
        metadata: Any = None,
    ) -> torch.Tensor:
        _rebuild_tensor_args(storage, offset, size, stride)
        _hooks(backward_hooks)
        if metadata is not None and not isinstance(metadata, dict):
            raise pickle.UnpicklingError("malformed tensor metadata")
        tensor = torch._utils._rebuild_tensor_v2(
            storage, offset, size, stride, bool(requires_grad), collections.OrderedDict(), metadata
        )
        return self._tensor(tensor)

    def _rebuild_parameter(self, data: Any, requires_grad: Any, backward_hooks: Any) -> Any:
        _hooks(backward_hooks)
        return torch._utils._rebuild_parameter(
            self._tensor(data), bool(requires_grad), collections.OrderedDict()
        )

    def _rebuild_parameter_with_state(
        self, data: Any, requires_grad: Any, backward_hooks: Any, state: Any
    ) -> Any:
        _hooks(backward_hooks)
        check_attribute_state(state, str(self._path))
        return torch._utils._rebuild_parameter_with_state(
            self._tensor(data), bool(requires_grad), collections.OrderedDict(), state
        )


def _check_array_state(state: Any, path: Path) -> None:
    """numpy's array state: (1, shape, dtype, is_fortran, raw bytes), plain numbers only."""
    ok = (
        isinstance(state, tuple)
        and len(state) == 5
        and isinstance(state[1], tuple)
        and all(type(n) is int and n >= 0 for n in state[1])
        and isinstance(state[2], np.dtype)
        and not state[2].hasobject
        and state[2].fields is None
        and isinstance(state[4], bytes)
    )
    if not ok:
        raise UserInputError(f"{path}: refused: a numpy array in the pickle is not plain numbers")
    check_at_most(math.prod(state[1]), "tensor_elements", f"{path}: a numpy array in the pickle")


def _check_dtype_state(dtype: np.dtype[Any], state: Any, path: Path) -> None:
    """numpy's dtype state may set the byte order only: flags (e.g. 'holds Python objects'),
    fields and sizes must be those of the plain dtype it was made as."""
    ok = (
        isinstance(state, tuple)
        and len(state) in (8, 9)
        and state[0] in (3, 4)
        and state[1] in ("<", ">", "|", "=")
        and state[2:5] == (None, None, None)
        and state[5] in (-1, dtype.itemsize)
        and state[6] in (-1, dtype.alignment)
        and state[7] == dtype.flags
        and (len(state) == 8 or state[8] is None)
    )
    if not ok:
        raise UserInputError(f"{path}: refused: a numpy dtype in the pickle is not a plain one")


def _load_restricted_pickle(path: Path) -> Any:
    size = path.stat().st_size
    check_at_most(size, "checkpoint_bytes", str(path))
    try:
        with open(path, "rb") as f, warnings.catch_warnings():
            # torch.load of each storage blob can warn about legacy details; not the user's issue.
            warnings.simplefilter("ignore")
            return _RestrictedUnpickler(f, path, size).load()
    except UserInputError:
        raise
    except (EOFError, pickle.UnpicklingError) as exc:
        raise UserInputError(f"{path}: truncated or corrupt checkpoint ({one_line(exc)})") from None
    except Exception as exc:  # noqa: BLE001 - any other failure means the bytes are not a pickle we know
        raise UserInputError(
            f"{path}: unknown checkpoint format (unpickling failed: {one_line(exc)})"
        ) from None


# ---------------------------------------------------------------------------------------------
# Format detection and dispatch


def _check_file(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise UserInputError(f"checkpoint not found: {path}")
    if not path.is_file():
        raise UserInputError(f"checkpoint is not a file: {path}")
    return path


def _is_torch_save(head: bytes) -> bool:
    return head.startswith(_ZIP_MAGIC) or head.startswith(_LEGACY_TORCH_MAGIC)


def is_torch_file(path: str | Path) -> bool:
    """Whether a file was written by `torch.save` (zip or legacy format), from its first bytes."""
    return _is_torch_save(_read_head(Path(path)))


def _read_head(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read(32)


def _pickle_kind(obj: Any) -> str | None:
    """'nvidia-pkl' or 'tf-pkl' from an unpickled object's shape, None if neither."""
    if isinstance(obj, Mapping):
        if "G_ema" in obj or any(isinstance(v, PersistentObject) for v in obj.values()):
            return "nvidia-pkl"
        return None
    if isinstance(obj, tuple) and obj and all(isinstance(v, TFNetworkStub) for v in obj):
        return "tf-pkl"
    return None


def detect_stylegan2_format(path: str | Path) -> str:
    """'nvidia-pkl', 'tf-pkl' or 'rosinality' for a checkpoint file (a pickle is loaded)."""
    path = _check_file(path)
    head = _read_head(path)
    if _is_torch_save(head):
        return "rosinality"
    if head[:1] == b"\x80":
        kind = _pickle_kind(_load_restricted_pickle(path))
        if kind is not None:
            return kind
    raise UserInputError(f"{path}: unknown checkpoint format")


def read_stylegan2_checkpoint(path: str | Path) -> SG2Checkpoint:
    """Read any supported StyleGAN2 checkpoint, detecting its format from the bytes."""
    path = _check_file(path)
    head = _read_head(path)
    if _is_torch_save(head):
        return read_rosinality_pt(path)
    # Pickle protocol >= 2 starts with PROTO (0x80); every format we know is written that way.
    if head[:1] != b"\x80":
        raise UserInputError(f"{path}: unknown checkpoint format")
    obj = _load_restricted_pickle(path)
    kind = _pickle_kind(obj)
    if kind == "nvidia-pkl":
        return _nvidia_from_pickle(obj, path)
    if kind == "tf-pkl":
        return _tf_from_pickle(obj, path)
    raise UserInputError(f"{path}: unknown checkpoint format (a pickle, but not a StyleGAN2 one)")


# ---------------------------------------------------------------------------------------------
# Shared pieces


def resample_filter() -> torch.Tensor:
    """NVIDIA's stored FIR buffer: outer([1,3,3,1]) normalised to sum 1 (gain applied later)."""
    f = torch.tensor([1.0, 3.0, 3.0, 1.0])
    f = torch.outer(f, f)
    return f / f.sum()


def _plain(value: Any, path: Path | str = "checkpoint") -> Any:
    """A hyper-parameter as plain Python (numpy scalars, EasyDicts, tuples made ordinary).

    Each container is converted once (a part shared in the file stays shared, so a DAG of
    2^64 paths costs its size, not 2^64); a cycle, nesting beyond `nesting_depth` or a value
    that would expand to more than `pickle_objects` parts is refused. Iterative.
    """
    if not isinstance(value, Mapping | list | tuple):
        return _plain_leaf(value)
    max_depth, budget = limit("nesting_depth"), limit("pickle_objects")
    done: dict[int, tuple[Any, int, int]] = {}  # id -> (converted, expanded size, height)
    active: set[int] = set()
    keep: list[Any] = []  # the originals stay alive while their ids are keys
    stack: list[tuple[Any, int, bool]] = [(value, 0, False)]
    while stack:
        obj, depth, expanded = stack.pop()
        oid = id(obj)
        if not expanded:
            if oid in done:
                continue
            if oid in active:
                raise UserInputError(f"{path}: refused: a hyper-parameter contains itself")
            if depth >= max_depth:
                raise nesting_error(f"{path}: hyper-parameters")
            active.add(oid)
            stack.append((obj, depth, True))
            items = obj.values() if isinstance(obj, Mapping) else obj
            stack.extend(
                (v, depth + 1, False) for v in items if isinstance(v, Mapping | list | tuple)
            )
            continue
        size, height = 1, 1

        def convert(v: Any) -> Any:
            nonlocal size, height
            if not isinstance(v, Mapping | list | tuple):
                size += 1
                return _plain_leaf(v)
            converted, sub_size, sub_height = done[id(v)]
            size += sub_size
            height = max(height, sub_height + 1)
            return converted

        if isinstance(obj, Mapping):
            result: Any = {key_text(k): convert(v) for k, v in obj.items()}
        else:
            result = [convert(v) for v in obj]
        if size > budget:
            raise UserInputError(
                f"{path}: refused: its hyper-parameters expand to more than {budget:,} values "
                "(shared parts counted each time they are used)"
            )
        if height > max_depth:
            raise nesting_error(f"{path}: hyper-parameters")
        done[oid] = (result, size, height)
        active.discard(oid)
        keep.append(obj)
    return done[id(value)][0]


def _plain_leaf(value: Any) -> Any:
    if isinstance(value, np.generic) and not isinstance(value, np.void):
        return value.item()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return f"<{type(value).__name__}>"


def _resolutions(state: Mapping[str, torch.Tensor]) -> list[int]:
    found = {int(m.group(1)) for k in state if (m := re.match(r"synthesis\.b(\d+)\.", k))}
    return sorted(found)


def _complete_filters(state: dict[str, torch.Tensor]) -> None:
    """Create the resample_filter buffers a format does not store."""
    for res in _resolutions(state):
        state.setdefault(f"synthesis.b{res}.resample_filter", resample_filter())
        for conv in ("conv0", "conv1"):
            if f"synthesis.b{res}.{conv}.weight" in state:
                state.setdefault(f"synthesis.b{res}.{conv}.resample_filter", resample_filter())


def _shape_hyper(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Hyper-parameters implied by the tensor shapes (used where the file does not say)."""
    fcs = sorted(
        int(m.group(1)) for k in state if (m := re.fullmatch(r"mapping\.fc(\d+)\.weight", k))
    )
    res = _resolutions(state)
    hyper: dict[str, Any] = {}
    if fcs:
        w_dim = int(state[f"mapping.fc{fcs[-1]}.weight"].shape[0])
        embed = state.get("mapping.embed.weight")
        # A conditional mapping concatenates the embedded label (embed out features) to z.
        embed_features = int(embed.shape[0]) if embed is not None else 0
        hyper["z_dim"] = int(state[f"mapping.fc{fcs[0]}.weight"].shape[1]) - embed_features
        hyper["w_dim"] = w_dim
        hyper["c_dim"] = int(embed.shape[1]) if embed is not None else 0
        hyper["mapping_layers"] = len(fcs)
    if res:
        hyper["img_resolution"] = res[-1]
        hyper["num_ws"] = 2 * int(math.log2(res[-1])) - 2
        torgb = state.get(f"synthesis.b{res[-1]}.torgb.weight")
        if torgb is not None:
            hyper["img_channels"] = int(torgb.shape[0])
    return hyper


def _finish(
    state: dict[str, torch.Tensor],
    conv_clamp: float | None,
    fmt: str,
    hyper: dict[str, Any],
    path: Path,
) -> SG2Checkpoint:
    if "synthesis.input.freqs" in state:
        raise UserInputError(
            f"{path}: this is a StyleGAN3 generator; StyleGAN3 is not supported yet"
        )
    if "synthesis.b4.const" not in state or "mapping.w_avg" not in state:
        raise UserInputError(f"{path}: not a StyleGAN2 generator (no synthesis.b4.const/w_avg)")
    _complete_filters(state)
    shape_hyper = _shape_hyper(state)
    w_dim = shape_hyper.get("w_dim")
    if w_dim is not None and tuple(state["mapping.w_avg"].shape) != (w_dim,):
        raise UserInputError(
            f"{path}: w_avg has shape {tuple(state['mapping.w_avg'].shape)}, expected ({w_dim},)"
        )
    for key, value in shape_hyper.items():
        hyper.setdefault(key, value)
    psi, cutoff = hyper.get("truncation_psi", 1.0), hyper.get("truncation_cutoff")
    if not (isinstance(psi, int | float) and not isinstance(psi, bool)):
        raise UserInputError(f"{path}: truncation_psi is not a number")
    if cutoff is not None and not (isinstance(cutoff, int) and not isinstance(cutoff, bool)):
        raise UserInputError(f"{path}: truncation_cutoff is not an integer")
    return SG2Checkpoint(
        state=state, conv_clamp=conv_clamp, format=fmt, hyper=hyper, source=str(path)
    )


def _add_layer(
    state: dict[str, torch.Tensor],
    prefix: str,
    *,
    weight: torch.Tensor,
    bias: torch.Tensor,
    affine_weight: torch.Tensor,
    affine_bias: torch.Tensor,
    noise_strength: torch.Tensor | None = None,
    noise_const: torch.Tensor | None = None,
) -> None:
    """One SynthesisLayer (noise given) or ToRGBLayer, keys in NVIDIA's state_dict order."""
    state[f"{prefix}.weight"] = weight
    if noise_strength is not None and noise_const is not None:
        state[f"{prefix}.noise_strength"] = noise_strength.reshape(())
        state[f"{prefix}.bias"] = bias
        state[f"{prefix}.resample_filter"] = resample_filter()
        state[f"{prefix}.noise_const"] = noise_const
    else:
        state[f"{prefix}.bias"] = bias
    state[f"{prefix}.affine.weight"] = affine_weight
    state[f"{prefix}.affine.bias"] = affine_bias


# ---------------------------------------------------------------------------------------------
# NVIDIA PyTorch pickles


def read_nvidia_pkl(path: str | Path) -> SG2Checkpoint:
    """Read a stylegan2-ada-pytorch / stylegan3-repo StyleGAN2 `.pkl` without running its code."""
    path = _check_file(path)
    obj = _load_restricted_pickle(path)
    if _pickle_kind(obj) != "nvidia-pkl":
        raise UserInputError(f"{path}: not a NVIDIA StyleGAN2 pickle")
    return _nvidia_from_pickle(obj, path)


#: Longest module, parameter or buffer name accepted (real ones are short identifiers).
MAX_NAME_CHARS = 1000


def _modules_of(obj: PersistentObject, path: Path) -> list[tuple[str, PersistentObject]]:
    """(dotted name, module) for `obj` and every submodule, parents first (iterative).

    Each module is visited once: a module reached twice (a shared submodule or a cycle) or
    nested deeper than `nesting_depth` is refused.
    """
    max_depth = limit("nesting_depth")
    seen = {id(obj)}
    found: list[tuple[str, PersistentObject]] = []
    stack: list[tuple[str, PersistentObject, int]] = [("", obj, 0)]
    while stack:
        name, module, depth = stack.pop()
        found.append((name, module))
        children = _mapping(module.state, "_modules", path, name)
        pending = []
        for key, child in children.items():
            sub = f"{name}.{_name(key, path)}" if name else _name(key, path)
            if child is None:
                continue
            if not isinstance(child, PersistentObject):
                raise UserInputError(f"{path}: submodule {sub} is not a NVIDIA module")
            if id(child) in seen:
                raise UserInputError(
                    f"{path}: refused: module {key_text(sub)} is reached twice "
                    "(a shared or cyclic module tree)"
                )
            if depth + 1 > max_depth:
                raise nesting_error(f"{path}: modules")
            seen.add(id(child))
            pending.append((sub, child, depth + 1))
        stack.extend(reversed(pending))
    return found


def _name(key: Any, path: Path) -> str:
    if not isinstance(key, str) or len(key) > MAX_NAME_CHARS:
        raise UserInputError(f"{path}: a module holds a malformed name {key_text(key)}")
    return key


def _mapping(state: Mapping[str, Any], key: str, path: Path, module: str) -> Mapping[Any, Any]:
    value = state.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise UserInputError(f"{path}: {key} of module {module or '(top)'} is not a dict")
    return value


def _flatten(modules: list[tuple[str, PersistentObject]], path: Path) -> dict[str, torch.Tensor]:
    """`state_dict()` of an unpickled module tree: parameters, persistent buffers, recursively."""
    out: dict[str, torch.Tensor] = {}
    for name, module in modules:
        prefix = f"{name}." if name else ""
        state = module.state
        skip_names = state.get("_non_persistent_buffers_set") or ()
        if not isinstance(skip_names, set | frozenset | list | tuple):
            raise UserInputError(f"{path}: module {name or '(top)'} has malformed buffer names")
        skip = {k for k in skip_names if isinstance(k, str)}
        entries = list(_mapping(state, "_parameters", path, name).items())
        entries += [
            (k, v) for k, v in _mapping(state, "_buffers", path, name).items() if k not in skip
        ]
        for key, tensor in entries:
            key = _name(key, path)
            if tensor is None:
                continue
            if not isinstance(tensor, torch.Tensor):
                raise UserInputError(f"{path}: {prefix}{key} is not a tensor")
            out[prefix + key] = tensor.detach()
    return out


def _number(value: Any, path: Path, what: str) -> float | None:
    value = _plain_leaf(value)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UserInputError(f"{path}: {what} is not a number")
    return float(value)


def _nvidia_conv_clamp(
    modules: list[tuple[str, PersistentObject]], init_kwargs: Mapping[str, Any], path: Path
) -> float | None:
    """conv_clamp as the synthesis layers hold it (what the forward pass actually uses)."""
    values = [
        m.state["conv_clamp"]
        for _, m in modules
        if m.class_name.endswith("SynthesisLayer") and "conv_clamp" in m.state
    ]
    if not values:
        values = [m.state["conv_clamp"] for _, m in modules if "conv_clamp" in m.state]
    if not values:
        synthesis_kwargs = init_kwargs.get("synthesis_kwargs") or {}
        if not isinstance(synthesis_kwargs, Mapping):
            synthesis_kwargs = {}
        values = [synthesis_kwargs.get("conv_clamp", init_kwargs.get("conv_clamp"))]
    return _number(values[0], path, "conv_clamp")


def _nvidia_hyper(init_kwargs: Mapping[str, Any], path: Path) -> dict[str, Any]:
    """Hyper-parameters from `_init_kwargs`, ADA (nested synthesis_kwargs) or SG3-repo (flat)."""
    plain = _plain(init_kwargs, path)
    nested = isinstance(plain.get("synthesis_kwargs"), dict)
    hyper: dict[str, Any] = {k: v for k, v in plain.items() if k != "synthesis_kwargs"}
    if nested:
        for key, value in plain["synthesis_kwargs"].items():
            hyper.setdefault(key, value)
    hyper["init_kwargs_layout"] = "nested" if nested else "flat"
    # generate.py's defaults: no truncation unless asked for.
    hyper.setdefault("truncation_psi", 1.0)
    hyper.setdefault("truncation_cutoff", None)
    return hyper


def _nvidia_from_pickle(obj: Mapping[str, Any], path: Path) -> SG2Checkpoint:
    g = obj.get("G_ema")
    if g is None:
        keys = ", ".join(sorted(key_text(k) for k in list(obj)[:64])[:8])
        raise UserInputError(f"{path}: NVIDIA pickle has no G_ema (it holds: {keys})")
    if not isinstance(g, PersistentObject):
        raise UserInputError(f"{path}: G_ema is not a NVIDIA network object")
    modules = _modules_of(g, path)
    state = _flatten(modules, path)
    init_kwargs = g.state.get("_init_kwargs") or {}
    if not isinstance(init_kwargs, Mapping):
        init_kwargs = {}
    hyper = _nvidia_hyper(init_kwargs, path)
    hyper["class_name"] = g.class_name
    conv_clamp = _nvidia_conv_clamp(modules, init_kwargs, path)
    return _finish(state, conv_clamp, "nvidia-pkl", hyper, path)


# ---------------------------------------------------------------------------------------------
# Original TensorFlow pickles


def read_tf_pkl(path: str | Path) -> SG2Checkpoint:
    """Read an original TensorFlow StyleGAN2 `.pkl` (G, D, Gs) without TensorFlow."""
    path = _check_file(path)
    obj = _load_restricted_pickle(path)
    if _pickle_kind(obj) != "tf-pkl":
        raise UserInputError(f"{path}: not a TensorFlow StyleGAN2 pickle")
    return _tf_from_pickle(obj, path)


_TF_PREFIXES = {"G_mapping": "mapping", "G_synthesis": "synthesis"}


def _tf_variables(gs: TFNetworkStub, path: Path) -> dict[str, np.ndarray]:
    """All of Gs's variables as 'mapping/...', 'synthesis/...' or top-level names.

    The official pickles keep `dlatent_avg` on Gs and the rest on its components; a flattened
    layout with 'mapping/' or 'G_mapping/' prefixes on Gs itself is accepted too.
    """
    out: dict[str, np.ndarray] = {}

    def add(name: Any, value: Any, owner: str = "") -> None:
        name = f"{owner}{_name(name, path)}"
        # Real variables are numpy arrays (or scalars); anything else could expand (a list DAG).
        if isinstance(value, np.generic) and not isinstance(value, np.void):
            value = np.asarray(value)
        if not isinstance(value, np.ndarray) or value.dtype.kind not in "biuf":
            raise UserInputError(f"{path}: TensorFlow variable {key_text(name)} is not an array")
        head, _, rest = name.partition("/")
        if rest and head in _TF_PREFIXES:
            name = f"{_TF_PREFIXES[head]}/{rest}"
        out[name] = value

    def entries(network: TFNetworkStub) -> list[tuple[Any, Any]]:
        if not all(isinstance(v, list | tuple) and len(v) == 2 for v in network.variables):
            raise UserInputError(f"{path}: TensorFlow pickle holds malformed variables")
        return [(v[0], v[1]) for v in network.variables]

    for name, value in entries(gs):
        add(name, value)
    for comp_name, comp in gs.components.items():
        if isinstance(comp, TFNetworkStub):
            for name, value in entries(comp):
                add(name, value, f"{_name(comp_name, path)}/")
    return out


def _tf_tensor(vars_: Mapping[str, np.ndarray], name: str, path: Path) -> torch.Tensor:
    if name not in vars_:
        raise UserInputError(f"{path}: TensorFlow pickle lacks variable {name}")
    return torch.from_numpy(np.array(vars_[name], dtype=np.float32))


def _tf_layer(
    state: dict[str, torch.Tensor],
    vars_: Mapping[str, np.ndarray],
    src: str,
    dst: str,
    path: Path,
    *,
    noise: int | None,
    flip: bool = False,
) -> None:
    """Convert one TF modulated conv ('synthesis/4x4/Conv') to a NVIDIA layer ('...conv1')."""

    def get(name: str) -> torch.Tensor:
        return _tf_tensor(vars_, f"{src}/{name}", path)

    weight = get("weight")  # [kh, kw, in, out]
    if flip:
        # TF's Conv0_up is a transposed conv that flips the kernel; NVIDIA's does not.
        weight = weight.flip(0, 1)
    kwargs: dict[str, torch.Tensor] = {}
    if noise is not None:
        kwargs["noise_strength"] = get("noise_strength")
        kwargs["noise_const"] = _tf_tensor(vars_, f"synthesis/noise{noise}", path)[0, 0]
    _add_layer(
        state,
        dst,
        weight=weight.permute(3, 2, 0, 1).contiguous(),
        bias=get("bias"),
        affine_weight=get("mod_weight").t().contiguous(),
        affine_bias=get("mod_bias") + 1,  # TF adds the +1 at run time; NVIDIA stores it
        **kwargs,
    )


def _tf_from_pickle(obj: tuple[Any, ...], path: Path) -> SG2Checkpoint:
    if len(obj) != 3:
        raise UserInputError(f"{path}: TensorFlow pickle is not a (G, D, Gs) tuple")
    gs: TFNetworkStub = obj[2]
    vars_ = _tf_variables(gs, path)
    if any(k.startswith("mapping/LabelConcat") for k in vars_):
        raise UserInputError(f"{path}: conditional TensorFlow pickles are not supported")
    dense = sorted(
        int(m.group(1)) for k in vars_ if (m := re.fullmatch(r"mapping/Dense(\d+)/weight", k))
    )
    res = sorted({int(m.group(1)) for k in vars_ if (m := re.match(r"synthesis/(\d+)x\1/", k))})
    if not dense or 4 not in res:
        raise UserInputError(f"{path}: TensorFlow pickle does not hold a StyleGAN2 generator")

    state: dict[str, torch.Tensor] = {"mapping.w_avg": _tf_tensor(vars_, "dlatent_avg", path)}
    for i in dense:
        state[f"mapping.fc{i}.weight"] = (
            _tf_tensor(vars_, f"mapping/Dense{i}/weight", path).t().contiguous()
        )
        state[f"mapping.fc{i}.bias"] = _tf_tensor(vars_, f"mapping/Dense{i}/bias", path)
    for r in res:
        block, src = f"synthesis.b{r}", f"synthesis/{r}x{r}"
        log2 = int(math.log2(r))
        if r == 4:
            state[f"{block}.const"] = _tf_tensor(vars_, f"{src}/Const/const", path)[0]
            state[f"{block}.resample_filter"] = resample_filter()
            _tf_layer(state, vars_, f"{src}/Conv", f"{block}.conv1", path, noise=0)
        else:
            state[f"{block}.resample_filter"] = resample_filter()
            _tf_layer(
                state,
                vars_,
                f"{src}/Conv0_up",
                f"{block}.conv0",
                path,
                noise=2 * log2 - 5,
                flip=True,
            )
            _tf_layer(state, vars_, f"{src}/Conv1", f"{block}.conv1", path, noise=2 * log2 - 4)
        _tf_layer(state, vars_, f"{src}/ToRGB", f"{block}.torgb", path, noise=None)

    static = _plain(gs.static_kwargs, path)
    hyper: dict[str, Any] = dict(static)
    hyper["build_func_name"] = gs.build_func_name
    # channel_base = 2 * fmap_base; TF's default fmap_base is 16384.
    fmap_base = static.get("fmap_base", 16384)
    if isinstance(fmap_base, bool) or not isinstance(fmap_base, int):
        raise UserInputError(f"{path}: fmap_base is not an integer")
    hyper["channel_base"] = 2 * fmap_base
    if "fmap_max" in static:
        hyper["channel_max"] = static["fmap_max"]
    if "label_size" in static:
        hyper["c_dim"] = static["label_size"]
    # TF G_main truncates with psi 0.5 on all layers when Gs.run gets no override.
    hyper["truncation_psi"] = static.get("truncation_psi", 0.5)
    hyper["truncation_cutoff"] = static.get("truncation_cutoff")
    # stylegan2-ada's TF code writes the same class path with conv_clamp among the
    # static_kwargs (None in the original StyleGAN2); both set the mapping's lr multiplier.
    lrmul = _number(static.get("mapping_lrmul", 0.01), path, "mapping_lrmul")
    if lrmul is None or not (math.isfinite(lrmul) and lrmul > 0):
        raise UserInputError(f"{path}: mapping_lrmul must be a positive number")
    hyper["mapping_lr_multiplier"] = lrmul
    conv_clamp = _number(static.get("conv_clamp"), path, "conv_clamp")
    if conv_clamp is not None and not (math.isfinite(conv_clamp) and conv_clamp > 0):
        raise UserInputError(f"{path}: conv_clamp must be a positive number or None")
    return _finish(state, conv_clamp, "tf-pkl", hyper, path)


# ---------------------------------------------------------------------------------------------
# rosinality torch.save files


def read_rosinality_pt(path: str | Path) -> SG2Checkpoint:
    """Read a rosinality/stylegan2-pytorch `.pt` (convert_weight.py or train.py output)."""
    path = _check_file(path)
    # train.py checkpoints store the argparse Namespace; nothing else beyond tensors.
    obj = safe_torch_load(path, extra_globals=[argparse.Namespace])
    if not isinstance(obj, Mapping) or not isinstance(obj.get("g_ema"), Mapping):
        raise UserInputError(f"{path}: not a rosinality StyleGAN2 checkpoint (no 'g_ema')")
    sd: Mapping[str, torch.Tensor] = obj["g_ema"]
    state = _rosinality_state(sd, path)

    hyper: dict[str, Any] = {}
    args = obj.get("args")
    if isinstance(args, argparse.Namespace):
        hyper["args"] = _plain(vars(args), path)
    latent_avg = obj.get("latent_avg")
    if isinstance(latent_avg, torch.Tensor):
        state["mapping.w_avg"] = latent_avg.detach().reshape(-1)
    else:
        # train.py does not store it; the model layer estimates it from mapping outputs.
        w_dim = state["mapping.fc0.weight"].shape[0]
        state["mapping.w_avg"] = torch.zeros(w_dim)
        hyper["w_avg_missing"] = True
    # generate.py's default: truncation 1 (none); when used it applies to all layers.
    hyper["truncation_psi"] = 1.0
    hyper["truncation_cutoff"] = None
    return _finish(_mapping_first(state), None, "rosinality", hyper, path)


def _mapping_first(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Reorder so mapping.w_avg comes first, as in NVIDIA's state_dict."""
    out = {"mapping.w_avg": state["mapping.w_avg"]}
    out.update((k, v) for k, v in state.items() if k != "mapping.w_avg")
    return out


def _rosinality_state(sd: Mapping[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """rosinality g_ema keys -> NVIDIA keys (FORMATS.md section 2); values copied unscaled.

    Both implementations store raw weights and apply the same run-time gains (see docs/formats.md),
    so no tensor needs rescaling.
    """

    def get(key: str) -> torch.Tensor:
        if key not in sd:
            raise UserInputError(f"{path}: rosinality g_ema lacks {key}")
        value = sd[key]
        if not isinstance(value, torch.Tensor):
            raise UserInputError(f"{path}: rosinality g_ema entry {key} is not a tensor")
        return value.detach()

    def layer(src: str, dst: str, noise: int | None) -> None:
        kwargs: dict[str, torch.Tensor] = {}
        if noise is not None:
            kwargs["noise_strength"] = get(f"{src}.noise.weight")
            kwargs["noise_const"] = get(f"noises.noise_{noise}")[0, 0]
            bias = get(f"{src}.activate.bias")
        else:
            bias = get(f"{src}.bias").reshape(-1)
        _add_layer(
            state,
            dst,
            weight=get(f"{src}.conv.weight")[0],
            bias=bias,
            affine_weight=get(f"{src}.conv.modulation.weight"),
            affine_bias=get(f"{src}.conv.modulation.bias"),
            **kwargs,
        )

    _check_rosinality_kernels(sd, path)
    styles = sorted(int(m.group(1)) for k in sd if (m := re.fullmatch(r"style\.(\d+)\.weight", k)))
    convs = sorted(
        int(m.group(1)) for k in sd if (m := re.fullmatch(r"convs\.(\d+)\.conv\.weight", k))
    )
    if not styles or convs != list(range(len(convs))) or len(convs) % 2:
        raise UserInputError(f"{path}: rosinality g_ema does not look like a StyleGAN2 generator")

    state: dict[str, torch.Tensor] = {}
    for n in styles:  # style.0 is PixelNorm; style.{i+1} is fc{i}
        state[f"mapping.fc{n - 1}.weight"] = get(f"style.{n}.weight")
        state[f"mapping.fc{n - 1}.bias"] = get(f"style.{n}.bias")
    state["synthesis.b4.const"] = get("input.input")[0]
    state["synthesis.b4.resample_filter"] = resample_filter()
    layer("conv1", "synthesis.b4.conv1", noise=0)
    layer("to_rgb1", "synthesis.b4.torgb", noise=None)
    for k in range(len(convs) // 2):
        block = f"synthesis.b{2 ** (k + 3)}"
        state[f"{block}.resample_filter"] = resample_filter()
        layer(f"convs.{2 * k}", f"{block}.conv0", noise=2 * k + 1)
        layer(f"convs.{2 * k + 1}", f"{block}.conv1", noise=2 * k + 2)
        layer(f"to_rgbs.{k}", f"{block}.torgb", noise=None)
    return state


def _check_rosinality_kernels(sd: Mapping[str, Any], path: Path) -> None:
    """Refuse models built with a blur kernel other than [1,3,3,1] (we recreate that one)."""
    for key, value in sd.items():
        if key.endswith(("blur.kernel", "upsample.kernel")) and isinstance(value, torch.Tensor):
            kernel = value.detach().float()
            if kernel.shape != (4, 4) or not torch.allclose(
                kernel / kernel.sum(), resample_filter(), atol=1e-6
            ):
                raise UserInputError(f"{path}: {key} is not the standard [1,3,3,1] blur kernel")
