"""`edgeface scan --publish`: each image's result goes to the broker as the daemon's would, through the log's outbox,
and what the broker does not take within --publish-wait stays there, said in one line, without changing the exit code.

The broker tests use Debian's mosquitto (the `broker` fixture) and skip where it or paho-mqtt is absent; the usage
errors run everywhere.
"""

from __future__ import annotations

import contextlib
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import Classifier, run_edgeface, run_in_process, wait_until
from mqtt_broker import Broker, Subscriber, free_port, missing

DEVICE = "scanner"


@pytest.fixture()
def hub(broker: Broker) -> Iterator[Subscriber]:
    subscriber = Subscriber(broker.port, client_id="scan-hub")
    yield subscriber
    subscriber.close()


def images(classifier: Classifier, count: int) -> list[str]:
    return [str(path) for path, _ in classifier.held_out[:count]]


def outbox(db: Path) -> int:
    with contextlib.closing(sqlite3.connect(db)) as connection:
        return connection.execute("SELECT count(*) FROM outbox").fetchone()[0]


def logged(db: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(db)) as connection:
        return [path for (path,) in connection.execute("SELECT path FROM inputs ORDER BY id")]


def test_scan_publish_delivers_every_result_and_empties_the_outbox(
    broker: Broker, hub: Subscriber, classifier: Classifier, tmp_path: Path
):
    config = tmp_path / "edgeface.toml"  # the broker from a config file, as the daemon's; the flags add to it
    config.write_text(f'model = "/not/used/by/scan"\n[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\n')
    db = tmp_path / "log.db"
    done = run_edgeface("scan", *images(classifier, 3), "--model", str(classifier.tflite_file), "--db", str(db),
                        "--workers", "1", "--publish", "--config", str(config), "--mqtt-device", DEVICE)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "wait in the outbox" not in done.stderr and outbox(db) == 0  # the broker took them all before scan ended
    wait_until(lambda: len(hub.events()) == 3)  # and passes them on to its subscribers
    events = hub.events()
    assert [event["path"] for event in events] == logged(db)  # every result, in commit order
    assert all(event["device"] == DEVICE and event["kind"] == "image" and event["source"] == "scan" for event in events)
    assert hub.availability() == []  # the box's availability is the daemon's to say, not a scan's


@pytest.mark.skipif(bool(missing()), reason=missing() or "")
def test_scan_publish_with_the_broker_away_keeps_the_events_and_says_so(classifier: Classifier, tmp_path: Path):
    db = tmp_path / "log.db"
    done = run_edgeface("scan", *images(classifier, 2), "--model", str(classifier.tflite_file), "--db", str(db),
                        "--workers", "1", "--publish", "--mqtt-host", "127.0.0.1", "--mqtt-port",
                        str(free_port()), "--publish-wait", "0.5")  # fmt: skip
    assert done.returncode == 0, done.stderr  # the results are logged; the events are safe in the outbox
    assert f"2 events wait in the outbox of {db}; `edgeface watch` with the same [mqtt] sends them" in done.stderr
    assert "cannot reach the MQTT broker" in done.stderr
    assert outbox(db) == 2 and len(logged(db)) == 2


def test_publish_without_a_broker_is_a_usage_error(classifier: Classifier, tmp_path: Path):
    scan = ("scan", *images(classifier, 1), "--model", str(classifier.tflite_file), "--db", str(tmp_path / "log.db"))
    done = run_in_process(*scan, "--publish", "--config", str(tmp_path / "none.toml"))
    assert done.returncode == 2 and "cannot read the config" in done.stderr
    (tmp_path / "empty.toml").write_text("[mqtt]\n")
    done = run_in_process(*scan, "--publish", "--config", str(tmp_path / "empty.toml"))
    assert done.returncode == 2, done.stderr
    assert "edgeface: error: --publish needs a broker: [mqtt] host in the config" in done.stderr
    assert not (tmp_path / "log.db").exists()  # refused before anything was scanned


def test_publish_without_paho_says_how_to_install_it(
    classifier: Classifier, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):  # fmt: skip
    monkeypatch.setitem(sys.modules, "paho.mqtt.client", None)  # its import fails, as on a box without the extra
    done = run_in_process("scan", *images(classifier, 1), "--model", str(classifier.tflite_file),
                          "--db", str(tmp_path / "log.db"), "--publish", "--mqtt-host", "127.0.0.1")  # fmt: skip
    assert done.returncode == 2
    assert "needs paho-mqtt, which is not installed: pip install '.[mqtt]'" in done.stderr
    assert not (tmp_path / "log.db").exists()
