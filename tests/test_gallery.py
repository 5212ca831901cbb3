"""The gallery and its distance rule: naming by nearest centroid, calibration, and hostile metadata."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeface.artefact import MetadataError, ModelMetadata
from edgeface.embedder import predictions_from_distances
from edgeface.gallery import (
    DEFAULT_RULE,
    DistanceRule,
    Enrolments,
    Gallery,
    GalleryError,
    calibrate_distance,
    check_name,
)
from edgeface.openset import NotEnoughStrangers
from edgeface.preprocess import Preprocessing


def people_gallery() -> Gallery:
    """alice near (1, 0), bob near (0, 1); alice has three photos, bob one."""
    vectors = np.array([[1.0, 0.0], [1.1, 0.0], [0.9, 0.1], [0.0, 1.0]], dtype=np.float32)
    return Gallery(("alice", "alice", "alice", "bob"), vectors)


def test_faces_are_named_by_the_nearest_centroid_within_the_rule():
    rule = DistanceRule(0.3, "centroid", 0.01, 0.01, 0.9, 100, "test", 2)
    predictions = predictions_from_distances(people_gallery(), np.array([[1.0, 0.05], [0.1, 0.9], [4.0, 6.0]]), rule)
    assert [p.label for p in predictions] == ["alice", "bob", "bob"]
    assert [p.unknown for p in predictions] == [False, False, True]
    assert predictions[0].distance == pytest.approx(np.hypot(0.0, 0.05 - 1 / 30), abs=1e-5)
    assert predictions[0].confidence == pytest.approx(1 - predictions[0].distance)
    assert predictions[2].confidence == 0.0  # far beyond 1: never negative


def test_an_empty_gallery_names_nobody():
    predictions = predictions_from_distances(Gallery.empty(2), np.zeros((2, 2), dtype=np.float32), DEFAULT_RULE)
    assert all(p.unknown and p.label == "" and p.distance is None for p in predictions)


def test_enrolments_add_people_and_hide_forgotten_ones():
    extra = Gallery(("carol",), np.array([[-1.0, 0.0]], dtype=np.float32))
    merged = Enrolments(extra, frozenset({"bob"})).applied_to(people_gallery())
    assert merged.people == ("alice", "carol") and merged.counts() == {"alice": 3, "carol": 1}
    with pytest.raises(GalleryError, match="cannot join"):
        Enrolments(Gallery(("dave",), np.zeros((1, 3), dtype=np.float32))).applied_to(people_gallery())


def test_the_calibrated_distance_accepts_at_most_the_target_share_of_strangers():
    rng = np.random.default_rng(0)
    strangers = rng.uniform(0.3, 1.0, 500)
    known = rng.uniform(0.0, 0.5, 200)
    rule = calibrate_distance(known, np.ones(200, dtype=bool), strangers, 0.01, "uniform", 10)
    assert (strangers <= rule.max_distance).sum() <= 5
    assert rule.false_accept <= 0.01 and rule.people == 10 and rule.method == "centroid"
    assert rule.known_accept == pytest.approx(((known <= rule.max_distance)).mean())
    with pytest.raises(NotEnoughStrangers):
        calibrate_distance(known, np.ones(200, dtype=bool), strangers[:99], 0.01, "few", 10)


@pytest.mark.parametrize("name", ["", "   ", "x" * 101, "bob\n", "a\x1b[31mred", "line\u2028break", "nul\x00"])
def test_names_that_could_forge_output_or_are_empty_are_refused(name: str):
    with pytest.raises(GalleryError):
        check_name(name)


def test_names_people_have_are_accepted():
    for name in ("Zoë", "O'Brien", "李小龙", "Jean-Luc Picard", "x" * 100):
        assert check_name(name) == name


def embedder_metadata(gallery: Gallery | None, rule: DistanceRule | None = None) -> ModelMetadata:
    spec = Preprocessing(width=150, height=150, value_range=(0.0, 255.0))
    return ModelMetadata(labels=(), output="embedding", preprocessing=spec, kind="embedder", embedding_size=2,
                         gallery=gallery, distance_rule=rule)  # fmt: skip


def test_an_embedder_metadata_document_reads_back():
    rule = DistanceRule(0.42, "centroid", 0.01, 0.008, 0.93, 1301, "lfw", 64)
    read_back = ModelMetadata.from_json(embedder_metadata(people_gallery(), rule).to_json())
    assert read_back.kind == "embedder" and read_back.labels == ("alice", "bob") and read_back.distance_rule == rule
    assert np.array_equal(read_back.gallery.vectors, people_gallery().vectors)
    assert read_back.output_units == 2


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda g: g.update(embeddings=g["embeddings"][:-4]), "bytes of embeddings"),
        (lambda g: g.update(embeddings="not base64!"), "malformed gallery"),
        (lambda g: g.update(names=[1, 2, 3, 4]), "list of strings"),
        (lambda g: g.update(names="abcd"), "list of strings"),
        (lambda g: g.update(dimensions=float("inf")), "malformed gallery"),
        (lambda g: g.update(names=["a\nb"] * 4), "control characters"),
        (lambda g: g.update(dimensions=10**9), "dimensions"),
        (lambda g: g.update(dimensions=3), "bytes of embeddings"),
        (lambda g: g.update(names=["x"] * 200_000), "at most"),
        (lambda g: g.update(embeddings=base64.b64encode(np.full(8, np.nan, "<f4").tobytes()).decode()), "finite"),
        (lambda g: g.pop("names"), "no 'names'"),
    ],
)
def test_a_hostile_gallery_is_refused_with_a_reason(change, message: str):
    document = embedder_metadata(people_gallery()).to_dict()
    change(document["gallery"])
    with pytest.raises(MetadataError, match=message):
        ModelMetadata.from_json(json.dumps(document))


@pytest.mark.parametrize(
    "key, value",
    [("max_distance", v) for v in (0, -1, float("nan"), float("inf"), 1e9, "far", None)]
    + [("people", float("inf")), ("strangers", "many"), ("method", "nearest-ish")],
)
def test_a_distance_rule_out_of_range_is_refused(key: str, value: object):
    document = embedder_metadata(people_gallery(), DEFAULT_RULE).to_dict()
    document["distance_rule"][key] = value
    with pytest.raises(MetadataError):
        ModelMetadata.from_json(json.dumps(document))


def test_an_embedder_whose_gallery_does_not_fit_its_embedding_is_refused():
    document = embedder_metadata(people_gallery()).to_dict()
    document["embedding_size"] = 128
    with pytest.raises(MetadataError, match="2 values, not 128"):
        ModelMetadata.from_json(json.dumps(document))
    for size in (0, 10**6, float("inf"), "big"):
        document["embedding_size"] = size
        with pytest.raises(MetadataError):
            ModelMetadata.from_json(json.dumps(document))


@settings(max_examples=300, derandomize=True, deadline=None)
@given(st.dictionaries(st.sampled_from(["names", "dimensions", "embeddings", "other"]),
                       st.one_of(st.none(), st.integers(), st.text(), st.lists(st.text()), st.floats())))  # fmt: skip
def test_any_gallery_document_is_read_or_refused_as_metadata(gallery: dict):
    document = embedder_metadata(people_gallery()).to_dict()
    document["gallery"] = gallery
    try:
        ModelMetadata.from_json(json.dumps(document))
    except MetadataError:
        pass
