"""A real MQTT broker for the tests: Debian's mosquitto on a free loopback port with a config of its own, a paho
subscriber that keeps what it hears (as a hub would), and a CA made with openssl for TLS.

paho-mqtt is optional (the `mqtt` extra), so the device tier imports this module without it; the `broker` and
`secured` fixtures in conftest.py skip where mosquitto or paho is absent.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import threading
from pathlib import Path

from helpers import wait_until

try:
    import paho.mqtt.client as mqtt
except ImportError:  # the device tier runs without paho-mqtt
    mqtt = None

MOSQUITTO = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
USER, PASSWORD = "box", "s3cret pass"  # the user the `secured` broker lets in


def missing() -> str | None:
    """Why a broker test cannot run here, or None."""
    if mqtt is None:
        return "paho-mqtt is not installed (the mqtt extra)"
    if not MOSQUITTO:
        return "the mosquitto broker is not installed (apt-get install mosquitto)"
    return None


def free_port() -> int:
    with contextlib.closing(socket.socket()) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Broker:
    """mosquitto on loopback, with its config, persistence and log in `folder`; `settings` are extra config lines
    (`{folder}` in them is replaced). Its plain listener is `port`: a free one, or the one given (for a client
    started before its broker)."""

    def __init__(self, folder: Path, settings: str = "allow_anonymous true", port: int | None = None) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder, self.port, self.log = folder, port or free_port(), folder / "mosquitto.log"
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

    def __init__(self, port: int, username: str | None = None, client_id: str = "test-hub",
                 topics: str = "edgeface/#") -> None:  # fmt: skip
        self.messages: list[tuple[str, str]] = []
        self._subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        if username:
            self.client.username_pw_set(username, PASSWORD)
        self.client.on_connect = lambda client, userdata, flags, reason, properties: client.subscribe(topics, 1)
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
            if topic.endswith("/events"):
                event = json.loads(payload)
                unique.setdefault(event["event_id"], event)
        return list(unique.values())

    def availability(self) -> list[str]:
        return [payload for topic, payload in list(self.messages) if topic.endswith("/availability")]

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
