"""`train` and `convert` of the embedder: dlib's pretrained face ResNet, people kept as a gallery.

Nothing is trained: every face of DIR/<person>/ is embedded and kept under the person's name. The
figures people read (accuracy, precision, recall, F1, confusion matrix) come from naming a held-out
split by its nearest person in a gallery of the rest; the model then keeps every face. `convert`
quantizes the network like the classic CNN and embeds the gallery again with the int8 model, so
the device compares int8 embeddings with int8 embeddings.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from edgeface.artefact import ModelMetadata
from edgeface.dataset import FaceSet, evenly_spaced, folder_images, load_faces, stratified_split
from edgeface.detect import detector_settings
from edgeface.embedder import FaceEmbedder, detector_problem
from edgeface.gallery import DistanceRule, Gallery, calibrate_distance
from edgeface.metrics import classification_report, format_report
from edgeface.openset import NotEnoughStrangers
from edgeface.preprocess import CHIP_SIZE, Preprocessing
from edgeface_convert.common import (
    CommandError,
    hold_out_identities,
    load_strangers,
    load_training_faces,
    note,
    stranger_spec,
    warn_unvalidated,
)
from edgeface_convert.dlib_format import DlibFormatError, WeightsNotInstalledError
from edgeface_convert.embedder_net import load_dlib_embedder
from edgeface_convert.keras_io import SourceModel, save_trained
from edgeface_convert.options import DEFAULT_FAR, ConvertOptions, TrainOptions
from edgeface_convert.quantize import stamp, to_int8_flatbuffer, write_model

EMBEDDING_SIZE = 128  # dlib's face descriptor


def embedder_preprocessing(detector: str) -> Preprocessing:
    """YuNet with five-point alignment onto dlib's chip, or faces that already are chips ("none");
    RGB pixel values 0..255 (the network subtracts dlib's means itself)."""
    problem = detector_problem(detector)
    if problem:
        raise CommandError(problem)
    return Preprocessing(
        detector=detector_settings(detector),
        alignment="face5" if detector == "yunet" else "none",
        margin=0.0,
        color="rgb",
        width=CHIP_SIZE,
        height=CHIP_SIZE,
        value_range=(0.0, 255.0),
    )


def gallery_of(faces: FaceSet, embeddings: np.ndarray) -> Gallery:
    return Gallery(tuple(faces.labels[t] for t in faces.targets), embeddings.astype(np.float32))


def recognition_report(gallery: Gallery, faces: FaceSet, embeddings: np.ndarray) -> dict:
    """Accuracy, per-person precision/recall/F1 and confusion matrix of naming `faces` by the
    nearest person of `gallery` (no unknown rule applied)."""
    names, _ = gallery.nearest(embeddings)
    predicted = np.array([faces.labels.index(name) for name in names], dtype=np.int64)
    return classification_report(faces.targets, predicted, faces.labels)


def calibrated_rule(
    gallery: Gallery, known: FaceSet, known_embeddings: np.ndarray, strangers: np.ndarray | None, source: str, far: float
) -> DistanceRule | None:
    """The distance rule at false-accept rate `far` on stranger embeddings, or None (said why)."""
    if strangers is None:
        note("unknown rule: edgeface's default distance (no strangers given: use --strangers DIR or "
             "--holdout-identities N to calibrate it on faces like yours)")  # fmt: skip
        return None
    names, distances = gallery.nearest(known_embeddings)
    correct = np.array([name == known.labels[t] for name, t in zip(names, known.targets)], dtype=bool)
    try:
        rule = calibrate_distance(distances, correct, gallery.nearest(strangers)[1], far, source, len(gallery.people))
    except NotEnoughStrangers as error:
        note(f"unknown rule: edgeface's default distance: {error}")
        return None
    note(f"unknown rule: {rule.describe()}; {100 * rule.known_accept:.1f} % of known faces accepted")
    return rule


def run_train_embedder(options: TrainOptions) -> int:
    spec = embedder_preprocessing(options.detector).with_detector(model=options.yunet_model)
    faces = load_training_faces(options.data, spec, options.keep_no_face)
    faces, held_out_people = hold_out_identities(faces, options.holdout_identities, options.seed)
    note(f"{len(faces.paths)} faces of {len(faces.labels)} people from {options.data}; embedding them")
    try:
        model = load_dlib_embedder()
    except (WeightsNotInstalledError, DlibFormatError) as error:
        raise CommandError(str(error)) from None
    embeddings = _embed(model, faces.crops)
    train_indices, validation_indices = stratified_split(faces.targets, options.validation, options.seed)
    warn_unvalidated(faces, validation_indices)
    train, validation = faces.subset(train_indices), faces.subset(validation_indices)
    train_gallery = gallery_of(train, embeddings[train_indices])
    report = recognition_report(train_gallery, validation, embeddings[validation_indices])
    strangers = stranger_spec(options.strangers, held_out_people, options.data)
    loaded = load_strangers(strangers, spec)
    stranger_embeddings = _embed(model, loaded[0]) if loaded else None
    rule = calibrated_rule(train_gallery, validation, embeddings[validation_indices], stranger_embeddings,
                           loaded[1] if loaded else "", options.far)  # fmt: skip
    report["unknown_rule"] = rule.to_dict() if rule else None
    print(f"validation split ({len(validation.paths)} faces, each named by the nearest person of the other "
          f"{len(train.paths)}):\n{format_report(report)}")  # fmt: skip
    metadata = ModelMetadata(labels=(), output="embedding", preprocessing=spec, kind="embedder",
                             embedding_size=EMBEDDING_SIZE, gallery=gallery_of(faces, embeddings), distance_rule=rule)  # fmt: skip
    training = {
        "arch": "embedder",
        "data": str(Path(options.data).resolve()),
        "seed": options.seed,
        "gallery": [[path, faces.labels[target]] for path, target in zip(faces.paths, faces.targets)],
        "validation": [[path, faces.labels[target]] for path, target in zip(validation.paths, validation.targets)],
        "strangers": strangers,
        "far": options.far,
    }
    save_trained(model, options.output, metadata, training)
    metrics_path = Path(options.output).with_suffix(".metrics.json")
    metrics_path.write_text(json.dumps(report, indent=2) + "\n")
    note(f"wrote {options.output} (the network and a gallery of {len(faces.paths)} faces) and {metrics_path}")
    return 0


def _embed(model: object, crops: np.ndarray) -> np.ndarray:
    if not len(crops):
        return np.empty((0, EMBEDDING_SIZE), dtype=np.float32)
    return np.asarray(model.predict(crops, batch_size=32, verbose=0), dtype=np.float32)


@dataclass(frozen=True)
class EmbedderReport:
    """Float vs int8 on the verification faces: embedding cosine, and naming them by the nearest
    person of a gallery of the other faces (each model with its own embeddings); sizes in bytes."""

    output: str
    source_size: int
    int8_size: int
    verified_on: str
    samples: int
    cosine_min: float
    cosine_median: float
    agreement: float
    float_accuracy: float
    int8_accuracy: float

    def to_dict(self) -> dict:
        return asdict(self)

    def lines(self) -> list[str]:
        return [
            f"wrote {self.output}",
            f"size: {self.source_size:,} B source model, {self.int8_size:,} B int8 .tflite",
            f"verified on {self.samples} faces ({self.verified_on}): embedding cosine int8 vs float "
            f"min {self.cosine_min:.4f}, median {self.cosine_median:.4f}; top-1 agreement {100 * self.agreement:.1f} %",
            f"accuracy (nearest person): float {100 * self.float_accuracy:.1f} %, int8 {100 * self.int8_accuracy:.1f} %",
        ]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity."""
    return np.sum(a * b, axis=1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)


def convert_embedder(options: ConvertOptions, source: SourceModel, output: Path, gate_model: bytes | None = None
                     ) -> EmbedderReport:  # fmt: skip
    """Quantizes the embedder, embeds its gallery again with the int8 model, verifies it and
    calibrates its rule on the int8 distances; writes `output`, with the gate's int8 network
    `gate_model` when the source's metadata has a gate."""
    metadata, training = source.metadata, source.training
    if options.labels:
        raise CommandError(f"{source.path} is an embedder: its people come from its gallery, not from --labels")
    calibration_dir = options.calibration or training.get("data")
    if not calibration_dir or not Path(calibration_dir).is_dir():
        raise CommandError("no calibration images: pass --calibration DIR (face images, as for training)")
    checked = _labelled_faces(options.verify, metadata.labels, metadata.preprocessing) if options.verify else None
    files = evenly_spaced(folder_images(calibration_dir, metadata.labels), options.max_calibration)
    calibration = load_faces(files, metadata.labels, metadata.preprocessing)
    if not len(calibration.crops):
        raise CommandError(f"no faces found in {calibration_dir} to calibrate on")
    note(f"calibrating on {len(calibration.crops)} faces from {calibration_dir}")
    flatbuffer = to_int8_flatbuffer(source, calibration.crops)
    stamped = stamp(metadata, source)
    write_model(flatbuffer, stamped, output, calibration.crops, gate_model)
    int8 = FaceEmbedder(output)
    recorded = [(path, label) for path, label in training.get("gallery", []) if Path(path).is_file()]
    if recorded and len(recorded) == len(training.get("gallery", [])):
        people = tuple(sorted({label for _, label in recorded}))
        faces = load_faces([(path, people.index(label)) for path, label in recorded], people, metadata.preprocessing)
        float_embeddings, int8_embeddings = source.scores(faces.crops), int8.embed(faces.crops)
        held = np.isin(faces.paths, [path for path, _ in training.get("validation", [])])
        naming = ~held if held.any() and not options.verify else np.ones(len(held), dtype=bool)
        if checked is not None:
            test = FaceSet(checked.crops, np.array([people.index(metadata.labels[t]) for t in checked.targets]), people,
                           checked.paths)  # fmt: skip
            test_float, test_int8, verified_on = source.scores(test.crops), int8.embed(test.crops), f"faces in {options.verify}"
        elif held.any():
            test, test_float, test_int8 = faces.subset(np.flatnonzero(held)), float_embeddings[held], int8_embeddings[held]
            verified_on = "the validation split of train, against a gallery of the other faces"
        else:
            test, test_float, test_int8 = faces, float_embeddings, int8_embeddings
            verified_on = ("the gallery's own faces (train recorded no validation split): each is its own nearest, "
                           "so this says whether int8 agrees with float, not how well either names new photos")
        train = faces.subset(np.flatnonzero(naming))
        report = _verify(output, source, test, test_float, test_int8, gallery_of(train, float_embeddings[naming]),
                         gallery_of(train, int8_embeddings[naming]), verified_on)  # fmt: skip
        gallery = gallery_of(faces, int8_embeddings)
        rule = _int8_rule(options, training, int8, gallery_of(train, int8_embeddings[naming]), test, test_int8)
    else:
        note("the gallery's photos are not all where train found them: the gallery keeps the float embeddings, "
             "and the conversion is verified on the calibration faces")  # fmt: skip
        gallery, rule = metadata.gallery, None
        report = _verify(output, source, calibration, source.scores(calibration.crops), int8.embed(calibration.crops),
                         gallery, gallery, "the calibration faces, against the model's gallery")  # fmt: skip
    write_model(flatbuffer, replace(stamped, gallery=gallery, distance_rule=rule or metadata.distance_rule), output,
                calibration.crops, gate_model)  # fmt: skip
    return replace(report, int8_size=output.stat().st_size)


def _labelled_faces(folder: str, people: tuple[str, ...], spec: Preprocessing) -> FaceSet:
    """The faces in folder/<person>/ of the given people (other folders are left out)."""
    if not Path(folder).is_dir():
        raise CommandError(f"--verify {folder} is not a folder")
    faces = load_faces(folder_images(folder, people), people, spec)
    faces = faces.subset(np.flatnonzero(faces.targets >= 0))
    if not len(faces.paths):
        raise CommandError(f"--verify {folder} holds no faces of the model's people (folders named after them)")
    return faces


def _int8_rule(options: ConvertOptions, training: dict, int8: FaceEmbedder, gallery: Gallery, known: FaceSet,
               known_embeddings: np.ndarray) -> DistanceRule | None:  # fmt: skip
    """The rule calibrated again on the int8 model's own distances, when strangers are known."""
    strangers = stranger_spec(options.strangers, [], "") if options.strangers else training.get("strangers")
    spec = int8.metadata.preprocessing.with_detector(model=options.yunet_model)
    loaded = load_strangers(strangers, spec) if strangers else None
    if loaded is None:
        return None
    far = options.far if options.far is not None else training.get("far", DEFAULT_FAR)
    return calibrated_rule(gallery, known, known_embeddings, int8.embed(loaded[0]), loaded[1], far)


def _verify(output: Path, source: SourceModel, test: FaceSet, test_float: np.ndarray, test_int8: np.ndarray,
            float_gallery: Gallery, int8_gallery: Gallery, verified_on: str) -> EmbedderReport:  # fmt: skip
    """Cosine of float and int8 embeddings of the test faces, and the names each model gives them
    against the gallery it made itself."""
    similarity = cosines(test_float, test_int8)
    float_names = np.array(float_gallery.nearest(test_float)[0], dtype=object)
    int8_names = np.array(int8_gallery.nearest(test_int8)[0], dtype=object)
    truth = np.array([test.labels[t] for t in test.targets], dtype=object)
    return EmbedderReport(
        output=str(output),
        source_size=source.path.stat().st_size,
        int8_size=output.stat().st_size,
        verified_on=verified_on,
        samples=len(truth),
        cosine_min=float(similarity.min()) if len(truth) else 0.0,
        cosine_median=float(np.median(similarity)) if len(truth) else 0.0,
        agreement=float((float_names == int8_names).mean()) if len(truth) else 0.0,
        float_accuracy=float((float_names == truth).mean()) if len(truth) else 0.0,
        int8_accuracy=float((int8_names == truth).mean()) if len(truth) else 0.0,
    )
