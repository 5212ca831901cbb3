"""The one definition of how a photo becomes the model's input.

Training, calibration and inference all call `crop_faces` with the `Preprocessing` stored in the
model, so a face is cropped, coloured, sized and scaled the same way everywhere. A mismatch
here would cost accuracy without any error, which is why the runtime reports every difference.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from edgeface.declared import dotted
from edgeface.detect import (
    DetectorSettings,
    DetectorSettingsError,
    HaarSettings,
    YuNetSettings,
    changed,
    from_stored,
    stored,
)
from edgeface.geometry import Box

COLORS = ("gray", "rgb")
ALIGNMENTS = ("none", "eyes", "face5")
# Where YuNet's five landmarks fall in dlib's 150×150 face chip (`get_face_chip`, padding 0.25):
# the mean of YuNet on 300 dlib chips (spread 3–4 px). "face5" maps each face onto it, so the
# embedder sees faces placed as dlib's network was trained on them.
CHIP_TEMPLATE = np.array(
    [(44.98, 45.84), (102.36, 45.53), (73.63, 76.54), (49.71, 102.12), (97.65, 101.90)], dtype=np.float32
)
CHIP_SIZE = 150


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

    detector: DetectorSettings = field(default_factory=HaarSettings)  # checked when built
    # "eyes": turn each face until its eyes are level; "face5": move, turn and scale it so its five
    # landmarks fit CHIP_TEMPLATE (the margin is then the template's own). Both need yunet.
    alignment: str = "none"
    margin: float = 0.0
    color: str = "rgb"
    width: int = 64
    height: int = 64
    value_range: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self) -> None:
        checks = [
            (self.alignment in ALIGNMENTS, f"alignment must be one of {ALIGNMENTS}"),
            (self.alignment == "none" or isinstance(self.detector, YuNetSettings),
             f"alignment {self.alignment!r} needs the yunet detector"),
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
            "detector": stored(self.detector),
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
                detector=from_stored(dict(data["detector"])),
                alignment=str(data["alignment"]),
                margin=float(data["margin"]),
                color=str(data["color"]),
                width=width,
                height=height,
                value_range=(low, high),
            )
        except KeyError as missing:
            raise PreprocessingError(f"preprocessing has no {missing.args[0]!r}") from None
        except PreprocessingError:
            raise
        except DetectorSettingsError as bad:
            raise PreprocessingError(str(bad)) from None
        except (TypeError, ValueError) as bad:
            raise PreprocessingError(f"malformed preprocessing: {bad}") from None

    def with_detector(self, name: str | None = None, **changes: object) -> Preprocessing:
        """A copy whose detector has `changes` (those it has a setting for); with another `name`, that
        detector, keeping the settings both have. PreprocessingError says which value is out of range."""
        try:
            return replace(self, detector=changed(self.detector, name, **changes))
        except DetectorSettingsError as error:
            raise PreprocessingError(str(error)) from None

    def differences(self, other: Preprocessing) -> list[str]:
        """Human-readable `key: mine -> other's` lines for every setting both have that differs (another
        detector's own settings are implied by its name)."""
        mine, theirs = dotted(self.to_dict()), dotted(other.to_dict())
        return [f"{key}: {mine[key]} -> {theirs[key]}" for key in mine if key in theirs and mine[key] != theirs[key]]


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
        if spec.alignment == "face5" and box.landmarks:
            face = _cut_template(image, box, spec.width, spec.height)
        elif spec.alignment == "eyes" and box.landmarks:
            face = _cut_level(image, box.expand(spec.margin))
        else:
            face = _cut(image, box.expand(spec.margin))
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


def _cut_template(image: np.ndarray, box: Box, width: int, height: int) -> np.ndarray:
    """A width×height crop in which the box's five landmarks land on CHIP_TEMPLATE (scaled to the
    size) as closely as a move, a turn and one scale allow."""
    target = CHIP_TEMPLATE * np.float32((width / CHIP_SIZE, height / CHIP_SIZE))
    found = np.array(box.landmarks, dtype=np.float32)
    transform, _ = cv2.estimateAffinePartial2D(found, target, method=cv2.LMEDS)
    if transform is None:  # degenerate landmarks (all on one point): fall back to the plain box
        return _cut(image, box)
    scale = float(np.hypot(*transform[0, :2]))
    if scale < 0.5:  # a bilinear warp would skip pixels and alias: shrink the face's region first
        image, transform = _shrunk_region(image, transform, scale, width, height)
    return cv2.warpAffine(image, transform, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _shrunk_region(image: np.ndarray, transform: np.ndarray, scale: float, width: int, height: int
                   ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """The part of `image` that `transform` maps into the width×height crop, resized by `scale` with
    area averaging, and the transform that maps the resized part onto the same crop."""
    inverse = cv2.invertAffineTransform(transform)
    corners = np.array([(0, 0), (width, 0), (0, height), (width, height)], dtype=np.float64)
    mapped = corners @ inverse[:, :2].T + inverse[:, 2]
    rows, columns = image.shape[:2]
    left, top = (int(max(0, np.floor(v))) for v in mapped.min(axis=0))
    right, bottom = int(min(columns, np.ceil(mapped[:, 0].max()))), int(min(rows, np.ceil(mapped[:, 1].max())))
    if right - left < 2 or bottom - top < 2:
        return image, transform
    region = image[top:bottom, left:right]
    size = (max(1, round(region.shape[1] * scale)), max(1, round(region.shape[0] * scale)))
    small = cv2.resize(region, size, interpolation=cv2.INTER_AREA)
    along_x, along_y = small.shape[1] / region.shape[1], small.shape[0] / region.shape[0]
    moved = transform.copy()
    moved[:, 0] /= along_x
    moved[:, 1] /= along_y
    moved[:, 2] = transform[:, :2] @ np.array([left, top], dtype=np.float64) + transform[:, 2]
    return small, moved


def _prepare(face: np.ndarray, spec: Preprocessing) -> np.ndarray:
    """Colour order, size and value range for one BGR face crop; returns H×W×C float32."""
    if spec.color == "gray":
        face = cv2.cvtColor(face, cv2.COLOR_BGR2GRAY)
    else:
        face = cv2.cvtColor(face, cv2.COLOR_BGR2RGB)
    if face.shape[:2] != (spec.height, spec.width):  # an aligned crop is warped to the size already
        shrinking = face.shape[0] > spec.height or face.shape[1] > spec.width
        interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
        face = cv2.resize(face, (spec.width, spec.height), interpolation=interpolation)
    return pixels_to_values(face.reshape(spec.input_shape), spec)


def pixels_to_values(pixels: np.ndarray, spec: Preprocessing) -> np.ndarray:
    """uint8 crop pixels (0..255) as the model's float32 input values in `spec.value_range`."""
    low, high = spec.value_range
    return pixels.astype(np.float32) * np.float32((high - low) / 255.0) + np.float32(low)


def values_to_pixels(values: np.ndarray, spec: Preprocessing) -> np.ndarray:
    """The inverse of `pixels_to_values`: model input values back to uint8 pixels."""
    low, high = spec.value_range
    return np.clip(np.round((values - low) * (255.0 / (high - low))), 0, 255).astype(np.uint8)
