"""Exact float32 arithmetic for the numerical core, and what an analysis records about it.

On recent NVIDIA GPUs PyTorch may run float32 convolutions (cuDNN's default) and matmuls (after
`torch.set_float32_matmul_precision("high")`, or a framework doing it) on TensorFloat-32
tensor cores: about 1e-3 relative error per product, the order of the kept region's 0.999
energy cut, which would make the null space depend on the hardware. On CPUs with AMX,
`"medium"` precision lets oneDNN use bfloat16 the same way. `exact_math()` turns all of these
off for the Jacobian, Gram, subspace and edit code and restores them afterwards.

Recent torch (the per-operation settings are checked on 2.13) has two interfaces for the
same switches: the legacy ones (`torch.backends.cuda.matmul.allow_tf32`,
`torch.backends.cudnn.allow_tf32`, `torch.set_float32_matmul_precision`) and per-backend,
per-operation settings (`torch.backends.{cuda.matmul,cudnn.conv,cudnn.rnn,mkldnn.*}
.fp32_precision`: "ieee", "tf32", "bf16" or "none" = inherit). The legacy matmul precision
and cuDNN switch keep state of their own beside the new settings, and their getters raise
when the two disagree. So inside `exact_math()` both are set consistently (the matmul
precision to "highest", cuDNN's switch off, every conv/rnn/matmul setting to "ieee"), and on
the way out the previous values are put back, the legacy ones first (recovered from how the
two disagree when their getters raise) and the raw per-operation settings last, so the state
afterwards is exactly the state before, raising getters included (checked over every
combination of the settings involved). On torch without the per-operation settings only
the legacy switches exist and are saved and restored. No warning is emitted (a release that
warns about the legacy interface is silenced for these calls only).

Caveat: these are process-global flags, not per-thread ones. `exact_math()` keeps a count of
the threads and nested blocks inside it under a lock: the first one in saves and sets the
flags, the last one out restores them, so concurrent requests of a server never restore
the flags under each other. But while any thread is inside, every thread of the process
(also code that did not ask for it) runs with TF32 off, and a change another thread makes
to these flags meanwhile is undone when the last block exits.
"""

from __future__ import annotations

import contextlib
import os
import threading
import warnings
from collections.abc import Iterator
from typing import Any

import torch

__all__ = [
    "GRAM_PRODUCTS",
    "LINALG_DEVICE_MIN_DIM",
    "exact_math",
    "float32_state",
    "linalg_device",
    "precision_record",
]

#: Latent dimensions from which Gram eigendecompositions and robust PCA run on the model's
#: accelerator (float64 there); below it they run in float64 on the CPU, where a d x d eigh
#: takes milliseconds and CPU results stay bit-for-bit what they always were.
LINALG_DEVICE_MIN_DIM = 2048

#: How `gram_from_field` multiplies by default: "float64" (blocks of columns converted to
#: float64, exact products of the float32 field) or "float32" (float32 block products, each
#: added to a float64 sum; see `lowrankgan.core.gram`). Read at every call, so it can be set
#: for a process (`lowrankgan.core.precision.GRAM_PRODUCTS = "float32"`).
GRAM_PRODUCTS = "float64"

# The per-operation settings of torch >= 2.9: (backend, operation). Setting these (and not
# the "all" parents, which only supply defaults to "none" children) is what decides the math.
_OPERATIONS = (
    ("cuda", "matmul"),
    ("cuda", "conv"),
    ("cuda", "rnn"),
    ("mkldnn", "matmul"),
    ("mkldnn", "conv"),
    ("mkldnn", "rnn"),
)
# Saved and restored: the operations and their "all" parents (which the legacy setters may
# write too).
_SAVED_SETTINGS = (("generic", "all"), ("cuda", "all"), ("mkldnn", "all"), *_OPERATIONS)
_NEW_API = hasattr(torch._C, "_get_fp32_precision_getter") and hasattr(
    torch._C, "_set_fp32_precision_setter"
)
# cuBLAS ignores every flag when this variable is set (PyTorch's own override).
_TF32_OVERRIDE = "TORCH_ALLOW_TF32_CUBLAS_OVERRIDE"

_lock = threading.Lock()
_depth = 0
_saved: dict[str, Any] | None = None


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence only PyTorch's advice about which TF32 interface to use (a release may warn on
    the legacy one); any other warning still shows."""
    with warnings.catch_warnings():
        for pattern in ("TF32", "fp32_precision", "float32_matmul_precision"):
            warnings.filterwarnings("ignore", message=f".*{pattern}")
        yield


def _get(backend: str, operation: str) -> str:
    return str(torch._C._get_fp32_precision_getter(backend, operation))


def _set(backend: str, operation: str, value: str) -> None:
    torch._C._set_fp32_precision_setter(backend, operation, value)


def _effective(backend: str, operation: str) -> str:
    """A per-operation setting with "none" resolved through its parents."""
    for key in ((backend, operation), (backend, "all"), ("generic", "all")):
        value = _get(*key)
        if value != "none":
            return value
    return "none"


def _matmul_precision() -> str | None:
    """The legacy matmul precision ("highest", "high" or "medium"), None if unknown.

    PyTorch keeps it beside the per-operation settings and its getter raises when the two
    disagree; it is then recovered from how they disagree (torch 2.13's rules: the cuBLAS
    switch reads only when "highest" goes with a CUDA matmul setting other than "tf32", and
    the precision reads unless the oneDNN matmul setting is "bf16" under "high" or "tf32"
    under "medium", or TF32 is set under "highest").
    """
    try:
        return torch.get_float32_matmul_precision()
    except RuntimeError:
        if not _NEW_API:
            return None
    try:
        with _quiet():
            highest = not torch.backends.cuda.matmul.allow_tf32
    except RuntimeError:
        highest = _effective("cuda", "matmul") == "tf32"
    if highest:
        return "highest"
    return "high" if _effective("mkldnn", "matmul") == "bf16" else "medium"


def _cudnn_allow_tf32() -> bool | None:
    """The legacy cuDNN switch, None if unknown.

    Its getter raises when it disagrees with the conv and rnn settings (torch 2.13: True
    reads only with both "tf32", False only with neither); it is then the opposite of what
    they say, and either value when they differ from each other (True, the default, then).
    """
    try:
        with _quiet():
            return bool(torch.backends.cudnn.allow_tf32)
    except RuntimeError:
        if not _NEW_API:
            return None
    conv, rnn = (_effective("cuda", op) == "tf32" for op in ("conv", "rnn"))
    return not conv if conv == rnn else True


def _save() -> dict[str, Any]:
    state: dict[str, Any] = {
        "matmul_precision": _matmul_precision(),
        "cudnn_allow_tf32": _cudnn_allow_tf32(),
    }
    if _NEW_API:
        state["settings"] = {op: _get(*op) for op in _SAVED_SETTINGS}
    return state


def _set_exact() -> None:
    with _quiet():
        # The legacy switches keep their own state beside the per-operation settings (the
        # legacy getters raise when the two disagree), so both are set.
        torch.set_float32_matmul_precision("highest")
        torch.backends.cudnn.allow_tf32 = False
        if _NEW_API:
            for op in _OPERATIONS:
                _set(*op, "ieee")


def _restore(state: dict[str, Any]) -> None:
    with _quiet():
        if state["matmul_precision"] is not None:
            torch.set_float32_matmul_precision(state["matmul_precision"])
        if state["cudnn_allow_tf32"] is not None:
            torch.backends.cudnn.allow_tf32 = state["cudnn_allow_tf32"]
        if _NEW_API:
            # Last: the legacy setters above also write some of these.
            for op, value in state["settings"].items():
                _set(*op, value)


@contextlib.contextmanager
def exact_math() -> Iterator[None]:
    """Run the block (or, as `@exact_math()`, the function) with TF32 and bfloat16 float32
    math off: IEEE float32 matmuls and convolutions on cuBLAS, cuDNN and oneDNN.

    Restores the previous flags exactly when the outermost block exits, also on an
    exception; nests and may be entered from several threads at once (see the module's
    caveat: the flags are process-global).
    """
    global _depth, _saved
    with _lock:
        if _depth == 0:
            _saved = _save()
            try:
                _set_exact()
            except BaseException:
                _restore(_saved)
                _saved = None
                raise
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                state, _saved = _saved, None
                assert state is not None
                _restore(state)


def float32_state() -> dict[str, Any]:
    """The float32 math flags as they are now: `{"matmul_precision", "cuda_matmul",
    "cudnn_conv", "cudnn_rnn", "mkldnn_matmul", "mkldnn_conv", "cublas_override"}` (the
    per-operation values "ieee" / "tf32" / "bf16" / "none" on torch >= 2.9; on older torch the
    cuda/cudnn entries say "tf32" or "ieee" from the legacy switches and the mkldnn ones are
    None)."""
    state: dict[str, Any] = {"matmul_precision": _matmul_precision()}
    if _NEW_API:
        for backend, operation in _OPERATIONS:
            key = f"{'cudnn' if backend == 'cuda' and operation != 'matmul' else backend}"
            state[f"{key}_{operation}"] = _get(backend, operation)
    else:
        with _quiet():
            matmul = "tf32" if torch.backends.cuda.matmul.allow_tf32 else "ieee"
            cudnn = "tf32" if torch.backends.cudnn.allow_tf32 else "ieee"
        state.update(
            cuda_matmul=matmul,
            cudnn_conv=cudnn,
            cudnn_rnn=cudnn,
            mkldnn_matmul=None,
            mkldnn_conv=None,
            mkldnn_rnn=None,
        )
    state["cublas_override"] = os.environ.get(_TF32_OVERRIDE, "") not in ("", "0")
    return state


def linalg_device(dim: int, device: torch.device | str | None) -> torch.device:
    """Where a `dim x dim` float64 eigendecomposition or robust PCA runs: on `device` when it
    is a CUDA device (float64 there) and `dim >= LINALG_DEVICE_MIN_DIM`, else on the CPU
    (Apple's MPS has no float64)."""
    if device is None:
        return torch.device("cpu")
    device = torch.device(device)
    if device.type == "cuda" and dim >= LINALG_DEVICE_MIN_DIM:
        return device
    return torch.device("cpu")


def precision_record(device: torch.device | str, dim: int | None = None) -> dict[str, Any]:
    """What `analysis.json` records about the arithmetic of an analysis on `device` (with a
    `dim`-dimensional latent, for where the eigendecompositions ran).

    `float32_matmul` / `float32_conv` are the cuBLAS / cuDNN (or oneDNN on the CPU) settings
    inside `exact_math()`, read back from PyTorch rather than assumed; `tf32` is whether
    TF32 could have been used on this device (True only if something overrides them, e.g.
    `TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=1`).
    """
    device = torch.device(device)
    with exact_math():
        state = float32_state()
    if device.type == "cuda":
        matmul, conv = state["cuda_matmul"], state["cudnn_conv"]
    else:
        matmul = state["mkldnn_matmul"] or "ieee"
        conv = state["mkldnn_conv"] or "ieee"
    override = bool(state["cublas_override"]) and device.type == "cuda"
    record: dict[str, Any] = {
        "device": str(device),
        "torch": torch.__version__,
        "float32_matmul": "tf32" if override else matmul,
        "float32_conv": conv,
        "tf32": device.type == "cuda" and (override or "tf32" in (matmul, conv)),
        "gram_products": GRAM_PRODUCTS,
        "gram_accumulation": "float64",
        "linalg": "float64",
    }
    if dim is not None:
        record["linalg_device"] = str(linalg_device(dim, device))
    return record
