"""What a new user meets first: a Keras model where the .tflite belongs, a path with a typo, an empty folder."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from helpers import Classifier, run_edgeface, run_in_process


def test_a_keras_model_given_to_scan_says_to_convert_it(tmp_path: Path):
    """Refused before anything is read: checked in this process (test_cli runs the command as a process)."""
    for name in ("faces.h5", "faces.keras"):
        (tmp_path / name).write_bytes(b"HDF")
        run = run_in_process("scan", str(tmp_path), "--model", str(tmp_path / name), "--db", str(tmp_path / "log.db"))
        assert run.returncode == 2 and f"`edgeface convert {tmp_path / name}`" in run.stderr, run.stderr
        assert not (tmp_path / "log.db").exists()


def test_a_path_that_does_not_exist_is_said_and_never_logged(classifier: Classifier, tmp_path: Path):
    photo = classifier.held_out[0][0]
    typo, db = tmp_path / "photso", tmp_path / "log.db"
    run = run_edgeface("scan", str(photo), str(typo), "--model", str(classifier.tflite_file), "--db", str(db))
    assert run.returncode == 1 and f"problem: no such file or folder: {typo}" in run.stderr, run.stderr
    with sqlite3.connect(db) as connection:
        assert [path for (path,) in connection.execute("SELECT path FROM inputs")] == [str(photo)]


def test_a_folder_without_images_gets_a_word_and_is_no_failure(classifier: Classifier, tmp_path: Path):
    empty, db = tmp_path / "photos", tmp_path / "log.db"
    (empty / "2024").mkdir(parents=True)
    (empty / "notes.txt").write_text("not a photo")
    run = run_edgeface("scan", str(empty), "--model", str(classifier.tflite_file), "--db", str(db))
    assert run.returncode == 0, run.stderr
    assert f"note: no image files in {empty} (1 other file); --recursive also looks in its sub-folders" in run.stderr


def test_annotated_copies_never_land_on_the_photos(classifier: Classifier, tmp_path: Path, monkeypatch):
    """The folder of the photos is refused before the scan starts (checked in this process); a copy that would be
    the photo itself (a hard link) is refused by the scan, run as a process."""
    photos = tmp_path / "photos"
    photos.mkdir()
    photo = photos / "a.png"
    photo.write_bytes(classifier.held_out[0][0].read_bytes())
    before = photo.read_bytes()
    scan = ["scan", "photos", "--model", str(classifier.tflite_file), "--db", "log.db"]
    monkeypatch.chdir(tmp_path)
    run = run_in_process(*scan, "--annotate", ".")
    assert run.returncode == 2 and "would write the copies over the photos themselves" in run.stderr, run.stderr
    (tmp_path / "copies" / "photos").mkdir(parents=True)
    os.link(photo, tmp_path / "copies" / "photos" / "a.png")  # where its copy would go is the photo itself
    run = subprocess.run([sys.executable, "-m", "edgeface", *scan, "--annotate", "copies"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert run.returncode == 1 and "would overwrite the photo itself" in run.stderr, run.stderr
    assert photo.read_bytes() == before
