"""The MQTT sink of `edgeface watch`: events leave the log's outbox for the broker, oldest first, each deleted only
once the broker has acknowledged it (PUBACK, QoS 1). With `share_people`, so do the fleet messages that `enroll` and
`forget --person` queued in the outbox, and what the fleet shares is taken in (`edgeface.fleet_receiver`).

`Recording` queues each event in the transaction of its log row (`events`), then wakes the sink (`committed`). A
thread of the sink's own, with its own connection to the log, does the rest: it deletes what the broker has
acknowledged, drops the oldest events beyond `outbox_max_events` (counted and said in the journal), and hands paho
the next ones, at most WINDOW unacknowledged at a time. paho sends those again itself after a reconnect, and events
left unacknowledged by a crash are sent again at the next start: an event may arrive twice (its `event_id` tells),
never not at all, unless the bound dropped it.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from edgeface.broker import BrokerLink
from edgeface.clock import Moment
from edgeface.events import batch_events
from edgeface.fleet_enrolments import addressed
from edgeface.fleet_receiver import FleetReceiver, embedder_network
from edgeface.home_assistant import HomeAssistant
from edgeface.results import Appearance, ImageResult
from edgeface.settings import MqttSettings
from edgeface.sinks import Committed
from edgeface.store import LogError, ResultLog

logger = logging.getLogger("edgeface.mqtt")

WINDOW = 20  # events handed to paho and not yet acknowledged, at most
PUMP_SECONDS = 1.0  # the thread looks at the outbox this often even when nothing wakes it
BUSY_SECONDS = 2.0  # the daemon's transaction is waited for this long, so a stop never waits longer
SENT_LOOK = 0.05  # seconds between looks at the outbox while `wait_sent` waits for it to empty


class Publisher:
    """An `Outboxed` sink that publishes the outbox of the log at `db`. Use as a context manager: paho's thread and
    the sink's run inside it. `availability`: see `BrokerLink`. `model`: the daemon's model file, whose embedder
    network decides the shared people taken in (with `share_people`; the model the daemon starts with: a reload to
    another network needs a restart, like every `[mqtt]` key). With `home_assistant`, the thread also keeps Home
    Assistant's view of the box up to date."""

    def __init__(self, settings: MqttSettings, db: Path, model: str | None = None, availability: bool = True) -> None:
        self._settings, self._db = settings, db
        self._wake, self._stopping = threading.Event(), threading.Event()
        self._acked: collections.deque[int] = collections.deque()  # message ids paho reported acknowledged
        self._in_flight: dict[int, int] = {}  # message id -> outbox id
        self._last = 0  # the newest outbox id handed to paho
        self._dropped = 0
        self._log: ResultLog | None = None
        self._log_trouble: str | None = None
        network = embedder_network(model) if settings.share_people and model else None
        self._receiver = FleetReceiver(settings.fleet_prefix, *network, self._wake.set) if network else None
        receiving = (self._receiver.subscriptions, self._receiver.heard) if self._receiver else ((), None)
        self.link = BrokerLink(settings, self._ack, self._connected, availability, *receiving)
        wanted = settings.home_assistant
        self._home = HomeAssistant(self.link.topics, settings.home_assistant_prefix) if wanted else None
        self._thread = threading.Thread(target=self._run, name="mqtt-outbox", daemon=True)

    def __enter__(self) -> Publisher:
        self.link.start()
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.link.stop()  # "offline", and the last acknowledgements, before the thread's last look
        self._stopping.set()
        self._wake.set()
        self._thread.join()

    # -- the sink, on the daemon's thread --------------------------------------------------------

    def events(
        self, source: str, model_sha256: str, moment: Moment, images: Sequence[ImageResult],
        appearances: Sequence[Appearance],
    ) -> list[str]:  # fmt: skip
        return batch_events(self.link.topics.device, source, model_sha256, moment, images, appearances)

    def committed(self, batch: Committed) -> None:
        if self._home:
            self._home.committed()
        self._wake.set()

    def wait_sent(self, log: ResultLog, seconds: float) -> int:
        """Waits up to `seconds` for the broker to take every event in the outbox (read through `log`, the
        caller's connection); how many still wait."""
        deadline = time.monotonic() + seconds
        while (waiting := log.outbox_count()) and time.monotonic() < deadline:
            time.sleep(SENT_LOOK)
        return waiting

    # -- the outbox, on the sink's thread --------------------------------------------------------

    def _connected(self) -> None:
        """paho's thread: the link is up."""
        if self._home:
            self._home.connected()
        self._wake.set()

    def _ack(self, mid: int) -> None:
        """paho's thread: the broker has message `mid`."""
        self._acked.append(mid)
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait(PUMP_SECONDS)
            self._wake.clear()
            stopping = self._stopping.is_set()
            try:
                self._pump()
            except LogError as error:
                self._log_failed(error)
            if stopping:
                break
        if self._log is not None:
            self._log.close()

    def _pump(self) -> None:
        log = self._open_log()
        if log is None:
            return
        acked = [self._in_flight.pop(mid) for mid in _drain(self._acked) if mid in self._in_flight]
        if acked:
            log.outbox_sent(acked)
        dropped = log.outbox_trim(self._settings.outbox_max_events)
        if dropped:
            self._dropped += dropped
            logger.warning("the outbox is full (mqtt.outbox_max_events = %d): dropped its %d oldest events, %d since "
                           "the start; they stay in the log", self._settings.outbox_max_events, dropped,
                           self._dropped)  # fmt: skip
        if self._log_trouble:
            logger.warning("the outbox in the log %s works again", self._db)
            self._log_trouble = None
        if self._receiver is not None:
            self._receiver.take_in(log)
        if self.link.connected.is_set() and not self._stopping.is_set():
            topics = self.link.topics
            for outbox_id, payload, topic, retain in log.outbox_after(self._last, WINDOW - len(self._in_flight),
                                                                     fleet=self._settings.share_people):  # fmt: skip
                if topic is not None:
                    topic, payload = addressed(topic, payload, topics.fleet, topics.device)
                self._in_flight[self.link.publish(payload, topic, retain)] = outbox_id
                self._last = outbox_id
            if self._home:
                self._home.pump(log, self.link)

    def _open_log(self) -> ResultLog | None:
        """The thread's own connection to the log; None before the daemon has made the file. A log replaced under
        the daemon is a new outbox: what was in flight from the old one is forgotten."""
        if self._log is not None and self._log.replaced():
            self._log.close()
            self._log = None
        if self._log is None and self._db.exists():
            self._log = ResultLog(self._db, busy_seconds=BUSY_SECONDS)
            self._in_flight.clear()
            self._last = 0
        return self._log

    def _log_failed(self, error: LogError) -> None:
        """Says a failing log once; it is opened again at the next look, and unacknowledged events go out again."""
        if error.reason != self._log_trouble:
            logger.error("the outbox in the log %s cannot be read: %s; trying again", self._db, error.reason)
            self._log_trouble = error.reason
        if self._log is not None:
            self._log.close()
            self._log = None


def _drain(queue: collections.deque[int]) -> list[int]:
    """Takes everything `queue` holds now (paho's thread may append meanwhile)."""
    return [queue.popleft() for _ in range(len(queue))]
