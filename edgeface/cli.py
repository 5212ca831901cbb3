"""The `edgeface` command: parses arguments and hands the work to the library.

Exit codes, the same for every command:
    0  everything went well
    1  some inputs failed (each is listed, and recorded in the log)
    2  usage error, or a model, log or dependency problem that stops the command
    3  `convert`: the int8 model agrees with the float one less than --min-agreement
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import logging
import math
import os
import sys
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

import edgeface
from edgeface import hangup
from edgeface.annotate import AnnotationError, overwrites_inputs, write_annotated
from edgeface.artefact import MetadataError
from edgeface.dataset import stranger_faces
from edgeface.detect import DetectorUnavailable
from edgeface.enroll import EnrolmentRefused, NotAnEmbedder, embedder_of, from_camera, from_photos
from edgeface.evaluate import evaluate_folder, format_evaluation
from edgeface.flags import add_flags, given
from edgeface.gallery import GalleryError, check_name
from edgeface.hub import TOPIC, Hub, check_topic, default_client_id, hub_settings
from edgeface.model import ModelError
from edgeface.pipeline import Pipeline
from edgeface.recognizer import load_recognizer
from edgeface.results import ImageResult
from edgeface.preprocess import PreprocessingError
from edgeface.progress import Progress
from edgeface.publisher import Publisher
from edgeface.scan import PUBLISH_WAIT_SECONDS, ScanSummary, image_paths, publisher, scan
from edgeface.escape import OneLinePerRecord, printable
from edgeface.scanview import ScanTable
from edgeface.sinks import JsonLinesSink, Recording, Sink
from edgeface.settings import (DEFAULT_CONFIG, ConfigError, DetectorOverrides, MqttSettings, WatchSettings, from_flags,
                               load_settings, mqtt_settings)  # fmt: skip
from edgeface.logview import parse_time, write_rows
from edgeface.store import LogError, LogQuery, ResultLog, default_path
from edgeface.verify import UnknownPerson, verify_person, verify_photos
from edgeface.watch import run_watch
from edgeface.workers import PipelineRecipe
from edgeface_convert import arguments as workstation_arguments
from edgeface_convert.common import CommandError
from edgeface_convert.options import EvalOptions, WorkstationOptions

EXIT_OK, EXIT_INPUTS_FAILED, EXIT_ERROR = 0, 1, 2  # 3: `convert` quality check failed
EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report it
MAX_PARALLEL = 64  # workers or threads: more than any board has cores, fewer than would exhaust one
MAX_WAIT_SECONDS = 3600.0  # --wait: a log held longer than an hour is stuck, not busy
# edgeface installs from its source folder (it is not on PyPI), so the hint names that form.
CONVERT_INSTALL = "pip install '.[convert]' in edgeface's source folder"
DEMO_INSTALL = "pip install '.[demo]' in edgeface's source folder"


class _Formatter(argparse.HelpFormatter):
    """Wraps prose, keeps indented example lines as written, and shows defaults that say something."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        lines = []
        for line in text.splitlines():
            lines.append(indent + line if line.startswith("  ") else super()._fill_text(line, width, indent))
        return "\n".join(lines)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default not in (None, False, argparse.SUPPRESS) and "%(default)" not in text:
            text += " (default: %(default)s)"
        return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgeface",
        description="Recognize faces on a small ARM box with an int8 TFLite model; log every result to SQLite.",
        epilog="exit codes: 0 all went well, 1 some inputs failed, 2 usage, model or log error, "
        "3 convert's int8 model disagrees with the float one",
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"edgeface {edgeface.__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="also log informational messages")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_scan(commands)
    _add_watch(commands)
    _add_log(commands)
    _add_hub(commands)
    _add_forget(commands)
    _add_enroll(commands)
    _add_people(commands)
    _add_verify(commands)
    _add_info(commands)
    _add_eval(commands)
    workstation_arguments.register(commands, _subcommand)
    return parser


def _subcommand(
    commands: argparse._SubParsersAction, name: str, summary: str, description: str, epilog: str = ""
) -> argparse.ArgumentParser:
    """One command: `summary` is its line in `edgeface --help`; `epilog` holds its examples."""
    return commands.add_parser(name, help=summary, description=description, epilog=epilog, formatter_class=_Formatter)


def _add_scan(commands: argparse._SubParsersAction) -> None:
    scan = _subcommand(
        commands,
        "scan",
        summary="classify the faces in image files and folders, once, into the log",
        description="Find faces in each image, classify them with the model, print one line per image "
        "and record every image and face in the SQLite log. An image already in the log with the "
        "same content is not scanned again.",
        epilog="examples:\n  edgeface scan photos/ --model faces.tflite\n"
        "  edgeface scan a.jpg b.png --model faces.tflite --json > results.jsonl\n"
        "  edgeface scan photos/ --model faces.tflite --publish --config /etc/edgeface/edgeface.toml",
    )
    scan.add_argument("paths", nargs="+", metavar="PATH", help="image files, or folders of them")
    scan.add_argument("-r", "--recursive", action="store_true", help="also scan the sub-folders of folders")
    scan.add_argument("--model", default=os.environ.get("EDGEFACE_MODEL"), help="int8 .tflite from `edgeface convert` ($EDGEFACE_MODEL)")
    _add_log_options(scan)
    scan.add_argument("--json", action="store_true", help="print one JSON object per image instead of text")
    scan.add_argument("--rescan", action="store_true", help="scan inputs again even when the log has them")
    scan.add_argument(
        "--annotate", type=Path, metavar="DIR",
        help="also write a copy of each photo with boxes and labels drawn, under DIR (same relative paths)",
    )  # fmt: skip
    scan.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1,
        help="processes decoding, detecting and classifying at once; results are the same as with 1",
    )  # fmt: skip
    scan.add_argument("--threads", type=int, default=None, help="LiteRT and OpenCV threads per worker (default: 1 with several workers)")
    add_flags(scan, DetectorOverrides)
    publishing = scan.add_argument_group(
        "publishing", "With --publish each image's result is also an event on the MQTT broker, as `watch` sends it: "
        "[mqtt] of the config file, then the --mqtt-* flags.",
    )  # fmt: skip
    publishing.add_argument("--publish", action="store_true", help="also publish each result to the MQTT broker, "
                            "through the log's outbox")  # fmt: skip
    publishing.add_argument(
        "--publish-wait", type=_wait_seconds, default=PUBLISH_WAIT_SECONDS, metavar="SECONDS",
        help="at the end, how long to wait for the broker to take the events; the rest wait in the log's outbox",
    )  # fmt: skip
    publishing.add_argument("--config", type=Path, metavar="FILE", help=f"TOML settings whose [mqtt] table --publish "
                            f"uses (default: {DEFAULT_CONFIG}, if it exists)")  # fmt: skip
    add_flags(publishing, MqttSettings)


def _add_watch(commands: argparse._SubParsersAction) -> None:
    watch = _subcommand(
        commands,
        "watch",
        summary="the daemon: classify what arrives in a folder or from a camera, into the log",
        description="Watch a folder (a file is taken once it is complete: closed after writing, or moved "
        "in) or a camera, and log every result. Settings come from the config file, then from flags. "
        "Every file ends as one outcome in the log, even across crashes; files already logged are not "
        "processed again. Under systemd it reports READY, WATCHDOG and STATUS; SIGTERM stops after the "
        "current image, SIGHUP reloads the config and the model.",
        epilog="examples:\n  edgeface watch inbox/ --model faces.tflite --move-done done/ --move-failed failed/\n"
        "  edgeface watch --camera rtsp://192.168.1.20/stream --model faces.tflite --fps 2\n"
        "  edgeface watch --config /etc/edgeface/edgeface.toml\n"
        "  edgeface watch inbox/ --model faces.tflite --json | jq -r .path",
    )
    watch.add_argument("--config", type=Path, help=f"TOML settings (default: {DEFAULT_CONFIG}, if it exists)")
    watch.add_argument("--json", action="store_true",
                       help="also print each result once the log has it, one JSON object per line (images and camera "
                       "appearances), for scripts to follow")  # fmt: skip
    add_flags(watch, WatchSettings)  # every key of the config, which the flags given override


def _add_log(commands: argparse._SubParsersAction) -> None:
    log = _subcommand(
        commands,
        "log",
        summary="show what the log holds: recent results, or counts per label per day",
        description="Reads the SQLite log: by default the newest results, one row per face (or per image "
        "without faces), with filters. Times are shown in UTC; --since and --until take a date, a date "
        "and time (local unless it names an offset), or an age such as 30m, 6h, 2d, 1w.",
        epilog="examples:\n  edgeface log --since 1d --label alice\n  edgeface log --summary --csv > per-day.csv\n"
        "  edgeface log --unknown --json\n  edgeface log --appearances --since 6h\n"
        "  edgeface log --db fleet.db --device door1 --label alice --since 1d",
    )
    _add_log_options(log)
    log.add_argument("--since", help="only results from this time on")
    log.add_argument("--until", help="only results before this time")
    log.add_argument("--label", help="only faces accepted as this person (with --unknown: the unknown faces that "
                     "looked most like them)")
    known = log.add_mutually_exclusive_group()
    known.add_argument("--unknown", action="store_true", help="only faces the unknown rule rejected")
    known.add_argument("--known", action="store_true", help="only faces accepted as someone (by the unknown rule and any gate)")
    known.add_argument("--rejected", action="store_true", help="only faces the model's quality gate turned away as "
                       "unlike a face (never named)")
    log.add_argument("--source", help="only inputs from this source: scan, folder or camera (every one), or one such as folder:/srv/inbox")
    log.add_argument("--device", metavar="NAME", help="only rows a hub heard from this box (`edgeface hub`)")
    log.add_argument("--limit", type=int, default=50, help="at most this many rows (not for --summary)")
    what = log.add_mutually_exclusive_group()
    what.add_argument("--summary", action="store_true", help="faces per day, label and unknown flag instead")
    what.add_argument("--appearances", action="store_true", help="camera appearances (one row per person seen) instead")
    style = log.add_mutually_exclusive_group()
    style.add_argument("--json", action="store_true", help="one JSON object per row")
    style.add_argument("--csv", action="store_true", help="CSV with a header row")


def _add_hub(commands: argparse._SubParsersAction) -> None:
    hub = _subcommand(
        commands,
        "hub",
        summary="gather every box's events from the MQTT broker into one log that `edgeface log` reads",
        description="Subscribes (QoS 1, with a session the broker keeps while the hub is away) to the events the "
        "boxes publish, and writes them into one SQLite log, each row with its box's name: `edgeface log --db FILE "
        "--device NAME` reads it. Each event is kept once, by its id, and acknowledged to the broker only once it is "
        "committed, so neither a restart of the hub nor one of the broker loses or doubles one. The broker comes from "
        "--config (the keys of its [mqtt] table that say how to connect) and the flags. Under systemd it reports "
        "READY once subscribed, and STATUS; SIGTERM stores what it holds, then stops.",
        epilog="examples:\n  edgeface hub --db fleet.db --host broker.lan\n"
        "  edgeface hub --db /var/lib/edgeface/fleet.db --config /etc/edgeface/hub.toml --topic 'site1/+/events'",
    )
    _add_log_options(hub)
    hub.add_argument("--config", type=Path, help="TOML file whose [mqtt] table names the broker (host, port, TLS, "
                     "username, password_file)")  # fmt: skip
    hub.add_argument("--host", help="the MQTT broker (overrides the config's)")
    hub.add_argument("--port", type=int, help="the broker's port (default: the config's, else 1883)")
    hub.add_argument("--topic", action="append", metavar="FILTER",
                     help=f"subscribe to this topic filter; repeat for several (default: {TOPIC})")  # fmt: skip
    hub.add_argument("--client-id", metavar="ID", help="the hub's MQTT client id: its session at the broker "
                     "(default: edgeface-hub-HOSTNAME)")  # fmt: skip
    hub.add_argument("--share-people", action="store_true", default=None, help="send the people enrolled in this "
                     "log (`edgeface enroll --db FILE`) and forgotten in it to every box that shares people, as a box "
                     "with share_people does (default: the config's share_people)")  # fmt: skip


def _add_forget(commands: argparse._SubParsersAction) -> None:
    forget = _subcommand(
        commands,
        "forget",
        summary="delete a person's results or enrolment, or everything before a date, from the log for good",
        description="Deletes from the log every photo in which a face with the label was seen (the photo's "
        "row and all its faces) and every camera appearance of the label, or everything logged before a "
        "time, or, with both, what matches both. Deleted rows are overwritten, the write-ahead log is "
        "emptied and the file rebuilt, so nothing is left to recover. Only the content hashes of the "
        "deleted photos are kept, so that the same files are not classified again. Stop the daemon "
        "first if it uses this log (`systemctl stop edgeface`), or run this as its user.",
        epilog="examples:\n  edgeface forget --label alice\n  edgeface forget --person alice --label alice\n"
        "  edgeface forget --before 2026-01-01 --db /var/lib/edgeface/edgeface.db",
    )
    forget.add_argument("--label", help="the person (label) whose results to forget: photos where a face was accepted "
                        "as them, and their appearances")
    forget.add_argument("--guesses", action="store_true",
                        help="with --label, also what an unknown face only looked most like them in")
    forget.add_argument(
        "--person", metavar="NAME",
        help="delete NAME's enrolled embeddings, and stop using NAME from any model's own gallery with this log",
    )  # fmt: skip
    forget.add_argument("--before", help="forget what was logged before this time (a date, a time, or an age like 30d)")
    _add_log_options(forget)
    forget.add_argument("--json", action="store_true", help="print the counts as one JSON object")


def _add_enroll(commands: argparse._SubParsersAction) -> None:
    enroll = _subcommand(
        commands,
        "enroll",
        summary="teach an embedder model a person from photos or a camera, without retraining",
        description="Embeds the largest face of each photo (a photo with a second face nearly as large is "
        "refused) or, with --camera, the distinct faces of the one person in view for --seconds, and keeps "
        "the embeddings in the log, tied to this model's network. scan and watch name the person from "
        "then on (a running watch notices within a second). No TensorFlow needed.",
        epilog="examples:\n  edgeface enroll alice alice1.jpg alice2.jpg --model faces.tflite\n"
        "  edgeface enroll bob photos/bob/ --model faces.tflite --db /var/lib/edgeface/edgeface.db\n"
        "  edgeface enroll carol --camera 0 --seconds 10 --model faces.tflite",
    )
    enroll.add_argument("name", metavar="NAME", help="the person's name, as scan will print it")
    enroll.add_argument("paths", nargs="*", metavar="PHOTO", help="photos of the person, or folders of them")
    enroll.add_argument("-r", "--recursive", action="store_true", help="also use the sub-folders of folders")
    enroll.add_argument("--camera", metavar="SOURCE", help="a device index, /dev/videoN, rtsp:// or http:// URL, or a video file")
    enroll.add_argument("--seconds", type=float, default=10.0, help="how long to look at the camera")
    enroll.add_argument("--model", default=os.environ.get("EDGEFACE_MODEL"), help="an embedder .tflite ($EDGEFACE_MODEL)")
    _add_log_options(enroll)
    enroll.add_argument("--json", action="store_true", help="print the outcome as one JSON object")
    _add_yunet_option(enroll)


def _add_people(commands: argparse._SubParsersAction) -> None:
    people = _subcommand(
        commands,
        "people",
        summary="list who is enrolled: per person, how many embeddings and when",
        description="Lists the people enrolled in the log (per model network, and per device: this box, or the "
        "box that shared them with mqtt.share_people) and, with --model, those of the model's own gallery, marking "
        "the ones this log has forgotten.",
        epilog="examples:\n  edgeface people\n  edgeface people --model faces.tflite --json",
    )
    _add_log_options(people)
    people.add_argument("--model", default=os.environ.get("EDGEFACE_MODEL"), help="also list this model's own gallery")
    style = people.add_mutually_exclusive_group()
    style.add_argument("--json", action="store_true", help="one JSON object per row")
    style.add_argument("--csv", action="store_true", help="CSV with a header row")


def _add_verify(commands: argparse._SubParsersAction) -> None:
    verify = _subcommand(
        commands,
        "verify",
        summary="say whether two photos, or a photo and an enrolled person, show the same person",
        description="Compares the largest face of photo A with the largest face of photo B, or with "
        "--person NAME as scan would, and prints the distance and the model's threshold. Exit code 0 "
        "whatever the answer; 1 when a photo shows no face or cannot be read.",
        epilog="examples:\n  edgeface verify a.jpg b.jpg --model faces.tflite\n"
        "  edgeface verify door.jpg --person alice --model faces.tflite --json",
    )
    verify.add_argument("a", metavar="A", help="a photo")
    verify.add_argument("b", metavar="B", nargs="?", help="another photo (or use --person)")
    verify.add_argument("--person", metavar="NAME", help="compare A with this enrolled person instead")
    verify.add_argument("--model", default=os.environ.get("EDGEFACE_MODEL"), help="an embedder .tflite ($EDGEFACE_MODEL)")
    _add_log_options(verify, "SQLite log holding --person")
    verify.add_argument("--json", action="store_true", help="print one JSON object")
    _add_yunet_option(verify)


def _add_info(commands: argparse._SubParsersAction) -> None:
    info = _subcommand(
        commands,
        "info",
        summary="show what a .tflite model holds: labels, preprocessing, tensors, ops",
        description="Loads the model on LiteRT and prints its labels, preprocessing, input and output "
        "tensors (dtype, scale, zero point), the ops it uses, its size and sha256.",
        epilog="example:\n  edgeface info faces.tflite --json",
    )
    info.add_argument("model", metavar="MODEL", help="a .tflite made by `edgeface convert`")
    info.add_argument("--json", action="store_true", help="print one JSON object")


def _add_eval(commands: argparse._SubParsersAction) -> None:
    evaluate = _subcommand(
        commands,
        "eval",
        summary="measure a model on labelled faces: accuracy, F1, confusion matrix, unknown rule",
        description="Runs the model on DIR/<label>/ images and prints the metrics `train` prints. Folders "
        "whose name is not one of the model's labels hold strangers, used to measure false accepts. "
        "A .tflite runs on LiteRT; a .h5 or .keras model needs TensorFlow.",
        epilog="example:\n  edgeface eval test_faces/ --model faces.tflite --strangers lfw_subset",
    )
    evaluate.add_argument("data", metavar="DIR", help="one sub-folder of images per label")
    evaluate.add_argument("--model", required=True, help=".tflite, .h5 or .keras made by edgeface")
    evaluate.add_argument("--strangers", metavar="SOURCE", help="more strangers: a folder of faces, or lfw_subset")
    evaluate.add_argument("--keep-no-face", action="store_true", help="use images where no face is found whole")
    evaluate.add_argument("--db", type=Path, help="an embedder: also know the people enrolled in this log")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    _add_yunet_option(evaluate)
    workstation_arguments.add_trust_option(evaluate)


def _add_log_options(parser: argparse.ArgumentParser, what: str = "SQLite log") -> None:
    """--db and --wait, the same for every command that opens the log."""
    parser.add_argument("--db", type=Path, default=None, help=f"{what} (default: {default_path()})")
    parser.add_argument(
        "--wait", type=_wait_seconds, default=ResultLog.BUSY_SECONDS, metavar="SECONDS",
        help="how long to wait for a log another program is writing (the daemon, a forget) before giving up",
    )  # fmt: skip


def _wait_seconds(text: str) -> float:
    """--wait's value: seconds from 0 (give up at once) to MAX_WAIT_SECONDS."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not 0 <= seconds <= MAX_WAIT_SECONDS:
        raise argparse.ArgumentTypeError(f"give seconds from 0 to {MAX_WAIT_SECONDS:g}, not {text!r}")
    return seconds


def _add_yunet_option(parser: argparse.ArgumentParser) -> None:
    add_flags(parser, DetectorOverrides, only=("yunet_model",))


def main(argv: list[str] | None = None) -> int:
    """The `edgeface` command: parse `argv` (default: sys.argv), run, return the exit code."""
    return run(build_parser().parse_args(argv))


def run(args: argparse.Namespace) -> int:
    """Runs parsed arguments; edgeface's own errors become one line on stderr and exit code 2."""
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="edgeface: %(levelname)s: %(message)s",
        stream=sys.stderr,
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(OneLinePerRecord())  # file names and labels in messages cannot forge lines
    if args.command != "watch":
        hangup.release()  # only the daemon takes SIGHUP as a reload
    try:
        return COMMANDS[args.command](args)
    except (ModelError, LogError, DetectorUnavailable, PreprocessingError, MetadataError, GalleryError, NotAnEmbedder,
            UnknownPerson) as error:  # fmt: skip
        return _fail(str(error))
    except BrokenPipeError:
        # The reader went away (`edgeface info M --json | head`): stop quietly, as other tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as error:  # a bug: still one line for the user; -v adds the traceback for the report
        logging.getLogger("edgeface").info("what failed:", exc_info=True)
        return _fail(f"unexpected {type(error).__name__}: {error} (a bug in edgeface; -v shows where, please report it)")


def _fail(message: str) -> int:
    print(f"edgeface: error: {message}", file=sys.stderr)
    return EXIT_ERROR


def run_scan(args: argparse.Namespace) -> int:
    if not args.model:
        return _fail("no model: pass --model FILE.tflite or set EDGEFACE_MODEL")
    for flag, value in (("--workers", args.workers), ("--threads", args.threads)):
        if value is not None and not 1 <= value <= MAX_PARALLEL:
            return _fail(f"{flag} must be 1 to {MAX_PARALLEL}, not {value}")
    if args.annotate and overwrites_inputs(args.annotate):
        return _fail(f"--annotate {args.annotate} would write the copies over the photos themselves; "
                     "give a folder of its own, such as --annotate annotated/")  # fmt: skip
    threads = args.threads or (1 if args.workers > 1 else None)  # workers, not threads, share the cores
    if threads:
        cv2.setNumThreads(threads)  # the detector's threads in this process, like LiteRT's (the workers set theirs)
    db = args.db or default_path()
    try:
        recipe = PipelineRecipe(model=args.model, threads=threads, detector=_detector_overrides(args))
        sink = _scan_publisher(args, db)
    except ConfigError as error:
        return _fail(str(error))
    pipeline = recipe.build()  # a bad model stops here, before the log is created

    table = ScanTable(pipeline.recognizer.labels, gated=pipeline.recognizer.gate is not None)
    progress = Progress("scanning")
    annotation_problems: list[str] = []

    def show(result: ImageResult) -> None:
        if sys.stdout.isatty():
            progress.clear()  # the rows and the progress line share the terminal
        if args.json:
            print(json.dumps(result.to_dict()), flush=True)
        else:
            table.row(result)
        if args.annotate:
            try:
                write_annotated(args.annotate, result)
            except AnnotationError as error:
                annotation_problems.append(str(error))

    with contextlib.ExitStack() as opened:
        log = opened.enter_context(ResultLog(db, busy_seconds=args.wait))
        sinks = [opened.enter_context(sink)] if sink else []  # publishes while the scan runs
        summary = scan(args.paths, pipeline, recipe, Recording(log, sinks), show, args.rescan, args.recursive,
                       args.workers, progress)  # fmt: skip
        waiting = sink.wait_sent(log, args.publish_wait) if sink else 0
    summary.problems.extend(annotation_problems)
    print(
        f"{summary.images} images, {summary.faces} faces, {len(summary.failed)} failed, "
        f"{summary.already} already in the log, {len(summary.skipped)} other files skipped; log: {db}",
        file=sys.stderr,
    )
    if waiting:  # not a failed input: the events are safe in the log, so the exit code does not change
        print(f"{waiting} events wait in the outbox of {db}; `edgeface watch` with the same [mqtt] sends them (or "
              "scan --publish again)", file=sys.stderr)  # fmt: skip
    for result in summary.failed:
        print(f"failed: {printable(result.path)}: {result.error}", file=sys.stderr)
    for problem in summary.problems:
        print(f"problem: {printable(problem)}", file=sys.stderr)
    for note in summary.notes:
        print(f"note: {printable(note)}", file=sys.stderr)
    return EXIT_INPUTS_FAILED if summary.failed or summary.problems else EXIT_OK


def _scan_publisher(args: argparse.Namespace, db: Path) -> Publisher | None:
    """--publish: the sink that publishes the log's outbox, with [mqtt] from --config and the --mqtt-* flags; None
    without --publish. ConfigError without a broker, or without paho-mqtt."""
    if not args.publish:
        return None
    settings = mqtt_settings(args.config, given(args, MqttSettings))
    if not settings.host:
        raise ConfigError("--publish needs a broker: [mqtt] host in the config (--config FILE), or --mqtt-host HOST")
    return publisher(settings, db)


def run_watch_command(args: argparse.Namespace) -> int:
    flags = given(args, WatchSettings)
    if "folder.path" in flags:
        flags["camera.source"] = ""  # a folder on the command line replaces a camera in the config
    elif "camera.source" in flags:
        flags["folder.path"] = ""
    try:
        with contextlib.ExitStack() as running:
            sinks: list[Sink] = [JsonLinesSink(sys.stdout)] if args.json else []
            settings = load_settings(args.config, flags)
            if settings.mqtt.host:  # publishes from before the daemon's start to after its stop
                db = Path(settings.db) if settings.db else default_path()
                sinks.append(running.enter_context(Publisher(settings.mqtt, db, settings.model)))
            return run_watch(args.config, flags, sinks)
    except (ConfigError, FileNotFoundError) as error:
        return _fail(str(error))


def run_log(args: argparse.Namespace) -> int:
    db = args.db or default_path()
    if not db.exists():
        return _fail(f"no log at {db}: scan something first, or pass --db")
    try:
        query = LogQuery(
            since=parse_time(args.since) if args.since else None,
            until=parse_time(args.until) if args.until else None,
            label=args.label,
            unknown=True if args.unknown else False if args.known else None,
            rejected=True if args.rejected else None,
            source=args.source,
            device=args.device,
            limit=args.limit,
        )
    except ValueError as error:
        return _fail(str(error))
    with ResultLog(db, busy_seconds=args.wait) as log:
        rows = log.summary(query) if args.summary else log.appearances(query) if args.appearances else log.recent(query)
    write_rows(rows, "json" if args.json else "csv" if args.csv else "table")
    return EXIT_OK


def run_hub_command(args: argparse.Namespace) -> int:
    try:
        settings = hub_settings(args.config, {"host": args.host, "port": args.port, "share_people": args.share_people})
        topics = [check_topic(topic) for topic in args.topic or [TOPIC]]
        client_id, db = args.client_id or default_client_id(), args.db or default_path()
        # People enrolled at the hub go out as a box's do, by a client of their own, made before the log so that
        # what it cannot use (a fleet prefix, a TLS file) stops the start with nothing made.
        people = Publisher(replace(settings, client_id=f"{client_id}-people"), db, availability=False) \
            if settings.share_people else None
        hub = Hub(settings, db, topics, client_id, args.wait)
    except ConfigError as error:
        return _fail(str(error))
    logging.getLogger("edgeface").setLevel(logging.INFO)  # connected, lost, counts: the journal a daemon keeps
    with people or contextlib.nullcontext():
        return hub.run()


def run_forget(args: argparse.Namespace) -> int:
    if args.label is None and args.before is None and args.person is None:
        return _fail("say what to forget: --label NAME, --person NAME, --before TIME, or a combination")
    if args.guesses and args.label is None:
        return _fail("--guesses goes with --label NAME: the unknown faces that looked most like NAME")
    db = args.db or default_path()
    if not db.exists():
        return _fail(f"no log at {db}: pass --db")
    try:
        before = parse_time(args.before) if args.before is not None else None
        if args.person is not None:
            check_name(args.person)
    except ValueError as error:  # GalleryError is one too
        return _fail(str(error))
    counts = {"inputs": 0, "appearances": 0}
    with ResultLog(db, busy_seconds=args.wait) as log:
        if args.person is not None:
            counts["embeddings"] = log.forget_person(args.person)
        if args.label is not None or before is not None:
            counts.update(log.forget(args.label, before, args.guesses))
    if args.json:
        print(json.dumps(counts))
        return EXIT_OK
    said = [f"{counts['inputs']} photos and {counts['appearances']} appearances"]
    if args.person is not None:
        said.append(f"{counts['embeddings']} enrolled embeddings of {printable(args.person)}, who is now unknown "
                    "to every model used with this log (and to the fleet's boxes, with mqtt.share_people)")  # fmt: skip
    print(f"forgot {'; '.join(said)}; {db} was scrubbed")
    return EXIT_OK


def _detector_overrides(args: argparse.Namespace) -> DetectorOverrides:
    """The detector flags given (most commands have only --yunet-model); ConfigError names one out of range."""
    return from_flags(DetectorOverrides, given(args, DetectorOverrides))


def _pipeline(args: argparse.Namespace, log: ResultLog | None = None) -> Pipeline:
    """The model named by --model (YuNet's file from --yunet-model), with the log's enrolments when a log is given."""
    if not args.model:
        raise ModelError("no model: pass --model FILE.tflite or set EDGEFACE_MODEL")
    pipeline = PipelineRecipe(model=args.model, detector=_detector_overrides(args)).build()
    if log is not None:
        pipeline.recognizer.use_enrolments(log.enrolments(pipeline.recognizer.network_sha256))
    return pipeline


def run_enroll(args: argparse.Namespace) -> int:
    try:
        name = check_name(args.name)
    except GalleryError as error:
        return _fail(str(error))
    if bool(args.paths) == bool(args.camera):
        return _fail("give photos of the person, or --camera SOURCE (not both)")
    if not args.seconds > 0 or args.seconds > 3600:
        return _fail("--seconds must be above 0 and at most 3600")
    pipeline = _pipeline(args)
    try:
        embedder = embedder_of(pipeline)
        if args.camera:
            collected = from_camera(pipeline, args.camera, args.seconds, embedder.rule.max_distance)
        else:
            found = ScanSummary()
            collected = from_photos(pipeline, list(image_paths(args.paths, args.recursive, found)))
            collected.problems += [(path, "not an image file") for path in found.skipped]
            collected.problems += [(problem, "") for problem in found.problems]
    except EnrolmentRefused as error:
        return _fail(str(error))
    db = args.db or default_path()
    added = 0
    if collected.embeddings:
        with ResultLog(db, busy_seconds=args.wait) as log:
            origin = "camera" if args.camera else "photo"
            added = log.enrol(name, embedder.network_sha256, np.array(collected.embeddings), collected.photos, origin)
    outcome = {"person": name, "embeddings": added, "already": len(collected.embeddings) - added,
               "failed": [{"input": path, "error": why} for path, why in collected.problems],
               "rejected": collected.rejected, "log": str(db)}  # fmt: skip
    if args.json:
        print(json.dumps(outcome))
    else:
        rejected = f" ({collected.rejected} rejected by the quality gate)" if collected.rejected else ""
        print(f"enrolled {printable(name)}: {added} new embeddings ({outcome['already']} already enrolled), "
              f"{len(collected.problems)} inputs not used{rejected}; log: {db}")  # fmt: skip
        for path, why in collected.problems:
            print(f"not used: {printable(path)}{': ' + why if why else ''}", file=sys.stderr)
    return EXIT_INPUTS_FAILED if collected.problems or not collected.embeddings else EXIT_OK


def run_people(args: argparse.Namespace) -> int:
    db = args.db or default_path()
    rows: list[dict] = []
    hidden: set[str] = set()
    if db.exists():
        with ResultLog(db, busy_seconds=args.wait) as log:
            hidden = set(log.hidden_people())
            rows = [{**row, "network": row["network"][:12], "source": "enrolled", "device": row["device"] or "this box"}
                    for row in log.people()]  # fmt: skip
    if args.model:
        embedder = embedder_of(_pipeline(args))
        for row in rows:
            row["usable"] = row["network"] == embedder.network_sha256[:12]
        for person, count in embedder.metadata.gallery.counts().items() if embedder.metadata.gallery else []:
            rows.append({"person": person, "network": embedder.network_sha256[:12], "device": None,
                         "embeddings": count, "first_enrolled": None, "last_enrolled": None,
                         "source": "forgotten here" if person in hidden else "model", "usable": person not in hidden})  # fmt: skip
    rows.sort(key=lambda row: (row["person"], row["source"]))
    if not rows and not (args.json or args.csv):
        print("nobody is enrolled" + ("" if db.exists() else f" (no log at {db})"))
        return EXIT_OK
    write_rows(rows, "json" if args.json else "csv" if args.csv else "table")
    return EXIT_OK


def run_verify(args: argparse.Namespace) -> int:
    if (args.b is None) == (args.person is None):
        return _fail("compare photo A with photo B, or with --person NAME (one of the two)")
    try:
        if args.person is not None:
            db = args.db or default_path()
            if not db.exists():
                return _fail(f"no log at {db}: pass --db, or enrol {printable(args.person)} first")
            with ResultLog(db, busy_seconds=args.wait) as log:
                pipeline = _pipeline(args, log)
            verdict = verify_person(pipeline, args.a, args.person)
        else:
            verdict = verify_photos(_pipeline(args), args.a, args.b)
    except EnrolmentRefused as error:
        print(f"edgeface: failed: {printable(str(error))}", file=sys.stderr)
        return EXIT_INPUTS_FAILED
    if args.json:
        print(json.dumps(verdict.to_dict()))
    else:
        answer = "same person" if verdict.same else "not the same person"
        print(f"{answer}: distance {verdict.distance:.3f}, threshold {verdict.threshold:.3f} "
              f"({printable(verdict.a)} vs {printable(verdict.b)})")  # fmt: skip
    return EXIT_OK


def run_info(args: argparse.Namespace) -> int:
    facts = load_recognizer(args.model).describe()
    if args.json:
        print(json.dumps(facts, indent=2))
        return EXIT_OK
    metadata = facts["metadata"]
    kind = metadata.get("kind", "classifier")
    if kind == "embedder":
        print(f"kind: embedder ({metadata['embedding_size']}-value embeddings, named by the nearest person)")
    else:
        print("kind: classifier (one probability per label, trained on these people)")
    for name in ("input", "output"):
        tensor = facts[name]
        print(f"{name}: {tensor['shape']} {tensor['dtype']}, scale {tensor['scale']:.6g}, zero point {tensor['zero_point']}")
    if kind == "embedder":
        gallery = metadata.get("gallery") or {"people": {}}
        people = ", ".join(f"{printable(person)} ×{count}" for person, count in gallery["people"].items())
        print(f"gallery: {len(gallery['people'])} people, {sum(gallery['people'].values())} embeddings"
              + (f": {people}" if people else "") + "; people enrolled in a log add to it")  # fmt: skip
    else:
        print(f"labels ({metadata['output']}): {', '.join(printable(label) for label in metadata['labels'])}")
    print(f"preprocessing: {json.dumps(metadata['preprocessing'])}")
    print(f"ops: {', '.join(f'{op} ×{count}' for op, count in facts['ops'].items())}")
    print(f"unknown rule: {printable(facts['rule']) if facts['rule'] else 'none (every face gets a known label)'}")
    gate = facts["gate"]
    print("quality gate: " + (f"{gate['bytes']:,} bytes, {'×'.join(map(str, gate['input']))} crops; rejects a crop whose "
          f"error is above {gate['threshold']:.4g} (kept {gate['keep']:.0%} of {gate['calibration_faces']:,} held-out "
          f"faces); int8 vs float correlation {gate['correlation']:.3f}" if gate else "none (every face found is named)"))
    print(f"source: {json.dumps(metadata['source'])}; converter: {json.dumps(metadata['converter'])}")
    print(f"file: {printable(facts['path'])}, {facts['size']:,} bytes, sha256 {facts['sha256']}")
    if kind == "embedder":
        print(f"network sha256 (enrolments are tied to it): {facts['network_sha256']}")
    return EXIT_OK


# What each workstation command needs beyond the runtime: (module, name people know it by).
WORKSTATION_NEEDS = {
    "train": ([("tensorflow", "TensorFlow")], CONVERT_INSTALL),
    "train-gate": ([("tensorflow", "TensorFlow")], CONVERT_INSTALL),
    "convert": ([("tensorflow", "TensorFlow")], CONVERT_INSTALL),
    "eval": ([("tensorflow", "TensorFlow")], CONVERT_INSTALL),
    "demo": ([("tensorflow", "TensorFlow"), ("skimage", "scikit-image")], DEMO_INSTALL),
}


def run_workstation(args: argparse.Namespace) -> int:
    """train, train-gate, convert or demo: their flags are checked and typed before TensorFlow loads."""
    try:
        options = workstation_arguments.options_from(args)
    except CommandError as error:
        return _fail(str(error))
    return _on_workstation(args.command, options)


def _on_workstation(command: str, options: WorkstationOptions) -> int:
    """Runs a workstation command, or says in one line how to install what it needs."""
    needs, install = WORKSTATION_NEEDS[command]
    missing = [name for module, name in needs if importlib.util.find_spec(module) is None]
    if missing:
        return _fail(f"`edgeface {command}` needs {' and '.join(missing)}; install it with: {install}")
    # The TensorFlow gate: the one import of the workstation side that loads TensorFlow.
    from edgeface_convert import commands

    try:
        return commands.run(options)
    except CommandError as error:
        return _fail(str(error))


def run_eval(args: argparse.Namespace) -> int:
    """A .tflite is evaluated here on LiteRT; float models go to the workstation side."""
    if not args.model.endswith(".tflite"):
        return _on_workstation("eval", EvalOptions(data=args.data, model=args.model, strangers=args.strangers,
                                                   keep_no_face=args.keep_no_face, trust_model=args.trust_model,
                                                   json=args.json, yunet_model=args.yunet_model))  # fmt: skip
    recognizer = load_recognizer(args.model)
    spec = _detector_overrides(args).applied_to(recognizer.metadata.preprocessing)
    if args.db:
        with ResultLog(args.db) as log:
            recognizer.use_enrolments(log.enrolments(recognizer.network_sha256))
    strangers = stranger_faces(args.strangers, spec)[0] if args.strangers else None
    try:
        report = evaluate_folder(args.data, recognizer.labels, spec, recognizer.classify, recognizer.rule_text(),
                                 strangers, args.keep_no_face)  # fmt: skip
    except ValueError as error:
        return _fail(str(error))
    print(json.dumps(report) if args.json else format_evaluation(report))
    return EXIT_OK


COMMANDS = {
    "scan": run_scan,
    "watch": run_watch_command,
    "log": run_log,
    "hub": run_hub_command,
    "forget": run_forget,
    "enroll": run_enroll,
    "people": run_people,
    "verify": run_verify,
    "info": run_info,
    "eval": run_eval,
    "train": run_workstation,
    "train-gate": run_workstation,
    "convert": run_workstation,
    "demo": run_workstation,
}
