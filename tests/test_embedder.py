"""The embedder on a "device", where TensorFlow cannot be imported: scan, info, enroll, people, verify, eval and
forget, a running daemon that names a person as soon as they are enrolled, and enrolment refusing what it cannot
trust.

The model is tests/fixtures/embedder.tflite: made by `edgeface train` and `edgeface convert` like any embedder, with a
small stand-in for dlib's network (see tests/make_fixtures.py; test_dlib_embedder.py makes the real one). Its
gallery holds lfw_subset's faces 0-3 as person0..person3. Faces are given as crops (`--detector none`), so no YuNet
file is needed: each person is one of the held-out LFW faces, enlarged to dlib's 150×150 chip, in photos that differ
in light, contrast and noise as photos of one person in one place would.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeface.enroll import EnrolmentRefused, from_camera, from_photos
from edgeface.pipeline import Pipeline
from edgeface.settings import DetectorOverrides
from edgeface.store import ResultLog
from edgeface.watch import GALLERY_SECONDS
from edgeface.workers import PipelineRecipe
from helpers import (
    FIXTURES,
    YUNET,
    Child,
    Classifier,
    astronaut,
    lfw_face,
    photo,
    run_without_tensorflow,
    skimage_bgr,
    wait_until,
    write_photos,
)
from make_fixtures import PEOPLE, PHOTOS

NEWCOMER = 10  # lfw_subset's face 10: enrolled on the device, never in the model's gallery
SIDE_BY_SIDE = 2  # commands run at once at most: one a core (each spends most of its time importing, on one core)


@dataclass
class Embedder:
    tflite: Path
    faces: Path  # faces/<person>/: PHOTOS new photos of each of the gallery's people
    newcomer_photos: Path
    newcomer_queries: list[Path]


@pytest.fixture(scope="module")
def embedder(tmp_path_factory: pytest.TempPathFactory) -> Embedder:
    root = tmp_path_factory.mktemp("embedder")
    rng = np.random.default_rng(5)
    for person in range(PEOPLE):
        write_photos(root / "faces" / f"person{person}", lfw_face(person), PHOTOS, rng)
    write_photos(root / "newcomer", lfw_face(NEWCOMER), 3, rng)
    queries = write_photos(root / "queries", lfw_face(NEWCOMER), 2, rng)
    return Embedder(FIXTURES / "embedder.tflite", root / "faces", root / "newcomer", queries)


def device(*args: str) -> subprocess.CompletedProcess:
    """The edgeface command where TensorFlow, Keras and h5py cannot be imported."""
    run = run_without_tensorflow(*args)
    assert "HEAVY []" in run.stderr
    return run


def side_by_side(*commands: list[str]) -> list[subprocess.CompletedProcess]:
    """`device` for each of `commands` (independent of one another), run at once; their results, in order. A log
    they share must exist already: two processes creating one at once would race."""
    with ThreadPoolExecutor(min(len(commands), SIDE_BY_SIDE)) as pool:
        return list(pool.map(lambda args: device(*args), commands))


def scan_command(model: Path, db: Path, paths: list[Path]) -> list[str]:
    return ["scan", *map(str, paths), "--model", str(model), "--db", str(db), "--json", "--rescan", "--workers", "1"]


def faces_of(scan: subprocess.CompletedProcess) -> list[dict]:
    """The one face of each image a `scan --json` printed."""
    assert scan.returncode == 0, scan.stderr
    return [json.loads(line)["faces"][0] for line in scan.stdout.splitlines()]


def scan_faces(model: Path, db: Path, paths: list[Path]) -> list[dict]:
    return faces_of(device(*scan_command(model, db, paths)))


def enrolled_pipeline(embedder: Embedder, db: Path) -> Pipeline:
    """The test embedder in this process, naming the people enrolled in the log at `db` too."""
    pipeline = PipelineRecipe(model=str(embedder.tflite)).build()
    with ResultLog(db) as log:
        pipeline.recognizer.use_enrolments(log.enrolments(pipeline.recognizer.network_sha256))
    return pipeline


def enrol_in_process(embedder: Embedder, db: Path, person: str, photos: Path) -> None:
    """Enrols `person` from the photos in the folder `photos` into the log at `db`, as `edgeface enroll` does, but
    in this process: for tests of what uses enrolments (the command itself is tested above)."""
    pipeline = PipelineRecipe(model=str(embedder.tflite)).build()
    collected = from_photos(pipeline, sorted(map(str, photos.iterdir())))
    with ResultLog(db) as log:
        network = pipeline.recognizer.network_sha256
        assert log.enrol(person, network, np.array(collected.embeddings), collected.photos, "photo") > 0


def new_log(path: Path) -> Path:
    """An empty log at `path`, as a device that has run has one, so that commands can open it side by side."""
    ResultLog(path).close()
    return path


def test_info_shows_the_kind_the_gallery_and_the_rule(embedder: Embedder):
    run, as_json = side_by_side(["info", str(embedder.tflite)], ["info", str(embedder.tflite), "--json"])
    assert run.returncode == 0, run.stderr
    assert "kind: embedder (128-value embeddings" in run.stdout
    assert f"gallery: {PEOPLE} people, {PEOPLE * PHOTOS} embeddings" in run.stdout
    assert "unknown rule: nearest centroid within distance" in run.stdout and "120 strangers" in run.stdout
    facts = json.loads(as_json.stdout)
    assert facts["metadata"]["gallery"]["people"] == {f"person{i}": PHOTOS for i in range(PEOPLE)}
    assert facts["metadata"]["kind"] == "embedder" and facts["ops"]["CONV_2D"] >= 1


def test_enrol_then_forget_on_the_device_without_tensorflow(embedder: Embedder, tmp_path: Path):
    db = new_log(tmp_path / "log.db")
    model = str(embedder.tflite)
    first, second = map(str, embedder.newcomer_queries)
    before, same = side_by_side(scan_command(embedder.tflite, db, embedder.newcomer_queries),
                                ["verify", first, second, "--model", model, "--json"])  # fmt: skip
    assert all(face["unknown"] for face in faces_of(before))
    same = json.loads(same.stdout)
    assert same["same"] and same["distance"] < same["threshold"]

    enroll = ["enroll", "dana", str(embedder.newcomer_photos), "--model", model, "--db", str(db), "--json"]
    enrol = device(*enroll)
    assert enrol.returncode == 0, enrol.stderr
    assert json.loads(enrol.stdout) | {"log": ""} == {"person": "dana", "embeddings": 3, "already": 0, "failed": [],
                                                      "rejected": 0, "log": ""}
    again, after, people, person, other = side_by_side(
        enroll,
        scan_command(embedder.tflite, db, embedder.newcomer_queries),
        ["people", "--db", str(db), "--model", model, "--json"],
        ["verify", first, "--person", "dana", "--model", model, "--db", str(db), "--json"],
        ["verify", first, "--person", "person0", "--model", model, "--db", str(db), "--json"],
    )
    assert json.loads(again.stdout)["already"] == 3  # the same photos are not enrolled twice

    after = faces_of(after)
    assert [face["label"] for face in after] == ["dana", "dana"] and not any(face["unknown"] for face in after)
    assert all(0 <= face["distance"] < 0.3 and face["confidence"] == pytest.approx(1 - face["distance"], abs=1e-3)
               for face in after)  # fmt: skip

    people = [json.loads(line) for line in people.stdout.splitlines()]
    assert {(row["person"], row["embeddings"], row["source"]) for row in people} == {
        ("dana", 3, "enrolled"), *((f"person{i}", PHOTOS, "model") for i in range(PEOPLE))
    }

    person = json.loads(person.stdout)
    assert person["same"] and person["b"] == "dana"
    other = json.loads(other.stdout)
    assert not other["same"] and other["distance"] > other["threshold"]

    forget = device("forget", "--person", "dana", "--db", str(db), "--json")
    assert forget.returncode == 0 and json.loads(forget.stdout)["embeddings"] == 3
    assert all(face["unknown"] for face in scan_faces(embedder.tflite, db, embedder.newcomer_queries))


def test_forgetting_a_person_of_the_models_own_gallery_makes_them_unknown_with_that_log(embedder: Embedder, tmp_path: Path):
    db = tmp_path / "log.db"
    own = write_photos(tmp_path / "p0", lfw_face(0), 1, np.random.default_rng(9))
    assert scan_faces(embedder.tflite, db, own)[0]["label"] == "person0"
    assert device("forget", "--person", "person0", "--db", str(db)).returncode == 0
    scan, people = side_by_side(scan_command(embedder.tflite, db, own),
                                ["people", "--db", str(db), "--model", str(embedder.tflite), "--json"])  # fmt: skip
    assert faces_of(scan)[0]["unknown"]
    rows = [json.loads(line) for line in people.stdout.splitlines()]
    assert {"person": "person0", "source": "forgotten here", "usable": False}.items() <= next(
        row for row in rows if row["person"] == "person0").items()  # fmt: skip


def test_enrol_from_a_video_keeps_distinct_faces_of_the_one_person(embedder: Embedder, tmp_path: Path):
    video = tmp_path / "dana.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (150, 150))
    rng = np.random.default_rng(3)
    for _ in range(20):  # 2 s; every frame a little different
        writer.write(photo(lfw_face(NEWCOMER), rng))
    writer.release()
    db = tmp_path / "log.db"
    run = device("enroll", "dana", "--camera", str(video), "--seconds", "5", "--model", str(embedder.tflite),
                 "--db", str(db), "--json")  # fmt: skip
    assert run.returncode == 0, run.stderr
    kept = json.loads(run.stdout)["embeddings"]
    assert 1 <= kept < 10  # frames this alike are mostly the same face again
    [face] = enrolled_pipeline(embedder, db).faces_in(cv2.imread(str(embedder.newcomer_queries[0])))
    assert face.label == "dana"


def test_bad_enrolments_fail_clearly(embedder: Embedder, classifier: Classifier, tmp_path: Path):
    db, model = str(new_log(tmp_path / "log.db")), str(embedder.tflite)
    names = ("", "two\nlines", "\x1b[31mred")
    (tmp_path / "notes.txt").write_text("not a photo")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    other_kind, *bad_names, mixed, unknown, missing = side_by_side(
        ["enroll", "dana", str(embedder.newcomer_photos), "--model", str(classifier.tflite_file), "--db", db],
        *(["enroll", name, str(embedder.newcomer_photos), "--model", model, "--db", db] for name in names),
        ["enroll", "dana", str(embedder.newcomer_queries[0]), str(tmp_path / "broken.png"), str(tmp_path / "notes.txt"),
         "--model", model, "--db", db, "--json"],
        ["verify", str(embedder.newcomer_queries[0]), "--person", "nobody", "--model", model, "--db", db],
        ["verify", str(tmp_path / "absent.jpg"), str(embedder.newcomer_queries[0]), "--model", model],
    )  # fmt: skip
    assert other_kind.returncode == 2 and "is a classifier" in other_kind.stderr
    for run in bad_names:
        assert run.returncode == 2 and "name" in run.stderr
    assert mixed.returncode == 1  # some inputs failed; the good photo is enrolled all the same
    outcome = json.loads(mixed.stdout)
    assert outcome["embeddings"] == 1 and {item["input"] for item in outcome["failed"]} == {
        str(tmp_path / "broken.png"), str(tmp_path / "notes.txt")}  # fmt: skip
    assert unknown.returncode == 2 and "not enrolled" in unknown.stderr
    assert missing.returncode == 1 and "absent.jpg" in missing.stderr


def labels_in(db: Path) -> dict[str, tuple[str, int]]:
    """file name -> (label, unknown) of the one face of each input."""
    with sqlite3.connect(db) as connection:
        rows = connection.execute("SELECT i.path, f.label, f.unknown FROM inputs i JOIN faces f ON f.input_id = i.id")
        return {Path(path).name: (label, unknown) for path, label, unknown in rows.fetchall()}


def test_a_running_daemon_names_a_person_as_soon_as_they_are_enrolled(embedder: Embedder, tmp_path: Path):
    """The daemon looks at the log's enrolments once a second (GALLERY_SECONDS) and says when they changed; the next
    photo after that is named by the new gallery."""
    inbox, db = tmp_path / "inbox", tmp_path / "log.db"
    inbox.mkdir()
    daemon = Child(tmp_path, "watch", str(inbox), "--model", str(embedder.tflite), "--db", str(db)).ready()
    rng = np.random.default_rng(11)

    def gallery_changed(people: int) -> None:
        wait_until(lambda: f"people enrolled or forgotten: {people} people known now" in daemon.stderr(),
                   timeout=10 * GALLERY_SECONDS)  # fmt: skip

    write_photos(inbox, lfw_face(NEWCOMER), 1, rng, prefix="before-")
    wait_until(lambda: "before-00.png" in labels_in(db))
    enrol_in_process(embedder, db, "dana", embedder.newcomer_photos)
    gallery_changed(PEOPLE + 1)
    write_photos(inbox, lfw_face(NEWCOMER), 1, rng, prefix="enrolled-")
    wait_until(lambda: "enrolled-00.png" in labels_in(db))
    with ResultLog(db) as log:
        assert log.forget_person("dana") == 3
    gallery_changed(PEOPLE)
    write_photos(inbox, lfw_face(NEWCOMER), 1, rng, prefix="forgotten-")
    wait_until(lambda: "forgotten-00.png" in labels_in(db))
    code, stderr = daemon.stop()
    assert code == 0, stderr
    seen = labels_in(db)
    assert seen["before-00.png"][1] == 1 and seen["forgotten-00.png"][1] == 1
    assert seen["enrolled-00.png"] == ("dana", 0)


def test_eval_measures_an_embedder_on_the_device(embedder: Embedder):
    run = device("eval", str(embedder.faces), "--model", str(embedder.tflite), "--json")
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["accuracy"] == 1.0 and report["samples"] == PEOPLE * PHOTOS
    assert report["open_set"]["rule"].startswith("nearest centroid within distance")


def test_train_refuses_what_the_embedder_cannot_use_before_tensorflow_loads(embedder: Embedder, tmp_path: Path):
    output = str(tmp_path / "m.h5")
    train = ["train", str(embedder.faces), "-o", output, "--detector"]
    haar, classic_flags = side_by_side([*train, "haar"], [*train, "none", "--epochs", "5"])
    assert haar.returncode == 2 and "five landmarks" in haar.stderr
    assert classic_flags.returncode == 2 and "--epochs: only for --arch classic" in classic_flags.stderr
    assert not (tmp_path / "m.h5").exists()


def face_video(path: Path, frames: list[np.ndarray]) -> Path:
    """An MJPG .avi at 10 fps of `frames` (all one size)."""
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (width, height))
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def two_people() -> tuple[np.ndarray, np.ndarray]:
    """The faces of scikit-image's astronaut and cameraman, each 180×200 BGR (the cameraman needs scikit-image)."""
    cameraman = cv2.resize(skimage_bgr("camera")[80:260, 150:300], (180, 200))
    return cv2.resize(astronaut()[30:230, 130:310], (180, 200)), cameraman


@pytest.fixture()
def yunet_pipeline(embedder: Embedder) -> Pipeline:
    """The test embedder with YuNet finding the faces (no alignment: its crops are whole photos)."""
    if not YUNET.is_file():
        pytest.skip(f"YuNet's ONNX file is not at {YUNET}")
    detector = DetectorOverrides(name="yunet", yunet_model=str(YUNET), min_face=20)
    return PipelineRecipe(model=str(embedder.tflite), detector=detector).build()


def test_a_camera_with_two_people_in_view_enrols_nobody(yunet_pipeline: Pipeline, tmp_path: Path):
    astronaut, cameraman = two_people()
    together = face_video(tmp_path / "two.avi", [np.hstack([astronaut, cameraman])] * 4)  # one frame is enough
    with pytest.raises(EnrolmentRefused, match="more than one face in view"):
        from_camera(yunet_pipeline, str(together), 3, yunet_pipeline.recognizer.rule.max_distance)
    in_turn = face_video(tmp_path / "turns.avi", [astronaut] * 5 + [cameraman] * 5)  # 0.5 s each: 2 or 3 frames
    with pytest.raises(EnrolmentRefused, match="more than one person came into view"):
        from_camera(yunet_pipeline, str(in_turn), 3, yunet_pipeline.recognizer.rule.max_distance)
    alone = from_camera(yunet_pipeline, str(face_video(tmp_path / "one.avi", [astronaut] * 12)), 3, 0.5)
    assert 1 <= len(alone.embeddings) <= 3  # the six or seven frames looked at, of one still face, are not six faces


def test_a_photo_with_two_faces_of_similar_size_is_not_enrolled(yunet_pipeline: Pipeline, tmp_path: Path):
    astronaut, cameraman = two_people()
    cv2.imwrite(str(tmp_path / "pair.png"), np.hstack([astronaut, cameraman]))
    cv2.imwrite(str(tmp_path / "alone.png"), astronaut)
    collected = from_photos(yunet_pipeline, [str(tmp_path / "pair.png"), str(tmp_path / "alone.png")])
    assert len(collected.embeddings) == 1
    assert collected.problems == [(str(tmp_path / "pair.png"), "2 faces of similar size: use a photo of this person alone")]
