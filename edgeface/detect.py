"""Face detectors: a photo in, face boxes out.

Each detector is chosen by the name stored in the model's preprocessing, so the runtime finds
faces the way training did. DETECTORS maps each name to its class, and each class has its own
settings dataclass (checked when built):
- `haar`: OpenCV's bundled frontal-face cascade, on a greyscale copy no larger than `max_side`;
- `yunet`: OpenCV's YuNet network (`cv2.FaceDetectorYN`), which also gives five landmarks (eyes, nose,
  mouth corners) for alignment; its ONNX file is the user's own, named in its settings (`model`),
  which the command line fills from --yunet-model or $EDGEFACE_YUNET_MODEL;
- `none`: the whole image is one face (inputs that already are crops).
"""

from __future__ import annotations

import math
import os
from dataclasses import Field, asdict, dataclass, fields
from typing import ClassVar, Protocol

import cv2
import numpy as np

from edgeface.declared import Check, Checked, Invalid, at_least, setting, within
from edgeface.geometry import Box

HAAR_CASCADE_FILE = "haarcascade_frontalface_default.xml"
YUNET_MODEL_VARIABLE = "EDGEFACE_YUNET_MODEL"  # read by the command line only, as --yunet-model's default


@dataclass(frozen=True)
class FaceSearch(Checked):
    """What the searching detectors share: which faces they report, and how large a photo they search."""

    min_size: int = setting(30, "the smallest face side reported, in pixels of the original photo",
                            at_least(1, "must be at least 1 pixel (--min-face)"))  # fmt: skip
    max_side: int = setting(640, "photos are shrunk so that their longer side is at most this before "
                            "detection (speed; boxes are given in the original's pixels); 0 keeps the full size",
                            at_least(0, "must be 0 (the full size) or more"))  # fmt: skip
    max_faces: int = setting(0, "keep only the largest this many faces (0: all)",
                             at_least(0, "must be 0 (all) or more (--max-faces)"))  # fmt: skip


@dataclass(frozen=True)
class HaarSettings(FaceSearch):
    """The cascade's own parameters, as OpenCV's `detectMultiScale` takes them."""

    name: ClassVar[str] = "haar"
    scale_factor: float = setting(1.1, "the step between two face sizes searched",
                                  within(1, math.inf, "must be above 1", low_open=True))  # fmt: skip
    min_neighbors: int = setting(5, "how many overlapping hits make a face", at_least(0, "must be 0 or more"))


@dataclass(frozen=True)
class YuNetSettings(FaceSearch):
    """The network's threshold, and its file on this machine, which a model does not store (`stored=False`)."""

    name: ClassVar[str] = "yunet"
    score_threshold: float = setting(0.7, "the confidence a face needs",
                                     Check(lambda value: 0 < value < 1, "must be between 0 and 1"))  # fmt: skip
    search_face: int = setting(16, "the side, in the pixels YuNet looks at, of a face of min_size: a photo is shrunk "
                               "by search_face / min_size before the search (never enlarged, never past max_side). "
                               "YuNet finds faces from about 10 pixels, and its time grows with the pixels; 0 "
                               "searches at max_side", within(0, 10_000, "must be 0 (max_side only) to 10000"),
                               before=0)  # fmt: skip
    model: str | None = setting(None, "YuNet's ONNX file (face_detection_yunet_2023mar.onnx)", stored=False)


@dataclass(frozen=True)
class WholeImageSettings(Checked):
    """Nothing to set: the whole image is the face."""

    name: ClassVar[str] = "none"


DetectorSettings = HaarSettings | YuNetSettings | WholeImageSettings


class DetectorSettingsError(ValueError):
    """Detector settings that cannot be used: an unknown detector, or a value out of its range."""


class Detector(Protocol):
    Settings: ClassVar[type]

    def detect(self, image: np.ndarray, reduced_by: float = 1.0) -> list[Box]:
        """Face boxes in `image` (H×W×3 uint8, BGR), left to right, then top to bottom. `image` may be the photo
        reduced `reduced_by` times; the boxes and min_size are in the photo's own pixels all the same."""
        ...

    def search_scale(self, width: int, height: int) -> float:
        """The factor (at most 1) a photo of this size is searched at: decoding it smaller than that loses nothing."""
        ...


class DetectorUnavailable(RuntimeError):
    """The detector cannot run here (OpenCV build, or a missing model file)."""


def search_scale(longer: float, max_side: int, most: float = 1.0) -> float:
    """The factor (at most 1) a photo whose longer side is `longer` is searched at: `most` at most, and so that its
    longer side is at most `max_side` (0: no bound)."""
    return min(1.0, most, max_side / longer if max_side else 1.0)


def _shrink(image: np.ndarray, max_side: int, most: float = 1.0, reduced_by: float = 1.0) -> tuple[np.ndarray, float]:
    """`image` (a photo already reduced `reduced_by` times, as a reduced JPEG decode is) resized to the photo's
    search scale, and the factor from its pixels back to the photo's."""
    scale = search_scale(max(image.shape[:2]) * reduced_by, max_side, most)
    left = scale * reduced_by  # what is left to shrink this image by
    if left >= 1.0:
        return image, reduced_by
    height, width = image.shape[:2]
    # At least one pixel each way: a 5000×1 photo must not shrink to nothing.
    size = (max(1, round(width * left)), max(1, round(height * left)))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return small, 1.0 / scale


def _finish(boxes: list[Box], settings: FaceSearch) -> list[Box]:
    """Drops faces below min_size, keeps the largest max_faces, and orders them left to right."""
    boxes = [box for box in boxes if min(box.w, box.h) >= settings.min_size]
    if settings.max_faces:
        boxes = sorted(boxes, key=lambda box: -box.area)[: settings.max_faces]
    return sorted(boxes, key=lambda box: (box.x, box.y))


class HaarDetector:
    """OpenCV's bundled frontal-face Haar cascade, run on a shrunken greyscale copy."""

    Settings = HaarSettings

    def __init__(self, settings: HaarSettings) -> None:
        data = getattr(cv2, "data", None)
        if not hasattr(cv2, "CascadeClassifier") or data is None:
            raise DetectorUnavailable(
                f"OpenCV {cv2.__version__} has no Haar cascades; install 'opencv-python-headless>=4.8,<5'"
            )
        self._cascade = cv2.CascadeClassifier(data.haarcascades + HAAR_CASCADE_FILE)
        if self._cascade.empty():
            raise DetectorUnavailable(f"cannot load {HAAR_CASCADE_FILE} from {data.haarcascades}")
        self._settings = settings

    def search_scale(self, width: int, height: int) -> float:
        return search_scale(max(width, height), self._settings.max_side)

    def detect(self, image: np.ndarray, reduced_by: float = 1.0) -> list[Box]:
        small, back = _shrink(image, self._settings.max_side, reduced_by=reduced_by)
        grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
        smallest = max(1, round(self._settings.min_size / back))
        found = self._cascade.detectMultiScale(
            grey,
            scaleFactor=self._settings.scale_factor,
            minNeighbors=self._settings.min_neighbors,
            minSize=(smallest, smallest),
        )
        boxes = [Box(round(x * back), round(y * back), round(w * back), round(h * back)) for x, y, w, h in found]
        return _finish(boxes, self._settings)


class YuNetDetector:
    """OpenCV's YuNet face detector; each box carries its five landmarks for alignment."""

    Settings = YuNetSettings

    def __init__(self, settings: YuNetSettings) -> None:
        model_path = settings.model
        if not hasattr(cv2, "FaceDetectorYN"):
            raise DetectorUnavailable(f"OpenCV {cv2.__version__} has no FaceDetectorYN (YuNet)")
        if not model_path or not os.path.isfile(model_path):
            raise DetectorUnavailable(
                f"the yunet detector needs its ONNX file (face_detection_yunet_2023mar.onnx from OpenCV Zoo): "
                f"pass --yunet-model FILE or set {YUNET_MODEL_VARIABLE}"
                + (f"; {model_path} is not a file" if model_path else "")
            )
        self._net = cv2.FaceDetectorYN.create(model_path, "", (320, 320), settings.score_threshold, 0.3, 5000)
        self._settings = settings

    def search_scale(self, width: int, height: int) -> float:
        return search_scale(max(width, height), self._settings.max_side, self._most)

    @property
    def _most(self) -> float:
        """The most a photo is shrunk by for YuNet, so that a face of min_size is search_face pixels."""
        search = self._settings.search_face
        return search / self._settings.min_size if search else 1.0

    def detect(self, image: np.ndarray, reduced_by: float = 1.0) -> list[Box]:
        small, back = _shrink(image, self._settings.max_side, self._most, reduced_by)
        self._net.setInputSize((small.shape[1], small.shape[0]))
        _, found = self._net.detect(small)
        boxes = []
        height, width = (side * reduced_by for side in image.shape[:2])  # the photo's own
        for row in found if found is not None else []:
            if not np.isfinite(row[:14]).all():  # the network's answer for a degenerate picture
                continue
            x, y, w, h, *points = (float(v) * back for v in row[:14])
            # A box must overlap the picture and be at most twice its size: the crop pads what lies
            # outside, and a box far larger would make it pad gigabytes of border.
            overlaps = x < width and y < height and x + w > 0 and y + h > 0
            if overlaps and 0 < w <= 2 * max(width, height) and 0 < h <= 2 * max(width, height):
                landmarks = tuple((points[i], points[i + 1]) for i in range(0, 10, 2))
                boxes.append(Box(round(x), round(y), round(w), round(h), landmarks))
        return _finish(boxes, self._settings)


class WholeImageDetector:
    """Treats the whole image as one face: for inputs that already are face crops."""

    Settings = WholeImageSettings

    def __init__(self, settings: WholeImageSettings = WholeImageSettings()) -> None:
        """Nothing to set: there is no search."""

    def search_scale(self, width: int, height: int) -> float:
        return 1.0  # the whole photo is the crop

    def detect(self, image: np.ndarray, reduced_by: float = 1.0) -> list[Box]:
        height, width = image.shape[:2]
        return [Box(0, 0, round(width * reduced_by), round(height * reduced_by))]


DETECTORS: dict[str, type[Detector]] = {
    detector.Settings.name: detector for detector in (HaarDetector, YuNetDetector, WholeImageDetector)
}
DETECTOR_NAMES = tuple(DETECTORS)
# Every detector setting, whichever detector has it: a value for another detector is left out, any
# other name is a mistake.
_SETTING_NAMES = frozenset(f.name for detector in DETECTORS.values() for f in fields(detector.Settings))


def make_detector(settings: DetectorSettings) -> Detector:
    """The detector that `settings` belong to."""
    return DETECTORS[settings.name](settings)


def detector_settings(name: str, **values: object) -> DetectorSettings:
    """Detector `name`'s settings: the `values` it has a field for, its defaults for the rest (only yunet
    has a model file; the whole image has no min_size). DetectorSettingsError names an unknown detector
    or the value out of range."""
    unknown = set(values) - _SETTING_NAMES
    if unknown:
        raise TypeError(f"no detector has the settings {', '.join(sorted(unknown))}")
    kind = _settings_type(name)
    own = {f.name for f in fields(kind)}
    try:
        return kind(**{key: value for key, value in values.items() if key in own})
    except Invalid as error:
        raise DetectorSettingsError(f"the detector's {error}") from None


def stored(settings: DetectorSettings) -> dict:
    """The settings as a model stores them: the name and every field but this machine's (YuNet's file)."""
    return {"name": settings.name, **{f.name: getattr(settings, f.name) for f in fields(settings) if _is_stored(f)}}


def from_stored(data: dict) -> DetectorSettings:
    """Settings as a model stored them. Older models stored every detector's fields under any name,
    and lack the keys added later: those take the value that does what the model's version did (`before`), else
    their default. Keys this version does not know and this machine's own (a model cannot name a file to load)
    are left out."""
    name = data.get("name", HaarSettings.name)
    declared = [f for f in fields(_settings_type(name)) if _is_stored(f)]
    older = {f.name: f.metadata["before"] for f in declared if "before" in f.metadata}
    return detector_settings(name, **{**older, **{f.name: data[f.name] for f in declared if f.name in data}})


def changed(settings: DetectorSettings, name: str | None = None, **values: object) -> DetectorSettings:
    """`settings` with `values`; with another `name`, that detector's settings keeping what both have."""
    return detector_settings(name or settings.name, **{**asdict(settings), **values})


def _settings_type(name: object) -> type:
    if name not in DETECTORS:
        raise DetectorSettingsError(f"unknown detector {name!r}; known: {', '.join(DETECTOR_NAMES)}")
    return DETECTORS[name].Settings


def _is_stored(declared: Field) -> bool:
    return declared.metadata.get("stored", True)
