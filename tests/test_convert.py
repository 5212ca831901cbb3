"""train and convert for people, not just face / not-face: the unknown rule, model inputs made
elsewhere, Keras' safe mode, the agreement gate, determinism, and eval.

The "people" are four real LFW faces from scikit-image, each varied 15 times (shift, flip,
light), trained for 15 epochs; that tests the mechanics, not recognition quality (the benchmark measures that on
real identities). The strangers are 96 other real LFW faces and their mirror images.

train and convert run through the command line in this process (`run_in_process`), which has TensorFlow loaded
already; what a user runs as a process, without TensorFlow, runs as one (`run_edgeface`, `run_without_tensorflow`).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeface import artefact
from helpers import FIXTURES, run_edgeface, run_in_process, run_without_tensorflow

pytestmark = pytest.mark.workstation

PEOPLE = 4
VARIANTS = 15


@dataclass
class People:
    root: Path
    faces: Path
    strangers: Path
    few_strangers: Path
    keras_file: Path
    tflite_file: Path
    train_log: str


def vary(face: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A 25×25 face shifted by up to 2 px, maybe mirrored, with other light."""
    shift = np.float32([[1, 0, rng.integers(-2, 3)], [0, 1, rng.integers(-2, 3)]])
    varied = cv2.warpAffine(face, shift, (25, 25), borderMode=cv2.BORDER_REPLICATE)
    if rng.random() < 0.5:
        varied = varied[:, ::-1]
    return np.clip(varied.astype(np.float32) * rng.uniform(0.8, 1.2) + rng.uniform(-15, 15), 0, 255).astype(np.uint8)


def write_images(folder: Path, images) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        cv2.imwrite(str(folder / f"{i:03d}.png"), image)


@pytest.fixture(scope="module")
def people(tmp_path_factory: pytest.TempPathFactory, lfw_patches: np.ndarray) -> People:
    root = tmp_path_factory.mktemp("people")
    rng = np.random.default_rng(0)
    for person in range(PEOPLE):
        write_images(root / "faces" / f"person{person}", [vary(lfw_patches[person], rng) for _ in range(VARIANTS)])
    (root / "faces" / "README.txt").write_text("a stray file: not a label, not an image")
    (root / "faces" / "person0" / "notes.txt").write_text("not an image")
    others = lfw_patches[PEOPLE:100]
    write_images(root / "strangers", list(others) + [face[:, ::-1] for face in others])
    write_images(root / "few_strangers", others[:50])
    keras_file = root / "people.h5"
    train = run_in_process(
        "train", str(root / "faces"), "-o", str(keras_file), "--arch", "classic", "--detector", "none", "--grayscale",
        "--input-size", "32", "--epochs", "15", "--batch-size", "16", "--strangers", str(root / "strangers"),
    )  # fmt: skip
    assert train.returncode == 0, train.stderr
    convert = run_in_process("convert", str(keras_file))
    assert convert.returncode == 0, convert.stderr
    return People(
        root, root / "faces", root / "strangers", root / "few_strangers", keras_file,
        keras_file.with_suffix(".tflite"), train.stderr,
    )  # fmt: skip


def test_train_ignores_stray_files_and_calibrates_the_unknown_rule(people: People):
    import h5py

    from edgeface_convert.keras_io import stored_text

    assert f"{PEOPLE * VARIANTS} faces of {PEOPLE} people" in people.train_log
    assert "unknown rule: confidence >=" in people.train_log
    with h5py.File(people.keras_file, "r") as file:
        metadata = artefact.ModelMetadata.from_json(stored_text(file, "edgeface_metadata"))
    assert metadata.labels == tuple(f"person{i}" for i in range(PEOPLE))
    assert metadata.unknown_rule is not None and metadata.unknown_rule.strangers == 192
    metrics = json.loads(people.keras_file.with_suffix(".metrics.json").read_text())
    assert metrics["unknown_rule"]["target_false_accept"] == 0.01


def test_convert_recalibrates_the_rule_on_int8_outputs(people: People):
    rule = artefact.read_file(people.tflite_file).unknown_rule
    assert rule is not None
    assert rule.strangers == 192 and rule.false_accept <= 0.01
    assert rule.stranger_source.startswith("faces in ")


def test_scan_marks_strangers_unknown(people: People, tmp_path: Path):
    scan = run_edgeface("scan", str(people.strangers), "--model", str(people.tflite_file), "--db", str(tmp_path / "l.db"), "--json")
    assert scan.returncode == 0, scan.stderr
    faces = [face for line in scan.stdout.splitlines() for face in json.loads(line)["faces"]]
    assert len(faces) == 192
    assert sum(face["unknown"] for face in faces) >= 0.95 * len(faces)


@pytest.mark.slow  # a conversion of its own; test_openset checks the refusal of fewer than 100 by default
def test_fewer_than_100_strangers_give_no_rule_and_say_so(people: People, tmp_path: Path):
    output = tmp_path / "few.tflite"
    run = run_edgeface("convert", str(people.keras_file), "-o", str(output), "--strangers", str(people.few_strangers))
    assert run.returncode == 0, run.stderr
    assert "not calibrated: only 50 stranger faces; at least 100" in run.stderr
    assert artefact.read_file(output).unknown_rule is None


@pytest.mark.slow  # a conversion of its own: CI's slow step runs it
def test_conversion_is_deterministic(people: People, tmp_path: Path):
    again = tmp_path / "again.tflite"
    run = run_edgeface("convert", str(people.keras_file), "-o", str(again))
    assert run.returncode == 0, run.stderr
    assert again.read_bytes() == people.tflite_file.read_bytes()


def test_a_broken_calibration_fails_the_agreement_check(people: People, tmp_path: Path):
    write_images(tmp_path / "black", [np.zeros((25, 25), np.uint8)] * 100)
    run = run_in_process("convert", str(people.keras_file), "-o", str(tmp_path / "broken.tflite"), "--calibration", str(tmp_path / "black"))
    assert run.returncode == 3, run.stderr
    assert "below --min-agreement 98.0 %" in run.stderr


def test_eval_of_tflite_runs_without_tensorflow_and_matches_the_h5_format(people: People):
    args = ["eval", str(people.faces), "--model", str(people.tflite_file), "--strangers", str(people.strangers), "--json"]
    run = run_without_tensorflow(*args)
    assert run.returncode == 0, run.stderr
    assert "HEAVY []" in run.stderr
    int8 = json.loads(run.stdout)
    float_run = run_in_process("eval", str(people.faces), "--model", str(people.keras_file), "--json")
    assert float_run.returncode == 0, float_run.stderr
    float_report = json.loads(float_run.stdout)
    for report in (int8, float_report):
        assert report["samples"] == PEOPLE * VARIANTS
        assert {"accuracy", "macro_f1", "per_label", "confusion_matrix", "open_set"} <= set(report)
        assert 0.0 <= report["open_set"]["known_rejected"] <= 1.0
    assert int8["open_set"]["strangers"] == 192 and int8["open_set"]["false_accept"] <= 0.01
    text = run_edgeface("eval", str(people.faces), "--model", str(people.tflite_file))
    assert "confusion matrix" in text.stdout and "known faces rejected as unknown" in text.stdout


def test_info_shows_the_unknown_rule(people: People):
    run = run_edgeface("info", str(people.tflite_file))
    assert run.returncode == 0 and "unknown rule: confidence >=" in run.stdout


# Models made elsewhere: no metadata, so --labels and preprocessing flags supply it.


def small_model(lambda_layer: bool = False):
    import keras

    layers = [keras.Input((32, 32, 1)), keras.layers.Conv2D(4, 3, activation="relu")]
    if lambda_layer:
        layers.append(keras.layers.Lambda(lambda x: x * 0.5))
    layers += [keras.layers.Flatten(), keras.layers.Dense(PEOPLE, activation="softmax")]
    return keras.Sequential(layers)


def convert_foreign(model_path: Path, people: People, *extra: str) -> subprocess.CompletedProcess:
    labels = model_path.parent / "labels.txt"
    labels.write_text("".join(f"person{i}\n" for i in range(PEOPLE)))
    return run_edgeface(
        "convert", str(model_path), "-o", str(model_path.parent / "out.tflite"), "--labels", str(labels),
        "--calibration", str(people.faces), "--detector", "none", "--min-agreement", "0", *extra,
    )  # fmt: skip


def check_foreign_output(run: subprocess.CompletedProcess, folder: Path) -> None:
    assert run.returncode == 0, run.stderr
    metadata = artefact.read_file(folder / "out.tflite")
    assert metadata.labels == tuple(f"person{i}" for i in range(PEOPLE))
    assert metadata.preprocessing.input_shape == (32, 32, 1) and metadata.preprocessing.detector.name == "none"


@pytest.mark.slow  # a conversion of its own: CI's slow step runs it
def test_a_keras_3_file_converts_with_labels(people: People, tmp_path: Path):
    small_model().save(tmp_path / "other.keras")
    check_foreign_output(convert_foreign(tmp_path / "other.keras", people), tmp_path)


@pytest.mark.slow  # a conversion of its own: CI's slow step runs it
def test_a_saved_model_folder_converts(people: People, tmp_path: Path):
    small_model().export(str(tmp_path / "saved"), verbose=False)
    check_foreign_output(convert_foreign(tmp_path / "saved", people), tmp_path)


@pytest.mark.slow  # a conversion of its own: CI's slow step runs it
def test_a_keras_2_h5_converts(people: People, tmp_path: Path):
    """A file saved by Keras 2 (tf-keras), committed: Conv2D(4) on 32×32 grey, softmax over 4 people."""
    model = Path(shutil.copy(FIXTURES / "keras2.h5", tmp_path / "keras2.h5"))
    check_foreign_output(convert_foreign(model, people), tmp_path)


@pytest.mark.slow  # a conversion of its own: CI's slow step runs it
def test_a_lambda_layer_is_refused_unless_trusted(people: People, tmp_path: Path):
    small_model(lambda_layer=True).save(tmp_path / "lambda.h5")
    refused = convert_foreign(tmp_path / "lambda.h5", people)
    assert refused.returncode == 2
    assert "contains a Lambda layer" in refused.stderr and "--trust-model" in refused.stderr
    check_foreign_output(convert_foreign(tmp_path / "lambda.h5", people, "--trust-model"), tmp_path)


def test_a_foreign_model_without_labels_is_refused(tmp_path: Path):
    small_model().save(tmp_path / "other.keras")
    run = run_in_process("convert", str(tmp_path / "other.keras"))
    assert run.returncode == 2
    assert "pass --labels FILE" in run.stderr
