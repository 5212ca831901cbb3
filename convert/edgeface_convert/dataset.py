"""Face crops from image folders, made with the runtime's own detector and preprocessing."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeface.detect import make_detector
from edgeface.images import ImageError, decode, is_image_name, read_input
from edgeface.preprocess import Preprocessing, crop_faces


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


def labelled_images(root: str | Path) -> tuple[tuple[str, ...], list[tuple[str, int]]]:
    """Labels (sorted sub-folder names of `root`) and (image path, label index) pairs."""
    folders = sorted(entry for entry in Path(root).iterdir() if entry.is_dir())
    labels = tuple(folder.name for folder in folders)
    files = [
        (str(path), index)
        for index, folder in enumerate(folders)
        for path in sorted(folder.iterdir())
        if path.is_file() and is_image_name(path)
    ]
    return labels, files


def folder_images(root: str | Path, labels: tuple[str, ...]) -> list[tuple[str, int]]:
    """(path, label index) for the images in `root`: in `root/<label>/` the label's index (-1 for a
    folder that is not one of `labels`), and -1 for images directly in `root`."""
    found = []
    for entry in sorted(Path(root).iterdir()):
        if entry.is_dir():
            target = labels.index(entry.name) if entry.name in labels else -1
            found.extend((str(path), target) for path in sorted(entry.iterdir()) if path.is_file() and is_image_name(path))
        elif entry.is_file() and is_image_name(entry):
            found.append((str(entry), -1))
    return found


def evenly_spaced(items: list, limit: int) -> list:
    """At most `limit` items spread evenly over `items`, in order (deterministic)."""
    if len(items) <= limit:
        return items
    return [items[int(i)] for i in np.linspace(0, len(items) - 1, limit)]


def load_faces(files: Iterable[tuple[str, int]], labels: tuple[str, ...], spec: Preprocessing) -> FaceSet:
    """The largest face of each image, cropped as `spec` says; images without one are listed, not used."""
    detector = make_detector(spec.detector)
    crops, targets, paths, no_face, unreadable = [], [], [], [], []
    for path, target in files:
        try:
            pixels = decode(read_input(path).content)
        except ImageError:
            unreadable.append(path)
            continue
        boxes = detector.detect(pixels)
        if not boxes:
            no_face.append(path)
            continue
        crops.append(crop_faces(pixels, [max(boxes, key=lambda box: box.area)], spec)[0])
        targets.append(target)
        paths.append(path)
    shape = (len(crops), *spec.input_shape)
    return FaceSet(
        np.asarray(crops, dtype=np.float32).reshape(shape),
        np.asarray(targets, dtype=np.int64),
        labels,
        paths,
        no_face,
        unreadable,
    )


def load_labelled_faces(root: str | Path, spec: Preprocessing) -> FaceSet:
    """Faces from `root/<label>/<images>`."""
    labels, files = labelled_images(root)
    if len(labels) < 2:
        raise ValueError(f"{root} needs at least two label folders (found {len(labels)})")
    return load_faces(files, labels, spec)


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
