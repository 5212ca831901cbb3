"""Sinks see what the log committed, after the commit, in order, with the rows' ids; a failing sink stops nothing."""

from __future__ import annotations

import io
import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from helpers import Classifier
from edgeface.clock import now
from edgeface.geometry import Box
from edgeface.results import Appearance, ImageResult
from edgeface.scan import scan
from edgeface.sinks import Committed, JsonLinesSink, Recording
from edgeface.store import LogGone, ResultLog
from edgeface.workers import PipelineRecipe


class Collected:
    """A sink that keeps each batch, and what the log held when the batch came."""

    def __init__(self, log: ResultLog) -> None:
        self.log = log
        self.batches: list[Committed] = []
        self.logged_then: list[int] = []

    def committed(self, batch: Committed) -> None:
        self.batches.append(batch)
        with sqlite3.connect(self.log.path) as other:  # another connection sees only what is committed
            self.logged_then.append(other.execute("SELECT count(*) FROM inputs").fetchone()[0])


class Broken:
    def committed(self, batch: Committed) -> None:
        raise OSError("the disk of this sink is gone")


def test_a_scan_feeds_every_sink_after_each_commit(classifier: Classifier, tmp_path: Path, caplog: pytest.LogCaptureFixture):
    recipe = PipelineRecipe(model=str(classifier.tflite_file))
    photos = [str(path) for path, _ in classifier.held_out[:6]]
    with ResultLog(tmp_path / "log.db") as log:
        collected = Collected(log)
        summary = scan(photos, recipe.build(), recipe, Recording(log, [Broken(), collected]))
    with sqlite3.connect(tmp_path / "log.db") as reader:
        rows = dict(reader.execute("SELECT id, path FROM inputs"))
    assert summary.images == 6 and not summary.failed
    images = [pair for batch in collected.batches for pair in batch.images]
    assert [result.path for _, result in images] == photos  # in order, each once
    assert {input_id: result.path for input_id, result in images} == rows  # with the log's own ids
    assert collected.logged_then[-1] == 6 and all(batch.model_sha256 == recipe.build().recognizer.sha256
                                                  for batch in collected.batches)  # fmt: skip
    assert "Broken could not take a result: the disk of this sink is gone" in caplog.text


def test_a_commit_to_a_log_replaced_meanwhile_reaches_no_sink(tmp_path: Path):
    with ResultLog(tmp_path / "log.db") as log:
        collected = Collected(log)
        recording = Recording(log, [collected])
        model = recording.use_model("ab" * 32, "m.tflite", ("a",))
        shutil.move(log.path, tmp_path / "moved.db")
        with pytest.raises(LogGone, match="deleted or replaced"):
            recording.images([ImageResult.unreadable("x.png", "cannot read")], "scan", model)
    assert collected.batches == []


def test_json_lines_name_every_image_and_appearance_with_wall_clock_times(tmp_path: Path):
    stream = io.StringIO()
    with ResultLog(tmp_path / "log.db") as log:
        recording = Recording(log, [JsonLinesSink(stream)])
        model = recording.use_model("cd" * 32, "m.tflite", ("alice",))
        recording.images([ImageResult.unreadable("x.png", "cannot read")], "folder:/in", model)
        moment = now()
        seen = Appearance(1, moment.monotonic - 3, moment.monotonic - 1, 5, "alice", 0.9, False, Box(1, 2, 3, 4), {"alice": 5}, 0)
        recording.appearances([seen], "camera:0", model, moment)
    image, appearance = (json.loads(line) for line in stream.getvalue().splitlines())
    assert image["event"] == "image" and image["status"] == "error" and image["error"] == "cannot read"
    assert image["source"] == "folder:/in" and image["model_sha256"] == "cd" * 32 and image["input_id"] == 1
    assert appearance["event"] == "appearance" and appearance["label"] == "alice" and appearance["frames"] == 5
    assert appearance["first_seen"] == moment.wall_at(moment.monotonic - 3) < appearance["last_seen"] <= moment.wall
