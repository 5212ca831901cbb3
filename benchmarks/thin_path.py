"""Times the thin path on this machine: model load, per-face int8 classification, per-image scan.

Usage: python benchmarks/thin_path.py MODEL.tflite IMAGE_DIR [--repeat N]
(e.g. the model and photos that `edgeface demo` leaves in edgeface-demo/). Figures are wall-clock
medians on whatever machine runs it; label them with that machine when you quote them.
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

import numpy as np

from edgeface.detect import make_detector
from edgeface.images import decode, read_input
from edgeface.paths import is_image_name
from edgeface.model import FaceClassifier
from edgeface.preprocess import crop_faces
from timing import median_ms  # benchmarks/ is on the path when run as a script


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("images", type=Path)
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {platform.processor() or 'unknown cpu'}, python {platform.python_version()}")
    load_ms = median_ms(lambda: FaceClassifier(args.model, threads=1), 10)
    print(f"model load: {load_ms:.1f} ms ({args.model.stat().st_size:,} bytes)")
    spec = FaceClassifier(args.model).metadata.preprocessing
    face = np.random.default_rng(0).random((1, *spec.input_shape), dtype=np.float32)
    for threads in (1, 2):
        classifier = FaceClassifier(args.model, threads=threads)
        print(f"int8 classify, 1 face, {threads} thread(s): {median_ms(lambda: classifier.scores(face), args.repeat):.3f} ms")
    classifier = FaceClassifier(args.model, threads=1)
    detector = make_detector(spec.detector)
    for path in sorted(p for p in args.images.iterdir() if is_image_name(p)):
        content = read_input(path).content
        pixels = decode(content)
        boxes = detector.detect(pixels)
        crops = crop_faces(pixels, boxes, spec)
        decode_ms = median_ms(lambda: decode(content), 20)
        detect_ms = median_ms(lambda: detector.detect(pixels), 20)
        classify_ms = median_ms(lambda: classifier.scores(crops), 20)
        print(
            f"{path.name} {pixels.shape[1]}x{pixels.shape[0]}, {len(boxes)} faces: decode {decode_ms:.1f} ms, "
            f"detect ({spec.detector.name}) {detect_ms:.1f} ms, classify {classify_ms:.2f} ms"
        )


if __name__ == "__main__":
    main()
