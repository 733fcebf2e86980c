"""Latent and direction files: `.npy` arrays read with their sizes checked first."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lowrankgan.errors import UserInputError
from lowrankgan.io.datafiles import read_npy


def read_latent_array(path: Path) -> np.ndarray:
    """A latent code from a `.npy` file, any shape, as finite float32 (the model's family
    decides which shapes it accepts)."""
    array = read_npy(path, "latent")
    with np.errstate(over="ignore", invalid="ignore"):
        array = array.astype(np.float32)
    if not np.isfinite(array).all():
        raise UserInputError(f"latent {path} contains NaN or Inf (or values beyond float32)")
    return array


def load_direction_file(path: Path, dim: int) -> np.ndarray:
    """Directions from a `.npy` file, `(d,)` or `(k, d)` (e.g. the authors' released W
    directions) -> `(d, k)` float64 unit columns."""
    return unit_directions(read_direction_array(path), dim, path)


def read_direction_array(path: Path) -> np.ndarray:
    """A direction file's array as float64, at least 2-d (`(d,)` becomes `(1, d)`)."""
    return np.atleast_2d(read_npy(Path(path), "direction file").astype(np.float64))


#: `authors:NAME` names one of the LowRankGAN authors' released directions (package data).
AUTHORS_PREFIX = "authors:"
_AUTHORS_DIR = Path(__file__).resolve().parent.parent / "data" / "authors"


def authors_directions() -> list[str]:
    """The released directions' names, `ffhq1024/eyes_size` ..., sorted."""
    return sorted(f"{p.parent.name}/{p.stem}" for p in _AUTHORS_DIR.glob("*/*.npy") if p.is_file())


def direction_path(text: str) -> Path:
    """A `--direction-file` value as a path: `authors:ffhq1024/eyes_size` is the packaged
    file of that name (the authors' MIT-licensed release), anything else a path."""
    if not text.startswith(AUTHORS_PREFIX):
        return Path(text)
    name = text[len(AUTHORS_PREFIX) :].removesuffix(".npy")
    if name not in authors_directions():
        raise UserInputError(
            f"unknown released direction {name!r}; choose one of: "
            + ", ".join(authors_directions())
        )
    return _AUTHORS_DIR / f"{name}.npy"


def unit_directions(array: np.ndarray, dim: int, path: Path) -> np.ndarray:
    """`(k, dim)` rows of a direction file -> `(dim, k)` unit columns, refusing other shapes
    and NaN, Inf or zero rows."""
    if array.ndim != 2 or array.shape[1] != dim:
        raise UserInputError(
            f"{path} has shape {array.shape}; expected ({dim},) or (k, {dim}) for this model"
        )
    norms = np.linalg.norm(array, axis=1)
    if not np.isfinite(array).all() or (norms == 0).any():
        raise UserInputError(f"{path} holds NaN, Inf or zero directions")
    return (array / norms[:, None]).T
