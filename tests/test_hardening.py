"""Hardening against careless and hostile input (issue 9): no user file is ever deleted, data
files are refused from their declared sizes before they are decoded, counts from flags are
bounded up front, outputs stay whole, and every failure is one line with exit code 2.

Hostile files are made here, in tmp_path; nothing hostile is committed. Each refusal runs the
real console script and is held to a time and peak-RSS budget (tests/hostile.py).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import struct
import subprocess
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from hostile import ENV, SCRIPT, assert_refused, run_console, tree
from lowrankgan.cli.commands import main
from lowrankgan.errors import UserInputError
from lowrankgan.io import artifacts
from lowrankgan.io.analysis_files import ANALYSIS_ARRAYS
from lowrankgan.io.datafiles import read_json, read_npy, read_npz
from lowrankgan.limits import check_at_most, limit
from lowrankgan.pipeline.analysis import Analysis

FACES = ("--model", "dcgan-faces")


@pytest.fixture(scope="module")
def analysis_dir(tmp_path_factory) -> Path:
    """A real dcgan-faces analysis to damage in many ways."""
    out = tmp_path_factory.mktemp("analysis") / "eyes"
    run = run_console("analyze", *FACES, "--seed", "0", "--region", "eyes", "--out", out, "--quiet")
    assert run.returncode == 0, run.stderr
    return out


def copy_analysis(source: Path, target: Path, **changes: np.ndarray | None) -> Path:
    """`source`'s analysis with arrays replaced (None: removed), written to `target`."""
    target.mkdir(parents=True, exist_ok=True)
    with np.load(source / "analysis.npz", allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    if "directions" in changes:
        arrays.pop("direction_strengths")  # optional; it would not match a new k
    for name, value in changes.items():
        if value is None:
            arrays.pop(name)
        else:
            arrays[name] = value
    np.savez(target / "analysis.npz", **arrays)
    (target / "analysis.json").write_bytes((source / "analysis.json").read_bytes())
    return target


def edit_with(analysis: Path, out: Path, *extra: str):
    return run_console(
        "edit", *FACES, "--analysis", analysis, "--strengths", "-1,0,1", "--one-shot",
        "--out", out, "--quiet", *extra,
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------
# 1. Data loss: evaluate never deletes what it did not write

EVAL = (
    "evaluate", *FACES, "--regions", "eyes", "--methods", "lowrank", "--seeds", "0",
    "--transfer", "0", "--quiet",
)  # fmt: skip


def test_evaluate_refuses_a_cells_folder_it_did_not_write(tmp_path: Path):
    (tmp_path / "p" / "cells").mkdir(parents=True)
    (tmp_path / "p" / "cells" / "a.tif").write_text("x")
    before = tree(tmp_path)
    run = run_console(*EVAL, "--strengths", "1", "--out", tmp_path / "p")
    assert_refused(run, "was not written by lowrankgan", unchanged=tmp_path, before=before)
    # --restart does not change that: only our own files are ever removed.
    run = run_console(*EVAL, "--strengths", "1", "--restart", "--out", tmp_path / "p")
    assert_refused(run, "was not written by lowrankgan", unchanged=tmp_path, before=before)


def test_evaluate_refuses_cells_as_a_symlink(tmp_path: Path):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "cells").symlink_to(precious)
    before = tree(precious)
    for extra in ((), ("--restart",)):
        run = run_console(*EVAL, "--strengths", "1", *extra, "--out", tmp_path / "p")
        assert_refused(run, "a link", unchanged=precious, before=before)


def test_restart_removes_only_our_cells(tmp_path: Path):
    out = tmp_path / "p"
    assert run_console(*EVAL, "--strengths", "1", "--out", out).returncode == 0
    cell = next((out / "cells").rglob("seed0.json"))
    first = json.loads(cell.read_text())
    (out / "notes.txt").write_text("mine")  # beside the cells, not in them: kept
    # Other settings: refused without --restart, the old cell untouched.
    run = run_console(*EVAL, "--strengths", "2", "--out", out)
    assert_refused(run, "other settings (strengths)")
    assert json.loads(cell.read_text()) == first
    run = run_console(*EVAL, "--strengths", "2", "--restart", "--out", out)
    assert run.returncode == 0, run.stderr
    assert [row["strength"] for row in json.loads(cell.read_text())["rows"]] == [2.0]
    assert (out / "notes.txt").read_text() == "mine"
    # A foreign file slipped into cells/ later stops the next run instead of being deleted.
    (out / "cells" / "lowrank" / "stray.png").write_text("x")
    run = run_console(*EVAL, "--strengths", "3", "--restart", "--out", out)
    assert_refused(run, "'lowrank/stray.png', which lowrankgan did not write")
    assert (out / "cells" / "lowrank" / "stray.png").exists()


def test_cells_without_their_record_need_restart(tmp_path: Path):
    out = tmp_path / "p"
    assert run_console(*EVAL, "--strengths", "1", "--out", out).returncode == 0
    (out / "evaluation.json").unlink()
    run = run_console(*EVAL, "--strengths", "1", "--out", out)
    assert_refused(run, "evaluation.json is missing")
    assert list((out / "cells").rglob("seed0.json"))
    assert run_console(*EVAL, "--strengths", "1", "--restart", "--out", out).returncode == 0


# ---------------------------------------------------------------------------------------------
# 3. Declared sizes checked before decoding: npy, npz, JSON, PNG


def npy_header(shape: tuple[int, ...], descr: str = "<f8") -> bytes:
    """A valid version-1 .npy header for `shape` (no data after it)."""
    header = repr({"descr": descr, "fortran_order": False, "shape": shape}).encode()
    header += b" " * ((64 - (10 + len(header) + 1) % 64) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header


def test_npy_claiming_a_tib_array_is_refused_from_its_header(tmp_path: Path):
    path = tmp_path / "huge.npy"
    path.write_bytes(npy_header((2**40,)) + b"\0" * 64)
    run = run_console("analyze", *FACES, "--latent", path, "--region", "eyes",
                      "--out", tmp_path / "out", "--quiet")  # fmt: skip
    assert_refused(run, "over the limit", unchanged=tmp_path, before=tree(tmp_path))


def test_npy_whose_data_is_missing_is_truncated(tmp_path: Path):
    path = tmp_path / "short.npy"
    path.write_bytes(npy_header((100,)) + b"\0" * 16)
    with pytest.raises(UserInputError, match="truncated"):
        read_npy(path)


@pytest.mark.parametrize(
    ("name", "content", "expect"),
    [
        ("empty.npy", b"", "empty (0 bytes)"),
        ("text.npy", b"hello, I am not an array\n", "not a .npy array"),
        ("pickle.npy", npy_header((3,), "|O") + b"\x80\x04N.", "only numbers are read"),
        ("complex.npy", npy_header((100,), "<c16") + b"\0" * 1600, "only numbers are read"),
        ("strings.npy", npy_header((100,), "<U8") + b"\0" * 3200, "only numbers are read"),
    ],
)
def test_latent_files_that_are_not_numbers(tmp_path: Path, name: str, content: bytes, expect):
    (tmp_path / name).write_bytes(content)
    run = run_console("analyze", *FACES, "--latent", tmp_path / name, "--region", "eyes",
                      "--out", tmp_path / "out", "--quiet")  # fmt: skip
    assert_refused(run, expect, unchanged=tmp_path, before=tree(tmp_path))


def deflate_bomb(path: Path, member: str, prefix: bytes, size: int) -> None:
    """A zip whose `member` is `prefix` then zeros up to `size` bytes, deflated (a few MB)."""
    chunk = b"\0" * 2**24
    with (
        zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive,
        archive.open(member, "w", force_zip64=True) as handle,
    ):
        handle.write(prefix)
        written = len(prefix)
        while written < size:
            piece = chunk[: min(len(chunk), size - written)]
            handle.write(piece)
            written += len(piece)


def test_npz_member_inflating_to_gigabytes_is_refused(tmp_path: Path, analysis_dir: Path):
    bomb = tmp_path / "bomb"
    bomb.mkdir()
    deflate_bomb(bomb / "analysis.npz", "latent.npy", npy_header((2**28,)), 2**31)
    assert (bomb / "analysis.npz").stat().st_size < 8 * 2**20
    run = edit_with(bomb, tmp_path / "out")
    assert_refused(run, "zip bomb")


def test_npz_member_holding_a_raw_pickle_is_refused(tmp_path: Path, analysis_dir: Path):
    target = copy_analysis(analysis_dir, tmp_path / "a")
    with zipfile.ZipFile(target / "analysis.npz", "a") as archive:
        archive.writestr("evil.npy", b"\x80\x04cos\nsystem\n.")
    assert_refused(edit_with(target, tmp_path / "out"), "'evil.npy' is not a .npy array")
    with zipfile.ZipFile(target / "other.npz", "w") as archive:
        archive.writestr("latent", b"\x80\x04N.")  # not even named .npy
    with pytest.raises(UserInputError, match="is not a .npy array"):
        read_npz(target / "other.npz")


@pytest.mark.parametrize(
    ("change", "expect"),
    [
        ({"directions": np.zeros((100, 3))}, "direction 0 is zero"),
        ({"directions": np.full((100, 3), np.nan)}, "directions holds NaN"),
        ({"latent": np.full(100, np.inf)}, "latent holds NaN or Inf"),
        ({"latent": np.zeros((100, 2))}, "latent has shape (100, 2)"),
        ({"directions": np.ones((100, 3), dtype=np.complex128)}, "only numbers are read"),
        ({"directions": np.array(["a", "b"])}, "only numbers are read"),
        ({"directions": np.ones((99, 3))}, "directions has shape (99, 3), expected (100, k)"),
        ({"directions": np.ones(100)}, "directions has shape (100,)"),
        ({"keep_mask": np.ones((64, 64, 2))}, "keep_mask must be a 2-d bool array"),
        ({"null_basis": None}, "missing null_basis"),
    ],
)
def test_damaged_analysis_arrays_are_refused(tmp_path, analysis_dir, change, expect):
    target = copy_analysis(analysis_dir, tmp_path / "a", **change)
    assert_refused(edit_with(target, tmp_path / "out"), expect)
    assert not (tmp_path / "out").exists()


def _set(path: str, value):
    """An edit of analysis.json's dict: `path` like "ranks.keep" set to `value`."""

    def change(info: dict) -> dict:
        *parents, last = path.split(".")
        inner = info
        for key in parents:
            inner = inner[key]
        inner[last] = value
        return info

    return change


@pytest.mark.parametrize(
    ("edit_json", "expect"),
    [
        (lambda text: b"\xff\xfe" + text.encode("utf-16-le"), "not UTF-8"),
        (_set("ranks.keep", -4), "ranks.keep"),
        (_set("ranks.keep", 1e999), "ranks.keep"),
        (_set("ranks.keep", "7"), "ranks.keep"),
        (_set("settings", "fast"), "'settings' must be an object"),
        (_set("settings.size", [100_000_000, 5]), "too large"),
        (_set("settings.keep_energy", "high"), "bad settings"),
        (_set("latent_dim", 10**12), "latent_dim"),
        (lambda text: "[" * 100_000 + "]" * 100_000, "nested deeper than"),
        (lambda text: "[1, 2]", "does not hold a JSON object"),
        (_set("model", "omniart-eyes"), "made on model 'omniart-eyes'"),
        (_set("resolution", [128, 128]), "is for 128x128 images"),
    ],
)
def test_damaged_analysis_json_is_refused(tmp_path, analysis_dir, edit_json, expect):
    target = copy_analysis(analysis_dir, tmp_path / "a")
    text = (target / "analysis.json").read_text()
    if getattr(edit_json, "__name__", "") == "change":
        changed = json.dumps(edit_json(json.loads(text))).encode()
    else:
        changed = edit_json(text)
        changed = changed.encode() if isinstance(changed, str) else changed
    (target / "analysis.json").write_bytes(changed)
    # Path-following reads the kept rank, so the rank checks are reached too.
    run = run_console("edit", *FACES, "--analysis", target, "--strengths", "0,0.5",
                      "--out", tmp_path / "out", "--quiet")  # fmt: skip
    assert_refused(run, expect)


def test_json_files_are_bounded_before_reading(tmp_path: Path, monkeypatch):
    path = tmp_path / "big.json"
    path.write_text('{"a": "' + "x" * 5000 + '"}')
    monkeypatch.setenv("LOWRANKGAN_MAX_JSON_BYTES", "1000")
    with pytest.raises(UserInputError, match="over the limit .* LOWRANKGAN_MAX_JSON_BYTES"):
        read_json(path)
    monkeypatch.delenv("LOWRANKGAN_MAX_JSON_BYTES")
    assert read_json(path)["a"] == "x" * 5000
    # Brackets inside strings are not nesting.
    path.write_text(json.dumps({"s": "[" * 10_000}))
    assert read_json(path) == {"s": "[" * 10_000}


def png_header(width: int, height: int) -> bytes:
    """A PNG with a valid IHDR for `width` x `height` grey pixels and an empty IDAT."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"") + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    ("width", "height", "expect"),
    [(12_000, 12_000, "over the limit"), (200_000, 200_000, "over the limit"),
     (128, 64, "is 128x64, the model outputs 64x64")],
)  # fmt: skip
def test_mask_sizes_are_checked_from_the_header(tmp_path: Path, width, height, expect):
    (tmp_path / "mask.png").write_bytes(png_header(width, height))
    run = run_console("analyze", *FACES, "--seed", "0", "--region", tmp_path / "mask.png",
                      "--out", tmp_path / "out", "--quiet")  # fmt: skip
    assert_refused(run, expect, unchanged=tmp_path, before=tree(tmp_path))


# ---------------------------------------------------------------------------------------------
# 4. Counts from flags bounded up front


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        (("analyze", "--seed", "0", "--region", "eyes", "--samples", "1000000"), "samples is"),
        (("analyze", "--seed", "0", "--region", "eyes", "--samples", "0"), "samples must be"),
        (("analyze", "--seed", "0", "--region", "eyes", "--method", "ganspace",
          "--ganspace-samples", "1000000000"), "ganspace samples is"),
        (("edit", "--seed", "0", "--region", "eyes", "--strengths", "1e15"), "path-following"),
        (("edit", "--seed", "0", "--region", "eyes", "--step", "1e-12"), "path-following"),
        (("edit", "--seed", "0", "--region", "eyes", "--seeds", "0-9999"), "path-following"),
        (("edit", "--seed", "0", "--region", "eyes", "--one-shot",
          "--strengths", ",".join(["1"] * 30_000)), "number of strengths"),
        (("evaluate", "--regions", "eyes", "--strengths",
          ",".join(str(i + 1) for i in range(10_000))), "number of strengths"),
        (("evaluate", "--regions", "eyes", "--path", "--strengths", "1e9"), "path-following"),
    ],
)  # fmt: skip
def test_counts_are_bounded_before_work(tmp_path: Path, args: tuple[str, ...], expect: str):
    run = run_console(args[0], *FACES, *args[1:], "--out", tmp_path / "out", "--quiet")
    assert_refused(run, expect, unchanged=tmp_path, max_seconds=20)


def test_limits_can_be_raised_from_the_environment(monkeypatch):
    with pytest.raises(UserInputError, match="LOWRANKGAN_MAX_SAMPLES"):
        check_at_most(20_000, "samples", "samples")
    monkeypatch.setenv("LOWRANKGAN_MAX_SAMPLES", "1e5")
    assert limit("samples") == 100_000
    check_at_most(20_000, "samples", "samples")
    monkeypatch.setenv("LOWRANKGAN_MAX_SAMPLES", "lots")
    with pytest.raises(UserInputError, match="must be a number"):
        limit("samples")


def test_many_seeds_stream_a_picture_each(tmp_path: Path, analysis_dir: Path):
    out = tmp_path / "out"
    run = run_console("edit", *FACES, "--analysis", analysis_dir, "--strengths", "-1,0,1",
                      "--one-shot", "--seeds", "0-19", "--out", out, "--quiet")  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert sorted(p.name for p in (out / "seeds").iterdir()) == sorted(
        f"seed{i}.png" for i in range(20)
    )
    with np.load(out / "edits.npz") as data:
        assert data["latents"].shape == (60, 100)
        assert list(data["seeds"][::3]) == list(range(20))
    from PIL import Image

    with Image.open(out / "edits.png") as grid, Image.open(out / "seeds" / "seed0.png") as row:
        assert abs(grid.size[0] - row.size[0]) < 40  # the same columns, labels aside
        assert grid.size[1] > 15 * (row.size[1] - 30)  # 16 rows shown, not 20


def test_a_grid_of_many_strengths_stays_bounded(tmp_path: Path, analysis_dir: Path):
    out = tmp_path / "out"
    strengths = ",".join(f"{v:.2f}" for v in np.linspace(-3, 3, 400))
    run = run_console("edit", *FACES, "--analysis", analysis_dir, "--strengths", strengths,
                      "--one-shot", "--out", out, "--quiet")  # fmt: skip
    assert run.returncode == 0, run.stderr
    from PIL import Image

    with Image.open(out / "edits.png") as grid:
        assert grid.size[0] <= 8192 + 200


# ---------------------------------------------------------------------------------------------
# 6. Outputs: all or nothing, disk full, stale staging, odd --out


def test_a_blocked_merge_changes_nothing(tmp_path: Path, analysis_dir: Path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "analysis.json").write_text("old json")
    (out / "analysis.npz").mkdir()  # a folder where the new analysis.npz must go
    before = tree(tmp_path)
    run = run_console("analyze", *FACES, "--seed", "1", "--region", "eyes", "--out", out,
                      "--quiet")  # fmt: skip
    assert_refused(run, "something other than a file is in the way", max_rss_mib=2000)
    assert tree(tmp_path) == before


def test_merge_rolls_back_when_a_move_fails(tmp_path: Path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.txt").write_text("old a")
    (out / "b.txt").write_text("old b")
    real_replace = os.replace

    def failing_replace(source, destination):
        if Path(source).name == "b.txt":  # the staged new b.txt
            raise OSError(errno.EIO, "I/O error", str(destination))
        return real_replace(source, destination)

    monkeypatch.setattr(artifacts.os, "replace", failing_replace)
    with pytest.raises(OSError), artifacts.staged_output(out) as staging:
        (staging / "a.txt").write_text("new a")
        (staging / "b.txt").write_text("new b")
    assert (out / "a.txt").read_text() == "old a" and (out / "b.txt").read_text() == "old b"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_stale_staging_of_a_killed_run_is_removed(tmp_path: Path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp_path / ".out.partial-stale"
    stale.mkdir()
    (stale / ".lowrankgan-owner").write_text(f"{dead.pid} {os.uname().nodename}\n")
    (stale / "analysis.npz").write_bytes(b"half")
    alive = tmp_path / ".out.partial-alive"
    alive.mkdir()
    (alive / ".lowrankgan-owner").write_text(f"{os.getpid()} {os.uname().nodename}\n")
    foreign = tmp_path / ".out.partial-foreign"  # not ours: no owner file
    foreign.mkdir()
    with artifacts.staged_output(tmp_path / "out") as staging:
        (staging / "x.txt").write_text("x")
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [".out.partial-alive", ".out.partial-foreign", "out"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["x.txt"]


@contextlib.contextmanager
def tiny_filesystem(folder: Path, size: str = "256k"):
    """A real tmpfs of `size` at `folder` (root only); None where mounting is not allowed."""
    folder.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                          capture_output=True)  # fmt: skip
    try:
        yield folder if done.returncode == 0 else None
    finally:
        if done.returncode == 0:
            subprocess.run(["umount", str(folder)], check=True)


@pytest.mark.parametrize("command", ["analyze", "edit", "evaluate"])
def test_disk_full_is_one_line_and_leaves_nothing(tmp_path: Path, command: str, monkeypatch):
    args = {
        "analyze": ("analyze", *FACES, "--seed", "0", "--region", "eyes"),
        "edit": ("edit", *FACES, "--seed", "0", "--region", "eyes", "--one-shot"),
        "evaluate": (*EVAL, "--strengths", "1"),
    }[command]
    with tiny_filesystem(tmp_path / "disk") as disk:
        if disk is not None:
            (disk / "filler").write_bytes(b"\0" * (256 * 1024 - 8192))  # 8 KB left: too little
            run = run_console(*args, "--out", disk / "out", "--quiet")
            line = assert_refused(run, "no space left on device", max_rss_mib=2000, max_seconds=60)
            assert line.startswith("error: cannot write output")
            if command != "evaluate":  # evaluate keeps finished cells by design
                assert sorted(p.name for p in disk.iterdir()) == ["filler"]
            return
    # Where no file system can be mounted, inject the same failure into the real write path.
    real_fsync = os.fsync

    def full(fd):
        real_fsync(fd)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(artifacts.os, "fsync", full)
    assert main([*args, "--out", str(tmp_path / "out"), "--quiet"]) == 2
    assert not (tmp_path / "out").exists() or command == "evaluate"


def test_odd_out_values_are_refused(tmp_path: Path):
    run = run_console("analyze", *FACES, "--seed", "0", "--region", "eyes", "--out", "",
                      cwd=tmp_path)  # fmt: skip
    assert_refused(run, "--out must name a folder", unchanged=tmp_path)
    bad = os.fsencode(str(tmp_path)) + b"/caf\xe9"
    run = run_console(
        command=[
            os.fsencode(str(SCRIPT)),
            b"evaluate",
            b"--model",
            b"dcgan-faces",
            b"--regions",
            b"eyes",
            b"--out",
            bad,
            b"--quiet",
        ],  # fmt: skip
        cwd=tmp_path,
        env=ENV,
    )
    assert_refused(run, "--out must be a UTF-8 path", unchanged=tmp_path)


def test_analysis_round_trip_is_bit_exact(tmp_path: Path, analysis_dir: Path):
    loaded = Analysis.load(analysis_dir)
    loaded.save(tmp_path)
    again = Analysis.load(tmp_path)
    for name in ANALYSIS_ARRAYS:
        np.testing.assert_array_equal(getattr(loaded, name), getattr(again, name))


def test_security_doc_lists_every_limit():
    from lowrankgan.limits import LIMITS

    doc = (Path(__file__).parents[1] / "docs" / "security.md").read_text()
    rows = [line.split("|")[1].strip().strip("`") for line in doc.splitlines()
            if line.startswith("| `")]  # fmt: skip
    assert sorted(rows) == sorted(LIMITS)
