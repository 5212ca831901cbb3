"""The metadata document inside a `.tflite`: round trip, versioning, and clear refusals."""

import json
import zipfile
from dataclasses import replace
from io import BytesIO

import pytest

from helpers import Classifier, run_edgeface_together
from edgeface import artefact
from edgeface.artefact import MetadataError, ModelMetadata
from edgeface.detect import HaarSettings
from edgeface.openset import UnknownRule
from edgeface.preprocess import Preprocessing

# The parser only needs the flatbuffer's file identifier; real models are covered in test_end_to_end.
FLATBUFFER = b"\x1c\x00\x00\x00TFL3" + bytes(64)

METADATA = ModelMetadata(
    labels=("alice", "bob", "carol"),
    output="softmax",
    preprocessing=Preprocessing(detector=HaarSettings(min_size=40), margin=0.1, color="gray"),
    source={"file": "faces.h5", "sha256": "ab" * 32},
    converter={"edgeface": "0.1.0", "tensorflow": "2.21.0"},
    unknown_rule=UnknownRule(0.82, 0.31, 0.01, 0.009, 0.91, 1000, "held-out identities"),
)


def test_every_field_survives_the_round_trip():
    model = artefact.embed(FLATBUFFER, METADATA)
    assert model.startswith(FLATBUFFER)
    assert artefact.read(model) == METADATA


def test_embedding_is_deterministic_and_listable_as_a_zip():
    first, second = artefact.embed(FLATBUFFER, METADATA), artefact.embed(FLATBUFFER, METADATA)
    assert first == second
    assert zipfile.ZipFile(BytesIO(first)).namelist() == [artefact.MEMBER]


GATE = artefact.GateSpec(Preprocessing(detector=HaarSettings(min_size=40), margin=0.1, color="gray", width=32,
                                        height=32), threshold=0.012, keep=0.99, calibration_faces=200, correlation=0.97)
GATE_NETWORK = b"\x1c\x00\x00\x00TFL3" + bytes(range(200))


def test_a_gate_travels_beside_the_metadata_and_leaves_the_network_identity_alone():
    with_gate = replace(METADATA, gate=GATE)
    model = artefact.embed(FLATBUFFER, with_gate, GATE_NETWORK)
    assert artefact.read(model) == with_gate
    assert artefact.read_gate_model(model) == GATE_NETWORK
    assert zipfile.ZipFile(BytesIO(model)).namelist() == [artefact.MEMBER, artefact.GATE_MEMBER]
    assert artefact.network_sha256(model) == artefact.network_sha256(artefact.embed(FLATBUFFER, METADATA))
    with pytest.raises(MetadataError, match="carries no readable gate.tflite"):
        artefact.read_gate_model(artefact.embed(FLATBUFFER, METADATA))
    with pytest.raises(ValueError, match="both its network and its metadata"):
        artefact.embed(FLATBUFFER, METADATA, GATE_NETWORK)


@pytest.mark.parametrize("field, value", [("threshold", 0.0), ("threshold", float("nan")), ("threshold", 2),
                                          ("keep", 0.2), ("keep", True), ("calibration_faces", 0),
                                          ("calibration_faces", 1.5), ("correlation", 1.5)])  # fmt: skip
def test_a_gate_out_of_range_is_refused(field, value):
    document = replace(METADATA, gate=GATE).to_dict()
    document["gate"][field] = value
    with pytest.raises(MetadataError, match="gate"):
        ModelMetadata.from_json(json.dumps(document))


def test_fields_from_a_newer_edgeface_are_kept():
    document = METADATA.to_dict() | {"schema_version": 9, "fleet": {"hub": "mqtt://hub.local"}}
    read_back = ModelMetadata.from_json(json.dumps(document))
    assert read_back.extra == {"fleet": {"hub": "mqtt://hub.local"}}
    assert read_back.to_dict()["fleet"] == document["fleet"]


def test_a_version_1_document_without_an_unknown_rule_still_reads():
    document = METADATA.to_dict() | {"schema_version": 1}
    del document["unknown_rule"]
    assert ModelMetadata.from_json(json.dumps(document)).unknown_rule is None


def test_a_model_without_metadata_is_refused_with_the_fix():
    with pytest.raises(MetadataError, match="carries no edgeface metadata.*edgeface convert"):
        artefact.read(FLATBUFFER, name="plain.tflite")


def test_a_file_that_is_not_tflite_is_refused():
    with pytest.raises(MetadataError, match="not a TFLite model"):
        artefact.read(b"GIF89a" + bytes(32), name="cat.gif")


def test_a_missing_field_is_named():
    document = METADATA.to_dict()
    del document["labels"]
    with pytest.raises(MetadataError, match="'labels'"):
        ModelMetadata.from_json(json.dumps(document))


@pytest.mark.parametrize("text", ["{not json", '{"format": "other"}', '{"format": "edgeface-model"}'])
def test_malformed_documents_are_refused(text):
    with pytest.raises(MetadataError):
        ModelMetadata.from_json(text)


def test_labels_must_fit_the_output():
    with pytest.raises(MetadataError, match="two labels"):
        ModelMetadata(labels=("a", "b", "c"), output="sigmoid", preprocessing=Preprocessing())
    with pytest.raises(MetadataError, match="distinct"):
        ModelMetadata(labels=("a", "a"), output="softmax", preprocessing=Preprocessing())


def test_metadata_is_not_embedded_twice():
    with pytest.raises(ValueError, match="already"):
        artefact.embed(artefact.embed(FLATBUFFER, METADATA), METADATA)


def crafted(**changes: object) -> bytes:
    """A model file whose metadata has `changes` applied to a valid document."""
    document = {**METADATA.to_dict(), **changes}
    return FLATBUFFER + _zipped(json.dumps(document).encode())


def _zipped(member: bytes) -> bytes:
    archive = BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr(artefact.MEMBER, member)
    return archive.getvalue()


SELF_TEST = {"inputs": ["AAAA"], "probabilities": [[0.1, 0.9, 0.0]], "tolerance": 0.02}


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"labels": [1, 2]}, "not a usable name"),
        ({"labels": ["alice", "bob\n2026-01-01 forged"]}, "control characters"),
        ({"labels": ["x" * 101, "bob"]}, "not a usable name"),
        ({"labels": "alice,bob"}, "must be a list"),
        ({"labels": [f"p{i}" for i in range(artefact.MAX_LABELS + 1)]}, "at most"),
        ({"source": ["not", "an", "object"]}, "source must be an object"),
        ({"embedding_size": "128", "kind": "embedder", "output": "embedding"}, "whole number"),
        ({"self_test": {**SELF_TEST, "tolerance": "nan"}}, "tolerance"),
        ({"self_test": {**SELF_TEST, "tolerance": 1e308 * 10}}, "tolerance"),
        ({"self_test": {**SELF_TEST, "probabilities": [["0.1", 0.9, 0.0]]}}, "finite number"),
        ({"self_test": {**SELF_TEST, "inputs": [{"a": 1}]}}, "base64 text"),
        ({"self_test": {**SELF_TEST, "inputs": ["AAAA"] * 65, "probabilities": [[0.0]] * 65}}, "1 to 64 samples"),
        ({"self_test": {**SELF_TEST, "probabilities": []}}, "one row of outputs per sample"),
    ],
)
def test_every_metadata_field_is_checked_for_type_and_size(changes: dict, says: str):
    with pytest.raises(MetadataError, match=says):
        artefact.read(crafted(**changes), name="crafted.tflite")


def test_metadata_that_inflates_past_the_bound_is_refused_without_inflating_it_all():
    bomb = FLATBUFFER + _zipped(b" " * (artefact.MAX_METADATA_BYTES + 10))  # about 64 kB on disk
    with pytest.raises(MetadataError, match="larger than 64 MiB"):
        artefact.read(bomb, name="bomb.tflite")


def test_a_member_that_inflates_past_its_declared_size_is_refused():
    """The size the archive declares bounds what is inflated: zipfile stops there, and the member then fails its
    check."""
    archive = bytearray(_zipped(b" " * 100_000))
    directory = archive.rindex(b"PK\x01\x02")
    for size_field in (22, directory + 24):  # the uncompressed size, in the local header and in the directory
        archive[size_field : size_field + 4] = (1000).to_bytes(4, "little")
    with pytest.raises(MetadataError, match="carries no edgeface metadata"):
        artefact.read(FLATBUFFER + bytes(archive), name="liar.tflite")


def test_a_crafted_model_stops_every_command_with_one_line_and_exit_2_never_a_restart_loop(classifier: Classifier, tmp_path):
    """A real network with crafted metadata. Exit 2 is what the units' RestartPreventExitStatus=2 keeps from
    restarting; any other code would loop."""
    real = classifier.tflite_file.read_bytes()
    with zipfile.ZipFile(BytesIO(real)) as bundle:
        network = real[: min(info.header_offset for info in bundle.infolist())]
        document = json.loads(bundle.read(artefact.MEMBER))
    model = tmp_path / "crafted.tflite"
    model.write_bytes(network + _zipped(json.dumps({**document, "labels": ["face", {"not": "a name"}]}).encode()))
    runs = run_edgeface_together(
        ["info", str(model)], ["watch", str(tmp_path), "--model", str(model), "--db", str(tmp_path / "l.db")],
        ["scan", str(tmp_path), "--model", str(model), "--db", str(tmp_path / "l.db")],
    )  # fmt: skip
    for run in runs:
        errors = [line for line in run.stderr.splitlines() if line.startswith("edgeface: error:")]
        assert run.returncode == 2 and len(errors) == 1 and "not a usable name" in errors[0], run.stderr
        assert "Traceback" not in run.stderr
