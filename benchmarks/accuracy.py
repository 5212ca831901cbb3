"""Accuracy, size and speed of edgeface's recognisers on real identities, measured on this machine.

Usage: python benchmarks/accuracy.py [--data ../shared/data] [--only embedder|classic|all] [--json results.json]

lfw_dev (96 people, 1,301 news photos) is split once, with a fixed seed, before any detector runs:
a third of the people are held out as strangers; the other two thirds are known people whose photos
are split 70 % / 30 % per person into gallery (or training) and test photos. On that split:
- the embedder (dlib's ResNet on YuNet-aligned chips, embedder_accuracy.py; the split: lfw_split.py): int8 vs float
  embedding cosine; top-1 by nearest gallery image and nearest centroid, float and int8; the share
  of known test faces accepted with the right name when the distance threshold lets through 1 % of
  the strangers; per-face latency on LiteRT; sizes;
- the `face_recognition` package (dlib's HOG detector and its own encodings), when installed;
- the classic CNN, trained on the gallery photos (Haar detection, 64×64).
The classic CNN is also measured on ORL as before (40 people, face crops, detection off; 7 photos
per person to train, 3 to test; its open-set model is trained without 20 people, its unknown rule
calibrated on half of them and tested on the other half). Needs TensorFlow (the workstation install).
The embedder part takes a few minutes, the classic about ten more.
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

import keras  # noqa: E402
import numpy as np  # noqa: E402

from edgeface.artefact import ModelMetadata  # noqa: E402
from edgeface.dataset import FaceSet, load_labelled_faces, stratified_split  # noqa: E402
from edgeface.detect import YUNET_MODEL_VARIABLE, HaarSettings, WholeImageSettings  # noqa: E402
from edgeface.metrics import classification_report  # noqa: E402
from edgeface.model import FaceClassifier  # noqa: E402
from edgeface.openset import calibrate  # noqa: E402
from edgeface.preprocess import Preprocessing  # noqa: E402
from edgeface_convert.keras_io import SourceModel  # noqa: E402
from edgeface_convert.quantize import to_float_flatbuffer, to_int8_flatbuffer, write_model  # noqa: E402
from edgeface_convert.training import TrainingSettings, output_kind, pretrained_conv_stack, train_model  # noqa: E402

# benchmarks/ is on the path when run as a script
from embedder_accuracy import embedder_results  # noqa: E402
from lfw_split import (  # noqa: E402
    FAR,
    PeopleSplit,
    face_recognition_available,
    face_recognition_results,
    known_faces,
    people_split,
    stranger_crops,
)
from timing import median_ms, other_load  # noqa: E402

SEED = 0
SHARED = Path(__file__).resolve().parents[2] / "shared"
TARGETS = {"top1": 0.98, "known_accept": 0.90, "cosine_median": 0.995}  # the embedder's, int8


@dataclass(frozen=True)
class Dataset:
    name: str
    folder: str
    spec: Preprocessing
    test_fraction: float
    stranger_people: int  # held out of the open-set model; half calibrate, half test (0: the shared split)


DATASETS = (
    Dataset(
        "orl", "orl_faces", Preprocessing(detector=WholeImageSettings(), color="gray", width=64, height=64), 0.3, 20
    ),
    Dataset(
        "lfw_dev", "lfw_dev", Preprocessing(detector=HaarSettings(), margin=0.1, width=64, height=64), 0.3, 0
    ),
)


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo, or what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


# --- the classic CNN ---------------------------------------------------------------------------


def train_float(faces: FaceSet, spec: Preprocessing, epochs: int, pretrained: keras.Model | None = None) -> SourceModel:
    """The classic CNN on `faces`, early-stopped on a stratified 15 % of them; from `pretrained`'s convolutions
    (`train --pretrain`) when given."""
    fit, stop = stratified_split(faces.targets, 0.15, SEED)
    settings = TrainingSettings(epochs, 32, SEED, 15)
    model = train_model(faces.subset(fit), faces.subset(stop), settings, spec.value_range, pretrained)
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
    result = {"other_load_cores": other_load()}  # other work slows the timings down
    for threads in (1, 2):
        for kind, path in (("int8", int8_path), ("float", float_path)):
            classifier = FaceClassifier(path, threads=threads)
            result[f"{kind}_tflite_{threads}t_ms"] = median_ms(lambda: classifier.scores(face))
    result["keras_predict_ms"] = median_ms(lambda: source.keras_model.predict(face, verbose=0), 50)
    result["float_tflite_bytes"] = float_path.stat().st_size
    result["int8_tflite_bytes"] = int8_path.stat().st_size
    return result


def closed_set_figures(
    source: SourceModel, classifier: FaceClassifier, train: FaceSet, test: FaceSet, folder: Path
) -> dict:
    """Float and int8 top-1 and macro F1 on `test`, their agreement, the raw-pixel baseline, speed, sizes."""
    result = {"people": len(test.labels), "train_faces": len(train.paths), "test_faces": len(test.paths),
              **top1_figures(source, classifier, test), "nearest_neighbour_top1": nearest_neighbour_top1(train, test)}
    result.update(latencies(source, classifier.path, folder, test.crops[:1]))
    return result


def top1_figures(source: SourceModel, classifier: FaceClassifier, test: FaceSet) -> dict:
    """Float and int8 top-1 and macro F1 on `test`, and how often the two agree."""
    float_top = source.probabilities(test.crops).argmax(axis=1)
    int8_top = classifier.probabilities(test.crops).argmax(axis=1)
    float_report = classification_report(test.targets, float_top, test.labels)
    int8_report = classification_report(test.targets, int8_top, test.labels)
    return {"float_top1": float_report["accuracy"], "int8_top1": int8_report["accuracy"],
            "float_macro_f1": float_report["macro_f1"], "int8_macro_f1": int8_report["macro_f1"],
            "agreement": float((float_top == int8_top).mean())}  # fmt: skip


def open_set_figures(
    classifier: FaceClassifier, test: FaceSet, strangers_calibration: np.ndarray, strangers_test: np.ndarray
) -> dict:
    """The int8 model's unknown rule calibrated at 1 % on some strangers and tested on others."""
    known_probabilities = classifier.probabilities(test.crops)
    correct = known_probabilities.argmax(axis=1) == test.targets
    rule = calibrate(
        known_probabilities, correct, classifier.probabilities(strangers_calibration), FAR,
        "held-out people", use_margin=True,
    )  # fmt: skip
    rejected = rule.unknown(known_probabilities)
    return {
        "known_people": len(test.labels),
        "stranger_faces_calibration": len(strangers_calibration),
        "stranger_faces_test": len(strangers_test),
        "rule": rule.to_dict(),
        "false_accept_on_test_strangers": float((~rule.unknown(classifier.probabilities(strangers_test))).mean()),
        "known_rejected": float(rejected.mean()),
        "accuracy_of_accepted": float((correct & ~rejected).sum() / max(1, (~rejected).sum())),
        "closed_set_int8_top1": float(correct.mean()),
    }


def closed_set(dataset: Dataset, faces: FaceSet, epochs: int, calibration: int, folder: Path) -> dict:
    """ORL: a model of every person, trained on 70 % of each one's photos and tested on the rest."""
    train_indices, test_indices = stratified_split(faces.targets, dataset.test_fraction, SEED)
    train, test = faces.subset(train_indices), faces.subset(test_indices)
    say(f"{dataset.name}: closed set, {len(train.paths)} train / {len(test.paths)} test faces of {len(faces.labels)} people")
    source = train_float(train, dataset.spec, epochs)
    classifier = int8_classifier(source, train.crops, folder, calibration)
    return closed_set_figures(source, classifier, train, test, folder)


def open_set(dataset: Dataset, faces: FaceSet, epochs: int, calibration: int, folder: Path) -> dict:
    """ORL: a second model trained without `stranger_people` people; half of them calibrate its
    unknown rule, the other half test it."""
    rng = np.random.default_rng(SEED)
    held = rng.choice(len(faces.labels), size=dataset.stranger_people, replace=False)
    calibration_people, test_people = held[: len(held) // 2], held[len(held) // 2 :]
    known_people = np.setdiff1d(np.arange(len(faces.labels)), held)
    labels = tuple(faces.labels[i] for i in known_people)
    known = np.flatnonzero(np.isin(faces.targets, known_people))
    remap = {old: new for new, old in enumerate(known_people)}
    kept = FaceSet(
        faces.crops[known], np.array([remap[t] for t in faces.targets[known]]), labels, [faces.paths[i] for i in known]
    )
    strangers_calibration = faces.crops[np.isin(faces.targets, calibration_people)]
    strangers_test = faces.crops[np.isin(faces.targets, test_people)]
    train_indices, test_indices = stratified_split(kept.targets, dataset.test_fraction, SEED)
    train, test = kept.subset(train_indices), kept.subset(test_indices)
    say(
        f"{dataset.name}: open set, {len(labels)} known people, strangers {len(strangers_calibration)} "
        f"to calibrate and {len(strangers_test)} to test"
    )
    source = train_float(train, dataset.spec, epochs)
    classifier = int8_classifier(source, train.crops, folder, calibration)
    return open_set_figures(classifier, test, strangers_calibration, strangers_test)


def classic_on_split(
    dataset: Dataset, faces: FaceSet, split: PeopleSplit, epochs: int, calibration: int, folder: Path
) -> dict:
    """lfw_dev: one model of the known people, trained on their gallery photos, tested on their
    test photos. Its unknown rule is calibrated on half of the strangers (by person) and tested on
    the other half; for the side-by-side table it is also calibrated on all of them, as the
    embedder's threshold is."""
    train, test = known_faces(faces, split, "gallery"), known_faces(faces, split, "test")
    half = len(split.strangers) // 2
    calibrate_on = stranger_crops(faces, split, split.strangers[:half])
    test_on = stranger_crops(faces, split, split.strangers[half:])
    say(f"{dataset.name}: classic on the shared split, {len(train.paths)} train / {len(test.paths)} test faces of "
        f"{len(split.known)} known people; strangers {len(calibrate_on)} to calibrate, {len(test_on)} to test")  # fmt: skip
    source = train_float(train, dataset.spec, epochs)
    classifier = int8_classifier(source, train.crops, folder, calibration)
    open_figures = open_set_figures(classifier, test, calibrate_on, test_on)
    known_probabilities = classifier.probabilities(test.crops)
    correct = known_probabilities.argmax(axis=1) == test.targets
    strangers = np.concatenate([calibrate_on, test_on])
    rule = calibrate(known_probabilities, correct, classifier.probabilities(strangers), FAR, "held-out people", True)
    open_figures["all_strangers"] = {
        "stranger_faces": len(strangers),
        "false_accept": rule.false_accept,
        "known_accept": float((correct & ~rule.unknown(known_probabilities)).mean()),
    }
    # `train --pretrain`: the conv stack first learns every face but the test photos', without their names.
    unlabelled = np.concatenate([train.crops, calibrate_on, test_on])
    say(f"{dataset.name}: classic again, its convolutions pretrained as an autoencoder on {len(unlabelled)} faces")
    pretrained = train_float(train, dataset.spec, epochs, pretrained_conv_stack(unlabelled, epochs, SEED))
    (folder / "pretrained").mkdir(exist_ok=True)
    pretrained_int8 = int8_classifier(pretrained, train.crops, folder / "pretrained", calibration)
    return {
        "closed_set": closed_set_figures(source, classifier, train, test, folder),
        "open_set": open_figures,
        "pretrained": {"unlabelled_faces": len(unlabelled), **top1_figures(pretrained, pretrained_int8, test)},
    }


def classic_results(args: argparse.Namespace, split: PeopleSplit, folder: Path) -> dict:
    results = {}
    for dataset in DATASETS:
        if dataset.name not in args.classic_sets:
            continue
        started = time.monotonic()
        faces = load_labelled_faces(args.data / dataset.folder, dataset.spec)
        say(f"{dataset.name}: {len(faces.paths)} faces, {len(faces.no_face)} photos without a detected face left out")
        result = {"photos_without_face": len(faces.no_face)}
        if dataset.stranger_people:
            result["closed_set"] = closed_set(dataset, faces, args.epochs, args.calibration, folder)
            result["open_set"] = open_set(dataset, faces, args.epochs, args.calibration, folder)
        else:
            result["split"] = "shared with the embedder"
            result["test_photos_without_face"] = sum(split.roles[path] == "test" for path in faces.no_face)
            result.update(classic_on_split(dataset, faces, split, args.epochs, args.calibration, folder))
        result["seconds"] = round(time.monotonic() - started)
        results[dataset.name] = result
        print(json.dumps({dataset.name: result}, indent=2), flush=True)
    return results


# --- the table -----------------------------------------------------------------------------------


def percent(value: float) -> str:
    return f"{100 * value:.1f} %"


def both(figures: dict, key: str, form=percent) -> str:
    """`key` of nearest image / nearest centroid."""
    return f"{form(figures['image'][key])} / {form(figures['centroid'][key])}"


def distance_cells(method: dict, figures: dict) -> dict:
    """The cells every recogniser that names by distance fills: faces found, split, top-1, acceptance."""
    return {
        "faces": f"{method['photos_with_face']} / {method['photos_without_face']}",
        "split": f"{figures['gallery_faces']} / {figures['test_faces']} / {figures['stranger_faces']}",
        "top1": both(figures, "top1"),
        "accept": both(figures, "known_accept"),
        "threshold": both(figures, "max_distance", lambda v: f"{v:.3f}"),
        "wrong": both(figures, "wrong_accept"),
        "unseen": both(figures, "unseen_false_accept"),
    }


def columns(results: dict) -> list[tuple[str, dict]]:
    """(heading, cells by row name) for each recogniser measured."""
    found = []
    embedder = results.get("embedder")
    if embedder:
        latency = embedder["latency"]
        for kind in ("float", "int8"):
            figures = embedder[kind]
            cells = {
                "detector": "YuNet + 5-point align",
                **distance_cells(embedder, figures),
                "latency": f"{latency[f'{kind}_tflite_1t_ms']:.1f} / {latency[f'{kind}_tflite_2t_ms']:.1f} ms",
                "per_photo": f"{embedder['read_detect_align_ms_per_photo']:.1f} ms (YuNet + align)",
                "size": f"{embedder[f'{kind}_tflite_bytes']:,} B",
            }
            head = figures["softmax_head"]
            cells["head"] = f"{percent(head['top1'])} / {percent(head['known_accept'])}"
            if kind == "int8":
                cosine = embedder["cosine_int8_vs_float"]
                cells["cosine"] = f"{cosine['min']:.4f} / {cosine['median']:.4f}"
            found.append((f"embedder {kind}", cells))
    dlib = results.get("face_recognition")
    if dlib:
        figures = dlib["figures"]
        found.append(("face_recognition", {
            "detector": "dlib HOG + 5-point",
            **distance_cells(dlib, figures),
            "latency": f"{dlib['encode_ms_per_face_median']:.1f} ms (dlib, with landmarks)",
            "per_photo": f"{dlib['read_detect_ms_per_photo']:.1f} ms (HOG)",
            "size": f"{dlib['resnet_dat_bytes']:,} B .dat",
            "size_extra": f"{dlib['landmarks_dat_bytes']:,} B .dat",
        }))  # fmt: skip
    classic = results.get("classic", {}).get("lfw_dev")
    if classic:
        photos = sum(results["lfw_dev_split"][f"{role}_photos"] for role in ("gallery", "test", "stranger"))
        closed, opened = classic["closed_set"], classic["open_set"]
        found.append(("classic CNN int8", {
            "detector": "Haar",
            "faces": f"{photos - classic['photos_without_face']} / {classic['photos_without_face']}",
            "split": f"{closed['train_faces']} / {closed['test_faces']} / "
                     f"{opened['stranger_faces_calibration'] + opened['stranger_faces_test']}",
            "classifier_top1": f"{percent(closed['int8_top1'])} (float {percent(closed['float_top1'])})",
            "classifier_accept": percent(opened["all_strangers"]["known_accept"]),
            "unseen": percent(opened["false_accept_on_test_strangers"]),
            "latency": f"{closed['int8_tflite_1t_ms']:.2f} / {closed['int8_tflite_2t_ms']:.2f} ms",
            "size": f"{closed['int8_tflite_bytes']:,} B",
        }))  # fmt: skip
    return found


ROWS = (
    ("detector", "detector"),
    ("faces", "photos with a face / without"),
    ("split", "gallery (train) / test / stranger faces"),
    ("top1", "top-1, nearest image / centroid"),
    ("classifier_top1", "top-1, classifier"),
    ("accept", "known accepted, right name, at 1 % FAR, image / centroid"),
    ("classifier_accept", "known accepted, right name, at 1 % FAR, classifier"),
    ("head", "softmax head on the embeddings: top-1 / known accepted"),
    ("threshold", "distance threshold, image / centroid"),
    ("wrong", "known accepted misnamed, image / centroid"),
    ("unseen", "FAR on strangers not calibrated on"),
    ("cosine", "cosine int8 vs float, min / median"),
    ("latency", "per face embedding/classifying, 1 / 2 threads, median"),
    ("per_photo", "per photo, read + detect, mean"),
    ("size", "model file"),
    ("size_extra", "landmark model file"),
)


def load_note(results: dict) -> str:
    """A warning when other work was running just before the models were timed."""
    loads = [results.get("embedder", {}).get("latency", {}).get("other_load_cores")]
    loads += [part["closed_set"].get("other_load_cores") for part in results.get("classic", {}).values()]
    busiest = max((load for load in loads if load is not None), default=0.0)
    if busiest < 0.2:
        return ""
    return f"; other work kept {busiest:.1f} cores busy when timing, so latencies may be inflated"


def table(results: dict) -> str:
    """The side-by-side table of lfw_dev on the shared split, with where it was measured."""
    found = columns(results)
    if not found:
        return ""
    split = results["lfw_dev_split"]
    width = max(len(label) for _, label in ROWS)
    widths = [max(len(heading), *(len(cell) for cell in cells.values())) for heading, cells in found]
    lines = [
        f"lfw_dev, seed {results['seed']}: {split['known_people']} known people, each one's photos split 70 % gallery "
        f"/ 30 % test ({split['gallery_photos']} / {split['test_photos']} photos); {split['stranger_people']} people "
        f"held out as strangers ({split['stranger_photos']} photos). Known accepted = test faces within the "
        "threshold that lets 1 % of the stranger faces through, with the right name.",
        f"measured on this machine: {results['machine']}, {results['cpu']} (not a Pi){load_note(results)}",
        "",
        "  ".join([" " * width, *(heading.ljust(w) for (heading, _), w in zip(found, widths))]),
    ]
    for key, label in ROWS:
        if any(key in cells for _, cells in found):
            row = (cells.get(key, "–").ljust(w) for (_, cells), w in zip(found, widths))
            lines.append("  ".join([label.ljust(width), *row]))
    return "\n".join(line.rstrip() for line in lines)


def targets(results: dict) -> list[dict]:
    """The embedder's int8 targets, met or missed."""
    embedder = results.get("embedder")
    if not embedder:
        return []
    int8 = embedder["int8"]
    checks = [
        (f"int8 top-1, nearest {method} >= {TARGETS['top1']:.2f}", int8[method]["top1"], TARGETS["top1"])
        for method in ("centroid", "image")
    ]
    checks += [
        (f"known accepted at 1 % FAR, nearest {method} >= {TARGETS['known_accept']:.2f}", int8[method]["known_accept"],
         TARGETS["known_accept"])
        for method in ("centroid", "image")
    ]  # fmt: skip
    cosine = embedder["cosine_int8_vs_float"]["median"]
    checks.append((f"int8 vs float cosine median >= {TARGETS['cosine_median']}", cosine, TARGETS["cosine_median"]))
    return [{"target": name, "value": value, "met": value >= goal} for name, value, goal in checks]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED / "data")
    parser.add_argument("--only", choices=("embedder", "classic", "all"), default="all")
    names = [d.name for d in DATASETS]
    parser.add_argument("--classic-sets", nargs="+", choices=names, default=names, help="the classic CNN's data sets")
    yunet = os.environ.get(YUNET_MODEL_VARIABLE) or SHARED / "models/yunet/face_detection_yunet_2023mar.onnx"
    parser.add_argument("--yunet", type=Path, default=yunet,
                        help=f"YuNet's ONNX file (default ${YUNET_MODEL_VARIABLE} or ../shared/models/yunet/)")  # fmt: skip
    parser.add_argument("--no-face-recognition", action="store_true", help="skip the face_recognition comparison")
    parser.add_argument("--epochs", type=int, default=80)
    parser.add_argument("--calibration", type=int, default=300,
                        help="int8 calibration faces, as convert's --max-calibration")  # fmt: skip
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if args.only != "classic" and not args.yunet.is_file():
        parser.error(f"the embedder needs YuNet's ONNX file: {args.yunet} is not a file (pass --yunet FILE)")
    started = time.monotonic()
    split = people_split(args.data / "lfw_dev", SEED)
    results = {
        "machine": f"{platform.machine()} ({os.cpu_count()} cores), python {platform.python_version()}",
        "cpu": cpu_name(),
        "seed": SEED,
        "lfw_dev_split": split.describe(),
    }
    with tempfile.TemporaryDirectory() as scratch:
        if args.only in ("embedder", "all"):
            part = time.monotonic()
            results["embedder"] = embedder_results(args.data / "lfw_dev", split, args.calibration, Path(scratch),
                                                   args.yunet, say)  # fmt: skip
            results["embedder"]["seconds"] = round(time.monotonic() - part)
            if args.no_face_recognition:
                say("face_recognition: skipped (--no-face-recognition)")
            elif not face_recognition_available():
                say("face_recognition: not installed, not compared")
            else:
                part = time.monotonic()
                results["face_recognition"] = face_recognition_results(split, say)
                results["face_recognition"]["seconds"] = round(time.monotonic() - part)
        if args.only in ("classic", "all"):
            results["classic"] = classic_results(args, split, Path(scratch))
    results["targets"] = targets(results)
    results["seconds"] = round(time.monotonic() - started)
    print(table(results))
    for check in results["targets"]:
        print(f"target {check['target']}: {check['value']:.4f} {'met' if check['met'] else 'MISSED'}")
    print(f"wall time {results['seconds']} s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
