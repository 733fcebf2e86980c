"""The downloader against an in-process HTTP server on 127.0.0.1, and the zoo catalogue.

The server serves one fixed random payload under paths that pick its behaviour: /ok/ (honours
Range), /drop-once/ (first request breaks off half-way), /drop-always/, /norange/ (ignores
Range), /flaky503/ (first request fails with 503); anything else is a 404.
"""

from __future__ import annotations

import dataclasses
import hashlib
import socket
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from lowrankgan import fetch as fetch_mod
from lowrankgan.errors import UserInputError
from lowrankgan.fetch import cache_dir, fetch, fetch_model
from lowrankgan.zoo import ZOO, ZooEntry, list_zoo, zoo_entry

PAYLOAD = np.random.default_rng(1234).integers(0, 256, 3 * 1024 * 1024, dtype=np.uint8).tobytes()
SHA = hashlib.sha256(PAYLOAD).hexdigest()
CUT = 1024 * 1024 + 17  # where interrupted transfers break off; deliberately not chunk-aligned
CHUNK = 64 * 1024


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

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        mode = urllib.parse.urlsplit(self.path).path.strip("/").split("/")[0]
        hit = self.state.hits[mode] = self.state.hits.get(mode, 0) + 1
        seen = Seen(self.path, self.headers.get("Range"), 200)
        self.state.seen.append(seen)
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
        self.wfile.write(body)
        seen.body_bytes = len(body)


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
