"""One rerunnable report of edgeface's speed and memory, side by side with `face_recognition`, as Markdown and JSON.

Usage: python benchmarks/report.py [--out DIR] [--quick] [--classic FILE] [--embedder FILE] [--profiles ...]
                                   [--parts ...] [--repeat N] [--label TEXT]

For the int8 classic CNN and the int8 embedder, with haar and yunet (the embedder aligns by YuNet's landmarks, so
it runs with yunet only), on two photo sets (lfw: 320 lfw_dev photos, 250x250; clip: 92 frames of the 640x360
clip), with 1 worker and with every core: scan images/s and peak memory of all processes (report_process.py says
what that measures); per-face classify/embed latency at 1 and 2 LiteRT threads; the read+decode, detect and
classify floors and a scan's overhead over their sum; the daemon's start to READY, its file-to-row latency at 20
files/s and its memory after 1,000 photos; the camera loop's frames/s and lag on the clip. When face_recognition is
installed, its `face_detection` and `face_recognition` CLIs run on the same folders and cores, and both are named
on the same labelled split of lfw_dev (accuracy.py's). Every figure is the median of --repeat runs (3) with min and
max, all taken in this one run on the same files. The "pi" profile runs the suite again pinned to one core (as
`taskset -c 0` would; children inherit it) with 1 LiteRT thread. Targets are printed with the figures.

Models not given are built once into --cache with `edgeface train` and `convert` (needs the convert extra; about 1.5
minutes on a 2-core x86). A full run takes about 30 minutes on a 2-core x86 (scan 2 and face_recognition 4.5
minutes a profile, measured; the daemon about 6, the rest about 4, estimated); --quick (a few photos, one run) 2.5.
What is absent (YuNet's file, the clip, face_recognition) is skipped and the report says so.
"""

from __future__ import annotations

import argparse
import compileall
import os
import platform
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import cv2
import edgeface
import edgeface_convert

import daemon
import report_output
import scan_speed
from lfw_split import PeopleSplit, face_recognition_available, people_split
from report_inputs import classic_model, clip_frames, copy_flat, embedder_model, gallery_folder
from report_suite import (
    PhotoSet,
    Setup,
    Suite,
    accuracy_figures,
    camera_figures,
    cores,
    daemon_figures,
    face_recognition_command,
    face_recognition_figures,
    floor_figures,
    latency_figures,
    scan_figures,
    worker_counts,
)

SHARED = Path(__file__).resolve().parents[2] / "shared"  # beside the repo
YUNET_FILE = Path("models/yunet/face_detection_yunet_2023mar.onnx")
CLIP_FILE = Path("data/misc/video/short_hamilton_clip.mp4")
SEED = 0  # accuracy.py's split
FULL = {"photos": 320, "frames": 92, "daemon_photos": 1000, "repeat": 3}
QUICK = {"photos": 24, "frames": 12, "daemon_photos": 40, "repeat": 1, "known_people": 6, "stranger_people": 16}
PARTS = ("scan", "floors", "latency", "camera", "daemon", "face_recognition", "accuracy")
PROFILES = {
    "workstation": "every core of this machine, 1 LiteRT thread per worker",
    "pi": "pinned to one core (as taskset -c 0), 1 LiteRT thread: a Pi-class profile",
}


def say(text: str) -> None:
    print(text, flush=True)


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("edgeface-report"), help="where report.md and report.json go")
    parser.add_argument("--quick", action="store_true", help="a smoke run: a few photos, one run of each")
    parser.add_argument("--classic", type=Path, help="an int8 classic CNN (default: built once into --cache)")
    parser.add_argument("--embedder", type=Path, help="an int8 embedder (default: built once into --cache)")
    parser.add_argument("--data", type=Path, default=SHARED / "data", help="lfw_dev/ and misc/video/ are in it")
    parser.add_argument("--yunet", type=Path, default=SHARED / YUNET_FILE, help="YuNet's ONNX file")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "edgeface-report",
                        help="models, photo folders and clip frames made once")  # fmt: skip
    parser.add_argument("--profiles", nargs="+", choices=tuple(PROFILES), default=list(PROFILES))
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--repeat", type=int, help="runs of each figure (default 3; --quick: 1)")
    parser.add_argument("--label", help="where it ran, printed with every figure (default: machine and cores)")
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    args.repeat = args.repeat or sizes["repeat"]
    args.sizes = sizes
    return args


def photo_sets(args: argparse.Namespace, clip: Path | None) -> tuple[PhotoSet, ...]:
    """The lfw_dev photos (spread over the people, as scan_speed.py picks them) and the clip's frames, each as a
    flat folder in the cache."""
    count, frames = args.sizes["photos"], args.sizes["frames"]
    picked, _ = scan_speed.pick_photos(args.data / "lfw_dev", count)
    found = [PhotoSet(f"lfw-{count}", copy_flat(picked, args.cache / "photos" / f"lfw-{count}"))]
    if clip:
        found.append(PhotoSet(f"clip-{frames}", clip_frames(clip, frames, args.cache / "photos" / f"clip-{frames}")))
    return tuple(found)


def the_split(args: argparse.Namespace) -> PeopleSplit:
    split = people_split(args.data / "lfw_dev", SEED)
    return split.of_people(QUICK["known_people"], QUICK["stranger_people"]) if args.quick else split


def models(args: argparse.Namespace, yunet: Path | None, skipped: list[str]) -> dict[str, Path]:
    """kind → the int8 model: as given, else built into the cache from the whole split's gallery photos."""
    found = {}
    gallery = None if args.classic and args.embedder else gallery_folder(people_split(args.data / "lfw_dev", SEED),
                                                                          args.cache / "gallery")  # fmt: skip
    found["classic"] = args.classic or classic_model(gallery, args.cache, say)
    if args.embedder or yunet:
        found["embedder"] = args.embedder or embedder_model(gallery, yunet, args.cache, say)
    else:
        skipped.append("the embedder: no YuNet file to build it with (pass --yunet FILE or --embedder FILE)")
    return found


def setups(built: dict[str, Path], yunet: Path | None, skipped: list[str]) -> tuple[Setup, ...]:
    """Every model with every detector it can run with here."""
    found = [Setup("classic", built["classic"], "haar")]
    if yunet:
        found.append(Setup("classic", built["classic"], "yunet"))
        if "embedder" in built:
            found.append(Setup("embedder", built["embedder"], "yunet"))
    else:
        skipped.append(f"yunet: no ONNX file at {SHARED / YUNET_FILE} (pass --yunet FILE)")
    if "embedder" in built:
        skipped.append("embedder + haar: the embedder aligns faces by YuNet's five landmarks, which haar does not give")
    return tuple(found)


@contextmanager
def pinned(profile: str) -> Iterator[None]:
    """For the pi profile, this process (and every process it starts) on one core, as `taskset -c` does."""
    before = os.sched_getaffinity(0)
    if profile == "pi":
        os.sched_setaffinity(0, {min(before)})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def profile_figures(suite: Suite, profile: str, parts: list[str], split: PeopleSplit) -> dict:
    """Every part asked for, measured under `profile`."""
    measures: dict[str, Callable[[], dict]] = {
        "scan": lambda: scan_figures(suite),
        "floors": lambda: floor_figures(suite),
        "latency": lambda: latency_figures(suite),
        "camera": lambda: camera_figures(suite) if suite.clip else {},
        "daemon": lambda: daemon_figures(suite),
        "face_recognition": lambda: face_recognition_figures(suite, split) if face_recognition_command(
            "face_recognition") else {},  # fmt: skip
    }
    with pinned(profile):
        found = {"description": PROFILES[profile], "cores": cores(), "worker_counts": worker_counts(),
                 "daemon_photos": len(suite.daemon_photos)}  # fmt: skip
        for part in parts:
            if part in measures:
                started = time.monotonic()
                found[part] = measures[part]()
                say(f"{profile}: {part} in {time.monotonic() - started:.0f} s")
    return found


def skipped_parts(args: argparse.Namespace, clip: Path | None, skipped: list[str]) -> None:
    """Notes on the parts that cannot run here."""
    if not clip:
        skipped.append(f"the clip: no file at {args.data / CLIP_FILE.relative_to('data')} (no clip frames, no camera)")
    if not face_recognition_available() or not face_recognition_command("face_recognition"):
        skipped.append("face_recognition: not installed (pip install dlib-bin face-recognition-models, then "
                       "face-recognition --no-deps)")  # fmt: skip


def inputs_text(sets: tuple[PhotoSet, ...], built: dict[str, Path], split: PeopleSplit) -> dict[str, str]:
    """What the report ran on, one line each."""
    found = {photos.name: f"{len(photos.paths)} files in {photos.folder}" for photos in sets}
    found.update({kind: f"{path} ({path.stat().st_size:,} B)" for kind, path in built.items()})
    described = split.describe()
    found["split"] = (f"lfw_dev, seed {SEED}: {described['known_people']} known people "
                      f"({described['gallery_photos']} gallery / {described['test_photos']} test photos), "
                      f"{described['stranger_people']} strangers ({described['stranger_photos']} photos)")  # fmt: skip
    return found


def compile_like_an_install() -> None:
    """Writes edgeface's bytecode, as `pip install` does. A source checkout run with PYTHONDONTWRITEBYTECODE (or from
    a read-only folder) compiles every module at every start instead: about 0.1 s a process on a 2-core x86, which
    a user's install never pays and face_recognition, installed by pip, does not pay either."""
    for package in (edgeface, edgeface_convert):
        compileall.compile_dir(Path(package.__file__).parent, quiet=1)


def main() -> None:
    args = arguments()
    started, skipped = time.monotonic(), []
    compile_like_an_install()
    cv2.setNumThreads(1)  # as in scan's workers: in-process pipelines here run 1 OpenCV thread
    yunet = args.yunet if args.yunet.is_file() else None
    clip = args.data / CLIP_FILE.relative_to("data")
    clip = clip if clip.is_file() else None
    skipped_parts(args, clip, skipped)
    built = models(args, yunet, skipped)
    split = the_split(args)
    sets = photo_sets(args, clip)
    found = setups(built, yunet, skipped)
    label = args.label or f"{platform.machine()}, {os.cpu_count()} cores, this machine"
    result = {"label": label, "started": datetime.now().isoformat(timespec="seconds"), "repeat": args.repeat,
              "machine": f"{scan_speed.cpu_name()}, python {platform.python_version()}, opencv {cv2.__version__}",
              "quick": args.quick, "skipped": skipped, "inputs": inputs_text(sets, built, split),
              "profiles": {}}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="edgeface-report-") as work:
        daemon_setups = tuple(s for s in found if (s.kind, s.detector) in {("classic", "haar"), ("embedder", "yunet")})
        suite = Suite(found, daemon_setups, sets, yunet, clip, tuple(daemon.photos(args.data / "lfw_dev",
                      args.sizes["daemon_photos"])), args.repeat, Path(work), say)  # fmt: skip
        for profile in args.profiles:
            result["profiles"][profile] = profile_figures(suite, profile, args.parts, split)
        if "accuracy" in args.parts:
            result["accuracy"] = accuracy_figures(suite, built.get("embedder"), split)
    result["targets"] = report_output.targets(result)
    result["seconds"] = time.monotonic() - started
    markdown, json_file = report_output.write(result, args.out)
    print(markdown.read_text())
    say(f"wrote {markdown} and {json_file}")


if __name__ == "__main__":
    main()
