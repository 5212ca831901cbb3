"""People shared by a fleet's boxes (`mqtt.share_people`, issue 13).

Without a broker, on real log files (the device tier, where paho-mqtt is absent): enrolling and forgetting queue the
fleet's retained messages in their own transaction, with no photo in them; received enrolments and tombstones are
stored by time, once, and never queued again; hostile messages are refused with a reason, counted, said once. With
a real mosquitto: an enrolment made on one box is used by another, and `forget --person` removes it from both and
from the broker; the sample broker config and ACL start and keep boxes to their own topics.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import socket
import sqlite3
import subprocess
import uuid
from pathlib import Path

import numpy as np
import pytest

from edgeface import fleet_receiver
from edgeface.broker import topics_of
from edgeface.fleet_enrolments import (
    MAX_MESSAGE_BYTES,
    MessageRefused,
    SharedEnrolment,
    Tombstone,
    addressed,
    enrolment_message,
    enrolment_topic,
    received,
    tombstone_topic,
)
from edgeface.fleet_receiver import FleetReceiver, embedder_network
from edgeface.settings import ConfigError, MqttSettings
from edgeface.store import ResultLog
from helpers import FIXTURES, REPO, Child, lfw_face, run_edgeface, wait_until, write_photos
from mqtt_broker import MOSQUITTO_PASSWD, PASSWORD, Broker, Subscriber, free_port, make_ca, missing

NETWORK, FLEET, SIZE = "a" * 64, "edgeface", 128
EMBEDDER = FIXTURES / "embedder.tflite"  # its detector is `none`: each photo is one face crop
NEWCOMER = 10  # lfw_subset's face 10, never in the embedder's own gallery
needs_broker = pytest.mark.skipif(bool(missing()), reason=missing() or "")


def vectors(count: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-0.3, 0.3, (count, SIZE)).astype(np.float32)


def at(hour: int) -> str:
    return f"2026-01-01T{hour:02d}:00:00.000+00:00"


def shared(person: str, when: str, device: str = "box1", seed: int = 1) -> SharedEnrolment:
    return SharedEnrolment(uuid.uuid4().hex, person, NETWORK, vectors(1, seed)[0], when, device)


def queued(db: Path) -> list[tuple[str, str]]:
    """The fleet messages waiting in the log's outbox, as (topic, payload), oldest first; each must be retained."""
    with contextlib.closing(sqlite3.connect(db)) as connection:
        rows = connection.execute("SELECT topic, payload, retain FROM outbox WHERE topic IS NOT NULL ORDER BY id")
        messages = rows.fetchall()
    assert all(retain == 1 for _, _, retain in messages)
    return [(topic, payload) for topic, payload, _ in messages]


def as_received(topic: str, payload: str, device: str = "box1") -> SharedEnrolment | Tombstone | None:
    """A queued message as another box receives it, once the sending box's publisher has addressed it."""
    full_topic, body = addressed(topic, payload, FLEET, device)
    return received(full_topic, body.encode(), FLEET, NETWORK, SIZE)


def test_enrolling_queues_one_retained_message_per_new_embedding_and_no_photo(tmp_path: Path):
    db = tmp_path / "log.db"
    with ResultLog(db) as log:
        assert log.enrol("dana", NETWORK, vectors(2, 1), ["photo-hash", None], "photo") == 2
        assert log.enrol("dana", NETWORK, vectors(1, 1), ["photo-hash"], "photo") == 0  # enrolled already: not sent
    messages = queued(db)
    assert len(messages) == 2
    for (topic, payload), vector in zip(messages, vectors(2, 1)):
        message = json.loads(payload)
        assert topic == enrolment_topic(NETWORK, message["enrolment_id"])
        assert set(message) == {"enrolment_id", "person", "network", "dimensions", "embedding", "enrolled_at", "device"}
        assert message["device"] is None and message["dimensions"] == SIZE and "photo-hash" not in payload
        copy = as_received(topic, payload)
        assert copy.device == "box1" and copy.person == "dana" and np.array_equal(copy.embedding, vector)


def test_forgetting_empties_the_enrolments_topics_queues_a_tombstone_and_drops_waiting_copies(tmp_path: Path):
    db = tmp_path / "log.db"
    dana = vectors(3, 7)
    with ResultLog(db) as log:
        log.enrol("dana", NETWORK, dana, ["p1", "p2", "p3"], "photo")
        log.enrol("erin", NETWORK, vectors(1, 8), ["p4"], "photo")
        topics = [topic for topic, payload in queued(db) if json.loads(payload)["person"] == "dana"]
        assert log.forget_person("dana") == 3
        assert list(log.tombstones()) == ["dana"]
    messages = queued(db)
    assert [topic for topic, payload in messages if payload == ""] == topics  # each emptied on the broker
    assert [json.loads(payload)["person"] for topic, payload in messages if payload] == ["erin", "dana"]
    tombstone = as_received(*messages[-1])
    assert messages[-1][0] == "forgotten/person/dana" and isinstance(tombstone, Tombstone)
    stored = b"".join(path.read_bytes() for path in tmp_path.iterdir())
    assert not any(base64.b64encode(vector.astype("<f4").tobytes())[:40] in stored for vector in dana)


def test_a_received_enrolment_is_stored_once_with_its_device_and_never_sent_again(tmp_path: Path):
    with ResultLog(tmp_path / "log.db") as log:
        version = log.gallery_version()
        copy = shared("dana", at(9))
        assert log.receive_enrolment(copy) and not log.receive_enrolment(copy)
        assert log.gallery_version() == version + 1  # a duplicate changes nothing, so the daemon reloads nothing
        log.enrol("erin", NETWORK, vectors(1, 2), ["p"], "photo")
        (mine,) = queued(tmp_path / "log.db")
        assert not log.receive_enrolment(as_received(*mine, device="this-box"))  # its own, coming back
        assert log.enrolments(NETWORK).gallery.names == ("dana", "erin")
        assert [(row["person"], row["device"]) for row in log.people()] == [("dana", "box1"), ("erin", None)]
    assert len(queued(tmp_path / "log.db")) == 1  # what was received is not echoed


def test_times_decide_between_enrolments_and_tombstones_whatever_order_they_come_in(tmp_path: Path):
    with ResultLog(tmp_path / "a.db") as log, ResultLog(tmp_path / "b.db") as other:
        assert log.receive_tombstone(Tombstone("dana", at(10), "box2"))
        assert not log.receive_enrolment(shared("dana", at(9)))  # enrolled before the forget: a late copy
        later = shared("dana", at(11))
        assert log.receive_enrolment(later)  # enrolled again after it
        assert not log.receive_tombstone(Tombstone("dana", at(10), "box3"))  # known already
        assert log.enrolments(NETWORK).gallery.names == ("dana",)
        assert log.receive_tombstone(Tombstone("dana", at(12), "box3"))
        assert log.enrolments(NETWORK).gallery is None and log.hidden_people() == ["dana"]
        log.enrol("erin", NETWORK, vectors(1, 3), ["p"], "photo")  # now, by this box's clock
        log.receive_tombstone(Tombstone("erin", "2000-01-01T00:00:00.000+00:00", "box2"))
        assert log.enrolments(NETWORK).gallery.names == ("erin",)  # a tombstone older than the enrolment
        log.receive_tombstone(Tombstone("erin", "2999-01-01T00:00:00.000+00:00", "box2"))
        assert log.enrolments(NETWORK).gallery is None
        for tombstone in (Tombstone("dana", at(12)), Tombstone("dana", at(10)), Tombstone("erin", at(1))):
            other.receive_tombstone(tombstone)  # two boxes forgetting one person converge on the latest time
        assert other.tombstones()["dana"] == log.tombstones()["dana"] == at(12)
    assert len(queued(tmp_path / "a.db")) == 1  # erin's own enrolment; nothing received is sent again


def message_of(enrolment: SharedEnrolment, **changes: object) -> bytes:
    return json.dumps({**json.loads(enrolment_message(enrolment)), **changes}).encode()


GOOD = SharedEnrolment("0" * 32, "dana", NETWORK, vectors(1, 1)[0], at(9), "box1")
TOPIC = f"{FLEET}/enrolments/{NETWORK}/{'0' * 32}"


@pytest.mark.parametrize(("topic", "payload", "reason"), [
    (TOPIC, b"{" * (MAX_MESSAGE_BYTES + 1), "larger than"),
    (TOPIC, b"\xff\xfe", "not JSON"),
    (TOPIC, b"[1, 2]", "not a JSON object"),
    ("elsewhere/enrolments/x/y", message_of(GOOD), "not on the fleet's topics"),
    (f"{FLEET}/enrolments/{'b' * 64}/{'0' * 32}", message_of(GOOD), "does not name its network and id"),
    (f"{FLEET}/enrolments/{NETWORK}/{'1' * 32}", message_of(GOOD), "does not name its network and id"),
    (TOPIC, message_of(GOOD, network="b" * 64), "does not name its network and id"),
    (TOPIC, message_of(GOOD, enrolment_id="../x"), "enrolment_id"),
    (TOPIC, message_of(GOOD, dimensions=64), "128 values"),
    (TOPIC, message_of(GOOD, embedding="!!"), "not base64"),
    (TOPIC, message_of(GOOD, embedding=base64.b64encode(bytes(8)).decode()), "128 values"),
    (TOPIC, message_of(GOOD, embedding=base64.b64encode(np.full(SIZE, np.nan, "<f4").tobytes()).decode()),
     "not finite"),
    (TOPIC, message_of(GOOD, person="eve\n2026 alice"), "control characters"),
    (TOPIC, message_of(GOOD, person=""), "1 to 100 characters"),
    (TOPIC, message_of(GOOD, enrolled_at="2026-01-01T09:00:00"), "offset from UTC"),
    (TOPIC, message_of(GOOD, enrolled_at=12), "offset from UTC"),
    (TOPIC, message_of(GOOD, device=None), "its device"),
    (f"{FLEET}/forgotten/person/mallory", b'{"person": "dana", "forgotten_at": "2026-01-01T00:00:00+00:00", "device": "x"}',
     "does not name the person"),
    (f"{FLEET}/other/thing", b"{}", "not an enrolment or a tombstone"),
])  # fmt: skip
def test_received_messages_are_hostile_input(topic: str, payload: bytes, reason: str):
    with pytest.raises(MessageRefused, match=reason):
        received(topic, payload, FLEET, NETWORK, SIZE)


def test_what_a_box_accepts_and_the_emptied_topic():
    assert received(TOPIC, message_of(GOOD), FLEET, NETWORK, SIZE).enrolled_at == at(9)
    assert received(TOPIC, b"", FLEET, NETWORK, SIZE) is None  # a forget emptied the retained topic
    name = "a/b+#ü"  # a name may hold what MQTT reserves: percent-encoded in the topic
    tombstone = received(f"{FLEET}/forgotten/person/a%2Fb%2B%23%C3%BC", json.dumps(
        {"person": name, "forgotten_at": "2026-01-01T01:00:00+01:00", "device": "box2"}).encode(), FLEET, NETWORK, SIZE)
    assert tombstone == Tombstone(name, "2026-01-01T00:00:00.000+00:00", "box2")  # in the log's own time format


@pytest.mark.parametrize("person", ["events", "availability", "state", "x"])
def test_no_shared_topic_has_the_shape_of_a_boxs_own(person: str):
    """A box's topics are PREFIX/DEVICE/events (three levels with the default prefix), which the hub and Home
    Assistant read with `edgeface/+/events`; a shared topic has four, so no person's name reaches them."""
    shared = [f"edgeface/{tombstone_topic(person)}", f"edgeface/{enrolment_topic(NETWORK, uuid.uuid4().hex)}"]
    assert [len(topic.split("/")) for topic in shared] == [4, 4]


def test_the_receiver_counts_bad_messages_says_each_kind_once_and_bounds_what_waits(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
):
    receiver = FleetReceiver(FLEET, NETWORK, SIZE, lambda: None)
    assert receiver.subscriptions == [f"{FLEET}/enrolments/{NETWORK}/+", f"{FLEET}/forgotten/person/+"]
    for _ in range(3):
        receiver.heard(TOPIC, b"not json")
    receiver.heard(TOPIC, message_of(GOOD))
    with caplog.at_level(logging.INFO, logger="edgeface.mqtt"), ResultLog(tmp_path / "log.db") as log:
        receiver.take_in(log)
        assert log.enrolments(NETWORK).gallery.names == ("dana",)
        monkeypatch.setattr(fleet_receiver, "MAX_WAITING_BYTES", 2 * len(message_of(GOOD)) - 1)
        receiver.heard(TOPIC, message_of(GOOD))
        receiver.heard(TOPIC, message_of(GOOD))  # over the bound: dropped
        receiver.take_in(log)
    assert receiver.refused == 3 and caplog.text.count("refused a message from the fleet") == 1
    assert "took in from the fleet: 1 enrolled embeddings" in caplog.text and "dropped 1 messages" in caplog.text


def test_only_an_embedder_listens_and_no_box_publishes_inside_the_shared_topics(classifier):
    network, size = embedder_network(EMBEDDER)
    assert len(network) == 64 and size == SIZE and embedder_network(classifier.tflite_file) is None
    with pytest.raises(ConfigError, match="inside the fleet's shared topics"):
        topics_of(MqttSettings(host="h", device="enrolments"))
    with pytest.raises(ConfigError, match="mqtt.fleet_prefix"):
        topics_of(MqttSettings(host="h", fleet_prefix="edgeface/#"))
    assert topics_of(MqttSettings(host="h", device="door1", fleet_prefix="acme")).fleet == "acme"


def test_the_outbox_bound_drops_events_never_fleet_messages(tmp_path: Path):
    with ResultLog(tmp_path / "log.db") as log:
        log.enrol("dana", NETWORK, vectors(1, 1), ["p"], "photo")
        log.record_batch([], "folder:/in", log.register_model("ab" * 32, "m.tflite", ("a",)),
                         events=[f'"{n}"' for n in range(4)])  # fmt: skip
        assert log.outbox_trim(1) == 3
        assert [topic is None for _, _, topic, _ in log.outbox_after(0, 10)] == [False, True]
        assert [payload for _, payload, _, _ in log.outbox_after(0, 10, fleet=False)] == ['"3"']


# -- with a real broker ----------------------------------------------------------------------------------------


def box(tmp_path: Path, name: str, port: int) -> tuple[Child, Path, Path]:
    """`edgeface watch` of an inbox of its own with the test embedder, sharing people as device `name`, started (not
    yet ready); its inbox and log."""
    folder = tmp_path / name
    (folder / "inbox").mkdir(parents=True)
    child = Child(folder, "watch", str(folder / "inbox"), "--model", str(EMBEDDER), "--db", str(folder / "log.db"),
                  "--mqtt-host", "127.0.0.1", "--mqtt-port", str(port), "--mqtt-device", name,
                  "--mqtt-share-people")  # fmt: skip
    return child, folder / "inbox", folder / "log.db"


def enrolled(db: Path) -> dict[str, int]:
    if not db.exists():
        return {}
    with contextlib.closing(sqlite3.connect(db)) as connection:
        return dict(connection.execute("SELECT person, count(*) FROM enrolments GROUP BY person"))


def label_of(db: Path, name: str) -> tuple[str, int] | None:
    """(label, unknown) of the face in the photo `name` once the log has it."""
    with contextlib.closing(sqlite3.connect(db)) as connection:
        return connection.execute("SELECT f.label, f.unknown FROM inputs i JOIN faces f ON f.input_id = i.id "
                                  "WHERE i.path LIKE ?", (f"%/{name}",)).fetchone()  # fmt: skip


def retained(port: int, topics: str) -> dict[str, str]:
    """The retained messages under `topics` at the broker, by topic. All of them: a message the subscriber sends
    itself after subscribing comes back after every retained one the broker queued at the subscription."""
    listener = Subscriber(port, client_id=f"look-{uuid.uuid4().hex[:8]}", topics=topics)
    sentinel = topics.replace("#", "sentinel")
    try:
        listener.client.publish(sentinel, "end", qos=1)
        wait_until(lambda: (sentinel, "end") in listener.messages, timeout=10)
    finally:
        listener.close()
    return {topic: payload for topic, payload in listener.messages if topic != sentinel}


@needs_broker
def test_a_person_enrolled_on_one_box_is_named_by_another_until_forgotten(broker: Broker, tmp_path: Path):
    rng = np.random.default_rng(3)
    photos = tmp_path / "dana"
    write_photos(photos, lfw_face(NEWCOMER), 3, rng)
    (first, _, db1), (second, inbox2, db2) = box(tmp_path, "box1", broker.port), box(tmp_path, "box2", broker.port)
    first.ready()
    second.ready()

    def known_to_box2(people: int) -> None:
        """Waits until box2's daemon has said that its gallery now holds `people` people."""
        wait_until(lambda: f"people enrolled or forgotten: {people} people known now" in second.stderr(), timeout=30)

    enrol = run_edgeface("enroll", "dana", str(photos), "--model", str(EMBEDDER), "--db", str(db1), "--json")
    assert enrol.returncode == 0, enrol.stderr
    wait_until(lambda: enrolled(db2) == {"dana": 3}, timeout=30)
    known_to_box2(5)  # the model's 4 people and dana
    write_photos(inbox2, lfw_face(NEWCOMER), 1, rng, prefix="enrolled-")
    wait_until(lambda: label_of(db2, "enrolled-00.png") is not None)
    people = run_edgeface("people", "--db", str(db2), "--json")
    assert [(row["person"], row["device"], row["embeddings"]) for row in map(json.loads, people.stdout.splitlines())] \
        == [("dana", "box1", 3)]  # fmt: skip

    forget = run_edgeface("forget", "--person", "dana", "--db", str(db1))
    assert forget.returncode == 0, forget.stderr
    wait_until(lambda: enrolled(db2) == {}, timeout=30)
    known_to_box2(4)
    write_photos(inbox2, lfw_face(NEWCOMER), 1, rng, prefix="forgotten-")
    wait_until(lambda: label_of(db2, "forgotten-00.png") is not None)
    left = retained(broker.port, f"{FLEET}/#")
    results = [first.stop(), second.stop()]
    assert all(code == 0 for code, _ in results), results
    assert label_of(db2, "enrolled-00.png") == ("dana", 0) and label_of(db2, "forgotten-00.png")[1] == 1
    assert enrolled(db1) == {} and "refused" not in results[1][1]
    assert not [topic for topic, payload in left.items() if "/enrolments/" in topic and payload]  # a late box gets none
    assert json.loads(left[f"{FLEET}/forgotten/person/dana"])["device"] == "box1"


@needs_broker
def test_a_person_enrolled_at_the_hub_reaches_the_boxes(broker: Broker, tmp_path: Path):
    """`edgeface enroll --db fleet.db` at the hub, whose `--share-people` sends it as a box would."""
    photos, fleet = tmp_path / "dana", tmp_path / "fleet.db"
    write_photos(photos, lfw_face(NEWCOMER), 2, np.random.default_rng(4))
    enrol = run_edgeface("enroll", "dana", str(photos), "--model", str(EMBEDDER), "--db", str(fleet))
    assert enrol.returncode == 0, enrol.stderr
    hub = Child(tmp_path, "hub", "--db", str(fleet), "--host", "127.0.0.1", "--port", str(broker.port),
                "--client-id", "hub-people-test", "--share-people")  # fmt: skip
    door, _, db = box(tmp_path, "door", broker.port)
    hub.ready()
    door.ready()
    wait_until(lambda: enrolled(db) == {"dana": 2}, timeout=30)
    results = [door.stop(), hub.stop()]
    assert all(code == 0 for code, _ in results), results
    people = run_edgeface("people", "--db", str(db), "--json")
    assert [json.loads(line)["device"] for line in people.stdout.splitlines()] == [socket.gethostname()]


@needs_broker
def test_the_sample_broker_config_starts_and_keeps_each_box_to_its_own_topics(tmp_path: Path):
    """examples/mosquitto/ with its files made here (CA, passwords), its TLS listener moved to a free port, and the
    Broker helper's plain listener beside it for the clients."""
    make_ca(tmp_path)  # ca.pem, server.pem and server-key.pem, the names the sample gives
    tls_port = free_port()
    for index, user in enumerate(("door1", "door2", "hub")):
        subprocess.run([MOSQUITTO_PASSWD, *(["-c"] if index == 0 else []), "-b", str(tmp_path / "passwords"), user,
                        PASSWORD], check=True, capture_output=True)  # fmt: skip
    (tmp_path / "edgeface.acl").write_text((REPO / "examples" / "mosquitto" / "edgeface.acl").read_text())
    config = (REPO / "examples" / "mosquitto" / "edgeface.conf").read_text()
    config = config.replace("/etc/mosquitto/edgeface/", f"{tmp_path}/")
    config = config.replace("listener 8883", f"listener {tls_port} 127.0.0.1")
    running = Broker(tmp_path / "broker", config).start()
    hub = Subscriber(running.port, "hub", client_id="hub", topics="edgeface/#")
    door1 = Subscriber(running.port, "door1", client_id="door1", topics="edgeface/enrolments/#")
    try:
        for topic, payload in (("edgeface/door2/events", "forged"), ("edgeface/door1/events", "mine"),
                               ("edgeface/enrolments/x/y", "shared")):  # fmt: skip
            door1.client.publish(topic, payload, qos=1).wait_for_publish(10)
        wait_until(lambda: ("edgeface/door1/events", "mine") in hub.messages, timeout=10)
        wait_until(lambda: ("edgeface/enrolments/x/y", "shared") in door1.messages, timeout=10)
    finally:
        hub.close()
        door1.close()
        running.stop()
    assert hub.messages == [("edgeface/door1/events", "mine")]  # neither another box's topic nor an embedding
    assert "Opening ipv4 listen socket on port " + str(tls_port) in running.log.read_text()
