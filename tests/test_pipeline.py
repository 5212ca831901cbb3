"""The pipeline names every face of a photo however many there are, a bounded number at a time."""

from __future__ import annotations

import tracemalloc

import cv2
import numpy as np
import pytest

from edgeface.detect import HaarSettings
from edgeface.pipeline import FACES_PER_CALL, Pipeline
from edgeface.recognizer import load_recognizer
from helpers import FIXTURES, Classifier, astronaut


def crowd(rows: int, columns: int, width: int = 110) -> np.ndarray:
    """The astronaut's face rows × columns times, `width` pixels wide, on grey: a group photo of that many faces."""
    height = round(width * 1.22)
    face = cv2.resize(astronaut()[0:220, 120:300], (width, height), interpolation=cv2.INTER_AREA)
    cell_height, cell_width = height + 16, width + 20
    canvas = np.full((rows * cell_height, columns * cell_width, 3), 128, np.uint8)
    for row in range(rows):
        for column in range(columns):
            top, left = row * cell_height + 8, column * cell_width + 10
            canvas[top : top + height, left : left + width] = face
    return canvas


def test_a_photo_with_more_faces_than_one_call_takes_gets_every_face_named(classifier: Classifier):
    recognizer = load_recognizer(classifier.tflite_file)
    pipeline = Pipeline(recognizer, recognizer.metadata.preprocessing.with_detector("haar"), report_differences=False)
    assert pipeline.preprocessing.detector == HaarSettings()
    photo = crowd(6, 8)
    boxes = pipeline.detector.detect(photo)
    faces = pipeline.faces_in(photo)
    assert len(boxes) > 1.2 * FACES_PER_CALL and [face.box for face in faces] == boxes
    assert all(face.label in recognizer.labels for face in faces)



@pytest.mark.slow  # haar on a 5 MP photo, twice over; the test above checks the chunks themselves
def test_memory_does_not_grow_with_the_faces_a_photo_holds():
    """480 faces, each an embedder's 150x150 crop: all at once took ~400 MB here (the units' MemoryMax is 300M),
    FACES_PER_CALL at a time ~27 MB, the photo (16 MB) included."""
    recognizer = load_recognizer(FIXTURES / "embedder.tflite")
    pipeline = Pipeline(recognizer, recognizer.metadata.preprocessing.with_detector("haar", max_side=0),
                        report_differences=False)  # fmt: skip
    photo = crowd(20, 24, width=80)
    tracemalloc.start()
    try:
        faces = pipeline.faces_in(photo)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(faces) > 400 and peak < 64 * 2**20, (len(faces), peak / 2**20)
