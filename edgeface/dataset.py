"""Face crops from labelled image folders, made with the runtime's own detector and preprocessing.

Used by training and calibration on the workstation and by `edgeface eval` on the device.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeface.detect import WholeImageDetector, make_detector
from edgeface.images import ImageError, decode, read_input
from edgeface.paths import folder_files, is_image_name
from edgeface.preprocess import Preprocessing, crop_faces
from edgeface.progress import Progress

logger = logging.getLogger(__name__)


@dataclass
class FaceSet:
    """Model inputs with their labels.

    crops: float32 (n, height, width, channels); targets: int64 (n,) indices into `labels`;
    paths: the file of each crop. `no_face` and `unreadable` list files that gave no crop.
    """

    crops: np.ndarray
    targets: np.ndarray
    labels: tuple[str, ...]
    paths: list[str]
    no_face: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)

    def subset(self, indices: np.ndarray) -> FaceSet:
        return FaceSet(self.crops[indices], self.targets[indices], self.labels, [self.paths[i] for i in indices])


def images_in(folder: Path, recursive: bool = False) -> list[str]:
    """The image files in `folder` (with `recursive`, in its sub-folders too), as `folder_files` walks it (a link
    out is said, not followed)."""
    return [path for path in folder_files(folder, recursive, logger.warning) if is_image_name(path) and os.path.isfile(path)]


def _subfolders(root: Path) -> list[Path]:
    """The sub-folders of `root` by name; linked ones are not followed, as in every walk (see `folder_files`)."""
    folders = []
    for entry in sorted(root.iterdir()):
        if entry.is_symlink() and entry.is_dir():
            logger.warning("linked folder, not followed: %s", entry)
        elif entry.is_dir():
            folders.append(entry)
    return folders


def labelled_images(root: str | Path) -> tuple[tuple[str, ...], list[tuple[str, int]]]:
    """Labels (sorted sub-folder names of `root`) and (image path, label index) pairs."""
    folders = _subfolders(Path(root))
    labels = tuple(folder.name for folder in folders)
    return labels, [(path, index) for index, folder in enumerate(folders) for path in images_in(folder)]


def folder_images(root: str | Path, labels: tuple[str, ...]) -> list[tuple[str, int]]:
    """(path, label index) for the images in `root`: in `root/<label>/` the label's index (-1 for a
    folder that is not one of `labels`), and -1 for images directly in `root`."""
    found = [(path, -1) for path in images_in(Path(root))]
    for folder in _subfolders(Path(root)):
        target = labels.index(folder.name) if folder.name in labels else -1
        found.extend((path, target) for path in images_in(folder))
    return found


def evenly_spaced(items: list, limit: int) -> list:
    """At most `limit` items spread evenly over `items`, in order (deterministic)."""
    if len(items) <= limit:
        return items
    return [items[int(i)] for i in np.linspace(0, len(items) - 1, limit)]


def load_faces(
    files: Iterable[tuple[str, int]], labels: tuple[str, ...], spec: Preprocessing, keep_no_face: bool = False
) -> FaceSet:
    """The largest face of each image, cropped as `spec` says.

    Images where the detector finds no face are listed in `no_face`, and used whole when
    `keep_no_face` is set (for photos that are mostly face but defeat the detector).
    """
    files = list(files)
    detector = make_detector(spec.detector)
    whole_image = WholeImageDetector()
    crops, targets, paths, no_face, unreadable = [], [], [], [], []
    progress = Progress("reading faces", len(files))
    for path, target in files:
        progress.step()
        try:
            pixels = decode(read_input(path).content)
        except ImageError:
            unreadable.append(path)
            continue
        boxes = detector.detect(pixels)
        if not boxes:
            no_face.append(path)
            if not keep_no_face:
                continue
            boxes = whole_image.detect(pixels)
        crops.append(crop_faces(pixels, [max(boxes, key=lambda box: box.area)], spec)[0])
        targets.append(target)
        paths.append(path)
    progress.done()
    shape = (len(crops), *spec.input_shape)
    return FaceSet(
        np.asarray(crops, dtype=np.float32).reshape(shape),
        np.asarray(targets, dtype=np.int64),
        labels,
        paths,
        no_face,
        unreadable,
    )


def load_labelled_faces(root: str | Path, spec: Preprocessing, keep_no_face: bool = False) -> FaceSet:
    """Faces from `root/<label>/<images>`."""
    labels, files = labelled_images(root)
    if len(labels) < 2:
        raise ValueError(f"{root} needs at least two label folders (found {len(labels)})")
    return load_faces(files, labels, spec, keep_no_face)


LFW_SUBSET = "lfw_subset"


def lfw_subset_patches() -> np.ndarray:
    """scikit-image's lfw_subset as uint8 BGR (200, 25, 25, 3): 100 LFW face crops, then 100 non-faces.

    The faces are anonymous strangers for open-set calibration; needs scikit-image.
    """
    from skimage import data

    grey = np.round(data.lfw_subset() * 255).astype(np.uint8)
    return np.repeat(grey[..., np.newaxis], 3, axis=3)


def crop_patches(patches: np.ndarray, spec: Preprocessing) -> np.ndarray:
    """Model inputs from images that already are face crops, each used whole."""
    whole_image = WholeImageDetector()
    return np.concatenate([crop_faces(patch, whole_image.detect(patch), spec) for patch in patches])


def stranger_faces(source: str, spec: Preprocessing) -> tuple[np.ndarray, str]:
    """Crops of people a model does not know, and a description of where they came from.

    source: "lfw_subset" (scikit-image's 100 LFW faces) or a folder of face photos (sub-folders too).
    """
    if source == LFW_SUBSET:
        return crop_patches(lfw_subset_patches()[:100], spec), "scikit-image lfw_subset faces"
    if not Path(source).is_dir():
        raise ValueError(f"strangers: {source} is neither a folder nor {LFW_SUBSET!r}")
    files = [(str(path), -1) for path in sorted(Path(source).rglob("*")) if path.is_file() and is_image_name(path)]
    return load_faces(files, (), spec).crops, f"faces in {source}"


def unvalidated_people(faces: FaceSet, validation: np.ndarray) -> tuple[str, ...]:
    """The people with no face among the `validation` indices (one photo each gives none): the validation
    figures say nothing about them."""
    validated = set(faces.targets[validation].tolist())
    return tuple(label for target, label in enumerate(faces.labels) if target not in validated)


def stratified_split(targets: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) indices with about `fraction` of each label in validation (at least one
    where a label has two or more samples). The same seed gives the same split."""
    rng = np.random.default_rng(seed)
    train, validation = [], []
    for label in np.unique(targets):
        members = rng.permutation(np.flatnonzero(targets == label))
        take = min(len(members) - 1, max(1, round(len(members) * fraction))) if len(members) > 1 else 0
        validation.extend(members[:take])
        train.extend(members[take:])
    return np.sort(np.asarray(train, dtype=np.int64)), np.sort(np.asarray(validation, dtype=np.int64))
