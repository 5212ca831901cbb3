"""The daemon's side of shared people (`mqtt.share_people`): what the fleet's boxes share reaches this box's log.

paho's thread only notes each message (`heard`); the MQTT sink's thread, with its own connection to the log, checks
and stores them (`take_in`), each in a transaction that bumps `gallery_version` when it changes something, so the
running daemon names a shared person, or stops naming a forgotten one, within a second, as after `edgeface enroll`.
Messages are hostile input: one refused (see `edgeface.fleet_enrolments.received`) is counted, and each kind of
refusal is said in the journal once. What is taken in is never queued to be sent again.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable
from pathlib import Path

from edgeface import artefact
from edgeface.fleet_enrolments import MessageRefused, SharedEnrolment, received, subscriptions
from edgeface.model import read_model_file
from edgeface.store import ResultLog

logger = logging.getLogger("edgeface.mqtt")

# Payload bytes heard and not yet stored, at most: a broker hands a box every retained enrolment at each connect
# (about 900 bytes each for 128 values), faster than the log takes them. Beyond it messages are dropped, counted and
# said: retained ones come again at the next connect.
MAX_WAITING_BYTES = 16 << 20


def embedder_network(model: str | Path) -> tuple[str, int] | None:
    """(network sha256, embedding size) of the embedder in the model file; None for a classifier, which takes no
    enrolments and so listens to none. ModelError or MetadataError when the file cannot be used."""
    content = read_model_file(model)
    metadata = artefact.read(content, str(model))
    return (artefact.network_sha256(content), metadata.embedding_size) if metadata.kind == "embedder" else None


class FleetReceiver:
    """Enrolments and tombstones shared under `fleet` for the embedder with `network` (embeddings of `dimensions`
    values): `heard` on paho's thread (then `wake`), `take_in` on the sink's."""

    def __init__(self, fleet: str, network: str, dimensions: int, wake: Callable[[], None]) -> None:
        self._fleet, self._network, self._dimensions, self._wake = fleet, network, dimensions, wake
        self.subscriptions = subscriptions(fleet, network)
        self._waiting: collections.deque[tuple[str, bytes]] = collections.deque()
        self._bytes = 0
        self._lock = threading.Lock()  # the byte count, changed on both threads
        self.dropped = self.refused = 0  # dropped: since last said
        self._said: set[str] = set()  # the kinds of refusal said in the journal

    def heard(self, topic: str, payload: bytes) -> None:
        """paho's thread: keeps the message for `take_in`, unless MAX_WAITING_BYTES are waiting already."""
        with self._lock:
            if self._bytes + len(payload) > MAX_WAITING_BYTES:
                self.dropped += 1
                return
            self._bytes += len(payload)
        self._waiting.append((topic, payload))
        self._wake()

    def take_in(self, log: ResultLog) -> None:
        """Checks and stores every message waiting, oldest first. A LogError leaves the message in hand and those
        after it waiting, for the next look."""
        enrolments = forgotten = 0
        while self._waiting:
            topic, payload = self._waiting[0]
            try:
                message = received(topic, payload, self._fleet, self._network, self._dimensions)
            except MessageRefused as refused:
                self._refuse(topic, str(refused))
                message = None
            if isinstance(message, SharedEnrolment):
                enrolments += log.receive_enrolment(message)
            elif message is not None:
                forgotten += log.receive_tombstone(message)
            self._waiting.popleft()
            with self._lock:
                self._bytes -= len(payload)
        if enrolments or forgotten:
            logger.info("took in from the fleet: %d enrolled embeddings, %d forgotten people", enrolments, forgotten)
        with self._lock:
            dropped, self.dropped = self.dropped, 0
        if dropped:
            logger.warning("dropped %d messages from the fleet: more than %d MiB waited for the log; the broker hands "
                           "them over again at the next connect", dropped, MAX_WAITING_BYTES >> 20)  # fmt: skip

    def _refuse(self, topic: str, reason: str) -> None:
        self.refused += 1
        if reason not in self._said:
            self._said.add(reason)
            logger.warning("refused a message from the fleet on %s: %s (%d refused since the start; others refused "
                           "for this reason are only counted)", topic[:200], reason, self.refused)  # fmt: skip
