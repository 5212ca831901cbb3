"""Face detectors: a photo in, face boxes out.

Each detector is chosen by the name stored in the model's preprocessing, so the runtime finds
faces the way training did. `none` treats the whole image as one face (inputs that already are crops).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Protocol

import cv2
import numpy as np

from edgeface.geometry import Box

HAAR_CASCADE_FILE = "haarcascade_frontalface_default.xml"


@dataclass(frozen=True)
class DetectorSettings:
    """Which detector finds faces and how strictly.

    `scale_factor` and `min_neighbors` are the cascade's own parameters; `min_size` is the smallest
    face side, in pixels, that is reported.
    """

    name: str = "haar"
    scale_factor: float = 1.1
    min_neighbors: int = 5
    min_size: int = 30

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> DetectorSettings:
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})


class Detector(Protocol):
    def detect(self, image: np.ndarray) -> list[Box]:
        """Face boxes in `image` (H×W×3 uint8, BGR), left to right, then top to bottom."""
        ...


class DetectorUnavailable(RuntimeError):
    """The detector cannot run with the OpenCV installed here."""


class HaarDetector:
    """OpenCV's bundled frontal-face Haar cascade, run on a greyscale copy."""

    def __init__(self, settings: DetectorSettings) -> None:
        data = getattr(cv2, "data", None)
        if not hasattr(cv2, "CascadeClassifier") or data is None:
            raise DetectorUnavailable(
                f"OpenCV {cv2.__version__} has no Haar cascades; install 'opencv-python-headless>=4.8,<5'"
            )
        self._cascade = cv2.CascadeClassifier(data.haarcascades + HAAR_CASCADE_FILE)
        if self._cascade.empty():
            raise DetectorUnavailable(f"cannot load {HAAR_CASCADE_FILE} from {data.haarcascades}")
        self._settings = settings

    def detect(self, image: np.ndarray) -> list[Box]:
        grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        found = self._cascade.detectMultiScale(
            grey,
            scaleFactor=self._settings.scale_factor,
            minNeighbors=self._settings.min_neighbors,
            minSize=(self._settings.min_size, self._settings.min_size),
        )
        boxes = [Box(int(x), int(y), int(w), int(h)) for x, y, w, h in found]
        return sorted(boxes, key=lambda box: (box.x, box.y))


class WholeImageDetector:
    """Treats the whole image as one face: for inputs that already are face crops."""

    def detect(self, image: np.ndarray) -> list[Box]:
        height, width = image.shape[:2]
        return [Box(0, 0, width, height)]


DETECTOR_NAMES = ("haar", "none")


def make_detector(settings: DetectorSettings) -> Detector:
    """The detector named by `settings.name`; ValueError names the known ones."""
    if settings.name == "haar":
        return HaarDetector(settings)
    if settings.name == "none":
        return WholeImageDetector()
    raise ValueError(f"unknown detector {settings.name!r}; known: {', '.join(DETECTOR_NAMES)}")
