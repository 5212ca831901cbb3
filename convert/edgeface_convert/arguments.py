"""The command line of `train`, `train-gate`, `convert` and `demo`, and the flag `eval` shares with them: added to
the runtime's parser by `register`, read back into typed options by `options_from`.

This is the only module of the workstation side that reads parsed arguments. It imports no
TensorFlow, so that `edgeface --help` and the checks of these flags work where it is not installed.
--yunet-model is declared once, with the runtime's detector settings (`DetectorOverrides`), and
read into the options like any other flag.
"""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path
from typing import Protocol, TypeVar

from edgeface.detect import DETECTOR_NAMES
from edgeface.embedder import detector_problem
from edgeface.flags import add_flags
from edgeface.settings import DetectorOverrides
from edgeface_convert.common import CommandError
from edgeface_convert.options import (
    CLASSIC_DETECTOR,
    DEFAULT_FAR,
    EMBEDDER_DETECTOR,
    SMALLEST_INPUT,
    ClassicOptions,
    ConvertOptions,
    DemoOptions,
    GateOptions,
    TrainOptions,
)

Options = TypeVar("Options", TrainOptions, GateOptions, ConvertOptions, DemoOptions)
# The classic CNN's flags by their dest, in the order a refusal names them. They stay unset (None
# or False) unless given, so that the embedder can refuse them.
CLASSIC_FLAGS = ("input_size", "grayscale", "align", "margin", "epochs", "batch_size", "patience", "no_augment", "pretrain")
# What `edgeface --help` says of each command, and what its own --help adds.
TRAIN_SUMMARY = "make a model of the people in DIR/<person>/<photos> (needs TensorFlow)"
TRAIN_DESCRIPTION = (
    "The embedder (default): dlib's pretrained face network rebuilt in Keras, with every face "
    "of DIR/<person>/ kept as a gallery of embeddings; nothing is trained, so a few photos per person "
    "do, and people can be enrolled on the device later. Needs YuNet's file for its alignment, or "
    "--detector none for aligned face crops. The classic CNN (--arch classic): Conv 32/64/128, Dense "
    "512, Dropout 0.5, softmax (or one sigmoid unit for two labels), trained from scratch. Both print "
    "accuracy, precision, recall, F1 and the confusion matrix on a stratified validation split."
)
TRAIN_EXAMPLES = (
    "examples:\n  edgeface train faces/ -o faces.h5 --yunet-model face_detection_yunet_2023mar.onnx\n"
    "  edgeface train faces/ -o faces.h5 --strangers others/\n"
    "  edgeface train faces/ -o classic.h5 --arch classic --epochs 30\n"
    "  edgeface train faces/ -o classic.h5 --arch classic --pretrain unlabelled/"
)
GATE_SUMMARY = "learn what a face looks like from unlabelled photos: a face-quality gate for a model (needs TensorFlow)"
GATE_DESCRIPTION = (
    "Trains a small convolutional autoencoder on the faces found in the photos under FACES (folders are walked, "
    "faces need no labels) and calibrates the reconstruction error that --keep of held-out real faces stay "
    "under; `edgeface convert MODEL --gate GATE` then carries it in the model, and the device rejects a crop "
    "that scores above it before naming it. A command of its own, not an option of `train`: it learns from "
    "faces of anyone, in any folders, where `train` needs one folder per person, and one gate serves either "
    "kind of model, as long as it crops faces as the model does (--like MODEL takes the model's detector, "
    "alignment and margin). The Keras file also keeps the gate's crops (32×32 grey by default), for convert's "
    "int8 calibration."
)
GATE_EXAMPLES = (
    "examples:\n  edgeface train-gate faces/ others/ -o gate.h5 --like faces.h5\n"
    "  edgeface train-gate crops/ -o gate.h5 --detector none --keep 0.98\n"
    "  edgeface convert faces.h5 --gate gate.h5"
)
MIN_GATE_SIZE, MAX_GATE_SIZE = 16, 128  # the gate's three stride-2 convolutions need a multiple of 8
CONVERT_SUMMARY = "quantize a trained model to a full-integer int8 .tflite (needs TensorFlow)"
CONVERT_DESCRIPTION = (
    "Post-training full-integer int8 quantization calibrated on preprocessed faces. Labels, "
    "preprocessing and the unknown rule travel inside the .tflite. Prints sizes and float-vs-int8 "
    "agreement and accuracy, and exits 3 when agreement is below --min-agreement. With --gate, the face-quality "
    "gate of `train-gate` is quantized too, checked against the float gate (exit 3 below a correlation of "
    "0.9), calibrated again on its int8 errors and carried in the same file."
)
CONVERT_EXAMPLES = (
    "examples:\n  edgeface convert faces.h5\n"
    "  edgeface convert other.keras --labels labels.txt --calibration faces/ --detector haar\n"
    "  edgeface convert faces.h5 --gate gate.h5"
)
DEMO_SUMMARY = "train, convert and scan end to end on images scikit-image ships (needs TensorFlow)"
DEMO_DESCRIPTION = (
    "Trains a face / not-face model on scikit-image's lfw_subset, reports held-out "
    "metrics, quantizes it to int8 and scans a few real photos into a SQLite log in DIR."
)


class Subcommand(Protocol):
    """The runtime's maker of one command's parser, so that these commands look like its own."""

    def __call__(
        self, commands: argparse._SubParsersAction, name: str, summary: str, description: str, epilog: str = ""
    ) -> argparse.ArgumentParser: ...


def register(commands: argparse._SubParsersAction, subcommand: Subcommand) -> None:
    """Adds `train`, `train-gate`, `convert` and `demo` to the runtime's commands."""
    _add_train(subcommand(commands, "train", TRAIN_SUMMARY, TRAIN_DESCRIPTION, TRAIN_EXAMPLES))
    _add_train_gate(subcommand(commands, "train-gate", GATE_SUMMARY, GATE_DESCRIPTION, GATE_EXAMPLES))
    _add_convert(subcommand(commands, "convert", CONVERT_SUMMARY, CONVERT_DESCRIPTION, CONVERT_EXAMPLES))
    _add_demo(subcommand(commands, "demo", DEMO_SUMMARY, DEMO_DESCRIPTION))


def options_from(args: argparse.Namespace) -> TrainOptions | GateOptions | ConvertOptions | DemoOptions:
    """The options of the `train`, `train-gate`, `convert` or `demo` that `args` were parsed for; CommandError
    for flags that do not fit together, said before TensorFlow loads."""
    readers = {"train": _train_options, "train-gate": _gate_options, "convert": _convert_options, "demo": _demo_options}
    options = readers[args.command](args)
    problem = _missing_input(args)
    if problem:
        raise CommandError(problem)
    return options


def _missing_input(args: argparse.Namespace) -> str | None:
    """The first folder or file named on the command line that is not there: said at once, not after a
    training run (`--strangers typo/` failed only when training was done)."""
    named = [("DIR", getattr(args, "data", None), Path.is_dir), ("MODEL", getattr(args, "model", None), Path.exists),
             *[("FACES", faces, Path.exists) for faces in getattr(args, "faces", None) or ()],
             ("--like", getattr(args, "like", None), Path.is_file), ("--gate", getattr(args, "gate", None), Path.is_file),
             ("--pretrain", getattr(args, "pretrain", None), Path.is_dir),
             ("--calibration", getattr(args, "calibration", None), Path.is_dir),
             ("--verify", getattr(args, "verify", None), Path.is_dir), ("--labels", getattr(args, "labels", None), Path.is_file),
             ("--strangers", getattr(args, "strangers", None), lambda path: str(path) == "lfw_subset" or path.is_dir())]  # fmt: skip
    nouns = {Path.is_file: "file", Path.exists: "file or folder"}
    for flag, value, present in named:
        if value is not None and not present(Path(value)):
            return f"{flag} {value}: no such {nouns.get(present, 'folder')}" + (
                " (a folder of faces, or lfw_subset)" if flag == "--strangers" else "")
    return None


def add_trust_option(parser: argparse.ArgumentParser) -> None:
    """--trust-model, for the commands that load Keras files: `convert` and `eval`."""
    parser.add_argument(
        "--trust-model", action="store_true",
        help="let a Keras file run Python code it carries (Lambda layers); only for files you trust",
    )  # fmt: skip


def _add_train(train: argparse.ArgumentParser) -> None:
    train.add_argument("data", metavar="DIR", help="one sub-folder of images per person")
    train.add_argument("-o", "--output", required=True, help="Keras model file to write (.h5)")
    train.add_argument("--arch", choices=("embedder", "classic"), default="embedder",
                       help="embedder: pretrained, people as a gallery; classic: the CNN trained from scratch")  # fmt: skip
    train.add_argument("--detector", choices=DETECTOR_NAMES,
                       help=f"embedder: {EMBEDDER_DETECTOR} (default) or none for aligned crops; "
                       f"classic: {CLASSIC_DETECTOR} (default), yunet or none")  # fmt: skip
    add_flags(train, DetectorOverrides, only=("yunet_model",))
    train.add_argument("--validation", type=float, default=TrainOptions.validation,
                       help="fraction of each person's photos held out")  # fmt: skip
    train.add_argument("--seed", type=int, default=TrainOptions.seed, help="the same seed gives the same split and start")
    train.add_argument("--keep-no-face", action="store_true", help="use images where no face is found whole, instead of leaving them out")
    _add_stranger_options(train, far_default=TrainOptions.far)
    train.add_argument(
        "--holdout-identities", type=int, default=TrainOptions.holdout_identities, metavar="N",
        help="leave N people (chosen by --seed) out and use their faces as strangers",
    )  # fmt: skip
    classic = train.add_argument_group("classic CNN only (--arch classic)")
    defaults = ClassicOptions()
    classic.add_argument("--input-size", type=int,
                         help=f"model input width and height, pixels (default: {defaults.input_size})")  # fmt: skip
    classic.add_argument("--grayscale", action="store_true", help="one grey channel instead of RGB")
    classic.add_argument("--margin", type=float,
                         help=f"added around each face box, as a fraction of it (default: {defaults.margin})")  # fmt: skip
    classic.add_argument("--align", action="store_true", help="turn each face until its eyes are level (needs --detector yunet)")
    classic.add_argument("--epochs", type=int, help=f"passes over the training faces (default: {defaults.epochs})")
    classic.add_argument("--batch-size", type=int, help=f"faces per training step (default: {defaults.batch_size})")
    classic.add_argument("--patience", type=int,
                         help=f"stop after this many epochs without a better validation loss (default: {defaults.patience})")  # fmt: skip
    classic.add_argument("--no-augment", action="store_true", help="train without random flips, tilts, shifts, zoom and light")
    classic.add_argument("--pretrain", metavar="DIR",
                         help="first train the conv stack as an autoencoder on the unlabelled faces under DIR, "
                         "for --epochs, then fine-tune on the labelled folders")  # fmt: skip


def _add_train_gate(gate: argparse.ArgumentParser) -> None:
    defaults = GateOptions(faces=(), output="")
    gate.add_argument("faces", nargs="+", metavar="FACES", help="folders (walked) or photos with faces, unlabelled")
    gate.add_argument("-o", "--output", required=True, help="the gate's Keras file to write (.h5)")
    gate.add_argument("--like", metavar="MODEL", help="a model .h5 from `edgeface train`: crop faces with its detector, "
                      "alignment and margin, so the gate judges the crops that model will see")  # fmt: skip
    gate.add_argument("--detector", choices=DETECTOR_NAMES,
                      help=f"without --like: as train's embedder, {EMBEDDER_DETECTOR} (default) or none for face crops")  # fmt: skip
    add_flags(gate, DetectorOverrides, only=("yunet_model",))
    gate.add_argument("--keep", type=float, default=defaults.keep,
                      help="the share of held-out real faces the threshold keeps (0.5 to 1)")  # fmt: skip
    gate.add_argument("--epochs", type=int, default=defaults.epochs, help="passes over the faces")
    gate.add_argument("--size", type=int, default=defaults.size,
                      help=f"the gate's grey crop, pixels a side ({MIN_GATE_SIZE}-{MAX_GATE_SIZE}, a multiple of 8)")  # fmt: skip
    gate.add_argument("--seed", type=int, default=defaults.seed, help="the same seed gives the same split and start")
    gate.add_argument("--json", action="store_true", help="print the result as JSON")


def _add_convert(convert: argparse.ArgumentParser) -> None:
    convert.add_argument("model", metavar="MODEL", help="a .h5 or .keras file, or a SavedModel folder")
    convert.add_argument("-o", "--output", help="the .tflite to write (default: MODEL with .tflite)")
    convert.add_argument("--calibration", metavar="DIR", help="face images (default: the training folder)")
    convert.add_argument("--max-calibration", type=int, default=ConvertOptions.max_calibration,
                         help="at most this many calibration images")  # fmt: skip
    convert.add_argument("--verify", metavar="DIR", help="labelled faces to compare float and int8 on (default: train's validation split)")
    convert.add_argument("--min-agreement", type=float, default=ConvertOptions.min_agreement,
                         help="exit 3 when int8 and float agree on fewer faces")  # fmt: skip
    _add_stranger_options(convert, far_default=ConvertOptions.far)
    convert.add_argument("--labels", metavar="FILE", help="for models not made by `edgeface train`: one label per line, in output order")
    convert.add_argument("--detector", choices=DETECTOR_NAMES, default=ConvertOptions.detector,
                         help="'none' when images already are face crops")  # fmt: skip
    convert.add_argument("--margin", type=float, default=ConvertOptions.margin,
                         help="added around each face box, as a fraction of it")  # fmt: skip
    convert.add_argument("--align", action="store_true", help="turn each face until its eyes are level (needs --detector yunet)")
    add_flags(convert, DetectorOverrides, only=("yunet_model",))
    convert.add_argument(
        "--value-range", type=float, nargs=2, default=list(ConvertOptions.value_range), metavar=("LOW", "HIGH"),
        help="for models not made by `edgeface train`: the input values of pixel 0 and 255",
    )  # fmt: skip
    add_trust_option(convert)
    convert.add_argument("--gate", metavar="GATE", help="a gate .h5 from `edgeface train-gate`, quantized and carried in the model")
    convert.add_argument("--json", action="store_true", help="print the report as JSON")


def _add_stranger_options(parser: argparse.ArgumentParser, far_default: float | None) -> None:
    parser.add_argument(
        "--strangers", metavar="SOURCE",
        help="faces of people the model must not know, to calibrate 'unknown': a folder, or lfw_subset",
    )  # fmt: skip
    parser.add_argument(
        "--far", type=float, default=far_default,
        help="target false-accept rate of strangers for the unknown rule"
        + ("" if far_default is not None else f" (default: train's, else {DEFAULT_FAR})"),
    )  # fmt: skip


def _add_demo(demo: argparse.ArgumentParser) -> None:
    demo.add_argument("--dir", type=Path, default=DemoOptions.workdir, help="where the demo writes its files")
    demo.add_argument("--epochs", type=int, default=DemoOptions.epochs, help="passes over the training patches")
    demo.add_argument("--seed", type=int, default=DemoOptions.seed, help="the same seed gives the same split and start")


def _train_options(args: argparse.Namespace) -> TrainOptions:
    """The embedder refuses the classic CNN's flags, and detectors that give no landmarks."""
    given = {dest: getattr(args, dest) for dest in CLASSIC_FLAGS if getattr(args, dest) not in (None, False)}
    if args.arch == "classic":
        return _read(TrainOptions, args, detector=args.detector or CLASSIC_DETECTOR, classic=_classic_options(given))
    if given:
        flags = ", ".join("--" + dest.replace("_", "-") for dest in given)
        raise CommandError(f"{flags}: only for --arch classic (the embedder is pretrained)")
    detector = args.detector or EMBEDDER_DETECTOR
    problem = detector_problem(detector)
    if problem:
        raise CommandError(problem)
    return _read(TrainOptions, args, detector=detector, classic=None)


def _classic_options(given: dict[str, object]) -> ClassicOptions:
    """The classic flags given, over the defaults; an input the network cannot shrink is refused."""
    settings = {dest: value for dest, value in given.items() if dest != "no_augment"}
    options = ClassicOptions(augment="no_augment" not in given, **settings)
    if options.input_size < SMALLEST_INPUT:
        raise CommandError(f"--input-size {options.input_size}: the classic CNN needs at least {SMALLEST_INPUT} pixels")
    return options


def _gate_options(args: argparse.Namespace) -> GateOptions:
    """The gate's flags, each in its range; --like and --detector do not go together."""
    if args.like and args.detector:
        raise CommandError("--detector: not with --like, whose model's detector the gate takes")
    problem = detector_problem(args.detector) if args.detector else None
    checks = [
        (problem is None, problem),
        (0.5 <= args.keep <= 1, f"--keep {args.keep}: a share of faces from 0.5 to 1"),
        (1 <= args.epochs <= 10_000, f"--epochs {args.epochs}: from 1 to 10000"),
        (MIN_GATE_SIZE <= args.size <= MAX_GATE_SIZE and args.size % 8 == 0,
         f"--size {args.size}: a multiple of 8 from {MIN_GATE_SIZE} to {MAX_GATE_SIZE}"),
    ]  # fmt: skip
    for ok, message in checks:
        if not ok:
            raise CommandError(message)
    return _read(GateOptions, args, faces=tuple(args.faces))


def _convert_options(args: argparse.Namespace) -> ConvertOptions:
    return _read(ConvertOptions, args, value_range=tuple(args.value_range))


def _demo_options(args: argparse.Namespace) -> DemoOptions:
    return _read(DemoOptions, args, workdir=args.dir)


def _read(kind: type[Options], args: argparse.Namespace, **resolved: object) -> Options:
    """`kind` with each field from the flag of its name, except the `resolved` ones."""
    parsed = {field.name: getattr(args, field.name) for field in fields(kind) if field.name not in resolved}
    return kind(**parsed, **resolved)
