"""The pipeline names every face of a photo however many there are, a bounded number at a time."""

from __future__ import annotations

import cv2
import numpy as np

from edgeface.detect import HaarSettings
from edgeface.pipeline import FACES_PER_CALL, Pipeline
from edgeface.recognizer import load_recognizer
from helpers import Classifier, astronaut


def crowd(rows: int, columns: int) -> np.ndarray:
    """The astronaut's face rows × columns times, 110 pixels wide, on grey: a group photo of that many faces."""
    face = cv2.resize(astronaut()[0:220, 120:300], (110, 134), interpolation=cv2.INTER_AREA)
    canvas = np.full((rows * 150, columns * 130, 3), 128, np.uint8)
    for row in range(rows):
        for column in range(columns):
            canvas[row * 150 + 8 : row * 150 + 142, column * 130 + 10 : column * 130 + 120] = face
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
