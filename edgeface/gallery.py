"""People as embeddings: the gallery an embedder model compares faces with, and its unknown rule.

A face is named after the person whose **centroid** (the mean of their embeddings) is nearest,
when that Euclidean distance is at most the rule's `max_distance`; otherwise it is unknown.
Centroids rather than the nearest single image: every photo added to a person would otherwise be
one more chance for a stranger to come close, so a growing gallery would silently accept more
strangers; with centroids it is one comparison per person, however many photos each has
(`benchmarks/accuracy.py` measures both).
"""

from __future__ import annotations

import base64
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import cached_property

import numpy as np

from edgeface.openset import MIN_STRANGERS, NotEnoughStrangers

MAX_ROWS = 100_000  # embeddings in one gallery; far above any household's or shop's needs
MAX_NAME = 100  # characters in a person's name
MAX_DIMENSIONS = 4096


class GalleryError(ValueError):
    """A gallery or rule that cannot be used (malformed metadata, a bad name, wrong sizes)."""


def check_name(name: str) -> str:
    """`name` if it can name a person: 1..MAX_NAME characters, no control characters, not blank."""
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME:
        raise GalleryError(f"a person's name must be 1 to {MAX_NAME} characters, not blank")
    if any(ord(c) < 32 or 127 <= ord(c) < 160 or c in "\u2028\u2029" for c in name):
        raise GalleryError("a person's name must not contain control characters")
    return name


@dataclass(frozen=True)
class Gallery:
    """Embeddings of known people: row i of `vectors` (float32, n × d) is a face of `names[i]`."""

    names: tuple[str, ...]
    vectors: np.ndarray

    def __post_init__(self) -> None:
        if self.vectors.ndim != 2 or len(self.names) != len(self.vectors):
            raise GalleryError("a gallery needs one name per embedding")
        if len(self.names) > MAX_ROWS or self.vectors.shape[1] > MAX_DIMENSIONS:
            raise GalleryError(f"a gallery holds at most {MAX_ROWS} embeddings of at most {MAX_DIMENSIONS} values")
        if not np.isfinite(self.vectors).all():
            raise GalleryError("a gallery's embeddings must be finite numbers")
        for name in set(self.names):
            check_name(name)

    @classmethod
    def empty(cls, dimensions: int) -> Gallery:
        return cls((), np.empty((0, dimensions), dtype=np.float32))

    @property
    def dimensions(self) -> int:
        return int(self.vectors.shape[1])

    @property
    def people(self) -> tuple[str, ...]:
        """Everyone in the gallery, sorted."""
        return tuple(sorted(set(self.names)))

    def counts(self) -> dict[str, int]:
        """How many embeddings each person has."""
        return {person: self.names.count(person) for person in self.people}

    def plus(self, other: Gallery) -> Gallery:
        """This gallery with `other`'s embeddings added."""
        if len(other.names) and other.dimensions != self.dimensions:
            raise GalleryError(f"embeddings of {other.dimensions} values cannot join a gallery of {self.dimensions}")
        return Gallery(self.names + other.names, np.concatenate([self.vectors, other.vectors]).astype(np.float32))

    def without(self, people: set[str] | frozenset[str]) -> Gallery:
        """This gallery without `people`."""
        keep = [i for i, name in enumerate(self.names) if name not in people]
        return Gallery(tuple(self.names[i] for i in keep), self.vectors[keep])

    def centroids(self) -> tuple[tuple[str, ...], np.ndarray]:
        """(people, their mean embeddings), people sorted; worked out once per gallery, which never changes, rather
        than for every photo named against it."""
        return self._centroids

    @cached_property
    def _centroids(self) -> tuple[tuple[str, ...], np.ndarray]:
        people = self.people
        names = np.array(self.names, dtype=object)
        means = [self.vectors[names == person].mean(axis=0) for person in people]
        return people, np.array(means, dtype=np.float32).reshape(len(people), self.dimensions)

    def nearest(self, embeddings: np.ndarray, method: str = "centroid") -> tuple[list[str], np.ndarray]:
        """For each embedding (n × d), the nearest person and the Euclidean distance to them, by
        centroid or by single image ("image"); ("", inf) each when the gallery is empty."""
        if not len(self.names):
            return [""] * len(embeddings), np.full(len(embeddings), np.inf, dtype=np.float32)
        names, points = self.centroids() if method == "centroid" else (self.names, self.vectors)
        distances = np.linalg.norm(embeddings[:, None, :] - points[None, :, :], axis=2)
        best = distances.argmin(axis=1)
        return [names[i] for i in best], distances[np.arange(len(embeddings)), best].astype(np.float32)

    def to_dict(self) -> dict:
        """For the model's metadata: names, and the embeddings as base64 little-endian float32."""
        return {
            "names": list(self.names),
            "dimensions": self.dimensions,
            "embeddings": base64.b64encode(self.vectors.astype("<f4").tobytes()).decode("ascii"),
        }

    @classmethod
    def from_dict(cls, data: dict) -> Gallery:
        with _reading("gallery"):
            names, dimensions = data["names"], int(data["dimensions"])
            if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
                raise GalleryError("a gallery's names must be a list of strings")
            if not 1 <= dimensions <= MAX_DIMENSIONS or len(names) > MAX_ROWS:
                raise GalleryError(f"a gallery holds at most {MAX_ROWS} embeddings of 1..{MAX_DIMENSIONS} dimensions")
            raw = base64.b64decode(str(data["embeddings"]), validate=True)
        if len(raw) != 4 * dimensions * len(names):
            raise GalleryError(f"gallery: {len(raw)} bytes of embeddings for {len(names)} × {dimensions} values")
        vectors = np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(len(names), dimensions)
        return cls(tuple(names), vectors)


@contextmanager
def _reading(what: str) -> Iterator[None]:
    """Turns a missing key or a value of the wrong kind in the metadata's `what` into one GalleryError."""
    try:
        yield
    except GalleryError:
        raise
    except KeyError as missing:
        raise GalleryError(f"{what} has no {missing.args[0]!r}") from None
    except (TypeError, ValueError, OverflowError) as bad:
        raise GalleryError(f"malformed {what}: {bad}") from None


def confidence_of(distance: np.ndarray) -> np.ndarray:
    """A 0..1 score for people who read confidences: 1 − distance, never below 0. Distances
    of dlib's embeddings run from 0 (the same picture) to about 1.2."""
    return np.clip(1.0 - distance, 0.0, 1.0)


@dataclass(frozen=True)
class DistanceRule:
    """Name the nearest person when the distance is at most `max_distance`, else say unknown.

    method: "centroid" (see the module's docstring). target_false_accept: the rate asked for;
    false_accept: the rate measured on `strangers` faces from `stranger_source` against a gallery
    of `people` people; known_accept: the fraction of known faces accepted, with the right name.
    """

    max_distance: float
    method: str
    target_false_accept: float
    false_accept: float
    known_accept: float
    strangers: int
    stranger_source: str
    people: int

    def __post_init__(self) -> None:
        if not (math.isfinite(self.max_distance) and 0.0 < self.max_distance < 100.0):
            raise GalleryError("the rule's max_distance must be a number between 0 and 100")
        if self.method not in ("centroid", "image"):
            raise GalleryError("the rule's method must be 'centroid' or 'image'")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> DistanceRule:
        with _reading("distance rule"):
            return cls(
                max_distance=float(data["max_distance"]),
                method=str(data["method"]),
                target_false_accept=float(data["target_false_accept"]),
                false_accept=float(data["false_accept"]),
                known_accept=float(data["known_accept"]),
                strangers=int(data["strangers"]),
                stranger_source=str(data["stranger_source"]),
                people=int(data["people"]),
            )

    def describe(self) -> str:
        """One line for people: the threshold and what it was measured on."""
        return (
            f"nearest {self.method} within distance {self.max_distance:.3f}; "
            f"{100 * self.false_accept:.1f} % of {self.strangers} strangers accepted ({self.stranger_source})"
        )


# Used when a model is made without enough strangers to calibrate its own rule. Measured by
# `benchmarks/accuracy.py` on LFW news photos (lfw_dev), int8, YuNet-aligned: 0.9 % of 447 faces of
# 32 strangers came nearer than this to the centroid of one of 64 known people, and 96 % of the
# known people's other photos were accepted with the right name.
DEFAULT_RULE = DistanceRule(
    max_distance=0.458,
    method="centroid",
    target_false_accept=0.01,
    false_accept=0.009,
    known_accept=0.96,
    strangers=447,
    stranger_source="edgeface's default, measured on LFW news photos by benchmarks/accuracy.py",
    people=64,
)


def calibrate_distance(
    known: np.ndarray,
    known_correct: np.ndarray,
    strangers: np.ndarray,
    target_false_accept: float,
    stranger_source: str,
    people: int,
    method: str = "centroid",
) -> DistanceRule:
    """The largest distance that accepts at most `target_false_accept` of the strangers.

    Args:
        known: distances of known faces to their nearest person; known_correct: whether that
            person is right.
        strangers: distances of faces of people not in the gallery to their nearest person.
        people: how many people the gallery held (the rate grows with it).
    """
    if len(strangers) < MIN_STRANGERS:
        raise NotEnoughStrangers(
            f"only {len(strangers)} stranger faces; at least {MIN_STRANGERS} are needed to claim a false-accept rate"
        )
    allowed = int(np.floor(target_false_accept * len(strangers)))
    ordered = np.sort(strangers)
    # Just below the (allowed + 1)-th nearest stranger: at most `allowed` get through.
    max_distance = float(np.nextafter(ordered[allowed], -np.inf)) if allowed < len(ordered) else float(ordered[-1])
    max_distance = max(max_distance, 1e-6)
    return DistanceRule(
        max_distance=max_distance,
        method=method,
        target_false_accept=target_false_accept,
        false_accept=float((strangers <= max_distance).mean()),
        known_accept=float(((known <= max_distance) & known_correct).mean()) if len(known) else 0.0,
        strangers=len(strangers),
        stranger_source=stranger_source,
        people=people,
    )


@dataclass(frozen=True)
class Enrolments:
    """What a log adds to an embedder's own gallery: people enrolled on the device with this
    network, and people of the model's gallery that were forgotten here (`hidden`)."""

    gallery: Gallery | None = None
    hidden: frozenset[str] = frozenset()

    def applied_to(self, own: Gallery) -> Gallery:
        """`own` (the model's gallery) without the hidden people, plus the enrolled ones."""
        kept = own.without(self.hidden) if self.hidden else own
        return kept.plus(self.gallery) if self.gallery is not None else kept
