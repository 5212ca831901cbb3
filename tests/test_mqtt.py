"""`[mqtt]` against a real broker: Debian's mosquitto, started here on a free loopback port with a config of its own.

Every event reaches a subscriber (paho, as a hub would be) with the payload the log holds; a broker away, or a
daemon killed mid-publish, delays events and loses none (a copy sent twice is told by its event id, as the hub
will); the last will says "offline"; a password file works, a wrong password is one clear line while files are still
logged; TLS with a CA made here. Skipped where mosquitto or paho-mqtt is absent (the device tier).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import Child, Classifier, wait_until
from mqtt_broker import PASSWORD, USER, Broker, Subscriber, missing

pytestmark = pytest.mark.skipif(bool(missing()), reason=missing() or "")

DEVICE = "box1"


@pytest.fixture()
def hub(broker: Broker) -> Iterator[Subscriber]:
    subscriber = Subscriber(broker.port)
    yield subscriber
    subscriber.close()


def daemon(classifier: Classifier, tmp_path: Path, port: int, *extra: str) -> tuple[Child, Path]:
    """`edgeface watch` of tmp_path/inbox publishing to the broker at `port`, started (not yet ready); the inbox."""
    inbox = tmp_path / "inbox"
    inbox.mkdir(exist_ok=True)
    return Child(tmp_path, "watch", str(inbox), "--model", str(classifier.tflite_file), "--db", str(tmp_path / "log.db"),
                 "--mqtt-host", "127.0.0.1", "--mqtt-port", str(port), "--mqtt-device", DEVICE, *extra), inbox  # fmt: skip


def logged(db: Path) -> list[str]:
    """The paths of the inputs in the log, in the order they were committed."""
    if not db.exists():
        return []
    with contextlib.closing(sqlite3.connect(db)) as connection:
        return [path for (path,) in connection.execute("SELECT path FROM inputs ORDER BY id")]


def waiting(db: Path) -> int:
    with contextlib.closing(sqlite3.connect(db)) as connection:
        return connection.execute("SELECT count(*) FROM outbox").fetchone()[0]


def test_each_file_result_arrives_as_an_event_with_what_the_log_holds(
    broker: Broker, hub: Subscriber, classifier: Classifier, photos: list[bytes], tmp_path: Path
):
    child, inbox = daemon(classifier, tmp_path, broker.port)
    child.ready()
    for name, content in (("a.png", photos[0]), ("b.png", photos[1]), ("broken.png", b"not a picture")):
        (inbox / name).write_bytes(content)
    wait_until(lambda: len(hub.events()) == 3, timeout=30)
    code, stderr = child.stop()
    assert code == 0, stderr
    with contextlib.closing(sqlite3.connect(tmp_path / "log.db")) as connection:
        faces = dict(connection.execute("SELECT i.path, f.label FROM inputs i LEFT JOIN faces f ON f.input_id = i.id"))
        (model,) = connection.execute("SELECT sha256 FROM models").fetchone()
    events = hub.events()
    assert [event["path"] for event in events] == logged(tmp_path / "log.db")  # in commit order
    for event in events:
        assert event["device"] == DEVICE and event["kind"] == "image" and event["source"] == f"folder:{inbox}"
        assert event["model_sha256"] == model and event["time"] and len(event["event_id"]) == 36
        assert [face["label"] for face in event["faces"]] == ([faces[event["path"]]] if faces[event["path"]] else [])
        assert all(set(face) == {"box", "label", "confidence", "unknown", "distance", "rejected", "quality"}
                   and face["rejected"] is None and face["quality"] is None for face in event["faces"])  # no gate
    broken = next(event for event in events if event["path"].endswith("broken.png"))
    assert broken["status"] == "error" and broken["error"] and broken["faces"] == []
    wait_until(lambda: hub.availability()[-1:] == ["offline"])  # a clean stop says so itself
    assert hub.availability()[0] == "online" and waiting(tmp_path / "log.db") == 0  # every event acknowledged


def test_a_broker_away_delays_the_events_and_loses_none(
    classifier: Classifier, photos: list[bytes], tmp_path: Path
):  # fmt: skip
    away = Broker(tmp_path / "broker").start()
    hub = Subscriber(away.port)
    child, inbox = daemon(classifier, tmp_path, away.port)
    try:
        child.ready()
        (inbox / "0.png").write_bytes(photos[0])
        wait_until(lambda: len(hub.events()) == 1, timeout=30)
        away.stop()
        for number in range(1, 6):
            (inbox / f"{number}.png").write_bytes(photos[number])
        wait_until(lambda: len(logged(tmp_path / "log.db")) == 6 and waiting(tmp_path / "log.db") == 5)
        away.start()  # on the same port, with the hub's session kept
        wait_until(lambda: len(hub.events()) == 6, timeout=30)
        code, stderr = child.stop()
    finally:  # a daemon left running fails the test in conftest's leak check, which kills it
        hub.close()
        away.stop()
    assert code == 0, stderr
    assert [event["path"] for event in hub.events()] == logged(tmp_path / "log.db")  # each once, in order
    assert stderr.count("lost the connection to the MQTT broker") == 1, stderr
    assert "connected to the MQTT broker 127.0.0.1" in stderr and " again" in stderr


def test_a_daemon_killed_mid_publish_loses_nothing_and_its_last_will_says_offline(
    broker: Broker, hub: Subscriber, classifier: Classifier, photos: list[bytes], tmp_path: Path
):
    child, inbox = daemon(classifier, tmp_path, broker.port)
    child.ready()
    wait_until(lambda: hub.availability()[-1:] == ["online"])
    os.kill(broker.process.pid, signal.SIGSTOP)  # the broker takes the events in but acknowledges none
    try:
        for number in range(4):
            (inbox / f"{number}.png").write_bytes(photos[number])
        wait_until(lambda: len(logged(tmp_path / "log.db")) == 4)
        child.signal(signal.SIGKILL)
        child.kill()
    finally:
        os.kill(broker.process.pid, signal.SIGCONT)
    wait_until(lambda: hub.availability()[-1:] == ["offline"], timeout=30)  # the last will
    assert waiting(tmp_path / "log.db") == 4  # none was acknowledged: all wait for the next start
    again, _ = daemon(classifier, tmp_path, broker.port)
    again.ready()
    wait_until(lambda: len(hub.events()) == 4 and waiting(tmp_path / "log.db") == 0, timeout=30)
    code, stderr = again.stop()
    assert code == 0, stderr
    assert [event["path"] for event in hub.events()] == logged(tmp_path / "log.db")


def one_event_through(broker: Broker, port: int, classifier: Classifier, photo: bytes, tmp_path: Path,
                      *extra: str) -> tuple[dict, str]:  # fmt: skip
    """Starts a daemon that logs in at `port` with the password file tmp_path/password, writes one photo, waits for
    its event at the hub (which logs in at `broker`'s plain port), stops the daemon; the event and the journal."""
    hub = Subscriber(broker.port, USER)
    child, inbox = daemon(classifier, tmp_path, port, "--mqtt-username", USER,
                          "--mqtt-password-file", str(tmp_path / "password"), *extra)  # fmt: skip
    try:
        child.ready()
        (inbox / "a.png").write_bytes(photo)
        wait_until(lambda: len(hub.events()) == 1, timeout=30)
    finally:
        code, stderr = child.stop()
        hub.close()
    assert code == 0, stderr
    return hub.events()[0], stderr


def test_a_password_file_lets_the_box_in(secured, classifier: Classifier, photos: list[bytes], tmp_path: Path):
    broker, _, _ = secured
    (tmp_path / "password").write_text(PASSWORD + "\n")
    _, stderr = one_event_through(broker, broker.port, classifier, photos[0], tmp_path)
    assert "refused" not in stderr, stderr


def test_a_wrong_password_is_said_once_and_files_are_still_logged(
    secured, classifier: Classifier, photos: list[bytes], tmp_path: Path
):
    broker, _, _ = secured
    (tmp_path / "password").write_text("wrong\n")
    refusals = broker.log.read_text().count("not authorised")
    child, inbox = daemon(classifier, tmp_path, broker.port, "--mqtt-username", USER,
                          "--mqtt-password-file", str(tmp_path / "password"))  # fmt: skip
    child.ready()
    for number in range(2):
        (inbox / f"{number}.png").write_bytes(photos[number])
    wait_until(lambda: len(logged(tmp_path / "log.db")) == 2)
    wait_until(lambda: broker.log.read_text().count("not authorised") >= refusals + 2)  # it has tried again
    code, stderr = child.stop()
    assert code == 0, stderr
    assert stderr.count("refused the connection") == 1, stderr
    assert "the MQTT broker 127.0.0.1:" in stderr and "mqtt.password_file" in stderr
    assert waiting(tmp_path / "log.db") == 2  # kept for when the password is right


def test_tls_with_a_ca_made_here(secured, classifier: Classifier, photos: list[bytes], tmp_path: Path):
    broker, tls_port, ca = secured
    (tmp_path / "password").write_text(PASSWORD)
    event, stderr = one_event_through(broker, tls_port, classifier, photos[0], tmp_path, "--mqtt-tls-ca-file", str(ca))
    assert "cannot reach" not in stderr and event["path"] == str(tmp_path / "inbox" / "a.png"), stderr
