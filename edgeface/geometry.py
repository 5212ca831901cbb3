"""Face boxes in pixel coordinates."""

from __future__ import annotations

from dataclasses import dataclass


Point = tuple[float, float]


@dataclass(frozen=True)
class Box:
    """An axis-aligned box: top-left corner (x, y), width w and height h, in pixels.

    eyes: the centres of the subject's right and left eye (image left, then image right) when the
    detector finds them (YuNet), for alignment; None otherwise.
    """

    x: int
    y: int
    w: int
    h: int
    eyes: tuple[Point, Point] | None = None

    @property
    def area(self) -> int:
        return self.w * self.h

    def expand(self, margin: float) -> Box:
        """The box grown by `margin` × its width (height) on the left and right (top and bottom).

        The result may extend past the image; cropping pads it.
        """
        dx = round(self.w * margin)
        dy = round(self.h * margin)
        return Box(self.x - dx, self.y - dy, self.w + 2 * dx, self.h + 2 * dy, self.eyes)

    def as_list(self) -> list[int]:
        return [self.x, self.y, self.w, self.h]
