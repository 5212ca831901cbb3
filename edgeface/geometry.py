"""Face boxes in pixel coordinates."""

from __future__ import annotations

from dataclasses import dataclass


Point = tuple[float, float]


@dataclass(frozen=True)
class Box:
    """An axis-aligned box: top-left corner (x, y), width w and height h, in pixels.

    landmarks: five points when the detector finds them (YuNet), for alignment, in YuNet's order:
    the subject's right eye, left eye (image left, then image right), nose tip, right and left
    mouth corner; None otherwise.
    """

    x: int
    y: int
    w: int
    h: int
    landmarks: tuple[Point, Point, Point, Point, Point] | None = None

    @property
    def eyes(self) -> tuple[Point, Point] | None:
        """The centres of the right and left eye, or None."""
        return None if self.landmarks is None else (self.landmarks[0], self.landmarks[1])

    @property
    def area(self) -> int:
        return self.w * self.h

    def expand(self, margin: float) -> Box:
        """The box grown by `margin` × its width (height) on the left and right (top and bottom).

        The result may extend past the image; cropping pads it.
        """
        dx = round(self.w * margin)
        dy = round(self.h * margin)
        return Box(self.x - dx, self.y - dy, self.w + 2 * dx, self.h + 2 * dy, self.landmarks)

    def scaled(self, factor: float) -> Box:
        """The same box in an image `factor` times the size (landmarks too)."""
        landmarks = None if self.landmarks is None else tuple((x * factor, y * factor) for x, y in self.landmarks)
        return Box(round(self.x * factor), round(self.y * factor), max(1, round(self.w * factor)),
                   max(1, round(self.h * factor)), landmarks)  # type: ignore[arg-type]  # fmt: skip

    def as_list(self) -> list[int]:
        return [self.x, self.y, self.w, self.h]


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes: 1 for the same box, 0 when they do not overlap."""
    width = max(0, min(a.x + a.w, b.x + b.w) - max(a.x, b.x))
    height = max(0, min(a.y + a.h, b.y + b.h) - max(a.y, b.y))
    overlap = width * height
    union = a.area + b.area - overlap
    return overlap / union if union > 0 else 0.0
