"""`edgeface train` and `edgeface convert` of the real embedder, dlib's network, on the workstation: the int8 model
keeps the float model's embeddings and names, and `train` says what it needs. The device side of the embedder is in
test_embedder.py, on a small committed stand-in.

Faces are given as crops (`--detector none`), so no YuNet file is needed: each "person" is one of scikit-image's LFW
faces, enlarged to dlib's 150×150 chip, in a few photos that differ in light, contrast and noise as photos of one
person in one place would. The model is conftest's `dlib_embedder`, made once for the session (test_dlib_port.py
checks its int8 network too).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from helpers import run_edgeface, run_in_process, write_photos
from make_fixtures import MadeModel

pytestmark = pytest.mark.workstation


def test_convert_keeps_the_embeddings_and_the_names(dlib_embedder: MadeModel):
    report = dlib_embedder.convert_report
    assert report["cosine_median"] >= 0.995 and report["cosine_min"] >= 0.99
    assert report["agreement"] == 1.0 and report["int8_accuracy"] == 1.0
    assert report["int8_size"] < 7_000_000  # the float network alone is 22 MB


def test_train_without_yunet_says_how_to_get_it(
    dlib_embedder: MadeModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    faces, output = str(dlib_embedder.keras_file.parent / "faces"), str(tmp_path / "m.h5")
    monkeypatch.setenv("EDGEFACE_YUNET_MODEL", "")  # read when the command line is parsed
    run = run_in_process("train", faces, "-o", output)
    assert run.returncode == 2
    assert "face_detection_yunet_2023mar.onnx" in run.stderr and "--yunet-model" in run.stderr
    assert not (tmp_path / "m.h5").exists()


@pytest.mark.slow  # a conversion of its own: CI's slow step runs it
def test_convert_verifies_on_a_folder_of_the_models_people(
    dlib_embedder: MadeModel, lfw_patches: np.ndarray, tmp_path: Path
):
    write_photos(tmp_path / "check" / "person1", lfw_patches[1], 2, np.random.default_rng(21))
    write_photos(tmp_path / "check" / "somebody-else", lfw_patches[30], 2, np.random.default_rng(22))
    keras_file, output = str(dlib_embedder.keras_file), str(tmp_path / "checked.tflite")
    run = run_edgeface("convert", keras_file, "-o", output, "--verify", str(tmp_path / "check"), "--json")
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["samples"] == 2 and report["verified_on"].startswith("faces in") and report["int8_accuracy"] == 1.0
    (tmp_path / "labels.txt").write_text("person1\nsomebody-else\n")
    labels = run_edgeface("convert", keras_file, "-o", output, "--labels", str(tmp_path / "labels.txt"))
    assert labels.returncode == 2 and "not from --labels" in labels.stderr
