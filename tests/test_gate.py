"""The face-quality gate on a device, where TensorFlow cannot be imported: real faces pass and real non-faces are
rejected, a rejected face is logged with its score and never named or enrolled, `log` shows it escaped, a crafted
gate is refused in one line.

The model is tests/fixtures/embedder-gated.tflite: the fixture embedder (detector "none", so the whole picture is
the face) with a gate trained on lfw_subset's faces. These tests rely only on its gate keeping most held-out faces
and rejecting most non-faces (6 in 10 or more: on these enlarged, relit, noisy patches it keeps 13 of 20 faces and
rejects 14 of 20 non-faces; 70 tiny faces teach an autoencoder only so much). Photos are made as test_embedder's are: a 25×25 patch enlarged to 150×150, with its
own light and noise.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeface import artefact
from edgeface.model import ModelError
from edgeface.pipeline import Pipeline
from edgeface.preprocess import crop_faces
from edgeface.recognizer import load_recognizer
from edgeface.results import QUALITY
from helpers import FIXTURES, flatbuffer_of, lfw_face, photo, run_edgeface, run_in_process

GATED = FIXTURES / "embedder-gated.tflite"
PATCHES = 20  # committed held-out patches of each label


def not_face(number: int) -> np.ndarray:
    """Committed non-face patch `number` (0-19: lfw_subset's non-faces), 25×25 grey uint8."""
    return cv2.imread(str(FIXTURES / "held_out" / "not-face" / f"{number:03d}.png"), cv2.IMREAD_GRAYSCALE)


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    return Pipeline(load_recognizer(GATED))


@pytest.fixture(scope="module")
def pictures(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """photos/: face-NN.png (real faces) and not-face-NN.png (real non-face patches), 150×150 each; one non-face's
    name holds a newline."""
    folder = tmp_path_factory.mktemp("gate") / "photos"
    folder.mkdir()
    rng = np.random.default_rng(7)
    for number in range(PATCHES):
        cv2.imwrite(str(folder / f"face-{number:02d}.png"), photo(lfw_face(number), rng))
        cv2.imwrite(str(folder / f"not-face-{number:02d}.png"), photo(not_face(number), rng))
    (folder / "not-face-00.png").rename(folder / "not-face\nforged.png")
    return folder


def faces_of(pipeline: Pipeline, patches: list[np.ndarray], seed: int) -> list:
    rng = np.random.default_rng(seed)
    return [pipeline.faces_in(photo(patch, rng))[0] for patch in patches]


def test_real_faces_pass_the_gate_and_real_non_faces_are_rejected_unnamed(pipeline: Pipeline):
    gate = pipeline.recognizer.gate
    faces = faces_of(pipeline, [lfw_face(n) for n in range(PATCHES)], 1)
    others = faces_of(pipeline, [not_face(n) for n in range(PATCHES)], 2)
    assert sum(face.rejected is None for face in faces) >= 0.6 * PATCHES
    assert sum(face.rejected == QUALITY for face in others) >= 0.6 * PATCHES
    for face in faces + others:
        assert face.quality is not None and (face.quality <= gate.threshold) == (face.rejected is None)
        if face.rejected:  # never compared with anyone
            assert (face.label, face.confidence, face.unknown, face.distance) == ("", 0.0, False, None)
            assert face.said == f"rejected (quality {face.quality:.3f})"


def test_held_out_lfw_faces_pass_and_its_non_faces_do_not(pipeline: Pipeline):
    """lfw_subset's last 20 faces, which the gate never saw, and its 100 non-faces (needs scikit-image)."""
    pytest.importorskip("skimage")
    from make_fixtures import lfw_subset

    patches = lfw_subset()
    faces, others = faces_of(pipeline, list(patches[80:100]), 3), faces_of(pipeline, list(patches[100:]), 4)
    assert sum(face.rejected is None for face in faces) >= 0.7 * len(faces)
    assert sum(face.rejected == QUALITY for face in others) >= 0.7 * len(others)


def test_a_batch_is_scored_in_one_call_as_each_crop_alone(pipeline: Pipeline):
    gate = pipeline.recognizer.gate
    rng = np.random.default_rng(5)
    pictures = [photo(lfw_face(n), rng) for n in range(3)] + [photo(not_face(n), rng) for n in range(3)]
    crops = np.concatenate([crop_faces(p, [pipeline.detector.detect(p)[0]], gate.preprocessing) for p in pictures])
    together = gate.scores(crops)
    alone = np.concatenate([gate.scores(crop[np.newaxis]) for crop in crops])
    assert together.shape == (6,) and np.allclose(together, alone) and ((0 <= together) & (together <= 1)).all()


def with_members(flatbuffer: bytes, metadata: artefact.ModelMetadata, members: dict[str, bytes]) -> bytes:
    """A model file whose archive holds `metadata` and `members` as given: what `artefact.embed` refuses to make."""
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr(artefact.MEMBER, metadata.to_json())
        for name, content in members.items():
            bundle.writestr(name, content)
    return flatbuffer + archive.getvalue()


def crafted_gates() -> dict[str, tuple[bytes, str]]:
    """Model files whose gate is wrong, each with words of the one line that must refuse it."""
    model = GATED.read_bytes()
    flatbuffer, metadata = flatbuffer_of(GATED), artefact.read(model)
    network = artefact.read_gate_model(model)
    spec = metadata.gate
    smaller = replace(spec, preprocessing=replace(spec.preprocessing, width=24, height=24))
    scaled = replace(spec, preprocessing=replace(spec.preprocessing, value_range=(0.0, 255.0)))
    elsewhere = replace(spec, preprocessing=replace(spec.preprocessing, margin=0.2))
    classifier = flatbuffer_of(FIXTURES / "face_or_not.tflite")  # 32×32×1 in, like the gate; one probability out
    return {
        "missing member": (with_members(flatbuffer, metadata, {}), "carries no readable gate.tflite"),
        "huge member": (with_members(flatbuffer, metadata, {artefact.GATE_MEMBER: b"TFL3" * (3 << 20)}),
                        "larger than 8 MiB"),
        "not a network": (with_members(flatbuffer, metadata, {artefact.GATE_MEMBER: b"\0" * 4 + b"TFL3" + b"\xff" * 64}),
                          "not a loadable TFLite model"),
        "not TFLite": (with_members(flatbuffer, metadata, {artefact.GATE_MEMBER: b"PK\3\4 a zip, not a model"}),
                       "is not a TFLite model"),
        "input of another size": (artefact.embed(flatbuffer, replace(metadata, gate=smaller), network),
                                  "are not both (24, 24, 1)"),
        "output unlike its input": (artefact.embed(flatbuffer, metadata, classifier), "are not both (32, 32, 1)"),
        "another value range": (artefact.embed(flatbuffer, replace(metadata, gate=scaled), network),
                                "value_range is [0.0, 255.0]"),
        "crops elsewhere": (artefact.embed(flatbuffer, replace(metadata, gate=elsewhere), network),
                            "margin differ from the model's"),
    }  # fmt: skip


@pytest.mark.parametrize("kind", list(crafted_gates()))
def test_a_crafted_gate_is_refused_in_one_line(kind: str, tmp_path: Path):
    content, words = crafted_gates()[kind]
    model = tmp_path / "crafted.tflite"
    model.write_bytes(content)
    with pytest.raises(ModelError, match=words.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        load_recognizer(model)
    info = run_in_process("info", str(model))
    lines = [line for line in info.stderr.splitlines() if not line.startswith("INFO: Created TensorFlow Lite")]
    assert info.returncode == 2 and len(lines) == 1 and words in lines[0] and "Traceback" not in info.stderr, lines


def test_info_shows_the_gate(pipeline: Pipeline):
    shown = run_in_process("info", str(GATED))
    gate = pipeline.recognizer.gate
    assert shown.returncode == 0, shown.stderr
    assert f"quality gate: {gate.size:,} bytes, 32×32×1 crops" in shown.stdout
    assert f"kept {gate.spec.keep:.0%} of {gate.spec.calibration_faces:,} held-out faces" in shown.stdout
    facts = json.loads(run_in_process("info", str(GATED), "--json").stdout)
    assert facts["gate"]["threshold"] == gate.threshold and facts["gate"]["bytes"] == gate.size


@pytest.fixture(scope="module")
def scanned(pictures: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    """The pictures scanned with the gated model into a log: the log and scan's JSON lines."""
    db = tmp_path_factory.mktemp("gate-log") / "log.db"
    scan = run_edgeface("scan", str(pictures), "--model", str(GATED), "--db", str(db), "--json")
    assert scan.returncode == 0, scan.stderr
    return db, [json.loads(line) for line in scan.stdout.splitlines()]


def test_a_scan_logs_each_rejected_face_with_its_score_and_no_name(scanned: tuple[Path, list[dict]]):
    db, results = scanned
    faces = {Path(result["path"]).name: result["faces"][0] for result in results}
    assert len(faces) == 2 * PATCHES and all(face["quality"] is not None for face in faces.values())
    rejected = {name for name, face in faces.items() if face["rejected"] == QUALITY}
    assert sum(name.startswith("not-face") for name in rejected) >= 0.6 * PATCHES
    assert all(faces[name]["label"] == "" and not faces[name]["unknown"] for name in rejected)
    rows = [json.loads(line) for line in run_in_process("log", "--db", str(db), "--json", "--limit", "100").stdout.splitlines()]
    assert len(rows) == 2 * PATCHES  # every input, one outcome each
    logged = {Path(row["path"]).name: row for row in rows}
    for name, face in faces.items():
        assert logged[name]["rejected"] == face["rejected"] and logged[name]["quality"] == pytest.approx(face["quality"], abs=1e-6)
    only = run_in_process("log", "--db", str(db), "--rejected", "--json", "--limit", "100").stdout.splitlines()
    assert {Path(json.loads(line)["path"]).name for line in only} == rejected
    known = run_in_process("log", "--db", str(db), "--known", "--json", "--limit", "100").stdout.splitlines()
    assert not {Path(json.loads(line)["path"]).name for line in known} & rejected
    summary = run_in_process("log", "--db", str(db), "--summary", "--json").stdout.splitlines()
    assert sum(row["faces"] for row in map(json.loads, summary) if row["rejected"] == QUALITY) == len(rejected)


def test_log_shows_a_rejected_face_escaped_in_its_table_and_csv(scanned: tuple[Path, list[dict]]):
    db, results = scanned
    forged = next(result for result in results if "forged" in result["path"])
    face = forged["faces"][0]
    table = run_in_process("log", "--db", str(db), "--limit", "100").stdout.splitlines()
    assert table[0].split()[8:10] == ["rejected", "quality"]
    [line] = [line for line in table if "forged" in line]  # a name's newline never makes a line of its own
    assert "not-face\\nforged.png" in line and f"{face['quality']:.3f}" in line and (QUALITY in line) == bool(face["rejected"])
    csv_rows = run_in_process("log", "--db", str(db), "--rejected", "--csv", "--limit", "100").stdout
    assert "unknown,rejected,quality," in csv_rows.splitlines()[0]


def test_scan_prints_a_rejected_face_without_a_confidence(pictures: Path, tmp_path: Path):
    scan = run_edgeface("scan", str(pictures / "not-face-01.png"), str(pictures / "face-01.png"), "--model", str(GATED),
                        "--db", str(tmp_path / "log.db"))  # fmt: skip
    assert scan.returncode == 0, scan.stderr
    lines = scan.stdout.splitlines()
    [rejected] = [line for line in lines if "not-face-01" in line]
    assert rejected.startswith("rejected (quality 0.") and " 0.000 " not in rejected
    assert lines[0].index("CONF") == next(line for line in lines if "face-01.png" in line and "not" not in line).index("0.")


def gated_as(pipeline: Pipeline, paths: list[Path], rejected: bool) -> list[str]:
    """The photos among `paths` whose face the gate rejects (or passes), as the log would say."""
    return [str(path) for path in paths if (pipeline.faces_in(cv2.imread(str(path)))[0].rejected is not None) == rejected]


def test_enroll_refuses_rejected_faces_and_says_how_many(pipeline: Pipeline, pictures: Path, tmp_path: Path):
    db = tmp_path / "log.db"
    passing = gated_as(pipeline, [pictures / f"face-{n:02d}.png" for n in range(1, 6)], rejected=False)[:2]
    rejected = gated_as(pipeline, sorted(pictures.glob("not-face-*.png")), rejected=True)
    assert len(passing) == 2 and len(rejected) >= 3
    enrol = run_edgeface("enroll", "erin", *passing, *rejected[:2], "--model", str(GATED), "--db", str(db), "--json")
    outcome = json.loads(enrol.stdout)
    assert enrol.returncode == 1 and (outcome["embeddings"], outcome["rejected"]) == (2, 2)
    assert [problem["input"] for problem in outcome["failed"]] == rejected[:2]
    assert all(problem["error"].startswith("rejected (quality ") for problem in outcome["failed"])
    refused = run_edgeface("enroll", "nobody", *rejected[2:], "--model", str(GATED), "--db", str(db))
    assert refused.returncode == 2 and "the quality gate rejected the face of" in refused.stderr, refused.stderr
    [person] = [json.loads(line) for line in run_in_process("people", "--db", str(db), "--json").stdout.splitlines()]
    assert person["person"] == "erin" and person["embeddings"] == 2


def test_verify_says_when_a_face_is_rejected(pipeline: Pipeline, pictures: Path):
    other = gated_as(pipeline, sorted(pictures.glob("not-face-*.png")), rejected=True)[0]
    verify = run_edgeface("verify", str(pictures / "face-01.png"), other, "--model", str(GATED))
    assert verify.returncode == 1 and f"{Path(other).name}: rejected (quality " in verify.stderr, verify.stderr
