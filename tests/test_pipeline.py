"""The pipeline names every face of a photo however many there are, a bounded number at a time."""

from __future__ import annotations

import tracemalloc
from dataclasses import replace

import cv2
import numpy as np
import pytest

from edgeface.detect import HaarSettings
from edgeface.geometry import iou
from edgeface.images import InputFile, decode, reduction
from edgeface.pipeline import FACES_PER_CALL, Pipeline
from edgeface.recognizer import load_recognizer
from helpers import FIXTURES, YUNET, Classifier, astronaut, jpeg_with_orientation, needs_yunet


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


def encoded(pixels: np.ndarray, extension: str) -> InputFile:
    quality = [cv2.IMWRITE_JPEG_QUALITY, 95] if extension == ".jpg" else []
    content = cv2.imencode(extension, pixels, quality)[1].tobytes()
    return InputFile(f"/photos/big{extension}", content, "0" * 64)


@pytest.mark.parametrize("face_width", [560, 200])  # big enough in the reduced picture to crop there, and not
def test_a_large_jpeg_is_decoded_reduced_and_named_as_the_whole_photo_is(classifier: Classifier, face_width: int):
    """Haar looks at a 2,800-pixel photo at 640 pixels: the JPEG is decoded at a quarter of its size. Faces of 560
    pixels (140 there, above the model's 64) are cropped from that; faces of 200 make it decode it at half its size.
    Either way the faces, boxes and names are those of the whole photo decoded (a lossless PNG of it)."""
    recognizer = load_recognizer(classifier.tflite_file)
    pipeline = Pipeline(recognizer, recognizer.metadata.preprocessing.with_detector("haar"), report_differences=False)
    photo = np.full((2100, 2800, 3), 128, np.uint8)
    face = crowd(1, 2, face_width)
    photo[300 : 300 + face.shape[0], 200 : 200 + face.shape[1]] = face
    jpeg = encoded(photo, ".jpg")
    assert reduction(jpeg.content, pipeline.detector.search_scale(2800, 2100)) == 4
    whole = encoded(decode(jpeg.content), ".png")
    reduced, full = pipeline.process(jpeg), pipeline.process(whole)
    assert (reduced.width, reduced.height) == (full.width, full.height) == (2800, 2100)
    assert len(reduced.faces) == len(full.faces) == 2
    for one, other in zip(reduced.faces, full.faces):
        assert iou(one.box, other.box) > 0.85 and one.label == other.label
    larger: list[int] = []  # the decodes the crops needed: none, or one in which a 200-pixel face is 64 or more
    pixels = decode(jpeg.content, 4)
    pipeline.faces_in(pixels, 2800 / pixels.shape[1], lambda n: larger.append(n) or decode(jpeg.content, n))
    assert larger == ([] if face_width == 560 else [2])


@needs_yunet
def test_yunet_and_face5_alignment_crop_the_same_faces_from_a_reduced_decode(classifier: Classifier):
    """YuNet looks at a 2,800-pixel photo at 640: decoded at a quarter, its landmarks scaled with the boxes."""
    recognizer = load_recognizer(classifier.tflite_file)
    spec = recognizer.metadata.preprocessing.with_detector("yunet", model=str(YUNET))
    pipeline = Pipeline(recognizer, replace(spec, alignment="face5"), report_differences=False)
    photo = np.full((2100, 2800, 3), 128, np.uint8)
    face = crowd(1, 2, 560)
    photo[300 : 300 + face.shape[0], 200 : 200 + face.shape[1]] = face
    jpeg = encoded(photo, ".jpg")
    reduced, full = pipeline.process(jpeg), pipeline.process(encoded(decode(jpeg.content), ".png"))
    assert len(reduced.faces) == len(full.faces) == 2
    for one, other in zip(reduced.faces, full.faces):
        assert iou(one.box, other.box) > 0.9 and one.label == other.label
        assert abs(one.confidence - other.confidence) < 0.1


def test_a_reduced_decode_keeps_the_exif_turn_and_the_whole_size(classifier: Classifier):
    recognizer = load_recognizer(classifier.tflite_file)
    pipeline = Pipeline(recognizer, recognizer.metadata.preprocessing.with_detector("haar"), report_differences=False)
    photo = np.full((1800, 2800, 3), 128, np.uint8)
    photo[300:1100, 200:1000] = cv2.resize(astronaut(), (800, 800))
    content = jpeg_with_orientation(photo, 6)  # turned a quarter: decoded 1800 wide and 2800 high
    assert decode(content, 4).shape[:2] == (700, 450)
    result = pipeline.process(InputFile("/photos/turned.jpg", content, "0" * 64))
    assert (result.width, result.height) == (1800, 2800) and result.error is None
