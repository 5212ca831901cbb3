"""`[mqtt]` against a real broker: Debian's mosquitto, started here on a free loopback port with a config of its own.

Every event reaches a subscriber (paho, as a hub would be) with the payload the log holds; a broker away, or a
daemon killed mid-publish, delays events and loses none (a copy sent twice is told by its event id, as the hub
will); the last will says "offline"; a password file works, a wrong password is one clear line while files are still
logged; TLS with a CA made here. Skipped where mosquitto or paho-mqtt is absent (the device tier).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import Child, Classifier, wait_until

mqtt = pytest.importorskip("paho.mqtt.client", reason="paho-mqtt is not installed (the mqtt extra)")
MOSQUITTO = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")
pytestmark = pytest.mark.skipif(not MOSQUITTO, reason="the mosquitto broker is not installed (apt-get install mosquitto)")

USER, PASSWORD = "box", "s3cret pass"
DEVICE = "box1"
EVENTS, AVAILABILITY = f"edgeface/{DEVICE}/events", f"edgeface/{DEVICE}/availability"


def free_port() -> int:
    with contextlib.closing(socket.socket()) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Broker:
    """mosquitto on loopback, with its config, persistence and log in `folder`; `settings` are extra config lines
    (`{folder}` in them is replaced). Its plain listener is `port`."""

    def __init__(self, folder: Path, settings: str = "allow_anonymous true") -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder, self.port, self.log = folder, free_port(), folder / "mosquitto.log"
        self.config = folder / "mosquitto.conf"
        root = "user root\n" if os.geteuid() == 0 else ""  # as root it would switch to user mosquitto
        self.config.write_text(f"{root}per_listener_settings false\npersistence true\npersistence_location {folder}/\n"
                               f"log_dest stderr\nlog_type all\nlistener {self.port} 127.0.0.1\n"
                               + settings.replace("{folder}", str(folder)) + "\n")  # fmt: skip
        self.process: subprocess.Popen | None = None

    def start(self) -> Broker:
        with open(self.log, "a") as log:
            self.process = subprocess.Popen([MOSQUITTO, "-c", str(self.config)], stdout=log, stderr=log)
        wait_until(lambda: self.process.poll() is not None or self._listening(), timeout=10)
        assert self.process.poll() is None, self.log.read_text()
        return self

    def stop(self) -> None:
        """SIGTERM: mosquitto saves its persistent sessions and exits."""
        self.process.terminate()
        self.process.wait(timeout=10)

    def _listening(self) -> bool:
        with contextlib.closing(socket.socket()) as probe:
            return probe.connect_ex(("127.0.0.1", self.port)) == 0


class Subscriber:
    """A paho client that keeps every message under edgeface/ in arrival order, with a session the broker keeps
    (QoS 1), as a hub would subscribe."""

    def __init__(self, port: int, username: str | None = None) -> None:
        self.messages: list[tuple[str, str]] = []
        self._subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-hub", clean_session=False)
        if username:
            self.client.username_pw_set(username, PASSWORD)
        self.client.on_connect = lambda client, userdata, flags, reason, properties: client.subscribe("edgeface/#", 1)
        self.client.on_subscribe = lambda *args: self._subscribed.set()
        self.client.on_message = lambda client, userdata, message: self.messages.append(
            (message.topic, message.payload.decode()))
        self.client.reconnect_delay_set(1, 1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self._subscribed.wait(10), "no subscription"

    def events(self) -> list[dict]:
        """Each event once (the first copy), in the order they came."""
        unique: dict[str, dict] = {}
        for topic, payload in list(self.messages):
            if topic == EVENTS:
                event = json.loads(payload)
                unique.setdefault(event["event_id"], event)
        return list(unique.values())

    def availability(self) -> list[str]:
        return [payload for topic, payload in list(self.messages) if topic == AVAILABILITY]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def make_ca(folder: Path) -> dict[str, Path]:
    """A CA and a certificate for 127.0.0.1 signed by it (openssl's command line), as PEM files."""
    files = {name: folder / f"{name}.pem" for name in ("ca", "ca-key", "server", "server-key", "server-csr")}
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    subprocess.run(["openssl", "req", "-x509", *ec, "-keyout", files["ca-key"], "-out", files["ca"], "-days", "2",
                    "-subj", "/CN=edgeface test CA", "-addext", "basicConstraints=critical,CA:TRUE",
                    "-addext", "keyUsage=critical,keyCertSign,cRLSign"], check=True, capture_output=True)  # fmt: skip
    subprocess.run(["openssl", "req", *ec, "-keyout", files["server-key"], "-out", files["server-csr"],
                    "-subj", "/CN=127.0.0.1"], check=True, capture_output=True)  # fmt: skip
    extensions = folder / "server.ext"
    extensions.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
                          "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
                          "authorityKeyIdentifier=keyid,issuer\nsubjectKeyIdentifier=hash\n")  # fmt: skip
    subprocess.run(["openssl", "x509", "-req", "-in", files["server-csr"], "-CA", files["ca"], "-CAkey",
                    files["ca-key"], "-CAcreateserial", "-out", files["server"], "-days", "2", "-extfile",
                    extensions], check=True, capture_output=True)  # fmt: skip
    return files


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """An open broker for the module (anonymous clients welcome)."""
    running = Broker(tmp_path_factory.mktemp("broker")).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Broker, int, Path]]:
    """A broker that wants a user and password, on a plain listener and on a TLS one with a CA made here; the TLS
    port and the CA file."""
    folder = tmp_path_factory.mktemp("secured")
    subprocess.run([shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd", "-c", "-b",
                    str(folder / "passwords"), USER, PASSWORD], check=True, capture_output=True)  # fmt: skip
    ca, tls_port = make_ca(folder), free_port()
    running = Broker(folder, f"allow_anonymous false\npassword_file {folder}/passwords\nlistener {tls_port} 127.0.0.1\n"
                             f"cafile {ca['ca']}\ncertfile {ca['server']}\nkeyfile {ca['server-key']}").start()  # fmt: skip
    yield running, tls_port, ca["ca"]
    running.stop()


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
        assert all(set(face) == {"box", "label", "confidence", "unknown", "distance"} for face in event["faces"])
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
