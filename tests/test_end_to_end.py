"""train → convert → scan on real face images, through the real CLI, into a real SQLite file.

The faces are scikit-image's lfw_subset (real 25×25 LFW face crops and non-face patches), written
as PNG files in the `DIR/<label>/` layout a user would make. Training takes about half a minute.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import HELD_OUT_PER_LABEL, Trained, run_edgeface
from edgeface import artefact
from edgeface.detect import make_detector
from edgeface.images import decode
from edgeface.model import FaceClassifier, ModelError, label_probabilities
from edgeface.preprocess import crop_faces
from edgeface_convert.keras_io import stored_text

def test_train_writes_the_model_its_metadata_and_metrics(trained: Trained):
    with h5py.File(trained.keras_file, "r") as file:
        metadata = artefact.ModelMetadata.from_json(stored_text(file, "edgeface_metadata"))
        training = json.loads(stored_text(file, "edgeface_training"))
    assert metadata.labels == ("face", "not-face") and metadata.output == "sigmoid"
    assert metadata.preprocessing.input_shape == (32, 32, 1)
    assert len(training["validation"]) == 32  # 20 % of each label's 80 files
    metrics = json.loads(trained.keras_file.with_suffix(".metrics.json").read_text())
    assert {"accuracy", "macro_precision", "macro_recall", "macro_f1", "per_label", "confusion_matrix"} <= set(metrics)
    assert metrics["accuracy"] >= 0.85


def test_convert_carries_labels_preprocessing_and_provenance(trained: Trained):
    metadata = artefact.read_file(trained.tflite_file)
    assert metadata.labels == ("face", "not-face")
    assert metadata.preprocessing.color == "gray" and metadata.preprocessing.detector.name == "none"
    assert metadata.source == {"file": "face_or_not.h5", "sha256": hashlib.sha256(trained.keras_file.read_bytes()).hexdigest()}
    assert set(metadata.converter) == {"edgeface", "tensorflow"}


def test_convert_report_shows_a_small_int8_model_that_agrees(trained: Trained):
    report = trained.convert_report
    assert report["verified_on"] == "the validation split of train" and report["samples"] == 32
    assert report["agreement"] >= 0.95
    assert report["int8_size"] <= 0.35 * report["float_tflite_size"]


def test_int8_on_litert_agrees_with_the_float_model_on_unseen_images(trained: Trained):
    import keras

    classifier = FaceClassifier(trained.tflite_file)
    spec = classifier.metadata.preprocessing
    detector = make_detector(spec.detector)
    pictures = [decode(path.read_bytes()) for path, _ in trained.held_out]
    crops = np.concatenate([crop_faces(picture, detector.detect(picture), spec) for picture in pictures])
    float_model = keras.models.load_model(trained.keras_file, compile=False)
    float_top = label_probabilities(float_model.predict(crops, verbose=0), "sigmoid").argmax(axis=1)
    int8_top = label_probabilities(classifier.scores(crops), "sigmoid").argmax(axis=1)
    assert (float_top == int8_top).mean() >= 0.95
    truth = np.array([classifier.labels.index(label) for _, label in trained.held_out])
    assert (int8_top == truth).mean() >= 0.85


def test_scan_prints_json_and_logs_every_image_and_face(trained: Trained, astronaut_file: Path, tmp_path: Path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for path, label in trained.held_out:
        (photos / f"{label}-{path.name}").write_bytes(path.read_bytes())
    (photos / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this JPEG stops here")
    (photos / "notes.txt").write_text("not an image")
    log_file = tmp_path / "log.db"
    scan = run_edgeface("scan", str(photos), "--model", str(trained.tflite_file), "--db", str(log_file), "--json")
    assert scan.returncode == 1, scan.stderr  # one input failed
    results = [json.loads(line) for line in scan.stdout.splitlines()]
    assert len(results) == 2 * HELD_OUT_PER_LABEL + 1
    by_name = {Path(result["path"]).name: result for result in results}
    assert by_name["corrupt.jpg"]["error"] == "not a decodable image" and by_name["corrupt.jpg"]["faces"] == []
    correct = [
        result["faces"][0]["label"] == name.split("-0")[0]
        for name, result in by_name.items()
        if name != "corrupt.jpg"
    ]
    assert sum(correct) >= 0.85 * len(correct)
    assert set(by_name["face-000.png"]) == {"path", "sha256", "width", "height", "faces", "error"}
    assert set(by_name["face-000.png"]["faces"][0]) == {"box", "label", "confidence", "unknown", "distance"}
    assert by_name["face-000.png"]["faces"][0]["distance"] is None  # a classifier has no distance
    assert "failed: " in scan.stderr and "corrupt.jpg" in scan.stderr and "1 other files skipped" in scan.stderr
    with sqlite3.connect(log_file) as db:
        assert db.execute("SELECT count(*) FROM inputs").fetchone()[0] == len(results)
        assert db.execute("SELECT count(*) FROM faces").fetchone()[0] == sum(len(r["faces"]) for r in results)
        assert db.execute("SELECT status, error FROM inputs WHERE path LIKE '%corrupt.jpg'").fetchall() == [
            ("error", "not a decodable image")
        ]


def test_scanning_again_adds_nothing(trained: Trained, tmp_path: Path):
    log_file = tmp_path / "log.db"
    folder = trained.folder / "held_out" / "face"
    args = ("scan", str(folder), "--model", str(trained.tflite_file), "--db", str(log_file))
    assert run_edgeface(*args).returncode == 0
    again = run_edgeface(*args)
    assert again.returncode == 0 and again.stdout == ""
    assert f"{HELD_OUT_PER_LABEL} already in the log" in again.stderr
    with sqlite3.connect(log_file) as db:
        assert db.execute("SELECT count(*) FROM inputs").fetchone()[0] == HELD_OUT_PER_LABEL


def test_a_detector_override_is_used_and_warned_about(trained: Trained, astronaut_file: Path, tmp_path: Path):
    scan = run_edgeface(
        "scan", str(astronaut_file), "--model", str(trained.tflite_file), "--db", str(tmp_path / "log.db"),
        "--detector", "haar", "--json",
    )  # fmt: skip
    assert scan.returncode == 0, scan.stderr
    assert "detector.name: none -> haar" in scan.stderr
    faces = json.loads(scan.stdout)["faces"]
    assert len(faces) == 1 and faces[0]["box"] == [177, 66, 95, 95]  # the cascade's box, not the whole photo


RUNTIME_WITHOUT_TENSORFLOW = """
import sys
sys.modules["tensorflow"] = None  # any import of it now fails, as on a device
sys.modules["keras"] = None
from edgeface.cli import main
code = main(sys.argv[1:])
heavy = sorted(name for name in sys.modules if name.split(".")[0] in ("tensorflow", "keras", "h5py") and sys.modules[name])
print("HEAVY", heavy, file=sys.stderr)
sys.exit(code)
"""


def test_the_runtime_runs_where_tensorflow_cannot_be_imported(trained: Trained, tmp_path: Path):
    image = trained.held_out[0][0]
    args = ["scan", str(image), "--model", str(trained.tflite_file), "--db", str(tmp_path / "log.db")]
    run = subprocess.run([sys.executable, "-c", RUNTIME_WITHOUT_TENSORFLOW, *args], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[1].endswith(image.name) and "(no face)" not in run.stdout
    assert "HEAVY []" in run.stderr


def test_train_and_convert_without_tensorflow_name_the_install_command(tmp_path: Path):
    for args in (["train", str(tmp_path), "-o", "m.h5"], ["convert", "m.h5"]):
        run = subprocess.run([sys.executable, "-c", RUNTIME_WITHOUT_TENSORFLOW, *args], capture_output=True, text=True)
        assert run.returncode == 2
        message = [line for line in run.stderr.splitlines() if not line.startswith("HEAVY")]
        assert len(message) == 1
        assert "needs TensorFlow" in message[0] and "pip install '.[convert]' in edgeface's source folder" in message[0]


def test_a_tflite_without_edgeface_metadata_is_refused(trained: Trained, tmp_path: Path):
    model = trained.tflite_file.read_bytes()
    with zipfile.ZipFile(trained.tflite_file) as bundle:
        flatbuffer = model[: bundle.infolist()[0].header_offset]
    plain = tmp_path / "plain.tflite"
    plain.write_bytes(flatbuffer)
    scan = run_edgeface("scan", str(trained.held_out[0][0]), "--model", str(plain), "--db", str(tmp_path / "l.db"))
    assert scan.returncode == 2
    assert "carries no edgeface metadata" in scan.stderr
    assert not (tmp_path / "l.db").exists()


def test_labels_that_do_not_fit_the_outputs_are_refused(trained: Trained, tmp_path: Path):
    model = trained.tflite_file.read_bytes()
    with zipfile.ZipFile(trained.tflite_file) as bundle:
        flatbuffer = model[: bundle.infolist()[0].header_offset]
    metadata = artefact.read(model)
    wrong = artefact.ModelMetadata(("a", "b", "c"), "softmax", metadata.preprocessing)
    path = tmp_path / "wrong.tflite"
    path.write_bytes(artefact.embed(flatbuffer, wrong))
    with pytest.raises(ModelError, match="1 outputs do not match 3 labels"):
        FaceClassifier(path)


def test_info_shows_tensors_ops_and_metadata(trained: Trained):
    run = run_edgeface("info", str(trained.tflite_file), "--json")
    assert run.returncode == 0, run.stderr
    facts = json.loads(run.stdout)
    assert facts["input"]["dtype"] == "int8" and facts["output"]["dtype"] == "int8"
    assert facts["input"]["shape"] == [1, 32, 32, 1] and facts["output"]["scale"] > 0
    assert facts["ops"]["CONV_2D"] == 3 and facts["ops"]["FULLY_CONNECTED"] == 2
    assert facts["metadata"]["labels"] == ["face", "not-face"]
    assert facts["sha256"] == hashlib.sha256(trained.tflite_file.read_bytes()).hexdigest()
    text = run_edgeface("info", str(trained.tflite_file))
    assert "labels (sigmoid): face, not-face" in text.stdout and "zero point" in text.stdout
