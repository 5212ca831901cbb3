"""Accuracy, size and speed of the classic CNN, float vs int8, on real identities.

Usage: python benchmarks/accuracy.py [--data ../shared/data] [--json results.json]

For ORL (40 people, face crops, detection off; 7 photos per person to train, 3 to test) and
lfw_dev (96 people, news photos, Haar detection; 70 % / 30 % per person), with fixed seeds:
- closed set: float and int8 top-1 and macro F1 on the test photos, top-1 agreement, sizes, and
  a nearest-neighbour-on-raw-pixels baseline;
- open set: a second model trained without some people; the unknown rule is calibrated on half
  of those strangers (by person) and its false-accept rate measured on the other half;
- per-face latency at batch 1: int8 and float .tflite on LiteRT (1 and 2 threads), Keras predict.
Needs TensorFlow (the workstation install). Figures are from whatever machine runs it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from edgeface.artefact import ModelMetadata  # noqa: E402
from edgeface.dataset import FaceSet, load_labelled_faces, stratified_split  # noqa: E402
from edgeface.detect import DetectorSettings  # noqa: E402
from edgeface.metrics import classification_report  # noqa: E402
from edgeface.model import FaceClassifier  # noqa: E402
from edgeface.openset import calibrate  # noqa: E402
from edgeface.preprocess import Preprocessing  # noqa: E402
from edgeface_convert.keras_io import SourceModel  # noqa: E402
from edgeface_convert.quantize import to_float_flatbuffer, to_int8_flatbuffer, write_model  # noqa: E402
from edgeface_convert.training import TrainingSettings, output_kind, train_model  # noqa: E402
from timing import median_ms  # noqa: E402  (benchmarks/ is on the path when run as a script)

SEED = 0


@dataclass(frozen=True)
class Dataset:
    name: str
    folder: str
    spec: Preprocessing
    test_fraction: float
    stranger_people: int  # held out of the open-set model; half calibrate, half test


DATASETS = (
    Dataset(
        "orl", "orl_faces", Preprocessing(detector=DetectorSettings(name="none"), color="gray", width=64, height=64), 0.3, 20
    ),
    Dataset(
        "lfw_dev", "lfw_dev", Preprocessing(detector=DetectorSettings(name="haar"), margin=0.1, width=64, height=64), 0.3, 30
    ),
)


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def train_float(faces: FaceSet, spec: Preprocessing, epochs: int) -> SourceModel:
    """The classic CNN on `faces`, early-stopped on a stratified 15 % of them."""
    fit, stop = stratified_split(faces.targets, 0.15, SEED)
    model = train_model(faces.subset(fit), faces.subset(stop), TrainingSettings(epochs, 32, SEED, 15), spec.value_range)
    metadata = ModelMetadata(faces.labels, output_kind(len(faces.labels)), spec)
    return SourceModel(Path("benchmark.h5"), metadata, keras_model=model)


def int8_classifier(source: SourceModel, calibration: np.ndarray, folder: Path, count: int) -> FaceClassifier:
    """The int8 model calibrated on `count` training faces spread over all of them, as `convert` picks."""
    path = folder / f"int8-{len(source.metadata.labels)}.tflite"
    chosen = calibration[np.linspace(0, len(calibration) - 1, min(count, len(calibration))).astype(int)]
    write_model(to_int8_flatbuffer(source, chosen), source.metadata, path, chosen)
    return FaceClassifier(path, threads=1)


def nearest_neighbour_top1(train: FaceSet, test: FaceSet) -> float:
    """Top-1 of 1-nearest-neighbour on raw preprocessed pixels (Euclidean)."""
    a = train.crops.reshape(len(train.crops), -1)
    b = test.crops.reshape(len(test.crops), -1)
    distances = (b**2).sum(1)[:, None] - 2 * b @ a.T + (a**2).sum(1)[None, :]
    return float((train.targets[distances.argmin(axis=1)] == test.targets).mean())


def latencies(source: SourceModel, int8_path: Path, folder: Path, face: np.ndarray) -> dict:
    float_path = folder / "float.tflite"
    write_model(to_float_flatbuffer(source), source.metadata, float_path, face)
    result = {}
    for threads in (1, 2):
        for kind, path in (("int8", int8_path), ("float", float_path)):
            classifier = FaceClassifier(path, threads=threads)
            result[f"{kind}_tflite_{threads}t_ms"] = median_ms(lambda: classifier.scores(face))
    result["keras_predict_ms"] = median_ms(lambda: source.keras_model.predict(face, verbose=0), 50)
    result["float_tflite_bytes"] = float_path.stat().st_size
    result["int8_tflite_bytes"] = int8_path.stat().st_size
    return result


def closed_set(dataset: Dataset, faces: FaceSet, epochs: int, calibration: int, folder: Path) -> dict:
    train_indices, test_indices = stratified_split(faces.targets, dataset.test_fraction, SEED)
    train, test = faces.subset(train_indices), faces.subset(test_indices)
    say(f"{dataset.name}: closed set, {len(train.paths)} train / {len(test.paths)} test faces of {len(faces.labels)} people")
    source = train_float(train, dataset.spec, epochs)
    classifier = int8_classifier(source, train.crops, folder, calibration)
    float_top = source.probabilities(test.crops).argmax(axis=1)
    int8_top = classifier.probabilities(test.crops).argmax(axis=1)
    float_report = classification_report(test.targets, float_top, faces.labels)
    int8_report = classification_report(test.targets, int8_top, faces.labels)
    result = {
        "people": len(faces.labels),
        "train_faces": len(train.paths),
        "test_faces": len(test.paths),
        "float_top1": float_report["accuracy"],
        "int8_top1": int8_report["accuracy"],
        "float_macro_f1": float_report["macro_f1"],
        "int8_macro_f1": int8_report["macro_f1"],
        "agreement": float((float_top == int8_top).mean()),
        "nearest_neighbour_top1": nearest_neighbour_top1(train, test),
    }
    result.update(latencies(source, classifier.path, folder, test.crops[:1]))
    return result


def open_set(dataset: Dataset, faces: FaceSet, epochs: int, calibration: int, folder: Path) -> dict:
    rng = np.random.default_rng(SEED)
    held = rng.choice(len(faces.labels), size=dataset.stranger_people, replace=False)
    calibration_people, test_people = held[: len(held) // 2], held[len(held) // 2 :]
    known_people = np.setdiff1d(np.arange(len(faces.labels)), held)
    labels = tuple(faces.labels[i] for i in known_people)
    known = np.flatnonzero(np.isin(faces.targets, known_people))
    remap = {old: new for new, old in enumerate(known_people)}
    known_faces = FaceSet(
        faces.crops[known], np.array([remap[t] for t in faces.targets[known]]), labels, [faces.paths[i] for i in known]
    )
    strangers_calibration = faces.crops[np.isin(faces.targets, calibration_people)]
    strangers_test = faces.crops[np.isin(faces.targets, test_people)]
    train_indices, test_indices = stratified_split(known_faces.targets, dataset.test_fraction, SEED)
    train, test = known_faces.subset(train_indices), known_faces.subset(test_indices)
    say(
        f"{dataset.name}: open set, {len(labels)} known people, strangers {len(strangers_calibration)} "
        f"to calibrate and {len(strangers_test)} to test"
    )
    source = train_float(train, dataset.spec, epochs)
    classifier = int8_classifier(source, train.crops, folder, calibration)
    known_probabilities = classifier.probabilities(test.crops)
    correct = known_probabilities.argmax(axis=1) == test.targets
    rule = calibrate(
        known_probabilities, correct, classifier.probabilities(strangers_calibration), 0.01,
        "held-out people", use_margin=True,
    )  # fmt: skip
    rejected = rule.unknown(known_probabilities)
    return {
        "known_people": len(labels),
        "stranger_faces_calibration": len(strangers_calibration),
        "stranger_faces_test": len(strangers_test),
        "rule": rule.to_dict(),
        "false_accept_on_test_strangers": float((~rule.unknown(classifier.probabilities(strangers_test))).mean()),
        "known_rejected": float(rejected.mean()),
        "accuracy_of_accepted": float((correct & ~rejected).sum() / max(1, (~rejected).sum())),
        "closed_set_int8_top1": float(correct.mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--epochs", type=int, default=80)
    parser.add_argument("--calibration", type=int, default=300, help="calibration faces, as convert's --max-calibration")
    parser.add_argument("--only", choices=[d.name for d in DATASETS])
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    results = {"machine": f"{platform.machine()} ({os.cpu_count()} cores), python {platform.python_version()}"}
    with tempfile.TemporaryDirectory() as scratch:
        for dataset in DATASETS:
            if args.only and dataset.name != args.only:
                continue
            started = time.monotonic()
            faces = load_labelled_faces(args.data / dataset.folder, dataset.spec)
            say(f"{dataset.name}: {len(faces.paths)} faces, {len(faces.no_face)} photos without a detected face left out")
            results[dataset.name] = {
                "photos_without_face": len(faces.no_face),
                "closed_set": closed_set(dataset, faces, args.epochs, args.calibration, Path(scratch)),
                "open_set": open_set(dataset, faces, args.epochs, args.calibration, Path(scratch)),
                "seconds": round(time.monotonic() - started),
            }
            print(json.dumps({dataset.name: results[dataset.name]}, indent=2), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
