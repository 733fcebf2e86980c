"""Reading checkpoint files without running code they contain.

Every weight file goes through `load_state_file`: `torch.load(weights_only=True)` refuses any
pickle that would import or call something outside torch's tensor allow-list, so a checkpoint
carrying a payload is rejected before the payload can run. Failures become one-line
`UserInputError`s that name the file.
"""

from __future__ import annotations

import pickle
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..errors import UserInputError


def load_state_file(path: str | Path) -> Mapping[str, Any]:
    """The dict stored in a torch checkpoint, tensors on the CPU, nothing executed."""
    path = Path(path)
    if not path.exists():
        raise UserInputError(f"checkpoint not found: {path}")
    if not path.is_file():
        raise UserInputError(f"checkpoint is not a file: {path}")
    try:
        with warnings.catch_warnings():
            # e.g. "Detected pickle protocol 4": noise on stderr next to the one-line error.
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # weights_only refuses globals outside the allow-list: a payload or a foreign format.
        raise UserInputError(
            f"refused to load {path}: it is not a plain tensor checkpoint "
            f"({_unpickling_reason(exc)[:160]})"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserInputError(f"cannot read checkpoint {path}: {first[:160]}") from None
    if not isinstance(obj, Mapping):
        raise UserInputError(f"checkpoint {path} does not hold a dict of tensors")
    return obj


def _unpickling_reason(exc: Exception) -> str:
    """The informative line of torch's weights-only refusal (it starts with boilerplate)."""
    boilerplate = ("Weights only load failed", "Check the documentation", "Please file an issue")
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(boilerplate)]
    return (useful or lines or [type(exc).__name__])[0]


def find_state_dict(obj: Mapping[str, Any], keys: tuple[str, ...]) -> Mapping[str, torch.Tensor]:
    """The first nested state dict under one of `keys`, or `obj` itself if it is one."""
    for key in keys:
        inner = obj.get(key)
        if isinstance(inner, Mapping):
            return inner
    return obj
