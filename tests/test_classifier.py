"""The committed face / not-face classifier where edgeface runs: `scan` into a real SQLite log, `info`, the runtime
without TensorFlow, and models it must refuse. The model is tests/fixtures/face_or_not.tflite (see
tests/make_fixtures.py), whose 40 held-out lfw_subset patches it never saw.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import pytest

from edgeface import artefact
from edgeface.model import FaceClassifier, ModelError
from helpers import (
    Classifier,
    flatbuffer_of,
    run_edgeface,
    run_edgeface_together,
    run_in_process,
    run_without_tensorflow,
)
from make_fixtures import HELD_OUT_PER_LABEL


def test_scan_prints_json_and_logs_every_image_and_face(classifier: Classifier, astronaut_file: Path, tmp_path: Path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for path, label in classifier.held_out:
        (photos / f"{label}-{path.name}").write_bytes(path.read_bytes())
    (photos / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this JPEG stops here")
    (photos / "notes.txt").write_text("not an image")
    log_file = tmp_path / "log.db"
    scan = run_edgeface("scan", str(photos), "--model", str(classifier.tflite_file), "--db", str(log_file), "--json")
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
    assert set(by_name["face-000.png"]["faces"][0]) == {"box", "label", "confidence", "unknown", "distance", "rejected",
                                                        "quality"}
    assert by_name["face-000.png"]["faces"][0]["rejected"] is None  # a model without a gate rejects nothing
    assert by_name["face-000.png"]["faces"][0]["distance"] is None  # a classifier has no distance
    assert "failed: " in scan.stderr and "corrupt.jpg" in scan.stderr and "1 other files skipped" in scan.stderr
    with sqlite3.connect(log_file) as db:
        assert db.execute("SELECT count(*) FROM inputs").fetchone()[0] == len(results)
        assert db.execute("SELECT count(*) FROM faces").fetchone()[0] == sum(len(r["faces"]) for r in results)
        assert db.execute("SELECT status, error FROM inputs WHERE path LIKE '%corrupt.jpg'").fetchall() == [
            ("error", "not a decodable image")
        ]


def test_scanning_again_adds_nothing(classifier: Classifier, tmp_path: Path):
    log_file = tmp_path / "log.db"
    folder = classifier.held_out_folder / "face"
    args = ("scan", str(folder), "--model", str(classifier.tflite_file), "--db", str(log_file), "--workers", "1")
    assert run_edgeface(*args).returncode == 0
    again = run_edgeface(*args)
    assert again.returncode == 0 and again.stdout == ""
    assert f"{HELD_OUT_PER_LABEL} already in the log" in again.stderr
    with sqlite3.connect(log_file) as db:
        assert db.execute("SELECT count(*) FROM inputs").fetchone()[0] == HELD_OUT_PER_LABEL


def test_a_detector_override_is_used_and_warned_about(classifier: Classifier, astronaut_file: Path, tmp_path: Path):
    scan = run_edgeface(
        "scan", str(astronaut_file), "--model", str(classifier.tflite_file), "--db", str(tmp_path / "log.db"),
        "--detector", "haar", "--json", "--workers", "1",
    )  # fmt: skip
    assert scan.returncode == 0, scan.stderr
    assert "detector.name: none -> haar" in scan.stderr
    faces = json.loads(scan.stdout)["faces"]
    assert len(faces) == 1 and faces[0]["box"] == [177, 66, 95, 95]  # the cascade's box, not the whole photo


def test_the_runtime_runs_where_tensorflow_cannot_be_imported(classifier: Classifier, tmp_path: Path):
    image = classifier.held_out[0][0]
    args = ["scan", str(image), "--model", str(classifier.tflite_file), "--db", str(tmp_path / "log.db")]
    run = run_without_tensorflow(*args)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[1].endswith(image.name) and "(no face)" not in run.stdout
    assert "HEAVY []" in run.stderr


def test_train_and_convert_without_tensorflow_name_the_install_command(tmp_path: Path):
    (tmp_path / "m.h5").write_bytes(b"")
    runs = run_edgeface_together(["train", str(tmp_path), "-o", "m.h5"], ["convert", str(tmp_path / "m.h5")],
                                 runner=run_without_tensorflow)  # fmt: skip
    for run in runs:
        assert run.returncode == 2
        message = [line for line in run.stderr.splitlines() if not line.startswith("HEAVY")]
        assert len(message) == 1
        assert "needs TensorFlow" in message[0] and "pip install '.[convert]' in edgeface's source folder" in message[0]


def test_a_tflite_without_edgeface_metadata_is_refused(classifier: Classifier, tmp_path: Path):
    plain = tmp_path / "plain.tflite"
    plain.write_bytes(flatbuffer_of(classifier.tflite_file))
    scan = run_in_process("scan", str(classifier.held_out[0][0]), "--model", str(plain), "--db", str(tmp_path / "l.db"))
    assert scan.returncode == 2
    assert "carries no edgeface metadata" in scan.stderr
    assert not (tmp_path / "l.db").exists()


def test_labels_that_do_not_fit_the_outputs_are_refused(classifier: Classifier, tmp_path: Path):
    metadata = artefact.read_file(classifier.tflite_file)
    wrong = artefact.ModelMetadata(("a", "b", "c"), "softmax", metadata.preprocessing)
    path = tmp_path / "wrong.tflite"
    path.write_bytes(artefact.embed(flatbuffer_of(classifier.tflite_file), wrong))
    with pytest.raises(ModelError, match="1 outputs do not match 3 labels"):
        FaceClassifier(path)


def test_info_shows_tensors_ops_and_metadata(classifier: Classifier):
    model = str(classifier.tflite_file)
    run, text = run_edgeface_together(["info", model, "--json"], ["info", model])
    assert run.returncode == 0, run.stderr
    facts = json.loads(run.stdout)
    assert facts["input"]["dtype"] == "int8" and facts["output"]["dtype"] == "int8"
    assert facts["input"]["shape"] == [1, 32, 32, 1] and facts["output"]["scale"] > 0
    assert facts["ops"]["CONV_2D"] == 3 and facts["ops"]["FULLY_CONNECTED"] == 2
    assert facts["metadata"]["labels"] == ["face", "not-face"]
    assert facts["sha256"] == hashlib.sha256(classifier.tflite_file.read_bytes()).hexdigest()
    assert "labels (sigmoid): face, not-face" in text.stdout and "zero point" in text.stdout
