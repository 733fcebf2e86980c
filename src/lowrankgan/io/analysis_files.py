"""The analysis file format: `analysis.npz` (arrays) + `analysis.json` (what made them).

Reading checks every array and every field the tool reads, so a hostile or damaged file is a
one-line `UserInputError`; the pipeline's `Analysis.load` adds the settings check on top.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from lowrankgan.errors import UserInputError
from lowrankgan.io.artifacts import atomic_write_text, save_npz_atomic
from lowrankgan.io.datafiles import read_json, read_npz
from lowrankgan.limits import limit

#: The arrays of an analysis, in file order.
ANALYSIS_ARRAYS = (
    "latent",
    "region_basis",
    "region_singular_values",
    "null_basis",
    "directions",
    "direction_strengths",
    "region_mask",
    "keep_mask",
)


def write_analysis_files(
    out_dir: Path, arrays: dict[str, np.ndarray], info: dict[str, Any]
) -> tuple[Path, Path]:
    """Write `analysis.npz` and `analysis.json` into `out_dir`, each atomically."""
    out_dir.mkdir(parents=True, exist_ok=True)
    npz = out_dir / "analysis.npz"
    save_npz_atomic(npz, **{name: arrays[name] for name in ANALYSIS_ARRAYS})
    meta = out_dir / "analysis.json"
    atomic_write_text(meta, json.dumps(info, indent=2, sort_keys=True) + "\n")
    return npz, meta


def read_analysis_files(path: Path) -> tuple[Path, dict[str, np.ndarray], dict[str, Any]]:
    """`analysis.npz` at `path` (or in the folder `path`) and the `analysis.json` beside it,
    if present: `(npz path, checked arrays, checked info)`. Arrays missing from older files
    are filled in empty; float arrays come back float64, masks bool."""
    path = Path(path)
    if path.is_dir():
        path = path / "analysis.npz"
    loaded = read_npz(path, "analysis")
    missing = [name for name in ("latent", "directions", "null_basis") if name not in loaded]
    if missing:
        raise UserInputError(f"{path} is not an analysis file (missing {', '.join(missing)})")
    meta_path = path.with_suffix(".json")
    info = read_json(meta_path, "analysis") if meta_path.is_file() else {}
    latent = loaded["latent"]
    d = latent.shape[0] if latent.ndim == 1 else 0
    empty_mask = np.zeros((0, 0), dtype=bool)
    defaults = {
        "region_basis": np.zeros((d, 0)),
        "region_singular_values": np.zeros(0),
        "direction_strengths": np.zeros(loaded["directions"].shape[-1]),
        "region_mask": empty_mask,
        "keep_mask": empty_mask,
    }
    arrays = {name: loaded.get(name, defaults.get(name)) for name in ANALYSIS_ARRAYS}
    return path, check_analysis_arrays(arrays, path), check_analysis_info(info, meta_path)


def check_analysis_arrays(arrays: dict[str, np.ndarray], path: Path) -> dict[str, np.ndarray]:
    """Shapes, dtypes and values of an analysis's arrays: real floats of consistent sizes,
    finite, unit directions, bool-valued masks. Returns them converted (float64, bool)."""
    arrays = dict(arrays)
    latent = arrays["latent"]
    if latent.ndim != 1 or not 1 <= latent.shape[0] <= limit("latent_dim"):
        raise UserInputError(f"{path}: latent has shape {latent.shape}, expected (d,)")
    d = latent.shape[0]
    expected = {
        "latent": (d,),
        "region_basis": (d, None),
        "region_singular_values": (None,),
        "null_basis": (d, None),
        "directions": (d, None),
        "direction_strengths": (arrays["directions"].shape[-1],),
    }
    for name, shape in expected.items():
        arrays[name] = _checked_float_array(arrays[name], name, shape, path)
    directions = arrays["directions"]
    if directions.shape[1] == 0:
        raise UserInputError(f"{path}: the analysis holds no directions")
    norms = np.linalg.norm(directions, axis=0)
    if (norms < 1e-6).any():
        raise UserInputError(f"{path}: direction {int(np.argmin(norms))} is zero")
    if not np.allclose(norms, 1.0, rtol=0, atol=1e-9):  # keep saved unit columns bit-exact
        arrays["directions"] = directions / norms
    for name in ("region_mask", "keep_mask"):
        mask = arrays[name]
        if mask.dtype.kind not in "biu" or (mask.size and mask.ndim != 2):
            raise UserInputError(f"{path}: {name} must be a 2-d bool array, got {mask.dtype}")
        arrays[name] = mask.reshape(mask.shape if mask.size else (0, 0)) != 0
    region, keep = arrays["region_mask"], arrays["keep_mask"]
    if region.size and keep.size and region.shape != keep.shape:
        raise UserInputError(f"{path}: region_mask and keep_mask differ in shape")
    return arrays


def _checked_float_array(
    array: np.ndarray, name: str, shape: tuple[int | None, ...], path: Path
) -> np.ndarray:
    """`array` as float64 if it is real, finite and of `shape` (None: any size)."""
    if array.dtype.kind not in "fiu":
        raise UserInputError(f"{path}: {name} holds {array.dtype} values, expected floats")
    if array.ndim != len(shape) or any(
        want is not None and got != want for got, want in zip(array.shape, shape, strict=True)
    ):
        wanted = "(" + ", ".join("k" if w is None else str(w) for w in shape)
        wanted += ",)" if len(shape) == 1 else ")"
        raise UserInputError(f"{path}: {name} has shape {array.shape}, expected {wanted}")
    array = array.astype(np.float64)
    if not np.isfinite(array).all():
        raise UserInputError(f"{path}: {name} holds NaN or Inf")
    return array


def check_analysis_info(info: Any, path: Path) -> dict[str, Any]:
    """`analysis.json` as a dict whose fields the tool reads have the right types and ranges
    (the settings' values are checked by the pipeline, which owns them)."""
    if not isinstance(info, dict):
        raise UserInputError(f"{path} does not hold a JSON object")
    for key in ("model", "space", "method"):
        if key in info and not isinstance(info[key], str):
            raise UserInputError(f"{path}: {key!r} must be a string")
    for key in ("settings", "ranks"):
        if key in info and not isinstance(info[key], dict):
            raise UserInputError(f"{path}: {key!r} must be an object")
    if "latent_dim" in info and not _small_int(info["latent_dim"], 1, limit("latent_dim")):
        raise UserInputError(f"{path}: 'latent_dim' must be an integer in 1..{limit('latent_dim')}")
    resolution = info.get("resolution")
    if resolution is not None and not (
        isinstance(resolution, list)
        and len(resolution) == 2
        and all(_small_int(v, 1, limit("resolution")) for v in resolution)
    ):
        raise UserInputError(
            f"{path}: 'resolution' must be two integers in 1..{limit('resolution')}"
        )
    for key, value in (info.get("ranks") or {}).items():
        if key in ("region", "keep", "null_space", "directions") and not _small_int(
            value, 0, limit("latent_dim")
        ):
            raise UserInputError(
                f"{path}: ranks.{key} must be an integer in 0..{limit('latent_dim')}"
            )
    return info


def _small_int(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
