"""The committed fixtures are what the current code would make: the classifier and the stand-in embedder (with and
without a gate), made again
by the recipes of tests/make_fixtures.py, agree with the committed files in everything the device tests rely on
(the metadata's schema, kind, labels, preprocessing, rule and self-test, the gallery's people, the model's input,
output and ops), and the held-out patches are lfw_subset's. Weights are not compared: training on another CPU may
end slightly differently. When one of these fails, run `python tests/make_fixtures.py` and commit the result.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeface import artefact
from helpers import FIXTURES, Classifier, run_edgeface
from make_fixtures import HELD_OUT_PER_LABEL, MadeModel, lfw_subset, make_embedder, make_gated_embedder

pytestmark = pytest.mark.workstation


def what_tests_rely_on(model: Path) -> dict:
    """The model's metadata document as stored (not as this edgeface would write it again), without the values
    training decides (numbers, paths, hashes), and its tensors and ops as `edgeface info` shows them."""
    with zipfile.ZipFile(model) as bundle:
        document = json.loads(bundle.read(artefact.MEMBER))
    run = run_edgeface("info", str(model), "--json")
    assert run.returncode == 0, run.stderr
    facts = json.loads(run.stdout)
    self_test = document.get("self_test") or {}
    return {
        "fields": sorted(document),
        **{key: document.get(key) for key in ("format", "schema_version", "kind", "labels", "output", "preprocessing",
                                               "embedding_size")},  # fmt: skip
        "converter": sorted(document["converter"]),
        "source": sorted(document["source"]),
        "rule fields": sorted(document.get("unknown_rule") or document.get("distance_rule") or {}),
        "gallery": artefact.read_file(model).gallery.counts() if "gallery" in document else None,
        "self-test samples": (len(self_test.get("inputs", ())), self_test.get("tolerance")),
        "tensors": [(facts[end]["shape"], facts[end]["dtype"]) for end in ("input", "output")],
        "ops": sorted(facts["ops"]),
        "gate": _gate_shape(document.get("gate"), model),
    }


def _gate_shape(gate: dict | None, model: Path) -> dict | None:
    """What the device tests rely on of a gate: its fields and crop, and its network's tensors."""
    if gate is None:
        return None
    from edgeface_convert.gate_convert import int8_errors

    network = artefact.read_gate_model(model.read_bytes())
    crop = artefact.read_file(model).gate.preprocessing
    scores = int8_errors(network, np.zeros((1, *crop.input_shape), np.float32))
    return {"fields": sorted(gate), "preprocessing": gate["preprocessing"], "keep": gate["keep"], "runs": len(scores)}


def test_the_committed_classifier_is_what_the_recipe_makes(classifier: Classifier, fresh_classifier: MadeModel):
    committed = what_tests_rely_on(classifier.tflite_file)
    assert committed["schema_version"] == artefact.SCHEMA_VERSION
    assert committed == what_tests_rely_on(fresh_classifier.tflite_file)


def test_the_committed_embedder_is_what_the_recipe_makes(tmp_path: Path):
    committed = what_tests_rely_on(FIXTURES / "embedder.tflite")
    assert committed["schema_version"] == artefact.SCHEMA_VERSION
    assert committed == what_tests_rely_on(make_embedder(tmp_path, lfw_subset()).tflite_file)


def test_the_committed_gated_embedder_is_what_the_recipe_makes(tmp_path: Path):
    committed = what_tests_rely_on(FIXTURES / "embedder-gated.tflite")
    assert committed["gate"] is not None
    assert committed == what_tests_rely_on(make_gated_embedder(tmp_path, lfw_subset()).tflite_file)


def test_the_held_out_patches_are_lfw_subsets(classifier: Classifier):
    patches = lfw_subset()
    expected = [patches[first + number] for first in (0, 100) for number in range(HELD_OUT_PER_LABEL)]
    committed = [cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) for path, _ in classifier.held_out]
    assert len(committed) == len(expected) and all(np.array_equal(a, b) for a, b in zip(committed, expected))
