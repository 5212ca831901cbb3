"""The self-test a converted model carries: it passes as made, and a model that no longer gives
its stored answers is refused before the daemon reports ready."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from edgeface import artefact
from edgeface.model import FaceClassifier
from edgeface.selftest import SAMPLES, SelfTestFailed, run_self_test
from helpers import Classifier, flatbuffer_of, run_edgeface


def with_metadata(classifier: Classifier, tmp_path: Path, **changes: object) -> Path:
    """A copy of the trained model whose metadata has `changes` applied."""
    metadata = artefact.read_file(classifier.tflite_file)
    target = tmp_path / "changed.tflite"
    target.write_bytes(artefact.embed(flatbuffer_of(classifier.tflite_file), replace(metadata, **changes)))
    return target


def test_a_converted_model_carries_a_self_test_that_passes(classifier: Classifier):
    classifier = FaceClassifier(classifier.tflite_file)
    test = classifier.metadata.self_test
    assert test is not None and len(test.inputs) == len(test.probabilities) == SAMPLES
    run_self_test(classifier)


def test_answers_that_moved_fail_the_self_test(classifier: Classifier, tmp_path: Path):
    test = artefact.read_file(classifier.tflite_file).self_test
    shifted = tuple(tuple(min(1.0, value + 0.1) if i == 0 else value for i, value in enumerate(row))
                    for row in test.probabilities)  # fmt: skip
    changed = with_metadata(classifier, tmp_path, self_test=replace(test, probabilities=shifted))
    with pytest.raises(SelfTestFailed, match="failed its self-test"):
        run_self_test(FaceClassifier(changed))
    run = run_edgeface("watch", str(tmp_path), "--model", str(changed), "--db", str(tmp_path / "l.db"))
    assert run.returncode == 2 and "failed its self-test" in run.stderr


def test_damaged_samples_fail_and_a_model_without_a_self_test_is_only_warned_about(
    classifier: Classifier, tmp_path: Path
):
    test = artefact.read_file(classifier.tflite_file).self_test
    damaged = with_metadata(classifier, tmp_path, self_test=replace(test, inputs=("AAAA",) * len(test.inputs)))
    with pytest.raises(SelfTestFailed, match="damaged"):
        run_self_test(FaceClassifier(damaged))
    without = with_metadata(classifier, tmp_path, self_test=None)
    run_self_test(FaceClassifier(without))  # older models still run
