"""Precision and recall of edgeface's face detectors on hand-boxed group photos, with and without a verifier.

Usage: python benchmarks/detectors.py [--data ../shared/data/misc/group_photos] [--yunet FILE.onnx]
       [--verifier FILE.tflite] [--iou 0.5] [--repeat 10] [--json OUT.json]

The photos are dlib's example faces (PASCAL VOC images), boxed by hand in training.xml and testing.xml
(imglab format). Both files are used as one evaluation set, since nothing here is trained on them;
photos without annotations are skipped, and boxes marked ignore='1' are "don't care" (neither a hit
nor a false positive). Detections are matched one-to-one to the hand boxes, greedily by IoU (highest
first). The headline threshold is --iou; 0.3 is reported too, because the hand boxes are tight squares
while the detectors' boxes are offset or shaped otherwise (YuNet's are taller than wide), so 0.3 also
counts faces that were found but boxed differently.
Per configuration: faces, detections, true positives, precision, recall, F1, and the median time per
photo (each photo's median over --repeat runs, then the median over photos) with 1 OpenCV thread.
The verifier (--verifier, e.g. the face / not-face model `edgeface demo` writes) classifies each cascade
box; a box is kept when its face probability reaches a threshold. Its time (crops + int8 model, 1 thread)
is given apart from the detector's.
Figures are for the machine that runs it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import cv2
import numpy as np

from edgeface.detect import DetectorSettings, HaarSettings, YuNetSettings, make_detector, stored
from edgeface.geometry import Box, iou
from edgeface.images import decode, read_input
from edgeface.model import FaceClassifier
from edgeface.preprocess import crop_faces
from timing import median_ms  # benchmarks/ is on the path when run as a script

ANNOTATION_FILES = ("training.xml", "testing.xml")
REPO = Path(__file__).resolve().parent.parent
LOOSE_IOU = 0.3
# The smallest hand box is 37 px, and YuNet's boxes are narrower than the hand-drawn squares
# (about 25×32 px for those faces), so every configuration but edgeface's default uses 20 px.
MIN_SIZE = 20
VERIFIER_THRESHOLDS = (0.5, 0.7, 0.9)


@dataclass(frozen=True)
class Photo:
    """One annotated photo: its pixels, the faces to find, and the boxes that count neither way."""

    name: str
    image: np.ndarray
    faces: list[Box]
    ignored: list[Box]


@dataclass(frozen=True)
class Configuration:
    """A detector to measure; `verified`: also measure it followed by the verifier."""

    label: str
    settings: DetectorSettings
    verified: bool = False


@dataclass
class Counts:
    """Matching totals over the photos, and the figures derived from them."""

    faces: int = 0
    detections: int = 0
    hits: int = 0

    @property
    def precision(self) -> float:
        return self.hits / self.detections if self.detections else 0.0

    @property
    def recall(self) -> float:
        return self.hits / self.faces if self.faces else 0.0

    @property
    def f1(self) -> float:
        total = self.precision + self.recall
        return 2 * self.precision * self.recall / total if total else 0.0

    def add(self, other: Counts) -> None:
        """Adds one photo's counts to the totals."""
        self.faces += other.faces
        self.detections += other.detections
        self.hits += other.hits

    def to_dict(self) -> dict:
        return {
            "faces": self.faces,
            "detections": self.detections,
            "true_positives": self.hits,
            "precision": round(self.precision, 4),
            "recall": round(self.recall, 4),
            "f1": round(self.f1, 4),
        }


@dataclass
class Row:
    """One line of the results: a pipeline, its counts at each IoU threshold, and its times per photo (ms)."""

    label: str
    settings: DetectorSettings
    verifier_threshold: float | None
    detect_ms: float
    verify_ms: float | None
    counts: dict[float, Counts] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "configuration": self.label,
            "detector": stored(self.settings),
            "verifier_threshold": self.verifier_threshold,
            "detect_ms_per_photo": round(self.detect_ms, 2),
            "verify_ms_per_photo": None if self.verify_ms is None else round(self.verify_ms, 3),
            "by_iou": {str(threshold): counts.to_dict() for threshold, counts in self.counts.items()},
        }


def configurations(yunet: Path | None) -> list[Configuration]:
    """The cascade at edgeface's default, stricter, looser and permissive settings, then YuNet if its file is given."""
    found = [
        Configuration("haar default", HaarSettings(), verified=True),
        Configuration("haar 1.1/5", HaarSettings(min_size=MIN_SIZE)),
        Configuration("haar 1.2/5", HaarSettings(scale_factor=1.2, min_size=MIN_SIZE)),
        Configuration("haar 1.1/8", HaarSettings(min_neighbors=8, min_size=MIN_SIZE)),
        Configuration("haar 1.1/3", HaarSettings(min_neighbors=3, min_size=MIN_SIZE)),
        Configuration(
            "haar 1.05/3", HaarSettings(scale_factor=1.05, min_neighbors=3, min_size=MIN_SIZE), True
        ),
        Configuration(
            "haar 1.05/2", HaarSettings(scale_factor=1.05, min_neighbors=2, min_size=MIN_SIZE), True
        ),
    ]
    if yunet:
        found += [
            Configuration(f"yunet {score}", YuNetSettings(score_threshold=score, min_size=MIN_SIZE, model=str(yunet)))
            for score in (0.5, 0.7, 0.9)
        ]
        # The default search shrinks a photo so its smallest face is search_face pixels; 0 searches at max_side.
        found.append(Configuration("yunet 0.7, searched at max_side",
                                   YuNetSettings(min_size=MIN_SIZE, model=str(yunet), search_face=0)))
    return found


def load_photos(folder: Path) -> tuple[list[Photo], list[str]]:
    """The photos annotated in ANNOTATION_FILES, and the names of the folder's photos that are not."""
    photos = []
    for xml_file in ANNOTATION_FILES:
        for element in ElementTree.parse(folder / xml_file).getroot().iter("image"):
            faces, ignored = [], []
            for box in element.iter("box"):
                left, top, width, height = (int(box.get(key)) for key in ("left", "top", "width", "height"))
                (ignored if box.get("ignore") == "1" else faces).append(Box(left, top, width, height))
            name = element.get("file")
            photos.append(Photo(name, decode(read_input(folder / name).content), faces, ignored))
    annotated = {photo.name for photo in photos}
    unannotated = sorted(path.name for path in folder.glob("*.jpg") if path.name not in annotated)
    return photos, unannotated


def match(found: list[Box], photo: Photo, threshold: float) -> Counts:
    """Counts for one photo: pairs at IoU ≥ threshold, highest first, each box used once.

    A detection left unpaired that overlaps an ignored box at the threshold is not counted.
    """
    pairs = sorted(
        ((iou(box, face), i, j) for i, box in enumerate(found) for j, face in enumerate(photo.faces)), reverse=True
    )
    used_found: set[int] = set()
    used_faces: set[int] = set()
    for overlap, i, j in pairs:
        if overlap < threshold:
            break
        if i not in used_found and j not in used_faces:
            used_found.add(i)
            used_faces.add(j)
    dont_care = sum(
        1
        for i, box in enumerate(found)
        if i not in used_found and any(iou(box, ignored) >= threshold for ignored in photo.ignored)
    )
    return Counts(len(photo.faces), len(found) - dont_care, len(used_found))


class Verifier:
    """A face / not-face .tflite that gives each detected box its face probability."""

    def __init__(self, path: Path) -> None:
        self.classifier = FaceClassifier(path, threads=1)
        self._face = self.classifier.labels.index("face")

    def face_probabilities(self, image: np.ndarray, boxes: list[Box]) -> np.ndarray:
        """P(face) for each box, cropped the way the model was trained (its stored preprocessing)."""
        crops = crop_faces(image, boxes, self.classifier.metadata.preprocessing)
        return self.classifier.probabilities(crops)[:, self._face]


def measure(
    configuration: Configuration,
    photos: list[Photo],
    verifier: Verifier | None,
    thresholds: list[float],
    repeat: int,
) -> list[Row]:
    """The rows for one detector: alone, then (if it is verified and a verifier is given) at each threshold."""
    detector = make_detector(configuration.settings)
    found = [detector.detect(photo.image) for photo in photos]
    detect_ms = _median_time([partial(detector.detect, photo.image) for photo in photos], repeat)
    rows = [Row(configuration.label, configuration.settings, None, detect_ms, None)]
    kept = [found]  # per row: the boxes kept in each photo
    if verifier is not None and configuration.verified:
        probabilities = [verifier.face_probabilities(photo.image, boxes) for photo, boxes in zip(photos, found)]
        verify_ms = _median_time(
            [partial(verifier.face_probabilities, photo.image, boxes) for photo, boxes in zip(photos, found)], repeat
        )
        for cut in VERIFIER_THRESHOLDS:
            label = f"{configuration.label} + verifier ≥ {cut}"
            rows.append(Row(label, configuration.settings, cut, detect_ms, verify_ms))
            kept.append([[box for box, p in zip(boxes, ps) if p >= cut] for boxes, ps in zip(found, probabilities)])
    for row, boxes_per_photo in zip(rows, kept):
        for threshold in thresholds:
            row.counts[threshold] = Counts()
            for photo, boxes in zip(photos, boxes_per_photo):
                row.counts[threshold].add(match(boxes, photo, threshold))
    return rows


def _median_time(actions: list[Callable[[], object]], repeat: int) -> float:
    """Median over the photos (one action each) of each one's median time in ms."""
    return statistics.median(median_ms(action, repeat) for action in actions)


def print_table(rows: list[Row], threshold: float, title: str) -> None:
    """One line per row with its counts and figures at the IoU `threshold`, and its time."""
    print(f"\n{title}")
    columns = ("min", "faces", "det", "TP", "P", "R", "F1", "detect ms", "verify ms")
    widths = (3, 5, 4, 3, 5, 5, 5, 9, 9)
    print(f"{'configuration':<32} " + " ".join(f"{name:>{width}}" for name, width in zip(columns, widths)))
    for row in rows:
        c = row.counts[threshold]
        print(
            f"{row.label:<32} {row.settings.min_size:>3} {c.faces:>5} {c.detections:>4} {c.hits:>3} "
            f"{c.precision:5.2f} {c.recall:5.2f} {c.f1:5.2f} {row.detect_ms:9.1f}"
            + ("" if row.verify_ms is None else f" {row.verify_ms:9.2f}")
        )


def main() -> None:
    """Parses the arguments, measures every configuration, prints the tables and writes the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO / "../shared/data/misc/group_photos")
    parser.add_argument("--yunet", type=Path, help="YuNet ONNX file (face_detection_yunet_2023mar.onnx)")
    parser.add_argument("--verifier", type=Path, help="face / not-face .tflite, e.g. from `edgeface demo`")
    parser.add_argument("--iou", type=float, default=0.5, help="the headline IoU threshold for a hit")
    parser.add_argument("--repeat", type=int, default=10, help="timed runs per photo")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    cv2.setNumThreads(1)

    photos, unannotated = load_photos(args.data)
    thresholds = sorted({args.iou, LOOSE_IOU}, reverse=True)
    verifier = Verifier(args.verifier) if args.verifier else None
    machine = f"{platform.machine()} ({os.cpu_count()} cores), 1 OpenCV thread, OpenCV {cv2.__version__}"
    sizes = sorted({f"{photo.image.shape[1]}x{photo.image.shape[0]}" for photo in photos})
    print(f"machine: {machine}, python {platform.python_version()}")
    print(
        f"data: {args.data.resolve()} ({' + '.join(ANNOTATION_FILES)}): {len(photos)} photos "
        f"({', '.join(sizes)}), {sum(len(p.faces) for p in photos)} faces, {sum(len(p.ignored) for p in photos)} "
        f"ignored boxes; skipped (not annotated): {', '.join(unannotated) or 'none'}"
    )
    print(f"min_size {MIN_SIZE} px except 'haar default' (edgeface's 30); haar a/b: scale_factor a, min_neighbors b")
    print(f"verifier: {args.verifier}" if verifier else "verifier: none given (--verifier), its rows are skipped")
    if not args.yunet:
        print("yunet: no ONNX file given (--yunet), its rows are skipped")

    rows = [
        row
        for configuration in configurations(args.yunet)
        for row in measure(configuration, photos, verifier, thresholds, args.repeat)
    ]
    for threshold in thresholds:
        title = "headline" if threshold == args.iou else "looser, for boxes drawn differently"
        print_table(rows, threshold, f"IoU >= {threshold} ({title})")
    if args.json:
        figures = {
            "machine": machine,
            "data": str(args.data.resolve()),
            "annotations": list(ANNOTATION_FILES),
            "photos": [photo.name for photo in photos],
            "skipped_unannotated": unannotated,
            "headline_iou": args.iou,
            "verifier": str(args.verifier) if verifier else None,
            "rows": [row.to_dict() for row in rows],
        }
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
