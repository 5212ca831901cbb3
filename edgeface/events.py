"""The events a box tells the fleet: one JSON object per file result and per camera appearance, never an image.

Each event carries an id unique across the fleet (a random UUID, made once when the event is queued, so a copy the
broker delivers twice keeps it and a hub can drop the second), the device, and what the log holds of the outcome.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence

from edgeface.clock import Moment
from edgeface.results import Appearance, ImageResult


def image_event(device: str, source: str, model_sha256: str, moment: Moment, result: ImageResult) -> str:
    """The event of one file's outcome: its faces (label, unknown, confidence, distance, box; with a quality gate,
    the rejection and the score), or its error."""
    return _event(device, "image", source, model_sha256, moment, path=result.path, sha256=result.sha256,
                  status=str(result.status), error=result.error,
                  faces=[face.to_dict() for face in result.faces])  # fmt: skip


def appearance_event(device: str, source: str, model_sha256: str, moment: Moment, appearance: Appearance) -> str:
    """The event of one person's time in view of a camera, with wall-clock first and last seen, and the frames the
    quality gate rejected (an appearance of nothing else is itself rejected, with its best score)."""
    seen = appearance.to_dict()
    return _event(device, "appearance", source, model_sha256, moment,
                  **{key: seen[key] for key in ("label", "unknown", "confidence", "box", "frames", "rejected", "quality",
                                                "rejected_frames")},
                  first_seen=moment.wall_at(appearance.first_seen), last_seen=moment.wall_at(appearance.last_seen))  # fmt: skip


def batch_events(
    device: str, source: str, model_sha256: str, moment: Moment,
    images: Sequence[ImageResult], appearances: Sequence[Appearance],
) -> list[str]:  # fmt: skip
    """The events of one commit, in its order. A camera's per-frame rows (`per_frame`) stay local: its appearances
    are its events."""
    events = [appearance_event(device, source, model_sha256, moment, seen) for seen in appearances]
    if not source.startswith("camera:"):
        events += [image_event(device, source, model_sha256, moment, result) for result in images]
    return events


def _event(device: str, kind: str, source: str, model_sha256: str, moment: Moment, **fields: object) -> str:
    return json.dumps({"event_id": str(uuid.uuid4()), "device": device, "kind": kind, "source": source,
                       "time": moment.wall, "clock_synced": moment.synced, "model_sha256": model_sha256,
                       **fields})  # fmt: skip
