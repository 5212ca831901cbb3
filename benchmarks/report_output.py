"""report.py's results as Markdown and JSON, and its targets met or missed. Works on the result dictionary alone
(no measuring, no models), so a made-up result can be written too; a part the result lacks is left out.

A figure is a dictionary from timing.spread: median, min, max and the runs; it is shown "median (min–max)".
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

EMBEDDER_YUNET = "embedder + yunet"
CLI = "face_recognition"  # face_recognition's CLI that names faces (its face_detection CLI only finds them)
SPEED_GOAL, MEMORY_GOAL, SPEEDUP_GOAL, OVERHEAD_GOAL = 15.0, 0.75, 1.7, 15.0
LAG_GOAL_MS, READY_GOAL_S, RSS_GOAL_MIB = 100.0, 1.5, 120.0
SPEEDUP_SET = "lfw"  # the photo set whose 2-worker speed-up has a goal


def cell(figure: dict | None, digits: int = 1) -> str:
    """"median (min–max)" of a figure, the median alone for one run, "–" for none."""
    if figure is None:
        return "–"
    median = f"{figure['median']:.{digits}f}"
    if len(figure["runs"]) < 2:
        return median
    return f"{median} ({figure['min']:.{digits}f}–{figure['max']:.{digits}f})"


def markdown_table(headers: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table's lines."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def scan_rows(profile: dict) -> list[list[str]]:
    """One row per photo set and setup (edgeface's, then face_recognition's CLIs): images/s, peak memory, speed-up."""
    counts = [str(count) for count in profile["worker_counts"]]
    rows = []
    for photos, setups in profile.get("scan", {}).items():
        tools = {**setups, **profile.get("face_recognition", {}).get(photos, {})}
        for name, entry in tools.items():
            rows.append([photos, name, *(cell(entry.get(c, {}).get("ips")) for c in counts),
                         *(cell(entry.get(c, {}).get("peak_mib"), 0) for c in counts),
                         cell(entry.get("speedup"), 2)])  # fmt: skip
    return rows


def scan_section(profile: dict) -> list[str]:
    counts = profile["worker_counts"]
    headers = ["photos", "what", *(f"img/s, {c} worker(s)" for c in counts),
               *(f"peak MiB, {c} worker(s)" for c in counts), "speed-up, all / 1"]  # fmt: skip
    return ["### Scan: images per second (whole command, start-up included) and peak memory of all processes", "",
            *markdown_table(headers, scan_rows(profile))]  # fmt: skip


def floors_section(profile: dict) -> list[str]:
    keys = ("decode_ms", "detect_ms", "classify_ms", "floor_sum_ms", "scan_ms")
    rows = [[photos, name, *(cell(entry[key], 2) for key in keys), cell(entry["overhead_pct"]) + " %"]
            for photos, setups in profile["floors"].items() for name, entry in setups.items()]  # fmt: skip
    headers = ["photos", "setup", "read + decode ms", "detect ms", "classify ms", "sum ms", "scan, 1 worker, ms",
               "overhead over the sum"]  # fmt: skip
    return ["### Floors: each step alone, per image, against a 1-worker scan in process", "",
            *markdown_table(headers, rows)]  # fmt: skip


def latency_section(profile: dict) -> list[str]:
    rows = [[kind, cell(threads["1"], 2), cell(threads["2"], 2)] for kind, threads in profile["latency"].items()]
    return ["### Per face: classify (embed and name) one face, batch 1, ms", "",
            *markdown_table(["model", "1 LiteRT thread", "2 LiteRT threads"], rows)]  # fmt: skip


def camera_section(profile: dict) -> list[str]:
    rows = [[name, cell(entry["fps"]), cell(entry["lag_p50_ms"]), cell(entry["lag_p99_ms"]), cell(entry["lag_max_ms"]),
             cell(entry["skipped"], 0), cell(entry.get("cpu_ms_per_frame"), 2), cell(entry.get("faces_named"), 0),
             cell(entry.get("faces_followed"), 0)] for name, entry in profile["camera"].items()]  # fmt: skip
    headers = ["setup", "frames/s", "lag p50 ms", "lag p99 ms", "lag max ms", "frames dropped", "CPU ms a frame",
               "faces named", "followed unnamed"]  # fmt: skip
    return ["### Camera: the clip at its own frame rate through the daemon's camera loop (no log)", "",
            *markdown_table(headers, rows)]


def daemon_section(profile: dict) -> list[str]:
    rows = [[name, cell(entry["ready_s"], 2), cell(entry["latency_p50_ms"]), cell(entry["latency_p99_ms"]),
             cell(entry["rss_mib_after"], 0)] for name, entry in profile["daemon"].items()]  # fmt: skip
    photos = profile.get("daemon_photos", "the")
    headers = ["setup", "start to READY s", "file to row p50 ms", "p99 ms", f"RSS MiB after {photos} photos"]
    return [f"### Daemon: `edgeface watch`, {photos} photos at 20 a second", "", *markdown_table(headers, rows)]


SECTIONS: dict[str, Callable[[dict], list[str]]] = {
    "scan": scan_section,
    "floors": floors_section,
    "latency": latency_section,
    "camera": camera_section,
    "daemon": daemon_section,
}


def profile_section(name: str, profile: dict) -> list[str]:
    """A profile's heading and its parts measured; nothing when none was."""
    lines = []
    for key, section in SECTIONS.items():
        if profile.get(key):
            lines += [*section(profile), ""]
    return [f"## {name}: {profile['description']}", "", *lines] if lines else []


def accuracy_section(accuracy: dict) -> list[str]:
    if not accuracy:
        return []
    rows = [[name, f"{found['photos_with_face']} / {found['photos_without_face']}",
             *(f"{100 * found['figures'][method]['top1']:.1f} %" for method in ("centroid", "image")),
             *(f"{100 * found['figures'][method]['known_accept']:.1f} %" for method in ("centroid", "image"))]
            for name, found in accuracy.items()]  # fmt: skip
    headers = ["method", "photos with a face / without", "top-1, nearest centroid", "top-1, nearest image",
               "known accepted at 1 % FAR, centroid", "image"]  # fmt: skip
    return ["## Accuracy on the labelled split of lfw_dev (computed once: it does not vary)", "",
            *markdown_table(headers, rows), ""]  # fmt: skip


def targets_section(targets: list[dict]) -> list[str]:
    if not targets:
        return []
    rows = [[t["profile"], t["target"], f"{t['value']:.2f}", "met" if t["met"] else "**missed**"] for t in targets]
    return ["## Targets", "", *markdown_table(["profile", "target", "measured (medians)", ""], rows), ""]


def target(profile: str, text: str, value: float, goal: float, at_most: bool = False) -> dict:
    """One target: what, the value measured, and whether it meets `goal` (a floor, or a ceiling when `at_most`)."""
    met = value <= goal if at_most else value >= goal
    return {"profile": profile, "target": text, "value": value, "goal": goal, "met": met}


def against_face_recognition(name: str, profile: dict) -> list[dict]:
    """The embedder with YuNet against face_recognition's CLI at equal cores: speed and peak memory."""
    found = []
    for photos, setups in profile.get("scan", {}).items():
        ours, theirs = setups.get(EMBEDDER_YUNET), profile.get("face_recognition", {}).get(photos, {}).get(CLI)
        for count in [str(c) for c in profile["worker_counts"]] if ours and theirs else []:
            speed = ours[count]["ips"]["median"] / theirs[count]["ips"]["median"]
            memory = ours[count]["peak_mib"]["median"] / theirs[count]["peak_mib"]["median"]
            where = f"{photos}, {count} worker(s) = cpu(s)"
            found.append(target(name, f"{where}: embedder + yunet scan img/s >= {SPEED_GOAL:g}x face_recognition's",
                                speed, SPEED_GOAL))  # fmt: skip
            found.append(target(name, f"{where}: its peak memory <= {MEMORY_GOAL:g}x face_recognition's", memory,
                                MEMORY_GOAL, at_most=True))  # fmt: skip
    return found


def pipeline_targets(name: str, profile: dict) -> list[dict]:
    """YuNet's speed-up on every core on the photos, and the overhead of a scan over its floors."""
    found = []
    for photos, setups in profile.get("scan", {}).items():
        for setup, entry in setups.items():
            if photos.startswith(SPEEDUP_SET) and setup.endswith("yunet") and "speedup" in entry:
                found.append(target(name, f"{photos}, {setup}: all workers >= {SPEEDUP_GOAL}x one worker",
                                    entry["speedup"]["median"], SPEEDUP_GOAL))  # fmt: skip
    for photos, setups in profile.get("floors", {}).items():
        found += [target(name, f"{photos}, {setup}: scan overhead over decode + detect + classify <= "
                         f"{OVERHEAD_GOAL:g} %", entry["overhead_pct"]["median"], OVERHEAD_GOAL, at_most=True)
                  for setup, entry in setups.items()]  # fmt: skip
    return found


def device_targets(name: str, profile: dict) -> list[dict]:
    """The embedder's camera lag on one core, its daemon's start and memory."""
    found = []
    camera = profile.get("camera", {}).get(EMBEDDER_YUNET)
    if camera and profile["cores"] == 1:
        found.append(target(name, f"camera lag p99, one core, ms <= {LAG_GOAL_MS:g}", camera["lag_p99_ms"]["median"],
                            LAG_GOAL_MS, at_most=True))  # fmt: skip
    daemon = profile.get("daemon", {}).get(EMBEDDER_YUNET)
    if daemon:
        found.append(target(name, f"daemon start to READY, s <= {READY_GOAL_S:g}", daemon["ready_s"]["median"],
                            READY_GOAL_S, at_most=True))  # fmt: skip
        found.append(target(name, f"daemon RSS after {profile.get('daemon_photos')} photos, MiB <= {RSS_GOAL_MIB:g}",
                            daemon["rss_mib_after"]["median"], RSS_GOAL_MIB, at_most=True))  # fmt: skip
    return found


def accuracy_targets(accuracy: dict) -> list[dict]:
    """The embedder's top-1 at least face_recognition's on the same split, by both rules."""
    if not {"embedder", CLI} <= accuracy.keys():
        return []
    ours, theirs = accuracy["embedder"]["figures"], accuracy[CLI]["figures"]
    return [target("-", f"top-1, nearest {method}: embedder minus face_recognition >= 0",
                   ours[method]["top1"] - theirs[method]["top1"], 0.0) for method in ("centroid", "image")]  # fmt: skip


def targets(result: dict) -> list[dict]:
    """Every target the result has the figures for."""
    found = accuracy_targets(result.get("accuracy", {}))
    for name, profile in result.get("profiles", {}).items():
        for kind in (against_face_recognition, pipeline_targets, device_targets):
            found += kind(name, profile)
    return found


def markdown(result: dict) -> str:
    """The whole report as Markdown."""
    lines = [f"# edgeface report, {result['label']}", "", f"Run {result['started']}, {result['seconds']:.0f} s; "
             f"{result['machine']}. Each figure: median (min–max) of {result['repeat']} run(s), all in this one run "
             "on the same files.", ""]  # fmt: skip
    lines += [f"- {name}: {text}" for name, text in result.get("inputs", {}).items()]
    lines += [f"- skipped: {reason}" for reason in result.get("skipped", [])]
    lines.append("")
    for name, profile in result.get("profiles", {}).items():
        lines += profile_section(name, profile)
    lines += accuracy_section(result.get("accuracy", {}))
    lines += targets_section(result.get("targets", []))
    return "\n".join(lines).rstrip() + "\n"


def write(result: dict, folder: Path) -> tuple[Path, Path]:
    """report.md and report.json in `folder`; their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    md, js = folder / "report.md", folder / "report.json"
    md.write_text(markdown(result))
    js.write_text(json.dumps(result, indent=2) + "\n")
    return md, js
