"""The SQLite log: every input and every face, one file, standard-library `sqlite3` only.

All SQL lives here. The schema is versioned with `PRAGMA user_version`: `MIGRATIONS[i]` takes a
file from version i to i + 1, so an old log is brought forward when opened.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from edgeface.clock import Moment, now
from edgeface.gallery import Enrolments, Gallery, GalleryError, check_name
from edgeface.paths import file_identity
from edgeface.results import Appearance, ImageResult

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE models (
        id INTEGER PRIMARY KEY,
        sha256 TEXT NOT NULL UNIQUE,
        path TEXT NOT NULL,
        labels TEXT NOT NULL,            -- JSON list, in output order
        first_used TEXT NOT NULL         -- UTC, ISO 8601
    );
    CREATE TABLE inputs (
        id INTEGER PRIMARY KEY,
        source TEXT NOT NULL,            -- what fed it: "scan", later a folder or camera
        path TEXT NOT NULL,              -- absolute path
        sha256 TEXT,                     -- content hash; NULL when the file could not be read
        size INTEGER,                    -- bytes
        width INTEGER,
        height INTEGER,
        status TEXT NOT NULL CHECK (status IN ('done', 'error')),
        error TEXT,
        model_id INTEGER REFERENCES models(id),
        processed_at TEXT NOT NULL       -- UTC, ISO 8601
    );
    -- The identity of an input: the same bytes at the same path are recorded once.
    CREATE UNIQUE INDEX inputs_identity ON inputs (path, ifnull(sha256, ''));
    CREATE INDEX inputs_processed_at ON inputs (processed_at);
    CREATE TABLE faces (
        id INTEGER PRIMARY KEY,
        input_id INTEGER NOT NULL REFERENCES inputs(id) ON DELETE CASCADE,
        x INTEGER NOT NULL,
        y INTEGER NOT NULL,
        w INTEGER NOT NULL,
        h INTEGER NOT NULL,
        label TEXT NOT NULL,
        confidence REAL NOT NULL
    );
    CREATE INDEX faces_input ON faces (input_id);
    CREATE INDEX faces_label ON faces (label);
    """,
    # 2: models gained an unknown rule; a face records whether the rule rejected it.
    """
    ALTER TABLE faces ADD COLUMN unknown INTEGER NOT NULL DEFAULT 0 CHECK (unknown IN (0, 1));
    """,
    # 3: `edgeface log --source` and `--unknown` filters.
    """
    CREATE INDEX inputs_source ON inputs (source, processed_at);
    CREATE INDEX faces_unknown ON faces (unknown);
    """,
    # 4: the daemon. `pending` holds inputs seen but without an outcome yet (a restart resumes
    # them); each outcome records the monotonic clock, boot and whether the wall clock was
    # synchronised (a Pi has no battery clock); a camera logs one row per appearance; retention
    # keeps the identity of the inputs it deletes so they are not processed again.
    """
    CREATE TABLE pending (
        id INTEGER PRIMARY KEY,
        source TEXT NOT NULL,
        path TEXT NOT NULL UNIQUE,
        queued_at TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0  -- starts that were cut short while it was in hand
    );
    ALTER TABLE faces ADD COLUMN crop TEXT;  -- the saved crop's file, only with save_crops
    ALTER TABLE inputs ADD COLUMN monotonic REAL;
    ALTER TABLE inputs ADD COLUMN boot_id TEXT;
    ALTER TABLE inputs ADD COLUMN clock_synced INTEGER;
    CREATE TABLE appearances (
        id INTEGER PRIMARY KEY,
        source TEXT NOT NULL,
        model_id INTEGER REFERENCES models(id),
        first_seen TEXT NOT NULL,        -- UTC, ISO 8601
        last_seen TEXT NOT NULL,
        seconds REAL NOT NULL,           -- from the monotonic clock, immune to clock jumps
        frames INTEGER NOT NULL,
        label TEXT NOT NULL,
        confidence REAL NOT NULL,
        unknown INTEGER NOT NULL CHECK (unknown IN (0, 1)),
        x INTEGER NOT NULL,
        y INTEGER NOT NULL,
        w INTEGER NOT NULL,
        h INTEGER NOT NULL,
        votes TEXT NOT NULL,             -- JSON {label: frames}
        boot_id TEXT,
        clock_synced INTEGER
    );
    CREATE INDEX appearances_last_seen ON appearances (last_seen);
    CREATE INDEX appearances_label ON appearances (label);
    CREATE TABLE forgotten (             -- only the content of deleted inputs, not where it was
        sha256 TEXT PRIMARY KEY
    ) WITHOUT ROWID;
    """,
    # 5: embedder models. People enrolled on the device are embeddings tied to the network that
    # made them; people of a model's own gallery forgotten here are hidden; `gallery_version`
    # counts changes so a running daemon notices them; a face records its distance.
    """
    CREATE TABLE enrolments (
        id INTEGER PRIMARY KEY,
        person TEXT NOT NULL,
        network TEXT NOT NULL,           -- sha256 of the embedder's flatbuffer
        embedding BLOB NOT NULL,         -- little-endian float32
        sha256 TEXT,                     -- the photo's content hash; NULL for a camera frame
        origin TEXT NOT NULL,            -- "photo" or "camera"
        enrolled_at TEXT NOT NULL        -- UTC, ISO 8601
    );
    CREATE INDEX enrolments_network ON enrolments (network, person);
    CREATE UNIQUE INDEX enrolments_photo ON enrolments (network, person, sha256) WHERE sha256 IS NOT NULL;
    CREATE TABLE hidden_people (
        person TEXT PRIMARY KEY
    ) WITHOUT ROWID;
    CREATE TABLE gallery_version (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        version INTEGER NOT NULL
    );
    INSERT INTO gallery_version (id, version) VALUES (1, 0);
    ALTER TABLE faces ADD COLUMN distance REAL;
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


def default_path() -> Path:
    """Where the log lives unless `--db` says otherwise.

    $EDGEFACE_DB, else systemd's $STATE_DIRECTORY, else $XDG_STATE_HOME/edgeface (~/.local/state/edgeface).
    """
    if os.environ.get("EDGEFACE_DB"):
        return Path(os.environ["EDGEFACE_DB"])
    if os.environ.get("STATE_DIRECTORY"):
        return Path(os.environ["STATE_DIRECTORY"].split(":")[0]) / "edgeface.db"
    state_home = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(state_home) / "edgeface" / "edgeface.db"


@dataclass(frozen=True)
class LogQuery:
    """Filters for `recent` and `summary`; times are UTC ISO 8601 strings, compared as text."""

    since: str | None = None
    until: str | None = None
    label: str | None = None
    unknown: bool | None = None
    source: str | None = None
    limit: int = 50

    def conditions(self, time: str = "i.processed_at", face: str = "f", source: str = "i") -> tuple[str, list]:
        """A WHERE clause with ? placeholders, and its parameters (never values in the SQL text).

        `time`, `face` and `source` name the column and table aliases the filters apply to, so
        the same filters work on inputs with their faces and on appearances.
        """
        clauses, params = ["1"], []
        for clause, value in (
            (f"{time} >= ?", self.since),
            (f"{time} < ?", self.until),
            (f"{face}.label = ?", self.label),
            (f"{face}.unknown = ?", None if self.unknown is None else int(self.unknown)),
            (f"{source}.source = ?", self.source),
        ):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        return " AND ".join(clauses), params


def _row_dict(cursor: sqlite3.Cursor, row: tuple) -> dict:
    return {column[0]: value for column, value in zip(cursor.description, row)}


class LogError(RuntimeError):
    """The log file cannot be opened or is from a newer edgeface.

    When SQLite or the file system refused, the original error is the `__cause__`.
    """


def _text(path: str) -> str:
    """A path as SQLite text: a name that is not UTF-8 (undecodable bytes, which Python keeps as
    surrogates) gets them as backslash escapes instead of failing to encode."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


RETENTION_BATCH = 500  # rows deleted per transaction, so readers and writers wait only briefly


class ResultLog:
    """An open log file. Use as a context manager, or call `close()`.

    `durable`: every commit reaches the disk before it returns (`synchronous=FULL`), for callers
    that act on a commit, such as moving a file away once its outcome is logged: in WAL mode
    `NORMAL` survives a crash of the program but not a power cut. Several processes may share a
    file; a writer waits up to `busy_seconds` (BUSY_SECONDS) for another's transaction.
    """

    BUSY_SECONDS = 10

    def __init__(self, path: str | Path, durable: bool = False, busy_seconds: float = BUSY_SECONDS) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None, timeout=busy_seconds)
        except (sqlite3.DatabaseError, OSError) as error:
            raise LogError(f"cannot open log {self.path}: {error}") from error
        try:
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")
            self._db.execute("PRAGMA foreign_keys = ON")
            self._migrate()
            self._file = file_identity(self.path)  # the file exists now: its schema was just checked
        except (sqlite3.DatabaseError, OSError) as error:
            self._db.close()
            raise LogError(f"cannot open log {self.path}: {error}") from error
        except LogError:
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
        with self.transaction() as db:
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION:d}")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
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

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise LogError(f"{self.path} has schema {version}; this edgeface knows up to {SCHEMA_VERSION}")
        for target, script in enumerate(MIGRATIONS[version:], start=version + 1):
            # One script, one transaction: a migration applies whole or not at all.
            try:
                self._db.executescript(f"BEGIN IMMEDIATE; {script}; PRAGMA user_version = {target:d}; COMMIT;")
            except sqlite3.DatabaseError:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

    def register_model(self, sha256: str, path: str, labels: tuple[str, ...]) -> int:
        """The id of the model with this hash, adding it on first use."""
        with self.transaction() as db:
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

    def add_pending(self, paths: list[str], source: str) -> None:
        """Notes inputs that are waiting for an outcome; a path already waiting is kept once."""
        with self.transaction() as db:
            db.executemany(
                "INSERT INTO pending (source, path, queued_at) VALUES (?, ?, ?) ON CONFLICT (path) DO NOTHING",
                [(source, path, _now()) for path in paths],
            )

    def next_pending(self, limit: int) -> list[str]:
        """The oldest waiting inputs' paths, in the order they arrived."""
        rows = self._db.execute("SELECT path FROM pending ORDER BY id LIMIT ?", (limit,))
        return [path for (path,) in rows.fetchall()]

    def count_attempt(self, path: str) -> int:
        """Notes, durably, that `path` is about to be tried once more; returns how many tries
        (this one included) it has had. A file that kills the process shows as a rising count."""
        with self.transaction() as db:
            db.execute("UPDATE pending SET attempts = attempts + 1 WHERE path = ?", (path,))
            row = db.execute("SELECT attempts FROM pending WHERE path = ?", (path,)).fetchone()
        return row[0] if row else 0

    def pending_count(self) -> int:
        return self._db.execute("SELECT count(*) FROM pending").fetchone()[0]

    def drop_pending(self, paths: list[str]) -> None:
        """Stops waiting for inputs that need no new outcome (the same content is already logged)."""
        with self.transaction() as db:
            db.executemany("DELETE FROM pending WHERE path = ?", [(path,) for path in paths])

    def record(self, result: ImageResult, source: str, model_id: int) -> None:
        """Stores one outcome and its faces, replacing an earlier outcome of the same input."""
        self.record_batch([result], source, model_id)

    def record_batch(
        self, results: list[ImageResult], source: str, model_id: int, moment: Moment | None = None
    ) -> list[int]:
        """Stores several outcomes in one transaction: all of them, or none after a crash; returns
        their input ids.

        An input waiting in `pending` stops waiting in the same transaction, so it ends with
        exactly one outcome whenever the program stops.
        """
        moment = moment or now()
        synced = None if moment.synced is None else int(moment.synced)
        input_ids = []
        with self.transaction() as db:
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
                db.executemany(
                    "INSERT INTO faces (input_id, x, y, w, h, label, confidence, unknown, distance) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (cursor.lastrowid, *face.box.as_list(), face.label, face.confidence, face.unknown, face.distance)
                        for face in result.faces
                    ],
                )
                input_ids.append(cursor.lastrowid)
        return input_ids

    def set_crops(self, input_id: int, crops: list[str]) -> None:
        """Records the saved crop file of each face of an input, in the order the faces were recorded."""
        with self.transaction() as db:
            face_ids = [i for (i,) in db.execute("SELECT id FROM faces WHERE input_id = ? ORDER BY id", (input_id,))]
            db.executemany("UPDATE faces SET crop = ? WHERE id = ?", list(zip(crops, face_ids)))

    def clear_crops_before(self, first_kept: str) -> None:
        """Forgets the crop files that sort before `first_kept` (crops live in day folders)."""
        with self.transaction() as db:
            db.execute("UPDATE faces SET crop = NULL WHERE crop < ?", (first_kept,))

    def record_appearances(
        self, appearances: list[Appearance], source: str, model_id: int, moment: Moment | None = None
    ) -> None:
        """Stores finished appearances (one row each, however many frames they lasted).

        Their times are the tracker's monotonic seconds; `moment` (now) turns them into wall-clock
        times, so a clock jump while a person was in view cannot give an appearance a negative length.
        """
        moment = moment or now()

        def wall(seconds: float) -> str:
            at = datetime.fromisoformat(moment.wall) - timedelta(seconds=moment.monotonic - seconds)
            return at.isoformat(timespec="milliseconds")

        synced = None if moment.synced is None else int(moment.synced)
        with self.transaction() as db:
            db.executemany(
                "INSERT INTO appearances (source, model_id, first_seen, last_seen, seconds, frames, label, "
                "confidence, unknown, x, y, w, h, votes, boot_id, clock_synced) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        source, model_id, wall(a.first_seen), wall(a.last_seen), a.last_seen - a.first_seen,
                        a.frames, a.label, a.confidence, int(a.unknown), *a.box.as_list(), json.dumps(a.votes),
                        moment.boot_id, synced,
                    )  # fmt: skip
                    for a in appearances
                ],
            )

    def newest_time(self) -> str | None:
        """The latest wall-clock time recorded, to notice a clock that went back."""
        row = self._db.execute(
            "SELECT max(t) FROM (SELECT max(processed_at) AS t FROM inputs UNION ALL "
            "SELECT max(last_seen) FROM appearances)"
        ).fetchone()
        return row[0]

    def recent(self, query: LogQuery) -> list[dict]:
        """Inputs and their faces, newest first: one row per face, or one per input without faces
        (errors, photos with no face) unless the query asks about faces."""
        where, params = query.conditions()
        rows = self._db.execute(
            "SELECT i.processed_at AS time, i.source, i.path, i.status, i.error, f.label, f.confidence, "
            "f.unknown, f.x, f.y, f.w, f.h FROM inputs i LEFT JOIN faces f ON f.input_id = i.id "
            f"WHERE {where} ORDER BY i.processed_at DESC, i.id DESC, f.id LIMIT ?",
            (*params, query.limit),
        )
        return [_row_dict(rows, row) for row in rows.fetchall()]

    def appearances(self, query: LogQuery) -> list[dict]:
        """Camera appearances, the most recent first (filtered by when they ended)."""
        where, params = query.conditions(time="a.last_seen", face="a", source="a")
        rows = self._db.execute(
            "SELECT a.first_seen, a.last_seen, round(a.seconds, 1) AS seconds, a.source, a.label, a.confidence, "
            f"a.unknown, a.frames FROM appearances a WHERE {where} ORDER BY a.last_seen DESC, a.id DESC LIMIT ?",
            (*params, query.limit),
        )
        return [_row_dict(rows, row) for row in rows.fetchall()]

    def summary(self, query: LogQuery) -> list[dict]:
        """Faces per UTC day, label and unknown flag, oldest day first."""
        where, params = query.conditions()
        rows = self._db.execute(
            "SELECT substr(i.processed_at, 1, 10) AS day, f.label, f.unknown, count(*) AS faces "
            f"FROM inputs i JOIN faces f ON f.input_id = i.id WHERE {where} "
            "GROUP BY day, f.label, f.unknown ORDER BY day, f.label, f.unknown",
            params,
        )
        return [_row_dict(rows, row) for row in rows.fetchall()]

    def label_counts(self) -> dict[str, int]:
        """How many faces the log holds per label."""
        rows = self._db.execute("SELECT label, count(*) FROM faces GROUP BY label ORDER BY label")
        return dict(rows.fetchall())

    def status_counts(self) -> dict[str, int]:
        """How many inputs the log holds per status ("done", "error")."""
        rows = self._db.execute("SELECT status, count(*) FROM inputs GROUP BY status ORDER BY status")
        return dict(rows.fetchall())

    # -- enrolled people: `edgeface enroll`, `people`, `forget --person` ------------------------

    def enrol(self, person: str, network: str, embeddings: np.ndarray, photos: list[str | None], origin: str) -> int:
        """Adds embeddings (n × d) of `person` made by the network with sha256 `network`, one per
        photo hash in `photos` (None for camera frames); a photo already enrolled for the person
        is not added twice. Returns how many were added."""
        check_name(person)
        with self.transaction() as db:
            before = db.total_changes
            db.executemany(
                "INSERT OR IGNORE INTO enrolments (person, network, embedding, sha256, origin, enrolled_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(person, network, vector.astype("<f4").tobytes(), photo, origin, _now())
                 for vector, photo in zip(embeddings, photos)],  # fmt: skip
            )
            added = db.total_changes - before
            db.execute("UPDATE gallery_version SET version = version + 1")
        return added

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
            raise LogError(f"{self.path}: the enrolments for this model have embeddings of different sizes, or none")
        vectors = np.frombuffer(b"".join(blob for _, blob in rows), dtype="<f4").reshape(len(rows), -1)
        try:
            return Enrolments(Gallery(tuple(person for person, _ in rows), vectors.astype(np.float32)), hidden)
        except GalleryError as error:
            raise LogError(f"{self.path}: the enrolments cannot be used: {error}") from None

    def gallery_version(self) -> int:
        """A number that changes whenever someone is enrolled or forgotten."""
        return self._db.execute("SELECT version FROM gallery_version").fetchone()[0]

    def people(self) -> list[dict]:
        """Everyone enrolled here: per person and network, how many embeddings and when."""
        rows = self._db.execute(
            "SELECT person, network, count(*) AS embeddings, min(enrolled_at) AS first_enrolled, "
            "max(enrolled_at) AS last_enrolled FROM enrolments GROUP BY person, network ORDER BY person, network"
        )
        return [_row_dict(rows, row) for row in rows.fetchall()]

    def hidden_people(self) -> list[str]:
        """People of models' own galleries that were forgotten here."""
        return [person for (person,) in self._db.execute("SELECT person FROM hidden_people ORDER BY person")]

    def forget_person(self, person: str) -> int:
        """Deletes every embedding of `person` for good and hides them in any model's own gallery
        when used with this log; then scrubs the file. Returns the embeddings deleted."""
        self._db.execute("PRAGMA secure_delete = ON")
        with self.transaction() as db:
            deleted = db.execute("DELETE FROM enrolments WHERE person = ?", (person,)).rowcount
            db.execute("INSERT OR IGNORE INTO hidden_people (person) VALUES (?)", (person,))
            db.execute("UPDATE gallery_version SET version = version + 1")
        self.scrub()
        return deleted

    # -- forgetting: retention and `edgeface forget` -------------------------------------------

    def forget_before(self, cutoff: str) -> int:
        """Retention: deletes inputs (with their faces) and appearances older than `cutoff` (UTC
        ISO 8601), in small transactions, keeping the deleted inputs' hashes. Returns the inputs deleted."""
        deleted = self._forget_inputs("processed_at < ?", (cutoff,))
        self._forget_appearances("last_seen < ?", (cutoff,))
        return deleted

    def forget(self, label: str | None, before: str | None) -> dict[str, int]:
        """Deletes for good: every input in which a face labelled `label` was seen (with all its
        faces) and that label's appearances, or everything older than `before`, or both filters
        at once. Then scrubs the file (see `scrub`). Returns what was deleted."""
        if label is None and before is None:
            raise ValueError("forget needs a label, a time, or both")
        inputs = ["1", *(["id IN (SELECT input_id FROM faces WHERE label = ?)"] if label is not None else []),
                  *(["processed_at < ?"] if before is not None else [])]  # fmt: skip
        appearances = ["1", *(["label = ?"] if label is not None else []), *(["last_seen < ?"] if before else [])]
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
            with self.transaction() as db:
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
            with self.transaction() as db:
                db.execute(
                    f"DELETE FROM appearances WHERE id IN (SELECT id FROM appearances WHERE {where} LIMIT ?)",
                    (*params, RETENTION_BATCH),
                )
                count = db.execute("SELECT changes()").fetchone()[0]
            deleted += count
            if count < RETENTION_BATCH:
                return deleted
