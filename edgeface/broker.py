"""The link to the MQTT broker: paho-mqtt's client, set up from `[mqtt]`, with its own network thread.

paho-mqtt is optional (the `mqtt` extra): without it edgeface runs as before, and only a `[mqtt] host` stops the start,
with the install hint. The client connects in the background and reconnects with back-off
(RECONNECT_MIN to RECONNECT_MAX seconds); an unreachable broker or a refused login is said in the journal once per
outage, not at every retry. Availability is a retained topic: "online" on each connect, "offline" at a clean stop
and, as the last will, when the box vanishes.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING

from edgeface.fleet_enrolments import ENROLMENTS, FORGOTTEN
from edgeface.paths import FileRefused, read_regular_file
from edgeface.settings import ConfigError, MqttSettings, publishable

if TYPE_CHECKING:
    import paho.mqtt.client as mqtt

logger = logging.getLogger("edgeface.mqtt")

INSTALL_HINT = "pip install '.[mqtt]' in edgeface's source folder"
MAX_PASSWORD_BYTES = 4096  # a password file holds one line; a device or a huge file is not read
RECONNECT_MIN, RECONNECT_MAX = 1, 30  # seconds between tries to reach the broker, doubling in between
CONNECT_TIMEOUT = 2.0  # seconds for one try: a stop waits for at most one of them
STOP_SECONDS = 1.0  # how long a stop waits for the broker to take "offline"
QOS = 1  # at least once: an event is deleted from the outbox only after the broker's PUBACK


@dataclass(frozen=True)
class Topics:
    """The box's identity at the broker: device name, client id and topics, from `[mqtt]` and the host name; `fleet`
    is the prefix of the topics the fleet's boxes share people on (see `edgeface.fleet_enrolments`)."""

    device: str
    client_id: str
    events: str
    availability: str
    prefix: str  # the topics above and any other of the box's own lie under it
    fleet: str  # the fleet's shared topics (people) lie under it


def topics_of(settings: MqttSettings) -> Topics:
    """The names `settings` give, with their defaults; ConfigError for a topic prefix MQTT cannot publish to, or a
    box's own prefix inside the fleet's shared topics (a box named "enrolments" under the default prefixes)."""
    device = settings.device or socket.gethostname()
    prefix = _prefix("topic_prefix", settings.topic_prefix or f"edgeface/{device}")
    fleet = _prefix("fleet_prefix", settings.fleet_prefix)
    if any(f"{prefix}/".startswith(f"{fleet}/{shared}/") for shared in (ENROLMENTS, FORGOTTEN)):
        raise ConfigError(f"mqtt.topic_prefix {prefix!r} lies inside the fleet's shared topics under {fleet!r}: "
                          "give the box another device name or topic_prefix")  # fmt: skip
    return Topics(device, settings.client_id or f"edgeface-{device}", f"{prefix}/events", f"{prefix}/availability",
                  prefix, fleet)  # fmt: skip


def _prefix(key: str, prefix: str) -> str:
    """`prefix` if topics can be made under it; ConfigError naming mqtt.`key` otherwise."""
    if not publishable(prefix):
        raise ConfigError(f"mqtt.{key} {prefix!r} is not a topic to publish to: no + # or NUL, not empty, "
                          "at most 1000 bytes")  # fmt: skip
    return prefix


def _password(path: str) -> str:
    """The password in the file at `path` (its first line); ConfigError naming the key when it cannot be read."""
    try:
        return read_regular_file(path, MAX_PASSWORD_BYTES).decode("utf-8").splitlines()[0]
    except FileRefused as refused:
        raise ConfigError(f"mqtt.password_file {path} is {refused.strerror}") from None
    except OSError as error:
        raise ConfigError(f"mqtt.password_file: cannot read {path}: {error.strerror or error}") from None
    except (UnicodeDecodeError, IndexError):
        raise ConfigError(f"mqtt.password_file {path} holds no line of UTF-8 text") from None


def _tls(settings: MqttSettings) -> ssl.SSLContext:
    """A context that checks the broker's certificate against `tls_ca_file` (and its name), with the client's
    certificate when one is given; ConfigError when a file cannot be used."""
    try:
        context = ssl.create_default_context(cafile=settings.tls_ca_file)
        if settings.tls_certfile:
            context.load_cert_chain(settings.tls_certfile, settings.tls_keyfile)
    except (OSError, ssl.SSLError) as error:
        raise ConfigError(f"mqtt.tls_*: cannot use the TLS files: {error}") from None
    return context


def paho_client() -> ModuleType:
    """paho-mqtt's client module, imported at first use: it is optional (the `mqtt` extra), and its import (with
    http.client and more) would slow the start of every command that sends nothing. ConfigError without it."""
    try:
        import paho.mqtt.client
    except ImportError:
        raise ConfigError(f"[mqtt] needs paho-mqtt, which is not installed: {INSTALL_HINT}") from None
    return paho.mqtt.client


def client_for(settings: MqttSettings, client_id: str, **options: object) -> mqtt.Client:
    """paho's client for the broker `settings` name, as every edgeface client has it: its login, its TLS, a connect
    timeout and the reconnect back-off; `options` go to paho's constructor. ConfigError without paho-mqtt, or when
    the password file or a TLS file cannot be used."""
    paho = paho_client()
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id, **options)
    client.connect_timeout = CONNECT_TIMEOUT
    client.reconnect_delay_set(RECONNECT_MIN, RECONNECT_MAX)
    if settings.username:
        password = _password(settings.password_file) if settings.password_file else None
        client.username_pw_set(settings.username, password)
    if settings.tls_ca_file:
        client.tls_set_context(_tls(settings))
    return client


def refusal(where: str, reason: object) -> str:
    """What to say when the broker at `where` refuses a login (every client of edgeface says it alike)."""
    return f"the MQTT broker {where} refused the connection: {reason} (see mqtt.username and mqtt.password_file, or " \
           "the broker's log)"


class BrokerLink:
    """paho's client for one box: `start`, `publish` (QoS 1) while `connected`, `stop`; with `subscriptions`, the
    topics listened to (QoS 1) from each connect on, their messages handed to on_message(topic, payload).

    on_acked(mid), on_connected() and on_message run on paho's thread: they must only note and wake, never block.
    Without `availability` (a one-off `scan --publish` beside the daemon) the link leaves the box's availability topic
    and last will to the daemon.
    """

    def __init__(
        self, settings: MqttSettings, on_acked: Callable[[int], None], on_connected: Callable[[], None],
        availability: bool = True, subscriptions: Sequence[str] = (),
        on_message: Callable[[str, bytes], None] | None = None,
    ) -> None:  # fmt: skip
        self.topics = topics_of(settings)
        self._where = f"{settings.host}:{settings.port}"
        self._settings, self._on_acked, self._on_connected = settings, on_acked, on_connected
        self._availability = availability
        self._subscriptions = [(topic, QOS) for topic in subscriptions]
        self.connected = threading.Event()
        self._said: str | None = None  # the trouble last said in the journal, until the link works again
        self._client = client_for(settings, self.topics.client_id)
        if availability:
            self._client.will_set(self.topics.availability, "offline", qos=QOS, retain=True)
        self._client.on_connect = self._connected
        self._client.on_connect_fail = self._unreachable
        self._client.on_disconnect = self._disconnected
        self._client.on_publish = lambda client, userdata, mid, reason, properties: self._on_acked(mid)
        if on_message is not None:
            self._client.on_message = lambda client, userdata, message: on_message(message.topic, message.payload)

    def start(self) -> None:
        """Connects in the background (paho's thread), retrying until `stop`."""
        self._client.connect_async(self._settings.host, self._settings.port, keepalive=self._settings.keepalive)
        self._client.loop_start()

    def publish(self, payload: str, topic: str | None = None, retain: bool = False) -> int:
        """Sends one message (QoS 1), by default an event; its message id, which `on_acked` names once the broker
        has it."""
        return self._client.publish(topic or self.topics.events, payload, qos=QOS, retain=retain).mid

    def publish_retained(self, topic: str, payload: str) -> None:
        """Sets what `topic` holds for every subscriber, now and later (QoS 1, not tracked: the next one replaces
        it). Does not block: paho queues it while the link is down."""
        self._client.publish(topic, payload, qos=QOS, retain=True)

    def stop(self) -> None:
        """Says "offline" (waiting STOP_SECONDS at most), disconnects and ends paho's thread: a broker that does
        not answer delays a stop by seconds, never more."""
        if self.connected.is_set() and self._availability:
            offline = self._client.publish(self.topics.availability, "offline", qos=QOS, retain=True)
            offline.wait_for_publish(STOP_SECONDS)
        self.connected.clear()  # a disconnect asked for is no trouble to say
        self._client.disconnect()
        self._client.loop_stop()

    # -- paho's callbacks, on its thread ---------------------------------------------------------

    def _connected(self, client: object, userdata: object, flags: object, reason: object, properties: object) -> None:
        if reason.is_failure:
            self._say(refusal(self._where, reason))
            return
        if self._availability:
            self._client.publish(self.topics.availability, "online", qos=QOS, retain=True)
        if self._subscriptions:  # every connect: the broker hands over the retained messages again
            self._client.subscribe(self._subscriptions)
        self.connected.set()
        logger.info("connected to the MQTT broker %s%s; events go to %s", self._where,
                    " again" if self._said else "", self.topics.events)  # fmt: skip
        self._said = None
        self._on_connected()

    def _unreachable(self, client: object, userdata: object) -> None:
        tls = ", or its TLS certificate is not one mqtt.tls_ca_file trusts" if self._settings.tls_ca_file else ""
        self._say(f"cannot reach the MQTT broker {self._where} (not listening, or not reachable from here{tls})")

    def _disconnected(self, client: object, userdata: object, flags: object, reason: object, properties: object) -> None:
        if self.connected.is_set():
            self.connected.clear()
            self._say(f"lost the connection to the MQTT broker {self._where}: {reason}")

    def _say(self, trouble: str) -> None:
        """Says `trouble` once per outage (or when it changes), with what happens meanwhile."""
        if trouble != self._said:
            logger.error("%s; trying again every %d s at most, and events wait in the log's outbox", trouble,
                         RECONNECT_MAX)  # fmt: skip
            self._said = trouble
