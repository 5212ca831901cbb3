"""One image through the runtime: read → decode → detect → crop → quality gate → recognize.

`scan` uses it now; the daemon reuses the same object, so there is one path from a file to a result.
"""

from __future__ import annotations

import logging

import cv2
import numpy as np

from edgeface.detect import make_detector
from edgeface.geometry import Box
from edgeface.images import ImageError, InputFile, decode
from edgeface.preprocess import Preprocessing, crop_faces
from edgeface.recognizer import Recognizer
from edgeface.results import FaceResult, ImageResult, Prediction

logger = logging.getLogger(__name__)

# Faces cropped and named in one go: 32 of the embedder's 150×150×3 float crops are 8.6 MB, where the
# 687 faces of one group photo were 185 MB at once (and pushed the daemon past MemoryMax=300M).
FACES_PER_CALL = 32


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
            logger.warning("preprocessing differs from the model's (model -> now): %s", difference)
        self.recognizer = recognizer
        self.detector = make_detector(self.preprocessing.detector)

    def process(self, input_file: InputFile) -> ImageResult:
        """Decodes and classifies one input already read."""
        try:
            pixels = decode(input_file.content)
        except (ImageError, cv2.error) as error:
            return ImageResult(input_file.path, input_file.sha256, input_file.size, None, None, (), str(error))
        height, width = pixels.shape[:2]
        try:
            faces = self.faces_in(pixels)
        except (cv2.error, ValueError, ArithmeticError) as error:
            # Whatever a strange but decodable picture does to the detector or the crops, it ends
            # as this input's recorded error, never as a crash of the scan or the daemon.
            logger.warning("%s: cannot find faces: %s", input_file.path, error)
            return ImageResult(input_file.path, input_file.sha256, input_file.size, width, height, (),
                               f"cannot find faces in this picture ({width}×{height}): {type(error).__name__}")  # fmt: skip
        return ImageResult(input_file.path, input_file.sha256, input_file.size, width, height, faces)

    def faces_in(self, pixels: np.ndarray) -> tuple[FaceResult, ...]:
        """Detects and names the faces of decoded BGR pixels (a photo or a video frame), FACES_PER_CALL at a
        time, so the crops held at once are bounded however many faces a photo holds."""
        boxes = self.detector.detect(pixels)
        faces: list[FaceResult] = []
        for start in range(0, len(boxes), FACES_PER_CALL):
            faces += self._name(pixels, boxes[start : start + FACES_PER_CALL])
        return tuple(faces)

    def _name(self, pixels: np.ndarray, boxes: list[Box]) -> list[FaceResult]:
        """The faces of `boxes`, in their order. With a quality gate, the crops it rejects are neither classified
        nor embedded: they become rejected faces with their score, and the others carry theirs."""
        gate = self.recognizer.gate
        if gate is None:
            return [FaceResult(box, p.label, p.confidence, p.unknown, p.distance)
                    for box, p in zip(boxes, self._classify(pixels, boxes))]  # fmt: skip
        scores = gate.scores(crop_faces(pixels, boxes, gate.preprocessing))
        passes = gate.passes(scores)
        predictions = iter(self._classify(pixels, [box for box, ok in zip(boxes, passes) if ok]))
        faces = []
        for box, score, ok in zip(boxes, scores.tolist(), passes):
            if not ok:
                faces.append(FaceResult.rejected_by_gate(box, score))
                continue
            p = next(predictions)
            faces.append(FaceResult(box, p.label, p.confidence, p.unknown, p.distance, quality=score))
        return faces

    def _classify(self, pixels: np.ndarray, boxes: list[Box]) -> list[Prediction]:
        """The recognizer's prediction for each box (none asked for no box)."""
        return self.recognizer.classify(crop_faces(pixels, boxes, self.preprocessing)) if boxes else []
