"""train → convert on real face images, through the real command line (in this process, by make_fixtures.py's
recipe), as the committed classifier was made: the model file, its metadata and metrics, the conversion report, and
int8 on LiteRT against the float model on patches it never saw. The faces are scikit-image's lfw_subset (real 25×25
LFW face crops and non-face patches), written as PNG files in the `DIR/<label>/` layout a user would make
(tests/make_fixtures.py). Training takes about half a minute.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from edgeface import artefact
from edgeface.detect import make_detector
from edgeface.images import decode
from edgeface.model import FaceClassifier, label_probabilities
from edgeface.preprocess import crop_faces
from make_fixtures import LABELS, MadeModel, held_out

pytestmark = pytest.mark.workstation


def test_train_writes_the_model_its_metadata_and_metrics(fresh_classifier: MadeModel):
    import h5py

    from edgeface_convert.keras_io import stored_text

    with h5py.File(fresh_classifier.keras_file, "r") as file:
        metadata = artefact.ModelMetadata.from_json(stored_text(file, "edgeface_metadata"))
        training = json.loads(stored_text(file, "edgeface_training"))
    assert metadata.labels == LABELS and metadata.output == "sigmoid"
    assert metadata.preprocessing.input_shape == (32, 32, 1)
    assert len(training["validation"]) == 32  # 20 % of each label's 80 files
    metrics = json.loads(fresh_classifier.keras_file.with_suffix(".metrics.json").read_text())
    assert {"accuracy", "macro_precision", "macro_recall", "macro_f1", "per_label", "confusion_matrix"} <= set(metrics)
    assert metrics["accuracy"] >= 0.85


def test_convert_carries_labels_preprocessing_and_provenance(fresh_classifier: MadeModel):
    metadata = artefact.read_file(fresh_classifier.tflite_file)
    assert metadata.labels == LABELS
    assert metadata.preprocessing.color == "gray" and metadata.preprocessing.detector.name == "none"
    source_sha256 = hashlib.sha256(fresh_classifier.keras_file.read_bytes()).hexdigest()
    assert metadata.source == {"file": "face_or_not.h5", "sha256": source_sha256}
    assert set(metadata.converter) == {"edgeface", "tensorflow"}


def test_convert_report_shows_a_small_int8_model_that_agrees(fresh_classifier: MadeModel):
    report = fresh_classifier.convert_report
    assert report["verified_on"] == "the validation split of train" and report["samples"] == 32
    assert report["agreement"] >= 0.95
    assert report["int8_size"] <= 0.35 * report["float_tflite_size"]


def test_int8_on_litert_agrees_with_the_float_model_on_unseen_images(fresh_classifier: MadeModel):
    import keras

    classifier = FaceClassifier(fresh_classifier.tflite_file)
    spec = classifier.metadata.preprocessing
    detector = make_detector(spec.detector)
    unseen = held_out(fresh_classifier.keras_file.parent / "held_out")
    pictures = [decode(path.read_bytes()) for path, _ in unseen]
    crops = np.concatenate([crop_faces(picture, detector.detect(picture), spec) for picture in pictures])
    float_model = keras.models.load_model(fresh_classifier.keras_file, compile=False)
    float_top = label_probabilities(float_model.predict(crops, verbose=0), "sigmoid").argmax(axis=1)
    int8_top = label_probabilities(classifier.scores(crops), "sigmoid").argmax(axis=1)
    assert (float_top == int8_top).mean() >= 0.95
    truth = np.array([classifier.labels.index(label) for _, label in unseen])
    assert (int8_top == truth).mean() >= 0.85
