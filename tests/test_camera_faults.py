"""Log faults under a camera daemon, made for real while a video plays in real time: a log locked by another
process, a read-only log restored over the live one, a full disk, a log deleted under the daemon.

The video shows two people in turn, each segment in the next of five places, so the Haar detector finds one face
per frame and the tracker makes one appearance per segment. (The model's own detector, `none`, would make every frame
one face with the same box, so every segment would continue one track.) The daemon says each appearance in its
journal when it ends; every one of them must end in the log exactly once, and the daemon must run to the end of the
file (exit 0) without holding the camera up. Faults begin and end on what the daemon has done (rows in the log,
lines in its journal), never after a set time.

Each run plays its video in real time, so the default run has one of them, the full disk (with the per-frame rows
it could not log), on a 4-second video; the lock, the read-only logs and the deleted log, each also made under the
folder daemon in test_faults' default run, run with `-m slow` on an 8-second one. What the camera daemon keeps in memory while the log fails
is also checked in this process, in the default run.
"""

from __future__ import annotations

import contextlib
import logging
import re
import signal
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeface.geometry import Box
from edgeface.results import Appearance
from edgeface.watch import Daemon
from edgeface.intake_camera import MAX_KEPT, Recorder
from helpers import FIXTURES, Child, Classifier, as_an_ordinary_user, fill, restore_read_only, tmpfs_disk, wait_until

FPS = 30
SEGMENT_FRAMES = 18  # 0.6 s per person: with five places, a place comes back after 2.4 s, past the tracker's 2 s gap
SEGMENTS = 14  # 8.4 s of video: each try at a locked log holds the daemon up for 2 s, and the slow runs wait one out
SHORT_SEGMENTS = 7  # 4.2 s: the full disk needs two appearances to end after the first is logged, with room to spare
PLACES = 5

Seen = tuple[str, bool, int, str]  # an appearance as the journal and the log show it (confidence as "0.93")


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The door's video of SEGMENTS segments."""
    return door_video(tmp_path_factory.mktemp("camera") / "door.avi", SEGMENTS)


@pytest.fixture(scope="module")
def short_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The door's video of SHORT_SEGMENTS segments."""
    return door_video(tmp_path_factory.mktemp("camera") / "door.avi", SHORT_SEGMENTS)


def door_video(path: Path, segments: int) -> Path:
    """Writes an MJPG .avi of `segments` segments at `path`: the astronaut's face, then its mirror image ("another
    person"), each segment in the next of PLACES places on a grey 500x140 frame, so that no two segments in a row
    overlap."""
    face = cv2.resize(cv2.imread(str(FIXTURES / "astronaut.jpg"))[0:220, 120:300], (90, 110))
    people = (face, np.ascontiguousarray(face[:, ::-1]))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (100 * PLACES, 140))
    assert writer.isOpened()
    for segment in range(segments):
        frame = np.full((140, 100 * PLACES, 3), 128, np.uint8)
        left = 10 + 100 * (segment % PLACES)
        frame[15:125, left : left + 90] = people[segment % 2]
        for _ in range(SEGMENT_FRAMES):
            writer.write(frame)
    writer.release()
    return path


def start(
    tmp_path: Path,
    classifier: Classifier,
    video: Path,
    db: Path,
    *flags: str,
    preexec: Callable[[], None] | None = None,
) -> Child:
    """`edgeface watch --camera VIDEO` logging to `db`, ready; the Haar detector instead of the model's `none`."""
    args = ["watch", "--camera", str(video), "--model", str(classifier.tflite_file), "--detector", "haar",
            "--fps", str(FPS), "--db", str(db), *flags]  # fmt: skip
    return Child(tmp_path, *args, preexec=preexec).ready()


def finished(daemon: Child) -> str:
    """Waits for the daemon to reach the end of the video; its stderr, after checking that it exited with 0."""
    code, stderr = daemon.finish()
    assert code == 0 and "Traceback" not in stderr, stderr
    return stderr


def journal(stderr: str, video: Path) -> Counter[Seen]:
    """The appearances the daemon said in its journal as they ended."""
    pattern = re.compile(rf"camera:{re.escape(str(video))}: (unknown ~)?(.+) (\d+\.\d\d), (\d+) frames over ")
    found = (pattern.search(line) for line in stderr.splitlines())
    return Counter((m[2], bool(m[1]), int(m[4]), m[3]) for m in found if m)


def recorded(db: Path) -> Counter[Seen]:
    """The appearances in the log at `db` (read-only: a log that is not there stays so)."""
    if not db.exists():
        return Counter()
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as connection:
        rows = connection.execute("SELECT label, unknown, frames, confidence FROM appearances").fetchall()
    return Counter((label, bool(unknown), frames, f"{confidence:.2f}") for label, unknown, frames, confidence in rows)


def final_counts(stderr: str) -> tuple[int, int]:
    """(frames classified, appearances recorded) from the daemon's last status line."""
    [line] = [line for line in stderr.splitlines() if "stopping: " in line]
    found = re.search(r"(\d+) frames classified, \d+ skipped, (\d+) appearances", line)
    return int(found[1]), int(found[2])


def lines(stderr: str, text: str) -> int:
    """How many lines of `stderr` contain `text`."""
    return sum(text in line for line in stderr.splitlines())


def more_appearances_end(daemon: Child, video: Path, count: int) -> None:
    """Waits until `count` more appearances have ended (said in the journal) from now on."""
    already = sum(journal(daemon.stderr(), video).values())
    wait_until(lambda: sum(journal(daemon.stderr(), video).values()) >= already + count)


@pytest.mark.slow  # the same fault under the folder daemon is in test_faults' default run
def test_a_log_locked_by_another_writer_is_waited_out_and_the_appearances_meanwhile_recorded(
    classifier: Classifier, tmp_path: Path, video: Path
):
    db = tmp_path / "log.db"
    daemon = start(tmp_path, classifier, video, db)
    wait_until(lambda: recorded(db))
    with contextlib.closing(sqlite3.connect(db, isolation_level=None)) as writer:
        writer.execute("BEGIN IMMEDIATE")  # another process's write lock, held past the daemon's patience
        wait_until(lambda: "is failing: database is locked" in daemon.stderr())
        more_appearances_end(daemon, video, 2)
        writer.execute("ROLLBACK")
    stderr = finished(daemon)
    seen = journal(stderr, video)
    # Each try at the locked log waits 2 s in SQLite, and the tracker may end or miss a segment across that wait,
    # so the count is the daemon's own, not SEGMENTS.
    assert recorded(db) == seen and final_counts(stderr)[1] == sum(seen.values()), stderr
    assert lines(stderr, "is failing") == 1 and lines(stderr, "works again") == 1, stderr
    assert "still fails" not in stderr


@pytest.mark.slow  # the same fault under the folder daemon is in test_faults' default run
def test_a_read_only_log_restored_under_the_daemon_keeps_the_appearances_until_it_can_be_written(
    classifier: Classifier, tmp_path: Path, video: Path
):
    db = tmp_path / "log.db"
    daemon = start(tmp_path, classifier, video, db, preexec=as_an_ordinary_user)
    wait_until(lambda: recorded(db))
    daemon.signal(signal.SIGSTOP)  # so that what the replaced log holds is known exactly
    before = recorded(db)
    restore_read_only(db)
    daemon.signal(signal.SIGCONT)
    wait_until(lambda: "is failing: attempt to write a readonly database (read-only here: log.db" in daemon.stderr())
    more_appearances_end(daemon, video, 2)
    daemon.signal(signal.SIGSTOP)  # the fault ends at once, for the log and the -wal and -shm SQLite gave its mode
    for path in tmp_path.glob("log.db*"):
        path.chmod(0o644)
    daemon.signal(signal.SIGCONT)
    stderr = finished(daemon)
    seen, after = journal(stderr, video), recorded(db)
    assert sum(seen.values()) == SEGMENTS and final_counts(stderr)[1] == SEGMENTS, stderr
    again = after + before - seen  # in both logs: committed to the old one just before it was replaced
    assert seen - before <= after and sum(again.values()) <= 1, (seen, before, after)
    failing = [line for line in stderr.splitlines() if "is failing" in line]
    assert len(failing) == 2 and "was deleted or replaced" in failing[0] and "readonly" in failing[1], stderr
    assert lines(stderr, "works again") == 1 and "still fails" not in stderr


@pytest.fixture()
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MB disk: room for the per-frame rows of the whole video."""
    yield from tmpfs_disk(tmp_path, "16m")


def test_a_full_disk_keeps_the_appearances_and_counts_the_frame_rows_it_could_not_log(
    classifier: Classifier, tmp_path: Path, small_disk: Path, short_video: Path
):
    db, video = small_disk / "log.db", short_video
    daemon = start(tmp_path, classifier, video, db, "--per-frame")
    wait_until(lambda: recorded(db))
    filler = fill(small_disk)
    wait_until(lambda: "is failing: database or disk is full" in daemon.stderr())
    more_appearances_end(daemon, video, 2)
    filler.unlink()  # the fault ends
    stderr = finished(daemon)
    seen = journal(stderr, video)
    assert sum(seen.values()) == SHORT_SEGMENTS and recorded(db) == seen, stderr
    frames, appearances = final_counts(stderr)
    assert appearances == SHORT_SEGMENTS
    [back] = [line for line in stderr.splitlines() if "works again" in line]
    dropped = int(re.search(r"; (\d+) per-frame rows were not logged", back)[1])
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as connection:
        rows = connection.execute("SELECT count(*) FROM inputs").fetchone()[0]
    assert dropped > 0 and rows + dropped == frames, (rows, dropped, frames)
    assert lines(stderr, "is failing") == 1 and "still fails" not in stderr


@pytest.mark.slow  # the same fault under the folder daemon is in test_faults' default run
def test_a_log_deleted_under_the_camera_is_started_anew_with_every_appearance_since(
    classifier: Classifier, tmp_path: Path, video: Path
):
    """Appearances recorded before the deletion go with the old log; every later one must be in the new log."""
    db = tmp_path / "log.db"
    daemon = start(tmp_path, classifier, video, db)
    wait_until(lambda: recorded(db))
    daemon.signal(signal.SIGSTOP)  # so that what the deleted log holds is known exactly
    deleted = recorded(db)
    for path in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
        path.unlink()
    daemon.signal(signal.SIGCONT)
    wait_until(lambda: "was deleted or replaced while in use" in daemon.stderr())
    stderr = finished(daemon)
    seen, after = journal(stderr, video), recorded(db)
    assert sum(seen.values()) == SEGMENTS and final_counts(stderr)[1] == SEGMENTS, stderr
    again = after + deleted - seen  # in both logs: committed to the old one just before it was deleted
    assert seen - deleted <= after and sum(again.values()) <= 1, (seen, deleted, after)
    assert "did not exist: started a new, empty one there" in stderr
    assert lines(stderr, "is failing") == 1 and lines(stderr, "works again") == 1, stderr


@pytest.fixture()
def in_process(
    classifier: Classifier, tmp_path: Path, short_video: Path, caplog: pytest.LogCaptureFixture
) -> Iterator[Daemon]:
    """A daemon built in this process (its log at tmp_path/log.db, not run), with edgeface's lines captured."""
    with caplog.at_level(logging.INFO, logger="edgeface"):
        daemon = Daemon(None, {"model": str(classifier.tflite_file), "db": str(tmp_path / "log.db"),
                               "camera.source": str(short_video)})  # fmt: skip
        yield daemon
        daemon.log.close()


def appearances(count: int) -> list[Appearance]:
    """`count` appearances that ended one after another; the nth was seen in n frames, which tells them apart."""
    return [
        Appearance(number, 10.0 * number, 10.0 * number + 1, number, "face", 0.9, False, Box(0, 0, 9, 9),
                   {"face": number}, 0)  # fmt: skip
        for number in range(1, count + 1)
    ]


def said(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    """The captured edgeface messages that contain `text`."""
    return [record.getMessage() for record in caplog.records if text in record.getMessage()]


def test_the_latest_appearances_wait_in_memory_and_the_older_ones_are_counted_as_lost(
    in_process: Daemon, caplog: pytest.LogCaptureFixture
):
    """More appearances end during a fault than memory keeps."""
    daemon = in_process
    recorder = Recorder(daemon, "camera:test")
    daemon.log.db.unlink()  # the fault: the next write goes to a deleted file, and is noticed
    for appearance in appearances(MAX_KEPT + 5):
        recorder.add([appearance])
    assert daemon.log.fault is not None and len(recorder.kept) == MAX_KEPT and recorder.lost == 5
    recorder.close([])  # the end of the watch tries the log once more, at once
    with contextlib.closing(sqlite3.connect(daemon.log.db)) as connection:
        frames = [frames for (frames,) in connection.execute("SELECT frames FROM appearances ORDER BY id")]
    assert frames == list(range(6, MAX_KEPT + 6))  # the newest, in order
    assert daemon.counts.appearances == MAX_KEPT
    [back] = said(caplog, "works again")
    assert f"recording the {MAX_KEPT} appearances" in back and "5 older ones did not fit in memory" in back
    assert not said(caplog, "still fails")


def test_what_the_log_cannot_take_by_the_end_of_the_watch_is_said_to_be_lost(
    in_process: Daemon, caplog: pytest.LogCaptureFixture
):
    daemon = in_process
    recorder = Recorder(daemon, "camera:test")
    first, last = appearances(2)
    daemon.log.db.unlink()
    daemon.log.db.mkdir()  # where the log was, a folder: it cannot be opened again
    recorder.add([first])
    recorder.close([last])
    assert daemon.log.fault is not None and daemon.counts.appearances == 0
    [lost] = said(caplog, "still fails")
    assert "2 appearances that ended while it failed are lost" in lost
    assert not said(caplog, "works again")


def test_a_face_in_view_is_named_in_a_few_of_its_frames_and_logged_as_when_named_in_all(
    classifier: Classifier, tmp_path: Path, short_video: Path
):
    """Each person stays 18 frames in one place: named in 3, then again 0.5 s after (camera.recheck), the frames
    between only moving the track. The log is the same as with every face named in every frame."""
    daemons = {recheck: start(tmp_path, classifier, short_video, tmp_path / f"log-{recheck}.db", "--recheck", recheck)
               for recheck in ("0", "0.5")}  # fmt: skip
    named = {}
    for recheck, daemon in daemons.items():
        [line] = [line for line in finished(daemon).splitlines() if "stopping: " in line]
        named[recheck] = [int(n) for n in re.search(r"(\d+) faces named, (\d+) followed unnamed", line).groups()]
    assert recorded(tmp_path / "log-0.db") == recorded(tmp_path / "log-0.5.db")
    every, some = named["0"], named["0.5"]
    assert every[1] == 0 and sum(some) == every[0] and some[0] <= every[0] / 3, named
