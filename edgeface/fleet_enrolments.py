"""Enrolled people shared by the boxes of a fleet through the MQTT broker: the messages, their topics, and the checks
a box makes on those it receives.

Topics are relative to `mqtt.fleet_prefix` (FLEET), so the log can queue a message without knowing the broker:

- FLEET/enrolments/NETWORK/ID, retained: one enrolled embedding (person, network sha256, the embedding as base64
  little-endian float32 with its length, when and on which device it was enrolled). Never a photo, its path or
  its hash. ID is unique across the fleet, so a copy delivered twice, or a box's own coming back, is kept once. A
  box subscribes only to its embedder's NETWORK: embeddings of another network mean nothing to it.
- FLEET/forgotten/NAME, retained: a tombstone, the person and when they were forgotten (NAME percent-encoded, as a
  name may hold `/`, `+` or `#`). The forgetting box also empties the retained topics of the enrolments it deleted,
  so a box that joins later is not handed them.

The broker keeps no order across topics, so times decide: an enrolment no newer than a known tombstone of its
person is not taken in, and a tombstone deletes the person's enrolments no newer than itself. Several boxes that
forget one person converge on the latest time. Received messages are hostile input: `received` bounds, parses and
checks each one (MessageRefused says why), and what a box takes in is never sent again.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote

import numpy as np

from edgeface.clock import log_time
from edgeface.gallery import GalleryError, check_name

ENROLMENTS, FORGOTTEN = "enrolments", "forgotten"
# A tombstone's topic is FORGOTTEN/PERSON/<name>: four levels under the fleet prefix, like an enrolment's, so no shared
# topic has the three levels of a box's own (`edgeface/+/events` never matches a person named "events").
PERSON = "person"
MAX_MESSAGE_BYTES = 64 * 1024  # an embedding of a gallery's most values (4096) is under 22 kB as base64
ENROLMENT_ID = re.compile(r"[0-9a-f]{32}")
NETWORK = re.compile(r"[0-9a-f]{64}")


class MessageRefused(ValueError):
    """A fleet message that is not taken in; the message says why, without echoing its content."""


@dataclass(frozen=True)
class SharedEnrolment:
    """One embedding of `person` (float32, `dimensions` values) made by the network with sha256 `network`, at
    `enrolled_at` (the log's time format) on `device` (None: this box)."""

    enrolment_id: str
    person: str
    network: str
    embedding: np.ndarray
    enrolled_at: str
    device: str | None = None


@dataclass(frozen=True)
class Tombstone:
    """`person` was forgotten at `forgotten_at` (the log's time format) on `device` (None: this box)."""

    person: str
    forgotten_at: str
    device: str | None = None


def enrolment_topic(network: str, enrolment_id: str) -> str:
    return f"{ENROLMENTS}/{network}/{enrolment_id}"


def tombstone_topic(person: str) -> str:
    return f"{FORGOTTEN}/{PERSON}/{quote(person, safe='')}"


def subscriptions(fleet: str, network: str | None) -> list[str]:
    """What a box whose embedder has `network` listens to; nothing for a model that takes no enrolments."""
    return [] if network is None else [f"{fleet}/{ENROLMENTS}/{network}/+", f"{fleet}/{FORGOTTEN}/{PERSON}/+"]


def enrolment_message(enrolment: SharedEnrolment) -> str:
    vector = np.asarray(enrolment.embedding, dtype="<f4")
    return json.dumps({"enrolment_id": enrolment.enrolment_id, "person": enrolment.person,
                       "network": enrolment.network, "dimensions": int(vector.size),
                       "embedding": base64.b64encode(vector.tobytes()).decode("ascii"),
                       "enrolled_at": enrolment.enrolled_at, "device": enrolment.device})  # fmt: skip


def tombstone_message(tombstone: Tombstone) -> str:
    return json.dumps({"person": tombstone.person, "forgotten_at": tombstone.forgotten_at, "device": tombstone.device})


def addressed(topic: str, payload: str, fleet: str, device: str) -> tuple[str, str]:
    """The broker's topic and the payload of a message the log queued: enrolling and forgetting run without the
    broker's settings, so the fleet prefix and the sending device are filled in as it leaves. An empty payload (a
    retained topic emptied) stays empty."""
    return f"{fleet}/{topic}", json.dumps({**json.loads(payload), "device": device}) if payload else ""


def received(
    topic: str, payload: bytes, fleet: str, network: str, dimensions: int
) -> SharedEnrolment | Tombstone | None:
    """The enrolment or tombstone a message on `topic` carries, checked against this box's embedder (`network`,
    embeddings of `dimensions` values); None for an emptied retained topic; MessageRefused otherwise."""
    if len(payload) > MAX_MESSAGE_BYTES:
        raise MessageRefused(f"larger than {MAX_MESSAGE_BYTES} bytes")
    if not topic.startswith(f"{fleet}/"):
        raise MessageRefused("not on the fleet's topics")
    levels = topic[len(fleet) + 1 :].split("/")
    if not payload:
        return None
    message = _json_object(payload)
    if levels[0] == ENROLMENTS and len(levels) == 3:
        enrolment = _enrolment(message, dimensions)
        if enrolment.network != network or levels[1:] != [network, enrolment.enrolment_id]:
            raise MessageRefused("its topic does not name its network and id, or the network is not this box's")
        return enrolment
    if levels[:2] == [FORGOTTEN, PERSON] and len(levels) == 3:
        tombstone = Tombstone(_name(message.get("person")), _time(message.get("forgotten_at")),
                              _device(message.get("device")))  # fmt: skip
        if tombstone_topic(tombstone.person) != "/".join(levels):
            raise MessageRefused("its topic does not name the person it forgets")
        return tombstone
    raise MessageRefused("not an enrolment or a tombstone topic")


def _json_object(payload: bytes) -> dict:
    try:
        message = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise MessageRefused("not JSON in UTF-8") from None
    if not isinstance(message, dict):
        raise MessageRefused("not a JSON object")
    return message


def _enrolment(message: dict, dimensions: int) -> SharedEnrolment:
    enrolment_id, network = message.get("enrolment_id"), message.get("network")
    if not isinstance(enrolment_id, str) or not ENROLMENT_ID.fullmatch(enrolment_id):
        raise MessageRefused("its enrolment_id is not 32 hexadecimal digits")
    if not isinstance(network, str) or not NETWORK.fullmatch(network):
        raise MessageRefused("its network is not a sha256 in hexadecimal")
    if message.get("dimensions") != dimensions:
        raise MessageRefused(f"its embedding does not have this model's {dimensions} values")
    try:
        raw = base64.b64decode(str(message.get("embedding")), validate=True)
    except (binascii.Error, ValueError):
        raise MessageRefused("its embedding is not base64") from None
    if len(raw) != 4 * dimensions:
        raise MessageRefused(f"its embedding does not have this model's {dimensions} values")
    vector = np.frombuffer(raw, dtype="<f4").astype(np.float32)
    if not np.isfinite(vector).all():
        raise MessageRefused("its embedding holds values that are not finite numbers")
    return SharedEnrolment(enrolment_id, _name(message.get("person")), network, vector,
                           _time(message.get("enrolled_at")), _device(message.get("device")))  # fmt: skip


def _name(person: object) -> str:
    try:
        return check_name(person)  # type: ignore[arg-type]
    except GalleryError as error:
        raise MessageRefused(f"its person: {error}") from None


def _device(device: object) -> str:
    """The sending device's name: shown by `edgeface people`, so held to the rules of a person's name."""
    try:
        return check_name(device)  # type: ignore[arg-type]
    except GalleryError:
        raise MessageRefused("its device is not a name of 1 to 100 characters without control characters") from None


def _time(text: object) -> str:
    """`text` in the log's own time format, which compares as text; it must say its offset from UTC."""
    try:
        when = datetime.fromisoformat(text)  # type: ignore[arg-type]
        if when.tzinfo is None:
            raise ValueError
        return log_time(when)
    except (TypeError, ValueError, OverflowError):
        raise MessageRefused("its time is not an ISO 8601 time with its offset from UTC") from None
