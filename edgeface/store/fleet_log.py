"""The hub's side of the log: events from many boxes, in the rows a box's own log has, each event kept once.

An event becomes the row its box wrote (an input with its faces, or an appearance) with `device` set, so `edgeface
log` reads a hub's file as it reads a box's. Its id goes into `received` in the same transaction, and an id already
there makes the event a copy (QoS 1 delivers at least once): skipped, whether the copy comes in the same batch or
days later, and whether or not its rows were forgotten since.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from edgeface.hub_events import FleetEvent
from edgeface.store.result_log import ResultLog, _insert_faces, _now, _with_typed_errors


@dataclass(frozen=True)
class Kept:
    """What one batch did: events stored, and copies of events stored before."""

    new: int
    copies: int


@_with_typed_errors
class FleetLog(ResultLog):
    """A log that `edgeface hub` writes. Open it `durable`: the hub tells the broker it has an event once `keep`
    returns, and a power cut must not take back what it said."""

    def keep(self, events: Sequence[FleetEvent]) -> Kept:
        """Stores the events whose id is new, all in one transaction (the time of its start is their
        `received_at`); returns how many were new and how many were copies."""
        received_at, new = _now(), 0
        with self._transaction() as db:
            models = _models(db, {event.model_sha256: event.device for event in reversed(events)}, received_at)
            for event in events:
                taken = db.execute("INSERT INTO received (event_id, device, time, received_at) VALUES (?, ?, ?, ?) "
                                   "ON CONFLICT DO NOTHING",
                                   (event.event_id, event.device, event.time, received_at))  # fmt: skip
                if not taken.rowcount:
                    continue
                new += 1
                if event.image is not None:
                    _input(db, event, models[event.model_sha256])
                else:
                    _sighting(db, event, models[event.model_sha256])
        return Kept(new, len(events) - new)

    def received_count(self) -> int:
        """How many distinct events the hub has taken in, ever (forgotten rows included)."""
        return self._db.execute("SELECT count(*) FROM received").fetchone()[0]


def _models(db: sqlite3.Connection, devices: dict[str, str], first_used: str) -> dict[str, int]:
    """The model id of each sha256 in `devices`, adding a model first met here under the path `device:NAME` of the
    first box that used it (the hub never has the file, nor its labels)."""
    db.executemany("INSERT INTO models (sha256, path, labels, first_used) VALUES (?, ?, '[]', ?) "
                   "ON CONFLICT (sha256) DO NOTHING",
                   [(sha256, f"device:{device}", first_used) for sha256, device in devices.items()])  # fmt: skip
    return {sha256: db.execute("SELECT id FROM models WHERE sha256 = ?", (sha256,)).fetchone()[0] for sha256 in devices}


def _input(db: sqlite3.Connection, event: FleetEvent, model_id: int) -> None:
    """A file's outcome, replacing an older outcome of the same input of the same box, as the box's own log does; an
    outcome older than the one kept (a copy delivered out of order) is not kept."""
    result, synced = event.image, None if event.clock_synced is None else int(event.clock_synced)
    db.execute("DELETE FROM inputs WHERE path = ? AND ifnull(sha256, '') = ifnull(?, '') AND ifnull(device, '') = ? "
               "AND processed_at <= ?", (result.path, result.sha256, event.device, event.time))  # fmt: skip
    cursor = db.execute(
        "INSERT INTO inputs (source, path, sha256, status, error, model_id, processed_at, clock_synced, device) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        (event.source, result.path, result.sha256, str(result.status), result.error, model_id, event.time, synced,
         event.device),
    )  # fmt: skip
    if cursor.rowcount:
        _insert_faces(db, cursor.lastrowid, result.faces)


def _sighting(db: sqlite3.Connection, event: FleetEvent, model_id: int) -> None:
    """A camera appearance; the box's frame votes stay on the box (`votes` is empty)."""
    seen, synced = event.sighting, None if event.clock_synced is None else int(event.clock_synced)
    db.execute(
        "INSERT INTO appearances (source, model_id, first_seen, last_seen, seconds, frames, label, confidence, "
        "unknown, x, y, w, h, votes, clock_synced, device, rejected, quality, rejected_frames) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (event.source, model_id, seen.first_seen, seen.last_seen, seen.seconds, seen.frames, seen.label,
         seen.confidence, int(seen.unknown), *seen.box.as_list(), json.dumps({}), synced, event.device, seen.rejected,
         seen.quality, seen.rejected_frames),
    )  # fmt: skip
