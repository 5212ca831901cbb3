"""The metadata document inside a `.tflite`: round trip, versioning, and clear refusals."""

import json
import zipfile
from io import BytesIO

import pytest

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
