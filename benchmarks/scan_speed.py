"""Throughput of `edgeface scan` on real photos: 1 worker vs every core, against its stages and plain decoding.

Usage: python benchmarks/scan_speed.py MODEL.tflite [--data DIR] [--count 600] [--repeat 2] [--workers N]
                                       [--yunet FILE] [--json OUT]

MODEL is any edgeface int8 model: `edgeface demo --dir /tmp/speed-demo` (a minute or two, needs TensorFlow) leaves
one at /tmp/speed-demo/face_or_not.tflite. The photos are --count files evenly spaced through the sorted person
folders of --data (lfw_dev: 250x250 JPEGs). For each detector (haar, and yunet when its ONNX file is found):
- stages: the calls scan makes, one image at a time, each timed apart: read+hash, log lookup, decode, detect,
  crop, classify, record (in scan's batches of 32, divided per image); their sum is a scan with no overhead;
- scan: `edgeface.scan.scan` into a fresh log, with 1 worker and with N (default: every core), timed whole,
  worker start-up included; also the rate after the first result, which leaves start-up out;
- the speed-up of N workers over 1, and the overhead of scan at 1 worker over the sum of its stages.
Decode-only (read + decode each photo in this process) is the floor for anything that looks at the pixels.
Every figure is the best of --repeat runs, since the machine may be shared and the best run is the least
disturbed; the photos are read once first so that every run finds them in the page cache. OpenCV runs 1 thread
in this process (the 1-worker scan included) and LiteRT 1 thread everywhere; the OpenCV threads of a spawned
worker are printed, since scan's workers get this process's environment but not its OpenCV setting.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import resource
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import cv2

from edgeface.detect import YUNET_MODEL_VARIABLE
from edgeface.images import decode, read_input
from edgeface.paths import is_image_name
from edgeface.pipeline import Pipeline
from edgeface.results import FaceResult, ImageResult
from edgeface.preprocess import crop_faces
from edgeface.scan import BATCH_SIZE, SOURCE, scan
from edgeface.sinks import Recording
from edgeface.settings import DetectorOverrides
from edgeface.store import ResultLog
from edgeface.workers import PipelineRecipe
from timing import TimedRun  # benchmarks/ is on the path when run as a script

SHARED = Path(__file__).resolve().parents[2] / "shared"  # beside the repo
DEFAULT_DATA = SHARED / "data" / "lfw_dev"
DEFAULT_YUNET = SHARED / "models" / "yunet" / "face_detection_yunet_2023mar.onnx"
STAGES = ("read+hash", "lookup", "decode", "detect", "crop", "classify", "record")


@dataclass(frozen=True)
class ScanRun(TimedRun):
    """One timed scan: wall seconds for all photos, seconds until the first result, faces found."""

    faces: int


def cpu_name() -> str:
    """The processor's name from /proc/cpuinfo (x86 "model name", Raspberry Pi "Model"), else platform's guess."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    for key in ("model name", "Model"):
        for line in lines:
            name, _, value = line.partition(":")
            if name.strip() == key and value.strip():
                return value.strip()
    return platform.processor() or "unknown cpu"


def spawned_opencv_threads() -> int:
    """OpenCV's thread count in a freshly spawned process, which is how scan's workers start."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(cv2.getNumThreads).result()


def pick_photos(folder: Path, count: int) -> tuple[list[str], int]:
    """`count` photos evenly spaced through every person folder in sorted order, so that people with many photos
    and people with few are both in; and how many photos there are in all."""
    photos = sorted(str(path) for path in folder.glob("*/*") if is_image_name(path))
    if not 0 < count <= len(photos):
        raise SystemExit(f"--count must be 1..{len(photos)}: {folder} has {len(photos)} photos")
    return [photos[i * len(photos) // count] for i in range(count)], len(photos)


def decode_only_seconds(paths: list[str]) -> float:
    """Seconds to read and decode every photo here: no hash, no detection, nothing recorded."""
    start = time.perf_counter()
    for path in paths:
        decode(Path(path).read_bytes())
    return time.perf_counter() - start


def stage_seconds(paths: list[str], pipeline: Pipeline, db_path: Path) -> tuple[dict[str, float], int]:
    """Seconds spent in each of STAGES over all `paths`, doing what scan does for each photo but timing the steps
    apart, into a fresh log at `db_path`; and the faces found."""
    spent = dict.fromkeys(STAGES, 0.0)
    faces = 0
    classifier = pipeline.recognizer
    with ResultLog(db_path) as log:
        model_id = log.register_model(classifier.sha256, str(classifier.path), classifier.labels)
        pending: list[ImageResult] = []
        for index, path in enumerate(paths):
            marks = [time.perf_counter()]
            source = read_input(path)
            marks.append(time.perf_counter())
            log.outcome_of(source.path, source.sha256)
            marks.append(time.perf_counter())
            pixels = decode(source.content)
            marks.append(time.perf_counter())
            boxes = pipeline.detector.detect(pixels)
            marks.append(time.perf_counter())
            crops = crop_faces(pixels, boxes, pipeline.preprocessing)
            marks.append(time.perf_counter())
            predictions = classifier.classify(crops)
            marks.append(time.perf_counter())
            for stage, (start, end) in zip(STAGES, pairwise(marks)):
                spent[stage] += end - start
            found = tuple(FaceResult(box, p.label, p.confidence, p.unknown) for box, p in zip(boxes, predictions))
            height, width = pixels.shape[:2]
            pending.append(ImageResult(source.path, source.sha256, source.size, width, height, found))
            faces += len(found)
            if len(pending) == BATCH_SIZE or index == len(paths) - 1:
                start = time.perf_counter()
                log.record_batch(pending, SOURCE, model_id)
                spent["record"] += time.perf_counter() - start
                pending = []
    return spent, faces


def timed_scan(paths: list[str], pipeline: Pipeline, recipe: PipelineRecipe, workers: int, db_path: Path) -> ScanRun:
    """One `scan` of `paths` with `workers` into a fresh log at `db_path`, timed from the call to its return."""
    first: list[float] = []

    def note_first(result: ImageResult) -> None:
        if not first:
            first.append(time.perf_counter())

    with ResultLog(db_path) as log:
        start = time.perf_counter()
        summary = scan(paths, pipeline, recipe, Recording(log), note_first, workers=workers)
        seconds = time.perf_counter() - start
    if summary.images != len(paths) or summary.failed:
        raise SystemExit(f"scan with {workers} worker(s) did {summary.images} of {len(paths)} photos, "
                         f"{len(summary.failed)} failed")
    return ScanRun(seconds, first[0] - start, summary.faces)


def measure(detector: str, yunet: Path, model: str, paths: list[str], workers: int, repeat: int, folder: Path) -> dict:
    """Stage times, scans at 1 and `workers` workers, speed-up and overhead for one detector; prints them as it
    goes and returns them for --json."""
    images = len(paths)
    recipe = PipelineRecipe(model=model, threads=1, detector=DetectorOverrides(name=detector, yunet_model=str(yunet)))
    pipeline = recipe.build()
    passes = [stage_seconds(paths, pipeline, folder / f"{detector}-stages-{n}.db") for n in range(repeat)]
    stage_ms = {stage: 1000 * min(spent[stage] for spent, _ in passes) / images for stage in STAGES}
    stage_sum_ms = sum(stage_ms.values())
    faces = passes[0][1]
    runs: dict[int, list[ScanRun]] = {1: [], workers: []}
    for n in range(repeat):  # alternating, so that a noisy spell on the machine hurts both alike
        for count in runs:
            runs[count].append(timed_scan(paths, pipeline, recipe, count, folder / f"{detector}-{count}w-{n}.db"))
    best = {count: min(found, key=lambda run: run.seconds) for count, found in runs.items()}
    speedup = best[1].seconds / best[workers].seconds
    steady_speedup = best[workers].steady_rate(images) / best[1].steady_rate(images)
    overhead = 100 * (best[1].seconds / images * 1000 / stage_sum_ms - 1)
    print(f"{detector}: {faces} faces in {images} photos")
    print("  stages, mean ms per image: " + ", ".join(f"{stage} {ms:.3f}" for stage, ms in stage_ms.items()))
    print(f"  sum of stages: {stage_sum_ms:.2f} ms per image -> {1000 / stage_sum_ms:.1f} img/s")
    for count, found in runs.items():
        rates = ", ".join(f"{run.rate(images):.1f}" for run in found)
        label = f"{count} worker{'s' if count > 1 else ''}"
        print(f"  scan, {label}: {best[count].rate(images):.1f} img/s (runs: {rates}); "
              f"first result after {best[count].first_result:.2f} s, then {best[count].steady_rate(images):.1f} img/s")
    print(f"  speed-up {workers} workers / 1: {speedup:.2f}x ({steady_speedup:.2f}x after the first result; "
          "target >= 1.7x)")
    print(f"  overhead of scan (1 worker) over the sum of stages: {overhead:+.1f} % (target <= 15 %)")
    if any(run.faces != faces for found in runs.values() for run in found):
        print("  note: the scans found other face counts than the stage pass: "
              + ", ".join(f"{count} worker(s) {[run.faces for run in found]}" for count, found in runs.items()))
    return {
        "faces": faces,
        "stage_ms": stage_ms,
        "stage_sum_ms": stage_sum_ms,
        "stage_sum_ips": 1000 / stage_sum_ms,
        "scans": {
            str(count): {
                "ips": [run.rate(images) for run in found],
                "best_ips": best[count].rate(images),
                "first_result_s": best[count].first_result,
                "steady_ips": best[count].steady_rate(images),
                "faces": [run.faces for run in found],
            }
            for count, found in runs.items()
        },
        "speedup": speedup,
        "steady_speedup": steady_speedup,
        "overhead_pct": overhead,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="an edgeface int8 .tflite")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of person folders of photos")
    parser.add_argument("--count", type=int, default=600, help="photos to scan")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each measurement; the best is reported")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="the many-worker scan's workers")
    parser.add_argument("--yunet", type=Path, help=f"YuNet's ONNX file (default: ${YUNET_MODEL_VARIABLE} or "
                        f"{DEFAULT_YUNET})")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the figures to this file")
    args = parser.parse_args()
    if args.workers < 2 or args.repeat < 1:
        parser.error("--workers must be at least 2 (to compare with 1) and --repeat at least 1")
    cv2.setNumThreads(1)
    machine = {
        "machine": platform.machine(),
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "opencv": cv2.__version__,
        "opencv_threads_here": cv2.getNumThreads(),
        "opencv_threads_in_a_worker": spawned_opencv_threads(),
    }
    print(f"machine: {machine['machine']}, {machine['cpu']}, {machine['cores']} cores, python {machine['python']}, "
          f"opencv {machine['opencv']} ({machine['opencv_threads_here']} thread here, "
          f"{machine['opencv_threads_in_a_worker']} in a spawned worker)")
    paths, total = pick_photos(args.data, args.count)
    for path in paths:  # into the page cache, so that no run pays for the disk
        Path(path).read_bytes()
    people = len({Path(path).parent for path in paths})
    print(f"photos: {len(paths)} of {total} in {args.data}, {people} people; every figure is the best of "
          f"{args.repeat} run(s)")
    decode_ips = len(paths) / min(decode_only_seconds(paths) for _ in range(args.repeat))
    print(f"decode-only (read + decode, 1 process): {decode_ips:.1f} img/s")
    detectors = ["haar"]
    yunet = args.yunet or Path(os.environ.get(YUNET_MODEL_VARIABLE) or DEFAULT_YUNET)
    if yunet.is_file():
        detectors.append("yunet")
    else:
        print(f"yunet: skipped, no ONNX file at {yunet} (pass --yunet FILE)")
    with tempfile.TemporaryDirectory(prefix="scan-speed-") as folder:
        figures = {name: measure(name, yunet, str(args.model), paths, args.workers, args.repeat, Path(folder))
                   for name in detectors}
    # ru_maxrss is in KiB on Linux; for children it is the largest one that has ended (a scan worker).
    main_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    worker_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"peak RSS: {main_mib:.0f} MiB this process, {worker_mib:.0f} MiB the largest worker")
    if args.json:
        report = {
            "machine": machine,
            "photos": len(paths),
            "repeat": args.repeat,
            "workers": args.workers,
            "decode_only_ips": decode_ips,
            "peak_rss_mib": {"main": main_mib, "largest_worker": worker_mib},
            "detectors": figures,
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
