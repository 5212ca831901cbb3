"""The one preprocessing definition: crops, colour order, size, value range, and its round trip."""

import cv2
import numpy as np
import pytest

from edgeface.detect import WholeImageSettings, YuNetSettings
from edgeface.geometry import Box
from edgeface.preprocess import CHIP_TEMPLATE, Preprocessing, PreprocessingError, crop_faces


def test_crop_has_the_model_shape_dtype_and_range():
    image = np.full((100, 80, 3), 255, dtype=np.uint8)
    spec = Preprocessing(width=32, height=24, value_range=(-1.0, 1.0))
    crops = crop_faces(image, [Box(10, 10, 40, 40), Box(0, 0, 80, 100)], spec)
    assert crops.shape == (2, 24, 32, 3)
    assert crops.dtype == np.float32
    assert np.allclose(crops, 1.0)


def test_rgb_is_red_green_blue_and_gray_has_one_channel():
    image = np.zeros((10, 10, 3), dtype=np.uint8)
    image[..., 2] = 255  # BGR: pure red
    rgb = crop_faces(image, [Box(0, 0, 10, 10)], Preprocessing(width=8, height=8))
    assert np.allclose(rgb[0, ..., 0], 1.0) and np.allclose(rgb[0, ..., 1:], 0.0)
    gray = crop_faces(image, [Box(0, 0, 10, 10)], Preprocessing(color="gray", width=8, height=8))
    assert gray.shape == (1, 8, 8, 1)
    assert np.allclose(gray, 76 / 255, atol=1 / 255)  # OpenCV's luma weight for red, 0.299


def test_margin_past_the_edge_repeats_edge_pixels():
    image = np.zeros((20, 20, 3), dtype=np.uint8)
    image[:, :10] = 200  # left half bright
    spec = Preprocessing(margin=0.5, color="gray", width=20, height=20)
    crop = crop_faces(image, [Box(0, 0, 20, 20)], spec)[0, ..., 0]
    # The box grows by 10 px on each side; the padding copies the edge columns outward.
    assert np.allclose(crop[:, :5], 200 / 255, atol=0.02)
    assert np.allclose(crop[:, -5:], 0.0, atol=0.02)


def test_round_trip_and_differences():
    spec = Preprocessing(
        detector=WholeImageSettings(), margin=0.2, color="gray", width=48, height=40, value_range=(0.0, 2.0)
    )
    assert Preprocessing.from_dict(spec.to_dict()) == spec
    other = spec.with_detector(name="haar")
    assert spec.differences(other) == ["detector.name: none -> haar"]
    assert spec.differences(spec) == []


@pytest.mark.parametrize(
    "change, message",
    [
        ({"color": "bgr"}, "color"),
        ({"margin": 2.0}, "margin"),
        ({"width": 4}, "width"),
        ({"value_range": (1.0, 0.0)}, "value_range"),
        ({"alignment": "nose"}, "alignment"),
        ({"alignment": "eyes"}, "yunet"),
    ],
)
def test_unusable_settings_are_refused(change, message):
    with pytest.raises(PreprocessingError, match=message):
        Preprocessing(**change)


@pytest.mark.parametrize("change, message", [({"min_size": 0}, "min-face"), ({"max_faces": -1}, "max-faces")])
def test_a_detector_override_out_of_range_is_refused_naming_the_flag(change, message):
    with pytest.raises(PreprocessingError, match=message):
        Preprocessing().with_detector(**change)


def test_from_dict_names_the_missing_key():
    document = Preprocessing().to_dict()
    del document["size"]
    with pytest.raises(PreprocessingError, match="size"):
        Preprocessing.from_dict(document)


@pytest.mark.parametrize("scale", [0.8, 2.0, 5.0])  # 5×: the face is shrunk by area before the warp
def test_face5_puts_the_five_landmarks_on_dlibs_chip_template(scale: float):
    """Five bright dots stand for YuNet's landmarks on a face turned by 15° and scaled; after the
    five-point alignment each dot is where dlib's chip has that landmark."""
    angle = np.radians(15)
    turn = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    landmarks = CHIP_TEMPLATE @ turn.T + np.array([60.0, 40.0])
    size = int(landmarks.max() + 150 * scale)
    image = np.zeros((size, size, 3), np.uint8)
    for x, y in landmarks:
        cv2.circle(image, (round(x), round(y)), max(2, round(3 * scale)), (255, 255, 255), -1)
    box = Box(0, 0, size, size, tuple((float(x), float(y)) for x, y in landmarks))
    spec = Preprocessing(detector=YuNetSettings(), alignment="face5", width=150, height=150)
    chip = crop_faces(image, [box], spec)[0, ..., 0]
    for x, y in CHIP_TEMPLATE:
        window = chip[round(y) - 6 : round(y) + 7, round(x) - 6 : round(x) + 7]
        rows, columns = np.nonzero(window > 0.3)
        weights = window[rows, columns]
        found = (np.average(columns, weights=weights) + round(x) - 6, np.average(rows, weights=weights) + round(y) - 6)
        assert np.hypot(found[0] - x, found[1] - y) < 1.5


def test_face5_without_landmarks_crops_the_box():
    image = np.full((100, 100, 3), 200, np.uint8)
    spec = Preprocessing(detector=YuNetSettings(), alignment="face5", width=32, height=32)
    assert crop_faces(image, [Box(10, 10, 50, 50)], spec).shape == (1, 32, 32, 3)
