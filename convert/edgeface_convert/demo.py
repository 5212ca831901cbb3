"""`edgeface demo`: the whole job on data scikit-image ships, so it needs no files of yours.

What it shows, honestly: scikit-image has no set of named people, so the demo trains the
two-class recipe, face / not-face, on its `lfw_subset` (100 face crops, 100 non-face patches),
reports metrics on a held-out part, quantizes to int8, then scans a few real photos. There the
Haar cascade proposes faces and the int8 model on LiteRT says whether each proposal is a face:
on `coins.png` the cascade mistakes coins for faces, which the model can reject.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from skimage import data

from edgeface.artefact import ModelMetadata
from edgeface.detect import HaarSettings
from edgeface.metrics import format_report
from edgeface.preprocess import Preprocessing
from edgeface.scan import scan
from edgeface.scanview import ScanTable
from edgeface.sinks import Recording
from edgeface.progress import Progress
from edgeface.results import ImageResult
from edgeface.store import ResultLog
from edgeface.workers import PipelineRecipe
from edgeface.dataset import FaceSet, crop_patches, lfw_subset_patches, stratified_split
from edgeface_convert.keras_io import SourceModel, save_trained
from edgeface_convert.quantize import stamp, to_int8_flatbuffer, verify, write_model
from edgeface_convert.training import TrainingSettings, evaluate, train_model

LABELS = ("not-face", "face")
# lfw_subset's faces are tight crops like the cascade's boxes, so the model is declared for
# Haar-detected faces with no margin, in grey, at a size just above the 25×25 originals.
DEMO_PREPROCESSING = Preprocessing(detector=HaarSettings(), margin=0.0, color="gray", width=32, height=32)
# Photos scikit-image ships: a face, coins the cascade takes for faces, and photos without faces.
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

    say("2/4 quantizing to int8, calibrated on the training patches")
    write_model(to_int8_flatbuffer(source, train.crops), stamp(metadata, source), tflite_file, train.crops)
    say("\n".join(verify(source, tflite_file, held_out, "the held-out lfw_subset patches").lines()))

    photos, log_file = workdir / "photos", workdir / "edgeface.db"
    say(f"3/4 scanning real photos in {photos} with the int8 model on LiteRT")
    write_photos(photos)
    with ResultLog(log_file) as log:
        recipe = PipelineRecipe(model=str(tflite_file))
        pipeline = recipe.build()
        table, progress = ScanTable(pipeline.recognizer.labels), Progress("scanning")

        def show(result: ImageResult) -> None:
            progress.clear()  # the table's rows and the progress line share a terminal
            table.row(result)

        # A second demo in the same folder shows its photos again: its model is new, so they are scanned again.
        summary = scan([str(photos)], pipeline, recipe, Recording(log), on_result=show, rescan=True, progress=progress)
        say(f"4/4 the log {log_file} holds inputs {log.status_counts()} and faces {log.label_counts()}")
    say(
        "next: edgeface scan YOUR_PHOTOS "
        f"--model {tflite_file} --db {log_file}   (or train your own: see README, 'Your own photos')"
    )
    return 1 if summary.failed else 0
