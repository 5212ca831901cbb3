"""Home Assistant's MQTT discovery (`[mqtt] home_assistant = true`) against a real broker: the box's two sensors are
announced with retained configs Home Assistant can use, and their state follows the log after a known face and
after an unknown one. The state's "today" is read from the log: faces before local midnight are not counted.

The embedder fixture (detector none) names lfw_subset's face 0 as person0 and takes face 4 for a stranger. The broker
tests skip where mosquitto or paho-mqtt is absent (the device tier).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest

import edgeface
from edgeface.home_assistant import state
from edgeface.store import ResultLog
from helpers import FIXTURES, Child, run_in_process, wait_until
from mqtt_broker import Broker, Subscriber

EMBEDDER = FIXTURES / "embedder.tflite"
KNOWN, STRANGER = FIXTURES / "held_out" / "face" / "000.png", FIXTURES / "held_out" / "face" / "004.png"
DISCOVERY = "ha-test"  # a discovery prefix of the test's own, as Home Assistant's `discovery_prefix` may be


def daemon(tmp_path: Path, port: int, device: str) -> tuple[Child, Path]:
    """`edgeface watch` of tmp_path/inbox with the embedder, announcing itself to Home Assistant; the inbox."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    return Child(tmp_path, "watch", str(inbox), "--model", str(EMBEDDER), "--db", str(tmp_path / "log.db"),
                 "--mqtt-host", "127.0.0.1", "--mqtt-port", str(port), "--mqtt-device", device,
                 "--mqtt-home-assistant", "--mqtt-home-assistant-prefix", DISCOVERY).ready(), inbox  # fmt: skip


@pytest.fixture()
def home(broker: Broker) -> Iterator[Subscriber]:
    """Home Assistant's side: every message on the broker."""
    subscriber = Subscriber(broker.port, client_id="home-assistant", topics="#")
    yield subscriber
    subscriber.close()


def last(subscriber: Subscriber, topic: str) -> dict | None:
    """The newest JSON payload on `topic`, or None."""
    payloads = [payload for where, payload in list(subscriber.messages) if where == topic]
    return json.loads(payloads[-1]) if payloads else None


def test_discovery_configs_are_retained_and_name_the_box_its_state_and_availability(
    broker: Broker, home: Subscriber, tmp_path: Path
):
    child, _ = daemon(tmp_path, broker.port, "front door")  # a space: Home Assistant's ids take none
    config_topics = [f"{DISCOVERY}/sensor/front_door/{sensor}/config" for sensor in ("last_person", "unknown_today")]
    wait_until(lambda: all(last(home, topic) for topic in config_topics))
    code, stderr = child.stop()
    assert code == 0, stderr
    later = Subscriber(broker.port, client_id="home-assistant-restarted", topics=f"{DISCOVERY}/#")
    try:  # Home Assistant started after the box: the broker kept the configs for it
        wait_until(lambda: all(last(later, topic) for topic in config_topics))
        configs = [last(later, topic) for topic in config_topics]
    finally:
        later.close()
    assert len({config["unique_id"] for config in configs}) == 2
    for config in configs:
        assert config["state_topic"] == "edgeface/front door/state" and config["value_template"].startswith("{{")
        assert config["availability_topic"] == "edgeface/front door/availability"
        assert (config["payload_available"], config["payload_not_available"]) == ("online", "offline")
        assert config["unique_id"].startswith("edgeface_front_door_") and config["name"]
        assert config["device"] == {"identifiers": ["edgeface_front_door"], "name": "edgeface front door",
                                    "manufacturer": "edgeface", "model": "edgeface face recognition",
                                    "sw_version": edgeface.__version__}  # fmt: skip
    assert configs[0]["json_attributes_topic"] == configs[0]["state_topic"]
    assert configs[1]["state_class"] == "total_increasing"


def test_the_state_follows_a_known_face_then_an_unknown_one(broker: Broker, home: Subscriber, tmp_path: Path):
    child, inbox = daemon(tmp_path, broker.port, "hall")
    topic = "edgeface/hall/state"
    wait_until(lambda: last(home, topic) is not None)
    first = last(home, topic)
    assert first["last_person"] is None and first["unknown_today"] == 0 and first["day"] == date.today().isoformat()
    shutil.copy(KNOWN, inbox / "known.png")
    wait_until(lambda: last(home, topic)["last_person"] == "person0")
    known = last(home, topic)
    assert known["unknown_today"] == 0 and known["last_person_source"] == f"folder:{inbox}"
    assert known["last_person_time"]
    shutil.copy(STRANGER, inbox / "stranger.png")
    wait_until(lambda: last(home, topic)["unknown_today"] == 1)
    assert last(home, topic)["last_person"] == "person0"  # a stranger is nobody's last sighting
    code, stderr = child.stop()
    assert code == 0, stderr


def test_unknown_faces_count_from_local_midnight(tmp_path: Path):
    """What the state says on another day, read from the same log: yesterday's faces are not today's."""
    db = tmp_path / "log.db"
    done = run_in_process("scan", str(KNOWN), str(STRANGER), "--model", str(EMBEDDER), "--db", str(db),
                          "--workers", "1")  # fmt: skip
    assert done.returncode == 0, done.stderr
    today = date.today()
    with ResultLog(db) as log:
        now, tomorrow = json.loads(state(log, today)), json.loads(state(log, today + timedelta(days=1)))
    assert (now["last_person"], now["last_person_source"], now["unknown_today"]) == ("person0", "scan", 1)
    assert (tomorrow["last_person"], tomorrow["unknown_today"]) == ("person0", 0)
