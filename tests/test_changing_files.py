"""The folder daemon meets files that change under it, and files it cannot move.

A writer that appends in rounds, a camera that rewrites one file name several times a second, a photo that never
gets its end, a file that cannot be moved or read: each must end as exactly one outcome per content, in the log
and in the right folder, with nothing lost and nothing tried again at every start.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import time
from pathlib import Path

import pytest

from helpers import Child, Classifier, wait_until

SETTLE = "0.5"  # seconds a failing file must stay unchanged (the default 2 s would only make the tests longer)


def start(tmp_path: Path, classifier: Classifier, *flags: str) -> Child:
    """The daemon on tmp_path/inbox, logging to tmp_path/log.db, moving to done/ and failed/; ready."""
    args = ["watch", str(tmp_path / "inbox"), "--model", str(classifier.tflite_file), "--db", str(tmp_path / "log.db"),
            "--move-done", str(tmp_path / "done"), "--move-failed", str(tmp_path / "failed"), "--settle", SETTLE,
            *flags]  # fmt: skip
    return Child(tmp_path, *args).ready()


def rows(db: Path, query: str = "SELECT path, sha256, status, error, not_moved FROM inputs ORDER BY id") -> list[tuple]:
    if not db.exists():
        return []
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as connection:
        return connection.execute(query).fetchall()


def sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


@pytest.fixture()
def inbox(tmp_path: Path) -> Path:
    (tmp_path / "inbox").mkdir()
    return tmp_path / "inbox"


def test_a_photo_appended_in_rounds_is_one_outcome_once_whole(classifier: Classifier, tmp_path: Path, inbox: Path, photos):
    """Each round opens, appends and closes (as `cat part >> photo.png` or an FTP resume): every close is an
    event, and every piece but the last a truncated image that must not become an outcome."""
    daemon = start(tmp_path, classifier)
    photo = photos[0]
    pieces = [photo[i : i + len(photo) // 8 + 1] for i in range(0, len(photo), len(photo) // 8 + 1)]
    for piece in pieces:
        with open(inbox / "upload.png", "ab") as file:
            file.write(piece)
        time.sleep(0.05)
    wait_until(lambda: (tmp_path / "done" / "upload.png").exists())
    code, stderr = daemon.stop()
    assert code == 0 and len(pieces) > 4, stderr
    assert rows(tmp_path / "log.db") == [(str(inbox / "upload.png"), sha256(photo), "done", None, None)], stderr
    assert not (tmp_path / "failed").exists() and "truncated" not in stderr


def test_a_photo_that_never_gets_its_end_is_one_error_once_it_stops_changing(
    classifier: Classifier, tmp_path: Path, inbox: Path, photos
):
    daemon = start(tmp_path, classifier)
    (inbox / "cut.png").write_bytes(photos[1][:-40])
    wait_until(lambda: (tmp_path / "failed" / "cut.png").exists())
    code, stderr = daemon.stop()
    [(path, _, status, error, _)] = rows(tmp_path / "log.db")
    assert code == 0 and status == "error" and "truncated PNG" in error, stderr


def test_a_file_rewritten_while_it_is_processed_is_taken_again_and_nothing_moved_is_unclassified(
    classifier: Classifier, tmp_path: Path, inbox: Path, photos
):
    """A camera rewriting `snapshot.png` many times a second, in place and by renaming a new file over it: a
    content the daemon never saw is lost to it (it was overwritten first), but whatever it moved to done/ must
    be a content it logged, and the last one must be logged."""
    daemon = start(tmp_path, classifier)
    snapshot = inbox / "snapshot.png"
    written = []
    for number in range(60):
        content = photos[number % len(photos)] + bytes(number)  # bytes after IEND: each content distinct
        if number % 2:
            snapshot.write_bytes(content)  # truncated and rewritten in place
        else:
            (inbox / ".next.png").write_bytes(content)
            os.replace(inbox / ".next.png", snapshot)  # a new file renamed over it
        written.append(content)
        time.sleep(0.01)
    wait_until(lambda: sha256(written[-1]) in {sha for _, sha, *_ in rows(tmp_path / "log.db")})
    wait_until(lambda: not snapshot.exists())
    code, stderr = daemon.stop()
    logged = {sha: status for _, sha, status, *_ in rows(tmp_path / "log.db")}
    assert code == 0 and set(logged.values()) == {"done"}, stderr
    moved = {sha256(path.read_bytes()) for path in (tmp_path / "done").iterdir()}
    assert moved <= logged.keys() and moved, (len(moved), len(logged))
    assert logged.keys() <= {sha256(content) for content in written}
    assert rows(tmp_path / "log.db", "SELECT count(*) FROM pending") == [(0,)]


def test_a_file_that_cannot_be_moved_stays_says_why_once_and_is_left_be_after_a_restart(
    classifier: Classifier, tmp_path: Path, inbox: Path, photos
):
    (tmp_path / "done").write_text("a file where the folder for done files should be")
    daemon = start(tmp_path, classifier)
    (inbox / "stuck.png").write_bytes(photos[2])
    wait_until(lambda: "stuck.png: cannot move it to" in daemon.stderr())
    code, stderr = daemon.stop()
    [(path, sha, status, error, not_moved)] = rows(tmp_path / "log.db")
    assert code == 0 and status == "done" and not_moved.startswith(f"cannot move it to {tmp_path / 'done'}:"), stderr
    assert (inbox / "stuck.png").exists()

    daemon = start(tmp_path, classifier)  # the listing at start finds it again
    daemon.notifications.wait_for("1 already logged")  # its status line
    code, stderr = daemon.stop()
    assert code == 0 and "cannot move" not in stderr, stderr
    assert rows(tmp_path / "log.db") == [(path, sha, status, error, not_moved)]


def test_an_unreadable_file_left_in_place_is_one_outcome_across_restarts(classifier: Classifier, tmp_path: Path, inbox: Path):
    """Without move_failed a file that cannot be read stays in the folder: each start lists it, reads it and
    fails again, but the log keeps its one outcome (a row made anew each start would count it again)."""
    big = inbox / "huge.png"
    with open(big, "wb") as file:
        file.truncate(33 * 2**20)  # sparse: past the 32 MiB any input may have
    earlier = time.time() - 60
    os.utime(big, (earlier, earlier))  # settled: the listing at start takes it at once
    args = ["watch", str(inbox), "--model", str(classifier.tflite_file), "--db", str(tmp_path / "log.db"), "--settle", SETTLE]
    daemon = Child(tmp_path, *args).ready()
    daemon.notifications.wait_for("1 failed")
    code, stderr = daemon.stop()
    assert code == 0 and "huge.png: the file is" in stderr, stderr
    daemon = Child(tmp_path, *args).ready()
    daemon.notifications.wait_for("1 already logged")
    code, stderr = daemon.stop()
    assert code == 0 and "huge.png" not in stderr, stderr
    assert rows(tmp_path / "log.db", "SELECT id, status FROM inputs") == [(1, "error")]
