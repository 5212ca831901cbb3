"""Faults the daemon must survive, made for real: a log locked by another process, read-only to the daemon's user,
on a full disk, deleted under it; and models that are missing, cut short, of the wrong shape, or with labels that
do not fit. A log fault is reported once, the files wait, and the daemon catches up when the fault ends; a bad
model stops the start with exit code 2 and one line, or, on SIGHUP, leaves the running model at work."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from edgeface import artefact
from edgeface.store import ResultLog
from helpers import (
    Child,
    Classifier,
    as_an_ordinary_user,
    check_log,
    fill,
    flatbuffer_of,
    restore_read_only,
    tmpfs_disk,
    wait_until,
)


def watch(tmp_path: Path, classifier: Classifier, db: Path, model: Path | None = None) -> tuple[Path, list[str]]:
    """An inbox in `tmp_path` and the arguments of a daemon that moves what it logged in `db`."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    args = ["watch", str(inbox), "--model", str(model or classifier.tflite_file), "--db", str(db),
            "--move-done", str(tmp_path / "done"), "--move-failed", str(tmp_path / "failed")]  # fmt: skip
    return inbox, args


def put(inbox: Path, names: list[str], classifier: Classifier) -> None:
    """Held-out photos arrive as uploaders write files: to a temporary name, then renamed into the inbox. They keep
    an earlier time (as `rsync -t` does), so only the event or the listing after a fault can bring them in, never
    a second look at files too new to take."""
    earlier = time.time() - 3600
    for number, name in enumerate(names):
        staging = inbox.parent / f".{name}"
        staging.write_bytes(classifier.held_out[number % len(classifier.held_out)][0].read_bytes())
        os.utime(staging, (earlier, earlier))
        staging.rename(inbox / name)


def logged(db: Path) -> set[str]:
    """The names of the files the log holds an outcome for (read-only: a log the daemon has not made yet stays so)."""
    if not db.exists():
        return set()
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as connection:
        return {os.path.basename(path) for (path,) in connection.execute("SELECT path FROM inputs")}


def caught_up(tmp_path: Path, db: Path, names: list[str]) -> bool:
    """Whether every file named has its outcome in the log and was moved to done/."""
    done = tmp_path / "done"
    return done.exists() and {path.name for path in done.iterdir()} >= set(names) and logged(db) >= set(names)


def lines(stderr: str, text: str) -> int:
    return sum(text in line for line in stderr.splitlines())


def test_a_long_reader_does_not_hold_the_daemon_up_and_a_writer_lock_is_waited_out(
    classifier: Classifier, tmp_path: Path
):
    db = tmp_path / "log.db"
    inbox, args = watch(tmp_path, classifier, db)
    daemon = Child(tmp_path, *args, env={"WATCHDOG_USEC": "400000"}).ready()
    with contextlib.closing(sqlite3.connect(db, isolation_level=None)) as reader:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM inputs").fetchone()  # a read transaction held from here on
        put(inbox, ["read-1.png", "read-2.png"], classifier)
        wait_until(lambda: caught_up(tmp_path, db, ["read-1.png", "read-2.png"]))
        with contextlib.closing(sqlite3.connect(db, isolation_level=None)) as writer:
            writer.execute("BEGIN IMMEDIATE")  # another process's write lock, held past the daemon's patience
            locked = [f"locked-{number}.png" for number in range(4)]
            put(inbox, locked, classifier)
            wait_until(lambda: "is failing: database is locked" in daemon.stderr())
            daemon.notifications.wait_for("STATUS=the log is failing (database is locked)")  # within a second
            for _ in range(2):  # the watchdog is fed while the daemon waits
                daemon.notifications.wait_for("WATCHDOG=1", timeout=10)
            assert sorted(path.name for path in inbox.iterdir()) == locked  # not moved without an outcome
            writer.execute("ROLLBACK")
        wait_until(lambda: caught_up(tmp_path, db, locked))
    code, stderr = daemon.stop()
    assert code == 0, stderr
    assert lines(stderr, "is failing") == 1 and lines(stderr, "works again") == 1, stderr
    assert len(check_log(db)) == 6 and not any(inbox.iterdir())


def test_a_read_only_log_stops_the_start_and_one_made_read_only_later_is_waited_for(classifier: Classifier, tmp_path: Path):
    """At start, a log the daemon may not write is a mistake to report (exit 2, which the units do not restart), not
    a fault to wait out while systemd shows the service running. A log that becomes read-only later (a read-only
    backup restored under the running daemon) is waited for, as every passing fault of the log is."""
    read_only, db = tmp_path / "read-only", tmp_path / "log.db"
    read_only.mkdir()
    _, refused_args = watch(read_only, classifier, read_only / "log.db")
    ResultLog(read_only / "log.db").close()
    (read_only / "log.db").chmod(0o444)
    inbox, args = watch(tmp_path, classifier, db)
    refused = Child(read_only, *refused_args, preexec=as_an_ordinary_user)  # two starts at once: half the wait
    daemon = Child(tmp_path, *args, preexec=as_an_ordinary_user).ready()
    assert refused.finish()[0] == 2
    errors = [line for line in refused.stderr().splitlines() if line.startswith("edgeface: error:")]
    assert len(errors) == 1 and "cannot be written here: attempt to write a readonly database" in errors[0], errors
    daemon.signal(signal.SIGSTOP)
    restore_read_only(db)
    daemon.signal(signal.SIGCONT)
    put(inbox, ["a.png", "b.png"], classifier)
    wait_until(lambda: "is failing: attempt to write a readonly database (read-only here: log.db" in daemon.stderr())
    assert sorted(path.name for path in inbox.iterdir()) == ["a.png", "b.png"]  # not moved without an outcome
    daemon.signal(signal.SIGSTOP)  # the fault ends at once, for the log and the -wal and -shm SQLite gave its mode
    for path in tmp_path.glob("log.db*"):
        path.chmod(0o644)
    daemon.signal(signal.SIGCONT)
    wait_until(lambda: caught_up(tmp_path, db, ["a.png", "b.png"]))
    code, stderr = daemon.stop()
    assert code == 0, stderr
    assert lines(stderr, "works again") == 1 and check_log(db) == {str(inbox / name): "done" for name in ("a.png", "b.png")}


@pytest.fixture()
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB disk."""
    yield from tmpfs_disk(tmp_path, "2m")


def test_a_full_disk_keeps_the_files_waiting_until_there_is_room(
    classifier: Classifier, tmp_path: Path, small_disk: Path
):
    db = small_disk / "log.db"
    inbox, args = watch(tmp_path, classifier, db)
    daemon = Child(tmp_path, *args).ready()
    put(inbox, ["before.png"], classifier)
    wait_until(lambda: caught_up(tmp_path, db, ["before.png"]))
    filler = fill(small_disk)
    waiting = [f"full-{number}.png" for number in range(5)]
    put(inbox, waiting, classifier)
    wait_until(lambda: "is failing: database or disk is full" in daemon.stderr())
    assert sorted(path.name for path in inbox.iterdir()) == waiting
    filler.unlink()  # the fault ends
    wait_until(lambda: caught_up(tmp_path, db, waiting))
    code, stderr = daemon.stop()
    assert code == 0, stderr
    assert lines(stderr, "is failing") == 1 and lines(stderr, "works again") == 1, stderr
    assert check_log(db) == {str(inbox / name): "done" for name in ["before.png", *waiting]}


def test_a_log_deleted_under_the_daemon_is_started_anew_and_nothing_it_recorded_since_is_lost(
    classifier: Classifier, tmp_path: Path
):
    """The log is deleted in the middle of a burst. Outcomes committed before that go with it; every other file
    must end in the new log, none moved without it, none twice."""
    db = tmp_path / "log.db"
    inbox, args = watch(tmp_path, classifier, db)
    daemon = Child(tmp_path, *args).ready()
    burst = [f"{number:03d}.png" for number in range(60)]
    put(inbox, burst, classifier)
    done = tmp_path / "done"
    wait_until(lambda: done.exists() and len(list(done.iterdir())) >= 8)
    daemon.signal(signal.SIGSTOP)  # so that what the old log holds is known exactly
    deleted = {os.path.basename(path) for path in check_log(db)}
    for path in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
        path.unlink()
    daemon.signal(signal.SIGCONT)
    wait_until(lambda: "was deleted or replaced while in use" in daemon.stderr())
    late = [f"late-{number}.png" for number in range(5)]
    put(inbox, late, classifier)
    wait_until(lambda: "works again" in daemon.stderr() and not any(inbox.iterdir()))  # all moved, so all committed
    code, stderr = daemon.stop()
    assert code == 0, stderr
    assert "did not exist: started a new, empty one there" in stderr
    everything = set(burst + late)
    assert everything - deleted <= set(os.path.basename(path) for path in check_log(db)) <= everything
    assert sorted(path.name for path in done.iterdir()) == sorted(everything)  # each moved once, none renamed


def test_a_log_that_no_wait_can_mend_stops_the_start(classifier: Classifier, tmp_path: Path):
    db = tmp_path / "log.db"
    db.write_bytes(b"this is no SQLite file, and waiting will not make it one" * 100)
    _, args = watch(tmp_path, classifier, db)
    daemon = Child(tmp_path, *args)
    assert daemon.process.wait(timeout=60) == 2
    daemon.notifications.close()
    stderr = daemon.stderr()
    errors = [line for line in stderr.splitlines() if line.startswith("edgeface: error:")]
    assert errors == [f"edgeface: error: the log {db} cannot be used: file is not a database"] and "Traceback" not in stderr
    assert not any("READY=1" in message for message in daemon.notifications.seen)


def edgeface_lines(stderr: str) -> list[str]:
    """edgeface's own lines (LiteRT prints one of its own when a model loads)."""
    return [line for line in stderr.splitlines() if not line.startswith("INFO: Created TensorFlow Lite")]


@pytest.fixture()
def bad_models(classifier: Classifier, tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """Broken models, each with what the error must say: kind -> (file, words of the message)."""
    model, flatbuffer = classifier.tflite_file.read_bytes(), flatbuffer_of(classifier.tflite_file)
    metadata = artefact.read(model)
    other_size = replace(metadata, preprocessing=replace(metadata.preprocessing, width=48, height=48))
    three_labels = replace(metadata, labels=("a", "b", "c"), output="softmax", unknown_rule=None)
    folder = tmp_path / "models"
    folder.mkdir()
    files: dict[str, tuple[bytes | None, str]] = {
        "missing": (None, "No such file or directory"),
        "truncated": (model[: len(model) // 2], "damaged or cut short"),
        "wrong input size": (artefact.embed(flatbuffer, other_size), "does not match its preprocessing (48, 48, 1)"),
        "labels that do not fit": (artefact.embed(flatbuffer, three_labels), "1 outputs do not match 3 labels"),
    }
    models = {}
    for kind, (content, words) in files.items():
        path = folder / f"{kind.replace(' ', '-')}.tflite"
        if content is not None:
            path.write_bytes(content)
        models[kind] = (path, words)
    return models


def test_a_bad_model_stops_the_start_with_one_line_before_ready(
    classifier: Classifier, tmp_path: Path, bad_models: dict[str, tuple[Path, str]]
):
    """Every kind of broken model, each given to a daemon of its own; the daemons start together."""
    started = {}
    for kind, (model, _) in bad_models.items():
        folder = tmp_path / model.stem
        folder.mkdir()
        _, args = watch(folder, classifier, folder / "log.db", model=model)
        started[kind] = Child(folder, *args)
    for kind, daemon in started.items():
        model, words = bad_models[kind]
        assert daemon.process.wait(timeout=60) == 2, kind
        daemon.notifications.close()
        [line] = edgeface_lines(daemon.stderr())
        assert line.startswith("edgeface: error: ") and str(model) in line and words in line, (kind, line)
        assert not any("READY=1" in message for message in daemon.notifications.seen), kind
        assert not (tmp_path / model.stem / "log.db").exists(), kind  # the model is checked before the log is touched


def test_a_bad_model_on_sighup_leaves_the_running_one_at_work(
    classifier: Classifier, tmp_path: Path, bad_models: dict[str, tuple[Path, str]]
):
    """Each broken model in turn replaces the model file, as a botched update would, and the daemon is told to
    reload: it says why it cannot, and the next file is classified by the model it was running."""
    model, db = tmp_path / "current.tflite", tmp_path / "log.db"
    shutil.copy(classifier.tflite_file, model)
    inbox, args = watch(tmp_path, classifier, db, model=model)
    daemon = Child(tmp_path, *args).ready()
    put(inbox, ["first.png"], classifier)
    wait_until(lambda: caught_up(tmp_path, db, ["first.png"]))
    for number, (kind, (bad, words)) in enumerate(bad_models.items()):
        if bad.exists():
            shutil.copy(bad, model)
        else:
            model.unlink()
        daemon.process.send_signal(signal.SIGHUP)
        daemon.notifications.wait_for("RELOADING=1", timeout=10)
        daemon.notifications.wait_for("READY=1", timeout=30)
        put(inbox, [f"after-{number}.png"], classifier)
        wait_until(lambda: caught_up(tmp_path, db, [f"after-{number}.png"]))
        failures = [line for line in daemon.stderr().splitlines() if "reload failed" in line]
        assert len(failures) == number + 1 and words in failures[-1], (kind, failures)
    code, stderr = daemon.stop()
    assert code == 0, stderr
    with contextlib.closing(sqlite3.connect(db)) as connection:
        assert connection.execute("SELECT count(*), count(DISTINCT model_id) FROM inputs").fetchone() == (5, 1)
        assert connection.execute("SELECT count(*) FROM models").fetchone() == (1,)
