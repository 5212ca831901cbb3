"""What a new user meets first: a Keras model where the .tflite belongs, a path with a typo, an empty folder."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from conftest import Trained, run_edgeface


def test_a_keras_model_given_to_scan_says_to_convert_it(tmp_path: Path):
    for name in ("faces.h5", "faces.keras"):
        (tmp_path / name).write_bytes(b"HDF")
        run = run_edgeface("scan", str(tmp_path), "--model", str(tmp_path / name), "--db", str(tmp_path / "log.db"))
        assert run.returncode == 2 and f"`edgeface convert {tmp_path / name}`" in run.stderr, run.stderr
        assert not (tmp_path / "log.db").exists()


def test_a_path_that_does_not_exist_is_said_and_never_logged(trained: Trained, tmp_path: Path):
    photo = trained.held_out[0][0]
    typo, db = tmp_path / "photso", tmp_path / "log.db"
    run = run_edgeface("scan", str(photo), str(typo), "--model", str(trained.tflite_file), "--db", str(db))
    assert run.returncode == 1 and f"problem: no such file or folder: {typo}" in run.stderr, run.stderr
    with sqlite3.connect(db) as connection:
        assert [path for (path,) in connection.execute("SELECT path FROM inputs")] == [str(photo)]


def test_a_folder_without_images_gets_a_word_and_is_no_failure(trained: Trained, tmp_path: Path):
    empty, db = tmp_path / "photos", tmp_path / "log.db"
    (empty / "2024").mkdir(parents=True)
    (empty / "notes.txt").write_text("not a photo")
    run = run_edgeface("scan", str(empty), "--model", str(trained.tflite_file), "--db", str(db))
    assert run.returncode == 0, run.stderr
    assert f"note: no image files in {empty} (1 other file); --recursive also looks in its sub-folders" in run.stderr
