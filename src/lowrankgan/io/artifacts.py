"""Writing outputs so that nothing half-written is ever left behind.

This module owns every write of a result file: single files go through a temp file in the
same folder plus `os.replace` (atomic on POSIX and Windows), whole output folders are built in
a hidden staging folder and moved in only when the work succeeded. It also owns the up-front
check that an output folder is writable, so a long run fails in its first second, not its last.
"""

from __future__ import annotations

import contextlib
import glob
import io
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from lowrankgan.errors import UserInputError

__all__ = [
    "atomic_write_bytes",
    "atomic_write_text",
    "check_writable_dir",
    "remove_abandoned_staging",
    "save_npz_atomic",
    "staged_output",
]


def _current_umask() -> int:
    # os.umask can only be read by setting it; doing it once at import keeps the window tiny.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def _fsync_dir(folder: Path) -> None:
    """Make a rename inside `folder` durable; a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` so readers see either the old file or the complete new one.

    The bytes go to a temp file in the same folder (a rename is only atomic within one file
    system), are fsynced, then renamed over `path`. On any failure the temp file is removed and
    an existing `path` is untouched. The folder must exist.
    """
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        # mkstemp creates 0600 files; give the result the permissions a plain open() would.
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str, encoding: str = "utf-8") -> None:
    """Atomically write `text` to `path` (no newline translation, so output is identical on
    every platform)."""
    atomic_write_bytes(path, text.encode(encoding))


def save_npz_atomic(path: Path, **arrays: np.ndarray) -> None:
    """Atomically save `arrays` as an uncompressed `.npz` archive at `path`.

    The archive is built in memory first because `np.savez` writes incrementally and would leave
    a truncated zip behind if interrupted; it also silently appends `.npz` to other names, so the
    suffix is required up front to keep the written name equal to the requested one.
    """
    path = Path(path)
    if path.suffix != ".npz":
        raise UserInputError(f"an array archive must end with .npz, got {path.name!r}")
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def _missing_ancestors(folder: Path) -> list[Path]:
    """The folders from `folder` upwards that do not exist yet, outermost first."""
    missing: list[Path] = []
    current = folder
    while not os.path.lexists(current) and current != current.parent:
        missing.append(current)
        current = current.parent
    return missing[::-1]


def _fsync_file(path: Path) -> None:
    # Code writing into the staging folder rarely fsyncs; without this a crash right after the
    # rename could expose an empty file under its final name.
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


#: Inside every staging folder: the pid and host of the run that owns it, so a later run can
#: tell a killed run's leftovers from a live run's work.
_OWNER_FILE = ".lowrankgan-owner"


def _planned_moves(staging: Path, target: Path) -> list[tuple[Path, Path]]:
    """Every (staged file, destination) pair, after checking that each destination can take a
    file: no folder, link or other non-file where a file goes, nor a file where a folder goes."""
    moves: list[tuple[Path, Path]] = []
    for root, _dirs, files in os.walk(staging):
        relative = Path(root).relative_to(staging)
        chain = [target]
        for part in relative.parts:
            chain.append(chain[-1] / part)
        for folder in chain:
            if os.path.lexists(folder) and (folder.is_symlink() or not folder.is_dir()):
                raise UserInputError(f"cannot write into {folder}: it exists and is not a folder")
        for name in files:
            if name == _OWNER_FILE:
                continue
            destination = target / relative / name
            if os.path.lexists(destination) and (
                destination.is_symlink() or not destination.is_file()
            ):
                raise UserInputError(
                    f"cannot write {destination}: something other than a file is in the way"
                )
            moves.append((Path(root) / name, destination))
    return moves


def _merge_into(staging: Path, target: Path) -> None:
    """Move every file of `staging` (recursively) into `target`, replacing same-named files,
    as one transaction: every destination is checked first, replaced files are set aside
    and restored if any move fails, so `target` ends up wholly old or wholly new."""
    moves = _planned_moves(staging, target)
    backup = staging / ".replaced"
    set_aside: list[tuple[Path, Path]] = []
    placed: list[Path] = []
    try:
        for index, (source, destination) in enumerate(moves):
            _fsync_file(source)
            destination.parent.mkdir(parents=True, exist_ok=True)
            if os.path.lexists(destination):
                kept = backup / str(index)
                kept.parent.mkdir(exist_ok=True)
                os.replace(destination, kept)
                set_aside.append((kept, destination))
            os.replace(source, destination)
            placed.append(destination)
    except BaseException:
        for destination in placed:
            with contextlib.suppress(OSError):
                destination.unlink()
        for kept, destination in set_aside:
            with contextlib.suppress(OSError):
                os.replace(kept, destination)
        raise
    for folder in {destination.parent for _, destination in moves}:
        _fsync_dir(folder)


def _claim(staging: Path) -> None:
    """Record this process as the owner of `staging`."""
    (staging / _OWNER_FILE).write_text(f"{os.getpid()} {socket.gethostname()}\n")


def _abandoned(staging: Path) -> bool:
    """Whether `staging` belongs to a run on this host that is no longer alive."""
    try:
        pid_text, host = (staging / _OWNER_FILE).read_text().split()
        pid = int(pid_text)
    except (OSError, ValueError):
        return False  # not ours, or still being set up: leave it alone
    if host != socket.gethostname() or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return True
    except OSError:
        pass  # it exists but is not ours to signal
    return False


def remove_abandoned_staging(path: Path) -> list[Path]:
    """Delete the staging folders of killed runs beside `path` (`.<name>.partial-*` holding an
    owner file whose process is gone); returns what was removed."""
    removed = []
    parent = Path(path).absolute().parent
    with contextlib.suppress(OSError):
        for candidate in parent.glob(f".{glob.escape(Path(path).name)}.partial-*"):
            if candidate.is_dir() and not candidate.is_symlink() and _abandoned(candidate):
                shutil.rmtree(candidate, ignore_errors=True)
                removed.append(candidate)
    return removed


@contextlib.contextmanager
def staged_output(path: Path) -> Iterator[Path]:
    """Yield a staging folder whose files land in `path` only if the block finishes normally.

    The staging folder is a hidden sibling `.<name>.partial-<random>` (same file system, so the
    moves are renames) holding an owner file; staging folders of killed runs are removed first.
    On normal exit every file in it is moved into `path`, which is created if missing;
    unrelated files already in `path` are kept and same-named ones are replaced, all or
    nothing (see `_merge_into`). On an exception (including KeyboardInterrupt) the staging
    folder is deleted and `path` is left as it was: not created if it did not exist, and any
    parent folders made for the staging are removed.

    Raises UserInputError before yielding if `path` exists and is not a folder.
    """
    path = Path(path).absolute()
    if os.path.lexists(path) and not path.is_dir():
        raise UserInputError(f"output path {path} exists and is not a directory")
    remove_abandoned_staging(path)
    created_parents = _missing_ancestors(path.parent)
    staging: Path | None = None
    committed = False
    try:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.partial-"))
            _claim(staging)
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise UserInputError(f"cannot create output directory {path}: {reason}") from None
        yield staging
        if os.path.lexists(path):
            _merge_into(staging, path)
        else:
            (staging / _OWNER_FILE).unlink()
            for root, _dirs, files in os.walk(staging):
                for name in files:
                    candidate = Path(root) / name
                    if candidate.is_file() and not candidate.is_symlink():
                        _fsync_file(candidate)
            # A brand-new output folder appears in one rename, complete.
            os.chmod(staging, 0o777 & ~_UMASK)
            try:
                os.rename(staging, path)
            except OSError:
                # Someone created `path` meanwhile (rename refuses non-empty targets): merge.
                if not path.is_dir():
                    raise
                _merge_into(staging, path)
            _fsync_dir(path.parent)
        committed = True
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        if not committed:
            for folder in reversed(created_parents):
                with contextlib.suppress(OSError):
                    folder.rmdir()  # only succeeds while empty, so nothing else is lost


def check_writable_dir(path: Path) -> None:
    """Raise UserInputError unless `path` is (or can become) a folder we can write into.

    An existing `path` must be a folder; a missing one needs its nearest existing ancestor to be
    a writable folder. Writability is tested by really creating and removing a temp file, since
    permission bits lie (root, ACLs, read-only mounts). Leaves nothing behind.
    """
    path = Path(path).absolute()
    if os.path.lexists(path):
        if not path.is_dir():
            raise UserInputError(f"output path {path} exists and is not a directory")
        probe_dir = path
    else:
        probe_dir = path.parent
        while not os.path.lexists(probe_dir) and probe_dir != probe_dir.parent:
            probe_dir = probe_dir.parent
        if not probe_dir.is_dir():
            raise UserInputError(
                f"cannot create output directory {path}: {probe_dir} is not a directory"
            )
    try:
        fd, probe = tempfile.mkstemp(dir=probe_dir, prefix=".lowrankgan-write-test-")
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise UserInputError(f"output directory {probe_dir} is not writable: {reason}") from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)
