"""`edgeface train` and `edgeface convert`: argument handling lives in `edgeface.cli`, the work here."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edgeface.artefact import ModelMetadata
from edgeface.detect import DetectorSettings
from edgeface.metrics import format_report
from edgeface.preprocess import Preprocessing
from edgeface_convert.dataset import (
    FaceSet,
    evenly_spaced,
    folder_images,
    load_faces,
    load_labelled_faces,
    stratified_split,
)
from edgeface_convert.keras_io import load_trained, save_trained
from edgeface_convert.quantize import verify, write_int8_model
from edgeface_convert.training import evaluate, output_kind, train_model


class CommandError(Exception):
    """A problem with the command's inputs, reported in one line (exit code 2)."""


def run_train(args: argparse.Namespace) -> int:
    spec = Preprocessing(
        detector=DetectorSettings(name=args.detector),
        margin=args.margin,
        color="gray" if args.grayscale else "rgb",
        width=args.input_size,
        height=args.input_size,
    )
    try:
        faces = load_labelled_faces(args.data, spec)
    except (OSError, ValueError) as error:
        raise CommandError(str(error)) from None
    print(f"{len(faces.paths)} faces of {len(faces.labels)} labels from {args.data}", file=sys.stderr)
    for path in faces.no_face:
        print(f"no face found, not used: {path}", file=sys.stderr)
    for path in faces.unreadable:
        print(f"not a readable image, not used: {path}", file=sys.stderr)
    train_indices, validation_indices = stratified_split(faces.targets, args.validation, args.seed)
    train, validation = faces.subset(train_indices), faces.subset(validation_indices)
    model = train_model(train, validation, args.epochs, args.batch_size, args.seed)
    report = evaluate(model, validation)
    print(f"validation split ({len(validation.paths)} faces):\n{format_report(report)}")
    metadata = ModelMetadata(labels=faces.labels, output=output_kind(len(faces.labels)), preprocessing=spec)
    training = {
        "data": str(Path(args.data).resolve()),
        "seed": args.seed,
        "validation": [[path, faces.labels[target]] for path, target in zip(validation.paths, validation.targets)],
    }
    save_trained(model, args.output, metadata, training)
    metrics_path = Path(args.output).with_suffix(".metrics.json")
    metrics_path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.output} and {metrics_path}", file=sys.stderr)
    return 0


def run_convert(args: argparse.Namespace) -> int:
    source = Path(args.model)
    try:
        model, metadata, training = load_trained(source)
    except (OSError, ValueError) as error:
        raise CommandError(f"cannot load {source}: {error}") from None
    if metadata is None:
        raise CommandError(f"{source} carries no edgeface labels or preprocessing: make it with `edgeface train`")
    calibration_dir = args.calibration or training.get("data")
    if not calibration_dir or not Path(calibration_dir).is_dir():
        raise CommandError("no calibration images: pass --calibration DIR (face images, as for training)")
    files = evenly_spaced(folder_images(calibration_dir, metadata.labels), args.max_calibration)
    calibration = load_faces(files, metadata.labels, metadata.preprocessing)
    print(f"calibrating on {len(calibration.crops)} faces from {calibration_dir}", file=sys.stderr)
    output = Path(args.output) if args.output else source.with_suffix(".tflite")
    write_int8_model(model, metadata, source, calibration, output)
    verification, verified_on = _verification_faces(training, metadata, calibration)
    report = verify(model, source, output, verification, verified_on)
    if args.json:
        print(json.dumps(report.to_dict()))
    else:
        print("\n".join(report.lines()))
    return 0


def _verification_faces(training: dict, metadata: ModelMetadata, calibration: FaceSet) -> tuple[FaceSet, str]:
    """The validation split `train` recorded, if its files are still there, else the calibration faces."""
    recorded = [(path, metadata.labels.index(label)) for path, label in training.get("validation", [])]
    if recorded and all(Path(path).is_file() for path, _ in recorded):
        return load_faces(recorded, metadata.labels, metadata.preprocessing), "the validation split of train"
    return calibration, "the calibration faces; no validation split was found"


def run_demo(args: argparse.Namespace) -> int:
    from edgeface_convert.demo import run_demo as demo

    return demo(args.dir, args.epochs, args.seed)


COMMANDS = {"train": run_train, "convert": run_convert, "demo": run_demo}
