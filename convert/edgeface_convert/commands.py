"""`edgeface train`, `train-gate`, `convert`, `demo` and `eval` of float models: the work, given their typed
options (`edgeface_convert.arguments` makes them from the command line)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import keras
import numpy as np

from edgeface.artefact import ModelMetadata
from edgeface.dataset import (
    FaceSet,
    evenly_spaced,
    folder_images,
    load_faces,
    stranger_faces,
    stratified_split,
)
from edgeface.detect import detector_settings
from edgeface.embedder import predictions_from_distances
from edgeface.evaluate import evaluate_folder, format_evaluation
from edgeface.gallery import DEFAULT_RULE, Gallery
from edgeface.metrics import format_report
from edgeface.model import FaceClassifier, predictions_from_probabilities
from edgeface.results import Prediction
from edgeface.openset import NotEnoughStrangers, UnknownRule, calibrate
from edgeface.preprocess import Preprocessing
from edgeface_convert.common import (
    CommandError,
    hold_out_identities,
    load_strangers,
    load_training_faces,
    load_unlabelled_faces,
    note,
    stranger_spec,
    warn_unvalidated,
)
from edgeface_convert.embedder_train import EmbedderReport, convert_embedder, run_train_embedder
from edgeface_convert.gate_convert import MIN_CORRELATION, ConvertedGate, convert_gate
from edgeface_convert.gate_train import run_train_gate
from edgeface_convert.keras_io import ModelLoadError, SourceModel, load_source, save_trained
from edgeface_convert.options import (
    DEFAULT_FAR,
    ClassicOptions,
    ConvertOptions,
    DemoOptions,
    EvalOptions,
    GateOptions,
    TrainOptions,
    WorkstationOptions,
)
from edgeface_convert.quantize import ConversionReport, stamp, to_int8_flatbuffer, verify, write_model
from edgeface_convert.training import TrainingSettings, evaluate, output_kind, pretrained_conv_stack, train_model

EXIT_QUALITY = 3  # the int8 model disagrees with the float one more than allowed
MIN_CALIBRATION = 100


def run(options: WorkstationOptions) -> int:
    """Runs the command the options are for; problems with its inputs raise CommandError."""
    match options:
        case TrainOptions(classic=None):
            return run_train_embedder(options)
        case TrainOptions(classic=ClassicOptions() as classic):
            return run_train_classic(options, classic)
        case GateOptions():
            return run_train_gate(options)
        case ConvertOptions():
            return run_convert(options)
        case EvalOptions():
            return run_eval(options)
        case DemoOptions():
            return run_demo(options)


def run_train_classic(options: TrainOptions, classic: ClassicOptions) -> int:
    """The classic CNN, trained from scratch."""
    spec = Preprocessing(
        detector=detector_settings(options.detector, model=options.yunet_model),
        alignment="eyes" if classic.align else "none",
        margin=classic.margin,
        color="gray" if classic.grayscale else "rgb",
        width=classic.input_size,
        height=classic.input_size,
    )
    faces = load_training_faces(options.data, spec, options.keep_no_face)
    faces, held_out_people = hold_out_identities(faces, options.holdout_identities, options.seed)
    note(f"{len(faces.paths)} faces of {len(faces.labels)} people from {options.data}")
    train_indices, validation_indices = stratified_split(faces.targets, options.validation, options.seed)
    warn_unvalidated(faces, validation_indices)
    train, validation = faces.subset(train_indices), faces.subset(validation_indices)
    settings = TrainingSettings(classic.epochs, classic.batch_size, options.seed, classic.patience, classic.augment)
    pretrained = _pretrained(classic, spec, options.seed) if classic.pretrain else None
    model = train_model(train, validation, settings, spec.value_range, pretrained)
    metadata = ModelMetadata(labels=faces.labels, output=output_kind(len(faces.labels)), preprocessing=spec)
    source = SourceModel(Path(options.output), metadata, keras_model=model)
    report = evaluate(source, validation)
    strangers = stranger_spec(options.strangers, held_out_people, options.data)
    rule = _calibrate_rule(source.probabilities, validation, load_strangers(strangers, spec), options.far)
    report["unknown_rule"] = rule.to_dict() if rule else None
    print(f"validation split ({len(validation.paths)} faces):\n{format_report(report)}")
    training = {
        "data": str(Path(options.data).resolve()),
        "seed": options.seed,
        "validation": [[path, faces.labels[target]] for path, target in zip(validation.paths, validation.targets)],
        "strangers": strangers,
        "far": options.far,
    }
    save_trained(model, options.output, replace(metadata, unknown_rule=rule), training)
    metrics_path = Path(options.output).with_suffix(".metrics.json")
    metrics_path.write_text(json.dumps(report, indent=2) + "\n")
    note(f"wrote {options.output} and {metrics_path}")
    return 0


def _pretrained(classic: ClassicOptions, spec: Preprocessing, seed: int) -> keras.Model:
    """An autoencoder whose encoder is the classic CNN's conv stack, trained on the unlabelled faces of
    --pretrain (cropped as the CNN's) for --epochs: the CNN starts from its convolutions."""
    faces = load_unlabelled_faces((classic.pretrain,), spec)
    if not len(faces.crops):
        raise CommandError(f"--pretrain {classic.pretrain}: no faces found to pretrain on")
    note(f"pretraining the conv stack as an autoencoder on {len(faces.crops)} unlabelled faces from {classic.pretrain}")
    return pretrained_conv_stack(faces.crops, classic.epochs, seed)


def _calibrate_rule(
    probabilities: Callable[[np.ndarray], np.ndarray], known: FaceSet, strangers: tuple[np.ndarray, str] | None, far: float
) -> UnknownRule | None:
    """The unknown rule at false-accept rate `far`, or None (said why) without enough strangers."""
    if strangers is None:
        note("unknown rule: not calibrated (no strangers: use --strangers DIR, --strangers lfw_subset "
             "or --holdout-identities N); every face will get a known label")
        return None
    stranger_crops, description = strangers
    known_probabilities = probabilities(known.crops)
    correct = known_probabilities.argmax(axis=1) == known.targets
    try:
        rule = calibrate(
            known_probabilities, correct, probabilities(stranger_crops), far, description,
            use_margin=len(known.labels) > 2,
        )  # fmt: skip
    except NotEnoughStrangers as error:
        note(f"unknown rule: not calibrated: {error}")
        return None
    note(
        f"unknown rule: confidence >= {rule.min_confidence:.3f}, margin >= {rule.min_margin:.3f}: "
        f"{100 * rule.false_accept:.1f} % of {rule.strangers} strangers ({description}) accepted, "
        f"{100 * rule.known_accept:.1f} % of known faces accepted"
    )
    if rule.known_accept == 0:
        note(
            "warning: at this false-accept rate every face is 'unknown': the model is as sure of strangers "
            "as of the people it knows; more photos per person, or a higher --far, help"
        )
    return rule


def run_convert(options: ConvertOptions) -> int:
    try:
        source = load_source(options.model, trust=options.trust_model, yunet_model=options.yunet_model)
    except ModelLoadError as error:
        raise CommandError(str(error)) from None
    embedder = source.metadata is not None and source.metadata.kind == "embedder"
    metadata = source.metadata if embedder else _metadata_for(source, options)
    gate = convert_gate(options.gate, metadata.preprocessing) if options.gate else None
    if gate is not None and not gate.passed:
        note(f"{gate.report.line()}\nerror: the int8 gate's errors follow the float gate's with a correlation of "
             f"{gate.report.correlation:.3f}, below {MIN_CORRELATION}; train the gate on more faces")  # fmt: skip
        return EXIT_QUALITY
    if gate is not None:
        metadata = replace(metadata, gate=gate.spec)
    output = Path(options.output) if options.output else source.path.with_suffix(".tflite")
    gate_model = gate.network if gate else None
    if embedder:
        report = convert_embedder(options, replace(source, metadata=metadata), output, gate_model)
    else:
        report = _convert_classifier(options, source, metadata, output, gate_model)
    return _report(report, options, gate)


def _convert_classifier(options: ConvertOptions, source: SourceModel, metadata: ModelMetadata, output: Path,
                        gate_model: bytes | None) -> ConversionReport:  # fmt: skip
    """Quantizes the classic CNN (or a model made elsewhere), verifies it, and calibrates its unknown rule again on
    the int8 outputs; writes `output`."""
    calibration_dir = options.calibration or source.training.get("data")
    if not calibration_dir or not Path(calibration_dir).is_dir():
        raise CommandError("no calibration images: pass --calibration DIR (face images, as for training)")
    files = evenly_spaced(folder_images(calibration_dir, metadata.labels), options.max_calibration)
    calibration = load_faces(files, metadata.labels, metadata.preprocessing)
    if len(calibration.crops) < MIN_CALIBRATION:
        note(f"warning: only {len(calibration.crops)} calibration faces; {MIN_CALIBRATION}-500 set int8 ranges well")
    note(f"calibrating on {len(calibration.crops)} faces from {calibration_dir}")
    flatbuffer = to_int8_flatbuffer(source, calibration.crops)
    stamped = stamp(metadata, source)
    write_model(flatbuffer, stamped, output, calibration.crops, gate_model)
    verification, verified_on = _verification_faces(options.verify, source.training, metadata, calibration)
    report = verify(source, output, verification, verified_on)
    strangers = stranger_spec(options.strangers, [], "") if options.strangers else source.training.get("strangers")
    if strangers:
        # Calibrated again on the int8 model's own outputs: the rule must fit the numbers it will see.
        stranger_crops = load_strangers(strangers, metadata.preprocessing)
        far = options.far if options.far is not None else source.training.get("far", DEFAULT_FAR)
        rule = _calibrate_rule(FaceClassifier(output).probabilities, verification, stranger_crops, far)
        write_model(flatbuffer, replace(stamped, unknown_rule=rule), output, calibration.crops, gate_model)
    elif stamped.unknown_rule:
        note("unknown rule: kept as calibrated on the float model (its strangers are not available here)")
    return report


def _report(report: ConversionReport | EmbedderReport, options: ConvertOptions, gate: ConvertedGate | None) -> int:
    """Prints the conversion report, and the gate's; EXIT_QUALITY when int8 and float agree too little."""
    if options.json:
        print(json.dumps({**report.to_dict(), **({"gate": gate.report.to_dict()} if gate else {})}))
    else:
        print("\n".join(report.lines() + ([gate.report.line()] if gate else [])))
    if report.agreement < options.min_agreement:
        note(
            f"error: int8 agrees with float on {100 * report.agreement:.1f} % of faces, below "
            f"--min-agreement {100 * options.min_agreement:.1f} %; check the calibration images"
        )
        return EXIT_QUALITY
    return 0


def _metadata_for(source: SourceModel, options: ConvertOptions) -> ModelMetadata:
    """The model's own metadata, or one built from --labels and preprocessing flags; checked against its shape."""
    if source.metadata and options.labels:
        raise CommandError(f"{source.path} already carries labels from `edgeface train`; --labels is for other models")
    metadata = source.metadata
    if metadata is None:
        if not options.labels:
            raise CommandError(
                f"{source.path} carries no edgeface labels or preprocessing: pass --labels FILE "
                "(one label per line, in output order) and the preprocessing flags"
            )
        height, width, channels = source.input_shape
        try:
            labels = tuple(line.strip() for line in Path(options.labels).read_text().splitlines() if line.strip())
        except OSError as error:
            raise CommandError(f"cannot read --labels {options.labels}: {error.strerror}") from None
        spec = Preprocessing(
            detector=detector_settings(options.detector, model=options.yunet_model),
            alignment="eyes" if options.align else "none",
            margin=options.margin,
            color="gray" if channels == 1 else "rgb",
            width=int(width),
            height=int(height),
            value_range=options.value_range,
        )
        output = "sigmoid" if source.output_units == 1 else "softmax"
        metadata = ModelMetadata(labels=labels, output=output, preprocessing=spec)
    if tuple(source.input_shape) != metadata.preprocessing.input_shape:
        raise CommandError(
            f"model input {source.input_shape} does not match preprocessing {metadata.preprocessing.input_shape}"
        )
    if source.output_units != metadata.output_units:
        raise CommandError(
            f"model has {source.output_units} outputs; {len(metadata.labels)} labels need {metadata.output_units}"
        )
    return metadata


def _verification_faces(
    folder: str | None, training: dict, metadata: ModelMetadata, calibration: FaceSet
) -> tuple[FaceSet, str]:
    """--verify DIR, else the validation split `train` recorded, else the calibration faces."""
    if folder:
        faces = load_faces(folder_images(folder, metadata.labels), metadata.labels, metadata.preprocessing)
        return faces, f"faces in {folder}"
    recorded = [(path, metadata.labels.index(label)) for path, label in training.get("validation", [])]
    if recorded and all(Path(path).is_file() for path, _ in recorded):
        return load_faces(recorded, metadata.labels, metadata.preprocessing), "the validation split of train"
    return calibration, ("the calibration faces, which train learned from (no validation split was found): it "
                         "says whether int8 agrees with float, not how well either names new photos")


def run_eval(options: EvalOptions) -> int:
    """`edgeface eval` of a float Keras or SavedModel model (the .tflite case needs no TensorFlow)."""
    try:
        source = load_source(options.model, trust=options.trust_model, yunet_model=options.yunet_model)
    except ModelLoadError as error:
        raise CommandError(str(error)) from None
    metadata = source.metadata
    if metadata is None:
        raise CommandError(f"{source.path} carries no edgeface labels or preprocessing; evaluate its .tflite instead")
    strangers = stranger_faces(options.strangers, metadata.preprocessing)[0] if options.strangers else None
    if metadata.kind == "embedder":
        rule = metadata.distance_rule or DEFAULT_RULE
        gallery = metadata.gallery or Gallery.empty(metadata.embedding_size)

        def classify(crops: np.ndarray) -> list[Prediction]:
            return predictions_from_distances(gallery, source.scores(crops), rule)

        rule_text = rule.describe()
    else:
        def classify(crops: np.ndarray) -> list[Prediction]:
            return predictions_from_probabilities(source.probabilities(crops), metadata.labels, metadata.unknown_rule)

        rule_text = metadata.unknown_rule.describe() if metadata.unknown_rule else None
    try:
        report = evaluate_folder(options.data, metadata.labels, metadata.preprocessing, classify, rule_text, strangers,
                                 options.keep_no_face)  # fmt: skip
    except ValueError as error:
        raise CommandError(str(error)) from None
    print(json.dumps(report) if options.json else format_evaluation(report))
    return 0


def run_demo(options: DemoOptions) -> int:
    from edgeface_convert.demo import run_demo as demo  # scikit-image: only the demo needs it

    return demo(options.workdir, options.epochs, options.seed)
