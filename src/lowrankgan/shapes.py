"""Geometric region shapes in output-image pixels: boxes, ellipses, unions and complements.

Shapes are plain data: model families use them to declare named region presets, and
`regions.py` turns them (and user specs) into boolean masks. Coordinates follow the image:
x to the right, y down, in pixels of the model's output, boxes half-open `[x0, x1) x [y0, y1)`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


class Shape:
    """A region of the image plane that can be rasterised to a `(H, W)` bool mask."""

    def mask(self, height: int, width: int) -> torch.Tensor:
        raise NotImplementedError

    def scaled(self, factor_x: float, factor_y: float) -> Shape:
        """The same shape on an image resized by these factors."""
        raise NotImplementedError


def _pixel_centres(height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    ys = torch.arange(height, dtype=torch.float64).view(-1, 1) + 0.5
    xs = torch.arange(width, dtype=torch.float64).view(1, -1) + 0.5
    return ys, xs


@dataclass(frozen=True)
class Box(Shape):
    """Half-open pixel box `[x0, x1) x [y0, y1)`."""

    x0: int
    y0: int
    x1: int
    y1: int

    def mask(self, height: int, width: int) -> torch.Tensor:
        out = torch.zeros(height, width, dtype=torch.bool)
        out[max(self.y0, 0) : max(self.y1, 0), max(self.x0, 0) : max(self.x1, 0)] = True
        return out

    def scaled(self, factor_x: float, factor_y: float) -> Box:
        return Box(
            round(self.x0 * factor_x),
            round(self.y0 * factor_y),
            round(self.x1 * factor_x),
            round(self.y1 * factor_y),
        )


@dataclass(frozen=True)
class Ellipse(Shape):
    """Pixels whose centres lie inside the axis-aligned ellipse (cx, cy, rx, ry)."""

    cx: float
    cy: float
    rx: float
    ry: float

    def mask(self, height: int, width: int) -> torch.Tensor:
        ys, xs = _pixel_centres(height, width)
        return ((xs - self.cx) / self.rx) ** 2 + ((ys - self.cy) / self.ry) ** 2 <= 1.0

    def scaled(self, factor_x: float, factor_y: float) -> Ellipse:
        return Ellipse(
            self.cx * factor_x, self.cy * factor_y, self.rx * factor_x, self.ry * factor_y
        )


@dataclass(frozen=True)
class Union(Shape):
    parts: tuple[Shape, ...]

    def mask(self, height: int, width: int) -> torch.Tensor:
        out = torch.zeros(height, width, dtype=torch.bool)
        for part in self.parts:
            out |= part.mask(height, width)
        return out

    def scaled(self, factor_x: float, factor_y: float) -> Union:
        return Union(tuple(p.scaled(factor_x, factor_y) for p in self.parts))


@dataclass(frozen=True)
class Difference(Shape):
    """`keep` minus `remove`: e.g. the whole image minus the face is the background."""

    keep: Shape
    remove: Shape

    def mask(self, height: int, width: int) -> torch.Tensor:
        return self.keep.mask(height, width) & ~self.remove.mask(height, width)

    def scaled(self, factor_x: float, factor_y: float) -> Difference:
        return Difference(
            self.keep.scaled(factor_x, factor_y), self.remove.scaled(factor_x, factor_y)
        )
