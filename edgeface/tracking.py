"""Faces followed across video frames, so the log gets one event per appearance of a person, not one row per frame.

Call `Tracker.update(faces, at)` once for every frame, including frames with no face (misses are counted per
call), and `Tracker.finish()` at the end; both return the `Appearance`s of the tracks that just ended.

Rules:
- Matching: each face is compared with each live track's latest box (where the face was last seen, so a person
  walking is followed step by step). Pairs are taken highest IoU first, one face per track and one track per face,
  and only when their IoU is at least `min_iou`; equal IoUs go to the older track. A face left unmatched starts a
  new track. Track ids increase in the order tracks start (a dropped blip uses up an id).
- End of a track: it ends when it has gone unmatched for more than `max_missed` consecutive frames, or, if
  `max_gap` is set, when more than `max_gap` seconds have passed since it was last seen; whichever comes first.
  The time rule is applied before matching, so a face never joins a track that is stale by time. A track seen in
  fewer than `min_frames` frames is dropped when it ends (a one-frame detector false positive, with min_frames 2).
- Quality gate: a frame whose face the model's gate rejected (`FaceResult.rejected`) keeps the track alive like any
  other, but never votes: it is only counted (`rejected_frames`), with the best (lowest) score among such frames.
  A track whose every frame was rejected is reported as a rejected appearance: label "", not unknown, confidence 0,
  its best score as `quality` and that frame's box; nothing in it was ever a face to name.
- Vote, among the frames that passed the gate: `unknown` is True when more than half of them were unknown. The label
  is then voted among the frames that agree with that decision (the recognised frames, or the unknown ones, whose
  label is the nearest known one): the most frequent label wins, ties going to the higher summed confidence, then to
  the first name in alphabetical order. `confidence` is the best confidence among the frames that voted for the
  winner, and `box` is that frame's box.
- Naming some frames only (`settle_votes`, `recheck`): before a frame's faces are named, `settled(boxes, at)` says
  which boxes continue a track whose face has been named in `settle_votes` frames already, the last less than
  `recheck` seconds ago. Those need not be named in this frame: `update` takes them as `seen` boxes, which move the
  track and keep it alive, count in its frames, and never vote. So a face in view is named in its first frames and
  then every `recheck` seconds, not in every frame (the embedder's cost is per face named). 0 names every face.
- Memory: a track keeps counters per (label, unknown) pair, not its frames, so an hour in view costs no more than
  a second.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from edgeface.geometry import Box, iou
from edgeface.results import QUALITY, Appearance, FaceResult


@dataclass(slots=True)
class _Tally:
    """A track's frames with one (label, unknown) pair, as counters: how many, summed and best confidence."""

    frames: int = 0
    confidence_sum: float = 0.0
    best_confidence: float = float("-inf")
    best_box: Box | None = None

    def add(self, face: FaceResult) -> None:
        """Counts one frame, keeping its box if it is the most confident so far."""
        self.frames += 1
        self.confidence_sum += face.confidence
        if face.confidence > self.best_confidence:
            self.best_confidence = face.confidence
            self.best_box = face.box


@dataclass(slots=True)
class _Rejections:
    """A track's frames whose face the quality gate rejected: how many, the best (lowest) score and its box."""

    frames: int = 0
    best_quality: float = float("inf")
    best_box: Box | None = None

    def add(self, face: FaceResult) -> None:
        """Counts one rejected frame, keeping its box if its score is the best so far."""
        self.frames += 1
        quality = float("inf") if face.quality is None else face.quality
        if self.best_box is None or quality < self.best_quality:
            self.best_quality, self.best_box = quality, face.box


@dataclass(slots=True)
class _Track:
    """One live track: where and when its face was last seen, how many frames it missed since, and its tallies."""

    track_id: int
    first_seen: float
    last_seen: float
    box: Box
    missed: int = 0
    tallies: dict[tuple[str, bool], _Tally] = field(default_factory=dict)
    rejections: _Rejections = field(default_factory=_Rejections)
    seen_unnamed: int = 0  # frames where the face was seen but not named (see `settled`)
    last_named: float = float("-inf")

    def see(self, box: Box, at: float) -> None:
        """Counts a frame where the track's face was seen and not named: it moves and stays alive, without a vote."""
        self.last_seen = at
        self.box = box
        self.missed = 0
        self.seen_unnamed += 1

    def add(self, face: FaceResult, at: float) -> None:
        """Counts a frame where the track's face was seen and named; the track has missed none since."""
        self.last_seen = self.last_named = at
        self.box = face.box
        self.missed = 0
        if face.rejected:
            self.rejections.add(face)
        else:
            self.tallies.setdefault((face.label, face.unknown), _Tally()).add(face)

    @property
    def voting_frames(self) -> int:
        """How many frames the face was seen in and passed the quality gate."""
        return sum(tally.frames for tally in self.tallies.values())

    @property
    def frames(self) -> int:
        """How many frames the face was seen in."""
        return self.voting_frames + self.rejections.frames + self.seen_unnamed


def _vote(track: _Track) -> Appearance:
    """The appearance a finished track makes, by the vote in the module docstring."""
    if not track.voting_frames:
        return _rejected(track)
    unknown_frames = sum(tally.frames for (_, unknown), tally in track.tallies.items() if unknown)
    unknown = 2 * unknown_frames > track.voting_frames
    voters = {label: tally for (label, flag), tally in track.tallies.items() if flag == unknown}
    ranked = sorted(voters, key=lambda label: (-voters[label].frames, -voters[label].confidence_sum, label))
    winner = voters[ranked[0]]
    return Appearance(
        track_id=track.track_id,
        first_seen=track.first_seen,
        last_seen=track.last_seen,
        frames=track.frames,
        label=ranked[0],
        confidence=winner.best_confidence,
        unknown=unknown,
        box=winner.best_box,
        votes={label: voters[label].frames for label in ranked},
        unknown_frames=unknown_frames,
        rejected_frames=track.rejections.frames,
    )


def _rejected(track: _Track) -> Appearance:
    """The appearance of a track whose every frame the quality gate rejected: nobody, with its best score."""
    rejections = track.rejections
    quality = rejections.best_quality if rejections.best_quality != float("inf") else None
    return Appearance(track.track_id, track.first_seen, track.last_seen, track.frames, "", 0.0, False,
                      rejections.best_box, {}, 0, rejections.frames, QUALITY, quality)  # fmt: skip


def _match(boxes: Sequence[Box], faces: Sequence[Box], min_iou: float) -> list[tuple[int, int]]:
    """(box index, face index) pairs: greedy, highest IoU first, one-to-one, IoU at least min_iou.

    Equal IoUs go to the lower box index, i.e. the older track.
    """
    candidates = sorted(
        (-overlap, b, f)
        for b, box in enumerate(boxes)
        for f, face in enumerate(faces)
        if (overlap := iou(box, face)) >= min_iou
    )
    pairs, used_boxes, used_faces = [], set(), set()
    for _, b, f in candidates:
        if b not in used_boxes and f not in used_faces:
            pairs.append((b, f))
            used_boxes.add(b)
            used_faces.add(f)
    return pairs


class Tracker:
    """Groups per-frame faces into tracks and reports each track once, as an `Appearance`, when it ends.

    min_iou: the least IoU between a face and a track's latest box for the face to continue the track.
    max_missed: a track ends after more than this many consecutive frames without its face.
    max_gap: if set, a track also ends when more than this many seconds pass without its face (for a varying frame
        rate); None: frames alone decide.
    min_frames: tracks seen in fewer frames are dropped instead of reported (2 drops one-frame blips).
    settle_votes, recheck: see "Naming some frames only" in the module docstring (0: every face is named).
    """

    def __init__(
        self, min_iou: float = 0.3, max_missed: int = 5, max_gap: float | None = None, min_frames: int = 1,
        settle_votes: int = 0, recheck: float = 0.0,
    ) -> None:  # fmt: skip
        if not 0 < min_iou <= 1:
            raise ValueError(f"min_iou must be in (0, 1], not {min_iou}")
        if max_missed < 0 or min_frames < 1:
            raise ValueError(f"max_missed must be >= 0 and min_frames >= 1, not {max_missed} and {min_frames}")
        if max_gap is not None and max_gap <= 0:
            raise ValueError(f"max_gap must be positive or None, not {max_gap}")
        if settle_votes < 0 or recheck < 0:
            raise ValueError(f"settle_votes and recheck must be >= 0, not {settle_votes} and {recheck}")
        self.min_iou = min_iou
        self.max_missed = max_missed
        self.max_gap = max_gap
        self.min_frames = min_frames
        self.settle_votes = settle_votes
        self.recheck = recheck
        self._tracks: list[_Track] = []
        self._next_id = 1
        self._last_at: float | None = None

    @property
    def live(self) -> int:
        """How many tracks are open."""
        return len(self._tracks)

    def settled(self, boxes: Sequence[Box], at: float) -> list[bool]:
        """For each box of the frame at `at`, whether its face need not be named (see the module docstring)."""
        if not self.settle_votes:
            return [False] * len(boxes)
        live = [track for track in self._tracks if not self._stale(track, at)]
        settled = [False] * len(boxes)
        for b, f in _match([track.box for track in live], boxes, self.min_iou):
            track = live[b]
            settled[f] = track.voting_frames >= self.settle_votes and at - track.last_named < self.recheck
        return settled

    def update(self, faces: Sequence[FaceResult], at: float, seen: Sequence[Box] = ()) -> list[Appearance]:
        """Adds one frame's faces, seen at time `at` (seconds, non-decreasing), and the boxes `settled` let go
        unnamed; returns the tracks that just ended."""
        if self._last_at is not None and at < self._last_at:
            raise ValueError(f"frame times must not go back: {at} after {self._last_at}")
        self._last_at = at
        ended = self._end(lambda track: self._stale(track, at))
        pairs = _match([track.box for track in self._tracks], [face.box for face in faces] + list(seen), self.min_iou)
        for track in self._tracks:
            track.missed += 1
        for b, f in pairs:
            if f < len(faces):
                self._tracks[b].add(faces[f], at)
            else:  # a settled face goes on with its track; one that lost its track is named in the next frame
                self._tracks[b].see(seen[f - len(faces)], at)
        ended += self._end(lambda track: track.missed > self.max_missed)
        matched = {f for _, f in pairs}
        self._start([face for f, face in enumerate(faces) if f not in matched], at)
        return sorted(ended, key=lambda appearance: appearance.track_id)

    def _stale(self, track: _Track, at: float) -> bool:
        """Whether more than max_gap seconds have passed since the track's face was seen."""
        return self.max_gap is not None and at - track.last_seen > self.max_gap

    def finish(self) -> list[Appearance]:
        """Ends every live track (shutdown, end of a video) and returns their appearances.

        The tracker can then follow another video, whose frame times may start again from any value.
        """
        self._last_at = None
        return self._end(lambda track: True)

    def _start(self, faces: Sequence[FaceResult], at: float) -> None:
        """Opens a track for each face."""
        for face in faces:
            track = _Track(self._next_id, at, at, face.box)
            track.add(face, at)
            self._tracks.append(track)
            self._next_id += 1

    def _end(self, finished: Callable[[_Track], bool]) -> list[Appearance]:
        """Closes the tracks for which `finished(track)` is true; returns the appearances of those with min_frames."""
        kept, closing = [], []
        for track in self._tracks:
            (closing if finished(track) else kept).append(track)
        self._tracks = kept
        return [_vote(track) for track in closing if track.frames >= self.min_frames]
