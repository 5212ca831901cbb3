"""The hub's link to the MQTT broker: a subscription whose messages the broker keeps until the hub says it has them.

MQTT 5, for two things 3.1.1 cannot ask: a session that never expires (with clean start off, every connect takes
up the same session, so events published while the hub is away, or restarting, wait at the broker), and a receive
maximum, RECEIVE_MAXIMUM messages in flight to the hub rather than the broker's default (mosquitto: 20), so one
transaction can take hundreds. Acknowledgements are manual: `ack` sends PUBACK for messages whose rows have
committed, in the order they came, as MQTT wants; a message not acknowledged (the hub was killed first) comes again.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from edgeface.broker import RECONNECT_MAX, client_for, refusal
from edgeface.settings import MqttSettings

if TYPE_CHECKING:
    import paho.mqtt.client as mqtt

logger = logging.getLogger("edgeface.hub")

QOS = 1  # at least once: what is not acknowledged comes again, and the hub drops copies by event id
RECEIVE_MAXIMUM = 1000  # messages the broker may send before the first is acknowledged: the largest batch
MQTT_5 = 5  # paho's MQTTv5: the protocol level, known here without paho
SESSION_NEVER_EXPIRES = 0xFFFFFFFF  # MQTT 5's session expiry interval that means "keep it until the hub returns"


@dataclass(frozen=True)
class Message:
    """One message as paho gave it; `link` counts connections, so an acknowledgement for a message of an earlier
    connection is not sent on a later one (the broker sends that message again, and the copy is acknowledged)."""

    mid: int
    qos: int
    topic: str
    payload: bytes
    link: int


class HubLink:
    """paho's client for the hub: `start`, messages on `inbox` as they come, `ack` once they are stored, `stop`.

    `subscribed` is set once the broker has confirmed the subscription (from then on no event is missed).
    """

    def __init__(self, settings: MqttSettings, client_id: str, topics: Sequence[str], inbox: queue.Queue) -> None:
        self._settings, self._topics, self._inbox = settings, list(topics), inbox
        self._where = f"{settings.host}:{settings.port}"
        self.subscribed, self.connected = threading.Event(), threading.Event()
        self._link = 0
        self._said: str | None = None  # the trouble last said in the journal, until the link works again
        self._client = client_for(settings, client_id, protocol=MQTT_5, manual_ack=True)
        self._client.on_connect = self._on_connect
        self._client.on_connect_fail = lambda client, userdata: self._say(f"cannot reach the MQTT broker {self._where}")
        self._client.on_disconnect = self._on_disconnect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message

    def start(self) -> None:
        """Connects in the background (paho's thread), retrying until `stop`."""
        from paho.mqtt.packettypes import PacketTypes  # optional, as in broker.paho_client: the client is made
        from paho.mqtt.properties import Properties

        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = SESSION_NEVER_EXPIRES
        properties.ReceiveMaximum = RECEIVE_MAXIMUM
        self._client.connect_async(self._settings.host, self._settings.port, keepalive=self._settings.keepalive,
                                   clean_start=False, properties=properties)  # fmt: skip
        self._client.loop_start()

    def ack(self, messages: Sequence[Message]) -> None:
        """Tells the broker the hub has these messages (committed), in their order; those of an earlier connection
        are left to come again."""
        for message in messages:
            if message.qos and message.link == self._link:
                self._client.ack(message.mid, message.qos)

    def stop(self) -> None:
        """Disconnects (the acknowledgements sent before go out first) and ends paho's thread; the session stays."""
        self.connected.clear()
        self._client.disconnect()
        self._client.loop_stop()

    # -- paho's callbacks, on its thread ---------------------------------------------------------

    def _on_connect(self, client: object, userdata: object, flags: object, reason: object, properties: object) -> None:
        if reason.is_failure:
            self._say(refusal(self._where, reason))
            return
        self._link += 1
        self.connected.set()
        self._client.subscribe([(topic, QOS) for topic in self._topics])
        logger.info("connected to the MQTT broker %s%s", self._where, " again" if self._said else "")
        self._said = None

    def _on_subscribe(self, client: object, userdata: object, mid: int, reasons: list, properties: object) -> None:
        refused = [f"{topic} ({reason})" for topic, reason in zip(self._topics, reasons) if reason.is_failure]
        if refused:
            self._say(f"the MQTT broker {self._where} refused the subscription to {', '.join(refused)} (see its ACL)")
            return
        logger.info("subscribed to %s", ", ".join(self._topics))
        self.subscribed.set()

    def _on_disconnect(self, client: object, userdata: object, flags: object, reason: object,
                       properties: object) -> None:  # fmt: skip
        if self.connected.is_set():
            self.connected.clear()
            self._say(f"lost the connection to the MQTT broker {self._where}: {reason}")

    def _on_message(self, client: object, userdata: object, message: mqtt.MQTTMessage) -> None:
        try:
            topic = message.topic
        except UnicodeDecodeError:  # a topic that is not UTF-8: its message is still taken, and acknowledged
            topic = "(a topic that is not UTF-8)"
        self._inbox.put(Message(message.mid, message.qos, topic, message.payload, self._link))

    def _say(self, trouble: str) -> None:
        """Says `trouble` once per outage (or when it changes)."""
        if trouble != self._said:
            logger.error("%s; trying again every %d s at most, and the broker keeps the events for the hub", trouble,
                         RECONNECT_MAX)  # fmt: skip
            self._said = trouble
