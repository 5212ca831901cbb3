"""The log's tables, versioned with `PRAGMA user_version`: `MIGRATIONS[i]` takes a file from version i to i + 1,
so an old log is brought forward when it is opened."""

from __future__ import annotations

APPLICATION_ID = 0x45444746  # "EDGF", in the SQLite header of every edgeface log

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
    # 6: the file says it is an edgeface log (SQLite's header field for that), so another program's
    # database is recognised and left untouched.
    f"""
    PRAGMA application_id = {APPLICATION_ID:d};
    """,
    # 7: why the daemon could not move a file out of the watched folder; the file stays there, and later
    # starts leave it be instead of failing to move it again.
    """
    ALTER TABLE inputs ADD COLUMN not_moved TEXT;
    """,
    # 8: the outbox of `[mqtt]`: each event is queued in the transaction of its log row and deleted once the broker
    # has acknowledged it, so neither a crash nor a broker away loses one. AUTOINCREMENT: ids only grow, even when
    # every row was sent and deleted, so they are the order events go out in.
    """
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        payload TEXT NOT NULL,           -- the event, JSON
        queued_at TEXT NOT NULL          -- UTC, ISO 8601
    );
    """,
    # 9: enrolments shared by the boxes of a fleet (`edgeface.fleet_enrolments`). An outbox row may be a fleet
    # message: its topic under mqtt.fleet_prefix (NULL: the box's events topic) and whether the broker retains it.
    # Each enrolment gets an id unique across the fleet, so a copy received twice is stored once, and the device it
    # came from (NULL: enrolled here; a received one has origin "fleet"). A forgotten person keeps a tombstone with
    # its time: an older enrolment that arrives late is not taken in again.
    """
    ALTER TABLE outbox ADD COLUMN topic TEXT;
    ALTER TABLE outbox ADD COLUMN retain INTEGER NOT NULL DEFAULT 0 CHECK (retain IN (0, 1));
    ALTER TABLE enrolments ADD COLUMN enrolment_id TEXT;
    ALTER TABLE enrolments ADD COLUMN device TEXT;
    UPDATE enrolments SET enrolment_id = lower(hex(randomblob(16)));
    CREATE UNIQUE INDEX enrolments_id ON enrolments (enrolment_id);
    CREATE TABLE tombstones (
        person TEXT PRIMARY KEY,
        forgotten_at TEXT NOT NULL       -- UTC, ISO 8601
    ) WITHOUT ROWID;
    """,
    # 10: `edgeface hub`, one log for a fleet. A row names the box it came from (NULL: this box); the identity of an
    # input becomes device, path and content, so two boxes' same path do not collide (path first, so a box's own
    # look-ups by path keep their index); `received` holds the id of every event taken in, the hub's dedup (kept
    # when `forget` deletes the rows, so a copy the broker delivers again does not bring them back).
    """
    ALTER TABLE inputs ADD COLUMN device TEXT;
    ALTER TABLE appearances ADD COLUMN device TEXT;
    DROP INDEX inputs_identity;
    CREATE UNIQUE INDEX inputs_identity ON inputs (path, ifnull(sha256, ''), ifnull(device, ''));
    CREATE INDEX inputs_device ON inputs (device, processed_at);
    CREATE INDEX appearances_device ON appearances (device, last_seen);
    CREATE TABLE received (
        event_id TEXT PRIMARY KEY,       -- the box's UUID
        device TEXT NOT NULL,
        time TEXT NOT NULL,              -- UTC, ISO 8601: the event's own (its box's commit)
        received_at TEXT NOT NULL        -- UTC, ISO 8601: the hub's commit, so each event's delay shows
    ) WITHOUT ROWID;
    """,
    # 11: the face-quality gate (`edgeface.gate`). A face records why it was turned away before recognition (NULL:
    # it was not; "quality": the gate's score was above its threshold) and the gate's score (NULL: the model has no
    # gate). An appearance counts the frames whose face was turned away (they never vote); one made of nothing else
    # is turned away too, with the best score it had.
    """
    ALTER TABLE faces ADD COLUMN rejected TEXT;
    ALTER TABLE faces ADD COLUMN quality REAL;
    ALTER TABLE appearances ADD COLUMN rejected TEXT;
    ALTER TABLE appearances ADD COLUMN quality REAL;
    ALTER TABLE appearances ADD COLUMN rejected_frames INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX faces_rejected ON faces (rejected) WHERE rejected IS NOT NULL;
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)
# The tables every edgeface log has had since version 1: how a log made before version 6 is recognised.
FIRST_TABLES = frozenset({"models", "inputs", "faces"})
