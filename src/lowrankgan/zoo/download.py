"""Downloading checkpoints: the cache directory, resumable HTTP transfers and their verification.

This module owns getting bytes from a URL onto disk safely. A download streams into
`<dest>/<filename>.part` while hashing, resumes with a `Range` request after a dropped
connection (or from a `.part` left by an earlier run), checks the size and SHA-256 it was given,
and only then moves the file into place with an atomic rename, so a file under its final name is
always complete. What to download is decided by `lowrankgan.zoo.catalogue`.

A server is not trusted to behave. A body is never read past the size it must have (the pinned
size, else `limit("download_bytes")`), and a `Content-Length` / `Content-Range` announcing more
is refused before the body. Every request runs under the pacing constants below (tests lower
them): a stall (`STALL_TIMEOUT_S` without a byte) is retried like a dropped connection, while a
trickle (under `MIN_RATE_BYTES_S` over any `RATE_WINDOW_S`, headers included) or running past
`MAX_DOWNLOAD_S` in all ends the run with a one-line error, keeping the `.part` to resume.
Redirects are followed to http(s) URLs only, at most `MAX_REDIRECTS` of them. Partial and final
files are opened without following symbolic links (`O_NOFOLLOW`) and must be plain files; a
planted link or hard link is refused, never written through.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import functools
import hashlib
import http.client
import io
import logging
import os
import re
import socket
import stat
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from tqdm import tqdm

from lowrankgan.errors import UserInputError
from lowrankgan.limits import LIMITS, check_at_most, limit
from lowrankgan.version import __version__
from lowrankgan.zoo.catalogue import ZooEntry, zoo_entry

log = logging.getLogger(__name__)

#: Seconds to wait before the first retry; doubles per attempt (tests set it to 0).
RETRY_BACKOFF_S = 1.0
#: Seconds without a single byte from the server (connecting included) before a request is
#: abandoned and retried; `fetch(timeout=...)` overrides it for one call.
STALL_TIMEOUT_S = 30.0
#: The slowest transfer accepted: a request that receives fewer than
#: `MIN_RATE_BYTES_S * RATE_WINDOW_S` bytes in any `RATE_WINDOW_S` seconds (a byte trickle,
#: headers included) ends the download; 0 turns the check off.
MIN_RATE_BYTES_S = 4096
RATE_WINDOW_S = 60.0
#: Seconds one `fetch` may take in all, retries and back-off included.
MAX_DOWNLOAD_S = 6 * 3600.0
#: Redirects followed per request (each must lead to an http or https URL).
MAX_REDIRECTS = 5
_MAX_BACKOFF_S = 15.0
_OFFLINE_HINT = "offline? download it yourself and pass the path with --model"
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
_UNSATISFIED_RANGE = re.compile(r"bytes\s+\*/(\d+)")
_SCHEMES = ("http", "https")
# Never follow a symlink, never block on a FIFO, never leak the descriptor to a child.
_OPEN_FLAGS = (
    getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)
)


class _Dropped(Exception):
    """The transfer broke off in a way that a later (resumed) request may fix."""


class _OutOfTime(Exception):
    """Too slow, or past `MAX_DOWNLOAD_S`: final for this run (the .part stays for the next)."""


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
    timeout: float | None = None,
    chunk_size: int = 1 << 20,
    retries: int = 3,
) -> Path:
    """Download a zoo entry or URL into `dest_dir` (default: `cache_dir()`) and return its path.

    Explicit `expected_sha256` / `expected_size` override the zoo entry's. A file already in
    place with the right size and digest is returned without any request. `timeout` is the
    stall timeout in seconds (default `STALL_TIMEOUT_S`).
    """
    target = _target(entry_or_url, expected_sha256, expected_size)
    dest = Path(dest_dir).expanduser() if dest_dir is not None else cache_dir()
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserInputError(f"cannot create {dest}: {_reason(exc)}") from exc
    final = dest / target.filename
    part = dest / (target.filename + ".part")
    # Refuse planted links before any request (opening them later refuses them again).
    _check_plain(final)
    _check_plain(part)

    if final.is_file() and _matches(final, target):
        log.info("using cached %s", final)
        return final

    pace = _Pace(STALL_TIMEOUT_S if timeout is None else timeout)
    attempt = 0
    try:
        while True:
            try:
                size, digest, identity = _request_into(
                    part, target, pace=pace, progress=progress, chunk_size=chunk_size
                )
                break
            except _Dropped as exc:
                attempt += 1
                if attempt > retries:
                    raise UserInputError(
                        f"cannot download {target.url}: {exc} (gave up after {retries} retries; "
                        f"{_resume_hint(part)}, or {_OFFLINE_HINT})"
                    ) from exc
                delay = min(RETRY_BACKOFF_S * 2 ** (attempt - 1), _MAX_BACKOFF_S)
                _say(f"{target.filename}: {exc}; retrying ({attempt}/{retries})", progress)
                time.sleep(min(delay, pace.remaining()))
    except _OutOfTime as exc:
        raise UserInputError(
            f"cannot download {target.url}: {exc}; {_resume_hint(part)}, or {_OFFLINE_HINT}"
        ) from exc

    _check_still(part, identity)
    _verify(part, target, size, digest)
    try:
        os.replace(part, final)  # replaces a link planted at `final` itself, never its target
    except OSError as exc:
        raise UserInputError(f"cannot move {part.name} to {final}: {_reason(exc)}") from exc
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
        _check_scheme(url)
        sha256 = sha256 if sha256 is not None else entry_or_url.sha256
        size = size if size is not None else entry_or_url.size_bytes
    else:
        url, filename = entry_or_url, _filename_from_url(entry_or_url)
    if sha256 is not None:
        sha256 = sha256.strip().lower()
        if not re.fullmatch(r"[0-9a-f]{64}", sha256):
            raise UserInputError(f"not a SHA-256 hex digest: {sha256!r}")
    return _Target(url=url, filename=filename, sha256=sha256, size=size)


def _check_scheme(url: str) -> urllib.parse.SplitResult:
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in _SCHEMES or not parsed.netloc:
        raise UserInputError(f"not an http(s) URL: {url!r}")
    return parsed


def _filename_from_url(url: str) -> str:
    parsed = _check_scheme(url)
    name = urllib.parse.unquote(parsed.path.rsplit("/", 1)[-1])
    # The name becomes a path under dest_dir, so it must not climb out of it.
    if not name or name in (".", "..") or "/" in name or "\\" in name:
        raise UserInputError(f"cannot tell a file name from URL {url!r}")
    return name


# --- one HTTP request --------------------------------------------------------------------------


def _request_into(
    part: Path, target: _Target, *, pace: _Pace, progress: bool, chunk_size: int
) -> tuple[int, str, tuple[int, int]]:
    """Issue one GET (ranged if a .part exists) and stream the body into `part`.

    Returns the size and SHA-256 of the complete `part`, and its (device, inode); raises
    `_Dropped` for anything a later, resumed request may fix.
    """
    with contextlib.ExitStack() as stack:
        out = _open_part(part, create=False)
        if out is not None:
            stack.enter_context(out)
            # Resuming: the digest must cover the bytes already on disk. Hash them before the
            # request, so the server is not kept waiting (and the pacing clock is fair).
            offset, hasher = _hash_open(out)
            if target.size is not None and offset > target.size:
                offset, hasher = _restart(out)  # longer than the file can be: start afresh
        else:
            offset, hasher = 0, hashlib.sha256()
        headers = {
            "User-Agent": f"lowrankgan/{__version__}",
            # Byte offsets must refer to the stored bytes, not a compressed encoding of them.
            "Accept-Encoding": "identity",
        }
        if offset:
            headers["Range"] = f"bytes={offset}-"
        request = urllib.request.Request(target.url, headers=headers)
        pace.restart()
        try:
            response = _opener(pace, target.url).open(
                request, timeout=min(pace.stall_s, pace.remaining())
            )
        except urllib.error.HTTPError as exc:
            with exc:
                if exc.code == 416 and out is not None and offset:
                    _check_complete(part, offset, exc.headers.get("Content-Range", ""))
                    return offset, hasher.hexdigest(), _identity(out)
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
            cap = _check_announced(response, part, target, start, total)
            if out is None:
                out = stack.enter_context(_open_part(part, create=True))
            elif start == 0 and offset:
                hasher = _restart(out)[1]  # the server sent the whole file: truncate the .part
            written = _stream(
                response, out, part, start, total, cap, target, hasher, progress, chunk_size
            )
        return written, hasher.hexdigest(), _identity(out)


def _opener(pace: _Pace, url: str) -> urllib.request.OpenerDirector:
    """urllib's default opener, minus ftp/file/data, with paced connections and safe redirects."""
    opener = urllib.request.OpenerDirector()
    handlers: list[urllib.request.BaseHandler] = [
        urllib.request.ProxyHandler(),
        urllib.request.UnknownHandler(),
        _PacedHTTPHandler(pace),
        urllib.request.HTTPDefaultErrorHandler(),
        _RedirectHandler(url),
        urllib.request.HTTPErrorProcessor(),
    ]
    if _PacedHTTPSHandler is not None:
        handlers.append(_PacedHTTPSHandler(pace))
    for handler in handlers:
        opener.add_handler(handler)
    return opener


def _body_range(response: http.client.HTTPResponse, offset: int) -> tuple[int, int | None]:
    """Where the body starts in the file, and the file's full size if the server says."""
    if response.status == 206:
        match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
        if match is None or int(match.group(1)) != offset:
            # A range we did not ask for: appending it would corrupt the file.
            raise _Dropped("server answered with an unexpected byte range")
        return offset, None if match.group(3) == "*" else int(match.group(3))
    # 200: the server ignored Range (or none was sent), so the body is the whole file.
    return 0, _content_length(response)


def _content_length(response: http.client.HTTPResponse) -> int | None:
    length = response.headers.get("Content-Length", "").strip()
    return int(length) if length.isdigit() else None


def _check_announced(
    response: http.client.HTTPResponse,
    part: Path,
    target: _Target,
    start: int,
    total: int | None,
) -> int:
    """Refuse, before the body, a file larger than it may be; return the most bytes to accept."""
    length = _content_length(response)
    end = None if length is None else start + length  # where this body would end
    if target.size is not None:
        offered = None
        if total is not None and total != target.size:
            offered = total
        elif end is not None and end > target.size:
            offered = end
        if offered is not None:
            # Fail before spending bandwidth on a file that cannot pass verification.
            part.unlink(missing_ok=True)
            raise UserInputError(
                f"size mismatch for {target.filename}: expected {target.size} bytes, "
                f"server offers {offered}"
            )
        return target.size
    for announced in (total, end):
        if announced is not None:
            check_at_most(announced, "download_bytes", f"the download of {target.filename}")
    return limit("download_bytes")


def _stream(
    response: http.client.HTTPResponse,
    out: io.FileIO,
    part: Path,
    start: int,
    total: int | None,
    cap: int,
    target: _Target,
    hasher: hashlib._Hash,
    progress: bool,
    chunk_size: int,
) -> int:
    """Append the body to `out` (positioned at `start`), hashing it, never past `cap` bytes in
    all; return the bytes now there."""
    written = start
    bar = tqdm(
        total=total,
        initial=start,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=target.filename,
        disable=not progress,
        file=sys.stderr,
        leave=False,
    )
    try:
        try:
            # One byte past `cap` is asked for, to tell "exactly cap" from "more than cap".
            while chunk := _read_chunk(response, min(chunk_size, cap + 1 - written), written):
                if written + len(chunk) > cap:
                    raise _too_big(part, target, cap)
                _write(out, chunk, part)
                hasher.update(chunk)
                written += len(chunk)
                bar.update(len(chunk))
        except BaseException:
            # Keep what arrived durable for the next attempt (or run), but report the error
            # that stopped us rather than a failing fsync.
            with contextlib.suppress(OSError):
                os.fsync(out.fileno())
            raise
        os.fsync(out.fileno())
    finally:
        bar.close()
    if total is not None and written < total:
        raise _Dropped(f"connection closed after {written} of {total} bytes")
    return written


def _too_big(part: Path, target: _Target, cap: int) -> UserInputError:
    if target.size is not None:
        part.unlink(missing_ok=True)  # it can never verify
        return UserInputError(
            f"size mismatch for {target.filename}: expected {target.size} bytes, server sent more"
        )
    return UserInputError(
        f"the download of {target.filename} is over the limit of {cap} bytes for a file of "
        f"unknown size (raise it with {LIMITS['download_bytes'].env_var})"
    )


def _read_chunk(response: http.client.HTTPResponse, size: int, written: int) -> bytes:
    """The next piece of the body; a broken connection becomes a retryable `_Dropped`.

    `read1` returns what has arrived (at most `size` bytes) instead of waiting for `size`, so
    bytes received before a stall are written, and resumed from, rather than lost.
    """
    try:
        return response.read1(size)
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


def _resume_hint(part: Path) -> str:
    return f"run again to resume from {part.name}" if part.is_file() else "try later"


# --- pacing: stalls, trickles and the overall deadline -------------------------------------------


class _Pace:
    """The clocks of one `fetch`: the overall deadline, and per request the last byte seen
    (stall) and the bytes received in the current rate window."""

    def __init__(self, stall_s: float) -> None:
        self.stall_s = stall_s
        self.min_rate = MIN_RATE_BYTES_S
        self.window_s = RATE_WINDOW_S
        self.max_s = MAX_DOWNLOAD_S
        self.deadline = time.monotonic() + self.max_s
        self.restart()

    def restart(self) -> None:
        """A new request: its stall and rate clocks start now."""
        self.last_byte = self.window_start = time.monotonic()
        self.window_bytes = 0

    def remaining(self) -> float:
        """Seconds left before the deadline; raises `_OutOfTime` once it has passed."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise _OutOfTime(f"not finished after {self.max_s:g} s")
        return left

    def wait(self) -> float:
        """How long the next read may block; raises once a limit has been passed."""
        left = self.remaining()
        now = time.monotonic()
        if now >= self.window_start + self.window_s:
            if self.window_bytes < self.min_rate * self.window_s:
                raise _OutOfTime(
                    f"too slow: {self.window_bytes} bytes in {self.window_s:g} s, under the "
                    f"minimum of {self.min_rate:g} bytes/s"
                )
            self.window_start, self.window_bytes = now, 0
        if now >= self.last_byte + self.stall_s:
            raise TimeoutError(f"no data for {self.stall_s:g} s")  # an OSError: retried
        until = min(self.window_start + self.window_s, self.last_byte + self.stall_s)
        return max(min(left, until - now), 1e-3)

    def received(self, count: int) -> None:
        if count:
            self.last_byte = time.monotonic()
            self.window_bytes += count


class _PacedReader(io.RawIOBase):
    """A socket's raw reader whose every wait ends at the next limit of its `_Pace`.

    A plain socket timeout restarts with each byte, so a server sending one byte every few
    seconds (in its headers or its body) would never trip it.
    """

    def __init__(self, sock: socket.socket, pace: _Pace) -> None:
        super().__init__()
        # The socket's own reader is held (never read) so that, like any socket file, this one
        # keeps the socket open until it is closed: urllib closes the socket under a response.
        self._hold = sock.makefile("rb", buffering=0)
        self._sock = sock
        self._pace = pace

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:
        while True:
            self._sock.settimeout(self._pace.wait())
            try:
                count = self._sock.recv_into(buffer)
            except TimeoutError:
                continue  # `wait` decides whether that was a limit or just a checkpoint
            self._pace.received(count)
            return count

    def close(self) -> None:
        if not self.closed:
            self._hold.close()
        super().close()


class _PacedSocket:
    """A connected socket whose reader (what http.client reads responses from) is paced."""

    def __init__(self, sock: socket.socket, pace: _Pace) -> None:
        self._sock = sock
        self._pace = pace

    def makefile(self, mode: str = "r", *args: object, **kwargs: object) -> object:
        if mode != "rb":
            return self._sock.makefile(mode, *args, **kwargs)
        return io.BufferedReader(_PacedReader(self._sock, self._pace))

    def __getattr__(self, name: str) -> object:
        return getattr(self._sock, name)


class _PacedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, *args: object, pace: _Pace, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self._pace = pace

    def connect(self) -> None:
        super().connect()  # TCP, any proxy tunnel and (for https) TLS
        self.sock = _PacedSocket(self.sock, self._pace)


class _Paced:
    """Mixin for urllib's HTTP(S) handlers: their connections read through a `_Pace`."""

    connection: type[http.client.HTTPConnection]

    def __init__(self, pace: _Pace) -> None:
        super().__init__()
        self._pace = pace

    def do_open(self, http_class, req, **kwargs):
        paced = functools.partial(self.connection, pace=self._pace)
        return super().do_open(paced, req, **kwargs)


class _PacedHTTPHandler(_Paced, urllib.request.HTTPHandler):
    connection = _PacedHTTPConnection


_PacedHTTPSHandler = None
if hasattr(http.client, "HTTPSConnection"):  # Python built with ssl

    class _PacedHTTPSConnection(_PacedHTTPConnection, http.client.HTTPSConnection):
        pass

    class _PacedHTTPSHandler(_Paced, urllib.request.HTTPSHandler):  # noqa: F811 - None without ssl
        connection = _PacedHTTPSConnection


class _RedirectHandler(urllib.request.HTTPRedirectHandler):
    """Follows at most `MAX_REDIRECTS` redirects, to http(s) URLs only, never reading a
    redirect's body."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._most = MAX_REDIRECTS
        # Our count is checked first; urllib's own loop errors span several lines.
        self.max_redirections = self.max_repeats = self._most + 1

    def http_error_302(self, req, fp, code, msg, headers):
        location = headers.get("location") or headers.get("uri")
        if location is None:
            return None  # not a redirect we can follow: reported as the HTTP error it is
        fp.close()  # urllib would read the whole body first, however large
        newurl = urllib.parse.urljoin(req.full_url, location.strip())
        if urllib.parse.urlsplit(newurl).scheme.lower() not in _SCHEMES:
            raise UserInputError(
                f"cannot download {self._url}: redirected to {newurl[:200]!r}; "
                "only http and https redirects are followed"
            )
        if sum(getattr(req, "redirect_dict", {}).values()) >= self._most:
            raise UserInputError(f"cannot download {self._url}: more than {self._most} redirects")
        return super().http_error_302(req, fp, code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302


# --- files: never through a link -----------------------------------------------------------------


def _check_plain(path: Path) -> None:
    """Refuse `path` if it is a symbolic link or anything but a regular file (missing is fine)."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise UserInputError(f"cannot use {path}: {_reason(exc)}") from exc
    if stat.S_ISLNK(info.st_mode):
        raise UserInputError(
            f"refusing to use {path}: it is a symbolic link (remove it and run again)"
        )
    if not stat.S_ISREG(info.st_mode):
        raise UserInputError(f"refusing to use {path}: it is not a regular file")


def _open_plain(path: Path, flags: int, *, single_link: bool) -> io.FileIO:
    """`os.open` without following a symbolic link, checked to be a regular file (and with
    `single_link`, not hard-linked elsewhere) before anything is read or written."""
    try:
        fd = os.open(path, flags | _OPEN_FLAGS, 0o644)
    except FileNotFoundError:
        raise
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EEXIST):
            _check_plain(path)  # a link (ELOOP; EEXIST under O_EXCL) is refused here
        if exc.errno == errno.EEXIST:
            raise UserInputError(
                f"refusing to use {path}: it appeared during the download "
                "(is another download running?)"
            ) from exc
        raise UserInputError(f"cannot open {path}: {_reason(exc)}") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UserInputError(f"refusing to use {path}: it is not a regular file")
        if single_link and info.st_nlink > 1:
            raise UserInputError(
                f"refusing to use {path}: it has other hard links (remove it and run again)"
            )
        return open(fd, "r+b" if flags & os.O_RDWR else "rb", buffering=0)  # noqa: SIM115
    except BaseException:
        os.close(fd)
        raise


def _open_part(part: Path, *, create: bool) -> io.FileIO | None:
    """The .part for reading and writing: an existing one (None if there is none), or with
    `create` a new one that must not exist yet (`O_EXCL` never follows a link either)."""
    flags = os.O_RDWR | (os.O_CREAT | os.O_EXCL if create else 0)
    try:
        return _open_plain(part, flags, single_link=True)
    except FileNotFoundError:
        if create:
            raise UserInputError(f"cannot create {part}: its folder disappeared") from None
        return None


def _hash_open(stream: io.FileIO, chunk_size: int = 1 << 20) -> tuple[int, hashlib._Hash]:
    """Size and SHA-256 of an open file, read from its start; leaves it positioned at its end."""
    stream.seek(0)
    hasher = hashlib.sha256()
    size = 0
    while chunk := stream.read(chunk_size):
        hasher.update(chunk)
        size += len(chunk)
    return size, hasher


def _restart(stream: io.FileIO) -> tuple[int, hashlib._Hash]:
    stream.truncate(0)
    stream.seek(0)
    return 0, hashlib.sha256()


def _identity(stream: io.FileIO) -> tuple[int, int]:
    info = os.fstat(stream.fileno())
    return info.st_dev, info.st_ino


def _check_still(part: Path, identity: tuple[int, int]) -> None:
    """The .part about to be renamed is still the file we wrote, not something swapped in."""
    try:
        info = os.lstat(part)
    except OSError:
        info = None
    if info is None or not stat.S_ISREG(info.st_mode) or (info.st_dev, info.st_ino) != identity:
        part.unlink(missing_ok=True)  # a link is removed, never followed
        raise UserInputError(f"refusing to use {part}: it was replaced during the download")


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
    with _open_plain(path, os.O_RDONLY, single_link=False) as stream:
        if target.size is not None and os.fstat(stream.fileno()).st_size != target.size:
            return False
        if target.sha256 is None:
            # Only complete downloads are ever renamed into place, so the file is whole.
            return True
        return _hash_open(stream)[1].hexdigest() == target.sha256


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
