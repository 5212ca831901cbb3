"""People enrolled in the log, on real SQLite files: tied to a network, counted, forgotten for good."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from edgeface.gallery import GalleryError
from edgeface.store import LogError, ResultLog

NETWORK, OTHER_NETWORK = "a" * 64, "b" * 64


def embeddings(count: int, seed: int) -> np.ndarray:
    # Values whose bytes are easy to find in a file: a test below searches for them after forgetting.
    return np.random.default_rng(seed).uniform(-0.3, 0.3, (count, 128)).astype(np.float32)


@pytest.fixture()
def log_file(tmp_path: Path) -> Path:
    return tmp_path / "edgeface.db"


def test_enrolments_are_tied_to_the_network_that_made_them(log_file: Path):
    with ResultLog(log_file) as log:
        assert log.enrol("alice", NETWORK, embeddings(3, 1), ["p1", "p2", None], "photo") == 3
        assert log.enrol("bob", OTHER_NETWORK, embeddings(2, 2), ["p3", "p4"], "photo") == 2
        mine = log.enrolments(NETWORK)
        assert mine.gallery.names == ("alice",) * 3 and np.array_equal(mine.gallery.vectors, embeddings(3, 1))
        assert log.enrolments(OTHER_NETWORK).gallery.people == ("bob",)
        assert log.enrolments("c" * 64).gallery is None
        assert log.enrolments(None).gallery is None  # a classifier takes no enrolments
        assert [(row["person"], row["embeddings"]) for row in log.people()] == [("alice", 3), ("bob", 2)]


def test_the_same_photo_enrolled_again_is_kept_once_and_every_change_is_counted(log_file: Path):
    with ResultLog(log_file) as log:
        start = log.gallery_version()
        log.enrol("alice", NETWORK, embeddings(2, 1), ["p1", "p2"], "photo")
        assert log.enrol("alice", NETWORK, embeddings(2, 1), ["p1", "p2"], "photo") == 0
        assert log.enrol("alice", NETWORK, embeddings(1, 3), [None], "camera") == 1  # frames have no identity
        assert len(log.enrolments(NETWORK).gallery.names) == 3
        log.forget_person("nobody")
        assert log.gallery_version() == start + 4


def test_forget_person_leaves_no_byte_of_their_embeddings_and_hides_them_from_models(log_file: Path):
    alice = embeddings(4, 7)
    with ResultLog(log_file) as log:
        log.enrol("alice", NETWORK, alice, ["p1", "p2", "p3", "p4"], "photo")
        log.enrol("bob", NETWORK, embeddings(1, 8), ["p5"], "photo")
        assert log.forget_person("alice") == 4
        left = log.enrolments(NETWORK)
        assert left.gallery.people == ("bob",) and left.hidden == frozenset({"alice"})
        assert log.hidden_people() == ["alice"]
    stored = b"".join(path.read_bytes() for path in log_file.parent.iterdir())
    assert not any(vector.tobytes()[:64] in stored for vector in alice)
    assert b"bob" in stored


def test_a_name_that_could_forge_output_is_not_enrolled(log_file: Path):
    with ResultLog(log_file) as log, pytest.raises(GalleryError):
        log.enrol("eve\n2026-01-01 alice", NETWORK, embeddings(1, 1), ["p"], "photo")


def test_enrolments_tampered_with_by_another_program_are_refused_not_used(log_file: Path):
    with ResultLog(log_file) as log:
        log.enrol("alice", NETWORK, embeddings(1, 1), ["p1"], "photo")
    with sqlite3.connect(log_file) as db:
        db.execute("INSERT INTO enrolments (person, network, embedding, origin, enrolled_at) "
                   "VALUES ('bob', ?, x'0000', 'photo', 'now')", (NETWORK,))  # fmt: skip
    with ResultLog(log_file) as log, pytest.raises(LogError, match="different sizes"):
        log.enrolments(NETWORK)
    for blob in (b"", "text", 3.5):  # SQLite stores whatever another program puts in the column
        with sqlite3.connect(log_file) as db:
            db.execute("UPDATE enrolments SET embedding = ?", (blob,))
        with ResultLog(log_file) as log, pytest.raises(LogError, match="different sizes, or none"):
            log.enrolments(NETWORK)
    with sqlite3.connect(log_file) as db:
        db.execute("UPDATE enrolments SET embedding = ? WHERE person = 'alice'", (embeddings(1, 1)[0].tobytes(),))
        db.execute("UPDATE enrolments SET embedding = ? WHERE person = 'bob'",
                   (np.full(128, np.nan, dtype="<f4").tobytes(),))  # fmt: skip
        db.execute("UPDATE enrolments SET person = 'x\x1b[2J' WHERE person = 'alice'")
    with ResultLog(log_file) as log, pytest.raises(LogError, match="cannot be used"):
        log.enrolments(NETWORK)
