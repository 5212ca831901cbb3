"""Faces followed across frames: one appearance per person in view, the vote over a track, and flat memory."""

from __future__ import annotations

import json
import sys

import pytest

from edgeface.geometry import Box
from edgeface.geometry import iou
from edgeface.results import QUALITY, Appearance, FaceResult
from edgeface.tracking import Tracker
from helpers import CLIP


def face(x: float, y: float = 100, size: int = 100, label: str = "alice", confidence: float = 0.9,
         unknown: bool = False) -> FaceResult:  # fmt: skip
    """A classified face whose box has its top-left corner at (x, y)."""
    return FaceResult(Box(round(x), round(y), size, size), label, confidence, unknown)


def run(tracker: Tracker, frames: list[list[FaceResult]], fps: float = 5.0) -> list[Appearance]:
    """Feeds the frames at `fps`, then finishes; every appearance reported, in the order reported."""
    appearances = []
    for index, faces in enumerate(frames):
        appearances += tracker.update(faces, index / fps)
    return appearances + tracker.finish()


def one_label(frames: list[list[FaceResult]], label: str) -> list[list[FaceResult]]:
    """The frames with every face relabelled, for checking which faces a track collected."""
    return [[FaceResult(f.box, label, f.confidence, f.unknown) for f in faces] for faces in frames]


def deep_size(obj: object, seen: set[int] | None = None) -> int:
    """sys.getsizeof of an object and of everything it holds (attributes, slots, container items), once each."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    if isinstance(obj, dict):
        children = [*obj.keys(), *obj.values()]
    elif isinstance(obj, (list, tuple, set, frozenset)):
        children = list(obj)
    else:
        slots = [getattr(obj, name) for name in getattr(type(obj), "__slots__", ()) if hasattr(obj, name)]
        children = slots + list(getattr(obj, "__dict__", {}).values())
    return sys.getsizeof(obj) + sum(deep_size(child, seen) for child in children)


def test_a_face_in_view_for_a_minute_is_one_appearance():
    tracker = Tracker()
    for i in range(300):  # 60 s at 5 fps, drifting right and jittering up and down
        assert tracker.update([face(100 + i * 0.7, 100 + (i % 3) - 1)], i / 5) == []
        assert tracker.live == 1
    (appearance,) = tracker.finish()
    assert (appearance.frames, appearance.first_seen, appearance.last_seen) == (300, 0.0, 59.8)
    assert (appearance.label, appearance.unknown, appearance.votes) == ("alice", False, {"alice": 300})
    assert tracker.live == 0 and tracker.finish() == []


def test_frames_where_the_detector_misses_the_face_do_not_split_the_appearance():
    frames = [[] if i % 3 == 2 else [face(100 + i)] for i in range(31)]  # every third frame missed
    frames += [[]] * 5 + [[face(130)] for _ in range(10)]  # then a gap of exactly max_missed frames
    (appearance,) = run(Tracker(max_missed=5), frames)
    assert appearance.frames == 21 + 10
    assert (appearance.first_seen, appearance.last_seen) == (0.0, 45 / 5)


def test_a_gap_longer_than_max_missed_ends_the_track_when_it_is_exceeded():
    tracker = Tracker(max_missed=5)
    for i in range(10):
        tracker.update([face(100)], i / 5)
    for i in range(10, 15):
        assert tracker.update([], i / 5) == []
    (first,) = tracker.update([], 15 / 5)  # the sixth missed frame
    assert (first.track_id, first.frames, first.last_seen) == (1, 10, 9 / 5)
    tracker.update([face(100)], 16 / 5)
    (second,) = tracker.finish()
    assert (second.track_id, second.frames, second.first_seen) == (2, 1, 16 / 5)


def test_max_gap_ends_a_track_by_time_before_a_late_face_can_join_it():
    frames_at = [(0.0, [face(100)]), (0.2, [face(100)]), (5.0, [face(100)])]
    by_frames, by_time = Tracker(), Tracker(max_gap=2.0)
    assert [by_frames.update(faces, at) for at, faces in frames_at] == [[], [], []]
    assert len(by_frames.finish()) == 1
    reported = [by_time.update(faces, at) for at, faces in frames_at]
    assert [len(appearances) for appearances in reported] == [0, 0, 1]
    assert reported[2][0].last_seen == 0.2 and by_time.live == 1
    assert by_time.finish()[0].first_seen == 5.0


def test_two_people_at_once_are_two_appearances_with_their_own_labels():
    frames = [[face(50 + i, label="alice"), face(400 - i, label="bob", confidence=0.7)] for i in range(20)]
    alice, bob = run(Tracker(), frames)
    assert (alice.track_id, alice.label, alice.frames, alice.votes) == (1, "alice", 20, {"alice": 20})
    assert (bob.track_id, bob.label, bob.frames, bob.votes) == (2, "bob", 20, {"bob": 20})
    assert bob.confidence == 0.7


def test_two_people_crossing_paths_keep_their_tracks_through_the_occlusion():
    """Alice, near the camera, walks right; Bob, further away, walks left behind her and is hidden while covered."""
    frames, hidden = [], 0
    for i in range(80):
        alice = face(8 * i, 100, 120, label="alice")
        bob = face(600 - 6 * i, 130, 60, label="bob")
        covered = alice.box.x <= bob.box.x and bob.box.x + bob.box.w <= alice.box.x + alice.box.w
        hidden += covered
        frames.append([alice] if covered else [bob, alice])
    assert 0 < hidden <= 5
    alice, bob = sorted(run(Tracker(), frames), key=lambda appearance: appearance.label)
    assert (alice.label, alice.frames, alice.votes) == ("alice", 80, {"alice": 80})
    assert (bob.label, bob.frames, bob.votes) == ("bob", 80 - hidden, {"bob": 80 - hidden})


def test_the_most_frequent_label_wins_with_the_best_confidence_of_its_own_frames():
    labels = ["alice", "bob"] * 3 + ["alice"] * 4
    frames = [[face(100 + i, label=label, confidence=0.99 if label == "bob" else 0.5 + i / 100)]
              for i, label in enumerate(labels)]  # fmt: skip
    (appearance,) = run(Tracker(), frames)
    assert (appearance.label, appearance.votes, appearance.unknown) == ("alice", {"alice": 7, "bob": 3}, False)
    assert appearance.confidence == 0.59 and appearance.box == frames[9][0].box


def test_a_track_mostly_unknown_is_unknown_and_named_after_its_unknown_frames():
    frames = [[face(100, label="carol", confidence=0.3, unknown=True)] for _ in range(6)]
    frames += [[face(100, label="alice", confidence=0.95)] for _ in range(4)]
    (appearance,) = run(Tracker(), frames)
    assert (appearance.unknown, appearance.label, appearance.confidence) == (True, "carol", 0.3)
    assert (appearance.votes, appearance.unknown_frames, appearance.frames) == ({"carol": 6}, 6, 10)


def test_half_unknown_is_not_unknown_and_a_tie_goes_to_the_higher_summed_confidence():
    frames = [[face(100, label="carol", unknown=True)] for _ in range(4)]
    frames += [[face(100, label="alice", confidence=0.6)], [face(100, label="bob", confidence=0.8)]] * 2
    (appearance,) = run(Tracker(), frames)
    assert (appearance.unknown, appearance.label, appearance.votes) == (False, "bob", {"bob": 2, "alice": 2})


def test_min_frames_drops_a_one_frame_blip():
    frames = [[face(100)] for _ in range(10)]
    frames[4] = [face(100), face(500, label="bob")]
    assert [a.label for a in run(Tracker(), frames)] == ["alice", "bob"]
    assert [a.label for a in run(Tracker(min_frames=2), frames)] == ["alice"]


def test_finish_flushes_the_open_tracks():
    tracker = Tracker()
    tracker.update([face(50), face(400, label="bob")], 0.0)
    tracker.update([face(52), face(398, label="bob")], 0.2)
    assert tracker.live == 2
    assert [(a.label, a.frames, a.last_seen) for a in tracker.finish()] == [("alice", 2, 0.2), ("bob", 2, 0.2)]
    assert tracker.live == 0 and tracker.finish() == []


def test_a_track_keeps_counters_not_frames():
    tracker = Tracker()
    labels = ("alice", "bob", "carol")

    def feed(start: int, stop: int) -> None:
        for i in range(start, stop):
            tracker.update([face(100 + i % 5, label=labels[i % 3], unknown=i % 4 == 0)], i / 5)

    feed(0, 4_000)  # every counter past 256 (the rarest get a frame in twelve): smaller ints are shared, counted once
    size = deep_size(tracker)
    feed(4_000, 40_000)  # ten times as many frames
    assert deep_size(tracker) == size
    (appearance,) = tracker.finish()
    assert appearance.frames == 40_000


def test_an_appearance_is_plain_json():
    (appearance,) = run(Tracker(), [[face(100, confidence=0.876543)]] * 3)
    assert json.loads(json.dumps(appearance.to_dict())) == {
        "track_id": 1, "first_seen": 0.0, "last_seen": 0.4, "frames": 3, "label": "alice", "confidence": 0.8765,
        "unknown": False, "box": [100, 100, 100, 100], "votes": {"alice": 3}, "unknown_frames": 0,
        "rejected_frames": 0, "rejected": None, "quality": None,
    }  # fmt: skip


def test_iou():
    assert iou(Box(0, 0, 10, 10), Box(0, 0, 10, 10)) == 1.0
    assert iou(Box(0, 0, 10, 10), Box(5, 0, 10, 10)) == pytest.approx(50 / 150)
    assert iou(Box(0, 0, 10, 10), Box(10, 10, 10, 10)) == 0.0


def test_frame_times_must_not_go_back_until_finish():
    tracker = Tracker()
    tracker.update([face(100)], 5.0)
    with pytest.raises(ValueError, match="must not go back"):
        tracker.update([], 4.0)
    tracker.finish()
    assert tracker.update([face(100)], 0.0) == []


@pytest.mark.parametrize("settings", [{"min_iou": 0}, {"max_missed": -1}, {"max_gap": 0}, {"min_frames": 0}])
def test_nonsense_settings_are_refused(settings):
    with pytest.raises(ValueError):
        Tracker(**settings)


@pytest.mark.slow  # the cascade on 275 frames; the tracker's rules are in the default run, on made-up frames
@pytest.mark.skipif(not CLIP.is_file(), reason=f"the video clip is not at {CLIP}")
def test_a_real_video_makes_far_fewer_appearances_than_frames_with_faces():
    """OpenCV's cascade on every frame of a real clip (cuts, missed detections, false positives), one fixed label.
    The frames are halved (640×360 to 320×180, the smallest face 20 pixels instead of 40): a quarter of the work."""
    import cv2

    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    video = cv2.VideoCapture(str(CLIP))
    fps = video.get(cv2.CAP_PROP_FPS)
    detections = []
    while True:
        ok, frame = video.read()
        if not ok:
            break
        grey = cv2.cvtColor(cv2.resize(frame, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2GRAY)
        found = cascade.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5, minSize=(20, 20))
        detections.append([FaceResult(Box(*map(int, box)), "hamilton", 1.0) for box in found])
    video.release()
    with_faces = sum(1 for faces in detections if faces)
    assert len(detections) > 200 and with_faces > 100
    by_frames = run(Tracker(), detections, fps)
    by_time = run(Tracker(max_missed=10**9, max_gap=1.0), detections, fps)
    print(f"\n{len(detections)} frames, {with_faces} with faces, {sum(map(len, detections))} detections: "
          f"{len(by_frames)} appearances (max_missed 5), {len(by_time)} (max_gap 1 s)")  # fmt: skip
    assert sum(a.frames for a in by_frames) == sum(a.frames for a in by_time) == sum(map(len, detections))
    assert len(by_time) <= len(by_frames) <= with_faces / 5


def rejected(x: float, quality: float) -> FaceResult:
    """A face the quality gate turned away, at (x, 100)."""
    return FaceResult.rejected_by_gate(Box(round(x), 100, 100, 100), quality)


def test_rejected_frames_keep_a_track_alive_but_never_vote():
    frames = [[face(100, label="bob", confidence=0.6)], [rejected(102, 0.2)], [rejected(104, 0.3)],
              [rejected(106, 0.25)], [face(108, label="bob", confidence=0.7)]]  # fmt: skip
    (appearance,) = run(Tracker(), frames)
    assert (appearance.label, appearance.unknown, appearance.votes) == ("bob", False, {"bob": 2})
    assert (appearance.frames, appearance.rejected_frames, appearance.rejected, appearance.quality) == (5, 3, None, None)


def test_a_track_of_nothing_but_rejected_frames_is_a_rejected_appearance_with_its_best_score():
    (appearance,) = run(Tracker(), [[rejected(100 + 2 * n, quality)] for n, quality in enumerate((0.3, 0.1, 0.2))])
    assert (appearance.label, appearance.confidence, appearance.unknown, appearance.votes) == ("", 0.0, False, {})
    assert (appearance.rejected, appearance.quality, appearance.frames, appearance.rejected_frames) == (QUALITY, 0.1, 3, 3)
    assert appearance.box == Box(102, 100, 100, 100) and appearance.shown == "rejected (quality 0.100)"


def test_a_settled_face_is_named_again_only_every_recheck_seconds_and_its_other_frames_never_vote():
    """30 fps for 2 s: named in its first 3 frames, then once every 0.5 s (4 more); all 60 frames count."""
    tracker = Tracker(settle_votes=3, recheck=0.5)
    named_at = []
    for index in range(60):
        at, box = index / 30, face(100 + index * 0.5).box
        (settled,) = tracker.settled([box], at)
        if settled:
            tracker.update([], at, seen=[box])
        else:
            named_at.append(index)
            tracker.update([face(100 + index * 0.5, label="bob" if index == 0 else "alice")], at)
    assert named_at == [0, 1, 2, 17, 32, 47]
    (appearance,) = tracker.finish()
    assert (appearance.frames, appearance.votes, appearance.label) == (60, {"alice": 5, "bob": 1}, "alice")


def test_a_new_face_beside_a_settled_one_is_named_and_settling_is_off_by_default():
    tracker = Tracker(settle_votes=1, recheck=10)
    tracker.update([face(100)], 0.0)
    assert tracker.settled([face(101).box, face(400).box], 0.1) == [True, False]
    assert Tracker().settled([face(100).box], 0.0) == [False]
    with pytest.raises(ValueError, match="settle_votes and recheck"):
        Tracker(recheck=-1)
