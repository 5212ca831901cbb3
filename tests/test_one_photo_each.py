"""One photo per person leaves nothing to validate on: train and convert say so instead of a perfect score."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from edgeface.dataset import FaceSet, stratified_split, unvalidated_people
from edgeface_convert.common import warn_unvalidated
from helpers import Classifier, run_edgeface


def faces_of(targets: list[int]) -> FaceSet:
    labels = ("ann", "bob", "cy", "dee", "eve", "fay", "gus")
    return FaceSet(np.zeros((len(targets), 2, 2, 1), np.float32), np.array(targets), labels[: max(targets) + 1],
                   [""] * len(targets))  # fmt: skip


def test_people_with_one_photo_are_named_as_left_out_of_validation(capsys: pytest.CaptureFixture):
    faces = faces_of([0, 0, 0, 1, 2])
    validation = stratified_split(faces.targets, 0.2, seed=1)[1]
    assert unvalidated_people(faces, validation) == ("bob", "cy")
    warn_unvalidated(faces, validation)
    assert "warning: 2 people have one photo" in capsys.readouterr().err


def test_a_validation_split_of_no_face_is_said_to_measure_nothing(capsys: pytest.CaptureFixture):
    faces = faces_of(list(range(7)))
    validation = stratified_split(faces.targets, 0.2, seed=1)[1]
    assert len(validation) == 0
    warn_unvalidated(faces, validation)
    assert "the figures below cover no face" in capsys.readouterr().err


def test_enough_photos_each_give_no_warning(capsys: pytest.CaptureFixture):
    faces = faces_of([0, 0, 1, 1, 2, 2])
    warn_unvalidated(faces, stratified_split(faces.targets, 0.2, seed=1)[1])
    assert capsys.readouterr().err == ""


@pytest.mark.workstation
@pytest.mark.slow  # trains and converts; the tests above check the warning itself
def test_train_and_convert_with_one_photo_per_person_say_what_their_figures_are(tmp_path: Path, classifier: Classifier):
    for number, (path, _) in enumerate(classifier.held_out[:3]):
        (tmp_path / "faces" / f"person{number}").mkdir(parents=True)
        shutil.copy(path, tmp_path / "faces" / f"person{number}")
    keras_file = tmp_path / "m.h5"
    train = run_edgeface("train", str(tmp_path / "faces"), "-o", str(keras_file), "--arch", "classic", "--detector",
                         "none", "--grayscale", "--input-size", "32", "--epochs", "1", "--strangers", "lfw_subset")  # fmt: skip
    assert train.returncode == 0 and "warning: every person has one photo, so nothing is held out" in train.stderr, train.stderr
    converted = run_edgeface("convert", str(keras_file))
    assert "the calibration faces, which train learned from" in converted.stdout + converted.stderr, converted
