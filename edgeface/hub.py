"""`edgeface hub`: every box's events, from the MQTT broker into one log that `edgeface log` reads.

The loop takes what has arrived (at least one message, at most RECEIVE_MAXIMUM), checks each event, stores the
batch in one durable transaction, and only then acknowledges its messages. Batching follows the load by itself: one
event at a time when they trickle in, hundreds per commit in a burst, so latency stays low and throughput high. A
hub killed before a commit gets the messages again; one killed after it, before the acknowledgement, gets copies,
which the transaction drops by event id. A message that is no event (`BadEvent`) is counted, said in the journal
at most once per BAD_SAY_SECONDS, and acknowledged, so that the broker does not send it again and again.

Under systemd: READY=1 once the log is open and the link started, whether or not the broker is reachable yet (a
broker that is down at boot must not keep the unit "activating" until systemd's start timeout kills it: the hub is
doing its job, it connects when it can and its session at the broker keeps the events meanwhile). STATUS= says
whether the hub is subscribed or waiting for the broker, with the counts; WATCHDOG=1 every half $WATCHDOG_USEC, also
while the broker or the log is away (the hub is not hung then); STOPPING=1. SIGTERM stores and acknowledges what is in
hand, then stops.
"""

from __future__ import annotations

import logging
import queue
import signal
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from edgeface.hub_events import BadEvent, FleetEvent, check_sender, parse_event
from edgeface.hub_link import RECEIVE_MAXIMUM, HubLink, Message
from edgeface.notify import SystemdNotifier, watchdog_interval
from edgeface.settings import ConfigError, MqttSettings, from_flags, read_file
from edgeface.store import FleetLog, Kept, LogError

logger = logging.getLogger("edgeface.hub")

TOPIC = "edgeface/+/events"  # every box with the default topic prefix
# The [mqtt] keys that say how to reach the broker and the fleet; the others (device, client_id, topic_prefix,
# outbox) are a box's, and a hub reading the config of a box on the same machine must not take its client id.
CONNECTION_KEYS = ("host", "port", "tls_ca_file", "tls_certfile", "tls_keyfile", "username", "password_file",
                   "keepalive", "share_people", "fleet_prefix")  # fmt: skip
IDLE_SECONDS = 0.2  # how often the loop looks at a stop, the status and the journal when nothing arrives
RETRY_SECONDS = 1.0  # the wait before a batch the log refused is tried again
NOTIFY_SECONDS = 1.0  # systemd hears the counts this often at most (a change of the link at once)
STATUS_SECONDS = 60.0  # the journal says them this often, when they changed
BAD_SAY_SECONDS = 60.0  # and a bad message at most this often, with how many it did not say


def hub_settings(config: Path | None, flags: dict[str, object]) -> MqttSettings:
    """The broker's settings: the connection keys of `[mqtt]` in `config`, then `flags` (by key, None: not given);
    ConfigError when they name no broker or a value is out of range."""
    values = {name[5:]: value for name, value in (read_file(config) if config else {}).items()
              if name.startswith("mqtt.") and name[5:] in CONNECTION_KEYS}  # fmt: skip
    try:
        settings = from_flags(MqttSettings, {**values, **{key: value for key, value in flags.items() if value is not None}})
    except ConfigError as error:  # a flag's error names the box's flag (--mqtt-port): the hub's is --port
        raise ConfigError(str(error).replace("--mqtt-", "--")) from None
    if not settings.host:
        raise ConfigError("no broker: pass --host HOST, or --config FILE with host under [mqtt]")
    return settings


def check_topic(topic: str) -> str:
    """`topic` if MQTT takes it as a subscription filter (`+` a whole level, `#` the last); ConfigError otherwise."""
    levels = topic.split("/")
    if (not topic or "\0" in topic or len(topic.encode()) > 1000 or "#" in "".join(levels[:-1])
            or any(("+" in level or "#" in level) and len(level) > 1 for level in levels)):  # fmt: skip
        raise ConfigError(f"--topic {topic!r} is not an MQTT topic filter (+ stands for a whole level, # for the rest)")
    return topic


def default_client_id() -> str:
    return f"edgeface-hub-{socket.gethostname()}"


@dataclass
class Counts:
    """What the hub has done since its start."""

    kept: int = 0
    copies: int = 0
    bad: int = 0

    def line(self) -> str:
        return f"{self.kept} events kept, {self.copies} copies dropped, {self.bad} bad messages since the start"


class Hub:
    """One running `edgeface hub`: the log, the link, and the loop between them."""

    def __init__(self, settings: MqttSettings, db: Path, topics: Sequence[str], client_id: str,
                 busy_seconds: float = FleetLog.BUSY_SECONDS) -> None:  # fmt: skip
        self._inbox: queue.Queue[Message] = queue.Queue()
        self._link = HubLink(settings, client_id, topics, self._inbox)  # first: without paho, no log is made
        self._db, self._busy_seconds = db, busy_seconds
        self._where, self._topics = f"{settings.host}:{settings.port}", ", ".join(topics)
        self._log = self._open()
        self._notifier = SystemdNotifier()
        self.counts, self._said_counts, self._notified_counts = Counts(), Counts(), Counts()
        self._stop = False
        self._said_at = self._notified_at = self._bad_said_at = self._next_ping = float("-inf")
        interval = watchdog_interval()
        self._ping_every = interval / 2 if interval else None
        self._notified_state = ""
        self._bad_unsaid = 0
        self._log_trouble: str | None = None

    def run(self) -> int:
        """Runs until SIGTERM or SIGINT; returns the exit code. A LogError that no wait mends (LogDamaged) ends it."""
        for number in (signal.SIGTERM, signal.SIGINT):
            signal.signal(number, self._on_signal)
        self._link.start()
        self._notified_state = self._state()
        self._notifier.ready(self._status(self._notified_state))
        try:
            while not self._stop:
                batch = self._take(IDLE_SECONDS)
                if batch:
                    self._store(batch)
                self._tick()
            self._store(self._take(0))  # what has arrived: stored and acknowledged before the link closes
            return 0
        finally:
            self._notifier.stopping()
            logger.info("stopping: %s", self.counts.line())
            self._link.stop()
            self._log.close()

    def _on_signal(self, number: int, frame: object) -> None:
        self._stop = True

    def _take(self, wait: float) -> list[Message]:
        """The messages that have arrived, at most RECEIVE_MAXIMUM, waiting up to `wait` seconds for the first."""
        try:
            batch = [self._inbox.get(timeout=wait) if wait else self._inbox.get_nowait()]
        except queue.Empty:
            return []
        while len(batch) < RECEIVE_MAXIMUM:
            try:
                batch.append(self._inbox.get_nowait())
            except queue.Empty:
                break
        return batch

    def _store(self, batch: list[Message]) -> None:
        """Stores the batch's events, then acknowledges all its messages (bad ones too)."""
        events: list[FleetEvent] = []
        for message in batch:
            try:
                events.append(check_sender(parse_event(message.payload), message.topic))
            except BadEvent as bad:
                self._bad(message, str(bad))
        kept = self._keep(events) if events else Kept(0, 0)
        if kept is None:
            return  # stopped while the log failed: the broker sends the batch again to the next start
        self.counts.kept += kept.new
        self.counts.copies += kept.copies
        self._link.ack(batch)

    def _keep(self, events: list[FleetEvent]) -> Kept | None:
        """`FleetLog.keep`; a log that fails is said once and tried again every RETRY_SECONDS; None when a stop comes
        meanwhile."""
        while True:
            try:
                kept = self._log.keep(events)
            except LogError as error:
                if error.lasting:
                    raise
                self._log_failed(error)
                if self._stop:
                    return None
                self._wait(RETRY_SECONDS)
                continue
            if self._log.replaced():  # the commit went to a file no longer there: into the new one
                self._reopen()
                continue
            if self._log_trouble:
                logger.warning("the log %s works again", self._db)
                self._log_trouble = None
            return kept

    def _open(self) -> FleetLog:
        return FleetLog(self._db, durable=True, busy_seconds=self._busy_seconds)

    def _reopen(self) -> None:
        self._log.close()
        self._log = self._open()

    def _log_failed(self, error: LogError) -> None:
        if error.reason != self._log_trouble:
            logger.error("%s; the events wait at the broker, trying again", error)
            self._log_trouble = error.reason
        try:
            self._reopen()
        except LogError:
            pass  # the next try says it, if it is new

    def _bad(self, message: Message, reason: str) -> None:
        """Counts a message that is no event; says it unless one was said less than BAD_SAY_SECONDS ago."""
        self.counts.bad += 1
        at = time.monotonic()
        if at - self._bad_said_at < BAD_SAY_SECONDS:
            self._bad_unsaid += 1
            return
        unsaid = f"; {self._bad_unsaid} more not said since the last" if self._bad_unsaid else ""
        logger.warning("dropped a message on %s that is no event the hub can keep: %s (%d bad messages since the "
                       "start%s)", message.topic[:200], reason, self.counts.bad, unsaid)  # fmt: skip
        self._bad_said_at, self._bad_unsaid = at, 0

    def _wait(self, seconds: float) -> None:
        """Sleeps `seconds`, less if a stop comes, ticking all the while: the log that failed keeps the hub here, and
        systemd must still hear that it is alive."""
        deadline = time.monotonic() + seconds
        while not self._stop and time.monotonic() < deadline:
            self._tick()
            time.sleep(min(IDLE_SECONDS, max(0.0, deadline - time.monotonic())))

    def _tick(self) -> None:
        """WATCHDOG=1 every half interval; STATUS= at once when the link or the log changes, when the counts do once a
        second at most; the journal every STATUS_SECONDS when they changed."""
        at = time.monotonic()
        if self._ping_every and at >= self._next_ping:
            self._notifier.watchdog()
            self._next_ping = at + self._ping_every
        state = self._state()
        counted = self.counts != self._notified_counts and at - self._notified_at >= NOTIFY_SECONDS
        if state != self._notified_state or counted:
            self._notifier.status(self._status(state))
            self._notified_at, self._notified_counts, self._notified_state = at, replace(self.counts), state
        if self.counts != self._said_counts and at - self._said_at >= STATUS_SECONDS:
            logger.info("%s", self.counts.line())
            self._said_at, self._said_counts = at, replace(self.counts)

    def _state(self) -> str:
        """Where the hub stands, as STATUS= begins: subscribed, or waiting for the broker (to connect, or to take the
        subscription), and whether the log is failing."""
        if not self._link.connected.is_set():
            link = f"waiting for the broker {self._where}"
        elif not self._link.subscribed.is_set():
            link = f"connected to the broker {self._where}, waiting for it to take the subscription"
        else:
            link = f"subscribed to {self._topics} at {self._where}"
        return f"{link}; the log is failing ({self._log_trouble})" if self._log_trouble else link

    def _status(self, state: str) -> str:
        return f"{state}; {self.counts.line()}; log {self._db}"
