"""Every size and count the tool accepts from a file or a flag, in one place.

Untrusted input (a checkpoint, a latent, a mask, a config, a command line) is checked against
these limits *before* memory or time is spent on it, so a hostile or mistyped input costs a
one-line error instead of a hang or gigabytes of memory. Each limit can be raised for one run
with an environment variable `LOWRANKGAN_MAX_<NAME>` (for example
`LOWRANKGAN_MAX_CHECKPOINT_BYTES=20e9`); docs/security.md lists them with their reasons.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from lowrankgan.errors import UserInputError

__all__ = ["LIMITS", "Limit", "check_at_most", "human_bytes", "limit"]


@dataclass(frozen=True)
class Limit:
    """One bound: its default and why it is set there."""

    name: str
    default: int
    unit: str
    reason: str

    @property
    def env_var(self) -> str:
        return f"LOWRANKGAN_MAX_{self.name.upper()}"


_GiB = 2**30
_MiB = 2**20

LIMITS: dict[str, Limit] = {
    limit.name: limit
    for limit in (
        Limit(
            "checkpoint_bytes",
            8 * _GiB,
            "bytes",
            "uncompressed size of one checkpoint (official 1024-px StyleGAN2: 0.36 GB)",
        ),
        Limit(
            "pickle_bytes",
            64 * _MiB,
            "bytes",
            "the pickled index of a torch zip checkpoint (data.pkl; tensors live outside it)",
        ),
        Limit(
            "tensor_elements",
            2**31,
            "elements",
            "elements of one tensor in a checkpoint or array file",
        ),
        Limit(
            "pickle_objects",
            2_000_000,
            "objects",
            "objects built while unpickling one NVIDIA/TF checkpoint",
        ),
        Limit("nesting_depth", 200, "levels", "nesting of containers in pickles and JSON"),
        Limit("json_bytes", 16 * _MiB, "bytes", "a JSON file (config.json, analysis.json)"),
        Limit("array_file_bytes", 4 * _GiB, "bytes", "uncompressed size of one .npy/.npz file"),
        Limit("image_pixels", 64 * _MiB, "pixels", "a mask or image read from disk (8192^2)"),
        Limit("resolution", 4096, "pixels", "side of a generated image"),
        Limit("latent_dim", 65_536, "values", "size of a latent code"),
        Limit("samples", 10_000, "images", "--samples and --ganspace-samples"),
        Limit("strengths", 1_000, "values", "--strengths / --change values in one run"),
        Limit("path_steps", 100_000, "steps", "path-following steps in one run"),
        Limit("seeds", 10_000, "seeds", "--seeds in one run"),
        Limit("download_bytes", 16 * _GiB, "bytes", "a download of unknown size"),
    )
}


def limit(name: str) -> int:
    """The limit `name` in force: `LOWRANKGAN_MAX_<NAME>` if set, else its default."""
    spec = LIMITS[name]
    raw = os.environ.get(spec.env_var)
    if raw is None or not raw.strip():
        return spec.default
    try:
        value = float(raw)
    except ValueError:
        raise UserInputError(f"{spec.env_var} must be a number, got {raw!r}") from None
    if not (math.isfinite(value) and value >= 1):
        raise UserInputError(f"{spec.env_var} must be a positive number, got {raw!r}")
    return int(value)


def check_at_most(value: float, name: str, what: str) -> None:
    """Refuse `value` above the limit `name`; `what` names the input in the message."""
    bound = limit(name)
    if value > bound:
        spec = LIMITS[name]
        raise UserInputError(
            f"{what} is {_human(value, spec.unit)}, over the limit of {_human(bound, spec.unit)} "
            f"(raise it with {spec.env_var})"
        )


def human_bytes(value: float) -> str:
    """`3221225472` -> `'3 GiB'`."""
    for scale, suffix in ((2**40, "TiB"), (_GiB, "GiB"), (_MiB, "MiB"), (2**10, "KiB")):
        if value >= scale:
            return f"{value / scale:.3g} {suffix}"
    return f"{int(value)} bytes"


def _human(value: float, unit: str) -> str:
    if isinstance(value, int) and len(str(abs(value))) > 18:
        # Too long to print, and past what a float holds: say how long it is.
        return f"a {len(str(abs(value)))}-digit number"
    if unit == "bytes":
        return human_bytes(value)
    return f"{value:,.0f} {unit}" if value < 1e15 else f"{value:.3g} {unit}"
