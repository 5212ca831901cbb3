"""Compares what `edgeface scan --json` (and `info --json`) gave on x86 and on emulated arm64.

usage: python compare.py WORK
  WORK holds x86.jsonl, arm.jsonl, x86.db, arm.db and, when `info` ran, x86-info.json and
  arm-info.json, as tests/arm/run.sh writes them.

The same int8 model and the same photos must give the same images, the same face boxes and labels,
and confidences within one int8 step of the output (a sigmoid's scale is 1/256), with slack because
x86 and ARM kernels may round differently. Exits 1 with every difference listed, else prints a summary.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path

CONFIDENCE_TOLERANCE = 2 / 256 + 1e-6


def read_scan(path: Path) -> dict[str, dict]:
    results = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {result["path"]: result for result in results}


def compare_image(name: str, x86: dict, arm: dict) -> tuple[list[str], float]:
    """The differences for one image, and the largest confidence difference seen."""
    problems, worst = [], 0.0
    for key in ("sha256", "width", "height", "error"):
        if x86.get(key) != arm.get(key):
            problems.append(f"{name}: {key} differs: x86 {x86.get(key)!r}, arm64 {arm.get(key)!r}")
    if len(x86["faces"]) != len(arm["faces"]):
        return problems + [f"{name}: x86 found {len(x86['faces'])} faces, arm64 {len(arm['faces'])}"], worst
    for i, (a, b) in enumerate(zip(x86["faces"], arm["faces"])):
        if a["box"] != b["box"]:
            problems.append(f"{name} face {i}: box x86 {a['box']}, arm64 {b['box']}")
        if a["label"] != b["label"]:
            problems.append(f"{name} face {i}: label x86 {a['label']!r}, arm64 {b['label']!r}")
        difference = abs(a["confidence"] - b["confidence"])
        worst = max(worst, difference)
        if difference > CONFIDENCE_TOLERANCE:
            problems.append(
                f"{name} face {i}: confidence x86 {a['confidence']:.6f}, arm64 {b['confidence']:.6f} "
                f"(differ by {difference:.6f} > {CONFIDENCE_TOLERANCE:.6f})"
            )
    return problems, worst


def log_counts(db: Path) -> tuple[int, int]:
    """(inputs, faces) recorded in a SQLite log: the device must log what it printed."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as connection:
        inputs = connection.execute("SELECT count(*) FROM inputs").fetchone()[0]
        faces = connection.execute("SELECT count(*) FROM faces").fetchone()[0]
    return inputs, faces


def compare_info(work: Path) -> tuple[list[str], str]:
    x86_file, arm_file = work / "x86-info.json", work / "arm-info.json"
    if not x86_file.exists():
        return [], "info: not run"
    x86, arm = json.loads(x86_file.read_text()), json.loads(arm_file.read_text())
    keys = sorted(x86.keys() | arm.keys())
    problems = [f"info: {key} differs: x86 {x86.get(key)!r}, arm64 {arm.get(key)!r}" for key in keys if x86.get(key) != arm.get(key)]
    tensor = arm["input"]
    return problems, (
        f"info: identical on both (input {tensor['shape']} {tensor['dtype']}, output {arm['output']['dtype']} "
        f"scale {arm['output']['scale']:.6g}, {sum(arm['ops'].values())} ops, labels {arm['metadata']['labels']})"
    )


def main(work: Path) -> int:
    x86, arm = read_scan(work / "x86.jsonl"), read_scan(work / "arm.jsonl")
    problems, worst = [], 0.0
    if not x86:
        problems.append("x86 scanned no images")
    if x86.keys() != arm.keys():
        only_x86, only_arm = sorted(x86.keys() - arm.keys()), sorted(arm.keys() - x86.keys())
        problems.append(f"different images: only on x86 {only_x86}, only on arm64 {only_arm}")
    for path in sorted(x86.keys() & arm.keys()):
        image_problems, image_worst = compare_image(Path(path).name, x86[path], arm[path])
        problems += image_problems
        worst = max(worst, image_worst)
    faces = sum(len(result["faces"]) for result in arm.values())
    if faces == 0:
        problems.append("no faces found at all: the comparison would prove nothing")
    x86_log, arm_log = log_counts(work / "x86.db"), log_counts(work / "arm.db")
    if x86_log != arm_log or arm_log != (len(arm), faces):
        problems.append(f"logs differ: (inputs, faces) x86 {x86_log}, arm64 {arm_log}, arm64 printed {(len(arm), faces)}")
    info_problems, info_summary = compare_info(work)
    problems += info_problems

    if problems:
        print("x86 and arm64 disagree:", *problems, sep="\n  ", file=sys.stderr)
        return 1
    for path in sorted(arm):
        found = ", ".join(f"{face['label']} {face['confidence']:.3f}" for face in arm[path]["faces"]) or "no face"
        print(f"  {Path(path).name}: {found}")
    print(
        f"same on x86 and arm64: {len(arm)} images, {faces} faces, boxes and labels identical, "
        f"largest confidence difference {worst:.6f} (allowed {CONFIDENCE_TOLERANCE:.6f}); logs {arm_log[0]} inputs, {arm_log[1]} faces"
    )
    print(f"  {info_summary}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(main(Path(sys.argv[1])))
