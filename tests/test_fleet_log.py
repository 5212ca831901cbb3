"""The hub's half of the log without a broker (the device tier, no paho-mqtt): events as boxes make them are kept
once each, in the rows a box's own log has, with their box's name; hostile payloads are refused with a reason;
`edgeface log --device` reads a hub's file."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from edgeface.clock import Moment
from edgeface.events import appearance_event, image_event
from edgeface.geometry import Box
from edgeface.hub_events import MAX_EVENT_BYTES, BadEvent, check_sender, parse_event
from edgeface.results import QUALITY, Appearance, FaceResult, ImageResult
from edgeface.store import FleetLog, Kept, LogQuery, ResultLog
from helpers import UNDO_GATE_COLUMNS, run_in_process

MODEL = "cc" * 32
MOMENT = Moment("2026-03-01T10:00:00.000+00:00", 500.0, "boot", True)
ALICE = ImageResult("/in/a.png", "aa" * 32, 10, 32, 32, (FaceResult(Box(1, 2, 30, 40), "alice", 0.9, False, 0.3),))
BROKEN = ImageResult("/in/b.png", None, None, None, None, (), "not an image")
SEEN = Appearance(1, 497.5, 499.0, 12, "bob", 0.8, False, Box(5, 6, 70, 80), {"bob": 12}, 0)


def event(device: str, result: ImageResult = ALICE, moment: Moment = MOMENT) -> bytes:
    return image_event(device, "folder:/in", MODEL, moment, result).encode()


def table(db: Path, sql: str) -> list[tuple]:
    with contextlib.closing(sqlite3.connect(db)) as connection:
        return connection.execute(sql).fetchall()


def test_the_events_boxes_make_are_read_back_whole():
    image = parse_event(event("door1"))
    assert (image.device, image.source, image.time, image.clock_synced, image.model_sha256) == (
        "door1", "folder:/in", MOMENT.wall, True, MODEL)  # fmt: skip
    assert image.image.faces == ALICE.faces and image.image.sha256 == ALICE.sha256 and image.sighting is None
    seen = parse_event(appearance_event("cam1", "camera:0", MODEL, MOMENT, SEEN).encode()).sighting
    assert (seen.label, seen.frames, seen.box, seen.seconds) == ("bob", 12, Box(5, 6, 70, 80), 1.5)
    assert seen.last_seen == "2026-03-01T09:59:59.000+00:00"
    assert parse_event(event("door1", BROKEN)).image.error == "not an image"


GOOD = json.loads(image_event("door1", "folder:/in", MODEL, MOMENT, ALICE))
FACE = GOOD["faces"][0]
NOT_A_FACE = FaceResult.rejected_by_gate(Box(40, 2, 20, 20), 0.0831)
GATED = ImageResult("/in/g.png", "dd" * 32, 10, 64, 64, (replace(ALICE.faces[0], quality=0.012), NOT_A_FACE))
REJECTED = json.loads(image_event("door1", "folder:/in", MODEL, MOMENT, GATED))["faces"][1]
NOBODY = Appearance(2, 497.0, 498.0, 4, "", 0.0, False, Box(9, 9, 30, 30), {}, 0, 4, QUALITY, 0.07)
SIGHTING = json.loads(appearance_event("cam1", "camera:0", MODEL, MOMENT, NOBODY))


@pytest.mark.parametrize(
    "payload",
    [
        b"x" * (MAX_EVENT_BYTES + 1),
        b"not json",
        b"\xff\xfe",
        b"[" * 100_000 + b"]" * 100_000,
        b"[1, 2]",
        json.dumps({**GOOD, "event_id": "1; DROP TABLE inputs"}).encode(),
        json.dumps({**GOOD, "device": ""}).encode(),
        json.dumps({**GOOD, "device": 7}).encode(),
        json.dumps({**GOOD, "kind": "other"}).encode(),
        json.dumps({**GOOD, "time": "yesterday"}).encode(),
        json.dumps({**GOOD, "time": "2026-03-01T10:00:00"}).encode(),  # no offset
        json.dumps({**GOOD, "model_sha256": "A" * 64}).encode(),
        json.dumps({**GOOD, "status": "error"}).encode(),  # an error without its text
        json.dumps({**GOOD, "faces": {"box": 1}}).encode(),
        json.dumps({**GOOD, "faces": [{**FACE, "box": [1, 2, 3]}]}).encode(),
        json.dumps({**GOOD, "faces": [{**FACE, "box": [1, 2, 10**30, 4]}]}).encode(),  # beyond SQLite's integers
        json.dumps({**GOOD, "faces": [{**FACE, "box": [1, 2, -3, 4]}]}).encode(),
        json.dumps({**GOOD, "faces": [{**FACE, "confidence": True}]}).encode(),
        json.dumps({**GOOD, "faces": [{**FACE, "confidence": float("nan")}]}).encode(),
        json.dumps({**GOOD, "faces": [{**FACE, "distance": 10**400}]}).encode(),
        json.dumps({**GOOD, "faces": [{**FACE, "label": "\ud800"}]}).encode(),  # a lone surrogate: no UTF-8
        json.dumps({**GOOD, "path": "/in/a\0b"}).encode(),
        json.dumps({**GOOD, "path": "p" * 5000}).encode(),
        json.dumps({**GOOD, "faces": [{**REJECTED, "rejected": "blurry"}]}).encode(),
        json.dumps({**GOOD, "faces": [{**REJECTED, "label": "mallory"}]}).encode(),  # a rejected face is never named
        json.dumps({**GOOD, "faces": [{**REJECTED, "unknown": True}]}).encode(),
        json.dumps({**GOOD, "faces": [{**REJECTED, "quality": 1.5}]}).encode(),
        json.dumps({**GOOD, "faces": [{**REJECTED, "quality": float("nan")}]}).encode(),
        json.dumps({**GOOD, "faces": [{**REJECTED, "quality": "0.1"}]}).encode(),
        json.dumps({**SIGHTING, "rejected_frames": 5}).encode(),  # more than its frames
        json.dumps({**SIGHTING, "rejected_frames": 3}).encode(),  # rejected, yet a frame passed
        json.dumps({**SIGHTING, "rejected_frames": True}).encode(),
        json.dumps({**SIGHTING, "label": "bob"}).encode(),
    ],
    ids=lambda payload: payload[:40].decode("utf-8", "replace"),
)
def test_a_hostile_payload_is_refused_with_a_reason(payload: bytes):
    with pytest.raises(BadEvent) as refused:
        parse_event(payload)
    assert str(refused.value)


def test_the_gates_rejections_reach_the_hubs_log_unnamed(tmp_path: Path):
    db = tmp_path / "fleet.db"
    image = parse_event(event("door1", GATED))
    assert image.image.faces == GATED.faces
    seen = parse_event(json.dumps(SIGHTING).encode())
    assert (seen.sighting.rejected, seen.sighting.quality, seen.sighting.rejected_frames) == (QUALITY, 0.07, 4)
    with FleetLog(db) as log:
        log.keep([image, seen, parse_event(event("door2"))])  # and a box before the gate: no such fields
        rejected = log.recent(LogQuery(rejected=True))
        appearances = log.appearances(LogQuery(rejected=True))
    assert [(row["label"], row["rejected"], row["quality"]) for row in rejected] == [("", QUALITY, 0.0831)]
    assert [(row["label"], row["rejected"], row["quality"], row["rejected_frames"]) for row in appearances] == [
        ("", QUALITY, 0.07, 4)]  # fmt: skip
    assert table(db, "SELECT label, rejected, quality FROM faces ORDER BY id") == [
        ("alice", None, 0.012), ("", QUALITY, 0.0831), ("alice", None, None)]  # fmt: skip


def test_fields_a_newer_box_adds_are_ignored():
    assert parse_event(json.dumps({**GOOD, "firmware": {"v": 2}}).encode()).device == "door1"


def test_each_event_is_kept_once_with_its_box_and_two_boxes_same_path_do_not_collide(tmp_path: Path):
    db = tmp_path / "fleet.db"
    door1, door2 = parse_event(event("door1")), parse_event(event("door2"))
    seen = parse_event(appearance_event("cam1", "camera:0", MODEL, MOMENT, SEEN).encode())
    with FleetLog(db) as log:
        assert log.keep([door1, door2, door1, seen]) == Kept(3, 1)  # a copy in the same batch
        assert log.keep([seen, door2]) == Kept(0, 2)  # and copies later
        assert log.received_count() == 3
    assert table(db, "SELECT device, path, status FROM inputs ORDER BY device") == [
        ("door1", "/in/a.png", "done"), ("door2", "/in/a.png", "done")]  # fmt: skip
    assert table(db, "SELECT label, confidence, unknown, distance, x, y, w, h FROM faces") == [
        ("alice", 0.9, 0, 0.3, 1, 2, 30, 40)] * 2  # fmt: skip
    assert table(db, "SELECT device, label, frames, seconds FROM appearances") == [("cam1", "bob", 12, 1.5)]
    assert table(db, "SELECT sha256, path, labels FROM models") == [(MODEL, "device:door1", "[]")]


def test_a_newer_outcome_of_an_input_replaces_the_older_and_not_the_reverse(tmp_path: Path):
    later = Moment("2026-03-01T11:00:00.000+00:00", 600.0, "boot", True)
    newer = ImageResult(ALICE.path, ALICE.sha256, 10, 32, 32, (), "failed later")
    with FleetLog(tmp_path / "fleet.db") as log:
        log.keep([parse_event(event("door1", newer, later))])
        log.keep([parse_event(event("door1"))])  # the older, delivered late
    assert table(tmp_path / "fleet.db", "SELECT error, processed_at FROM inputs") == [("failed later", later.wall)]


def test_forgotten_rows_do_not_come_back_with_a_late_copy(tmp_path: Path):
    db, alice = tmp_path / "fleet.db", parse_event(event("door1"))
    with FleetLog(db) as log:
        log.keep([alice])
        log.forget("alice", None)
        assert log.keep([alice]) == Kept(0, 1)
    assert table(db, "SELECT count(*) FROM inputs") == [(0,)]


def test_log_shows_and_filters_the_box_of_each_row_and_a_box_log_stays_as_it_was(tmp_path: Path):
    db = tmp_path / "fleet.db"
    with FleetLog(db) as log:
        log.keep([parse_event(event(device, ALICE)) for device in ("door1", "door2")])
        log.keep([parse_event(appearance_event("cam1", "camera:0", MODEL, MOMENT, SEEN).encode())])
        assert [row["device"] for row in log.recent(LogQuery(device="door2"))] == ["door2"]
    shown = run_in_process("log", "--db", str(db), "--device", "door1", "--json")
    assert shown.returncode == 0, shown.stderr
    assert [(row["device"], row["label"]) for row in map(json.loads, shown.stdout.splitlines())] == [("door1", "alice")]
    summary = run_in_process("log", "--db", str(db), "--summary", "--csv").stdout.splitlines()
    assert summary[0] == "day,device,label,unknown,rejected,faces" and len(summary) == 3
    seen = run_in_process("log", "--db", str(db), "--appearances", "--device", "cam1").stdout
    assert "device" in seen.splitlines()[0] and "cam1" in seen and "bob" in seen
    with ResultLog(tmp_path / "box.db") as box:
        box.record(ALICE, "scan", box.register_model(MODEL, "/m.tflite", ("alice",)))
    assert "device" not in run_in_process("log", "--db", str(tmp_path / "box.db"), "--csv").stdout.splitlines()[0]


def test_a_box_log_of_the_previous_schema_takes_the_fleet_columns_keeping_its_rows(tmp_path: Path):
    db = tmp_path / "box.db"
    with ResultLog(db) as box:
        box.record(ALICE, "scan", box.register_model(MODEL, "/m.tflite", ("alice",)))
    with contextlib.closing(sqlite3.connect(db)) as connection:  # back to version 9, as an older edgeface left it
        connection.executescript(UNDO_GATE_COLUMNS + "DROP TABLE received; DROP INDEX inputs_device; DROP INDEX appearances_device; "
                                 "DROP INDEX inputs_identity; ALTER TABLE inputs DROP COLUMN device; "
                                 "ALTER TABLE appearances DROP COLUMN device; "
                                 "CREATE UNIQUE INDEX inputs_identity ON inputs (path, ifnull(sha256, '')); "
                                 "PRAGMA user_version = 9;")  # fmt: skip
    with FleetLog(db) as log:
        assert log.outcome_of(ALICE.path, ALICE.sha256) == "done"
        log.keep([parse_event(event("door1"))])
    assert table(db, "SELECT device, path FROM inputs ORDER BY id") == [(None, "/in/a.png"), ("door1", "/in/a.png")]



@pytest.mark.parametrize("topic", ["edgeface/door2/events", "events", "door1", "edgeface/door1x/events"])
def test_an_event_is_taken_only_from_the_topic_of_its_device(topic: str):
    door1 = parse_event(event("door1"))
    assert check_sender(door1, "edgeface/door1/events") is door1 and check_sender(door1, "site/door1/events") is door1
    with pytest.raises(BadEvent, match="not the one its topic names"):
        check_sender(door1, topic)
