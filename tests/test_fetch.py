"""The downloader against an in-process HTTP server on 127.0.0.1, and the zoo catalogue.

The server serves one fixed random payload under paths that pick its behaviour: /ok/ (honours
Range), /drop-once/ (first request breaks off half-way), /drop-always/, /norange/ (ignores
Range), /flaky503/ (first request fails with 503), /plant/ (like /ok/, after planting a symlink
where the client keeps its .part); anything else is a 404. Hostile modes (see `_Handler`) each
give up after `HOSTILE_S` seconds or when the client hangs up, so every handler stops by itself.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import select
import socket
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from hostile import ENV, assert_refused, run_console, tree
from lowrankgan.errors import UserInputError
from lowrankgan.zoo import download as fetch_mod
from lowrankgan.zoo.catalogue import ZOO, ZooEntry, list_zoo, zoo_entry
from lowrankgan.zoo.download import cache_dir, fetch, fetch_model

PAYLOAD = np.random.default_rng(1234).integers(0, 256, 3 * 1024 * 1024, dtype=np.uint8).tobytes()
SHA = hashlib.sha256(PAYLOAD).hexdigest()
CUT = 1024 * 1024 + 17  # where interrupted transfers break off; deliberately not chunk-aligned
CHUNK = 64 * 1024
HOSTILE_S = 3.0  # the longest any hostile handler keeps at it
FIREHOSE_BYTES = 64 * 1024 * 1024  # what an "endless" body sends at most
DRIP_S = 0.05  # between the bytes of a trickle


@dataclass
class Seen:
    """One request as the server saw it."""

    path: str
    range: str | None
    status: int
    body_bytes: int = 0


@dataclass
class ServerState:
    base: str
    seen: list[Seen] = field(default_factory=list)
    hits: dict[str, int] = field(default_factory=dict)

    def url(self, mode: str, name: str = "weights.pkl") -> str:
        return f"{self.base}/{mode}/{name}"


class _Handler(BaseHTTPRequestHandler):
    state: ServerState  # set on the subclass made per server

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib name
        pass  # keep pytest output clean

    def do_CONNECT(self) -> None:  # noqa: N802 - stdlib name
        # Used as the proxy of console runs: a request that should never have been made.
        self.state.seen.append(Seen(self.path, None, 403))
        self.send_error(403, "Forbidden")

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        parts = urllib.parse.urlsplit(self.path)
        mode = parts.path.strip("/").split("/")[0]
        query = {k: v[0] for k, v in urllib.parse.parse_qs(parts.query).items()}
        hit = self.state.hits[mode] = self.state.hits.get(mode, 0) + 1
        seen = Seen(self.path, self.headers.get("Range"), 200)
        self.state.seen.append(seen)
        hostile = getattr(self, "_" + mode.replace("-", "_"), None)
        if hostile is not None:
            self.close_connection = True
            hostile(seen, query)
            return
        if mode == "plant":  # a symlink appears where the client keeps its .part
            link = Path(query["link"])
            if query.get("swap"):
                os.symlink(query["to"], f"{link}.tmp")
                os.replace(f"{link}.tmp", link)
            else:
                os.symlink(query["to"], link)
            mode = "ok"
        if mode not in ("ok", "drop-once", "drop-always", "norange", "flaky503"):
            seen.status = 404
            self.send_error(404, "Not Found")
            return
        if mode == "flaky503" and hit == 1:
            seen.status = 503
            self.send_error(503, "Service Unavailable")
            return
        start = 0
        if seen.range and mode != "norange":
            start = int(seen.range.removeprefix("bytes=").split("-")[0])
            if start >= len(PAYLOAD):
                seen.status = 416
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(PAYLOAD)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            seen.status = 206
        body = PAYLOAD[start:]
        self.send_response(seen.status)
        if seen.status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if mode == "drop-always" or (mode == "drop-once" and hit == 1):
            # Promise the whole body, send part of it, hang up: a dropped connection.
            body = body[: max(CUT - start, 1)]
            self.close_connection = True
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the client refused the body
            return
        seen.body_bytes = len(body)

    # --- hostile modes: each stops after HOSTILE_S seconds or when the client hangs up -----

    def _send(self, data: bytes, seen: Seen) -> bool:
        try:
            self.wfile.write(data)
        except OSError:  # the client hung up: what a refusal looks like from here
            return False
        seen.body_bytes += len(data)
        return True

    def _headers(self, status: int, **fields: object) -> None:
        self.send_response(status)
        for name, value in fields.items():
            self.send_header(name.replace("_", "-"), str(value))
        self.end_headers()

    def _endless(self, seen: Seen, first: bytes = b"") -> None:
        """`first`, then zeros until FIREHOSE_BYTES have gone out."""
        if not self._send(first, seen):
            return
        block = bytes(CHUNK)
        while seen.body_bytes < FIREHOSE_BYTES and self._send(block, seen):
            pass

    def _trickle(self, data: bytes, seen: Seen) -> None:
        """`data` one byte per DRIP_S, for HOSTILE_S at most."""
        give_up = time.monotonic() + HOSTILE_S
        for i in range(len(data)):
            if time.monotonic() > give_up or not self._send(data[i : i + 1], seen):
                return
            time.sleep(DRIP_S)

    def _firehose(self, seen: Seen, query: dict[str, str]) -> None:
        # No Content-Length: the body would only end when the server closes.
        self._headers(200)
        self._endless(seen, PAYLOAD)

    def _overrange(self, seen: Seen, query: dict[str, str]) -> None:
        # Resumes with the right Content-Range, but a body 1 MiB longer than the file.
        start = int((seen.range or "bytes=0-").removeprefix("bytes=").split("-")[0])
        seen.status = 206
        extra = 1 << 20
        self._headers(
            206,
            Content_Range=f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}",
            Content_Length=len(PAYLOAD) - start + extra,
        )
        if self._send(PAYLOAD[start:], seen):
            self._send(bytes(extra), seen)

    def _drip(self, seen: Seen, query: dict[str, str]) -> None:
        self._headers(200, Content_Length=len(PAYLOAD))
        self._trickle(PAYLOAD, seen)

    def _drip_headers(self, seen: Seen, query: dict[str, str]) -> None:
        self._trickle(b"HTTP/1.0 200 OK\r\nX-Slow: " + b"z" * 60_000, seen)

    def _stall(self, seen: Seen, query: dict[str, str]) -> None:
        # 1000 bytes, then silence until the client hangs up (or HOSTILE_S passes).
        self._headers(200, Content_Length=len(PAYLOAD))
        if self._send(PAYLOAD[:1000], seen):
            select.select([self.connection], [], [], HOSTILE_S)

    def _goto(self, seen: Seen, query: dict[str, str]) -> None:
        seen.status = 302
        self._headers(302, Location=query["to"], Content_Length=0)

    def _goto_fat(self, seen: Seen, query: dict[str, str]) -> None:
        # A redirect whose body would never end: the client must not read it.
        seen.status = 302
        self._headers(302, Location=query["to"], Content_Length=1 << 40)
        self._endless(seen)

    def _loop(self, seen: Seen, query: dict[str, str]) -> None:
        hop = int(query.get("n", "0"))
        if hop >= 50:
            seen.status = 404
            self.send_error(404, "Not Found")
            return
        seen.status = 302
        self._headers(302, Location=f"/loop/weights.pkl?n={hop + 1}", Content_Length=0)


@pytest.fixture(scope="module")
def server() -> Iterator[ServerState]:
    state = ServerState(base="")
    handler = type("Handler", (_Handler,), {"state": state})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    state.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def srv(server: ServerState, monkeypatch: pytest.MonkeyPatch) -> ServerState:
    """The shared server with a fresh request log, and no back-off sleeps between retries."""
    server.seen.clear()
    server.hits.clear()
    monkeypatch.setattr(fetch_mod, "RETRY_BACKOFF_S", 0.0)
    return server


def _get(url: str, dest: Path, **kw: object) -> Path:
    kw.setdefault("progress", False)
    return fetch(url, dest_dir=dest, chunk_size=CHUNK, timeout=5, **kw)


def test_plain_download(srv: ServerState, tmp_path: Path) -> None:
    path = _get(srv.url("ok"), tmp_path, expected_sha256=SHA, expected_size=len(PAYLOAD))
    assert path == tmp_path / "weights.pkl"
    assert path.read_bytes() == PAYLOAD
    assert not (tmp_path / "weights.pkl.part").exists()
    assert [s.range for s in srv.seen] == [None]


def test_progress_bar_and_unverified_report(
    srv: ServerState, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _get(srv.url("ok"), tmp_path, progress=True)
    assert path.read_bytes() == PAYLOAD
    err = capsys.readouterr().err
    assert SHA in err and "unverified" in err and str(len(PAYLOAD)) in err


def test_dropped_connection_is_resumed_with_range(srv: ServerState, tmp_path: Path) -> None:
    path = _get(srv.url("drop-once"), tmp_path, expected_sha256=SHA)
    assert path.read_bytes() == PAYLOAD
    assert [s.range for s in srv.seen] == [None, f"bytes={CUT}-"]
    assert srv.seen[1].status == 206
    assert srv.seen[1].body_bytes == len(PAYLOAD) - CUT


def test_resume_from_part_left_by_earlier_run(srv: ServerState, tmp_path: Path) -> None:
    have = 2 * 1024 * 1024
    (tmp_path / "weights.pkl.part").write_bytes(PAYLOAD[:have])
    path = _get(srv.url("ok"), tmp_path, expected_sha256=SHA, expected_size=len(PAYLOAD))
    assert path.read_bytes() == PAYLOAD
    assert [s.range for s in srv.seen] == [f"bytes={have}-"]
    assert srv.seen[0].body_bytes == len(PAYLOAD) - have


def test_complete_part_gets_416_and_is_finalised(srv: ServerState, tmp_path: Path) -> None:
    (tmp_path / "weights.pkl.part").write_bytes(PAYLOAD)
    path = _get(srv.url("ok"), tmp_path, expected_sha256=SHA)
    assert path.read_bytes() == PAYLOAD
    assert [s.status for s in srv.seen] == [416]


def test_server_ignoring_range_restarts_cleanly(srv: ServerState, tmp_path: Path) -> None:
    # Wrong bytes in the .part prove it was truncated rather than appended to.
    (tmp_path / "weights.pkl.part").write_bytes(b"\0" * 1000)
    path = _get(srv.url("norange"), tmp_path, expected_sha256=SHA)
    assert path.read_bytes() == PAYLOAD
    assert [(s.range, s.status) for s in srv.seen] == [("bytes=1000-", 200)]


def test_wrong_checksum_leaves_nothing(srv: ServerState, tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="checksum mismatch for weights.pkl") as info:
        _get(srv.url("ok"), tmp_path, expected_sha256="0" * 64)
    assert SHA in str(info.value) and "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_wrong_size_fails_before_the_body(srv: ServerState, tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="size mismatch"):
        _get(srv.url("ok"), tmp_path, expected_size=123)
    assert list(tmp_path.iterdir()) == []


def test_http_404(srv: ServerState, tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="HTTP 404"):
        _get(srv.url("nope"), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_server_error_is_retried(srv: ServerState, tmp_path: Path) -> None:
    path = _get(srv.url("flaky503"), tmp_path, expected_sha256=SHA)
    assert path.read_bytes() == PAYLOAD
    assert [s.status for s in srv.seen] == [503, 200]


def test_gives_up_after_retries_and_keeps_part(srv: ServerState, tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="gave up after 2 retries") as info:
        _get(srv.url("drop-always"), tmp_path, retries=2)
    assert "resume" in str(info.value) and "\n" not in str(info.value)
    assert len(srv.seen) == 3
    assert not (tmp_path / "weights.pkl").exists()
    # Each retry resumed and kept its one extra byte: the .part is an exact prefix.
    assert (tmp_path / "weights.pkl.part").read_bytes() == PAYLOAD[: CUT + 2]
    assert [s.range for s in srv.seen] == [None, f"bytes={CUT}-", f"bytes={CUT + 1}-"]


def test_connection_refused_says_offline(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(UserInputError, match="offline") as info:
        _get(f"http://127.0.0.1:{port}/weights.pkl", tmp_path)
    message = str(info.value)
    assert message.startswith(f"cannot download http://127.0.0.1:{port}/weights.pkl: ")
    assert "--model" in message and "\n" not in message
    assert list(tmp_path.iterdir()) == []


def test_cached_file_is_returned_without_a_request(srv: ServerState, tmp_path: Path) -> None:
    (tmp_path / "weights.pkl").write_bytes(PAYLOAD)
    assert _get(srv.url("ok"), tmp_path, expected_sha256=SHA) == tmp_path / "weights.pkl"
    assert _get(srv.url("ok"), tmp_path) == tmp_path / "weights.pkl"
    assert srv.seen == []


def test_stale_cached_file_is_replaced(srv: ServerState, tmp_path: Path) -> None:
    (tmp_path / "weights.pkl").write_bytes(b"old")
    path = _get(srv.url("ok"), tmp_path, expected_sha256=SHA)
    assert path.read_bytes() == PAYLOAD
    assert len(srv.seen) == 1


def test_bad_urls_and_digests(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="not an http"):
        _get("ftp://example.org/a.pkl", tmp_path)
    with pytest.raises(UserInputError, match="file name"):
        _get("https://example.org/", tmp_path)
    with pytest.raises(UserInputError, match="SHA-256"):
        _get("https://example.org/a.pkl", tmp_path, expected_sha256="xyz")


def test_cache_dir_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOWRANKGAN_CACHE", str(tmp_path / "mine"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "mine" and (tmp_path / "mine").is_dir()
    monkeypatch.delenv("LOWRANKGAN_CACHE")
    assert cache_dir() == tmp_path / "xdg" / "lowrankgan"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "lowrankgan"


def test_fetch_model_uses_the_cache(
    srv: ServerState, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entry = ZooEntry(
        name="local-test",
        family="stylegan2",
        url=srv.url("ok", "local.pkl"),
        filename="local.pkl",
        size_bytes=len(PAYLOAD),
        sha256=SHA,
        resolution=256,
        dataset="noise",
        format="nvidia-pkl",
        licence="test",
    )
    monkeypatch.setitem(ZOO, entry.name, entry)
    monkeypatch.setenv("LOWRANKGAN_CACHE", str(tmp_path / "cache"))
    path = fetch_model("local-test", progress=False)
    assert path == tmp_path / "cache" / "local.pkl" and path.read_bytes() == PAYLOAD
    assert fetch_model("Local-Test", progress=False) == path  # cached: no second request
    assert len(srv.seen) == 1


def test_zoo_catalogue_is_consistent() -> None:
    entries = list_zoo()
    assert len(entries) == len(ZOO) >= 17
    assert len({e.name for e in entries}) == len(entries)
    cache_paths = [(e.folder, f.filename) for e in entries for f in (e, *e.companions)]
    assert len(set(cache_paths)) == len(cache_paths)  # no two downloads share a cache path
    for e in entries:
        parsed = urllib.parse.urlsplit(e.url)
        assert parsed.scheme == "https", e.name
        if e.family == "biggan":  # saved under plain names whatever the mirror calls them
            assert parsed.path.endswith(e.filename) and e.format == "biggan-hf"
            continue
        assert parsed.path.rsplit("/", 1)[-1] == e.filename, e.name
        assert e.family == "stylegan2" and e.format in ("nvidia-pkl", "tf-pkl")
        assert e.sha256 is None or len(e.sha256) == 64 and e.sha256 == e.sha256.lower()
        assert e.size_bytes is None or e.size_bytes > 100_000_000
        assert e.name.endswith("-tf") == (e.format == "tf-pkl")
        assert str(e.resolution) in e.name and e.licence
    assert zoo_entry("church-256-tf").resolution == 256
    assert zoo_entry("car-512-tf").filename == "stylegan2-car-config-f.pkl"
    assert zoo_entry("ffhq-1024").url.startswith("https://api.ngc.nvidia.com/")


def test_unknown_zoo_name_suggests_close_matches() -> None:
    with pytest.raises(UserInputError, match="did you mean .*ffhq-1024") as info:
        zoo_entry("ffhq1024")
    assert "\n" not in str(info.value)
    with pytest.raises(UserInputError, match="lowrankgan models"):
        zoo_entry("zzzzzz")


def test_fetch_model_downloads_companions_into_a_folder(
    srv: ServerState, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def file(filename: str, served_as: str) -> ZooEntry:
        return ZooEntry(
            name="local-biggan",
            family="biggan",
            url=srv.url("ok", served_as),
            filename=filename,
            size_bytes=len(PAYLOAD),
            sha256=SHA,
            resolution=128,
            dataset="noise",
            format="biggan-hf",
            licence="test",
        )

    entry = dataclasses.replace(
        file("pytorch_model.bin", "biggan-deep-128-pytorch_model.bin"),
        companions=(file("config.json", "biggan-deep-128-config.json"),),
        folder="local-biggan",
    )
    monkeypatch.setitem(ZOO, entry.name, entry)
    monkeypatch.setenv("LOWRANKGAN_CACHE", str(tmp_path / "cache"))
    folder = fetch_model("local-biggan", progress=False)
    assert folder == tmp_path / "cache" / "local-biggan"
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "pytorch_model.bin"]
    assert (folder / "config.json").read_bytes() == PAYLOAD


def test_biggan_zoo_entries_fetch_both_files():
    for size in (128, 256, 512):
        entry = zoo_entry(f"biggan-deep-{size}")
        assert entry.folder == f"biggan-deep-{size}" and entry.format == "biggan-hf"
        assert [f.filename for f in (entry, *entry.companions)] == [
            "pytorch_model.bin",
            "config.json",
        ]
        assert all(f.url.startswith("https://") for f in (entry, *entry.companions))


# --- hostile servers ---------------------------------------------------------------------------


@pytest.fixture
def fast(srv: ServerState, monkeypatch: pytest.MonkeyPatch) -> ServerState:
    """The server, with pacing limits tight enough to trip within a second."""
    monkeypatch.setattr(fetch_mod, "STALL_TIMEOUT_S", 1.0)
    monkeypatch.setattr(fetch_mod, "RATE_WINDOW_S", 0.4)
    monkeypatch.setattr(fetch_mod, "MIN_RATE_BYTES_S", 1000)
    return srv


def _refused(match: str, url: str, dest: Path, seconds: float = 2.5, **kw: object) -> str:
    """`fetch` raises a one-line UserInputError matching `match` within `seconds`, leaving
    nothing under the final name."""
    kw.setdefault("progress", False)
    start = time.monotonic()
    with pytest.raises(UserInputError, match=match) as info:
        fetch(url, dest_dir=dest, chunk_size=CHUNK, **kw)
    elapsed = time.monotonic() - start
    message = str(info.value)
    assert "\n" not in message, message
    assert elapsed < seconds, f"{elapsed:.1f} s: {message}"
    assert not (dest / "weights.pkl").exists() and not (dest / "weights.pkl").is_symlink()
    return message


def test_body_is_cut_at_the_known_size(srv: ServerState, tmp_path: Path) -> None:
    # No Content-Length, and the body goes on past the file: reading stops at the pinned size.
    _refused(
        "size mismatch .*server sent more",
        srv.url("firehose"),
        tmp_path,
        expected_size=len(PAYLOAD),
    )
    assert list(tmp_path.iterdir()) == []  # an oversized .part can never verify: deleted


def test_unknown_size_is_capped_by_the_download_limit(
    srv: ServerState, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOWRANKGAN_MAX_DOWNLOAD_BYTES", str(1 << 20))
    message = _refused("over the limit of 1048576 bytes", srv.url("firehose"), tmp_path)
    assert "LOWRANKGAN_MAX_DOWNLOAD_BYTES" in message
    # No more than the limit reached the disk (kept, to resume under a raised limit).
    kept = (tmp_path / "weights.pkl.part").read_bytes()
    assert 0 < len(kept) <= 1 << 20 and PAYLOAD.startswith(kept)


def test_announced_size_over_the_limit_is_refused_before_the_body(
    srv: ServerState, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOWRANKGAN_MAX_DOWNLOAD_BYTES", str(1 << 20))
    _refused(
        "is 3 MiB, over the limit of 1 MiB .*LOWRANKGAN_MAX_DOWNLOAD_BYTES", srv.url("ok"), tmp_path
    )
    assert list(tmp_path.iterdir()) == []


def test_resumed_body_longer_than_the_file_is_refused_up_front(
    srv: ServerState, tmp_path: Path
) -> None:
    have = 2 * 1024 * 1024
    (tmp_path / "weights.pkl.part").write_bytes(PAYLOAD[:have])
    _refused(
        f"server offers {len(PAYLOAD) + (1 << 20)}",
        srv.url("overrange"),
        tmp_path,
        expected_size=len(PAYLOAD),
    )
    assert [s.range for s in srv.seen] == [f"bytes={have}-"]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("mode", ["drip", "drip-headers"])
def test_trickle_is_refused_as_too_slow(fast: ServerState, tmp_path: Path, mode: str) -> None:
    # One byte every 50 ms never trips a stall timeout, in the body or in the headers.
    message = _refused(
        "too slow: .* under the minimum of 1000 bytes/s", fast.url(mode), tmp_path, seconds=2
    )
    assert len(fast.seen) == 1  # final, not retried
    assert "offline?" in message


def test_stall_is_retried_then_refused(
    fast: ServerState, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fetch_mod, "STALL_TIMEOUT_S", 0.3)
    message = _refused(
        "no data for 0.3 s.*gave up after 1 retries", fast.url("stall"), tmp_path, retries=1
    )
    assert "resume from weights.pkl.part" in message
    # The 1000 bytes that came before the silence were kept and resumed from.
    assert [s.range for s in fast.seen] == [None, "bytes=1000-"]


def test_overall_deadline(
    fast: ServerState, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fetch_mod, "MIN_RATE_BYTES_S", 0)  # only the deadline can stop it
    monkeypatch.setattr(fetch_mod, "MAX_DOWNLOAD_S", 0.6)
    message = _refused("not finished after 0.6 s", fast.url("drip"), tmp_path, seconds=2)
    assert "resume from weights.pkl.part" in message
    kept = (tmp_path / "weights.pkl.part").read_bytes()
    assert 0 < len(kept) < 100 and PAYLOAD.startswith(kept)


@pytest.mark.parametrize(
    "location",
    ["ftp://127.0.0.1:{port}/weights.pkl", "file://{tmp}/secret", "data:,hello", "FTP:weights.pkl"],
)
def test_redirect_off_http_is_refused(srv: ServerState, tmp_path: Path, location: str) -> None:
    (tmp_path / "secret").write_bytes(b"secret")
    port = srv.base.rsplit(":", 1)[1]  # an ftp client there would only meet our own server
    to = location.format(port=port, tmp=tmp_path)
    url = srv.url("goto") + "?to=" + urllib.parse.quote(to, safe="")
    _refused("only http and https redirects are followed", url, tmp_path / "dest")
    assert len(srv.seen) == 1
    assert list((tmp_path / "dest").iterdir()) == []


def test_redirects_are_bounded(srv: ServerState, tmp_path: Path) -> None:
    _refused("more than 5 redirects", srv.url("loop"), tmp_path)
    assert len(srv.seen) == 6  # the request and the 5 redirects followed
    assert list(tmp_path.iterdir()) == []


def test_redirect_is_followed_keeping_range(srv: ServerState, tmp_path: Path) -> None:
    have = 2 * 1024 * 1024
    (tmp_path / "weights.pkl.part").write_bytes(PAYLOAD[:have])
    url = srv.url("goto") + "?to=" + urllib.parse.quote("/ok/weights.pkl")
    path = _get(url, tmp_path, expected_sha256=SHA)
    assert path.read_bytes() == PAYLOAD
    assert [(s.status, s.range) for s in srv.seen] == [(302, f"bytes={have}-")] + [
        (206, f"bytes={have}-")
    ]


def test_redirect_body_is_never_read(srv: ServerState, tmp_path: Path) -> None:
    url = srv.url("goto-fat") + "?to=" + urllib.parse.quote("/ok/weights.pkl")
    start = time.monotonic()
    assert _get(url, tmp_path, expected_sha256=SHA).read_bytes() == PAYLOAD
    assert time.monotonic() - start < 2
    assert [s.status for s in srv.seen] == [302, 200]


# --- planted links -----------------------------------------------------------------------------


@pytest.mark.parametrize("dangling", [False, True])
def test_symlinked_part_is_refused(srv: ServerState, tmp_path: Path, dangling: bool) -> None:
    victim = tmp_path / "victim"
    if not dangling:
        victim.write_bytes(b"precious")
    dest = tmp_path / "cache"
    dest.mkdir()
    (dest / "weights.pkl.part").symlink_to(victim)
    _refused("weights.pkl.part: it is a symbolic link", srv.url("ok"), dest)
    assert srv.seen == []  # refused before any request
    assert victim.read_bytes() == b"precious" if not dangling else not victim.exists()
    assert (dest / "weights.pkl.part").is_symlink()  # left for the user to look at
    # Opening it directly (what a link planted later meets) refuses it too: O_NOFOLLOW.
    with pytest.raises(UserInputError, match="symbolic link"):
        fetch_mod._open_part(dest / "weights.pkl.part", create=False)
    with pytest.raises(UserInputError, match="symbolic link"):
        fetch_mod._open_part(dest / "weights.pkl.part", create=True)


def test_symlink_at_the_final_name_is_refused(srv: ServerState, tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(PAYLOAD)  # would even pass as the cached file
    dest = tmp_path / "cache"
    dest.mkdir()
    (dest / "weights.pkl").symlink_to(victim)
    with pytest.raises(UserInputError, match="weights.pkl: it is a symbolic link"):
        _get(srv.url("ok"), dest, expected_sha256=SHA)
    assert srv.seen == [] and victim.read_bytes() == PAYLOAD
    assert sorted(p.name for p in dest.iterdir()) == ["weights.pkl"]


def test_final_name_that_is_a_folder_is_refused(srv: ServerState, tmp_path: Path) -> None:
    (tmp_path / "weights.pkl").mkdir()
    with pytest.raises(UserInputError, match="weights.pkl: it is not a regular file"):
        _get(srv.url("ok"), tmp_path)
    assert srv.seen == []


def _victim_and_cache(tmp_path: Path) -> tuple[Path, Path]:
    """A file of the user's that a planted link points at, and an empty cache folder."""
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    dest = tmp_path / "cache"
    dest.mkdir()
    return victim, dest


def test_hard_linked_part_is_refused(srv: ServerState, tmp_path: Path) -> None:
    victim, dest = _victim_and_cache(tmp_path)
    os.link(victim, dest / "weights.pkl.part")
    _refused("other hard links", srv.url("ok"), dest)
    assert victim.read_bytes() == b"precious" and srv.seen == []


def test_link_planted_during_the_download_is_not_written_through(
    srv: ServerState, tmp_path: Path
) -> None:
    victim, dest = _victim_and_cache(tmp_path)
    part = dest / "weights.pkl.part"
    query = urllib.parse.urlencode({"link": str(part), "to": str(victim)})
    _refused("weights.pkl.part: it is a symbolic link", srv.url("plant") + "?" + query, dest)
    assert victim.read_bytes() == b"precious"


def test_part_swapped_for_a_link_while_resuming_is_refused(
    srv: ServerState, tmp_path: Path
) -> None:
    victim, dest = _victim_and_cache(tmp_path)
    part = dest / "weights.pkl.part"
    part.write_bytes(PAYLOAD[:1000])
    query = urllib.parse.urlencode({"link": str(part), "to": str(victim), "swap": 1})
    _refused(
        "replaced during the download", srv.url("plant") + "?" + query, dest, expected_sha256=SHA
    )
    assert victim.read_bytes() == b"precious"
    assert list(dest.iterdir()) == []  # the link is removed, never renamed into place


# --- through the command line ------------------------------------------------------------------


def _console_env(srv: ServerState) -> dict[str, str]:
    """The console's environment, every proxy pointed at our server: a request that should
    never be made (to a real zoo URL) reaches only 127.0.0.1 and is recorded there."""
    env = {k: v for k, v in ENV.items() if k.lower() not in ("no_proxy", "all_proxy")}
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        env[name] = srv.base
    return env


def test_console_refuses_a_symlinked_part(srv: ServerState, tmp_path: Path) -> None:
    entry = zoo_entry("ffhq-1024")
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / f"{entry.filename}.part").symlink_to(victim)
    before = tree(cache)
    run = run_console("fetch", entry.name, "--cache", cache, "--quiet", env=_console_env(srv))
    assert_refused(run, "symbolic link", unchanged=cache, before=before)
    assert victim.read_bytes() == b"precious" and srv.seen == []


_CLI_WITH_LOCAL_ENTRY = """
import dataclasses, sys
from lowrankgan.zoo import catalogue as zoo
from lowrankgan.zoo import download as fetch
from lowrankgan.cli.commands import main
fetch.RATE_WINDOW_S, fetch.MIN_RATE_BYTES_S = 0.4, 1000
zoo.ZOO["hostile"] = dataclasses.replace(
    zoo.zoo_entry("ffhq-1024"), name="hostile", url=sys.argv[1], filename="weights.pkl",
    size_bytes=None, sha256=None)
sys.exit(main(["fetch", "hostile", "--cache", sys.argv[2], "--quiet"]))
"""


def test_console_refuses_a_trickling_server(srv: ServerState, tmp_path: Path) -> None:
    # The CLI's own entry point against a loopback zoo entry (the real console script only
    # knows the real zoo URLs): one error line and exit 2, within seconds.
    cache = tmp_path / "cache"
    command = [sys.executable, "-c", _CLI_WITH_LOCAL_ENTRY, srv.url("drip"), str(cache)]
    run = run_console(command=command, env=_console_env(srv) | {"no_proxy": "127.0.0.1"})
    assert_refused(run, "too slow")
    assert not (cache / "weights.pkl").exists()
