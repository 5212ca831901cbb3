"""`edgeface watch` on a real folder: real inotify events, a real notify socket, real signals and a
real SQLite log. The daemon runs as a separate process, as systemd would run it."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeface.crops import CropStore
from edgeface.geometry import Box
from edgeface.store import ResultLog
from helpers import Child, Classifier, run_edgeface, run_edgeface_together, wait_until

INOTIFY_QUEUE = Path("/proc/sys/fs/inotify/max_queued_events")


def watch(tmp_path: Path, args: list[str], env: dict | None = None) -> Child:
    """`edgeface watch ARGS`, started (not yet ready)."""
    return Child(tmp_path, "watch", *args, env=env)


@pytest.fixture()
def watching(classifier: Classifier, tmp_path: Path) -> Iterator[tuple[Path, list[str]]]:
    """An inbox folder and the watch arguments for it, with moves to done/ and failed/."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    args = [str(inbox), "--model", str(classifier.tflite_file), "--db", str(tmp_path / "log.db"),
            "--move-done", str(tmp_path / "done"), "--move-failed", str(tmp_path / "failed")]  # fmt: skip
    yield inbox, args


def outcomes(db: Path) -> dict[str, str]:
    """path -> status of every input in the log; asserts that no path has two outcomes."""
    with sqlite3.connect(db) as connection:
        rows = connection.execute("SELECT path, status FROM inputs").fetchall()
    paths = [path for path, _ in rows]
    assert len(paths) == len(set(paths)), "an input was logged twice"
    return dict(rows)


def pending(db: Path) -> int:
    with sqlite3.connect(db) as connection:
        return connection.execute("SELECT count(*) FROM pending").fetchone()[0]


def settled(*paths: Path) -> None:
    """Gives `paths` a time an hour ago, as files that waited while the daemon was stopped (or the disk was away)
    have: the listing takes them at once, not after the second look that files too new to take get."""
    earlier = time.time() - 3600
    for path in paths:
        os.utime(path, (earlier, earlier))


def one_more(inbox: Path, db: Path, photo: bytes) -> None:
    """Writes one more photo and waits for its outcome: the daemon takes files in the order they become ready, so
    by then it has had every chance to take again a file that was ready before it."""
    (inbox / "one-more.png").write_bytes(photo)
    wait_until(lambda: str(inbox / "one-more.png") in outcomes(db))


def test_backlog_new_files_and_moves(watching, photos: list[bytes], tmp_path: Path):
    inbox, args = watching
    # Arrived while the daemon was stopped, a moment before its start: too new for the listing at the start to take
    # (it may still be being written), it is taken at the second look. The one test that waits for that look.
    (inbox / "before.png").write_bytes(photos[0])
    daemon = watch(tmp_path, args).ready()
    (inbox / "after.png").write_bytes(photos[1])
    (inbox / "broken.jpg").write_bytes(b"not a picture")
    (inbox / "notes.txt").write_text("not an image name: left alone")
    (inbox / "x'); DROP TABLE inputs; --.png").write_bytes(photos[3])  # names are data, never SQL
    staged = tmp_path / "staging.png"
    staged.write_bytes(photos[2])
    staged.rename(inbox / "moved-in.png")  # the usual write-then-rename
    wait_until(lambda: len(outcomes(tmp_path / "log.db")) == 5)
    code, stderr = daemon.stop()
    assert code == 0, stderr
    assert outcomes(tmp_path / "log.db") == {
        str(inbox / "before.png"): "done", str(inbox / "after.png"): "done",
        str(inbox / "moved-in.png"): "done", str(inbox / "broken.jpg"): "error",
        str(inbox / "x'); DROP TABLE inputs; --.png"): "done",
    }  # fmt: skip
    assert sorted(p.name for p in (tmp_path / "done").iterdir()) == [
        "after.png", "before.png", "moved-in.png", "x'); DROP TABLE inputs; --.png"]  # fmt: skip
    assert [p.name for p in (tmp_path / "failed").iterdir()] == ["broken.jpg"]
    assert [p.name for p in inbox.iterdir()] == ["notes.txt"]
    assert "broken.jpg: not a decodable image" in stderr


def noise_png(side: int = 300) -> bytes:
    """A PNG of random pixels (about 270 kB at 300×300): cut anywhere, it is a truncated PNG, never a picture."""
    return cv2.imencode(".png", np.random.default_rng(0).integers(0, 255, (side, side, 3), dtype=np.uint8))[1].tobytes()


def logged_inputs(db: Path) -> list[tuple[str, int, int]]:
    """(status, size, width) of every input in the log; none while the log does not exist."""
    if not db.exists():
        return []
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as connection:
        return connection.execute("SELECT status, size, width FROM inputs").fetchall()


def write_slowly(path: Path, content: bytes, pieces: int, pause: float, db: Path) -> None:
    """Writes `content` to `path` in `pieces`, flushed one by one with `pause` seconds between them, and fails as
    soon as the log at `db` shows an outcome while the file is still being written."""
    step = -(-len(content) // pieces)
    with open(path, "wb") as file:
        for start in range(0, len(content), step):
            file.write(content[start : start + step])
            file.flush()
            time.sleep(pause)
            assert logged_inputs(db) == [], "the daemon took the file while it was still being written"


def test_a_file_written_slowly_is_read_once_and_whole(watching, photos: list[bytes], tmp_path: Path):
    inbox, args = watching
    db = tmp_path / "log.db"
    daemon = watch(tmp_path, args[:-4]).ready()  # no moves: the file stays, and a second look would log it again
    photo = noise_png()
    write_slowly(inbox / "slow.png", photo, pieces=5, pause=0.3, db=db)
    wait_until(lambda: len(logged_inputs(db)) == 1)
    one_more(inbox, db, photos[0])  # a second outcome of slow.png would be in the log before this one's
    code, stderr = daemon.stop()
    assert code == 0, stderr
    inputs = logged_inputs(db)
    assert inputs[0] == ("done", len(photo), 300) and len(inputs) == 2  # slow.png once, whole; then one-more.png


def test_notify_messages_watchdog_and_sigterm(watching, photos: list[bytes], tmp_path: Path):
    inbox, args = watching
    daemon = watch(tmp_path, args, env={"WATCHDOG_USEC": "400000"})
    ready = daemon.ready().notifications.seen[-1]
    assert "STATUS=watching" in ready
    daemon.notifications.wait_for("WATCHDOG=1", timeout=10)
    (inbox / "one.png").write_bytes(photos[0])
    daemon.notifications.wait_for("STATUS=1 done", timeout=30)
    started = time.monotonic()
    code, _ = daemon.stop()
    assert code == 0 and time.monotonic() - started < 10
    assert "STOPPING=1" in daemon.notifications.seen[-1]


def test_sigterm_leaves_the_rest_pending_and_a_restart_finishes_them(watching, photos: list[bytes], tmp_path: Path):
    inbox, args = watching
    count = 100  # enough that SIGTERM arrives long before the last one (the daemon takes about 200 a second)
    for i in range(count):
        (inbox / f"{i:04d}.png").write_bytes(photos[i % len(photos)])
    settled(*inbox.iterdir())  # they waited while the daemon was stopped: the start takes them at once
    daemon = watch(tmp_path, args).ready()
    wait_until(lambda: len(outcomes(tmp_path / "log.db")) >= 1)
    code, _ = daemon.stop()
    assert code == 0
    logged, waiting = len(outcomes(tmp_path / "log.db")), pending(tmp_path / "log.db")
    assert logged + waiting == count and waiting > 0
    assert len(list((tmp_path / "done").iterdir())) == logged  # moved exactly the files with an outcome
    daemon = watch(tmp_path, args).ready()
    wait_until(lambda: len(outcomes(tmp_path / "log.db")) == count)
    code, stderr = daemon.stop()
    assert code == 0, stderr
    assert pending(tmp_path / "log.db") == 0
    assert len(list((tmp_path / "done").iterdir())) == count and not list(inbox.iterdir())


def test_sighup_reloads_and_keeps_the_old_model_when_the_new_one_fails(classifier: Classifier, tmp_path: Path, photos):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    config = tmp_path / "edgeface.toml"
    config.write_text(f'model = "{classifier.tflite_file}"\ndb = "{tmp_path / "log.db"}"\n[folder]\npath = "{inbox}"\n')
    daemon = watch(tmp_path, ["--config", str(config)]).ready()
    config.write_text(config.read_text().replace(str(classifier.tflite_file), str(tmp_path / "missing.tflite")))
    daemon.process.send_signal(signal.SIGHUP)
    daemon.notifications.wait_for("RELOADING=1", timeout=10)
    daemon.notifications.wait_for("READY=1", timeout=30)
    (inbox / "still-working.png").write_bytes(photos[0])
    wait_until(lambda: outcomes(tmp_path / "log.db").get(str(inbox / "still-working.png")) == "done")
    code, stderr = daemon.stop()
    assert code == 0
    assert "reload failed, keeping the running config and model" in stderr and "missing.tflite" in stderr


def test_an_event_overflow_is_followed_by_a_rescan(watching, photos: list[bytes], tmp_path: Path):
    if not os.access(INOTIFY_QUEUE, os.W_OK):
        pytest.skip(f"cannot lower {INOTIFY_QUEUE} here (needs root)")
    inbox, args = watching
    original = INOTIFY_QUEUE.read_text()
    INOTIFY_QUEUE.write_text("16")  # read when the daemon creates its inotify instance
    try:
        daemon = watch(tmp_path, args[:-4]).ready()
    finally:
        INOTIFY_QUEUE.write_text(original)
    daemon.process.send_signal(signal.SIGSTOP)  # events pile up in the kernel and overflow
    for i in range(50):  # about 200 events for a queue of 16
        (inbox / f"{i:03d}.png").write_bytes(photos[i % len(photos)])
    settled(*inbox.iterdir())  # the listing after the overflow takes them at once, without a second look
    daemon.process.send_signal(signal.SIGCONT)
    wait_until(lambda: len(outcomes(tmp_path / "log.db")) == 50)
    code, stderr = daemon.stop()
    assert code == 0 and "overflow" in stderr.lower()


def test_poll_mode_takes_files_once_they_stop_changing(watching, photos: list[bytes], tmp_path: Path):
    """Network shares send no events: the daemon lists the folder every --poll-interval and takes a file only once
    its size and time held still between two looks. A file that grows for about four intervals is not taken while
    it grows (it would be logged as a truncated PNG), then is taken once, whole."""
    inbox, args = watching
    db, interval = tmp_path / "log.db", 0.3
    daemon = watch(tmp_path, [*args[:-4], "--poll", "--poll-interval", str(interval)]).ready()  # no moves
    photo = noise_png()
    write_slowly(inbox / "growing.png", photo, pieces=12, pause=interval / 3, db=db)
    wait_until(lambda: len(logged_inputs(db)) == 1)
    one_more(inbox, db, photos[0])  # two more looks at the unchanged file (one-more.png is taken at its second)
    code, stderr = daemon.stop()
    assert code == 0, stderr
    inputs = logged_inputs(db)
    assert inputs[0] == ("done", len(photo), 300) and len(inputs) == 2  # growing.png once, whole; then one-more.png


def test_bad_config_names_the_key_and_the_reason(classifier: Classifier, tmp_path: Path):
    negative, misspelt = tmp_path / "negative.toml", tmp_path / "misspelt.toml"
    negative.write_text(f'model = "{classifier.tflite_file}"\n[folder]\npath = "{tmp_path}"\npoll_interval = -1\n')
    misspelt.write_text(f'model = "{classifier.tflite_file}"\n[folder]\npth = "{tmp_path}"\n')
    nowhere = ["watch", str(tmp_path / "nowhere"), "--model", str(classifier.tflite_file)]
    runs = run_edgeface_together(["watch", "--config", str(negative)], ["watch", "--config", str(misspelt)], nowhere)
    assert runs[0].returncode == 2 and "folder.poll_interval must be above 0 and at most 3600 seconds" in runs[0].stderr
    assert runs[1].returncode == 2 and "unknown key 'folder.pth'" in runs[1].stderr
    assert runs[2].returncode == 2 and "does not exist" in runs[2].stderr


def face_video(path: Path, face: bytes, frames: int = 15, fps: float = 15.0) -> Path:
    """A real MJPEG .avi in which every frame is the same face photo (the model's detector is `none`,
    so each frame is one face): one second, paced as a camera, about 10 frames at --fps 10."""
    picture = cv2.resize(cv2.imdecode(np.frombuffer(face, np.uint8), cv2.IMREAD_COLOR), (96, 96))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (96, 96))
    for _ in range(frames):
        writer.write(picture)
    writer.release()
    return path


def test_a_camera_gives_one_appearance_for_a_face_that_stays(
    classifier: Classifier, photos: list[bytes], tmp_path: Path
):
    video = face_video(tmp_path / "door.avi", photos[0])
    db = tmp_path / "log.db"
    daemon = watch(tmp_path, ["--camera", str(video), "--model", str(classifier.tflite_file), "--db", str(db),
                               "--fps", "10", "--per-frame"])  # fmt: skip
    daemon.ready()
    code, stderr = daemon.finish()  # a video file ends the watch
    assert code == 0, stderr
    with sqlite3.connect(db) as connection:
        appearances = connection.execute("SELECT source, frames, label, seconds FROM appearances").fetchall()
        frames = connection.execute("SELECT count(*) FROM inputs WHERE source = ?", (f"camera:{video}",)).fetchone()[0]
    assert len(appearances) == 1
    source, seen, label, seconds = appearances[0]
    assert source == f"camera:{video}" and label == "face" and seen == frames >= 5 and 0 < seconds < 5
    shown = run_edgeface("log", "--db", str(db), "--appearances", "--json")
    assert shown.returncode == 0 and json.loads(shown.stdout)["frames"] == seen


def test_a_file_name_that_is_not_utf8_is_one_error_and_the_daemon_goes_on(watching, photos, tmp_path: Path):
    inbox, args = watching
    daemon = watch(tmp_path, args).ready()
    with open(os.path.join(os.fsencode(inbox), b"caf\xe9.png"), "wb") as file:  # Latin-1, not UTF-8
        file.write(photos[0])
    (inbox / "after.png").write_bytes(photos[1])
    wait_until(lambda: len(outcomes(tmp_path / "log.db")) == 2)
    code, _ = daemon.stop()
    assert code == 0
    logged = outcomes(tmp_path / "log.db")
    assert logged[str(inbox / "after.png")] == "done" and logged[f"{inbox}/caf\\xe9.png"] == "error"
    assert os.listdir(os.fsencode(tmp_path / "failed")) == [b"caf\xe9.png"]  # moved under its real name
    scan = run_edgeface("scan", str(tmp_path / "failed"), "--model", str(args[2]), "--db", str(tmp_path / "s.db"))
    assert scan.returncode == 0, scan.stderr  # scan logs it, with the odd byte escaped


def test_a_watched_folder_that_goes_away_and_comes_back_is_watched_again(watching, photos, tmp_path: Path):
    inbox, args = watching
    daemon = watch(tmp_path, args).ready()
    (inbox / "first.png").write_bytes(photos[0])
    wait_until(lambda: len(outcomes(tmp_path / "log.db")) == 1)
    inbox.rename(tmp_path / "unmounted")  # as if the disk were pulled out
    wait_until(lambda: "is gone or was replaced" in daemon.stderr())
    remounted = tmp_path / "remounted"
    remounted.mkdir()
    (remounted / "second.png").write_bytes(photos[1])
    settled(remounted / "second.png")  # on the disk while it was away
    remounted.rename(inbox)  # another folder at the same path: the old watches are gone
    wait_until(lambda: "is back" in daemon.stderr())
    (inbox / "third.png").write_bytes(photos[2])  # an event of the new watch
    wait_until(lambda: len(outcomes(tmp_path / "log.db")) == 3)
    code, stderr = daemon.stop()
    assert code == 0 and "is gone or was replaced" in stderr and "is back" in stderr
    logged = outcomes(tmp_path / "log.db")
    assert logged[str(inbox / "second.png")] == logged[str(inbox / "third.png")] == "done"


def test_a_file_that_keeps_killing_the_daemon_is_given_up_after_three_tries(watching, photos, tmp_path: Path):
    """The log as three crashes on the same file would leave it: the file still pending, its tries
    counted. The next start records it as an error without decoding it, and goes on."""
    inbox, args = watching
    ResultLog(tmp_path / "log.db").close()  # the log as the daemon makes it
    (inbox / "deadly.png").write_bytes(photos[0])
    (inbox / "fine.png").write_bytes(photos[1])
    with sqlite3.connect(tmp_path / "log.db") as connection:
        connection.executemany(
            "INSERT INTO pending (source, path, queued_at, attempts) VALUES (?, ?, 'then', ?)",
            [(f"folder:{inbox}", str(inbox / "deadly.png"), 3), (f"folder:{inbox}", str(inbox / "fine.png"), 1)],
        )
    daemon = watch(tmp_path, args).ready()
    wait_until(lambda: len(outcomes(tmp_path / "log.db")) == 2)
    code, stderr = daemon.stop()
    assert code == 0, stderr
    assert outcomes(tmp_path / "log.db") == {str(inbox / "deadly.png"): "error", str(inbox / "fine.png"): "done"}
    assert "stopped 3 times while this file was in hand" in stderr
    assert [p.name for p in (tmp_path / "failed").iterdir()] == ["deadly.png"]


def saving_crops(classifier: Classifier, tmp_path: Path, folder_keys: str = "") -> tuple[Path, Path, Path]:
    """inbox/, state/ (for the log and its crops) and a config watching inbox/ with save_crops = true."""
    inbox, state = tmp_path / "inbox", tmp_path / "state"
    inbox.mkdir()
    config = tmp_path / "edgeface.toml"
    config.write_text(f'model = "{classifier.tflite_file}"\ndb = "{state / "log.db"}"\nsave_crops = true\n'
                      f'[folder]\npath = "{inbox}"\n{folder_keys}')  # fmt: skip
    return inbox, state, config


def test_crops_are_saved_only_when_asked_and_forgotten_with_their_rows(classifier: Classifier, photos, tmp_path: Path):
    inbox, state, config = saving_crops(classifier, tmp_path)
    model = str(classifier.tflite_file)
    daemons = [watch(tmp_path, ["--config", str(config)]),  # two at once: neither moves the files
               watch(tmp_path, [str(inbox), "--model", model, "--db", str(tmp_path / "p.db")])]  # fmt: skip
    for daemon in daemons:
        daemon.ready()
    for name, face in (("a.png", photos[0]), ("b.png", photos[1])):
        (inbox / name).write_bytes(face)
    wait_until(lambda: len(outcomes(state / "log.db")) == len(outcomes(tmp_path / "p.db")) == 2)
    assert [daemon.stop()[0] for daemon in daemons] == [0, 0]
    assert not (tmp_path / "crops").exists()  # nothing saved unless asked
    with sqlite3.connect(state / "log.db") as connection:
        crops = [Path(c) for (c,) in connection.execute("SELECT crop FROM faces ORDER BY id")]
        labels = [label for (label,) in connection.execute("SELECT label FROM faces ORDER BY id")]
    assert len(crops) == 2 and all(crop.is_file() and crop.parent.parent == state / "crops" for crop in crops)
    assert cv2.imread(str(crops[0])).shape[:2] == cv2.imdecode(np.frombuffer(photos[0], np.uint8), 1).shape[:2]
    forget = run_edgeface("forget", "--label", labels[0], "--guesses", "--db", str(state / "log.db"))
    assert forget.returncode == 0
    assert not crops[0].exists() and crops[1].exists() == (labels[1] != labels[0])


def test_saved_crops_expire_by_day_folder(tmp_path: Path):
    store = CropStore(tmp_path / "crops", days=7)
    picture = np.zeros((50, 50, 3), np.uint8)
    old = store.save(picture, [Box(0, 0, 10, 10)], "2026-11-01T10:00:00.000+00:00", "1")
    new = store.save(picture, [Box(0, 0, 10, 10)], "2026-11-28T10:00:00.000+00:00", "2")
    first_kept = store.first_kept("2026-11-29T08:00:00.000+00:00")
    assert old[0] < first_kept <= new[0]
    assert store.expire(first_kept) == 1 and not Path(old[0]).exists() and Path(new[0]).exists()


def json_events(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines()]


def test_watch_json_prints_each_file_once_the_log_has_it(watching, photos: list[bytes], tmp_path: Path):
    """`--json` is the sink seam at work on a folder: one event per input, with the log's own row id."""
    inbox, args = watching
    daemon = watch(tmp_path, [*args, "--json"]).ready()
    for number, content in enumerate([photos[0], photos[1], b"not an image"]):
        (inbox / f"{number}.png").write_bytes(content)
    wait_until(lambda: len(outcomes(tmp_path / "log.db")) == 3 and not list(inbox.iterdir()))
    code, stderr = daemon.stop()
    events = json_events(daemon.out.read_text())
    with sqlite3.connect(tmp_path / "log.db") as connection:
        rows = {row[0]: row[1:] for row in connection.execute("SELECT id, path, status FROM inputs")}
    assert {event["input_id"]: (event["path"], event["status"]) for event in events} == rows, stderr
    assert {event["event"] for event in events} == {"image"} and {event["source"] for event in events} == {f"folder:{inbox}"}


def test_watch_json_prints_each_appearance_of_a_camera(classifier: Classifier, photos: list[bytes], tmp_path: Path):
    video = face_video(tmp_path / "door.avi", photos[0], frames=6)  # 0.4 s: about 4 frames, first and last apart
    daemon = watch(tmp_path, ["--camera", str(video), "--model", str(classifier.tflite_file),
                              "--db", str(tmp_path / "log.db"), "--fps", "10", "--json"])  # fmt: skip
    daemon.ready()
    code, stderr = daemon.finish()  # a video file ends the watch
    [appearance] = json_events(daemon.out.read_text())
    assert appearance["event"] == "appearance" and appearance["label"] == "face", stderr
    assert appearance["source"] == f"camera:{video}" and appearance["first_seen"] < appearance["last_seen"]


def test_sighup_applies_save_crops_and_names_the_keys_that_need_a_restart(classifier: Classifier, tmp_path: Path, photos):
    inbox, state, config = saving_crops(classifier, tmp_path, "poll_interval = 5.0\n")
    daemon = watch(tmp_path, ["--config", str(config)]).ready()
    (inbox / "before.png").write_bytes(photos[0])
    wait_until(lambda: str(inbox / "before.png") in outcomes(state / "log.db"))
    config.write_text(config.read_text().replace("save_crops = true", "save_crops = false").replace("5.0", "7.0"))
    daemon.process.send_signal(signal.SIGHUP)
    daemon.notifications.wait_for("RELOADING=1", timeout=10)
    daemon.notifications.wait_for("READY=1", timeout=30)
    (inbox / "after.png").write_bytes(photos[1])
    wait_until(lambda: str(inbox / "after.png") in outcomes(state / "log.db"))
    code, stderr = daemon.stop()
    assert code == 0, stderr
    with sqlite3.connect(state / "log.db") as connection:
        crops = dict(connection.execute("SELECT i.path, f.crop FROM inputs i JOIN faces f ON f.input_id = i.id"))
    assert crops[str(inbox / "before.png")] and crops[str(inbox / "after.png")] is None  # save_crops = false applied
    assert "folder.poll_interval changed in the config: restart the service to apply it" in stderr


def test_a_sighup_during_the_start_is_a_reload_not_a_kill(classifier: Classifier, tmp_path: Path):
    """systemd may send it (`systemctl reload` right after a start) while the runtime is still loading."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    daemon = watch(tmp_path, [str(inbox), "--model", str(classifier.tflite_file), "--db", str(tmp_path / "log.db")])
    wait_until(lambda: _catches_sighup(daemon.process.pid), timeout=30)
    daemon.process.send_signal(signal.SIGHUP)  # while the runtime loads: its default action would kill
    daemon.notifications.drain()
    assert not any("READY=1" in message for message in daemon.notifications.seen)
    daemon.ready()
    daemon.notifications.wait_for("RELOADING=1", timeout=10)
    code, stderr = daemon.stop()
    assert code == 0 and "reloaded the config" in stderr, stderr


def _catches_sighup(pid: int) -> bool:
    """Whether the process has a SIGHUP handler (bit 0 of SigCgt in /proc/PID/status: signal 1 is caught)."""
    status = Path(f"/proc/{pid}/status").read_text()
    caught = int(next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:")), 16)
    return bool(caught & 1)


def test_files_written_under_a_temporary_name_are_logged_once_under_their_final_name(watching, photos, tmp_path: Path):
    """Write-then-rename, as uploaders do: under a hidden name (`.tmp-N.png`, never an input), and under a name
    that looks like any other and is renamed as soon as it is closed (renamed away: no input either)."""
    inbox, args = watching
    daemon = watch(tmp_path, args).ready()
    daemon.signal(signal.SIGSTOP)  # every event waits in the kernel, so each name is renamed before it is read
    for number in range(5):
        (inbox / f".tmp-{number}.png").write_bytes(photos[number])
        (inbox / f".tmp-{number}.png").rename(inbox / f"hidden-{number}.png")
        (inbox / f"upload-{number}.png").write_bytes(photos[5 + number])
        (inbox / f"upload-{number}.png").rename(inbox / f"final-{number}.png")
    daemon.signal(signal.SIGCONT)
    names = [f"{kind}-{number}.png" for kind in ("hidden", "final") for number in range(5)]
    wait_until(lambda: sorted(Path(path).name for path in outcomes(tmp_path / "log.db")) == sorted(names)
               and not list(inbox.iterdir()) and pending(tmp_path / "log.db") == 0)  # fmt: skip
    code, stderr = daemon.stop()
    assert code == 0, stderr
    assert set(outcomes(tmp_path / "log.db").values()) == {"done"} and sorted(p.name for p in (tmp_path / "done").iterdir()) == sorted(names)


def test_two_daemons_on_one_log_each_take_only_their_own_folders_files(classifier: Classifier, photos, tmp_path: Path):
    """As edgeface@door and edgeface@yard may: each had taken the other's pending rows and crashed moving them."""
    db, daemons, inboxes = tmp_path / "log.db", [], []
    for name in ("door", "yard"):
        inbox = tmp_path / name / "inbox"
        inbox.mkdir(parents=True)
        inboxes.append(inbox)
        daemons.append(watch(tmp_path / name, [str(inbox), "--model", str(classifier.tflite_file), "--db", str(db),
                                               "--move-done", str(tmp_path / name / "done")]))  # fmt: skip
    for daemon in daemons:  # started together, ready one after the other
        daemon.ready()
    for number in range(12):
        for inbox in inboxes:
            (inbox / f"{number:02d}.png").write_bytes(photos[number])
    wait_until(lambda: len(outcomes(db)) == 24 and not any(list(inbox.iterdir()) for inbox in inboxes))
    for daemon in daemons:
        code, stderr = daemon.stop()
        assert code == 0 and "Traceback" not in stderr and "cannot move" not in stderr, stderr
    with sqlite3.connect(db) as connection:
        sources = dict(connection.execute("SELECT path, source FROM inputs"))
    assert all(source == f"folder:{Path(path).parent}" for path, source in sources.items()), sources
    assert all(len(list((inbox.parent / "done").iterdir())) == 12 for inbox in inboxes)


def test_moves_never_follow_a_link_and_never_point_back_at_the_watched_folder(
    classifier: Classifier, photos, tmp_path: Path
):
    inbox, done, outside = tmp_path / "inbox", tmp_path / "done", tmp_path / "outside"
    for folder in (inbox / "cam1", done, outside):
        folder.mkdir(parents=True)
    model = ["--model", str(classifier.tflite_file), "--db", str(tmp_path / "log.db")]
    os.symlink(outside, done / "cam1")  # a link named like the sub-folder a file will be moved into
    daemon = watch(tmp_path, [str(inbox), *model, "--recursive", "--move-done", str(done)])
    # the watched folder itself, and a folder that holds it, refused while the daemon starts
    for refused in run_edgeface_together(*(["watch", str(inbox), *model, "--move-done", str(target)]
                                          for target in (inbox, tmp_path))):  # fmt: skip
        assert refused.returncode == 2 and "is the watched folder or holds it" in refused.stderr, refused.stderr
    daemon.ready()
    (inbox / "cam1" / "a.png").write_bytes(photos[0])
    wait_until(lambda: outcomes(tmp_path / "log.db").get(str(inbox / "cam1" / "a.png")) == "done")
    code, stderr = daemon.stop()
    assert code == 0 and "is a link; a move does not follow links" in stderr, stderr
    assert list(outside.iterdir()) == [] and (inbox / "cam1" / "a.png").exists()


def test_saved_crops_in_a_recursively_watched_folder_are_not_taken_as_photos(classifier: Classifier, photos, tmp_path: Path):
    inbox = tmp_path / "inbox"
    (inbox / "state").mkdir(parents=True)
    db = inbox / "state" / "log.db"  # the log, and so the crops beside it, inside the folder watched
    daemon = watch(tmp_path, [str(inbox), "--model", str(classifier.tflite_file), "--db", str(db), "--recursive",
                              "--save-crops"]).ready()  # fmt: skip
    (inbox / "a.png").write_bytes(photos[0])
    wait_until(lambda: str(inbox / "a.png") in outcomes(db) and any((inbox / "state" / "crops").rglob("*.jpg")))
    (inbox / "b.png").write_bytes(photos[1])  # its event comes after the crop's: a crop taken would be logged first
    wait_until(lambda: str(inbox / "b.png") in outcomes(db))
    code, stderr = daemon.stop()
    assert code == 0, stderr
    assert sorted(outcomes(db)) == [str(inbox / "a.png"), str(inbox / "b.png")]
