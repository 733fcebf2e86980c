"""Reading untrusted data files (`.npy`, `.npz`, JSON, mask images) with their declared sizes
checked before anything is decoded.

Every such file a user hands us goes through here: the `.npy` header, an `.npz` member's zip
entry and npy header, a JSON file's byte size and an image's `Image.size` are compared with
the limits in `lowrankgan.limits` first, so a few-KB file claiming a TiB array or a 40-Gpx
image costs a one-line `UserInputError`, not the memory. Only plain numeric arrays are read:
no pickles, no object, string or complex dtypes.
"""

from __future__ import annotations

import json
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, BinaryIO

import numpy as np

from lowrankgan.errors import UserInputError, one_line
from lowrankgan.limits import check_at_most, human_bytes, limit

__all__ = [
    "open_checked_zip",
    "read_json",
    "read_mask_image",
    "read_npy",
    "read_npz",
]

#: Array kinds we read: bool, signed and unsigned integers, floats.
NUMERIC_KINDS = "biuf"
#: A compressed zip entry may expand at most this many times (plus `DEFLATE_SLACK` bytes over
#: the whole file): honest float arrays compress a few fold, deflate bombs ~1000x, and
#: torch.save and np.savez store entries uncompressed.
MAX_DEFLATE_RATIO = 32
DEFLATE_SLACK = 2**20
#: Entries in one zip (one per storage or array; the directory costs ~0.5 KiB each to parse).
MAX_ZIP_ENTRIES = 100_000


def _regular_file(path: Path, what: str) -> int:
    """The size of `path`, which must be an existing regular file."""
    if not path.exists():
        raise UserInputError(f"{what} not found: {path}")
    if not path.is_file():
        raise UserInputError(f"{what} {path} is not a regular file")
    size = path.stat().st_size
    if size == 0:
        raise UserInputError(f"{what} {path} is empty (0 bytes)")
    return size


def open_checked_zip(
    f: BinaryIO,
    size: int,
    name: str,
    total_limit: str,
    check_entry: Callable[[zipfile.ZipInfo], None] | None = None,
) -> zipfile.ZipFile:
    """The zip in `f` (`size` bytes), its central directory checked before any entry is read:
    entry count, duplicate names, entries cut off or overlapping, compression ratios (one
    entry and all together), and the uncompressed total against the limit `total_limit`.
    `check_entry` sees each entry first (a format's own rules, e.g. torch's data.pkl)."""
    end = zipfile._EndRecData(f)  # type: ignore[attr-defined]  # the end record alone
    if end is None:
        raise zipfile.BadZipFile("no zip end of central directory record")
    entries = end[zipfile._ECD_ENTRIES_TOTAL]  # type: ignore[attr-defined]
    if entries > MAX_ZIP_ENTRIES:
        raise UserInputError(
            f"{name}: refused: the zip declares {entries:,} entries (at most {MAX_ZIP_ENTRIES:,})"
        )
    archive = zipfile.ZipFile(f)
    names: set[str] = set()
    total = compressed = deflated_in = deflated_out = 0
    for info in archive.infolist():
        if info.filename in names:
            raise UserInputError(f"{name}: refused: the zip holds {info.filename} twice")
        names.add(info.filename)
        if check_entry is not None:
            check_entry(info)
        if info.header_offset + info.compress_size > size:
            raise UserInputError(f"{name}: {_cut_off(EOFError(f'{info.filename} is cut off'))}")
        total += info.file_size
        compressed += info.compress_size
        if info.compress_type == zipfile.ZIP_STORED:
            if info.file_size != info.compress_size:
                raise UserInputError(
                    f"{name}: {_cut_off(ValueError(f'{info.filename} has two sizes'))}"
                )
            continue
        deflated_in += info.compress_size
        deflated_out += info.file_size
        if info.file_size > MAX_DEFLATE_RATIO * info.compress_size + DEFLATE_SLACK:
            raise UserInputError(
                f"{name}: refused: zip entry {info.filename} would inflate to "
                f"{human_bytes(info.file_size)} from {human_bytes(info.compress_size)} "
                f"(over {MAX_DEFLATE_RATIO}x: a zip bomb)"
            )
    if deflated_out > MAX_DEFLATE_RATIO * deflated_in + DEFLATE_SLACK:
        raise UserInputError(
            f"{name}: refused: its compressed zip entries would inflate to "
            f"{human_bytes(deflated_out)} from {human_bytes(deflated_in)} "
            f"(over {MAX_DEFLATE_RATIO}x: a zip bomb)"
        )
    if compressed > size:
        raise UserInputError(f"{name}: refused: the zip's entries overlap (a zip bomb)")
    check_at_most(total, total_limit, f"{name} (uncompressed)")
    return archive


def _cut_off(exc: BaseException) -> str:
    return f"truncated or corrupt ({one_line(exc)})"


def _array_header(handle: IO[bytes], where: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    """Shape, Fortran order and dtype of the npy stream at `handle`, validated, nothing read
    beyond the header."""
    try:
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(handle)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(handle)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except (ValueError, OSError, SyntaxError, TypeError) as exc:
        raise UserInputError(f"{where} is not a .npy array ({one_line(exc)})") from None
    if dtype.hasobject or dtype.kind not in NUMERIC_KINDS or dtype.fields is not None:
        raise UserInputError(f"{where} holds {dtype} values; only numbers are read")
    count = 1
    for side in shape:
        count *= int(side)
    check_at_most(count, "tensor_elements", f"the array in {where}")
    check_at_most(count * dtype.itemsize, "array_file_bytes", f"the array in {where}")
    return tuple(int(s) for s in shape), bool(fortran), dtype


def _read_array(handle: IO[bytes], where: str, available: int) -> np.ndarray:
    """The array of an npy stream whose remaining byte count is at most `available`."""
    start = handle.tell()
    shape, fortran, dtype = _array_header(handle, where)
    needed = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if needed > available - (handle.tell() - start):
        raise UserInputError(f"{where} is truncated: its header promises {needed} bytes of data")
    data = handle.read(needed)
    if len(data) != needed:
        raise UserInputError(f"{where} is truncated")
    array = np.frombuffer(data, dtype=dtype)
    order = "F" if fortran else "C"
    return array.reshape(shape, order=order).copy(order="C")


def read_npy(path: str | Path, what: str = "array file") -> np.ndarray:
    """A numeric `.npy` array, its header checked against the limits before the data is read."""
    path = Path(path)
    size = _regular_file(path, what)
    with open(path, "rb") as handle:
        return _read_array(handle, f"{what} {path}", size)


def read_npz(path: str | Path, what: str = "array archive") -> dict[str, np.ndarray]:
    """Every member of a numeric `.npz` archive by name (without `.npy`), each member's zip
    entry and npy header checked before it is inflated."""
    path = Path(path)
    size = _regular_file(path, what)
    with open(path, "rb") as raw:
        try:
            archive = open_checked_zip(raw, size, f"{what} {path}", "array_file_bytes")
        except UserInputError:
            raise
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
            raise UserInputError(f"cannot read {what} {path}: {one_line(exc)}") from None
        with archive:
            return _npz_members(archive, f"{what} {path}")


def _npz_members(archive: zipfile.ZipFile, name: str) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {}
    for info in archive.infolist():
        where = f"{name}, member {info.filename!r}"
        if not info.filename.endswith(".npy"):
            raise UserInputError(f"{where} is not a .npy array")
        try:
            with archive.open(info) as handle:
                arrays[info.filename[: -len(".npy")]] = _read_array(handle, where, info.file_size)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise UserInputError(f"cannot read {where}: {one_line(exc)}") from None
    return arrays


def read_json(path: str | Path, what: str = "JSON file") -> Any:
    """A JSON file, at most `limit("json_bytes")` bytes of UTF-8 and `limit("nesting_depth")`
    levels deep (checked before parsing: json's parser would recurse until RecursionError)."""
    path = Path(path)
    check_at_most(_regular_file(path, what), "json_bytes", f"{what} {path}")
    bound = limit("json_bytes")
    try:
        with open(path, "rb") as handle:
            data = handle.read(bound + 1)
    except OSError as exc:
        raise UserInputError(f"cannot read {what} {path}: {one_line(exc)}") from None
    check_at_most(len(data), "json_bytes", f"{what} {path}")  # it grew meanwhile
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise UserInputError(f"{what} {path} is not UTF-8 text") from None
    _check_nesting(text, f"{what} {path}")
    try:
        return json.loads(text)
    except RecursionError:
        raise UserInputError(f"{what} {path} is nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, and integers of over 4300 digits
        raise UserInputError(f"cannot read {what} {path}: {one_line(exc)}") from None


def _check_nesting(text: str, where: str) -> None:
    """Refuse JSON nested deeper than the limit, counted on brackets outside strings."""
    bound = limit("nesting_depth")
    if text.count("[") + text.count("{") <= bound:
        return
    depth, in_string, escaped = 0, False, False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > bound:
                raise UserInputError(f"{where} is nested deeper than {bound} levels")
        elif char in "]}":
            depth -= 1


def read_mask_image(
    path: str | Path, what: str = "mask image", size: tuple[int, int] | None = None
) -> np.ndarray:
    """An image as `(H, W)` values, any channel non-zero where the image is (transparent pixels
    are zero), its pixel count (and `size`, `(width, height)`, if given) checked from the
    header before it is decoded."""
    from PIL import Image

    path = Path(path)
    _regular_file(path, what)
    with warnings.catch_warnings():
        # Our own pixel limit decides; Pillow's warning would be a second line on stderr.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        return _decoded_image(path, what, size)


def _decoded_image(path: Path, what: str, size: tuple[int, int] | None) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            width, height = image.size
            check_at_most(width * height, "image_pixels", f"{what} {path} ({width}x{height})")
            if size is not None and (width, height) != tuple(size):
                raise UserInputError(
                    f"{what} {path} is {width}x{height}, the model outputs {size[0]}x{size[1]}"
                )
            has_alpha = "A" in image.getbands()
            array = np.asarray(image)
    except UserInputError:
        raise
    except Image.DecompressionBombError:
        raise UserInputError(
            f"{what} {path} has more than {2 * Image.MAX_IMAGE_PIXELS:,} pixels, over the limit"
        ) from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise UserInputError(f"cannot read {what} {path}: {one_line(exc)}") from None
    if array.ndim == 3 and has_alpha:
        # An opaque alpha channel is not the region: transparent pixels are outside it.
        return np.where(array[..., -1] != 0, array[..., :-1].max(axis=2), 0)
    return array.max(axis=2) if array.ndim == 3 else array
