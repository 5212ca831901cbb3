"""`edgeface demo`: the whole job on data scikit-image ships, so it needs no files of yours.

What it shows, honestly: scikit-image has no set of named people, so the demo trains the
two-class recipe, face / not-face, on its `lfw_subset` (100 face crops, 100 non-face patches),
reports metrics on a held-out part, quantizes to int8, then scans a few real photos. There the
Haar cascade proposes faces and the int8 model on LiteRT says whether each proposal is a face:
on `coins.png` the cascade mistakes coins for faces, which the model can reject. A face-quality gate, an
autoencoder of the training faces alone, goes into the model file too, and the demo shows what it rejects.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from skimage import data

from dataclasses import replace

from edgeface.artefact import ModelMetadata
from edgeface.detect import HaarSettings, make_detector
from edgeface.metrics import format_report
from edgeface.preprocess import Preprocessing, crop_faces
from edgeface.scan import scan
from edgeface.scanview import ScanTable
from edgeface.sinks import Recording
from edgeface.progress import Progress
from edgeface.results import ImageResult
from edgeface.store import ResultLog
from edgeface.workers import PipelineRecipe
from edgeface.dataset import FaceSet, crop_patches, lfw_subset_patches, stratified_split
from edgeface_convert.gate_convert import ConvertedGate, convert_gate, int8_errors
from edgeface_convert.gate_file import save_gate
from edgeface_convert.gate_train import train_gate
from edgeface_convert.keras_io import SourceModel, save_trained
from edgeface_convert.quantize import stamp, to_int8_flatbuffer, verify, write_model
from edgeface_convert.training import TrainingSettings, evaluate, train_model

LABELS = ("not-face", "face")
# lfw_subset's faces are tight crops like the cascade's boxes, so the model is declared for
# Haar-detected faces with no margin, in grey, at a size just above the 25×25 originals.
DEMO_PREPROCESSING = Preprocessing(detector=HaarSettings(), margin=0.0, color="gray", width=32, height=32)
# Photos scikit-image ships: a face, coins the cascade takes for faces, and photos without faces.
GATE_EPOCHS_PER_EPOCH = 4  # an autoencoder of 70 faces needs more passes than the classifier (about 7 s at --epochs 25)
DEMO_PHOTOS = {"astronaut.png": "astronaut", "coins.png": "coins", "camera.png": "camera", "coffee.jpg": "coffee"}


def lfw_subset_faces(spec: Preprocessing) -> FaceSet:
    """lfw_subset as model inputs: its first 100 patches are faces, the last 100 are not."""
    crops = crop_patches(lfw_subset_patches(), spec)
    targets = np.array([LABELS.index("face")] * 100 + [LABELS.index("not-face")] * 100, dtype=np.int64)
    paths = [f"lfw_subset[{i}]" for i in range(len(crops))]
    return FaceSet(crops, targets, LABELS, paths)


def _to_bgr(image: np.ndarray) -> np.ndarray:
    """A scikit-image picture (grey or RGB uint8) as H×W×3 uint8 BGR."""
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    return cv2.cvtColor(image[..., :3], cv2.COLOR_RGB2BGR)


def write_photos(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, picture in DEMO_PHOTOS.items():
        cv2.imwrite(str(folder / name), _to_bgr(getattr(data, picture)()))


def say(text: str) -> None:
    """The demo narrates on stdout, line by line as it goes."""
    print(text, flush=True)


def demo_gate(faces: FaceSet, workdir: Path, epochs: int, seed: int) -> ConvertedGate:
    """A gate of the training faces (not the non-faces: it learns what a face looks like from faces alone), in
    DEMO_PREPROCESSING's crop, which already is a gate's (grey, 32×32, 0..1), quantized to int8."""
    gate = train_gate(faces.crops[faces.targets == LABELS.index("face")], DEMO_PREPROCESSING, 0.99, epochs, seed)
    save_gate(gate, workdir / "gate.h5", {"faces": "skimage.data.lfw_subset", "seed": seed})
    return convert_gate(str(workdir / "gate.h5"), DEMO_PREPROCESSING)


def show_gate(gate: ConvertedGate, held_out: FaceSet, photos: Path) -> None:
    """What the int8 gate says of the held-out non-faces and of each face the cascade finds in the photos.

    The runtime applies the gate in its pipeline on the branch that adds it (edgeface.gate); until the scan here
    reports gate scores itself, the demo scores the crops with the int8 gate directly.
    """
    others = held_out.crops[held_out.targets == LABELS.index("not-face")]
    rejected = int8_errors(gate.network, others) > gate.spec.threshold
    say(f"the gate rejects {int(rejected.sum())} of the {len(others)} held-out non-face patches "
        f"(threshold {gate.spec.threshold:.4f})")  # fmt: skip
    detector = make_detector(DEMO_PREPROCESSING.detector)
    for name in DEMO_PHOTOS:
        pixels = cv2.imread(str(photos / name))
        boxes = detector.detect(pixels)
        if boxes:
            scores = int8_errors(gate.network, crop_faces(pixels, boxes, gate.spec.preprocessing))
            verdicts = ", ".join(f"{score:.4f} {'passes' if score <= gate.spec.threshold else 'REJECTED'}" for score in scores)
            say(f"gate on {name}: {verdicts}")


def run_demo(workdir: Path, epochs: int, seed: int) -> int:
    """Train, convert and scan into `workdir`; returns the exit code."""
    workdir.mkdir(parents=True, exist_ok=True)
    say("1/4 training face / not-face on scikit-image's lfw_subset (70 % train, 30 % held out)")
    faces = lfw_subset_faces(DEMO_PREPROCESSING)
    train_indices, held_out_indices = stratified_split(faces.targets, 0.3, seed)
    train, held_out = faces.subset(train_indices), faces.subset(held_out_indices)
    model = train_model(train, held_out, TrainingSettings(epochs, 16, seed), DEMO_PREPROCESSING.value_range)
    keras_file, tflite_file = workdir / "face_or_not.h5", workdir / "face_or_not.tflite"
    metadata = ModelMetadata(labels=LABELS, output="sigmoid", preprocessing=DEMO_PREPROCESSING)
    source = SourceModel(keras_file, metadata, keras_model=model)
    say(f"float model on the {len(held_out.paths)} held-out patches:\n{format_report(evaluate(source, held_out))}")
    save_trained(model, keras_file, metadata, {"data": "skimage.data.lfw_subset", "seed": seed})

    say("2/4 quantizing to int8, calibrated on the training patches, with a face-quality gate of the training faces")
    gate = demo_gate(train, workdir, GATE_EPOCHS_PER_EPOCH * epochs, seed)
    write_model(to_int8_flatbuffer(source, train.crops), stamp(replace(metadata, gate=gate.spec), source), tflite_file,
                train.crops, gate.network)  # fmt: skip
    say("\n".join(verify(source, tflite_file, held_out, "the held-out lfw_subset patches").lines() + [gate.report.line()]))

    photos, log_file = workdir / "photos", workdir / "edgeface.db"
    say(f"3/4 scanning real photos in {photos} with the int8 model on LiteRT")
    write_photos(photos)
    with ResultLog(log_file) as log:
        recipe = PipelineRecipe(model=str(tflite_file))
        pipeline = recipe.build()
        table = ScanTable(pipeline.recognizer.labels, gated=pipeline.recognizer.gate is not None)
        progress = Progress("scanning")

        def show(result: ImageResult) -> None:
            progress.clear()  # the table's rows and the progress line share a terminal
            table.row(result)

        # A second demo in the same folder shows its photos again: its model is new, so they are scanned again.
        summary = scan([str(photos)], pipeline, recipe, Recording(log), on_result=show, rescan=True, progress=progress)
        say(f"4/4 the log {log_file} holds inputs {log.status_counts()} and faces {log.label_counts()}")
    show_gate(gate, held_out, photos)
    say(
        "next: edgeface scan YOUR_PHOTOS "
        f"--model {tflite_file} --db {log_file}   (or train your own: see README, 'Your own photos')"
    )
    return 1 if summary.failed else 0
