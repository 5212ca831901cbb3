"""The SQLite log: every input and every face, one file, standard-library `sqlite3` only.

All SQL lives here, and every error SQLite or the file system raises leaves as one of the store's
own types (see `errors`), so nothing else in edgeface imports `sqlite3`.
"""

from __future__ import annotations

import functools
import inspect
import json
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import TypeVar

import numpy as np

from edgeface.clock import Moment, log_time, now
from edgeface.fleet_enrolments import (
    SharedEnrolment,
    Tombstone,
    enrolment_message,
    enrolment_topic,
    tombstone_message,
    tombstone_topic,
)
from edgeface.gallery import Enrolments, Gallery, GalleryError, check_name
from edgeface.paths import file_identity
from edgeface.results import Appearance, FaceResult, ImageResult
from edgeface.store.errors import LogDamaged, as_log_error
from edgeface.store.query import LogQuery
from edgeface.store.schema import APPLICATION_ID, FIRST_TABLES, MIGRATIONS, SCHEMA_VERSION

WAL_RETRY_SECONDS = 0.01  # between tries to turn a new log to WAL while another program does
RETENTION_BATCH = 500  # rows deleted per transaction, so readers and writers wait only briefly

Method = TypeVar("Method", bound=Callable)


def _typed_errors(method: Method) -> Method:
    """`method` raising the store's own error types instead of SQLite's and the file system's."""

    @functools.wraps(method)
    def wrapper(self: ResultLog, *args: object, **kwargs: object) -> object:
        try:
            return method(self, *args, **kwargs)
        except (sqlite3.Error, OSError) as error:
            raise as_log_error(error, self.path) from error

    return wrapper  # type: ignore[return-value]


def _with_typed_errors(cls: type) -> type:
    """Applies `_typed_errors` to the constructor and every public method of `cls`, so that no method
    added later can forget it."""
    for name, member in list(vars(cls).items()):
        if inspect.isfunction(member) and (name == "__init__" or not name.startswith("_")):
            setattr(cls, name, _typed_errors(member))
    return cls


def _row_dict(cursor: sqlite3.Cursor, row: tuple) -> dict:
    return {column[0]: value for column, value in zip(cursor.description, row)}


def _statements(script: str) -> Iterator[str]:
    """The SQL statements of a migration script, one by one (`executescript` would commit the transaction that
    holds the write lock first)."""
    statement = ""
    for line in script.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            yield statement
            statement = ""
    if statement.strip():
        raise ValueError(f"a migration ends inside a statement: {statement!r}")


def _text(path: str) -> str:
    """A path as SQLite text: a name that is not UTF-8 (undecodable bytes, which Python keeps as
    surrogates) gets them as backslash escapes instead of failing to encode."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _now() -> str:
    return log_time(datetime.now(timezone.utc))


def _insert_faces(db: sqlite3.Connection, input_id: int, faces: Sequence[FaceResult]) -> None:
    """Adds the faces of input `input_id`, inside the caller's transaction."""
    db.executemany("INSERT INTO faces (input_id, x, y, w, h, label, confidence, unknown, distance, rejected, quality) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   [(input_id, *face.box.as_list(), face.label, face.confidence, face.unknown, face.distance,
                     face.rejected, face.quality) for face in faces])  # fmt: skip


def _queue(db: sqlite3.Connection, events: Sequence[str], moment: Moment) -> None:
    """Adds `events` to the outbox, inside the caller's transaction (the one of their log rows)."""
    db.executemany("INSERT INTO outbox (payload, queued_at) VALUES (?, ?)", [(event, moment.wall) for event in events])


def _queue_fleet(db: sqlite3.Connection, messages: Sequence[tuple[str, str]]) -> None:
    """Adds retained fleet messages, (topic under the fleet prefix, payload), inside the caller's transaction."""
    at = _now()
    db.executemany("INSERT INTO outbox (payload, queued_at, topic, retain) VALUES (?, ?, ?, 1)",
                   [(payload, at, topic) for topic, payload in messages])  # fmt: skip


@_with_typed_errors
class ResultLog:
    """An open log file. Use as a context manager, or call `close()`. Raises only `LogError`s.

    `durable`: every commit reaches the disk before it returns (`synchronous=FULL`), for callers
    that act on a commit, such as moving a file away once its outcome is logged: in WAL mode
    `NORMAL` survives a crash of the program but not a power cut. Several processes may share a
    file; a writer waits up to `busy_seconds` (BUSY_SECONDS) for another's transaction.
    """

    BUSY_SECONDS = 10

    def __init__(self, path: str | Path, durable: bool = False, busy_seconds: float = BUSY_SECONDS) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise LogDamaged(self.path, "it is a folder, not a log file")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, timeout=busy_seconds)
        try:
            self._refuse_another_programs_database()
            self._use_wal(busy_seconds)
            self._db.execute(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")
            self._db.execute("PRAGMA foreign_keys = ON")
            self._migrate()
            self._file = file_identity(self.path)  # the file exists now: its schema was just checked
        except BaseException:
            self._db.close()
            raise

    def __enter__(self) -> ResultLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()

    def replaced(self) -> bool:
        """Whether the file at `path` is no longer the one open here: deleted, replaced or out of reach.

        SQLite keeps writing to a deleted file, and its commits vanish when the connection closes;
        a long-running writer asks this before it acts on a commit, and opens the log again.
        """
        return file_identity(self.path) != self._file

    def check_writable(self) -> None:
        """Commits a write that changes nothing (the schema version, set again); raises when the log
        is locked by another writer, read-only, or on a disk too full to take the write."""
        with self._transaction() as db:
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION:d}")

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """Everything inside commits together or not at all.

        A failed COMMIT is rolled back too (SQLite has already done so after a full disk or an I/O
        error), so the connection is never left inside a transaction for the next caller.
        """
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise

    def _refuse_another_programs_database(self) -> None:
        """Raises LogDamaged, having changed nothing, unless the file is an edgeface log or a new, empty file. The
        three facts come from one snapshot: another program may be making the log's tables at this moment."""
        self._db.execute("BEGIN")
        try:
            application = self._db.execute("PRAGMA application_id").fetchone()[0]
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            tables = {name for (name,) in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            self._db.execute("COMMIT")
        ours = application == APPLICATION_ID or (application == 0 and version > 0 and FIRST_TABLES <= tables)
        if not ours and (tables or version or application):
            raise LogDamaged(self.path, "it is another program's SQLite database, not an edgeface log; left untouched")

    def _use_wal(self, busy_seconds: float) -> None:
        """Puts the file in WAL mode, which lets readers and one writer work at once. Turning a new file to WAL
        takes an exclusive lock, and SQLite answers "locked" at once, without its busy wait, to the other programs
        that open the file at that moment: they try again until `busy_seconds` have passed."""
        give_up_at = time.monotonic() + busy_seconds
        while True:
            try:
                self._db.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as error:
                if error.sqlite_errorname != "SQLITE_BUSY" or time.monotonic() >= give_up_at:
                    raise
                time.sleep(WAL_RETRY_SECONDS)

    def _migrate(self) -> None:
        """Brings the log to SCHEMA_VERSION. The version is read again under the write lock: two programs that
        open a new log at once (two daemons sharing it, say) would otherwise both make its tables. All steps go
        in one transaction, so a migration applies whole or not at all."""
        if self._schema_version() == SCHEMA_VERSION:
            return  # the usual case takes no lock, so a read-only log still opens
        with self._transaction() as db:
            version = self._schema_version()
            for target, script in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in _statements(script):
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {target:d}")

    def _schema_version(self) -> int:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise LogDamaged(self.path, f"it has schema {version}, from a newer edgeface; this one knows up to {SCHEMA_VERSION}")
        return version

    def register_model(self, sha256: str, path: str, labels: tuple[str, ...]) -> int:
        """The id of the model with this hash, adding it on first use."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO models (sha256, path, labels, first_used) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (sha256) DO NOTHING",
                (sha256, path, json.dumps(list(labels)), _now()),
            )
            return db.execute("SELECT id FROM models WHERE sha256 = ?", (sha256,)).fetchone()[0]

    def outcome_of(self, path: str, sha256: str) -> str | None:
        """The status ("done" or "error") this exact input (path and content) was logged with;
        "done" too for content that retention or `forget` deleted (wherever it is now); None when
        it was never logged."""
        row = self._db.execute(
            "SELECT status FROM inputs WHERE path = ? AND sha256 = ? UNION ALL "
            "SELECT 'done' FROM forgotten WHERE sha256 = ? LIMIT 1",
            (_text(path), sha256, sha256),
        ).fetchone()
        return row[0] if row else None

    def was_read(self, path: str) -> bool:
        """Whether some content at `path` was read and logged."""
        row = self._db.execute("SELECT 1 FROM inputs WHERE path = ? AND sha256 IS NOT NULL LIMIT 1", (_text(path),))
        return row.fetchone() is not None

    def unreadable_logged(self, path: str, error: str) -> bool:
        """Whether `path` is logged as unreadable with this very error: a file that cannot be read and stays where
        it is (no `move_failed`, or a move that failed) is one outcome, not a new one at every start."""
        row = self._db.execute("SELECT 1 FROM inputs WHERE path = ? AND sha256 IS NULL AND error = ? LIMIT 1",
                               (_text(path), error))  # fmt: skip
        return row.fetchone() is not None

    def note_not_moved(self, path: str, sha256: str | None, reason: str) -> None:
        """Records why the daemon could not move this input's file (it is left where it was)."""
        with self._transaction() as db:
            db.execute("UPDATE inputs SET not_moved = ? WHERE path = ? AND ifnull(sha256, '') = ifnull(?, '')",
                       (reason, _text(path), sha256))  # fmt: skip

    def left_in_place(self, path: str, sha256: str | None) -> bool:
        """Whether moving this input's file failed once already: later starts leave it be rather than fail
        again, and again."""
        row = self._db.execute(
            "SELECT 1 FROM inputs WHERE path = ? AND ifnull(sha256, '') = ifnull(?, '') AND not_moved IS NOT NULL",
            (_text(path), sha256),
        )
        return row.fetchone() is not None

    def add_pending(self, paths: list[str], source: str) -> None:
        """Notes inputs that are waiting for an outcome; a path already waiting is kept once."""
        with self._transaction() as db:
            db.executemany(
                "INSERT INTO pending (source, path, queued_at) VALUES (?, ?, ?) ON CONFLICT (path) DO NOTHING",
                [(source, path, _now()) for path in paths],
            )

    def next_pending(self, limit: int, source: str | None = None) -> list[str]:
        """The oldest waiting inputs' paths, in the order they arrived; only `source`'s when it is given (several
        daemons may share a log, each with its own folder, model and moves)."""
        rows = self._db.execute("SELECT path FROM pending WHERE ifnull(?, source) = source ORDER BY id LIMIT ?",
                                (source, limit))  # fmt: skip
        return [path for (path,) in rows.fetchall()]

    def count_attempt(self, path: str) -> int:
        """Notes, durably, that `path` is about to be tried once more; returns how many tries
        (this one included) it has had. A file that kills the process shows as a rising count."""
        with self._transaction() as db:
            db.execute("UPDATE pending SET attempts = attempts + 1 WHERE path = ?", (path,))
            row = db.execute("SELECT attempts FROM pending WHERE path = ?", (path,)).fetchone()
        return row[0] if row else 0

    def pending_count(self, source: str | None = None) -> int:
        """How many inputs wait for an outcome (only `source`'s when it is given)."""
        return self._db.execute("SELECT count(*) FROM pending WHERE ifnull(?, source) = source", (source,)).fetchone()[0]

    def drop_pending(self, paths: list[str]) -> None:
        """Stops waiting for inputs that need no new outcome (the same content is already logged)."""
        with self._transaction() as db:
            db.executemany("DELETE FROM pending WHERE path = ?", [(path,) for path in paths])

    def record(self, result: ImageResult, source: str, model_id: int) -> None:
        """Stores one outcome and its faces, replacing an earlier outcome of the same input."""
        self.record_batch([result], source, model_id)

    def record_batch(
        self, results: list[ImageResult], source: str, model_id: int, moment: Moment | None = None,
        events: Sequence[str] = (),
    ) -> list[int]:
        """Stores several outcomes in one transaction: all of them, or none after a crash; returns
        their input ids.

        An input waiting in `pending` stops waiting in the same transaction, so it ends with
        exactly one outcome whenever the program stops; `events` (JSON texts) join the outbox in it too.
        """
        moment = moment or now()
        synced = None if moment.synced is None else int(moment.synced)
        input_ids = []
        with self._transaction() as db:
            for result in results:
                path = _text(result.path)
                db.execute("DELETE FROM pending WHERE path = ?", (path,))
                db.execute(
                    "DELETE FROM inputs WHERE path = ? AND ifnull(sha256, '') = ifnull(?, '')",
                    (path, result.sha256),
                )
                cursor = db.execute(
                    "INSERT INTO inputs (source, path, sha256, size, width, height, status, error, model_id, "
                    "processed_at, monotonic, boot_id, clock_synced) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        source,
                        path,
                        result.sha256,
                        result.size,
                        result.width,
                        result.height,
                        result.status,
                        result.error,
                        model_id,
                        moment.wall,
                        moment.monotonic,
                        moment.boot_id,
                        synced,
                    ),
                )
                _insert_faces(db, cursor.lastrowid, result.faces)
                input_ids.append(cursor.lastrowid)
            _queue(db, events, moment)
        return input_ids

    def set_crops(self, input_id: int, crops: list[str]) -> None:
        """Records the saved crop file of each face of an input, in the order the faces were recorded."""
        with self._transaction() as db:
            face_ids = [i for (i,) in db.execute("SELECT id FROM faces WHERE input_id = ? ORDER BY id", (input_id,))]
            db.executemany("UPDATE faces SET crop = ? WHERE id = ?", list(zip(crops, face_ids)))

    def clear_crops_before(self, first_kept: str) -> None:
        """Forgets the crop files that sort before `first_kept` (crops live in day folders)."""
        with self._transaction() as db:
            db.execute("UPDATE faces SET crop = NULL WHERE crop < ?", (first_kept,))

    def record_appearances(
        self, appearances: list[Appearance], source: str, model_id: int, moment: Moment | None = None,
        events: Sequence[str] = (),
    ) -> None:
        """Stores finished appearances (one row each, however many frames they lasted), and `events` (JSON texts)
        in the outbox, in one transaction.

        Their times are the tracker's monotonic seconds; `moment` (now) turns them into wall-clock
        times, so a clock jump while a person was in view cannot give an appearance a negative length.
        """
        moment = moment or now()

        synced = None if moment.synced is None else int(moment.synced)
        with self._transaction() as db:
            db.executemany(
                "INSERT INTO appearances (source, model_id, first_seen, last_seen, seconds, frames, label, "
                "confidence, unknown, x, y, w, h, votes, boot_id, clock_synced, rejected, quality, rejected_frames) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        source, model_id, moment.wall_at(a.first_seen), moment.wall_at(a.last_seen), a.last_seen - a.first_seen,
                        a.frames, a.label, a.confidence, int(a.unknown), *a.box.as_list(), json.dumps(a.votes),
                        moment.boot_id, synced, a.rejected, a.quality, a.rejected_frames,
                    )  # fmt: skip
                    for a in appearances
                ],
            )
            _queue(db, events, moment)

    # -- the outbox: events waiting for the broker's acknowledgement (`[mqtt]`) -------------------

    def outbox_after(self, after: int, limit: int, fleet: bool = True) -> list[tuple[int, str, str | None, bool]]:
        """Up to `limit` waiting messages with an id above `after`, oldest first, as (id, payload, topic under the
        fleet prefix or None for the box's events topic, retained); without `fleet`, events only."""
        rows = self._db.execute(
            "SELECT id, payload, topic, retain FROM outbox WHERE id > ? AND (? OR topic IS NULL) ORDER BY id LIMIT ?",
            (after, fleet, limit),
        )
        return [(outbox_id, payload, topic, bool(retain)) for outbox_id, payload, topic, retain in rows.fetchall()]

    def outbox_sent(self, ids: Sequence[int]) -> None:
        """Deletes events the broker has acknowledged."""
        with self._transaction() as db:
            db.executemany("DELETE FROM outbox WHERE id = ?", [(event_id,) for event_id in ids])

    def outbox_trim(self, keep: int) -> int:
        """Deletes the oldest waiting events beyond the newest `keep`; returns how many were deleted. Fleet messages
        are few and each one matters (a tombstone dropped would leave a forgotten person on other boxes): kept."""
        with self._transaction() as db:
            return db.execute(
                "DELETE FROM outbox WHERE topic IS NULL AND id <= "
                "(SELECT id FROM outbox WHERE topic IS NULL ORDER BY id DESC LIMIT 1 OFFSET ?)", (keep,)
            ).rowcount

    def outbox_count(self) -> int:
        """How many events wait for the broker."""
        return self._db.execute("SELECT count(*) FROM outbox").fetchone()[0]

    def newest_time(self) -> str | None:
        """The latest wall-clock time recorded, to notice a clock that went back."""
        row = self._db.execute(
            "SELECT max(t) FROM (SELECT max(processed_at) AS t FROM inputs UNION ALL "
            "SELECT max(last_seen) FROM appearances)"
        ).fetchone()
        return row[0]

    def recent(self, query: LogQuery) -> list[dict]:
        """Inputs and their faces, newest first: one row per face, or one per input without faces
        (errors, photos with no face) unless the query asks about faces. A face the quality gate turned away has
        `rejected` set and no label; `quality` is the gate's score of every face a gated model saw."""
        where, params = query.conditions()
        rows = self._db.execute(
            f"SELECT i.processed_at AS time, {self._device_column('i')}i.source, i.path, i.status, i.error, f.label, "
            "f.confidence, f.unknown, f.rejected, f.quality, f.x, f.y, f.w, f.h "
            "FROM inputs i LEFT JOIN faces f ON f.input_id = i.id "
            f"WHERE {where} ORDER BY i.processed_at DESC, i.id DESC, f.id LIMIT ?",
            (*params, query.limit),
        )
        return [_row_dict(rows, row) for row in rows.fetchall()]

    def appearances(self, query: LogQuery) -> list[dict]:
        """Camera appearances, the most recent first (filtered by when they ended)."""
        where, params = query.conditions(time="a.last_seen", face="a", source="a")
        rows = self._db.execute(
            f"SELECT a.first_seen, a.last_seen, round(a.seconds, 1) AS seconds, {self._device_column('a')}a.source, "
            "a.label, a.confidence, a.unknown, a.rejected, a.quality, a.frames, a.rejected_frames "
            f"FROM appearances a WHERE {where} "
            "ORDER BY a.last_seen DESC, a.id DESC LIMIT ?",
            (*params, query.limit),
        )
        return [_row_dict(rows, row) for row in rows.fetchall()]

    def summary(self, query: LogQuery) -> list[dict]:
        """Faces per UTC day, label, unknown flag and rejection (the faces the quality gate turned away are one row a
        day, label ""), oldest day first."""
        where, params = query.conditions()
        device = self._device_column("i")
        rows = self._db.execute(
            f"SELECT substr(i.processed_at, 1, 10) AS day, {device}f.label, f.unknown, f.rejected, count(*) AS faces "
            f"FROM inputs i JOIN faces f ON f.input_id = i.id WHERE {where} GROUP BY day, {device}f.label, f.unknown, "
            f"f.rejected ORDER BY day, {device}f.label, f.unknown, f.rejected",
            params,
        )
        return [_row_dict(rows, row) for row in rows.fetchall()]

    def _device_column(self, table: str) -> str:
        """`table.device, ` in a hub's log (rows from other boxes), so its views name each row's box; "" in a box's
        own log, whose views stay as they were."""
        fleet = self._db.execute("SELECT EXISTS (SELECT 1 FROM inputs WHERE device IS NOT NULL) "
                                 "OR EXISTS (SELECT 1 FROM appearances WHERE device IS NOT NULL)")  # fmt: skip
        return f"{table}.device, " if fleet.fetchone()[0] else ""

    def label_counts(self) -> dict[str, int]:
        """How many faces the log holds per label."""
        rows = self._db.execute("SELECT label, count(*) FROM faces GROUP BY label ORDER BY label")
        return dict(rows.fetchall())

    def status_counts(self) -> dict[str, int]:
        """How many inputs the log holds per status ("done", "error")."""
        rows = self._db.execute("SELECT status, count(*) FROM inputs GROUP BY status ORDER BY status")
        return dict(rows.fetchall())

    # A camera's per-frame rows (`per_frame`) are not counted: its appearances are what it saw, as in its events.
    _FILE_FACES = "inputs i CROSS JOIN faces f ON f.input_id = i.id WHERE substr(i.source, 1, 7) != 'camera:'"

    def last_recognised(self) -> dict | None:
        """The newest face accepted as someone, in a file or as a camera appearance: {"person", "time", "source"}
        (time: when it was logged, or last seen); None before anyone was recognised. Each side walks its time
        index from the newest row, so the answer stays quick on a long log."""
        row = self._db.execute(
            "SELECT person, time, source FROM ("
            f"SELECT * FROM (SELECT f.label AS person, i.processed_at AS time, i.source FROM {self._FILE_FACES} "
            "AND +f.unknown = 0 AND f.rejected IS NULL ORDER BY i.processed_at DESC, i.id DESC, f.id DESC LIMIT 1) "
            "UNION ALL SELECT * FROM (SELECT label, last_seen, source FROM appearances WHERE +unknown = 0 "
            "AND rejected IS NULL "
            "ORDER BY last_seen DESC LIMIT 1)) ORDER BY time DESC LIMIT 1"
        ).fetchone()
        return None if row is None else dict(zip(("person", "time", "source"), row))

    def unknown_since(self, since: str) -> int:
        """Faces the unknown rule rejected since `since` (a time as the log writes them): in files, and camera
        appearances that ended since then."""
        files = self._db.execute(f"SELECT count(*) FROM {self._FILE_FACES} AND i.processed_at >= ? AND +f.unknown = 1",
                                 (since,)).fetchone()[0]  # fmt: skip
        seen = self._db.execute("SELECT count(*) FROM appearances WHERE last_seen >= ? AND unknown = 1", (since,))
        return files + seen.fetchone()[0]

    # -- enrolled people: `edgeface enroll`, `people`, `forget --person` ------------------------

    def enrol(self, person: str, network: str, embeddings: np.ndarray, photos: list[str | None], origin: str) -> int:
        """Adds embeddings (n × d) of `person` made by the network with sha256 `network`, one per
        photo hash in `photos` (None for camera frames); a photo already enrolled for the person
        is not added twice. Returns how many were added.

        Each one added is also queued for the fleet (a retained message, see `edgeface.fleet_enrolments`) in the
        same transaction, whether or not this box has `[mqtt]`: `enroll` has no broker settings, and a box that
        turns sharing on later shares what it enrolled before."""
        check_name(person)
        at = _now()
        with self._transaction() as db:
            added = []
            for vector, photo in zip(embeddings, photos):
                enrolment = SharedEnrolment(uuid.uuid4().hex, person, network, vector.astype("<f4"), at)
                if db.execute(
                    "INSERT OR IGNORE INTO enrolments (person, network, embedding, sha256, origin, enrolled_at, "
                    "enrolment_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (person, network, enrolment.embedding.tobytes(), photo, origin, at, enrolment.enrolment_id),
                ).rowcount:
                    added.append(enrolment)
            _queue_fleet(db, [(enrolment_topic(network, e.enrolment_id), enrolment_message(e)) for e in added])
            db.execute("UPDATE gallery_version SET version = version + 1")
        return len(added)

    def enrolments(self, network: str | None) -> Enrolments:
        """The people enrolled here with the network `network`, and the hidden ones; empty for None
        (a model that takes no enrolments). Rows that do not fit are left out, and said so."""
        if network is None:
            return Enrolments()
        hidden = frozenset(person for (person,) in self._db.execute("SELECT person FROM hidden_people"))
        rows = self._db.execute(
            "SELECT person, embedding FROM enrolments WHERE network = ? ORDER BY id", (network,)
        ).fetchall()
        if not rows:
            return Enrolments(None, hidden)
        sizes = {len(blob) if isinstance(blob, bytes) else -1 for _, blob in rows}
        if len(sizes) != 1 or min(sizes) <= 0 or min(sizes) % 4:
            raise LogDamaged(self.path, "the enrolments for this model have embeddings of different sizes, or none")
        vectors = np.frombuffer(b"".join(blob for _, blob in rows), dtype="<f4").reshape(len(rows), -1)
        try:
            return Enrolments(Gallery(tuple(person for person, _ in rows), vectors.astype(np.float32)), hidden)
        except GalleryError as error:
            raise LogDamaged(self.path, f"the enrolments cannot be used: {error}") from None

    def gallery_version(self) -> int:
        """A number that changes whenever someone is enrolled or forgotten."""
        return self._db.execute("SELECT version FROM gallery_version").fetchone()[0]

    def people(self) -> list[dict]:
        """Everyone enrolled here: per person, network and device it came from (None: this box), how many
        embeddings and when."""
        rows = self._db.execute(
            "SELECT person, network, device, count(*) AS embeddings, min(enrolled_at) AS first_enrolled, "
            "max(enrolled_at) AS last_enrolled FROM enrolments GROUP BY person, network, device "
            "ORDER BY person, network, device"
        )
        return [_row_dict(rows, row) for row in rows.fetchall()]

    def hidden_people(self) -> list[str]:
        """People of models' own galleries that were forgotten here."""
        return [person for (person,) in self._db.execute("SELECT person FROM hidden_people ORDER BY person")]

    def forget_person(self, person: str) -> int:
        """Deletes every embedding of `person` for good and hides them in any model's own gallery
        when used with this log; then scrubs the file. Returns the embeddings deleted.

        The fleet is told in the same transaction: a retained tombstone, and each deleted enrolment's retained
        topic emptied; copies of them still waiting in the outbox are deleted with them."""
        self._db.execute("PRAGMA secure_delete = ON")
        at = _now()
        with self._transaction() as db:
            topics = [enrolment_topic(network, enrolment_id) for network, enrolment_id in db.execute(
                "SELECT network, enrolment_id FROM enrolments WHERE person = ?", (person,))]  # fmt: skip
            deleted = db.execute("DELETE FROM enrolments WHERE person = ?", (person,)).rowcount
            db.executemany("DELETE FROM outbox WHERE topic = ?", [(topic,) for topic in topics])
            _queue_fleet(db, [(topic, "") for topic in topics])
            _queue_fleet(db, [(tombstone_topic(person), tombstone_message(Tombstone(person, at)))])
            self._tombstone(db, person, at)
        self.scrub()
        return deleted

    # -- what other boxes of the fleet share (`edgeface.fleet_enrolments`); never queued again -----------------

    def receive_enrolment(self, enrolment: SharedEnrolment) -> bool:
        """Stores an enrolment another box shared (origin "fleet", with its device), unless it is here already (by
        its id) or its person was forgotten since (a tombstone no older than it). Returns whether it was added."""
        with self._transaction() as db:
            known = db.execute("SELECT forgotten_at FROM tombstones WHERE person = ?", (enrolment.person,)).fetchone()
            if known and known[0] >= enrolment.enrolled_at:
                return False
            added = db.execute(
                "INSERT OR IGNORE INTO enrolments (person, network, embedding, sha256, origin, enrolled_at, "
                "enrolment_id, device) VALUES (?, ?, ?, NULL, 'fleet', ?, ?, ?)",
                (enrolment.person, enrolment.network, enrolment.embedding.astype("<f4").tobytes(),
                 enrolment.enrolled_at, enrolment.enrolment_id, enrolment.device),
            ).rowcount  # fmt: skip
            if added:
                db.execute("UPDATE gallery_version SET version = version + 1")
        return bool(added)

    def receive_tombstone(self, tombstone: Tombstone) -> bool:
        """Forgets, as `forget_person` does, the person's enrolments (from here or from the fleet) no newer than
        the tombstone, unless a tombstone as new is known already. Returns whether anything changed."""
        self._db.execute("PRAGMA secure_delete = ON")
        with self._transaction() as db:
            known = db.execute("SELECT forgotten_at FROM tombstones WHERE person = ?", (tombstone.person,)).fetchone()
            if known and known[0] >= tombstone.forgotten_at:
                return False
            deleted = db.execute("DELETE FROM enrolments WHERE person = ? AND enrolled_at <= ?",
                                 (tombstone.person, tombstone.forgotten_at)).rowcount  # fmt: skip
            self._tombstone(db, tombstone.person, tombstone.forgotten_at)
        if deleted:
            self.scrub()
        return True

    def tombstones(self) -> dict[str, str]:
        """Forgotten people and when (the latest time known here)."""
        return dict(self._db.execute("SELECT person, forgotten_at FROM tombstones ORDER BY person"))

    @staticmethod
    def _tombstone(db: sqlite3.Connection, person: str, at: str) -> None:
        """Inside the caller's transaction: `person` forgotten at `at` (the latest time wins), hidden in models' own
        galleries, and the gallery changed."""
        db.execute("INSERT INTO tombstones (person, forgotten_at) VALUES (?, ?) ON CONFLICT (person) DO UPDATE "
                   "SET forgotten_at = max(forgotten_at, excluded.forgotten_at)", (person, at))  # fmt: skip
        db.execute("INSERT OR IGNORE INTO hidden_people (person) VALUES (?)", (person,))
        db.execute("UPDATE gallery_version SET version = version + 1")

    # -- forgetting: retention and `edgeface forget` -------------------------------------------

    def forget_before(self, cutoff: str) -> int:
        """Retention: deletes inputs (with their faces) and appearances older than `cutoff` (UTC
        ISO 8601), in small transactions, keeping the deleted inputs' hashes. Returns the inputs deleted."""
        deleted = self._forget_inputs("processed_at < ?", (cutoff,))
        self._forget_appearances("last_seen < ?", (cutoff,))
        return deleted

    def forget(self, label: str | None, before: str | None, guesses: bool = False) -> dict[str, int]:
        """Deletes for good: every input in which a face was accepted as `label` (with all its faces)
        and that label's appearances, or everything older than `before`, or both filters at once;
        with `guesses`, also where `label` was only the nearest guess for an unknown face. Then
        scrubs the file (see `scrub`). Returns what was deleted."""
        if label is None and before is None:
            raise ValueError("forget needs a label, a time, or both")
        accepted = "" if guesses else " AND unknown = 0"
        inputs = ["1", *([f"id IN (SELECT input_id FROM faces WHERE label = ?{accepted})"] if label is not None else []),
                  *(["processed_at < ?"] if before is not None else [])]  # fmt: skip
        appearances = ["1", *([f"label = ?{accepted}"] if label is not None else []),
                       *(["last_seen < ?"] if before else [])]  # fmt: skip
        params = tuple(value for value in (label, before) if value is not None)
        self._db.execute("PRAGMA secure_delete = ON")  # freed pages are overwritten with zeros
        counts = {
            "inputs": self._forget_inputs(" AND ".join(inputs), params),
            "appearances": self._forget_appearances(" AND ".join(appearances), params),
        }
        self.scrub()
        return counts

    def scrub(self) -> None:
        """Leaves no deleted row readable in the files: the WAL is written back and cut to zero,
        and VACUUM rebuilds the database without its free pages."""
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._db.execute("VACUUM")
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def _forget_inputs(self, where: str, params: tuple) -> int:
        """Deletes the inputs matching `where` (and, by cascade, their faces and the faces' saved
        crops) in batches, keeping the hash of each one that was read so the same content is not
        processed again."""
        deleted = 0
        while True:
            with self._transaction() as db:
                ids = [i for (i,) in db.execute(f"SELECT id FROM inputs WHERE {where} LIMIT ?", (*params, RETENTION_BATCH))]
                marks = ",".join("?" * len(ids))
                crops = [c for (c,) in db.execute(f"SELECT crop FROM faces WHERE input_id IN ({marks}) AND crop IS NOT NULL",
                                                  ids)]  # fmt: skip
                db.execute(
                    "INSERT OR IGNORE INTO forgotten (sha256) SELECT sha256 FROM inputs "
                    f"WHERE id IN ({marks}) AND sha256 IS NOT NULL",
                    ids,
                )
                db.execute(f"DELETE FROM inputs WHERE id IN ({marks})", ids)
            for crop in crops:  # after the commit: a crash leaves a file no row names, never the reverse
                Path(crop).unlink(missing_ok=True)
            deleted += len(ids)
            if len(ids) < RETENTION_BATCH:
                return deleted

    def _forget_appearances(self, where: str, params: tuple) -> int:
        deleted = 0
        while True:
            with self._transaction() as db:
                db.execute(
                    f"DELETE FROM appearances WHERE id IN (SELECT id FROM appearances WHERE {where} LIMIT ?)",
                    (*params, RETENTION_BATCH),
                )
                count = db.execute("SELECT changes()").fetchone()[0]
            deleted += count
            if count < RETENTION_BATCH:
                return deleted
