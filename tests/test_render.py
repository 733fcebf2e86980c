"""Tests for the picture-making modules: render (pixels), report (HTML) and artifacts (writes)."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageSequence

from lowrankgan.errors import UserInputError
from lowrankgan.io import artifacts
from lowrankgan.io.artifacts import (
    atomic_write_bytes,
    atomic_write_text,
    check_writable_dir,
    save_npz_atomic,
    staged_output,
)
from lowrankgan.report import render
from lowrankgan.report.html import Figure, ReportSection, render_html, write_report
from lowrankgan.report.render import (
    INFERNO_ANCHORS,
    apply_colormap,
    change_heatmap,
    gif_bytes,
    image_grid,
    mask_outline,
    overlay_region,
    png_bytes,
    to_uint8,
    upscale,
)


def _random_image(seed: int, size: int = 16) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def _square_mask(size: int = 16, lo: int = 4, hi: int = 10) -> np.ndarray:
    mask = np.zeros((size, size), dtype=bool)
    mask[lo:hi, lo:hi] = True
    return mask


# --- to_uint8 -------------------------------------------------------------------------------


def test_to_uint8_known_values_and_layout() -> None:
    values = torch.tensor([-1.0, 0.0, 1.0, -2.0, 3.0, 0.5])
    images = values.view(1, 1, 1, 6).expand(2, 3, 1, 6).clone()
    images[1] = -images[1]
    out = to_uint8(images)
    assert out.shape == (2, 1, 6, 3) and out.dtype == np.uint8
    # -1 -> 0, 0 -> 128 (127.5 rounds half up), 1 -> 255, out of range clamps, 0.5 -> 191.25 -> 191
    assert out[0, 0, :, 0].tolist() == [0, 128, 255, 0, 255, 191]
    assert out[1, 0, :, 0].tolist() == [255, 128, 0, 255, 0, 64]


def test_to_uint8_channels_last_and_single_image() -> None:
    image = torch.full((3, 2, 5), -1.0)
    image[0] = 1.0  # red channel only
    out = to_uint8(image)
    assert out.shape == (2, 5, 3)
    assert (out[..., 0] == 255).all() and (out[..., 1:] == 0).all()


def test_to_uint8_grayscale_replicated_and_numpy_input() -> None:
    gray = np.linspace(-1, 1, 12, dtype=np.float32).reshape(1, 1, 3, 4)
    out = to_uint8(gray)
    assert out.shape == (1, 3, 4, 3)
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    assert out[0, 0, 0, 0] == 0 and out[0, -1, -1, 0] == 255


def test_to_uint8_handles_half_precision_and_nan() -> None:
    image = torch.tensor([[[float("nan"), 1.0]]], dtype=torch.bfloat16).expand(3, 1, 2)
    out = to_uint8(image)
    assert out[0, 0].tolist() == [0, 0, 0] and out[0, 1].tolist() == [255, 255, 255]


@pytest.mark.parametrize("shape", [(4, 4), (2, 2, 4, 4, 4), (2, 4, 4, 4), (4, 2, 8)])
def test_to_uint8_rejects_bad_shapes(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError):
        to_uint8(torch.zeros(shape))


def test_to_uint8_rejects_integer_arrays() -> None:
    with pytest.raises(TypeError):
        to_uint8(np.zeros((3, 4, 4), dtype=np.uint8))


# --- upscale / outline / overlay --------------------------------------------------------------


def test_upscale_integer_factor_nearest_neighbour() -> None:
    image = _random_image(0, 64)
    big = upscale(image)
    assert big.shape == (256, 256, 3)
    assert (big[::4, ::4] == image).all() and (big[3::4, 3::4] == image).all()
    assert upscale(image, min_size=100).shape == (128, 128, 3)  # ceil(100 / 64) = 2
    assert upscale(_random_image(1, 300)).shape == (300, 300, 3)


def test_mask_outline_is_inner_boundary() -> None:
    outline = mask_outline(_square_mask())
    assert outline.sum() == 4 * 6 - 4  # perimeter of a 6x6 square
    assert not outline[5:9, 5:9].any()
    assert not (outline & ~_square_mask()).any()


def test_overlay_changes_only_region_and_outline() -> None:
    image = np.full((16, 16, 3), 40, dtype=np.uint8)
    mask = _square_mask()
    out = overlay_region(image, mask, color=(255, 64, 64), alpha=0.5)
    changed = (out != image).any(axis=-1)
    assert (changed == mask).all()
    outline = mask_outline(mask)
    assert (out[outline] == [255, 64, 64]).all()
    interior = mask & ~outline
    assert (out[interior] == [148, 52, 52]).all()  # 40 + 0.5 * (color - 40), halves round up
    assert image[0, 0].tolist() == [40, 40, 40]  # input not modified in place


def test_overlay_rejects_mismatched_mask() -> None:
    with pytest.raises(ValueError):
        overlay_region(_random_image(0), np.ones((8, 8), dtype=bool))


# --- colormap / heatmap -------------------------------------------------------------------------


def test_colormap_endpoints_and_monotone_brightness() -> None:
    ramp = apply_colormap(np.linspace(0, 1, 65)[None, :])[0].astype(float)
    assert ramp[0].tolist() == INFERNO_ANCHORS[0].tolist()
    assert ramp[-1].tolist() == INFERNO_ANCHORS[-1].tolist()
    luminance = ramp @ np.array([0.299, 0.587, 0.114])
    assert (np.diff(luminance) > 0).all()


def test_heatmap_uniform_when_nothing_changed() -> None:
    image = _random_image(3)
    mask = _square_mask()
    heat = change_heatmap(image, image.copy(), mask)
    outline = mask_outline(mask)
    zero_colour = apply_colormap(np.zeros((1, 1)))[0, 0]
    assert (heat[~outline] == zero_colour).all()
    assert (heat[outline] == 255).all()


def test_heatmap_brightest_where_change_is() -> None:
    original = np.zeros((32, 32, 3), dtype=np.float32)
    edited = original.copy()
    edited[20, 25] = 0.9  # the biggest change
    edited[10:12, 10:12] = 0.2  # a weaker one
    heat = change_heatmap(original, edited).astype(float)
    brightness = heat @ np.array([0.299, 0.587, 0.114])
    assert np.unravel_index(np.argmax(brightness), brightness.shape) == (20, 25)
    assert brightness[11, 11] > brightness[0, 0]
    # Fewer than 1% of pixels changed, so the robust max falls back to the true maximum.
    assert heat[20, 25].tolist() == INFERNO_ANCHORS[-1].tolist()


def test_heatmap_robust_max_ignores_a_few_outliers() -> None:
    original = np.zeros((20, 20, 3), dtype=np.float32)
    edited = original.copy()
    edited[:, :10] = 0.1  # half the image changes a little ...
    edited[0, 0] = 5.0  # ... and one pixel (< 1%) explodes
    heat = change_heatmap(original, edited)
    # The outlier does not squash the real edit into black: it saturates instead.
    assert (heat[1:, :10] == INFERNO_ANCHORS[-1]).all()
    assert (heat[:, 10:] == INFERNO_ANCHORS[0]).all()


def test_heatmap_shared_vmax_makes_colours_comparable() -> None:
    original = np.zeros((8, 8, 3), dtype=np.uint8)
    edited = original.copy()
    edited[..., 0] = 10
    assert (change_heatmap(original, edited, vmax=10.0) == INFERNO_ANCHORS[-1]).all()
    half = change_heatmap(original, edited, vmax=20.0)
    assert (half == apply_colormap(np.full((1, 1), 0.5))[0, 0]).all()


# --- grid / gif / png ---------------------------------------------------------------------------


def test_grid_size_arithmetic_without_labels() -> None:
    cells = [[_random_image(r * 3 + c, 10) for c in range(3)] for r in range(2)]
    grid = image_grid(cells, pad=4)
    assert grid.size == (4 + 3 * (10 + 4), 4 + 2 * (10 + 4))
    pixels = np.asarray(grid)
    assert (pixels[4:14, 4:14] == cells[0][0]).all()
    assert (pixels[4 + 14 : 14 + 14, 4 + 28 : 14 + 28] == cells[1][2]).all()
    assert (pixels[:4] == 255).all()  # padding shows the background


def test_grid_labels_add_margins_and_ink() -> None:
    cells = [[_random_image(c, 20) for c in range(2)] for _ in range(3)]
    plain = image_grid(cells, pad=3)
    labelled = image_grid(
        cells, row_labels=["alpha", "b", "a much longer row label"], col_labels=["x", "y"], pad=3
    )
    extra_w, extra_h = labelled.width - plain.width, labelled.height - plain.height
    assert extra_w > 3 and extra_h > 3
    pixels = np.asarray(labelled)
    assert (pixels[:extra_h] < 128).any()  # column labels are drawn in the top margin
    assert (pixels[:, :extra_w] < 128).any()  # row labels in the left margin
    with pytest.raises(ValueError):
        image_grid(cells, row_labels=["only one"])


def test_grid_ragged_rows_and_bad_cells() -> None:
    grid = image_grid([[_random_image(0, 8)], [_random_image(1, 8), _random_image(2, 8)]], pad=2)
    assert grid.size == (2 + 2 * 10, 2 + 2 * 10)
    assert (np.asarray(grid)[2:10, 12:20] == 255).all()  # missing cell is background
    with pytest.raises(ValueError):
        image_grid([[_random_image(0, 8), _random_image(1, 9)]])
    with pytest.raises(ValueError):
        image_grid([])


@pytest.mark.parametrize(
    ("n", "boomerang", "expected"), [(5, True, 8), (5, False, 5), (1, True, 1)]
)
def test_gif_frame_count_and_size(n: int, boomerang: bool, expected: int) -> None:
    frames = [np.full((12, 20, 3), 20 * i, dtype=np.uint8) for i in range(n)]
    data = gif_bytes(frames, duration_ms=50, boomerang=boomerang)
    with Image.open(io.BytesIO(data)) as gif:
        assert gif.format == "GIF" and gif.size == (20, 12)
        decoded = [np.asarray(frame.convert("RGB")) for frame in ImageSequence.Iterator(gif)]
        if n > 1:
            assert gif.info.get("loop") == 0
    assert len(decoded) == expected
    # Plays forward then back: frame k and frame (count - k) match, end frames are not repeated.
    levels = [int(frame[0, 0, 0]) for frame in decoded]
    assert levels[: min(n, expected)] == [20 * i for i in range(min(n, expected))]
    if boomerang and n > 2:
        assert levels[n:] == [20 * i for i in range(n - 2, 0, -1)]


def test_gif_rejects_mixed_sizes() -> None:
    with pytest.raises(ValueError):
        gif_bytes([_random_image(0, 8), _random_image(1, 9)])


def test_png_bytes_round_trip() -> None:
    image = _random_image(7)
    for source in (image, Image.fromarray(image)):
        with Image.open(io.BytesIO(png_bytes(source))) as decoded:
            assert decoded.format == "PNG"
            assert (np.asarray(decoded.convert("RGB")) == image).all()


# --- report -------------------------------------------------------------------------------------


def _sections() -> list[ReportSection]:
    png = png_bytes(_random_image(0, 64))
    gif = gif_bytes([_random_image(i, 8) for i in range(3)])
    return [
        ReportSection(
            "Locality <b>",
            text="Edit <script>alert(1)</script> here.\n\nSecond paragraph & more.",
            figures=[Figure("original", png), Figure("edit <sweep>", gif, "image/gif")],
            table=[
                {"method": "ours", "lpips": 0.123456, "steps": 10},
                {"method": "x", "mse": 2.0, "lpips": 1234.5678},
                {"method": "y", "mse": 1.5e-7, "lpips": float("nan"), "ok": True},
            ],
        ),
        ReportSection("Empty"),
        ReportSection("Grid", figures=[Figure("grid", png)]),
    ]


def test_render_html_embeds_figures_and_links_sections() -> None:
    sections = _sections()
    page = render_html("Report <title>", "Intro & context", sections, footer="made by tests")
    assert page.startswith("<!DOCTYPE html>")
    uris = re.findall(r'src="data:(image/[a-z]+);base64,([A-Za-z0-9+/=]+)"', page)
    assert [mime for mime, _ in uris] == ["image/png", "image/gif", "image/png"]
    assert base64.b64decode(uris[1][1]) == sections[0].figures[1].data
    for i in range(1, len(sections) + 1):
        assert f'href="#section-{i}"' in page and f'id="section-{i}"' in page
    assert "image-rendering: pixelated" in page
    assert 'width="256" height="256"' in page  # a 64 px image shown at 4x
    # Self-contained: nothing fetched from elsewhere, no scripts.
    assert "http://" not in page and "https://" not in page and "<script" not in page


def test_render_html_escapes_text() -> None:
    page = render_html("Report <title>", "Intro & context", _sections())
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "Report &lt;title&gt;" in page and "Locality &lt;b&gt;" in page
    assert "edit &lt;sweep&gt;" in page and "Intro &amp; context" in page
    assert "<b>" not in page


def test_render_html_table_formats_numbers() -> None:
    page = render_html("t", "", _sections())
    headers = re.findall(r"<th>([^<]*)</th>", page)
    assert headers == ["method", "lpips", "steps", "mse", "ok"]
    for cell in ("0.123", "10", "2", "1230", "1.5e-07", "nan", "True"):
        assert f">{cell}</td>" in page
    assert "0.123456" not in page and "1234.5" not in page
    rows = re.findall(r"<tr>(.*?)</tr>", page)
    assert rows[2].count("<td") == 5  # missing keys still get an (empty) cell


def test_write_report_is_atomic_file(tmp_path: Path) -> None:
    target = write_report(tmp_path / "report.html", "t", "i", _sections())
    assert target.read_text(encoding="utf-8") == render_html("t", "i", _sections())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]


# --- artifacts ------------------------------------------------------------------------------------


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    atomic_write_bytes(target, b"old")
    atomic_write_text(target, "new \u2713")
    assert target.read_text(encoding="utf-8") == "new \u2713"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_atomic_write_failure_keeps_old_file(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")

    def broken_replace(src, dst) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(artifacts.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk on fire"):
        atomic_write_text(target, "new")
    with pytest.raises(OSError, match="disk on fire"):
        atomic_write_text(tmp_path / "fresh.txt", "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_save_npz_atomic_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "basis.npz"
    save_npz_atomic(path, basis=np.eye(3), scores=np.arange(4))
    with np.load(path) as loaded:
        assert (loaded["basis"] == np.eye(3)).all() and loaded["scores"].tolist() == [0, 1, 2, 3]
    with pytest.raises(UserInputError):
        save_npz_atomic(tmp_path / "basis.npy", basis=np.eye(3))
    assert [p.name for p in tmp_path.iterdir()] == ["basis.npz"]


def test_staged_output_creates_folder_with_files(tmp_path: Path) -> None:
    target = tmp_path / "run"
    with staged_output(target) as staging:
        assert staging.parent == tmp_path and staging.name.startswith(".run.partial-")
        assert not target.exists()
        (staging / "a.txt").write_text("a")
        (staging / "sub").mkdir()
        (staging / "sub" / "b.txt").write_text("b")
    assert (target / "a.txt").read_text() == "a" and (target / "sub" / "b.txt").read_text() == "b"
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


def test_staged_output_merges_and_keeps_unrelated(tmp_path: Path) -> None:
    target = tmp_path / "run"
    target.mkdir()
    (target / "keep.txt").write_text("keep")
    (target / "same.txt").write_text("old")
    with staged_output(target) as staging:
        (staging / "same.txt").write_text("new")
        (staging / "added.txt").write_text("added")
    assert sorted(p.name for p in target.iterdir()) == ["added.txt", "keep.txt", "same.txt"]
    assert (target / "same.txt").read_text() == "new"
    assert (target / "keep.txt").read_text() == "keep"
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


def test_staged_output_exception_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "run"
    with pytest.raises(RuntimeError), staged_output(target) as staging:
        (staging / "half.txt").write_text("half")
        raise RuntimeError("model exploded")
    assert list(tmp_path.iterdir()) == []  # neither target, staging nor the made parent remain

    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "same.txt").write_text("old")
    with pytest.raises(KeyboardInterrupt), staged_output(existing) as staging:
        (staging / "same.txt").write_text("new")
        raise KeyboardInterrupt
    assert [p.name for p in existing.iterdir()] == ["same.txt"]
    assert (existing / "same.txt").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["existing"]


def test_staged_output_rejects_file_target(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(UserInputError), staged_output(target):
        pytest.fail("must not yield")
    assert [p.name for p in tmp_path.iterdir()] == ["file"]


def test_check_writable_dir(tmp_path: Path) -> None:
    check_writable_dir(tmp_path)
    check_writable_dir(tmp_path / "not" / "yet" / "made")
    assert list(tmp_path.iterdir()) == []  # the probe leaves nothing behind

    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    with pytest.raises(UserInputError, match="not a directory") as info:
        check_writable_dir(a_file)
    assert "\n" not in str(info.value)
    with pytest.raises(UserInputError, match="not a directory"):
        check_writable_dir(a_file / "sub" / "out")
    assert [p.name for p in tmp_path.iterdir()] == ["file.txt"]


def test_render_module_exports_exist() -> None:
    assert all(hasattr(render, name) for name in render.__all__)


def test_check_writable_dir_reports_failed_probe(tmp_path: Path, monkeypatch) -> None:
    # Stands in for a read-only mount, which root cannot be denied by chmod alone.
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(artifacts.tempfile, "mkstemp", refuse)
    with pytest.raises(UserInputError, match="not writable: Permission denied"):
        check_writable_dir(tmp_path / "out")
