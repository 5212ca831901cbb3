"""`edgeface train` and `edgeface convert` of the real embedder, dlib's network, on the workstation: the int8 model
keeps the float model's embeddings and names, and `train` says what it needs. The device side of the embedder is in
test_embedder.py, on a small committed stand-in.

Faces are given as crops (`--detector none`), so no YuNet file is needed: each "person" is one of scikit-image's LFW
faces, enlarged to dlib's 150×150 chip, in a few photos that differ in light, contrast and noise as photos of one
person in one place would.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from helpers import run_edgeface, write_photos
from make_fixtures import PEOPLE, PHOTOS, STRANGERS

pytestmark = pytest.mark.workstation


@dataclass
class Embedder:
    root: Path
    keras_file: Path
    convert_report: dict


@pytest.fixture(scope="module")
def embedder(tmp_path_factory: pytest.TempPathFactory, lfw_patches: np.ndarray) -> Embedder:
    root = tmp_path_factory.mktemp("embedder")
    rng = np.random.default_rng(5)
    for person in range(PEOPLE):
        write_photos(root / "faces" / f"person{person}", lfw_patches[person], PHOTOS, rng)
    for stranger in STRANGERS:  # 120 stranger photos: enough to claim a 1 % false-accept rate
        write_photos(root / "strangers", lfw_patches[stranger], 2, rng, prefix=f"s{stranger}-")
    keras_file = root / "faces.h5"
    train = run_edgeface("train", str(root / "faces"), "-o", str(keras_file), "--detector", "none",
                         "--strangers", str(root / "strangers"))  # fmt: skip
    assert train.returncode == 0, train.stderr
    assert "confusion matrix" in train.stdout and "accuracy 1.000" in train.stdout
    assert "unknown rule: nearest centroid within distance" in train.stderr
    convert = run_edgeface("convert", str(keras_file), "--json")
    assert convert.returncode == 0, convert.stderr
    return Embedder(root, keras_file, json.loads(convert.stdout))


def test_convert_keeps_the_embeddings_and_the_names(embedder: Embedder):
    report = embedder.convert_report
    assert report["cosine_median"] >= 0.995 and report["cosine_min"] >= 0.99
    assert report["agreement"] == 1.0 and report["int8_accuracy"] == 1.0
    assert report["int8_size"] < 7_000_000  # the float network alone is 22 MB


def test_train_without_yunet_says_how_to_get_it(embedder: Embedder, tmp_path: Path):
    faces, output = str(embedder.root / "faces"), str(tmp_path / "m.h5")
    run = run_edgeface("train", faces, "-o", output, env={"EDGEFACE_YUNET_MODEL": ""})
    assert run.returncode == 2
    assert "face_detection_yunet_2023mar.onnx" in run.stderr and "--yunet-model" in run.stderr
    assert not (tmp_path / "m.h5").exists()


@pytest.mark.slow  # a conversion of its own: CI's slow step runs it
def test_convert_verifies_on_a_folder_of_the_models_people(embedder: Embedder, lfw_patches: np.ndarray, tmp_path: Path):
    write_photos(tmp_path / "check" / "person1", lfw_patches[1], 2, np.random.default_rng(21))
    write_photos(tmp_path / "check" / "somebody-else", lfw_patches[30], 2, np.random.default_rng(22))
    keras_file, output = str(embedder.keras_file), str(tmp_path / "checked.tflite")
    run = run_edgeface("convert", keras_file, "-o", output, "--verify", str(tmp_path / "check"), "--json")
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["samples"] == 2 and report["verified_on"].startswith("faces in") and report["int8_accuracy"] == 1.0
    (tmp_path / "labels.txt").write_text("person1\nsomebody-else\n")
    labels = run_edgeface("convert", keras_file, "-o", output, "--labels", str(tmp_path / "labels.txt"))
    assert labels.returncode == 2 and "not from --labels" in labels.stderr
