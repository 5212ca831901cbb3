"""`edgeface demo`, the README's first command, runs end to end and leaves a real log behind.

The first run is a process of its own, as a user starts it: the one workstation test where train's and convert's
code loads TensorFlow itself, so that an import the pytest process happens to have made cannot hide a missing one.
The second runs in this process (`run_in_process`), where TensorFlow is loaded already."""

import sqlite3
from pathlib import Path

import pytest

from helpers import run_edgeface, run_in_process

pytestmark = pytest.mark.workstation


def test_demo_trains_converts_and_scans_into_a_log(tmp_path: Path):
    run = run_edgeface("demo", "--dir", str(tmp_path / "demo"), "--epochs", "2")  # the steps, not the accuracy
    assert run.returncode == 0, run.stderr
    for step in ("1/4", "2/4", "3/4", "4/4", "gate: ", "the gate rejects", "gate on astronaut.png: "):
        assert step in run.stdout
    astronaut_rows = [line.split() for line in run.stdout.splitlines() if line.endswith("astronaut.png")]
    # One face found: named, or rejected by the gate (2 epochs teach it little; the demo prints either honestly).
    assert len(astronaut_rows) == 1 and astronaut_rows[0][0] in ("face", "not-face", "rejected")
    with sqlite3.connect(tmp_path / "demo" / "edgeface.db") as db:
        assert db.execute("SELECT count(*) FROM inputs WHERE status = 'done'").fetchone()[0] == 4
        assert db.execute("SELECT count(*) FROM faces").fetchone()[0] >= 1
    again = run_in_process("demo", "--dir", str(tmp_path / "demo"), "--epochs", "1")  # the same folder, a second time
    assert again.returncode == 0, again.stderr
    assert [line for line in again.stdout.splitlines() if line.endswith("astronaut.png")], again.stdout  # shown again
