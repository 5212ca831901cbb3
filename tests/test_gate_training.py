"""The face-quality gate on the workstation: `train-gate` learns faces from unlabelled folders, `convert --gate`
carries it int8 in the model file, and `train --arch classic --pretrain` starts the CNN from an autoencoder.

The faces are scikit-image's lfw_subset: faces 0-79 to train the gate on (in sub-folders, which it walks), faces
80-99 it never sees, and the 100 non-face patches, which a gate of faces should mostly reject. One gate is trained
for the module; the model it serves is the stand-in embedder of tests/make_fixtures.py (detector none, as the gate).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeface import artefact
from edgeface.dataset import crop_patches
from helpers import run_in_process
from make_fixtures import MadeModel, make_embedder

pytestmark = pytest.mark.workstation

TRAINING_FACES, UNSEEN_FACES = range(80), range(80, 100)
GATE_EPOCHS = "150"


@dataclass
class Gate:
    root: Path
    keras_file: Path
    train_result: dict
    model: MadeModel  # the embedder the gate serves, converted without it
    gated_file: Path
    convert_report: dict


def write_patches(folder: Path, patches: np.ndarray, numbers: range, groups: int = 1) -> Path:
    for number in numbers:
        place = folder / f"group{number % groups}" if groups > 1 else folder
        place.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(place / f"{number:03d}.png"), patches[number])
    return folder


@pytest.fixture(scope="module")
def gate(tmp_path_factory: pytest.TempPathFactory, lfw_patches: np.ndarray) -> Gate:
    root = tmp_path_factory.mktemp("gate")
    faces = write_patches(root / "faces", lfw_patches, TRAINING_FACES, groups=3)
    keras_file = root / "gate.h5"
    trained = run_in_process("train-gate", str(faces), "-o", str(keras_file), "--detector", "none",
                             "--epochs", GATE_EPOCHS, "--json")  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    model = make_embedder(root / "embedder", lfw_patches)
    gated_file = root / "gated.tflite"
    converted = run_in_process("convert", str(model.keras_file), "--gate", str(keras_file), "-o", str(gated_file), "--json")
    assert converted.returncode == 0, converted.stderr
    return Gate(root, keras_file, json.loads(trained.stdout), model, gated_file, json.loads(converted.stdout))


def float_and_int8_scores(gate: Gate, patches: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from edgeface_convert.autoencoder import reconstruction_errors
    from edgeface_convert.gate_convert import int8_errors
    from edgeface_convert.gate_file import load_gate

    trained = load_gate(gate.keras_file)
    crops = crop_patches(np.repeat(patches[..., np.newaxis], 3, axis=3), trained.preprocessing)
    network = artefact.read_gate_model(gate.gated_file.read_bytes())
    return reconstruction_errors(trained.model, crops), int8_errors(network, crops)


def test_the_gate_keeps_real_faces_and_rejects_most_non_faces(gate: Gate, lfw_patches: np.ndarray):
    result, spec = gate.train_result, artefact.read_file(gate.gated_file).gate
    assert result["faces"] == len(TRAINING_FACES) and result["held_out_faces"] >= 5 and result["keep"] == 0.99
    assert gate.convert_report["gate"]["keep"] >= spec.keep  # of the held-out faces, scored by the int8 gate
    float_faces, int8_faces = float_and_int8_scores(gate, lfw_patches[UNSEEN_FACES])
    float_others, int8_others = float_and_int8_scores(gate, lfw_patches[100:])
    assert np.mean(float_faces <= result["threshold"]) >= 0.8 and np.mean(int8_faces <= spec.threshold) >= 0.8
    assert np.mean(float_others > result["threshold"]) >= 0.6 and np.mean(int8_others > spec.threshold) >= 0.6


def test_convert_carries_the_int8_gate_in_the_model_file(gate: Gate):
    content = gate.gated_file.read_bytes()
    metadata, report = artefact.read(content), gate.convert_report["gate"]
    assert metadata.gate.preprocessing.to_dict() == gate.train_result["preprocessing"]
    assert metadata.gate.threshold == report["threshold"] and metadata.gate.correlation == report["correlation"] >= 0.9
    assert metadata.gate.calibration_faces == gate.train_result["held_out_faces"]
    assert len(artefact.read_gate_model(content)) == report["size"] < 300_000
    assert metadata.gallery.counts() == artefact.read_file(gate.model.tflite_file).gallery.counts()
    assert artefact.read_file(gate.model.tflite_file).gate is None


def test_a_gate_that_crops_faces_otherwise_is_refused(gate: Gate, tmp_path: Path):
    import h5py

    other = tmp_path / "other.h5"
    other.write_bytes(gate.keras_file.read_bytes())
    with h5py.File(other, "a") as file:
        document = json.loads(bytes(file["edgeface_gate"][()]).decode())
        document["preprocessing"]["margin"] = 0.2
        del file["edgeface_gate"]
        file.create_dataset("edgeface_gate", data=np.frombuffer(json.dumps(document).encode(), np.uint8))
    refused = run_in_process("convert", str(gate.model.keras_file), "--gate", str(other), "-o", str(tmp_path / "m.tflite"))
    assert refused.returncode == 2
    assert "crops faces unlike the model, by its margin 0.2 (the model's: 0.0)" in refused.stderr
    assert not (tmp_path / "m.tflite").exists()
    not_a_gate = run_in_process("convert", str(gate.model.keras_file), "--gate", str(gate.model.keras_file))
    assert not_a_gate.returncode == 2 and "is not a gate from `edgeface train-gate`" in not_a_gate.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing/", "--detector", "none"], "FACES missing/: no such file or folder"),
        (["EMPTY", "--detector", "none"], "no photos in"),
        (["FEW", "--detector", "none"], "a gate needs at least 20"),
        (["FEW", "--keep", "1.5"], "--keep 1.5: a share of faces from 0.5 to 1"),
        (["FEW", "--size", "30"], "--size 30: a multiple of 8"),
        (["FEW", "--like", "FEW/000.png", "--detector", "none"], "--detector: not with --like"),
        (["FEW", "--like", "FEW/000.png"], "--like: "),
        (["FEW", "--detector", "haar"], "--detector haar: the embedder needs faces aligned"),
    ],
)
def test_train_gate_says_what_is_wrong_in_one_line(tmp_path: Path, lfw_patches: np.ndarray, args: list[str],
                                                   message: str):  # fmt: skip
    (tmp_path / "EMPTY").mkdir()
    write_patches(tmp_path / "FEW", lfw_patches, range(6))
    named = [str(tmp_path / arg) if arg.startswith(("EMPTY", "FEW")) else arg for arg in args]
    run = run_in_process("train-gate", *named, "-o", str(tmp_path / "gate.h5"))
    assert run.returncode == 2, run.stderr
    assert message in run.stderr and "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) <= 3


def test_pretraining_gives_the_classic_cnn_the_autoencoders_convolutions(lfw_patches: np.ndarray):
    from edgeface_convert.autoencoder import PRETRAIN_CODE, build_autoencoder, fit_autoencoder
    from edgeface_convert.training import build_classic_cnn, classic_encoder, copy_encoder

    crops = lfw_patches[:16, :24, :24, np.newaxis].astype(np.float32) / 255
    autoencoder = build_autoencoder((24, 24, 1), classic_encoder(), PRETRAIN_CODE, "pretraining")
    fit_autoencoder(autoencoder, crops, 1, 0, "pretraining")
    assert autoencoder.output_shape[1:] == (24, 24, 1)
    model = build_classic_cnn((24, 24, 1), 2)
    assert copy_encoder(autoencoder, model) == 3
    for source, target in zip(autoencoder.layers[1:7], model.layers[:6]):
        assert all(np.array_equal(a, b) for a, b in zip(source.get_weights(), target.get_weights()))


def test_train_classic_with_pretrain(tmp_path: Path, lfw_patches: np.ndarray):
    for label, first in (("face", 0), ("not-face", 100)):
        write_patches(tmp_path / "faces" / label, lfw_patches, range(first, first + 12))
    unlabelled = write_patches(tmp_path / "unlabelled", lfw_patches, range(20, 60), groups=2)
    args = ["train", str(tmp_path / "faces"), "-o", str(tmp_path / "c.h5"), "--detector", "none", "--grayscale",
            "--input-size", "32", "--epochs", "2", "--pretrain", str(unlabelled)]  # fmt: skip
    run = run_in_process(*args, "--arch", "classic")
    assert run.returncode == 0, run.stderr
    assert "pretraining the conv stack as an autoencoder on 40 unlabelled faces" in run.stderr
    assert "confusion matrix" in run.stdout
    embedder = run_in_process(*args)
    assert embedder.returncode == 2 and "--pretrain: only for --arch classic" in embedder.stderr
