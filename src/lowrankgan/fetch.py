"""Downloading checkpoints: the cache directory, resumable HTTP transfers and their verification.

This module owns getting bytes from a URL onto disk safely. A download streams into
`<dest>/<filename>.part` while hashing, resumes with a `Range` request after a dropped
connection (or from a `.part` left by an earlier run), checks the size and SHA-256 it was given,
and only then moves the file into place with an atomic rename, so a file under its final name is
always complete. What to download is decided by `lowrankgan.zoo`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import http.client
import io
import logging
import os
import re
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from tqdm import tqdm

from . import __version__
from .errors import UserInputError
from .zoo import ZooEntry, zoo_entry

log = logging.getLogger(__name__)

#: Seconds to wait before the first retry; doubles per attempt (tests set it to 0).
RETRY_BACKOFF_S = 1.0
_MAX_BACKOFF_S = 15.0
_OFFLINE_HINT = "offline? download it yourself and pass the path with --model"
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
_UNSATISFIED_RANGE = re.compile(r"bytes\s+\*/(\d+)")


class _Dropped(Exception):
    """The transfer broke off in a way that a later (resumed) request may fix."""


@dataclasses.dataclass(frozen=True)
class _Target:
    url: str
    filename: str
    sha256: str | None
    size: int | None


def cache_location() -> Path:
    """Where zoo checkpoints go: $LOWRANKGAN_CACHE, else the XDG cache dir (not created)."""
    override = os.environ.get("LOWRANKGAN_CACHE")
    if override:
        return Path(override).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "lowrankgan"


def cache_dir() -> Path:
    """`cache_location()`, created on demand."""
    path = cache_location()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserInputError(f"cannot create cache directory {path}: {exc.strerror}") from exc
    return path


def fetch(
    entry_or_url: ZooEntry | str,
    *,
    dest_dir: Path | str | None = None,
    expected_sha256: str | None = None,
    expected_size: int | None = None,
    progress: bool = True,
    timeout: float = 30,
    chunk_size: int = 1 << 20,
    retries: int = 3,
) -> Path:
    """Download a zoo entry or URL into `dest_dir` (default: `cache_dir()`) and return its path.

    Explicit `expected_sha256` / `expected_size` override the zoo entry's. A file already in
    place with the right size and digest is returned without any request.
    """
    target = _target(entry_or_url, expected_sha256, expected_size)
    dest = Path(dest_dir).expanduser() if dest_dir is not None else cache_dir()
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserInputError(f"cannot create {dest}: {_reason(exc)}") from exc
    final = dest / target.filename
    part = dest / (target.filename + ".part")

    if final.is_file() and _matches(final, target):
        log.info("using cached %s", final)
        return final

    attempt = 0
    while True:
        try:
            size, digest = _request_into(
                part, target, progress=progress, timeout=timeout, chunk_size=chunk_size
            )
            break
        except _Dropped as exc:
            attempt += 1
            if attempt > retries:
                resume = f"run again to resume from {part.name}" if part.is_file() else "try later"
                raise UserInputError(
                    f"cannot download {target.url}: {exc} (gave up after {retries} retries; "
                    f"{resume}, or {_OFFLINE_HINT})"
                ) from exc
            delay = min(RETRY_BACKOFF_S * 2 ** (attempt - 1), _MAX_BACKOFF_S)
            _say(f"{target.filename}: {exc}; retrying ({attempt}/{retries})", progress)
            time.sleep(delay)

    _verify(part, target, size, digest)
    os.replace(part, final)
    if target.sha256 is None:
        _say(
            f"{final.name}: sha256 {digest}, {size} bytes (unverified: no published checksum)",
            progress,
        )
    return final


def fetch_model(
    name: str, progress: bool = True, *, dest_dir: Path | str | None = None, verify: bool = True
) -> Path:
    """Download the zoo checkpoint `name` into the cache (or `dest_dir`) and return its path
    (its folder, for models stored as several files).

    `verify=False` skips the pinned size and digest, for when NVIDIA re-issues a file.
    """
    entry = zoo_entry(name)
    files = (entry, *entry.companions)
    if not verify:
        files = tuple(dataclasses.replace(f, sha256=None, size_bytes=None) for f in files)
    base = Path(dest_dir) if dest_dir is not None else cache_dir()
    target = base / entry.folder if entry.folder else base
    paths = [fetch(f, dest_dir=target, progress=progress) for f in files]
    # Models stored as several files (BigGAN's config.json + weights) load from their folder.
    return target if entry.folder else paths[0]


# --- what to fetch -------------------------------------------------------------------------


def _target(entry_or_url: ZooEntry | str, sha256: str | None, size: int | None) -> _Target:
    if isinstance(entry_or_url, ZooEntry):
        url, filename = entry_or_url.url, entry_or_url.filename
        sha256 = sha256 if sha256 is not None else entry_or_url.sha256
        size = size if size is not None else entry_or_url.size_bytes
    else:
        url, filename = entry_or_url, _filename_from_url(entry_or_url)
    if sha256 is not None:
        sha256 = sha256.strip().lower()
        if not re.fullmatch(r"[0-9a-f]{64}", sha256):
            raise UserInputError(f"not a SHA-256 hex digest: {sha256!r}")
    return _Target(url=url, filename=filename, sha256=sha256, size=size)


def _filename_from_url(url: str) -> str:
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise UserInputError(f"not an http(s) URL: {url!r}")
    name = urllib.parse.unquote(parsed.path.rsplit("/", 1)[-1])
    # The name becomes a path under dest_dir, so it must not climb out of it.
    if not name or name in (".", "..") or "/" in name or "\\" in name:
        raise UserInputError(f"cannot tell a file name from URL {url!r}")
    return name


# --- one HTTP request --------------------------------------------------------------------------


def _request_into(
    part: Path, target: _Target, *, progress: bool, timeout: float, chunk_size: int
) -> tuple[int, str]:
    """Issue one GET (ranged if a .part exists) and stream the body into `part`.

    Returns the size and SHA-256 of the complete `part`; raises `_Dropped` for anything a
    later, resumed request may fix.
    """
    offset = part.stat().st_size if part.is_file() else 0
    headers = {
        "User-Agent": f"lowrankgan/{__version__}",
        # Byte offsets must refer to the stored bytes, not a compressed encoding of them.
        "Accept-Encoding": "identity",
    }
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(target.url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        with exc:
            if exc.code == 416 and offset:
                _check_complete(part, offset, exc.headers.get("Content-Range", ""))
                return _file_digest(part)
            if exc.code >= 500 or exc.code == 429:
                raise _Dropped(f"HTTP {exc.code} {exc.reason}") from exc
            raise UserInputError(
                f"cannot download {target.url}: HTTP {exc.code} {exc.reason}"
            ) from exc
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise _connect_error(target.url, exc) from exc

    with response:
        try:
            start, total = _body_range(response, offset)
        except _Dropped:
            part.unlink(missing_ok=True)  # the next attempt starts afresh instead of looping
            raise
        if target.size is not None and total is not None and total != target.size:
            # Fail before spending bandwidth on a file that cannot pass verification.
            part.unlink(missing_ok=True)
            raise UserInputError(
                f"size mismatch for {target.filename}: expected {target.size} bytes, "
                f"server offers {total}"
            )
        # Resuming: the digest must cover the bytes already on disk, so hash them first.
        hasher = _hash_file(part) if start else hashlib.sha256()
        written = _stream(
            response, part, start, total, hasher, target.filename, progress, chunk_size
        )
    return written, hasher.hexdigest()


def _body_range(response: http.client.HTTPResponse, offset: int) -> tuple[int, int | None]:
    """Where the body starts in the file, and the file's full size if the server says."""
    length = response.headers.get("Content-Length")
    if response.status == 206:
        match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
        if match is None or int(match.group(1)) != offset:
            # A range we did not ask for: appending it would corrupt the file.
            raise _Dropped("server answered with an unexpected byte range")
        return offset, None if match.group(3) == "*" else int(match.group(3))
    # 200: the server ignored Range (or none was sent), so the body is the whole file.
    return 0, int(length) if length and length.isdigit() else None


def _stream(
    response: http.client.HTTPResponse,
    part: Path,
    start: int,
    total: int | None,
    hasher: hashlib._Hash,
    filename: str,
    progress: bool,
    chunk_size: int,
) -> int:
    """Append (or, from 0, write) the body to `part`, hashing it; return the bytes now there."""
    written = start
    mode = "ab" if start else "wb"  # "wb" truncates a stale .part when the server restarts us
    bar = tqdm(
        total=total,
        initial=start,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=filename,
        disable=not progress,
        file=sys.stderr,
        leave=False,
    )
    try:
        # Unbuffered: chunks are large anyway, and a failed write then cannot resurface from a
        # buffer flush at close and hide the real error.
        with open(part, mode, buffering=0) as out:
            try:
                while chunk := _read_chunk(response, chunk_size, written):
                    _write(out, chunk, part)
                    hasher.update(chunk)
                    written += len(chunk)
                    bar.update(len(chunk))
            except BaseException:
                # Keep what arrived durable for the next attempt (or run), but report the
                # error that stopped us rather than a failing fsync.
                with contextlib.suppress(OSError):
                    os.fsync(out.fileno())
                raise
            os.fsync(out.fileno())
    finally:
        bar.close()
    if total is not None and written < total:
        raise _Dropped(f"connection closed after {written} of {total} bytes")
    return written


def _read_chunk(response: http.client.HTTPResponse, size: int, written: int) -> bytes:
    """The next piece of the body; a broken connection becomes a retryable `_Dropped`."""
    try:
        return response.read(size)
    except (http.client.HTTPException, OSError) as exc:
        raise _Dropped(f"connection lost after {written} bytes ({_reason(exc)})") from exc


def _write(out: io.RawIOBase, chunk: bytes, part: Path) -> None:
    # A full or read-only disk is the user's to fix, not a network hiccup to retry.
    view = memoryview(chunk)
    try:
        while view:  # raw writes may be partial
            count = out.write(view)
            view = view[count:]
    except OSError as exc:
        raise UserInputError(f"cannot write {part}: {_reason(exc)}") from exc


def _check_complete(part: Path, offset: int, content_range: str) -> None:
    """416: fine if the .part is already whole (an earlier run stopped before the rename)."""
    match = _UNSATISFIED_RANGE.fullmatch(content_range.strip())
    if match is not None and int(match.group(1)) == offset:
        return
    part.unlink(missing_ok=True)
    raise _Dropped("partial download no longer matches the server's file; restarting")


def _connect_error(url: str, exc: BaseException) -> Exception:
    """No response at all: offline-looking failures are final, transient ones retried."""
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, socket.gaierror | ConnectionRefusedError) or (
        isinstance(reason, OSError) and reason.errno in (101, 113)  # network/host unreachable
    ):
        return UserInputError(f"cannot download {url}: {_reason(reason)} ({_OFFLINE_HINT})")
    if isinstance(reason, str):  # e.g. "unknown url type": retrying cannot help
        return UserInputError(f"cannot download {url}: {reason}")
    return _Dropped(_reason(reason))


# --- verification --------------------------------------------------------------------------


def _verify(part: Path, target: _Target, size: int, digest: str) -> None:
    """Check the finished .part; on mismatch delete it (it can never become right)."""
    if target.size is not None and size != target.size:
        part.unlink(missing_ok=True)
        raise UserInputError(
            f"size mismatch for {target.filename}: expected {target.size} bytes, got {size}"
        )
    if target.sha256 is not None and digest != target.sha256:
        part.unlink(missing_ok=True)
        raise UserInputError(
            f"checksum mismatch for {target.filename}: expected sha256 {target.sha256}, "
            f"got {digest}"
        )


def _matches(path: Path, target: _Target) -> bool:
    """Whether an existing final file is the one we want (unpinned files are trusted)."""
    if target.size is not None and path.stat().st_size != target.size:
        return False
    if target.sha256 is None:
        # Only complete downloads are ever renamed into place, so the file is whole.
        return True
    return _file_digest(path)[1] == target.sha256


def _hash_file(path: Path, chunk_size: int = 1 << 20) -> hashlib._Hash:
    hasher = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(chunk_size):
            hasher.update(chunk)
    return hasher


def _file_digest(path: Path) -> tuple[int, str]:
    return path.stat().st_size, _hash_file(path).hexdigest()


def _reason(exc: object) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    if isinstance(exc, http.client.IncompleteRead):
        return "incomplete read"
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _say(message: str, progress: bool) -> None:
    log.info(message)
    if progress:
        tqdm.write(message, file=sys.stderr)
