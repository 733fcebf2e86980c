"""Region presets of aligned datasets, in 256x256 coordinates, scaled to a model's size.

Shared by the families whose models generate aligned images (StyleGAN2 checkpoints, the
MobileStyleGAN IR): the LowRankGAN authors' face boxes and ours, church and car layouts.
"""

from __future__ import annotations

from pathlib import Path

from lowrankgan.shapes import Box, Difference, Ellipse, Shape


def _centre_box(row: float, col: float, height: float, width: float) -> Box:
    return Box(
        round(col - width / 2),
        round(row - height / 2),
        round(col + width / 2),
        round(row + height / 2),
    )


# The authors' boxes (center_row, center_col, height, width) on 256x256 aligned faces.
FACE_PRESETS_256: dict[str, Shape] = {
    "eyes": _centre_box(120, 128, 20, 115),
    "left_eye": _centre_box(120, 95, 20, 38),
    "right_eye": _centre_box(120, 159, 20, 38),
    "nose": _centre_box(142, 131, 40, 46),
    "mouth": _centre_box(184, 127, 30, 70),
    "chin": _centre_box(217, 130, 42, 110),
    # ours, on the same aligned layout
    "forehead": _centre_box(78, 128, 36, 110),
    "hair": Box(40, 0, 216, 50),
    "face": Ellipse(128.0, 140.0, 72.0, 96.0),
    "background": Difference(Box(0, 0, 256, 256), Ellipse(128.0, 128.0, 100.0, 128.0)),
}
CHURCH_PRESETS_256: dict[str, Shape] = {"sky": Box(0, 0, 256, 64), "ground": Box(0, 208, 256, 256)}
# The car model is 512 wide with 512x384 content (rows 64..448); coordinates in 256 units.
CAR_PRESETS_256: dict[str, Shape] = {"body": Box(24, 96, 232, 184), "ground": Box(0, 184, 256, 224)}

PRESET_FAMILIES = {"faces": FACE_PRESETS_256, "church": CHURCH_PRESETS_256, "car": CAR_PRESETS_256}
_NAME_HINTS = {
    "faces": ("ffhq", "metfaces", "celeba", "face"),
    "church": ("church",),
    "car": ("car",),
}


def guess_presets(name: str) -> str | None:
    """Which preset family a checkpoint's file name suggests (`ffhq` -> faces ...)."""
    lowered = Path(name).name.lower()
    for family, hints in _NAME_HINTS.items():
        if any(hint in lowered for hint in hints):
            return family
    return None


def scaled_presets(family: str | None, resolution: int) -> dict[str, Shape]:
    if family is None:
        return {}
    scale = resolution / 256
    return {name: shape.scaled(scale, scale) for name, shape in PRESET_FAMILIES[family].items()}
