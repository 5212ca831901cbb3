"""`edgeface hub` against a real broker (Debian's mosquitto) and real daemons: every box's events end in one log
once each, whatever restarts: the broker's, a daemon killed mid-publish, the hub's own SIGKILL; hostile messages are
counted, not fatal. Skipped where mosquitto or paho-mqtt is absent (the device tier)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import uuid
from pathlib import Path

import pytest

from helpers import REPO, Child, Classifier, run_in_process, wait_until
from mqtt_broker import PASSWORD, USER, Broker, free_port, missing

pytestmark = pytest.mark.skipif(bool(missing()), reason=missing() or "")

if not missing():
    import paho.mqtt.client as mqtt


def hub(tmp_path: Path, port: int, *extra: str, env: dict | None = None) -> Child:
    """`edgeface hub` into tmp_path/fleet.db from the broker at `port`, with a session of this test's own; not
    waited for."""
    return Child(tmp_path, "hub", "--db", str(tmp_path / "fleet.db"), "--host", "127.0.0.1", "--port", str(port),
                 "--client-id", f"hub-{tmp_path.name}", *extra, env=env)  # fmt: skip


def subscribed(central: Child) -> Child:
    """`central` once its STATUS= says it is subscribed, READY=1 having come first (READY only says the log is open
    and the link started: a hub is ready while its broker is away)."""
    try:
        central.notifications.wait_for("STATUS=subscribed to ")
    except AssertionError:
        central.kill()
        raise AssertionError(f"not subscribed: {central.stderr()}") from None
    assert "READY=1" in central.notifications.seen[0], central.notifications.seen
    return central


def daemon(classifier: Classifier, folder: Path, port: int, device: str) -> tuple[Child, Path]:
    """`edgeface watch` of folder/inbox into folder/log.db, publishing as `device`; ready; the inbox."""
    inbox = folder / "inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    child = Child(folder, "watch", str(inbox), "--model", str(classifier.tflite_file), "--db", str(folder / "log.db"),
                  "--mqtt-host", "127.0.0.1", "--mqtt-port", str(port), "--mqtt-device", device)  # fmt: skip
    return child.ready(), inbox


def query(db: Path, sql: str) -> list[tuple]:
    if not db.exists():
        return []
    with contextlib.closing(sqlite3.connect(db)) as connection:
        return connection.execute(sql).fetchall()


def box_rows(folder: Path) -> list[tuple]:
    """A box's own inputs as the hub should hold them: (path, status, faces' labels)."""
    return sorted(query(folder / "log.db", "SELECT i.path, i.status, group_concat(f.label) FROM inputs i "
                                           "LEFT JOIN faces f ON f.input_id = i.id GROUP BY i.id"))  # fmt: skip


def hub_rows(tmp_path: Path, device: str) -> list[tuple]:
    return sorted(query(tmp_path / "fleet.db", "SELECT i.path, i.status, group_concat(f.label) FROM inputs i LEFT "
                                               f"JOIN faces f ON f.input_id = i.id WHERE device = '{device}' "
                                               "GROUP BY i.id"))  # fmt: skip


def received(tmp_path: Path) -> int:
    counted = query(tmp_path / "fleet.db", "SELECT count(*) FROM received")
    return counted[0][0] if counted else 0


def all_there(tmp_path: Path, folder: Path, device: str, count: int) -> bool:
    """Whether the box at `folder` has logged `count` inputs and the hub holds exactly those."""
    return len(box_rows(folder)) == count and hub_rows(tmp_path, device) == box_rows(folder)


def stopped(child: Child) -> str:
    code, stderr = child.stop()
    assert code == 0, stderr
    return stderr


def test_two_boxes_events_arrive_once_each_and_log_device_tells_them_apart(
    broker: Broker, classifier: Classifier, photos: list[bytes], tmp_path: Path
):
    central = subscribed(hub(tmp_path, broker.port))
    door1, inbox1 = daemon(classifier, tmp_path / "door1", broker.port, "door1")
    door2, inbox2 = daemon(classifier, tmp_path / "door2", broker.port, "door2")
    for number in range(3):  # the same names on both boxes: two inputs at the hub, not one
        (inbox1 / f"{number}.png").write_bytes(photos[number])
        (inbox2 / f"{number}.png").write_bytes(photos[10 + number])
    (inbox2 / "broken.png").write_bytes(b"not a picture")
    wait_until(lambda: all_there(tmp_path, tmp_path / "door1", "door1", 3)
               and all_there(tmp_path, tmp_path / "door2", "door2", 4), timeout=30)  # fmt: skip
    stopped(door1), stopped(door2)
    journal = stopped(central)
    assert received(tmp_path) == 7 and "7 events kept, 0 copies dropped, 0 bad messages" in journal, journal
    shown = run_in_process("log", "--db", str(tmp_path / "fleet.db"), "--device", "door2", "--json")
    rows = [json.loads(line) for line in shown.stdout.splitlines()]
    assert {row["device"] for row in rows} == {"door2"} and len(rows) == 4, shown
    assert {row["path"] for row in rows} == {str(tmp_path / "door2" / "inbox" / name)
                                             for name in ("0.png", "1.png", "2.png", "broken.png")}  # fmt: skip


def test_a_site_broker_bridged_by_the_sample_config_carries_its_boxes_events_to_the_hub(
    secured, classifier: Classifier, photos: list[bytes], tmp_path: Path
):
    """examples/mosquitto/bridge.conf on a site's broker, bridged over TLS with a login to a central broker (the
    `secured` fixture) where the hub reads; only the address, the CA file and the password are this test's."""
    central, tls_port, ca = secured
    config = (REPO / "examples" / "mosquitto" / "bridge.conf").read_text()
    for sample, here in (("central.example.org:8883", f"127.0.0.1:{tls_port}"), ("/etc/mosquitto/edgeface/ca.pem",
                         str(ca)), ("remote_username site1", f"remote_username {USER}"),
                         ("remote_password CHANGE-ME", f"remote_password {PASSWORD}")):  # fmt: skip
        assert sample in config
        config = config.replace(sample, here)
    site = Broker(tmp_path / "site", "allow_anonymous true\n" + config).start()
    (tmp_path / "password").write_text(PASSWORD)
    (tmp_path / "hub.toml").write_text(f'[mqtt]\nhost = "127.0.0.1"\nport = {central.port}\nusername = "{USER}"\n'
                                       f'password_file = "{tmp_path / "password"}"\n')  # fmt: skip
    try:
        central_hub = subscribed(hub(tmp_path, central.port, "--config", str(tmp_path / "hub.toml")))
        door, inbox = daemon(classifier, tmp_path / "door", site.port, "door")
        for number in range(3):
            (inbox / f"{number}.png").write_bytes(photos[number])
        wait_until(lambda: all_there(tmp_path, tmp_path / "door", "door", 3), timeout=30)
        stopped(door)
        journal = stopped(central_hub)
    finally:
        site.stop()
    assert "3 events kept, 0 copies dropped, 0 bad messages" in journal, journal


def test_a_broker_stopped_and_restarted_loses_and_doubles_nothing(
    classifier: Classifier, photos: list[bytes], tmp_path: Path
):  # fmt: skip
    away = Broker(tmp_path / "broker").start()
    central = box = None
    try:
        central = subscribed(hub(tmp_path, away.port))
        box, inbox = daemon(classifier, tmp_path / "door1", away.port, "door1")
        (inbox / "0.png").write_bytes(photos[0])
        wait_until(lambda: all_there(tmp_path, tmp_path / "door1", "door1", 1), timeout=30)
        away.stop()
        for number in range(1, 6):
            (inbox / f"{number}.png").write_bytes(photos[number])
        wait_until(lambda: len(box_rows(tmp_path / "door1")) == 6)
        away.start()  # on the same port, with the hub's session and the events it held
        wait_until(lambda: all_there(tmp_path, tmp_path / "door1", "door1", 6), timeout=30)
        stopped(box)
        journal = stopped(central)
    finally:  # a daemon left running fails the test in conftest's leak check, which kills it
        away.stop()
    assert received(tmp_path) == 6, journal
    assert journal.count("lost the connection to the MQTT broker") == 1 and "connected to the MQTT broker" in journal
    assert " again" in journal, journal


def test_a_hub_started_before_its_broker_is_ready_waits_for_it_and_then_keeps_the_events(
    classifier: Classifier, photos: list[bytes], tmp_path: Path
):
    """A broker down at boot: the hub sends READY=1 all the same (else systemd would kill it at the start timeout,
    again and again), says in STATUS= that it waits for the broker, and pings the watchdog meanwhile; once a broker
    listens on that port, the hub connects, subscribes and keeps a box's events."""
    port = free_port()
    central = hub(tmp_path, port, env={"WATCHDOG_USEC": "400000"}).ready()
    assert f"STATUS=waiting for the broker 127.0.0.1:{port};" in central.notifications.seen[-1]
    central.notifications.wait_for("WATCHDOG=1", timeout=10)
    late = Broker(tmp_path / "broker", port=port).start()
    try:
        subscribed(central)
        box, inbox = daemon(classifier, tmp_path / "door1", port, "door1")
        for number in range(2):
            (inbox / f"{number}.png").write_bytes(photos[number])
        wait_until(lambda: all_there(tmp_path, tmp_path / "door1", "door1", 2), timeout=30)
        central.notifications.wait_for(f"STATUS=subscribed to edgeface/+/events at 127.0.0.1:{port}; 2 events kept")
        stopped(box)
        journal = stopped(central)
    finally:
        late.stop()
    assert journal.count(f"cannot reach the MQTT broker 127.0.0.1:{port}") == 1, journal
    assert "connected to the MQTT broker" in journal and received(tmp_path) == 2, journal


def test_a_daemon_killed_mid_publish_and_restarted_loses_and_doubles_nothing_at_the_hub(
    broker: Broker, classifier: Classifier, photos: list[bytes], tmp_path: Path
):
    central = subscribed(hub(tmp_path, broker.port))
    box, inbox = daemon(classifier, tmp_path / "door1", broker.port, "door1")
    os.kill(broker.process.pid, signal.SIGSTOP)  # the broker takes the events in but acknowledges none
    try:
        for number in range(4):
            (inbox / f"{number}.png").write_bytes(photos[number])
        wait_until(lambda: len(box_rows(tmp_path / "door1")) == 4)
        box.kill()
    finally:
        os.kill(broker.process.pid, signal.SIGCONT)
    again, _ = daemon(classifier, tmp_path / "door1", broker.port, "door1")  # sends all four again
    (inbox / "4.png").write_bytes(photos[4])
    wait_until(lambda: all_there(tmp_path, tmp_path / "door1", "door1", 5), timeout=30)
    wait_until(lambda: query(tmp_path / "door1" / "log.db", "SELECT count(*) FROM outbox") == [(0,)], timeout=30)
    stopped(again)
    journal = stopped(central)
    assert received(tmp_path) == 5, journal  # the copies the broker had before the kill were dropped by event id


def test_a_hub_killed_and_restarted_loses_and_doubles_nothing(
    broker: Broker, classifier: Classifier, photos: list[bytes], tmp_path: Path
):
    central = subscribed(hub(tmp_path, broker.port, "--wait", "0.2", env={"WATCHDOG_USEC": "400000"}))
    box, inbox = daemon(classifier, tmp_path / "door1", broker.port, "door1")
    (inbox / "0.png").write_bytes(photos[0])
    wait_until(lambda: received(tmp_path) == 1, timeout=30)
    with contextlib.closing(sqlite3.connect(tmp_path / "fleet.db", isolation_level=None)) as other:
        other.execute("BEGIN IMMEDIATE")  # the hub's next commits wait: it holds events it has not stored
        for number in range(1, 3):
            (inbox / f"{number}.png").write_bytes(photos[number])
        wait_until(lambda: "is locked by another program" in central.stderr(), timeout=30)
        central.notifications.wait_for("the log is failing (database is locked)")
        central.notifications.wait_for("WATCHDOG=1")  # alive while it waits for the log: systemd leaves it be
        central.kill()  # SIGKILL with events in hand, unacknowledged
        other.execute("ROLLBACK")
    for number in range(3, 8):  # published while the hub is away: the broker keeps them in the hub's session
        (inbox / f"{number}.png").write_bytes(photos[number])
    wait_until(lambda: len(box_rows(tmp_path / "door1")) == 8)
    central = subscribed(hub(tmp_path, broker.port))
    wait_until(lambda: all_there(tmp_path, tmp_path / "door1", "door1", 8), timeout=30)
    stopped(box)
    journal = stopped(central)
    assert received(tmp_path) == 8 and "7 events kept" in journal, journal


def test_hostile_messages_are_counted_and_said_and_the_hub_goes_on(broker: Broker, tmp_path: Path):
    config = tmp_path / "hub.toml"
    config.write_text(f'model = "/elsewhere/box.tflite"\n[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\n'
                      'client_id = "the-box-on-this-machine"\n')  # a box's config: the hub takes only how to connect
    central = subscribed(Child(tmp_path, "hub", "--db", str(tmp_path / "fleet.db"), "--config", str(config),
                               "--topic", "site1/+/events"))  # fmt: skip
    good = {"event_id": str(uuid.uuid4()), "device": "door9", "kind": "appearance", "source": "camera:0",
            "time": "2026-03-01T10:00:00.000+00:00", "clock_synced": None, "model_sha256": "ab" * 32, "label": "eve",
            "unknown": True, "confidence": 0.4, "box": [1, 2, 3, 4], "first_seen": "2026-03-01T09:59:00.000+00:00",
            "last_seen": "2026-03-01T10:00:00.000+00:00", "frames": 3}  # fmt: skip
    hostile = [b"{not json", json.dumps({**good, "frames": "many"}).encode(), b"[" * 200_000,
               json.dumps({**good, "label": "\ud800"}).encode(), b"x" * 300_000,
               json.dumps({**good, "event_id": str(uuid.uuid4()), "device": "door1"}).encode()]  # another box's name
    publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"evil-{tmp_path.name}")
    publisher.connect("127.0.0.1", broker.port)
    publisher.loop_start()
    try:
        for payload in [*hostile, json.dumps(good).encode()]:
            publisher.publish("site1/door9/events", payload, qos=1).wait_for_publish(10)
        wait_until(lambda: received(tmp_path) == 1, timeout=30)
    finally:
        publisher.disconnect()
        publisher.loop_stop()
    journal = stopped(central)
    assert "1 events kept, 0 copies dropped, 6 bad messages since the start" in journal, journal
    assert journal.count("dropped a message on site1/door9/events") == 1 and "not JSON" in journal  # said once
    assert query(tmp_path / "fleet.db", "SELECT device, label, unknown, frames FROM appearances") == [
        ("door9", "eve", 1, 3)]  # fmt: skip


@pytest.mark.parametrize(
    "args, said",
    [
        ((), "no broker: pass --host"),
        (("--host", "127.0.0.1", "--topic", "a/#/b"), "is not an MQTT topic filter"),
        (("--host", "127.0.0.1", "--port", "70000"), "--port must be 1 to 65535"),
    ],
)
def test_a_hub_that_cannot_start_says_why_in_one_line(args: tuple, said: str, tmp_path: Path):
    outcome = run_in_process("hub", "--db", str(tmp_path / "fleet.db"), *args)
    assert outcome.returncode == 2 and said in outcome.stderr and outcome.stderr.count("\n") == 1, outcome.stderr
    assert not (tmp_path / "fleet.db").exists()
