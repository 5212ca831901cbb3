"""Large JPEGs (phone and camera photos): a photo decoded only as large as the detector looks at it, against the
whole photo decoded, through the pipeline scan and the folder daemon use.

Usage: python benchmarks/large_photos.py [--embedder FILE] [--classic FILE] [--yunet FILE] [--data DIR] [--repeat 5]

Two kinds of photo are made from real lfw_dev photos, enlarged and saved as JPEG (quality 90) with a little noise,
so that they decode like camera photos rather than like smooth enlargements:
- portrait: one photo at 3000×3000 (9 MP); its face is about 1,300 pixels wide;
- group: twelve photos at 1000×1000 on a 4000×3000 canvas (12 MP); faces about 430 pixels wide.
For each model (the report's int8 embedder with YuNet, the classic CNN with Haar; both from report.py's cache unless
given), each photo goes through `Pipeline.process` as edgeface does it, and again with the reduced decode turned off
(the whole photo decoded, then shrunk for the search, as before). Figures: milliseconds a photo (median of --repeat,
1 OpenCV and 1 LiteRT thread) and the faces found, which must be the same both ways.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np

import edgeface.pipeline
from edgeface.images import InputFile
from edgeface.pipeline import Pipeline
from edgeface.settings import DetectorOverrides
from edgeface.workers import PipelineRecipe
from scan_speed import pick_photos
from timing import median_ms

SHARED = Path(__file__).resolve().parents[2] / "shared"
CACHE = Path.home() / ".cache" / "edgeface-report"
SEED = 0


def noisy_jpeg(pixels: np.ndarray, rng: np.random.Generator) -> bytes:
    grainy = np.clip(pixels + rng.normal(0, 3, pixels.shape), 0, 255).astype(np.uint8)
    return cv2.imencode(".jpg", grainy, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()


def photos(lfw: Path) -> dict[str, bytes]:
    """The portrait and the group photo, made from the first photos of lfw_dev's sorted people."""
    picked, _ = pick_photos(lfw, 12)
    faces = [cv2.imread(path) for path in picked]
    rng = np.random.default_rng(SEED)
    portrait = cv2.resize(faces[0], (3000, 3000), interpolation=cv2.INTER_CUBIC)
    group = np.full((3000, 4000, 3), 110, np.uint8)
    for index, face in enumerate(faces):
        row, column = divmod(index, 4)
        group[row * 1000 : (row + 1) * 1000, column * 1000 : (column + 1) * 1000] = cv2.resize(
            face, (1000, 1000), interpolation=cv2.INTER_CUBIC)  # fmt: skip
    return {"portrait 3000×3000": noisy_jpeg(portrait, rng), "group 4000×3000": noisy_jpeg(group, rng)}


@contextmanager
def whole_decode() -> Iterator[None]:
    """The pipeline as it was before reduced decoding: every JPEG decoded whole."""
    chosen = edgeface.pipeline.reduction
    edgeface.pipeline.reduction = lambda content, scale: 1
    try:
        yield
    finally:
        edgeface.pipeline.reduction = chosen


def measure(pipeline: Pipeline, content: bytes, repeat: int) -> tuple[float, int]:
    photo = InputFile("/photos/large.jpg", content, "0" * 64)
    return median_ms(lambda: pipeline.process(photo), repeat), len(pipeline.process(photo).faces)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--embedder", type=Path, default=CACHE / "embedder.tflite")
    parser.add_argument("--classic", type=Path, default=CACHE / "classic.tflite")
    parser.add_argument("--yunet", type=Path, default=SHARED / "models/yunet/face_detection_yunet_2023mar.onnx")
    parser.add_argument("--data", type=Path, default=SHARED / "data")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    made = photos(args.data / "lfw_dev")
    setups = {"embedder + yunet": (args.embedder, "yunet"), "classic + haar": (args.classic, "haar")}
    print(f"x86 this machine, {os.cpu_count()} cores, 1 OpenCV and 1 LiteRT thread; median of {args.repeat}\n")
    print("| model | photo | JPEG | ms, reduced decode | ms, whole decode | speed-up | faces (reduced / whole) |")
    print("|---|---|---|---|---|---|---|")
    for name, (model, detector) in setups.items():
        overrides = DetectorOverrides(name=detector, yunet_model=str(args.yunet))
        pipeline = PipelineRecipe(model=str(model), threads=1, detector=overrides).build(report_differences=False)
        for photo, content in made.items():
            reduced, faces = measure(pipeline, content, args.repeat)
            with whole_decode():
                whole, whole_faces = measure(pipeline, content, args.repeat)
            print(f"| {name} | {photo} | {len(content) / 2**20:.1f} MiB | {reduced:.1f} | {whole:.1f} | "
                  f"{whole / reduced:.2f}× | {faces} / {whole_faces} |")  # fmt: skip


if __name__ == "__main__":
    main()
