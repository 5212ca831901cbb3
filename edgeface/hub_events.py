"""What `edgeface hub` takes of an event a box sent (see `edgeface.events`): every field checked, or the reason not.

A message on the broker is hostile input: any client that may publish there can send anything. So the payload is
bounded (MAX_EVENT_BYTES) before it is parsed, every field the log keeps is checked for type and range (a huge
integer would not fit SQLite, a lone surrogate would not encode, NaN would not compare), and what fails is a
`BadEvent` with a reason for the journal, never an exception that stops the hub. Fields a newer box may add are
ignored, so an old hub takes a new box's events.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime

from edgeface.clock import log_time
from edgeface.geometry import Box
from edgeface.results import REJECTIONS, FaceResult, ImageResult, Status

MAX_EVENT_BYTES = 256 * 1024  # an event with MAX_FACES faces is about 100 kB; more is not an event of ours
MAX_FACES = 1000  # as `max_faces` allows
MAX_TEXT = 4096  # characters in a path, a source or an error
MAX_NAME = 255  # characters in a device name or a label
MAX_PIXELS = 1_000_000  # a box's coordinates and sides, in pixels, either way
MAX_FRAMES = 1_000_000_000
MAX_DISTANCE = 1e6  # an embedder's distance; finite, so that a huge integer cannot overflow a float
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_SHA256 = re.compile(r"[0-9a-f]{64}")


class BadEvent(ValueError):
    """A message that is not an event the hub can keep; the text says why, in a few words."""


@dataclass(frozen=True)
class Sighting:
    """One person's time in view of a box's camera, as its event tells it: wall-clock times as the log writes them."""

    label: str
    unknown: bool
    confidence: float
    box: Box
    first_seen: str
    last_seen: str
    seconds: float  # last_seen - first_seen
    frames: int
    rejected_frames: int = 0  # frames the box's quality gate rejected (an older box sends none)
    rejected: str | None = None  # set when every frame was rejected: then the label is empty
    quality: float | None = None  # the gate's best score of such an appearance


@dataclass(frozen=True)
class FleetEvent:
    """An event, checked: a file's outcome (`image`) or a camera appearance (`sighting`), never both."""

    event_id: str
    device: str
    source: str
    time: str  # as `log_time` writes it, so that it sorts as text with the log's other times
    clock_synced: bool | None
    model_sha256: str
    image: ImageResult | None = None
    sighting: Sighting | None = None


def parse_event(payload: bytes) -> FleetEvent:
    """The event in `payload` (UTF-8 JSON), checked; BadEvent otherwise."""
    if len(payload) > MAX_EVENT_BYTES:
        raise BadEvent(f"{len(payload)} bytes, more than {MAX_EVENT_BYTES}")
    try:
        event = json.loads(payload)
    except (ValueError, RecursionError):  # not UTF-8, not JSON, digits beyond Python's limit, nesting too deep
        raise BadEvent("not JSON") from None
    if not isinstance(event, dict):
        raise BadEvent("not a JSON object")
    common = {
        "event_id": _matching(event, "event_id", _UUID),
        "device": _text(event, "device", MAX_NAME),
        "source": _text(event, "source", MAX_TEXT),
        "time": _time(event, "time"),
        "clock_synced": _flag(event, "clock_synced", optional=True),
        "model_sha256": _matching(event, "model_sha256", _SHA256),
    }
    kind = event.get("kind")
    if kind == "image":
        return FleetEvent(**common, image=_image(event))
    if kind == "appearance":
        return FleetEvent(**common, sighting=_sighting(event))
    raise BadEvent("kind is neither image nor appearance")


def check_sender(event: FleetEvent, topic: str) -> FleetEvent:
    """`event` if the topic it came on names its device (`.../DEVICE/events`, as edgeface/DEVICE/events does);
    BadEvent otherwise. The broker's ACL says which topics a box may write, never what its payload claims: bound to
    its topic, a box cannot pass its events off as another's."""
    levels = topic.split("/")
    if len(levels) < 2 or levels[-2] != event.device:
        raise BadEvent("its device is not the one its topic names (a box's topic_prefix must end with its device)")
    return event


def _image(event: dict) -> ImageResult:
    status, error = event.get("status"), _text(event, "error", MAX_TEXT, optional=True)
    if status not in (Status.DONE, Status.ERROR) or (status == Status.ERROR) != bool(error):
        raise BadEvent("status is not done (without error) or error (with one)")
    faces = event.get("faces")
    if not isinstance(faces, list) or len(faces) > MAX_FACES or (error and faces):
        raise BadEvent(f"faces is not a list of at most {MAX_FACES} (none with an error)")
    sha256 = _matching(event, "sha256", _SHA256, optional=True)
    return ImageResult(_text(event, "path", MAX_TEXT), sha256, None, None, None, tuple(_face(face) for face in faces),
                       error)  # fmt: skip


def _face(face: object) -> FaceResult:
    if not isinstance(face, dict):
        raise BadEvent("a face is not a JSON object")
    distance = face.get("distance")
    if distance is not None:
        distance = _number(face, "distance", 0, MAX_DISTANCE)
    label, unknown, (rejected, quality) = _text(face, "label", MAX_NAME, empty=True), _flag(face, "unknown"), _gate(face)
    return FaceResult(_box(face), label, _number(face, "confidence", 0, 1), unknown, distance, rejected, quality)


def _gate(holder: dict) -> tuple[str | None, float | None]:
    """The rejection (None, or one of REJECTIONS) and the gate's score (None, or 0..1) of a face or an appearance; a
    rejected one was never named, so its label is empty and it is not unknown. An older box sends neither."""
    rejected, quality = holder.get("rejected"), holder.get("quality")
    if rejected is not None and rejected not in REJECTIONS:
        raise BadEvent(f"rejected is not null or one of {', '.join(REJECTIONS)}")
    if rejected is not None and (holder.get("label") != "" or holder.get("unknown") is not False):
        raise BadEvent("a rejected face has a label or is unknown: it was never named")
    return rejected, None if quality is None else _number(holder, "quality", 0, 1)


def _sighting(event: dict) -> Sighting:
    first, last = _time(event, "first_seen"), _time(event, "last_seen")
    seconds = (datetime.fromisoformat(last) - datetime.fromisoformat(first)).total_seconds()
    if seconds < 0:
        raise BadEvent("last_seen is before first_seen")
    frames, rejected_frames = event.get("frames"), event.get("rejected_frames", 0)
    if type(frames) is not int or not 1 <= frames <= MAX_FRAMES:
        raise BadEvent(f"frames is not a whole number from 1 to {MAX_FRAMES}")
    if type(rejected_frames) is not int or not 0 <= rejected_frames <= frames:
        raise BadEvent("rejected_frames is not a whole number from 0 to frames")
    rejected, quality = _gate(event)
    if (rejected is not None) != (rejected_frames == frames):
        raise BadEvent("an appearance is rejected when, and only when, every one of its frames was")
    return Sighting(_text(event, "label", MAX_NAME, empty=True), _flag(event, "unknown"),
                    _number(event, "confidence", 0, 1), _box(event), first, last, seconds, frames, rejected_frames,
                    rejected, quality)  # fmt: skip


def _box(holder: dict) -> Box:
    box = holder.get("box")
    if (not isinstance(box, list) or len(box) != 4 or any(type(value) is not int for value in box)
            or not all(-MAX_PIXELS <= value <= MAX_PIXELS for value in box) or min(box[2:]) < 0):  # fmt: skip
        raise BadEvent(f"box is not [x, y, w, h] in whole pixels within ±{MAX_PIXELS}, w and h not negative")
    return Box(*box)


def _text(holder: dict, key: str, most: int, optional: bool = False, empty: bool = False) -> str | None:
    """`holder[key]`: a string of at most `most` characters (not empty unless `empty`) that SQLite can store as
    UTF-8 (no lone surrogate) without a NUL; None only when `optional`."""
    value = holder.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str) or len(value) > most or not (value or empty) or "\0" in value:
        raise BadEvent(f"{key} is not a text of {'0' if empty else '1'} to {most} characters without NUL")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadEvent(f"{key} is not valid Unicode") from None
    return value


def _matching(holder: dict, key: str, pattern: re.Pattern, optional: bool = False) -> str | None:
    value = holder.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise BadEvent(f"{key} is not as a box writes it (lowercase hex)")
    return value


def _time(holder: dict, key: str) -> str:
    """`holder[key]`, an ISO 8601 time with its UTC offset, as the log writes times."""
    value = _text(holder, key, 64)
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise BadEvent(f"{key} is not an ISO 8601 time") from None
    if when.tzinfo is None:
        raise BadEvent(f"{key} has no UTC offset")
    try:
        return log_time(when)
    except OverflowError:  # a time within a day of year 1 or 9999 has no UTC equivalent
        raise BadEvent(f"{key} is out of range") from None


def _flag(holder: dict, key: str, optional: bool = False) -> bool | None:
    value = holder.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, bool):
        raise BadEvent(f"{key} is not true or false")
    return value


def _number(holder: dict, key: str, low: float, high: float) -> float:
    value = holder.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise BadEvent(f"{key} is not a number from {low:g} to {high:g}")
    return float(value)
