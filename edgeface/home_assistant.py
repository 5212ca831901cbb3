"""Home Assistant's view of a box (`[mqtt] home_assistant = true`): MQTT discovery, and the state it shows.

Home Assistant makes an entity of each retained config message under `<discovery prefix>/<component>/<node id>/
<object id>/config` (its MQTT discovery). Each box is one device with two sensors: the last person recognised (with
when and where as attributes) and the faces the unknown rule rejected today, local time. Both read one retained JSON
document on `<topic prefix>/state` and go unavailable with the box's own availability topic (its last will).

The state is read from the log on the publisher's thread, never the daemon's: after a commit (at most once every
STATE_MIN_SECONDS, so a busy folder does not send one per batch), at each connect, and at the first look (once a
second) after local midnight, so "today" starts again within a second of it. It is
not kept in the outbox: a state lost with the link is replaced by the next one.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from datetime import date, datetime

import edgeface
from edgeface.broker import BrokerLink, Topics
from edgeface.clock import log_time
from edgeface.store import ResultLog

STATE_MIN_SECONDS = 1.0  # a new state after a commit waits this long after the last one


@dataclass(frozen=True)
class Sensor:
    """One sensor of the box: its object id, name, value and attributes (templates over the state document), and
    other discovery fields."""

    object_id: str
    name: str
    value_template: str
    attributes_template: str | None = None
    extra: tuple[tuple[str, str], ...] = ()


SENSORS = (
    Sensor("last_person", "Last person recognised", "{{ value_json.last_person or 'nobody yet' }}",
           "{{ {'time': value_json.last_person_time, 'source': value_json.last_person_source} | tojson }}",
           (("icon", "mdi:face-recognition"),)),
    Sensor("unknown_today", "Unknown faces today", "{{ value_json.unknown_today }}",
           extra=(("icon", "mdi:account-question"), ("unit_of_measurement", "faces"),
                  ("state_class", "total_increasing"))),
)  # fmt: skip


def node_id(device: str) -> str:
    """`device` as Home Assistant takes it in a discovery topic and in ids: letters, digits, _ and - only."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", device)


def state_topic(topics: Topics) -> str:
    return f"{topics.prefix}/state"


def discovery(topics: Topics, discovery_prefix: str) -> list[tuple[str, str]]:
    """(topic, JSON config) of each sensor of the box, to publish retained."""
    node = node_id(topics.device)
    device = {"identifiers": [f"edgeface_{node}"], "name": f"edgeface {topics.device}", "manufacturer": "edgeface",
              "model": "edgeface face recognition", "sw_version": edgeface.__version__}  # fmt: skip
    configs = []
    for sensor in SENSORS:
        config = {"name": sensor.name, "unique_id": f"edgeface_{node}_{sensor.object_id}", "device": device,
                  "state_topic": state_topic(topics), "value_template": sensor.value_template,
                  "availability_topic": topics.availability, "payload_available": "online",
                  "payload_not_available": "offline", **dict(sensor.extra)}  # fmt: skip
        if sensor.attributes_template:
            config.update(json_attributes_topic=state_topic(topics), json_attributes_template=sensor.attributes_template)
        configs.append((f"{discovery_prefix}/sensor/{node}/{sensor.object_id}/config", json.dumps(config)))
    return configs


def state(log: ResultLog, day: date) -> str:
    """The state document: the last person recognised (null before anyone), when and where, and the unknown faces
    since the start of local `day`."""
    last = log.last_recognised() or {}
    midnight = log_time(datetime(day.year, day.month, day.day).astimezone())  # local midnight, as the log writes times
    return json.dumps({"last_person": last.get("person"), "last_person_time": last.get("time"),
                       "last_person_source": last.get("source"), "unknown_today": log.unknown_since(midnight),
                       "day": day.isoformat()})  # fmt: skip


class HomeAssistant:
    """The publisher's Home Assistant part: `connected` and `committed` note (any thread), `pump` publishes on the
    publisher's thread while the link is up."""

    def __init__(self, topics: Topics, discovery_prefix: str) -> None:
        self._configs = discovery(topics, discovery_prefix)
        self._state_topic = state_topic(topics)
        self._announce = self._stale = False
        self._day: date | None = None  # the local day of the state last published
        self._sent_at = -STATE_MIN_SECONDS  # time.monotonic() of the last state published

    def connected(self) -> None:
        """The link is (again) up: the configs and the state go out at the next pump."""
        self._announce = True

    def committed(self) -> None:
        """The log has new outcomes: the state goes out at the next pump."""
        self._stale = True

    def pump(self, log: ResultLog, link: BrokerLink) -> None:
        today = date.today()
        announce, self._announce = self._announce, False
        if announce:
            for topic, config in self._configs:
                link.publish_retained(topic, config)
        due = self._stale and time.monotonic() - self._sent_at >= STATE_MIN_SECONDS
        if announce or due or today != self._day:
            self._stale = False
            link.publish_retained(self._state_topic, state(log, today))
            self._day, self._sent_at = today, time.monotonic()
