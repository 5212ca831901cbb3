"""Face detectors: a photo in, face boxes out.

Each detector is chosen by the name stored in the model's preprocessing, so the runtime finds
faces the way training did:
- `haar`: OpenCV's bundled frontal-face cascade, on a greyscale copy no larger than `max_side`;
- `yunet`: OpenCV's YuNet network (`cv2.FaceDetectorYN`), which also gives five landmarks (eyes, nose,
  mouth corners) for alignment;
  its ONNX file is the user's own (set EDGEFACE_YUNET_MODEL or pass --yunet-model);
- `none`: the whole image is one face (inputs that already are crops).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields
from typing import Protocol

import cv2
import numpy as np

from edgeface.geometry import Box

HAAR_CASCADE_FILE = "haarcascade_frontalface_default.xml"
YUNET_MODEL_VARIABLE = "EDGEFACE_YUNET_MODEL"
DETECTOR_NAMES = ("haar", "yunet", "none")


@dataclass(frozen=True)
class DetectorSettings:
    """Which detector finds faces and how strictly.

    scale_factor, min_neighbors: the cascade's own parameters. score_threshold: YuNet's.
    min_size: the smallest face side, in pixels of the original photo, that is reported.
    max_side: photos are shrunk so that their longer side is at most this before detection
        (speed; boxes are given in the original's pixels); 0 keeps the full size.
    max_faces: keep only the largest this many faces (0: all).
    """

    name: str = "haar"
    scale_factor: float = 1.1
    min_neighbors: int = 5
    min_size: int = 30
    score_threshold: float = 0.7
    max_side: int = 640
    max_faces: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> DetectorSettings:
        """Settings from a model's metadata; keys added later take their defaults in older models."""
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})


class Detector(Protocol):
    def detect(self, image: np.ndarray) -> list[Box]:
        """Face boxes in `image` (H×W×3 uint8, BGR), left to right, then top to bottom."""
        ...


class DetectorUnavailable(RuntimeError):
    """The detector cannot run here (OpenCV build, or a missing model file)."""


def _shrink(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """`image` resized so its longer side is at most `max_side`, and the factor back to the original."""
    longer = max(image.shape[:2])
    if not max_side or longer <= max_side:
        return image, 1.0
    scale = max_side / longer
    height, width = image.shape[:2]
    # At least one pixel each way: a 5000×1 photo must not shrink to nothing.
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return small, 1.0 / scale


def _finish(boxes: list[Box], settings: DetectorSettings) -> list[Box]:
    """Drops faces below min_size, keeps the largest max_faces, and orders them left to right."""
    boxes = [box for box in boxes if min(box.w, box.h) >= settings.min_size]
    if settings.max_faces:
        boxes = sorted(boxes, key=lambda box: -box.area)[: settings.max_faces]
    return sorted(boxes, key=lambda box: (box.x, box.y))


class HaarDetector:
    """OpenCV's bundled frontal-face Haar cascade, run on a shrunken greyscale copy."""

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
        small, back = _shrink(image, self._settings.max_side)
        grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
        smallest = max(1, round(self._settings.min_size / back))
        found = self._cascade.detectMultiScale(
            grey,
            scaleFactor=self._settings.scale_factor,
            minNeighbors=self._settings.min_neighbors,
            minSize=(smallest, smallest),
        )
        boxes = [Box(round(x * back), round(y * back), round(w * back), round(h * back)) for x, y, w, h in found]
        return _finish(boxes, self._settings)


class YuNetDetector:
    """OpenCV's YuNet face detector; each box carries its five landmarks for alignment."""

    def __init__(self, settings: DetectorSettings, model_path: str | None = None) -> None:
        model_path = model_path or os.environ.get(YUNET_MODEL_VARIABLE)
        if not hasattr(cv2, "FaceDetectorYN"):
            raise DetectorUnavailable(f"OpenCV {cv2.__version__} has no FaceDetectorYN (YuNet)")
        if not model_path or not os.path.isfile(model_path):
            raise DetectorUnavailable(
                f"the yunet detector needs its ONNX file (face_detection_yunet_2023mar.onnx from OpenCV Zoo): "
                f"pass --yunet-model FILE or set {YUNET_MODEL_VARIABLE}"
                + (f"; {model_path} is not a file" if model_path else "")
            )
        self._net = cv2.FaceDetectorYN.create(model_path, "", (320, 320), settings.score_threshold, 0.3, 5000)
        self._settings = settings

    def detect(self, image: np.ndarray) -> list[Box]:
        small, back = _shrink(image, self._settings.max_side)
        self._net.setInputSize((small.shape[1], small.shape[0]))
        _, found = self._net.detect(small)
        boxes = []
        height, width = image.shape[:2]
        for row in found if found is not None else []:
            if not np.isfinite(row[:14]).all():  # the network's answer for a degenerate picture
                continue
            x, y, w, h, *points = (float(v) * back for v in row[:14])
            # A box must overlap the picture and be at most twice its size: the crop pads what lies
            # outside, and a box far larger would make it pad gigabytes of border.
            overlaps = x < width and y < height and x + w > 0 and y + h > 0
            if overlaps and 0 < w <= 2 * max(width, height) and 0 < h <= 2 * max(width, height):
                landmarks = tuple((points[i], points[i + 1]) for i in range(0, 10, 2))
                boxes.append(Box(round(x), round(y), round(w), round(h), landmarks))
        return _finish(boxes, self._settings)


class WholeImageDetector:
    """Treats the whole image as one face: for inputs that already are face crops."""

    def detect(self, image: np.ndarray) -> list[Box]:
        height, width = image.shape[:2]
        return [Box(0, 0, width, height)]


def make_detector(settings: DetectorSettings) -> Detector:
    """The detector named by `settings.name`; ValueError names the known ones."""
    if settings.name == "haar":
        return HaarDetector(settings)
    if settings.name == "yunet":
        return YuNetDetector(settings)
    if settings.name == "none":
        return WholeImageDetector()
    raise ValueError(f"unknown detector {settings.name!r}; known: {', '.join(DETECTOR_NAMES)}")
