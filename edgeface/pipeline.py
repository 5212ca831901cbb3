"""One image through the runtime: read → decode → detect → crop → recognize.

`scan` uses it now; the daemon reuses the same object, so there is one path from a file to a result.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np

from edgeface.detect import make_detector
from edgeface.geometry import Box
from edgeface.images import ImageError, InputFile, absolute, decode
from edgeface.preprocess import Preprocessing, crop_faces
from edgeface.recognizer import Recognizer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FaceResult:
    """One face: where, the nearest known label, a 0..1 confidence, whether it is rejected as
    unknown, and an embedder's distance to that label (None for a classifier)."""

    box: Box
    label: str
    confidence: float
    unknown: bool = False
    distance: float | None = None


@dataclass(frozen=True)
class ImageResult:
    """The outcome for one input: faces, or an error message (then `faces` is empty).

    sha256, size and the dimensions are None when the file could not be read or decoded.
    """

    path: str
    sha256: str | None
    size: int | None
    width: int | None
    height: int | None
    faces: tuple[FaceResult, ...]
    error: str | None = None

    @classmethod
    def unreadable(cls, path: str, error: str) -> ImageResult:
        """The outcome for a file that could not be read at all."""
        return cls(absolute(path), None, None, None, None, (), error)

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "sha256": self.sha256,
            "width": self.width,
            "height": self.height,
            "faces": [
                {
                    "box": face.box.as_list(),
                    "label": face.label,
                    "confidence": round(face.confidence, 4),
                    "unknown": face.unknown,
                    "distance": None if face.distance is None else round(face.distance, 4),
                }
                for face in self.faces
            ],
            "error": self.error,
        }


class Pipeline:
    """Finds and names faces with one model (a classifier or an embedder).

    `preprocessing` defaults to the model's own; any difference is logged as a warning, since a
    crop unlike the training crops lowers accuracy silently.
    """

    def __init__(
        self, recognizer: Recognizer, preprocessing: Preprocessing | None = None, report_differences: bool = True
    ) -> None:
        model_spec = recognizer.metadata.preprocessing
        self.preprocessing = preprocessing or model_spec
        for difference in model_spec.differences(self.preprocessing) if report_differences else []:
            log.warning("preprocessing differs from the model's (model -> now): %s", difference)
        self.recognizer = recognizer
        self.detector = make_detector(self.preprocessing.detector)

    def process(self, source: InputFile) -> ImageResult:
        """Decodes and classifies one input already read."""
        try:
            pixels = decode(source.content)
        except (ImageError, cv2.error) as error:
            return ImageResult(source.path, source.sha256, source.size, None, None, (), str(error))
        height, width = pixels.shape[:2]
        try:
            faces = self.faces_in(pixels)
        except (cv2.error, ValueError, ArithmeticError) as error:
            # Whatever a strange but decodable picture does to the detector or the crops, it ends
            # as this input's recorded error, never as a crash of the scan or the daemon.
            log.warning("%s: cannot find faces: %s", source.path, error)
            return ImageResult(source.path, source.sha256, source.size, width, height, (),
                               f"cannot find faces in this picture ({width}×{height}): {type(error).__name__}")  # fmt: skip
        return ImageResult(source.path, source.sha256, source.size, width, height, faces)

    def faces_in(self, pixels: np.ndarray) -> tuple[FaceResult, ...]:
        """Detects and names the faces of decoded BGR pixels (a photo or a video frame)."""
        boxes = self.detector.detect(pixels)
        predictions = self.recognizer.classify(crop_faces(pixels, boxes, self.preprocessing))
        return tuple(FaceResult(box, p.label, p.confidence, p.unknown, p.distance) for box, p in zip(boxes, predictions))
