"""The measurements of report.py, one function per kind of figure. Each repeats its runs and keeps every one
(timing.spread: median, min, max), alternating the configurations inside each repeat, so that a noisy spell on a
shared machine hurts them alike and their ratios hold. The workers and threads follow this process's CPU affinity,
which the Pi-class profile pins to one core; child processes inherit it, as they would from `taskset`.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeface.camera import CameraSource, SourceFinished
from edgeface.dataset import load_faces
from edgeface.images import decode, read_input
from edgeface.intake_camera import camera_tracker, faces_of_frame
from edgeface.preprocess import crop_faces
from edgeface.settings import CameraSettings, DetectorOverrides
from edgeface.workers import PipelineRecipe

import daemon
from lfw_split import PeopleSplit, embed_all, face_recognition_results, recognition_figures
from report_process import ProcessRun, measured_run
from scan_speed import decode_only_seconds, stage_seconds, timed_scan
from timing import median_ms, spread

CAMERA_WAIT = 0.5  # seconds to wait for the clip's next frame
DEFAULT_RECHECK = CameraSettings().recheck  # the daemon's camera.recheck, unless configured
DAEMON_RATE = 20.0  # photos a second into the watched folder
LATENCY_CALLS = 200  # per-face calls timed in each repeat


@dataclass(frozen=True)
class Setup:
    """A model and the detector it runs with: every speed figure is given for one. kind: classic or embedder."""

    kind: str
    model: Path
    detector: str

    @property
    def name(self) -> str:
        return f"{self.kind} + {self.detector}"

    def recipe(self, yunet: Path | None, threads: int = 1) -> PipelineRecipe:
        """How scan would build this setup's pipeline, with `threads` LiteRT threads."""
        overrides = DetectorOverrides(name=self.detector, yunet_model=str(yunet) if yunet else None)
        return PipelineRecipe(model=str(self.model), threads=threads, detector=overrides)


@dataclass(frozen=True)
class PhotoSet:
    """A flat folder of photos that edgeface and face_recognition both read; `paths`: its files, sorted."""

    name: str
    folder: Path

    @property
    def paths(self) -> list[str]:
        return sorted(str(path) for path in self.folder.iterdir() if path.is_file())


@dataclass(frozen=True)
class Suite:
    """What every measurement runs on, and how often. daemon_setups: the setups the daemon runs (each model with
    its own detector, since one daemon run takes a minute); work: a scratch folder."""

    setups: tuple[Setup, ...]
    daemon_setups: tuple[Setup, ...]
    photo_sets: tuple[PhotoSet, ...]
    yunet: Path | None
    clip: Path | None
    daemon_photos: tuple[Path, ...]
    repeat: int
    work: Path
    say: Callable[[str], None]


def cores() -> int:
    """The cores this process may run on (its affinity), which is what "all workers" means here."""
    return len(os.sched_getaffinity(0))


def worker_counts() -> list[int]:
    """1 and every core, once each."""
    return sorted({1, cores()})


def edgeface_scan(suite: Suite, setup: Setup, photos: PhotoSet, workers: int) -> ProcessRun:
    """`edgeface scan` of the whole folder into a fresh log, one JSON line per photo, in a new process."""
    with tempfile.TemporaryDirectory(dir=suite.work) as scratch:
        command = [sys.executable, "-m", "edgeface", "scan", str(photos.folder), "--model", str(setup.model),
                   "--db", str(Path(scratch) / "scan.db"), "--workers", str(workers), "--threads", "1",
                   "--detector", setup.detector, "--json"]  # fmt: skip
        return measured_run(command + (["--yunet-model", str(suite.yunet)] if suite.yunet else []))


def run_figures(runs: list[ProcessRun], images: int, line_per_image: bool = True) -> dict:
    """Images per second, peak memory of all processes; with a line of output per image (edgeface's --json), also
    the images per second after the first, which leaves start-up out."""
    found = {
        "ips": spread([run.rate(images) for run in runs]),
        "peak_mib": spread([run.peak_mib for run in runs]),
        "processes": max(run.processes for run in runs),
    }
    if line_per_image:
        found["steady_ips"] = spread([run.steady_rate(images) for run in runs])
    return found


def ratio_figure(numerators: list[ProcessRun], denominators: list[ProcessRun]) -> dict:
    """How many times faster the first runs are than the second, repeat by repeat (so noise cancels out)."""
    return spread([b.seconds / a.seconds for a, b in zip(numerators, denominators)])


def scan_figures(suite: Suite) -> dict:
    """photo set → setup → workers → images/s and peak memory; "speedup": every core over one."""
    runs: dict[tuple[str, str, int], list[ProcessRun]] = {}
    for n in range(suite.repeat):
        for photos in suite.photo_sets:
            for setup in suite.setups:
                for workers in worker_counts():
                    suite.say(f"scan {n + 1}/{suite.repeat}: {photos.name}, {setup.name}, {workers} worker(s)")
                    runs.setdefault((photos.name, setup.name, workers), []).append(
                        edgeface_scan(suite, setup, photos, workers))
    figures: dict = {}
    for photos in suite.photo_sets:
        for setup in suite.setups:
            found = {w: runs[(photos.name, setup.name, w)] for w in worker_counts()}
            entry = {str(w): run_figures(found[w], len(photos.paths)) for w in found}
            if cores() > 1:
                entry["speedup"] = ratio_figure(found[cores()], found[1])
            figures.setdefault(photos.name, {})[setup.name] = entry
    return figures


def floors_once(setup: Setup, photos: PhotoSet, yunet: Path | None, work: Path) -> dict:
    """One pass of each floor over the photos and one in-process scan with 1 worker, per image in ms: read and
    decode alone, detect alone, classify (embed) alone; the scan's overhead over their sum, in %."""
    paths, recipe = photos.paths, setup.recipe(yunet)
    pipeline = recipe.build(report_differences=False)
    with tempfile.TemporaryDirectory(dir=work) as scratch:
        spent, _ = stage_seconds(paths, pipeline, Path(scratch) / "stages.db")
        scan = timed_scan(paths, pipeline, recipe, 1, Path(scratch) / "scan.db")
    per_image = {"decode_ms": decode_only_seconds(paths), "detect_ms": spent["detect"],
                 "classify_ms": spent["classify"], "scan_ms": scan.seconds}  # fmt: skip
    per_image = {key: 1000 * seconds / len(paths) for key, seconds in per_image.items()}
    floor = per_image["decode_ms"] + per_image["detect_ms"] + per_image["classify_ms"]
    return {**per_image, "floor_sum_ms": floor, "overhead_pct": 100 * (per_image["scan_ms"] / floor - 1)}


def floor_figures(suite: Suite) -> dict:
    """photo set → setup → the floors and the overhead of a 1-worker scan over their sum (floors_once)."""
    passes: dict[tuple[str, str], list[dict]] = {}
    for n in range(suite.repeat):
        for photos in suite.photo_sets:
            for setup in suite.setups:
                suite.say(f"floors {n + 1}/{suite.repeat}: {photos.name}, {setup.name}")
                passes.setdefault((photos.name, setup.name), []).append(
                    floors_once(setup, photos, suite.yunet, suite.work))
    return {photos.name: {setup.name: {key: spread([one[key] for one in passes[(photos.name, setup.name)]])
                                       for key in passes[(photos.name, setup.name)][0]}
                          for setup in suite.setups}
            for photos in suite.photo_sets}  # fmt: skip


def first_face(setup: Setup, photos: PhotoSet, yunet: Path | None) -> np.ndarray:
    """The model's input for the first face found in the photos: one crop, (1, height, width, channels)."""
    pipeline = setup.recipe(yunet).build(report_differences=False)
    for path in photos.paths:
        pixels = decode(read_input(path).content)
        boxes = pipeline.detector.detect(pixels)
        if boxes:
            return crop_faces(pixels, boxes[:1], pipeline.preprocessing)
    raise SystemExit(f"{setup.name} finds no face in {photos.folder}")


def latency_figures(suite: Suite) -> dict:
    """model kind → LiteRT threads → ms to classify (embed and name) one face, batch 1."""
    one_per_kind = {setup.kind: setup for setup in suite.setups}
    faces = {kind: first_face(setup, suite.photo_sets[0], suite.yunet) for kind, setup in one_per_kind.items()}
    times: dict[tuple[str, int], list[float]] = {}
    for _ in range(suite.repeat):
        for kind, setup in one_per_kind.items():
            for threads in (1, 2):
                recognizer = setup.recipe(suite.yunet, threads).build(report_differences=False).recognizer
                face = faces[kind]
                took = median_ms(lambda: recognizer.classify(face), LATENCY_CALLS)
                times.setdefault((kind, threads), []).append(took)
    return {kind: {str(threads): spread(times[(kind, threads)]) for threads in (1, 2)} for kind in one_per_kind}


def camera_once(setup: Setup, clip: Path, yunet: Path | None, recheck: float) -> dict:
    """The daemon's camera loop without its log: the clip played at its own frame rate (frames the loop is too slow
    for are dropped, as from a camera), each frame's faces found, followed and named as the daemon does with
    `camera.recheck` = `recheck`; frames per second, the lag of each frame from its capture to its faces named (ms),
    the CPU time a frame costs (all threads, the camera's reader too) and the faces named and followed unnamed."""
    pipeline = setup.recipe(yunet).build(report_differences=False)
    tracker = camera_tracker(recheck)
    lags, skipped, named, followed = [], 0, 0, 0
    with CameraSource(str(clip)) as camera:
        started, cpu_started = time.monotonic(), time.process_time()
        while True:
            try:
                frame = camera.next_frame(CAMERA_WAIT)
            except SourceFinished:
                break
            if frame is not None:
                faces, seen = faces_of_frame(pipeline, tracker, frame.pixels, frame.captured)
                tracker.update(faces, frame.captured, seen)
                lags.append(1000 * frame.lag)
                skipped, named, followed = skipped + frame.skipped, named + len(faces), followed + len(seen)
        seconds, cpu = time.monotonic() - started, time.process_time() - cpu_started
    return {"fps": len(lags) / seconds, "frames": len(lags), "skipped": skipped,
            "lag_p50_ms": float(np.percentile(lags, 50)), "lag_p99_ms": float(np.percentile(lags, 99)),
            "lag_max_ms": max(lags), "cpu_ms_per_frame": 1000 * cpu / len(lags), "faces_named": named,
            "faces_followed": followed}  # fmt: skip


def camera_figures(suite: Suite) -> dict:
    """setup → camera_once's figures over the repeats, with the daemon's default camera.recheck; the embedder also
    with every face named in every frame (recheck 0), to show what the recheck saves."""
    runs = [(setup.name, setup, DEFAULT_RECHECK) for setup in suite.setups]
    runs += [(f"{setup.name}, every face named", setup, 0.0) for setup in suite.setups if setup.kind == "embedder"]
    passes: dict[str, list[dict]] = {}
    for n in range(suite.repeat):
        for name, setup, recheck in runs:
            suite.say(f"camera {n + 1}/{suite.repeat}: {name}")
            passes.setdefault(name, []).append(camera_once(setup, suite.clip, suite.yunet, recheck))
    return {name: {key: spread([one[key] for one in found]) for key in found[0]} for name, found in passes.items()}


def daemon_once(setup: Setup, suite: Suite) -> dict:
    """benchmarks/daemon.py's steady arrivals: start to READY=1, file-to-row latency at DAEMON_RATE photos a
    second, the daemon's resident memory after them."""
    detector = ["--detector", setup.detector] + (["--yunet-model", str(suite.yunet)] if suite.yunet else [])
    with tempfile.TemporaryDirectory(dir=suite.work) as scratch:
        found = daemon.steady_arrivals(setup.model, detector, list(suite.daemon_photos), DAEMON_RATE, Path(scratch))
    return {"ready_s": found["ready_s"], "latency_p50_ms": found["latency_ms_p50"],
            "latency_p99_ms": found["latency_ms_p99"], "rss_mib_after": found["rss_mib_after"],
            "heavy_libraries": len(found["heavy_libraries"])}  # fmt: skip


def daemon_figures(suite: Suite) -> dict:
    """setup → daemon_once's figures over the repeats."""
    passes: dict[str, list[dict]] = {}
    for n in range(suite.repeat):
        for setup in suite.daemon_setups:
            suite.say(f"daemon {n + 1}/{suite.repeat}: {setup.name}, {len(suite.daemon_photos)} photos")
            passes.setdefault(setup.name, []).append(daemon_once(setup, suite))
    return {name: {key: spread([one[key] for one in found]) for key in found[0]} for name, found in passes.items()}


def face_recognition_command(name: str) -> Path | None:
    """face_recognition's console script `name` beside this interpreter, if it is installed."""
    script = Path(sys.executable).parent / name
    return script if script.is_file() else None


def known_folder(split: PeopleSplit, work: Path) -> Path:
    """One gallery photo in a folder of its own: face_recognition's CLI encodes its known people at every start,
    which edgeface does once at enrolment, so one photo keeps that cost out of the comparison."""
    folder = work / "known"
    folder.mkdir(exist_ok=True)
    first = next(path for path, _ in split.files if split.roles[path] == "gallery")
    shutil.copyfile(first, folder / Path(first).name)
    return folder


def face_recognition_figures(suite: Suite, split: PeopleSplit) -> dict:
    """photo set → "face_detection" / "face_recognition" → cpus → images/s and peak memory of its CLI, run on the
    same folders and cores as edgeface's scan."""
    known = known_folder(split, suite.work)
    commands = {name: face_recognition_command(name) for name in ("face_detection", "face_recognition")}
    runs: dict[tuple[str, str, int], list[ProcessRun]] = {}
    for n in range(suite.repeat):
        for photos in suite.photo_sets:
            for name, script in commands.items():
                for cpus in worker_counts():
                    suite.say(f"{name} {n + 1}/{suite.repeat}: {photos.name}, {cpus} cpu(s)")
                    folders = [str(known), str(photos.folder)] if name == "face_recognition" else [str(photos.folder)]
                    runs.setdefault((photos.name, name, cpus), []).append(
                        measured_run([str(script), *folders, "--cpus", str(cpus)]))
    return {photos.name: {name: {str(cpus): run_figures(runs[(photos.name, name, cpus)], len(photos.paths), False)
                                 for cpus in worker_counts()}
                          for name in commands}
            for photos in suite.photo_sets}  # fmt: skip


def embedder_accuracy(embedder: Path, yunet: Path, split: PeopleSplit, say: Callable[[str], None]) -> dict:
    """The int8 embedder on LiteRT over the split's photos (YuNet, the largest face of each), named by the nearest
    gallery image and centroid (lfw_split.recognition_figures)."""
    recipe = Setup("embedder", embedder, "yunet").recipe(yunet, threads=cores())
    pipeline = recipe.build(report_differences=False)
    people = sorted({person for _, person in split.files})
    files = [(path, people.index(person)) for path, person in split.files]
    faces = load_faces(files, tuple(people), pipeline.preprocessing)
    say(f"embedder accuracy: a face in {len(faces.paths)} of {len(files)} photos")
    figures = recognition_figures(split, faces.paths, embed_all(pipeline.recognizer, faces.crops))
    return {"photos_with_face": len(faces.paths), "photos_without_face": len(faces.no_face), "figures": figures}


def accuracy_figures(suite: Suite, embedder: Path | None, split: PeopleSplit) -> dict:
    """Top-1 and the rest of recognition_figures on the labelled split, for the int8 embedder and, when installed,
    face_recognition (its library, as its CLI runs it: HOG, 5-point landmarks, one jitter). Computed once: they do
    not vary from run to run."""
    found = {}
    if embedder and suite.yunet:
        found["embedder"] = embedder_accuracy(embedder, suite.yunet, split, suite.say)
    if face_recognition_command("face_recognition"):
        found["face_recognition"] = face_recognition_results(split, suite.say)
    return found
