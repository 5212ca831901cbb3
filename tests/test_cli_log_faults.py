"""Every command that touches the log meets a locked, a read-only and a damaged log with one line and exit 2.

The faults are real: another process's SQLite connection holding an exclusive lock, a log file that is read-only
to a process without root's capabilities, and a file that is no SQLite database. The commands run as processes.
"""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from helpers import Classifier, as_an_ordinary_user
from edgeface.cli import main
from edgeface.store import ResultLog

EXIT_ERROR = 2


def commands(db: Path, model: Path, photo: Path, *flags: str) -> dict[str, list[str]]:
    """forget, log and scan against the log `db`, as a user would type them, each with `flags`."""
    return {
        "forget": ["forget", "--label", "alice", "--db", str(db), *flags],
        "log": ["log", "--db", str(db), *flags],
        "scan": ["scan", str(photo), "--model", str(model), "--db", str(db), "--workers", "1", *flags],
    }


def run_all(argvs: dict[str, list[str]], preexec=None) -> dict[str, subprocess.CompletedProcess]:
    """Runs the commands at once (a locked log makes each wait out SQLite's busy timeout) and waits for all."""
    started = {
        name: subprocess.Popen([sys.executable, "-m", "edgeface", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, preexec_fn=preexec)  # fmt: skip
        for name, argv in argvs.items()
    }
    finished = {}
    for name, process in started.items():
        stdout, stderr = process.communicate(timeout=120)
        finished[name] = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    return finished


LITERT_NOTE = "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."  # LiteRT's C++ prints it; not ours


def assert_one_line_and_exit_2(result: subprocess.CompletedProcess, says: str) -> None:
    assert result.returncode == EXIT_ERROR, result.stderr
    # The daemon's journal also says what went well before (INFO lines); the commands say nothing else.
    lines = [line for line in result.stderr.splitlines() if line != LITERT_NOTE and not line.startswith("edgeface: INFO:")]
    assert len(lines) == 1 and lines[0].startswith("edgeface: error: the log ") and says in lines[0], result.stderr


@pytest.fixture()
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "photo.png"
    cv2.imwrite(str(path), np.full((48, 48, 3), 128, np.uint8))
    return path


def test_a_log_locked_by_another_program(classifier: Classifier, tmp_path: Path, photo: Path):
    db = tmp_path / "log.db"
    ResultLog(db).close()
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("PRAGMA locking_mode = EXCLUSIVE")  # readers are kept out too, as by a program mid-VACUUM
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("DELETE FROM pending")
    try:
        results = run_all(commands(db, classifier.tflite_file, photo, "--wait", "0.5"))  # not the default 10 s
    finally:
        holder.close()
    for result in results.values():
        assert_one_line_and_exit_2(result, "is locked by another program: database is locked")


def test_a_damaged_log(classifier: Classifier, tmp_path: Path, photo: Path):
    db = tmp_path / "log.db"
    db.write_bytes(b"not a database, and no wait makes it one " * 200)
    for result in run_all(commands(db, classifier.tflite_file, photo)).values():
        assert_one_line_and_exit_2(result, "cannot be used: file is not a database")
    assert db.read_bytes().startswith(b"not a database")  # left for a person to look at


def test_a_read_only_log_refuses_writes_and_still_answers_questions(classifier: Classifier, tmp_path: Path, photo: Path):
    """Writing commands stop with one line; `log` only reads, so it answers (a backup on read-only media is still
    worth querying). A read-only log that would first need bringing to this edgeface's schema cannot be read."""
    db = tmp_path / "log.db"
    ResultLog(db).close()
    db.chmod(0o444)
    results = run_all(commands(db, classifier.tflite_file, photo), preexec=as_an_ordinary_user)
    for name in ("forget", "scan"):
        assert_one_line_and_exit_2(results[name], "cannot be written here: attempt to write a readonly database")
    assert results["log"].returncode == 0 and results["log"].stdout == "nothing in the log matches\n", results["log"]

    old = tmp_path / "old.db"
    ResultLog(old).close()
    with contextlib.closing(sqlite3.connect(old)) as connection:  # as a schema-5 edgeface left it
        connection.execute("PRAGMA application_id = 0")
        connection.execute("PRAGMA user_version = 5")
    old.chmod(0o444)
    result = run_all({"log": ["log", "--db", str(old)]}, preexec=as_an_ordinary_user)["log"]
    assert_one_line_and_exit_2(result, "cannot be written here")


def test_another_programs_database_is_refused_and_left_untouched(classifier: Classifier, tmp_path: Path, photo: Path):
    db = tmp_path / "notes.db"
    with contextlib.closing(sqlite3.connect(db)) as connection:
        connection.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")
        connection.execute("INSERT INTO notes (text) VALUES ('buy milk')")
        connection.commit()
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    argvs = {**commands(db, classifier.tflite_file, photo),
             "watch": ["watch", str(tmp_path), "--model", str(classifier.tflite_file), "--db", str(db)]}  # fmt: skip
    for result in run_all(argvs).values():
        assert_one_line_and_exit_2(result, "is another program's SQLite database, not an edgeface log; left untouched")
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before and sorted(tmp_path.glob("notes.db*")) == [db]


@pytest.mark.parametrize("wait", ["-1", "nan", "inf", "3601", "soon"])
def test_a_wait_out_of_range_is_a_usage_error(tmp_path: Path, wait: str, capsys: pytest.CaptureFixture):
    with pytest.raises(SystemExit) as stopped:
        main(["log", "--db", str(tmp_path / "log.db"), "--wait", wait])
    assert stopped.value.code == EXIT_ERROR and "--wait: give seconds from 0 to 3600" in capsys.readouterr().err
