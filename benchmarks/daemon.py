"""Measures `edgeface watch` as it runs on a box: start-up, latency, memory and camera throughput.

Usage: python benchmarks/daemon.py MODEL.tflite [--yunet FILE] [--photos DIR] [--video FILE]
(e.g. the model `edgeface demo` leaves in edgeface-demo/; YuNet's ONNX file from the OpenCV Zoo;
photos default to ../shared/data/lfw_dev, the video to ../shared/data/misc/video). It prints:

- the time from starting the process to READY=1 (model loaded, self-test passed);
- file-to-row latency at a steady arrival rate (default 20 photos/s, each written under another
  name and renamed in, as a camera would): from the rename to the row's `processed_at`, which is
  taken just before its commit, so the commit itself (an fsync with --move-done) is not counted;
- the daemon's resident memory after those photos, and whether any TensorFlow/Keras library is
  mapped into it;
- resident memory through a burst of 10,000 files dropped at once (it should stay flat);
- frames per second classified from the video file, played at its own frame rate, and the lag.

Every figure is wall-clock on whatever machine runs it, with 1 thread: label it with that machine.
"""

from __future__ import annotations

import argparse
import json
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

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"


def drain(notify: socket.socket) -> None:
    """Reads the daemon's notifications (STATUS, WATCHDOG) until the socket closes, as systemd does: a queue nobody
    reads fills up, and the daemon's sends would find it full."""
    notify.settimeout(None)
    try:
        while notify.recv(4096):
            pass
    except OSError:
        pass


class Daemon:
    """`edgeface watch ARGS` in a child process, with a notify socket to hear READY=1 on."""

    def __init__(self, folder: Path, args: list[str], level: str = "warning") -> None:
        self._socket_path = folder / f"notify-{time.monotonic_ns()}"
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind(str(self._socket_path))
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "edgeface", "watch", *args, "--threads", "1", "--log-level", level],
            stderr=subprocess.PIPE, text=True, env={**os.environ, "NOTIFY_SOCKET": str(self._socket_path)},
        )  # fmt: skip

    def wait_ready(self, timeout: float = 120) -> float:
        """Seconds from the start of the process to READY=1."""
        self._socket.settimeout(timeout)
        while b"READY=1" not in self._socket.recv(4096):
            pass
        ready = time.monotonic() - self.started
        threading.Thread(target=drain, args=(self._socket,), daemon=True).start()  # as systemd reads on
        return ready

    def rss_mib(self) -> float:
        """The daemon's resident set size now, in MiB."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS")

    def heavy_libraries(self) -> list[str]:
        """Mapped files that belong to TensorFlow or Keras (there should be none)."""
        maps = Path(f"/proc/{self.process.pid}/maps").read_text().splitlines()
        names = {line.split()[-1] for line in maps if "/" in line}
        return sorted(name for name in names if "/tensorflow/" in name or "/keras/" in name)

    def stop(self) -> str:
        self.process.terminate()
        _, stderr = self.process.communicate(timeout=60)
        self._socket.close()
        return stderr


def photos(folder: Path, count: int) -> list[Path]:
    """`count` photos spread over the people in `folder` (sorted, so reruns use the same ones)."""
    every = sorted(folder.rglob("*.jpg"))
    return [every[round(i * (len(every) - 1) / max(1, count - 1))] for i in range(count)]


def drop_in(source: Path, inbox: Path, name: str) -> float:
    """Writes `source` into `inbox` under a temporary name and renames it to `name`; returns when."""
    staging = inbox.parent / "staging" / name
    shutil.copyfile(source, staging)
    os.rename(staging, inbox / name)
    return time.time()


def processed_times(db: Path) -> dict[str, float]:
    """path -> processed_at (seconds since the epoch) of every input logged."""
    with sqlite3.connect(db) as connection:
        rows = connection.execute("SELECT path, processed_at FROM inputs").fetchall()
    return {path: datetime.fromisoformat(at).timestamp() for path, at in rows}


def wait_for_rows(db: Path, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while len(processed_times(db)) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(processed_times(db))} of {count} rows after {timeout} s")
        time.sleep(0.2)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def steady_arrivals(model: Path, detector: list[str], pictures: list[Path], rate: float, work: Path) -> dict:
    """Start-up time, latency at `rate` photos/s, memory and heavy libraries after `pictures`."""
    inbox, db = work / "inbox", work / "steady.db"
    for folder in (inbox, work / "staging"):
        folder.mkdir(parents=True)
    daemon = Daemon(work, [str(inbox), "--model", str(model), "--db", str(db),
                           "--move-done", str(work / "done"), "--move-failed", str(work / "failed"), *detector])  # fmt: skip
    ready = daemon.wait_ready()
    arrived = {}
    start = time.monotonic()
    for i, picture in enumerate(pictures):
        time.sleep(max(0.0, start + i / rate - time.monotonic()))
        name = f"{i:05d}.jpg"
        arrived[str(inbox / name)] = drop_in(picture, inbox, name)
    wait_for_rows(db, len(pictures), timeout=120)
    latencies = [1000 * (at - arrived[path]) for path, at in processed_times(db).items()]
    result = {
        "ready_s": round(ready, 2),
        "photos": len(pictures),
        "rate_per_s": rate,
        "latency_ms_p50": round(percentile(latencies, 0.50), 1),
        "latency_ms_p99": round(percentile(latencies, 0.99), 1),
        "latency_ms_max": round(max(latencies), 1),
        "rss_mib_after": round(daemon.rss_mib(), 1),
        "heavy_libraries": daemon.heavy_libraries(),
    }
    daemon.stop()
    return result


def burst(model: Path, detector: list[str], picture: Path, count: int, work: Path) -> dict:
    """Resident memory sampled while `count` files, dropped at once, are processed."""
    inbox, db = work / "burst-inbox", work / "burst.db"
    inbox.mkdir()
    daemon = Daemon(work, [str(inbox), "--model", str(model), "--db", str(db),
                           "--move-done", str(work / "burst-done"), *detector])  # fmt: skip
    daemon.wait_ready()
    baseline = daemon.rss_mib()
    for i in range(count):
        shutil.copyfile(picture, inbox / f"{i:05d}.jpg")
    start, samples = time.monotonic(), []
    while len(processed_times(db)) < count:
        samples.append(daemon.rss_mib())
        time.sleep(1.0)
        if time.monotonic() - start > 1800:
            raise TimeoutError("the burst took over 30 minutes")
    seconds = time.monotonic() - start
    daemon.stop()
    return {
        "files": count,
        "seconds": round(seconds, 1),
        "files_per_s": round(count / seconds, 1),
        "rss_mib_before": round(baseline, 1),
        "rss_mib_max": round(max(samples, default=baseline), 1),
        "rss_mib_median": round(statistics.median(samples) if samples else baseline, 1),
    }


def video(model: Path, detector: list[str], clip: Path, work: Path) -> dict:
    """Frames classified per second and lag on `clip`, played at its own rate with no fps cap."""
    db = work / "video.db"
    daemon = Daemon(work, ["--camera", str(clip), "--model", str(model), "--db", str(db), "--fps", "1000", *detector],
                    level="info")  # fmt: skip
    daemon.wait_ready()
    start = time.monotonic()
    stderr = daemon.process.communicate(timeout=600)[1]
    seconds = time.monotonic() - start
    status = next(line for line in stderr.splitlines() if "stopping: camera" in line)
    with sqlite3.connect(db) as connection:
        appearances = connection.execute("SELECT count(*) FROM appearances").fetchone()[0]
    frames = int(status.split(" frames classified")[0].rsplit(" ", 1)[1])
    return {"clip": clip.name, "seconds": round(seconds, 1), "frames_classified": frames,
            "frames_per_s": round(frames / seconds, 1), "appearances": appearances,
            "status": status.split("stopping: ", 1)[1]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--yunet", type=Path, default=SHARED / "models/yunet/face_detection_yunet_2023mar.onnx")
    parser.add_argument("--photos", type=Path, default=SHARED / "data/lfw_dev")
    parser.add_argument("--video", type=Path, default=SHARED / "data/misc/video/short_hamilton_clip.mp4")
    parser.add_argument("--count", type=int, default=1000, help="photos at the steady rate")
    parser.add_argument("--rate", type=float, default=20.0, help="photos per second")
    parser.add_argument("--burst", type=int, default=10000, help="files dropped at once (0: skip)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    detector = ["--detector", "yunet", "--yunet-model", str(args.yunet)] if args.yunet.is_file() else []
    figures: dict = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}",
        "detector": "yunet" if detector else "the model's own",
    }
    print(json.dumps(figures))
    pictures = photos(args.photos, args.count)
    with tempfile.TemporaryDirectory() as temporary:
        work = Path(temporary)
        figures["steady"] = steady_arrivals(args.model, detector, pictures, args.rate, work)
        print(json.dumps({"steady": figures["steady"]}), flush=True)
        if args.burst:
            figures["burst"] = burst(args.model, detector, pictures[0], args.burst, work)
            print(json.dumps({"burst": figures["burst"]}), flush=True)
        if args.video.is_file():
            figures["video"] = video(args.model, detector, args.video, work)
            print(json.dumps({"video": figures["video"]}), flush=True)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
