"""Detectors on a real photo: the cascade on a shrunken copy, YuNet's eyes, and eye alignment."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edgeface.detect import DetectorSettings, DetectorUnavailable, YuNetDetector, make_detector
from edgeface.geometry import Box
from edgeface.preprocess import Preprocessing, crop_faces
from helpers import YUNET, astronaut, needs_yunet, three_faces


def iou(a: Box, b: Box) -> float:
    width = max(0, min(a.x + a.w, b.x + b.w) - max(a.x, b.x))
    height = max(0, min(a.y + a.h, b.y + b.h) - max(a.y, b.y))
    overlap = width * height
    return overlap / (a.area + b.area - overlap)


def test_the_cascade_on_a_shrunken_copy_finds_the_same_face_in_full_size_pixels():
    photo = astronaut()
    full = make_detector(DetectorSettings(name="haar", max_side=0)).detect(photo)
    shrunk = make_detector(DetectorSettings(name="haar", max_side=256)).detect(photo)
    assert len(full) == len(shrunk) == 1
    assert iou(full[0], shrunk[0]) > 0.7


def test_min_size_and_max_faces_are_applied():
    faces = three_faces()  # about 40, 61 and 83 pixels wide to the cascade
    every = make_detector(DetectorSettings(name="haar")).detect(faces)
    assert len(every) == 3
    largest_two = make_detector(DetectorSettings(name="haar", max_faces=2)).detect(faces)
    assert sorted(box.w for box in largest_two) == sorted(box.w for box in every)[1:]
    large = make_detector(DetectorSettings(name="haar", min_size=60)).detect(faces)
    assert len(large) == 2 and all(box.w >= 60 for box in large)


def test_yunet_without_its_file_says_how_to_get_it(monkeypatch):
    monkeypatch.delenv("EDGEFACE_YUNET_MODEL", raising=False)
    with pytest.raises(DetectorUnavailable, match="--yunet-model FILE or set EDGEFACE_YUNET_MODEL"):
        make_detector(DetectorSettings(name="yunet"))


@needs_yunet
def test_yunet_finds_the_face_and_its_eyes():
    photo = astronaut()
    (box,) = YuNetDetector(DetectorSettings(name="yunet"), str(YUNET)).detect(photo)
    haar = make_detector(DetectorSettings(name="haar")).detect(photo)[0]
    assert iou(box, haar) > 0.4
    (right_x, right_y), (left_x, left_y) = box.eyes
    assert box.x < right_x < left_x < box.x + box.w and box.y < right_y < box.y + box.h / 2


def test_alignment_levels_the_eyes():
    """Two bright dots stand for eyes on a line 20 degrees off level; after alignment they are level."""
    image = np.zeros((200, 200, 3), np.uint8)
    right, left = (70.0, 110.0), (70.0 + 60 * np.cos(np.radians(20)), 110.0 - 60 * np.sin(np.radians(20)))
    for x, y in (right, left):
        cv2.circle(image, (round(x), round(y)), 4, (255, 255, 255), -1)
    spec = Preprocessing(detector=DetectorSettings(name="yunet"), alignment="eyes", color="gray", width=100, height=100)
    crop = crop_faces(image, [Box(50, 50, 100, 100, (right, left, (100.0, 110.0), (85.0, 130.0), (115.0, 130.0)))], spec)[0, ..., 0]
    rows = [np.argmax(crop[:, :50].max(axis=1)), np.argmax(crop[:, 50:].max(axis=1))]  # each dot's row
    assert abs(int(rows[0]) - int(rows[1])) <= 1
    unaligned = crop_faces(image, [Box(50, 50, 100, 100)], Preprocessing(color="gray", width=100, height=100))[0, ..., 0]
    assert abs(int(np.argmax(unaligned[:, :50].max(axis=1))) - int(np.argmax(unaligned[:, 50:].max(axis=1)))) > 15
