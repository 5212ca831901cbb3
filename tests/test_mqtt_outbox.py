"""The outbox without a broker: events commit with their rows or not at all, the bound drops the oldest, the ids only
grow, and `[mqtt]` refuses what it cannot use at start (no paho-mqtt, a bad topic prefix, a password file that is
not a small regular file)."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from helpers import Classifier
from edgeface.broker import BrokerLink
from edgeface.clock import Moment
from edgeface.events import batch_events
from edgeface.results import Appearance, ImageResult
from edgeface.settings import ConfigError, MqttSettings
from edgeface.sinks import Committed, Recording
from edgeface.store import LogError, ResultLog


class Queued:
    """An outboxed sink with no broker: its events are the log's to keep; it notes each wake."""

    def __init__(self) -> None:
        self.woken = 0

    def events(self, source: str, model_sha256: str, moment: Moment, images: Sequence[ImageResult],
               appearances: Sequence[Appearance]) -> list[str]:  # fmt: skip
        return batch_events("box", source, model_sha256, moment, images, appearances)

    def committed(self, batch: Committed) -> None:
        self.woken += 1


def outbox(db: Path) -> list[dict]:
    with contextlib.closing(sqlite3.connect(db)) as connection:
        return [json.loads(payload) for (payload,) in connection.execute("SELECT payload FROM outbox ORDER BY id")]


def test_events_are_queued_with_their_rows_and_only_with_them(tmp_path: Path):
    sink = Queued()
    with ResultLog(tmp_path / "log.db") as log:
        recording = Recording(log, [sink])
        model = recording.use_model("ab" * 32, "m.tflite", ("a",))
        recording.images([ImageResult.unreadable("x.png", "cannot read")], "folder:/in", model)
        with pytest.raises(LogError):  # the event cannot be stored (NULL): neither can its row
            log.record_batch([ImageResult.unreadable("y.png", "cannot read")], "folder:/in", model.id, events=[None])
        recording.images([ImageResult.unreadable("frame", "cannot read")], "camera:0", model)  # per-frame rows stay
    (event,) = outbox(tmp_path / "log.db")
    assert event["path"].endswith("x.png") and event["status"] == "error" and event["device"] == "box" and sink.woken == 2
    with contextlib.closing(sqlite3.connect(tmp_path / "log.db")) as connection:
        assert [Path(path).name for (path,) in connection.execute("SELECT path FROM inputs ORDER BY id")] == ["x.png", "frame"]


def test_the_bound_drops_the_oldest_and_ids_keep_growing(tmp_path: Path):
    with ResultLog(tmp_path / "log.db") as log:
        model = log.register_model("ab" * 32, "m.tflite", ("a",))
        log.record_batch([ImageResult.unreadable(f"{n}.png", "x") for n in range(5)], "folder:/in", model,
                         events=[f'"{n}"' for n in range(5)])  # fmt: skip
        assert log.outbox_trim(3) == 2 and log.outbox_trim(3) == 0
        waiting = log.outbox_after(0, 10)
        assert [payload for _, payload, _, _ in waiting] == ['"2"', '"3"', '"4"']
        log.outbox_sent([outbox_id for outbox_id, *_ in waiting])
        log.record_batch([ImageResult.unreadable("6.png", "x")], "folder:/in", model, events=['"6"'])
        assert log.outbox_count() == 1 and log.outbox_after(waiting[-1][0], 10)[0][1] == '"6"'  # not id 1 again


@pytest.mark.parametrize(("settings", "message"), [
    ({"topic_prefix": "edgeface/#"}, "mqtt.topic_prefix 'edgeface/#' is not a topic"),
    ({"username": "box", "password_file": "/dev/zero"}, "mqtt.password_file /dev/zero is not a regular file"),
    ({"username": "box", "password_file": "/nonexistent"}, "mqtt.password_file: cannot read /nonexistent"),
    ({"tls_ca_file": "/nonexistent"}, "mqtt.tls_"),
])  # fmt: skip
def test_what_mqtt_cannot_use_stops_the_start_naming_the_key(settings: dict, message: str):
    pytest.importorskip("paho.mqtt.client", reason="paho-mqtt is not installed (the mqtt extra)")
    with pytest.raises(ConfigError, match=message.replace("/#", "/\\#")):
        BrokerLink(MqttSettings(host="127.0.0.1", **settings), lambda mid: None, lambda: None)


def test_a_password_file_too_large_is_not_read(tmp_path: Path):
    pytest.importorskip("paho.mqtt.client", reason="paho-mqtt is not installed (the mqtt extra)")
    (tmp_path / "password").write_bytes(b"x" * 5000)
    with pytest.raises(ConfigError, match="mqtt.password_file .* is"):
        BrokerLink(MqttSettings(host="h", username="u", password_file=str(tmp_path / "password")), print, print)


def test_without_paho_an_mqtt_config_stops_the_start_with_the_install_hint(classifier: Classifier, tmp_path: Path):
    script = "import sys; sys.modules['paho'] = None; from edgeface.cli import main; sys.exit(main(sys.argv[1:]))"
    done = subprocess.run([sys.executable, "-c", script, "watch", str(tmp_path), "--model", str(classifier.tflite_file),
                           "--db", str(tmp_path / "log.db"), "--mqtt-host", "127.0.0.1"], capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "pip install '.[mqtt]' in edgeface's source folder" in done.stderr
