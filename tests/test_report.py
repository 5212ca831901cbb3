"""benchmarks/report.py starts without TensorFlow, and its writer turns a made-up result into Markdown, JSON and
targets. Nothing is measured here: the report itself takes minutes (see the README)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

from helpers import REPO, WORKSTATION_MODULES

BENCHMARKS = REPO / "benchmarks"


def benchmark_run(*args: str) -> subprocess.CompletedProcess:
    """This interpreter on `args` with the repository first on the path, as the README runs the benchmarks."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=BENCHMARKS, timeout=60)


def report_output() -> ModuleType:
    """benchmarks/report_output.py, loaded from its file (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location("report_output", BENCHMARKS / "report_output.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def figure(*runs: float) -> dict:
    ordered = sorted(runs)
    return {"median": ordered[len(ordered) // 2], "min": ordered[0], "max": ordered[-1], "runs": list(runs)}


def made_up_result() -> dict:
    """A result shaped as report.py writes it: one profile of 2 cores, every part, and the split's accuracy."""
    scan = {"1": {"ips": figure(50, 40, 60), "peak_mib": figure(100, 100, 100)},
            "2": {"ips": figure(90, 80, 95), "peak_mib": figure(250, 240, 260)}, "speedup": figure(1.8, 1.9, 1.6)}
    theirs = {"1": {"ips": figure(3, 3, 3), "peak_mib": figure(200, 200, 200)},
              "2": {"ips": figure(7, 6, 8), "peak_mib": figure(400, 400, 400)}}
    floors = {"decode_ms": figure(1, 1, 1), "detect_ms": figure(10, 10, 10), "classify_ms": figure(5, 5, 5),
              "floor_sum_ms": figure(16, 16, 16), "scan_ms": figure(17, 17, 17), "overhead_pct": figure(6.25, 6, 7)}
    profile = {
        "description": "every core", "cores": 2, "worker_counts": [1, 2], "daemon_photos": 1000,
        "scan": {"lfw-320": {"embedder + yunet": scan}},
        "face_recognition": {"lfw-320": {"face_recognition": theirs}},
        "floors": {"lfw-320": {"embedder + yunet": floors}},
        "latency": {"embedder": {"1": figure(10, 11, 9), "2": figure(6, 6, 6)}},
        "camera": {"embedder + yunet": {key: figure(value) for key, value in
                                        {"fps": 29.5, "lag_p50_ms": 20, "lag_p99_ms": 30, "lag_max_ms": 40,
                                         "skipped": 0}.items()}},
        "daemon": {"embedder + yunet": {"ready_s": figure(0.5, 0.6, 0.4), "latency_p50_ms": figure(7, 7, 7),
                                        "latency_p99_ms": figure(9, 9, 9), "rss_mib_after": figure(130, 131, 129)}},
    }  # fmt: skip
    recognised = {"photos_with_face": 1301, "photos_without_face": 0,
                  "figures": {method: {"top1": 0.984, "known_accept": 0.96} for method in ("centroid", "image")}}
    return {"label": "made up", "started": "2026-12-01T00:00:00", "seconds": 60.0, "repeat": 3, "machine": "none",
            "inputs": {"lfw-320": "320 files"}, "skipped": ["the clip: absent"], "profiles": {"workstation": profile},
            "accuracy": {"embedder": recognised, "face_recognition": recognised}}  # fmt: skip


def test_help_runs_without_tensorflow():
    assert benchmark_run("report.py", "--help").returncode == 0
    code = f"import sys, report; print([m for m in {WORKSTATION_MODULES!r} if m in sys.modules])"
    imported = benchmark_run("-c", code)
    assert imported.stdout.strip() == "[]", imported.stderr


def test_a_made_up_result_as_markdown_json_and_targets(tmp_path: Path):
    output = report_output()
    result = made_up_result()
    result["targets"] = output.targets(result)
    met = {target["target"]: target["met"] for target in result["targets"]}
    assert met["lfw-320, 1 worker(s) = cpu(s): embedder + yunet scan img/s >= 15x face_recognition's"]  # 50 / 3
    assert not met["lfw-320, 2 worker(s) = cpu(s): embedder + yunet scan img/s >= 15x face_recognition's"]  # 90 / 7
    assert not met["daemon RSS after 1000 photos, MiB <= 120"]
    assert all(not target["target"].startswith("camera") for target in result["targets"]), "camera: one core only"
    markdown, json_file = output.write(result, tmp_path)
    text = markdown.read_text()
    ours = "| lfw-320 | embedder + yunet | 50.0 (40.0–60.0) | 90.0 (80.0–95.0) | 100 (100–100) | 250 (240–260) |"
    assert ours in text
    assert "| lfw-320 | face_recognition | 3.0 (3.0–3.0) | 7.0 (6.0–8.0) |" in text
    assert "- skipped: the clip: absent" in text
    assert "| embedder | 1301 / 0 | 98.4 % | 98.4 % | 96.0 % | 96.0 % |" in text
    assert json.loads(json_file.read_text()) == result
