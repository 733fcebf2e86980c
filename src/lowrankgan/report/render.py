"""Turning generator outputs into pictures: images, grids, animations and locality figures.

This module owns the conversion from model tensors to `(H, W, 3) uint8` arrays and everything
drawn from them for people to look at: enlarged thumbnails, region overlays, change heatmaps
(the "locality figure" showing where an edit changed the image), labelled grids, animated GIFs
and PNG encoding. It only returns arrays, PIL images or bytes; writing files is `artifacts`'s job.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

__all__ = [
    "INFERNO_ANCHORS",
    "apply_colormap",
    "change_heatmap",
    "change_magnitude",
    "gif_bytes",
    "image_grid",
    "mask_outline",
    "overlay_region",
    "png_bytes",
    "robust_max",
    "to_uint8",
    "upscale",
]

RGB = tuple[int, int, int]

# Nine evenly spaced samples of the 'inferno' colormap (t = 0, 1/8, ..., 1). Linear interpolation
# between them stays perceptually ordered and keeps this module free of plotting libraries.
INFERNO_ANCHORS: np.ndarray = np.array(
    [
        [0, 0, 4],
        [31, 12, 72],
        [85, 15, 109],
        [136, 34, 106],
        [186, 54, 85],
        [227, 89, 51],
        [249, 142, 9],
        [249, 203, 53],
        [252, 255, 164],
    ],
    dtype=np.float64,
)

_OUTLINE_WHITE: RGB = (255, 255, 255)


def to_uint8(images: torch.Tensor | np.ndarray) -> np.ndarray:
    """Convert generator output to displayable pixels.

    `(B, C, H, W)` or `(C, H, W)` float in [-1, 1] -> `(B, H, W, 3)` or `(H, W, 3)` uint8, with
    value v mapped to round((v + 1) * 127.5) clamped to [0, 255]. Halves round up, so -1 -> 0,
    0 -> 128 and 1 -> 255. C must be 1 (replicated to grey RGB) or 3. NaN becomes 0 and
    infinities saturate, so a diverged model still yields a picture. Tensors may live on any
    device; they are copied to the CPU once.
    """
    if isinstance(images, torch.Tensor):
        # One transfer that also widens half/bfloat16, which numpy cannot represent.
        array = images.detach().to(device="cpu", dtype=torch.float32).numpy()
    else:
        array = np.asarray(images)
        if not np.issubdtype(array.dtype, np.floating):
            raise TypeError(f"to_uint8 expects float images in [-1, 1], got dtype {array.dtype}")
    if array.ndim not in (3, 4):
        raise ValueError(f"expected (B, C, H, W) or (C, H, W) images, got shape {array.shape}")
    channels = array.shape[-3]
    if channels not in (1, 3):
        raise ValueError(f"expected 1 or 3 channels, got {channels} (shape {array.shape})")
    scaled = np.floor((array.astype(np.float32) + 1.0) * 127.5 + 0.5)
    scaled = np.nan_to_num(scaled, nan=0.0, posinf=255.0, neginf=0.0)
    pixels = np.clip(scaled, 0, 255).astype(np.uint8)
    pixels = np.moveaxis(pixels, -3, -1)
    if channels == 1:
        pixels = np.repeat(pixels, 3, axis=-1)
    return np.ascontiguousarray(pixels)


def _check_image(image: np.ndarray, name: str = "image") -> np.ndarray:
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise ValueError(f"{name} must be (H, W, 3) uint8, got {array.shape} {array.dtype}")
    return array


def _check_mask(mask: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    array = np.asarray(mask)
    if array.shape != tuple(shape[:2]):
        raise ValueError(f"mask shape {array.shape} does not match image size {shape[:2]}")
    return array.astype(bool, copy=False)


def upscale(image: np.ndarray, min_size: int = 256) -> np.ndarray:
    """Enlarge `(H, W, C)` (or `(H, W)`) pixels by the smallest integer factor k that makes the
    shorter side at least `min_size`, with nearest-neighbour repetition -> `(H*k, W*k, C)`.

    Integer factors keep every source pixel a crisp k x k block, so 64 px GAN samples stay
    legible in a report; images already big enough come back unchanged (k = 1).
    """
    array = np.asarray(image)
    if array.ndim < 2 or min(array.shape[:2]) == 0:
        raise ValueError(f"expected a non-empty (H, W, ...) image, got shape {array.shape}")
    if min_size < 1:
        raise ValueError(f"min_size must be positive, got {min_size}")
    factor = max(1, -(-min_size // min(array.shape[:2])))
    if factor == 1:
        return array.copy()
    return np.repeat(np.repeat(array, factor, axis=0), factor, axis=1)


def mask_outline(mask: np.ndarray) -> np.ndarray:
    """`(H, W)` bool mask -> `(H, W)` bool of its 1-px inner boundary.

    A boundary pixel is inside the mask with a 4-neighbour outside it; the image border counts as
    outside, so a region touching the edge is still closed. The outline never leaves the region,
    so drawing it alters no pixel outside the mask.
    """
    inside = np.asarray(mask, dtype=bool)
    if inside.ndim != 2:
        raise ValueError(f"mask must be (H, W), got shape {inside.shape}")
    padded = np.pad(inside, 1, mode="constant", constant_values=False)
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:] & inside
    return inside & ~interior


def overlay_region(
    image: np.ndarray,
    mask: np.ndarray,
    color: RGB = (255, 64, 64),
    alpha: float = 0.35,
) -> np.ndarray:
    """Show an edit region: `(H, W, 3)` uint8 + `(H, W)` bool mask -> `(H, W, 3)` uint8.

    Region pixels are blended towards `color` by `alpha` (so the content stays visible) and the
    region's 1-px outline is painted in `color` at full strength. Pixels outside the mask are
    returned unchanged.
    """
    pixels = _check_image(image)
    inside = _check_mask(mask, pixels.shape)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    tint = np.asarray(color, dtype=np.float32)
    out = pixels.copy()
    blended = (1.0 - alpha) * pixels[inside].astype(np.float32) + alpha * tint
    out[inside] = np.clip(np.floor(blended + 0.5), 0, 255).astype(np.uint8)
    out[mask_outline(inside)] = tint.astype(np.uint8)
    return out


def apply_colormap(values: np.ndarray, anchors: np.ndarray = INFERNO_ANCHORS) -> np.ndarray:
    """`(H, W)` float in [0, 1] -> `(H, W, 3)` uint8 through a piecewise-linear colormap.

    `anchors` is `(N, 3)` RGB sampled evenly on [0, 1]; values outside are clipped and NaN maps
    to the zero colour.
    """
    levels = np.clip(np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0), 0.0, 1.0)
    positions = np.linspace(0.0, 1.0, len(anchors))
    channels = [np.interp(levels, positions, anchors[:, c]) for c in range(3)]
    return np.clip(np.floor(np.stack(channels, axis=-1) + 0.5), 0, 255).astype(np.uint8)


def change_magnitude(original: np.ndarray, edited: np.ndarray) -> np.ndarray:
    """Per-pixel size of an edit: two `(H, W, C)` images (uint8 or float, same scale) ->
    `(H, W)` float64 L2 norm of their difference over channels."""
    before = np.asarray(original, dtype=np.float64)
    after = np.asarray(edited, dtype=np.float64)
    if before.shape != after.shape or before.ndim != 3:
        raise ValueError(f"expected two equal (H, W, C) images, got {before.shape}, {after.shape}")
    return np.sqrt(np.sum((after - before) ** 2, axis=-1))


def robust_max(magnitude: np.ndarray, percentile: float = 99.0) -> float:
    """A top-of-scale value for `magnitude` that ignores a few extreme pixels.

    The `percentile` is used when positive; a very local edit can change fewer than 1% of the
    pixels, leaving it at zero, so the true maximum is the fallback. Returns 0.0 only when nothing
    changed at all.
    """
    values = np.asarray(magnitude, dtype=np.float64)
    if values.size == 0:
        return 0.0
    level = float(np.percentile(values, percentile))
    return level if level > 0.0 else float(values.max(initial=0.0))


def change_heatmap(
    original: np.ndarray,
    edited: np.ndarray,
    mask: np.ndarray | None = None,
    vmax: float | None = None,
) -> np.ndarray:
    """The locality figure: where did an edit change the image?

    `original`, `edited`: `(H, W, 3)` uint8 or float (any common scale); `mask`: `(H, W)` bool
    edit region or None -> `(H, W, 3)` uint8. The L2 change per pixel is divided by `vmax`
    (default: `robust_max` of the change) and coloured with inferno, so black means untouched and
    pale yellow means the largest change; the mask outline is drawn on top in white. Pass the
    same `vmax` to several heatmaps to make their colours comparable.
    """
    magnitude = change_magnitude(original, edited)
    scale = robust_max(magnitude) if vmax is None else float(vmax)
    # An unchanged image must read as "no change", not as noise stretched to full range.
    levels = magnitude / scale if scale > 0.0 else np.zeros_like(magnitude)
    heat = apply_colormap(levels)
    if mask is not None:
        heat[mask_outline(_check_mask(mask, magnitude.shape))] = _OUTLINE_WHITE
    return heat


@functools.lru_cache(maxsize=1)
def _label_font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default()


def _text_size(font: ImageFont.ImageFont | ImageFont.FreeTypeFont, text: str) -> tuple[int, int]:
    left, top, right, bottom = font.getbbox(text)
    return int(right - left), int(bottom - top)


def _printable(font: ImageFont.ImageFont | ImageFont.FreeTypeFont, text: str) -> str:
    # Labels are single-line; the bitmap fallback font only encodes Latin-1.
    text = " ".join(str(text).split())
    try:
        font.getbbox(text)
    except UnicodeEncodeError:
        text = text.encode("latin-1", "replace").decode("latin-1")
    return text


def _fit(font: ImageFont.ImageFont | ImageFont.FreeTypeFont, text: str, width: int) -> str:
    """Shorten `text` with an ellipsis until it fits `width` pixels, so column labels never run
    into their neighbours."""
    if _text_size(font, text)[0] <= width:
        return text
    while text and _text_size(font, text + "...")[0] > width:
        text = text[:-1]
    return text + "..." if text else ""


def image_grid(
    cells: Sequence[Sequence[np.ndarray]],
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    pad: int = 4,
    background: RGB = (255, 255, 255),
) -> Image.Image:
    """Lay out equal-size `(H, W, 3)` uint8 images in rows, with optional labels.

    Rows may have different lengths (missing cells show the background). With R rows and C
    columns (the longest row) the result is
    `left + pad + C * (W + pad)` wide and `top + pad + R * (H + pad)` tall, where `left` is the
    widest row label plus `pad` (0 without row labels) and `top` the tallest column label plus
    `pad` (0 without column labels). Labels use PIL's default font; column labels too wide for
    their column are shortened with an ellipsis.
    """
    rows = [list(row) for row in cells]
    n_rows = len(rows)
    n_cols = max((len(row) for row in rows), default=0)
    if n_rows == 0 or n_cols == 0:
        raise ValueError("image_grid needs at least one image")
    if pad < 0:
        raise ValueError(f"pad must be >= 0, got {pad}")
    first = _check_image(next(cell for row in rows for cell in row), "grid cell")
    height, width = first.shape[:2]
    for r, row in enumerate(rows):
        for c, cell in enumerate(row):
            if _check_image(cell, f"grid cell [{r}][{c}]").shape != first.shape:
                raise ValueError(
                    f"grid cell [{r}][{c}] has shape {np.shape(cell)}, expected {first.shape}"
                )
    if row_labels is not None and len(row_labels) != n_rows:
        raise ValueError(f"got {len(row_labels)} row labels for {n_rows} rows")
    if col_labels is not None and len(col_labels) != n_cols:
        raise ValueError(f"got {len(col_labels)} column labels for {n_cols} columns")

    font = _label_font()
    rows_text = [_printable(font, t) for t in row_labels] if row_labels is not None else None
    cols_text = (
        [_fit(font, _printable(font, t), width) for t in col_labels]
        if col_labels is not None
        else None
    )
    # Height from a string with ascenders and descenders, so every label sits on one baseline.
    line_height = _text_size(font, "Ag|y")[1]
    left = max(_text_size(font, t)[0] for t in rows_text) + pad if rows_text else 0
    top = line_height + pad if cols_text else 0

    canvas = Image.new(
        "RGB",
        (left + pad + n_cols * (width + pad), top + pad + n_rows * (height + pad)),
        tuple(background),
    )
    for r, row in enumerate(rows):
        for c, cell in enumerate(row):
            x = left + pad + c * (width + pad)
            y = top + pad + r * (height + pad)
            canvas.paste(Image.fromarray(np.ascontiguousarray(cell)), (x, y))

    draw = ImageDraw.Draw(canvas)
    luminance = 0.299 * background[0] + 0.587 * background[1] + 0.114 * background[2]
    ink = (0, 0, 0) if luminance >= 128 else (255, 255, 255)
    if rows_text:
        for r, text in enumerate(rows_text):
            y = top + pad + r * (height + pad) + height // 2
            draw.text((pad, y), text, fill=ink, font=font, anchor="lm")
    if cols_text:
        for c, text in enumerate(cols_text):
            x = left + pad + c * (width + pad) + width // 2
            draw.text((x, pad + line_height // 2), text, fill=ink, font=font, anchor="mm")
    return canvas


def _shared_palette(frames: Sequence[np.ndarray]) -> Image.Image:
    """One 256-colour palette for the whole animation; per-frame palettes make colours flicker
    as an edit slider moves."""
    step = max(1, len(frames) // 16)  # a sample of frames is enough to find the colours
    sample = np.concatenate(list(frames[::step]), axis=0)
    return Image.fromarray(sample).quantize(colors=256, method=Image.Quantize.MEDIANCUT)


def gif_bytes(frames: Sequence[np.ndarray], duration_ms: int = 80, boomerang: bool = True) -> bytes:
    """Encode equal-size `(H, W, 3)` uint8 frames as an endlessly looping animated GIF.

    With `boomerang` the animation plays forward then back without showing the end frames twice
    (n frames -> 2n - 2 frames, for n >= 2), so it loops without a jump. All frames share one
    palette and are not dithered, which keeps still areas still. GIF delays have 10 ms steps and
    browsers slow delays under 20 ms down, so keep `duration_ms` >= 20. Pillow merges identical
    consecutive frames into one longer frame.
    """
    if not frames:
        raise ValueError("gif_bytes needs at least one frame")
    if duration_ms <= 0:
        raise ValueError(f"duration_ms must be positive, got {duration_ms}")
    arrays = [_check_image(frame, f"frame {i}") for i, frame in enumerate(frames)]
    if any(a.shape != arrays[0].shape for a in arrays):
        raise ValueError(f"all frames must have the same shape, first is {arrays[0].shape}")
    if boomerang and len(arrays) > 2:
        arrays = arrays + arrays[-2:0:-1]
    palette = _shared_palette(arrays)
    images = [
        Image.fromarray(a).quantize(palette=palette, dither=Image.Dither.NONE) for a in arrays
    ]
    buffer = io.BytesIO()
    images[0].save(
        buffer,
        format="GIF",
        save_all=True,
        append_images=images[1:],
        duration=int(duration_ms),
        loop=0,
    )
    return buffer.getvalue()


def png_bytes(image: np.ndarray | Image.Image) -> bytes:
    """Encode a PIL image or a `(H, W, 3)` / `(H, W)` uint8 array as PNG bytes."""
    if not isinstance(image, Image.Image):
        array = np.asarray(image)
        if array.dtype != np.uint8 or array.ndim not in (2, 3):
            raise ValueError(f"expected (H, W[, 3]) uint8 pixels, got {array.shape} {array.dtype}")
        image = Image.fromarray(np.ascontiguousarray(array))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
