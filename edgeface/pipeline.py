"""One image through the runtime: read → decode → detect → crop → quality gate → recognize.

`scan` uses it now; the daemon reuses the same object, so there is one path from a file to a result.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import cv2
import numpy as np

from edgeface.detect import make_detector
from edgeface.geometry import Box
from edgeface.images import REDUCTIONS, ImageError, InputFile, decode, image_size, reduction
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
        """Decodes and classifies one input already read.

        A large JPEG is decoded only as large as the detector will look at it (`images.reduction`), and its faces
        are cropped from that smaller picture when they are still at least the model's input size there; else from
        a larger decode, the whole photo at most (see `_crop_source`).
        """
        content = input_file.content
        size = image_size(content)
        reduced_by = reduction(content, self.detector.search_scale(*size)) if size else 1
        try:
            pixels = decode(content, reduced_by)
        except (ImageError, cv2.error) as error:
            return ImageResult(input_file.path, input_file.sha256, input_file.size, None, None, (), str(error))
        width, height = _decoded_size(size, pixels) if reduced_by > 1 else (pixels.shape[1], pixels.shape[0])
        try:
            faces = self.faces_in(pixels, width / pixels.shape[1], lambda factor: decode(content, factor))
        except (cv2.error, ValueError, ArithmeticError, ImageError) as error:
            # Whatever a strange but decodable picture does to the detector or the crops, it ends
            # as this input's recorded error, never as a crash of the scan or the daemon.
            logger.warning("%s: cannot find faces: %s", input_file.path, error)
            return ImageResult(input_file.path, input_file.sha256, input_file.size, width, height, (),
                               f"cannot find faces in this picture ({width}×{height}): {type(error).__name__}")  # fmt: skip
        return ImageResult(input_file.path, input_file.sha256, input_file.size, width, height, faces)

    def faces_in(
        self, pixels: np.ndarray, reduced_by: float = 1.0, decode_at: Callable[[int], np.ndarray] | None = None
    ) -> tuple[FaceResult, ...]:
        """Detects and names the faces of decoded BGR pixels (a photo or a video frame). `pixels` may be the photo
        reduced `reduced_by` times, and `decode_at(n)` decode it n times smaller; boxes are in the photo's pixels."""
        return self.name_faces(pixels, self.detector.detect(pixels, reduced_by), reduced_by, decode_at)

    def name_faces(
        self, pixels: np.ndarray, boxes: list[Box], reduced_by: float = 1.0,
        decode_at: Callable[[int], np.ndarray] | None = None,
    ) -> tuple[FaceResult, ...]:  # fmt: skip
        """Names the faces the detector found at `boxes` (see `faces_in`), FACES_PER_CALL at a time, so the crops
        held at once are bounded however many faces a photo holds."""
        source = self._crop_source(boxes, pixels, reduced_by, decode_at)
        scale = source.shape[1] / (pixels.shape[1] * reduced_by)
        faces: list[FaceResult] = []
        for start in range(0, len(boxes), FACES_PER_CALL):
            chunk = boxes[start : start + FACES_PER_CALL]
            in_source = [box.scaled(scale) for box in chunk] if scale != 1.0 else chunk
            faces += self._name(source, chunk, in_source)
        return tuple(faces)

    def _name(self, source: np.ndarray, boxes: list[Box], in_source: list[Box]) -> list[FaceResult]:
        """The faces of `boxes` (in the photo's pixels), cropped from `source` where they are `in_source`, in their
        order. With a quality gate, the crops it rejects are neither classified nor embedded: they become rejected
        faces with their score, and the others carry theirs."""
        gate = self.recognizer.gate
        if gate is None:
            return [FaceResult(box, p.label, p.confidence, p.unknown, p.distance)
                    for box, p in zip(boxes, self._classify(source, in_source))]  # fmt: skip
        scores = gate.scores(crop_faces(source, in_source, gate.preprocessing))
        passes = gate.passes(scores)
        predictions = iter(self._classify(source, [box for box, ok in zip(in_source, passes) if ok]))
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

    def _crop_source(self, boxes: list[Box], pixels: np.ndarray, reduced_by: float,
                     decode_at: Callable[[int], np.ndarray] | None) -> np.ndarray:  # fmt: skip
        """The picture to crop the faces from: the most reduced decode in which every face is still at least the
        model's input size (a crop is then shrunk, never enlarged, and loses nothing), down to the whole photo."""
        if reduced_by == 1.0 or not boxes or decode_at is None:
            return pixels
        allowed = min(min(box.w, box.h) for box in boxes) / max(self.preprocessing.width, self.preprocessing.height)
        factor = max((n for n in REDUCTIONS if n <= allowed), default=1)
        return pixels if factor >= round(reduced_by) else decode_at(factor)


def _decoded_size(header_size: tuple[int, int], pixels: np.ndarray) -> tuple[int, int]:
    """The whole photo's width and height as decoded: the header's, turned as EXIF turned the reduced pixels."""
    width, height = header_size
    turned = (pixels.shape[1] > pixels.shape[0]) != (width > height) and width != height
    return (height, width) if turned else (width, height)
