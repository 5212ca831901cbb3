"""The one definition of how a photo becomes the model's input.

Training, calibration and inference all call `crop_faces` with the `Preprocessing` stored in the
model, so a face is cropped, coloured, sized and scaled the same way everywhere. A mismatch
here would cost accuracy without any error, which is why the runtime reports every difference.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from edgeface.detect import DETECTOR_NAMES, DetectorSettings
from edgeface.geometry import Box

COLORS = ("gray", "rgb")
ALIGNMENTS = ("none", "eyes")


class PreprocessingError(ValueError):
    """A preprocessing definition that cannot be used."""


@dataclass(frozen=True)
class Preprocessing:
    """How to turn a BGR photo and a face box into one model input.

    margin: fraction of the box's width (height) added on each side before cropping.
    color: "gray" gives 1 channel, "rgb" 3 channels in R, G, B order.
    width, height: the model's input size in pixels.
    value_range: pixel 0 maps to the first value, 255 to the second (float32).
    """

    detector: DetectorSettings = field(default_factory=DetectorSettings)
    alignment: str = "none"  # "eyes": turn each face until its eyes are level (needs yunet)
    margin: float = 0.0
    color: str = "rgb"
    width: int = 64
    height: int = 64
    value_range: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self) -> None:
        checks = [
            (self.detector.name in DETECTOR_NAMES, f"detector must be one of {DETECTOR_NAMES}"),
            (self.alignment in ALIGNMENTS, f"alignment must be one of {ALIGNMENTS}"),
            (self.detector.min_size >= 1, "the detector's min_size (--min-face) must be at least 1 pixel"),
            (self.detector.max_faces >= 0, "the detector's max_faces (--max-faces) must be 0 (all) or more"),
            (self.detector.scale_factor > 1.0, "the detector's scale_factor must be above 1"),
            (0.0 < self.detector.score_threshold < 1.0, "the detector's score_threshold must be between 0 and 1"),
            (self.alignment != "eyes" or self.detector.name == "yunet", "alignment 'eyes' needs the yunet detector"),
            (0.0 <= self.margin <= 1.0, "margin must be between 0 and 1"),
            (self.color in COLORS, f"color must be one of {COLORS}"),
            (8 <= self.width <= 1024 and 8 <= self.height <= 1024, "width and height must be 8..1024"),
            (self.value_range[0] < self.value_range[1], "value_range must be [low, high] with low < high"),
        ]
        for ok, message in checks:
            if not ok:
                raise PreprocessingError(message)

    @property
    def channels(self) -> int:
        return 1 if self.color == "gray" else 3

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """The model input shape for one face: (height, width, channels)."""
        return (self.height, self.width, self.channels)

    def to_dict(self) -> dict:
        return {
            "detector": self.detector.to_dict(),
            "alignment": self.alignment,
            "margin": self.margin,
            "color": self.color,
            "size": [self.width, self.height],
            "value_range": list(self.value_range),
        }

    @classmethod
    def from_dict(cls, data: dict) -> Preprocessing:
        """Reads `to_dict` output; PreprocessingError names a missing or malformed key."""
        try:
            width, height = (int(v) for v in data["size"])
            low, high = (float(v) for v in data["value_range"])
            return cls(
                detector=DetectorSettings.from_dict(dict(data["detector"])),
                alignment=str(data["alignment"]),
                margin=float(data["margin"]),
                color=str(data["color"]),
                width=width,
                height=height,
                value_range=(low, high),
            )
        except KeyError as missing:
            raise PreprocessingError(f"preprocessing has no {missing.args[0]!r}") from None
        except (TypeError, ValueError) as bad:
            if isinstance(bad, PreprocessingError):
                raise
            raise PreprocessingError(f"malformed preprocessing: {bad}") from None

    def with_detector(self, **changes: object) -> Preprocessing:
        """A copy whose detector settings have `changes` applied."""
        return replace(self, detector=replace(self.detector, **changes))

    def differences(self, other: Preprocessing) -> list[str]:
        """Human-readable `key: mine -> other's` lines for every setting that differs."""
        mine, theirs = _flatten(self.to_dict()), _flatten(other.to_dict())
        return [f"{key}: {mine[key]} -> {theirs[key]}" for key in mine if mine[key] != theirs[key]]


def _flatten(data: dict, prefix: str = "") -> dict:
    flat: dict = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def crop_faces(image: np.ndarray, boxes: list[Box], spec: Preprocessing) -> np.ndarray:
    """Model inputs for each box in `image`.

    Args:
        image: H×W×3 uint8, BGR (as OpenCV decodes).
        boxes: faces in `image` pixel coordinates.
        spec: the model's preprocessing.
    Returns:
        float32 array (len(boxes), height, width, channels), values in `spec.value_range`.
    """
    crops = np.empty((len(boxes), *spec.input_shape), dtype=np.float32)
    for i, box in enumerate(boxes):
        expanded = box.expand(spec.margin)
        face = _cut_level(image, expanded) if spec.alignment == "eyes" and box.eyes else _cut(image, expanded)
        crops[i] = _prepare(face, spec)
    return crops


def _cut(image: np.ndarray, box: Box) -> np.ndarray:
    """The pixels inside `box`, repeating the edge pixels where the box leaves the image."""
    height, width = image.shape[:2]
    pad_left, pad_top = max(0, -box.x), max(0, -box.y)
    pad_right, pad_bottom = max(0, box.x + box.w - width), max(0, box.y + box.h - height)
    inside = image[max(0, box.y) : min(height, box.y + box.h), max(0, box.x) : min(width, box.x + box.w)]
    if pad_left or pad_top or pad_right or pad_bottom:
        inside = cv2.copyMakeBorder(inside, pad_top, pad_bottom, pad_left, pad_right, cv2.BORDER_REPLICATE)
    return inside


def _cut_level(image: np.ndarray, box: Box) -> np.ndarray:
    """The pixels of `box` after turning the image about the box centre until the eyes are level."""
    (right_x, right_y), (left_x, left_y) = box.eyes
    angle = np.degrees(np.arctan2(left_y - right_y, left_x - right_x))
    turn = cv2.getRotationMatrix2D((box.x + box.w / 2, box.y + box.h / 2), angle, 1.0)
    turn[:, 2] -= (box.x, box.y)  # and move the box's corner to the crop's origin
    return cv2.warpAffine(image, turn, (box.w, box.h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _prepare(face: np.ndarray, spec: Preprocessing) -> np.ndarray:
    """Colour order, size and value range for one BGR face crop; returns H×W×C float32."""
    if spec.color == "gray":
        face = cv2.cvtColor(face, cv2.COLOR_BGR2GRAY)
    else:
        face = cv2.cvtColor(face, cv2.COLOR_BGR2RGB)
    shrinking = face.shape[0] > spec.height or face.shape[1] > spec.width
    face = cv2.resize(face, (spec.width, spec.height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    return pixels_to_values(face.reshape(spec.input_shape), spec)


def pixels_to_values(pixels: np.ndarray, spec: Preprocessing) -> np.ndarray:
    """uint8 crop pixels (0..255) as the model's float32 input values in `spec.value_range`."""
    low, high = spec.value_range
    return pixels.astype(np.float32) * np.float32((high - low) / 255.0) + np.float32(low)


def values_to_pixels(values: np.ndarray, spec: Preprocessing) -> np.ndarray:
    """The inverse of `pixels_to_values`: model input values back to uint8 pixels."""
    low, high = spec.value_range
    return np.clip(np.round((values - low) * (255.0 / (high - low))), 0, 255).astype(np.uint8)
