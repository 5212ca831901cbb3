"""What `edgeface scan` shows a person: the streamed table, annotated copies, and the progress line
on a real pseudo-terminal (and nothing when stderr is not a terminal)."""

from __future__ import annotations

import io
import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

from edgeface.annotate import KNOWN_COLOUR, UNKNOWN_COLOUR, annotation_path
from edgeface.geometry import Box
from edgeface.results import FaceResult, ImageResult
from edgeface.progress import Progress
from edgeface.scanview import ScanTable
from helpers import REPO, Classifier, astronaut, run_edgeface


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_table_lines_up_every_kind_of_row():
    results = [
        ImageResult("/x/a.jpg", "0" * 64, 10, 100, 100, (
            FaceResult(Box(1, 2, 30, 30), "alice", 0.931, False),
            FaceResult(Box(1000, 2000, 300, 300), "bob", 0.412, True),
        ), None),  # fmt: skip
        ImageResult("/x/b.jpg", "1" * 64, 10, 100, 100, (), None),
        ImageResult.unreadable("/x/c.jpg", "not a decodable image"),
        ImageResult("/x/new\nline.jpg", "2" * 64, 10, 100, 100, (), None),
    ]
    out = io.StringIO()
    table = ScanTable(["alice", "bob"], out)
    for result in results:
        table.row(result)
    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["LABEL", "CONF", "BOX", "IMAGE"]
    assert lines[1].split() == ["alice", "0.931", "1,2", "30x30", "/x/a.jpg"]
    assert lines[2].split() == ["unknown", "~bob", "0.412", "1000,2000", "300x300", "/x/a.jpg"]
    assert lines[3].split() == ["(no", "face)", "/x/b.jpg"]
    assert lines[4].split()[0] == "(error)" and lines[4].endswith("/x/c.jpg: not a decodable image")
    assert lines[5].endswith("/x/new\\nline.jpg") and len(lines) == 6  # one path, one line
    image_column = lines[0].index("IMAGE")
    assert all(line.index("/x/") == image_column for line in lines[1:])


def test_progress_redraws_on_a_terminal_and_is_silent_elsewhere():
    terminal = Terminal()
    progress = Progress("scanning", 3, terminal)
    for _ in range(3):
        progress.step()
    progress.clear()
    progress.done()
    shown = terminal.getvalue()
    assert shown.startswith("\r\033[Kscanning: 1/3") and "scanning: 3/3" in shown and shown.endswith("\r\033[K")
    pipe = io.StringIO()
    quiet = Progress("scanning", 3, pipe)
    quiet.step(3)
    quiet.done()
    assert pipe.getvalue() == ""


def photos(folder: Path) -> Path:
    """A face photo, a photo without a face, and a greyscale PGM of the face in a sub-folder."""
    (folder / "sub").mkdir(parents=True)
    face = astronaut()
    cv2.imwrite(str(folder / "astronaut.jpg"), face)
    cv2.imwrite(str(folder / "blank.png"), np.full((200, 300, 3), 128, np.uint8))
    cv2.imwrite(str(folder / "sub" / "grey.pgm"), cv2.cvtColor(face, cv2.COLOR_BGR2GRAY))
    return folder


def test_annotate_writes_copies_with_boxes_at_mirrored_paths(classifier: Classifier, tmp_path: Path):
    folder = photos(tmp_path / "photos")
    out = tmp_path / "annotated"
    run = run_edgeface(
        "scan", str(folder), "-r", "--model", str(classifier.tflite_file), "--db", str(tmp_path / "l.db"),
        "--workers", "1", "--detector", "haar", "--annotate", str(out), "--json",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    copies = {path.relative_to(out) for path in out.rglob("*") if path.is_file()}
    expected = {annotation_path(out, str(folder / name)).relative_to(out) for name in ("astronaut.jpg", "blank.png")}
    assert {*expected, annotation_path(out, str(folder / "sub" / "grey.pgm")).relative_to(out)} == copies
    assert annotation_path(out, str(folder / "sub" / "grey.pgm")).suffix == ".png"  # OpenCV writes PGM only grey
    blank = cv2.imread(str(annotation_path(out, str(folder / "blank.png"))))
    assert np.array_equal(blank, cv2.imread(str(folder / "blank.png")))  # nothing drawn without a face
    drawn = cv2.imread(str(annotation_path(out, str(folder / "astronaut.jpg"))))
    original = cv2.imread(str(folder / "astronaut.jpg"))
    changed = np.argwhere(np.abs(drawn.astype(int) - original.astype(int)).sum(axis=2) > 60)
    (top, left), (bottom, right) = changed.min(axis=0), changed.max(axis=0)
    assert 120 < left < 200 and 20 < top < 90 and 240 < right < 300 and 150 < bottom < 200  # the face, and only it
    results = {Path(result["path"]).name: result for result in map(json.loads, run.stdout.splitlines())}
    [(x, y, w, h)] = [face["box"] for face in results["astronaut.jpg"]["faces"]]
    edge = drawn[y + h, x + w // 2].astype(int)  # the box's bottom edge; JPEG shifts colours a little
    assert min(np.abs(edge - colour).max() for colour in (KNOWN_COLOUR, UNKNOWN_COLOUR)) < 40


def test_annotate_relative_and_outside_paths_stay_apart(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert annotation_path(Path("out"), str(tmp_path / "a" / "x.jpg")) == Path("out/a/x.jpg")
    assert annotation_path(Path("out"), "/elsewhere/a/x.PGM") == Path("out/elsewhere/a/x.png")


def test_a_copy_that_cannot_be_written_is_a_reported_problem(classifier: Classifier, tmp_path: Path):
    folder = photos(tmp_path / "photos")
    blocked = tmp_path / "annotated"
    blocked.write_text("a file where the folder should be")
    run = run_edgeface(
        "scan", str(folder / "astronaut.jpg"), "--model", str(classifier.tflite_file), "--db", str(tmp_path / "l.db"),
        "--workers", "1",
        "--annotate", str(blocked),
    )  # fmt: skip
    assert run.returncode == 1
    assert "problem: cannot write" in run.stderr
    assert "1 images, 1 faces, 0 failed" in run.stderr  # the scan itself went through and was logged


def test_scan_shows_progress_on_a_terminal_only(classifier: Classifier, tmp_path: Path):
    folder = photos(tmp_path / "photos")
    args = [sys.executable, "-m", "edgeface", "scan", str(folder), "-r", "--model", str(classifier.tflite_file),
            "--workers", "1"]  # fmt: skip
    controller, terminal = pty.openpty()
    with_terminal = subprocess.Popen([*args, "--db", str(tmp_path / "b.db")], stdout=subprocess.PIPE, stderr=terminal,
                                     cwd=REPO)  # fmt: skip
    piped = subprocess.run([*args, "--db", str(tmp_path / "a.db")], capture_output=True, text=True, cwd=REPO)
    assert piped.returncode == 0 and "\r" not in piped.stderr and "scanning:" not in piped.stderr
    table = with_terminal.communicate(timeout=120)[0]  # the two scans ran at the same time
    os.close(terminal)
    shown = b""
    while chunk := _read_available(controller):
        shown += chunk
    os.close(controller)
    assert with_terminal.returncode == 0
    assert b"scanning: 3/3" in shown
    assert piped.stdout == table.decode()  # the table does not depend on the terminal


def _read_available(descriptor: int) -> bytes:
    try:
        return os.read(descriptor, 65536)
    except OSError:  # the terminal's other end is closed and drained
        return b""
