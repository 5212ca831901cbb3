"""Measures `edgeface hub` under a simulated fleet: many boxes, one mosquitto, one hub, the broker restarted midway.

Usage: python benchmarks/fleet.py [--boxes 50] [--processes 5] [--rate 10] [--seconds 60] [--burst 400]
[--json FILE] [--markdown FILE]

Each simulated box is the real publishing side of `edgeface watch`: its own `ResultLog` (the outbox in the
transaction of each row), the real `Publisher` sink with its own paho client, fed through `Recording`, as a daemon
feeds them; only the pipeline is left out (each outcome is one made-up face). Half the boxes are folders (image
events), half cameras (appearance events, which no input identity could hide if the hub kept one twice). The boxes
run in a few processes. mosquitto (started here on a free port, with persistence, and a queue for the hub's session
larger than any backlog here) is stopped with SIGTERM halfway through and started again after --down seconds. Then:

- steady: the events/s the hub sustained over the run, and the delay of each event from its box's commit (its
  `time`) to the hub's commit (`received_at`), p50 and p99;
- lost and duplicated: each box's own log against the hub's rows from that box (and the events the hub counted);
- burst: the hub's most: with the hub stopped, the boxes publish --burst events each as fast as they can (the
  broker keeps them in the hub's session), then the hub starts and drains the backlog: events / (last commit -
  first commit).

Every figure is wall-clock on whatever machine runs it: label it with that machine.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import logging
import multiprocessing
import os
import platform
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

from daemon import drain
from edgeface.clock import now
from edgeface.geometry import Box
from edgeface.publisher import Publisher
from edgeface.results import Appearance, FaceResult, ImageResult
from edgeface.settings import MqttSettings
from edgeface.sinks import Recording
from edgeface.store import ResultLog

MOSQUITTO = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")
MODEL = "fe" * 32
BURST_BATCH = 20  # outcomes per commit while a box publishes its burst
DRAIN_SECONDS = 300.0  # the longest wait for the boxes' outboxes and the hub to catch up


class Broker:
    """mosquitto on loopback with persistence in `folder`, and room for the hub's queue while it is away."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        with contextlib.closing(socket.socket()) as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.config, self.log = folder / "mosquitto.conf", folder / "mosquitto.log"
        root = "user root\n" if os.geteuid() == 0 else ""
        self.config.write_text(f"{root}persistence true\npersistence_location {folder}/\nlog_dest stderr\n"
                               f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
                               "max_queued_messages 1000000\n")  # fmt: skip
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log, "a") as log:
            self.process = subprocess.Popen([MOSQUITTO, "-c", str(self.config)], stdout=log, stderr=log)
        deadline = time.monotonic() + 10
        while not self._listening():
            assert self.process.poll() is None and time.monotonic() < deadline, self.log.read_text()
            time.sleep(0.05)

    def stop(self) -> None:
        self.process.terminate()  # mosquitto saves its sessions and their queues, then exits
        self.process.wait(timeout=60)

    def _listening(self) -> bool:
        with contextlib.closing(socket.socket()) as probe:
            return probe.connect_ex(("127.0.0.1", self.port)) == 0


class Hub:
    """`edgeface hub` as a process, returned once it says it has subscribed (STATUS=subscribed …; READY=1 comes
    earlier, once its log is open)."""

    def __init__(self, work: Path, port: int) -> None:
        self.db = work / "fleet.db"
        notify = work / f"notify-{time.monotonic_ns()}"
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind(str(notify))
        self._stderr = open(work / "hub.log", "a")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "edgeface", "hub", "--db", str(self.db), "--host", "127.0.0.1", "--port",
             str(port), "--client-id", "bench-hub"],
            stderr=self._stderr, env={**os.environ, "NOTIFY_SOCKET": str(notify)},
        )  # fmt: skip
        self._socket.settimeout(60)
        while b"STATUS=subscribed" not in self._socket.recv(4096):
            pass
        threading.Thread(target=drain, args=(self._socket,), daemon=True).start()  # as systemd reads on

    def cpu_seconds(self) -> float:
        """The CPU time the hub has used so far (user and system), in seconds."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)
        self._socket.close()
        self._stderr.close()


def simulate(first: int, count: int, port: int, work: Path, start_at: float, seconds: float, rate: float,
             burst: int) -> None:  # fmt: skip
    """Boxes `first` .. `first + count - 1` in this process: `rate` outcomes a second each for `seconds` from
    `start_at` (time.time()), or, with `burst`, that many each at once; returns when every outbox is empty. Their
    journal (each box says the broker's restart) goes to boxes.log."""
    logging.basicConfig(filename=work / "boxes.log", format=f"box{first:03d}+: %(levelname)s: %(message)s")
    with contextlib.ExitStack() as boxes:
        recordings, models = [], []
        for number in range(first, first + count):
            db = work / f"box{number:03d}.db"
            log = boxes.enter_context(ResultLog(db))
            settings = MqttSettings(host="127.0.0.1", port=port, device=f"box{number:03d}")
            publisher = boxes.enter_context(Publisher(settings, db))
            recordings.append(Recording(log, [publisher]))
            models.append(recordings[-1].use_model(MODEL, "/models/sim.tflite", ("alice", "bob")))
        if burst:
            for done in range(0, burst, BURST_BATCH):
                for number, (recording, model) in enumerate(zip(recordings, models), start=first):
                    _outcomes(recording, model, number, range(done, min(done + BURST_BATCH, burst)), "burst")
        else:
            _steady(recordings, models, first, start_at, seconds, rate)
        deadline = time.monotonic() + DRAIN_SECONDS
        while any(recording.log.outbox_count() for recording in recordings) and time.monotonic() < deadline:
            time.sleep(0.2)


def _steady(recordings: list, models: list, first: int, start_at: float, seconds: float, rate: float) -> None:
    """Each box one outcome every 1/rate s, the boxes spread over that interval."""
    ticks = int(seconds * rate)
    due = [(tick / rate + index / (rate * len(recordings)), index, tick)
           for tick in range(ticks) for index in range(len(recordings))]  # fmt: skip
    due.sort()
    for offset, index, tick in due:
        time.sleep(max(0.0, start_at + offset - time.time()))
        _outcomes(recordings[index], models[index], first + index, [tick], "steady")


def _outcomes(recording: Recording, model: object, number: int, ticks: range | list[int], phase: str) -> None:
    """Commits one outcome per tick for box `number`: a photo's face (even boxes) or an appearance (odd ones); the
    source names the phase, so each phase's rows are counted apart."""
    box = Box(10, 20, 64, 64)
    if number % 2 == 0:
        results = [ImageResult(f"/srv/{phase}/{tick}.jpg", f"{number:08x}{tick:056x}", 2048, 640, 480,
                               (FaceResult(box, "alice", 0.91, False, 0.32),)) for tick in ticks]  # fmt: skip
        recording.images(results, f"folder:/srv/{phase}", model)
        return
    at = time.monotonic()
    seen = [Appearance(tick, at - 2.0, at - 0.5, 6, "bob", 0.8, False, box, {"bob": 6}, 0) for tick in ticks]
    recording.appearances(seen, f"camera:{phase}", model)


def run_boxes(args: argparse.Namespace, port: int, work: Path, start_at: float, burst: int) -> None:
    """The boxes in `args.processes` processes, waited for."""
    per = -(-args.boxes // args.processes)
    fork = multiprocessing.get_context("fork")
    processes = [fork.Process(target=simulate, args=(first, min(per, args.boxes - first), port, work, start_at,
                                                     args.seconds, args.rate, burst))
                 for first in range(0, args.boxes, per)]  # fmt: skip
    for process in processes:
        process.start()
    for process in processes:
        process.join()
        assert process.exitcode == 0, f"a box process failed ({process.exitcode})"


def wait_for_hub(db: Path, count: int) -> int:
    """Waits until the hub has received `count` events (or DRAIN_SECONDS pass); how many it has."""
    deadline, got = time.monotonic() + DRAIN_SECONDS, 0
    while time.monotonic() < deadline:
        got = rows(db, "SELECT count(*) FROM received")[0][0]
        if got >= count:
            break
        time.sleep(0.2)
    return got


def rows(db: Path, sql: str, params: tuple = ()) -> list[tuple]:
    with contextlib.closing(sqlite3.connect(db, timeout=30)) as connection:
        return connection.execute(sql, params).fetchall()


def seconds_between(earlier: str, later: str) -> float:
    return (datetime.fromisoformat(later) - datetime.fromisoformat(earlier)).total_seconds()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def accounting(work: Path, hub_db: Path, boxes: int, phase: str) -> dict:
    """Per box, its own rows of `phase` against the hub's from it: lost (at the box, not at the hub) and duplicated
    (more at the hub than the box made)."""
    lost = duplicated = made = 0
    for number in range(boxes):
        table = "inputs" if number % 2 == 0 else "appearances"
        source = f"folder:/srv/{phase}" if number % 2 == 0 else f"camera:{phase}"
        mine = rows(work / f"box{number:03d}.db", f"SELECT count(*) FROM {table} WHERE source = ?", (source,))[0][0]
        theirs = rows(hub_db, f"SELECT count(*) FROM {table} WHERE source = ? AND device = ?",
                      (source, f"box{number:03d}"))[0][0]  # fmt: skip
        made, lost, duplicated = made + mine, lost + max(0, mine - theirs), duplicated + max(0, theirs - mine)
    return {"made": made, "lost": lost, "duplicated": duplicated}


def steady_phase(args: argparse.Namespace, work: Path, broker: Broker, hub: Hub) -> dict:
    """The boxes at their rate, the broker stopped for `args.down` seconds halfway through."""
    start_at, cpu_before = time.time() + 2.0, hub.cpu_seconds()
    boxes = multiprocessing.get_context("fork").Process(target=run_boxes, args=(args, broker.port, work, start_at, 0))
    boxes.start()
    time.sleep(max(0.0, start_at + args.seconds / 2 - time.time()))
    broker.stop()
    time.sleep(args.down)
    broker.start()
    boxes.join()
    wait_for_hub(hub.db, args.boxes * int(args.seconds * args.rate))
    cpu = hub.cpu_seconds() - cpu_before
    received = rows(hub.db, "SELECT time, received_at FROM received")
    delays = [seconds_between(sent, got) for sent, got in received]
    per_second = collections.Counter(got[:19] for _, got in received)  # commits per wall-clock second
    span = seconds_between(min(sent for sent, _ in received), max(got for _, got in received))
    return {"events": len(received), "events_per_second": round(len(received) / span, 1),
            "peak_events_per_second": max(per_second.values()), "hub_cpu_share": round(cpu / span, 3),
            "latency_p50_ms": round(1000 * statistics.median(delays), 1),
            "latency_p99_ms": round(1000 * percentile(delays, 0.99), 1), "latency_max_ms": round(1000 * max(delays), 1),
            **accounting(work, hub.db, args.boxes, "steady")}  # fmt: skip


def burst_phase(args: argparse.Namespace, work: Path, broker: Broker) -> dict:
    """The hub's most: a backlog published while it is stopped, then drained."""
    began = now().wall
    before = rows(work / "fleet.db", "SELECT count(*) FROM received")[0][0]
    run_boxes(args, broker.port, work, time.time(), args.burst)  # into the broker, for the hub's session
    hub = Hub(work, broker.port)
    try:
        wait_for_hub(hub.db, before + args.boxes * args.burst)
    finally:
        hub.stop()
    first, last, count = rows(hub.db, "SELECT min(received_at), max(received_at), count(*) FROM received "
                                      "WHERE time >= ?", (began,))[0]  # fmt: skip
    span = seconds_between(first, last)
    return {"events": count, "seconds": round(span, 2), "events_per_second": round(count / span, 1) if span else None,
            **accounting(work, hub.db, args.boxes, "burst")}  # fmt: skip


def markdown(figures: dict) -> str:
    steady, burst = figures["steady"], figures.get("burst")
    lines = [f"# Fleet benchmark ({figures['machine']})", "",
             f"{figures['boxes']} boxes × {figures['rate']:g} events/s for {figures['seconds']:g} s, the broker "
             f"restarted once ({figures['down']:g} s down), one hub.", "",
             "| figure | value |", "| --- | --- |",
             f"| hub events/s sustained | {steady['events_per_second']} |",
             f"| latency p50 / p99 / max (box commit → hub commit) | {steady['latency_p50_ms']} / "
             f"{steady['latency_p99_ms']} / {steady['latency_max_ms']} ms |",
             f"| peak events/s (catching up after the restart) | {steady['peak_events_per_second']} |",
             f"| hub CPU (share of one core) | {steady['hub_cpu_share']} |",
             f"| events made / at the hub | {steady['made']} / {steady['events']} |",
             f"| lost / duplicated | {steady['lost']} / {steady['duplicated']} |"]  # fmt: skip
    if burst:
        lines += [f"| hub's most (a backlog of {burst['events']} drained) | {burst['events_per_second']} events/s |",
                  f"| burst lost / duplicated | {burst['lost']} / {burst['duplicated']} |"]  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boxes", type=int, default=50)
    parser.add_argument("--processes", type=int, default=5, help="processes the boxes share")
    parser.add_argument("--rate", type=float, default=10.0, help="events per second per box")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long the boxes publish")
    parser.add_argument("--down", type=float, default=3.0, help="seconds the broker stays down midway")
    parser.add_argument("--burst", type=int, default=400, help="events per box for the hub's most (0: skip)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--markdown", type=Path, help="and a Markdown table here")
    args = parser.parse_args()
    figures = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "boxes": args.boxes, "rate": args.rate,
               "seconds": args.seconds, "down": args.down}  # fmt: skip
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        broker = Broker(work / "broker")
        broker.start()
        try:
            hub = Hub(work, broker.port)
            try:
                figures["steady"] = steady_phase(args, work, broker, hub)
            finally:
                hub.stop()
            print(json.dumps({"steady": figures["steady"]}), flush=True)
            if args.burst:
                figures["burst"] = burst_phase(args, work, broker)
        finally:
            broker.stop()
    print(json.dumps(figures))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    if args.markdown:
        args.markdown.write_text(markdown(figures))


if __name__ == "__main__":
    main()
