"""The model artefact: a `.tflite` flatbuffer with edgeface's metadata carried inside it.

The metadata is one JSON document, `edgeface.json`, in a zip archive appended to the flatbuffer
(the same trick as TFLite's "associated files": the interpreter ignores bytes past the model, and
`unzip -l model.tflite` lists them). Reading it needs only the standard library.

Schema rules: `schema_version` counts additions; fields are added, never renamed or removed, so
a reader accepts newer documents and keeps fields it does not know in `extra`.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import lzma
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from edgeface.gallery import DistanceRule, Gallery, GalleryError, check_name
from edgeface.openset import UnknownRule
from edgeface.preprocess import Preprocessing, PreprocessingError

FORMAT = "edgeface-model"
SCHEMA_VERSION = 5  # 2 added unknown_rule, 3 self_test, 4 kind, embedding_size, gallery, distance_rule, 5 gate
MEMBER = "edgeface.json"
GATE_MEMBER = "gate.tflite"  # the face-quality gate's int8 network, when the model carries one
TFLITE_IDENTIFIER = b"TFL3"
KINDS = ("classifier", "embedder")
OUTPUTS = ("softmax", "sigmoid", "embedding")
_KNOWN_KEYS = {
    "format", "schema_version", "labels", "output", "preprocessing", "source", "converter", "unknown_rule", "self_test",
    "kind", "embedding_size", "gallery", "distance_rule", "gate",
}  # fmt: skip
# A model file is input like any other: these bound what its metadata may make the runtime hold or do.
MAX_METADATA_BYTES = 64 << 20  # a gallery of 10,000 faces of 128 values is about 7 MB of JSON
MAX_LABELS = 100_000
MAX_SELF_TEST_SAMPLES = 64
MAX_GATE_BYTES = 8 << 20  # a gate is a small autoencoder: tens of KB in int8
# A fixed timestamp keeps the archive, and so the model file, byte-for-byte reproducible.
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


class MetadataError(ValueError):
    """A model whose edgeface metadata is missing or malformed."""


@dataclass(frozen=True)
class SelfTest:
    """A few face crops and the outputs (probabilities, or embeddings) the int8 model gave them when it was made.

    A daemon checks them before it reports ready: a damaged file, or a runtime that computes
    differently on this machine, fails loudly instead of logging wrong names for months.
    inputs: base64 of each crop's uint8 pixels, in the model's input shape.
    tolerance: the largest difference in any output that still passes.
    """

    inputs: tuple[str, ...]
    probabilities: tuple[tuple[float, ...], ...]
    tolerance: float

    def to_dict(self) -> dict:
        return {"inputs": list(self.inputs), "probabilities": [list(p) for p in self.probabilities],
                "tolerance": self.tolerance}  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict) -> SelfTest:
        """The self-test as stored; MetadataError unless it is well-formed: at most MAX_SELF_TEST_SAMPLES text
        samples, one row of finite numbers each, and a tolerance from 0 to 1."""
        inputs, rows, tolerance = data["inputs"], data["probabilities"], data["tolerance"]
        if not isinstance(inputs, list) or not 1 <= len(inputs) <= MAX_SELF_TEST_SAMPLES:
            raise MetadataError(f"the self-test must hold 1 to {MAX_SELF_TEST_SAMPLES} samples")
        if not all(isinstance(item, str) for item in inputs):
            raise MetadataError("the self-test's samples must be base64 text")
        if not isinstance(rows, list) or len(rows) != len(inputs) or not all(isinstance(row, list) for row in rows):
            raise MetadataError("the self-test needs one row of outputs per sample")
        probabilities = tuple(tuple(_finite(value, "a self-test output") for value in row) for row in rows)
        if not _number(tolerance) or not 0 <= tolerance <= 1:
            raise MetadataError(f"the self-test's tolerance must be a number from 0 to 1, not {tolerance!r}")
        return cls(tuple(inputs), probabilities, float(tolerance))


@dataclass(frozen=True)
class GateSpec:
    """The face-quality gate a model carries: an autoencoder whose reconstruction error says how little a crop looks
    like the faces it learned. A crop whose error is above `threshold` is rejected before it is named.

    preprocessing: the gate's own crop. Its detector, alignment and margin are the model's (convert checks); its
        colour, size and value range are the gate's, so a small gate can serve a large model.
    threshold: the largest mean squared error (pixels scaled to 0..1) that passes.
    keep: the share of held-out real faces the threshold was calibrated to keep.
    calibration_faces: how many held-out faces set the threshold.
    correlation: how closely the int8 gate's errors follow the float gate's on those faces (convert's check).
    """

    preprocessing: Preprocessing
    threshold: float
    keep: float
    calibration_faces: int
    correlation: float

    def __post_init__(self) -> None:
        checks = [
            (_number(self.threshold) and 0 < self.threshold <= 1, "the gate's threshold must be a number in (0, 1]"),
            (_number(self.keep) and 0.5 <= self.keep <= 1, "the gate's keep share must be a number from 0.5 to 1"),
            (isinstance(self.calibration_faces, int) and not isinstance(self.calibration_faces, bool)
             and 1 <= self.calibration_faces <= 10_000_000, "the gate's calibration_faces must be 1..10,000,000"),
            (_number(self.correlation) and -1 <= self.correlation <= 1, "the gate's correlation must be from -1 to 1"),
        ]  # fmt: skip
        for ok, message in checks:
            if not ok:
                raise MetadataError(message)

    def to_dict(self) -> dict:
        return {"preprocessing": self.preprocessing.to_dict(), "threshold": self.threshold, "keep": self.keep,
                "calibration_faces": self.calibration_faces, "correlation": self.correlation}  # fmt: skip

    @classmethod
    def from_dict(cls, data: object) -> GateSpec:
        if not isinstance(data, dict):
            raise MetadataError("the gate must be an object")
        return cls(Preprocessing.from_dict(data["preprocessing"]), data["threshold"], data["keep"],
                   data["calibration_faces"], data["correlation"])  # fmt: skip


@dataclass(frozen=True)
class ModelMetadata:
    """What the runtime needs besides the weights.

    kind: "classifier" (outputs are label probabilities) or "embedder" (outputs are an embedding
        of `embedding_size` values, named by the nearest person of `gallery`).
    labels: class names in output order. With output "sigmoid" there are exactly two, and the
        single output unit is the probability of labels[1]. An embedder's are its gallery's people.
    source: facts about the model this one was converted from (e.g. "sha256", "file").
    converter: versions of the tools that made the artefact.
    unknown_rule: a classifier's rule for "unknown" instead of the top label; None if never calibrated.
    gallery, distance_rule: an embedder's known people and its rule for "unknown".
    self_test: sample inputs and outputs checked before a daemon starts; None in older models.
    gate: the face-quality gate whose network is the file's GATE_MEMBER; None when the model has none.
    extra: fields written by a newer edgeface, kept unread.
    """

    labels: tuple[str, ...]
    output: str
    preprocessing: Preprocessing
    source: dict = field(default_factory=dict)
    converter: dict = field(default_factory=dict)
    unknown_rule: UnknownRule | None = None
    self_test: SelfTest | None = None
    kind: str = "classifier"
    embedding_size: int = 0
    gallery: Gallery | None = None
    distance_rule: DistanceRule | None = None
    gate: GateSpec | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise MetadataError(f"kind must be one of {KINDS}, not {self.kind!r}")
        if self.kind == "embedder":
            self._check_embedder()
            return
        if self.output not in OUTPUTS[:2]:
            raise MetadataError(f"output must be one of {OUTPUTS}, not {self.output!r}")
        if len(self.labels) < 2 or len(set(self.labels)) != len(self.labels):
            raise MetadataError("labels must be at least two distinct names")
        if self.output == "sigmoid" and len(self.labels) != 2:
            raise MetadataError("a sigmoid output needs exactly two labels")

    def _check_embedder(self) -> None:
        if self.output != "embedding":
            raise MetadataError("an embedder's output must be 'embedding'")
        if not 1 <= self.embedding_size <= 4096:
            raise MetadataError("an embedder's embedding_size must be 1..4096")
        if self.gallery is not None and self.gallery.dimensions != self.embedding_size:
            raise MetadataError(f"the gallery's embeddings have {self.gallery.dimensions} values, not {self.embedding_size}")
        object.__setattr__(self, "labels", self.gallery.people if self.gallery else ())

    @property
    def output_units(self) -> int:
        """How many numbers the model outputs per face."""
        if self.kind == "embedder":
            return self.embedding_size
        return 1 if self.output == "sigmoid" else len(self.labels)

    def to_dict(self) -> dict:
        document = dict(self.extra)
        document.update(
            format=FORMAT,
            schema_version=SCHEMA_VERSION,
            labels=list(self.labels),
            output=self.output,
            preprocessing=self.preprocessing.to_dict(),
            source=self.source,
            converter=self.converter,
        )
        if self.unknown_rule is not None:
            document["unknown_rule"] = self.unknown_rule.to_dict()
        if self.self_test is not None:
            document["self_test"] = self.self_test.to_dict()
        if self.gate is not None:
            document["gate"] = self.gate.to_dict()
        if self.kind == "embedder":
            document.update(kind=self.kind, embedding_size=self.embedding_size)
            if self.gallery is not None:
                document["gallery"] = self.gallery.to_dict()
            if self.distance_rule is not None:
                document["distance_rule"] = self.distance_rule.to_dict()
        return document

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes) -> ModelMetadata:
        try:
            document = json.loads(text)
        except (ValueError, RecursionError) as bad:  # UnicodeDecodeError is a ValueError; deep nesting recurses
            raise MetadataError(f"{MEMBER} is not valid JSON: {bad}") from None
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            raise MetadataError(f"{MEMBER} is not an {FORMAT} document")
        version = document.get("schema_version")
        if not isinstance(version, int) or version < 1:
            raise MetadataError(f"{MEMBER} has no valid schema_version")
        try:
            labels = _labels(document["labels"])
            for name in ("source", "converter"):
                if not isinstance(document.get(name, {}), dict):
                    raise MetadataError(f"{name} must be an object")
            if not isinstance(document.get("embedding_size", 0), int):
                raise MetadataError("embedding_size must be a whole number")
            return cls(
                labels=labels,
                output=str(document["output"]),
                preprocessing=Preprocessing.from_dict(document["preprocessing"]),
                source=dict(document.get("source", {})),
                converter=dict(document.get("converter", {})),
                unknown_rule=UnknownRule.from_dict(document["unknown_rule"]) if document.get("unknown_rule") else None,
                self_test=SelfTest.from_dict(document["self_test"]) if document.get("self_test") else None,
                kind=str(document.get("kind", "classifier")),
                embedding_size=int(document.get("embedding_size", 0)),
                gallery=Gallery.from_dict(document["gallery"]) if document.get("gallery") else None,
                distance_rule=DistanceRule.from_dict(document["distance_rule"]) if document.get("distance_rule") else None,
                gate=GateSpec.from_dict(document["gate"]) if document.get("gate") else None,
                extra={key: value for key, value in document.items() if key not in _KNOWN_KEYS},
            )
        except KeyError as missing:
            raise MetadataError(f"{MEMBER} has no {missing.args[0]!r}") from None
        except (PreprocessingError, GalleryError, TypeError, ValueError, AttributeError, OverflowError) as bad:
            raise MetadataError(f"{MEMBER}: {bad}") from None


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _finite(value: object, what: str) -> float:
    if not _number(value):
        raise MetadataError(f"{what} must be a finite number, not {value!r}")
    return float(value)


def _labels(value: object) -> tuple[str, ...]:
    """The labels as stored: a list of at most MAX_LABELS names, each a name a person could have (see
    `check_name`: 1 to MAX_NAME characters, no control characters)."""
    if not isinstance(value, list) or len(value) > MAX_LABELS:
        raise MetadataError(f"labels must be a list of at most {MAX_LABELS} names")
    try:
        return tuple(check_name(label) for label in value)
    except GalleryError as bad:
        raise MetadataError(f"a label is not a usable name ({bad}): {str(value)[:80]!r}") from None


def embed(flatbuffer: bytes, metadata: ModelMetadata, gate_model: bytes | None = None) -> bytes:
    """The model file: `flatbuffer` with `metadata` (and the gate's network, when `metadata` has a gate) appended as
    a zip archive."""
    if flatbuffer[4:8] != TFLITE_IDENTIFIER:
        raise ValueError("not a TFLite flatbuffer")
    if zipfile.is_zipfile(io.BytesIO(flatbuffer)):
        raise ValueError("the flatbuffer already carries appended files")
    if (gate_model is None) != (metadata.gate is None):
        raise ValueError("a gate needs both its network and its metadata")
    if gate_model is not None and (gate_model[4:8] != TFLITE_IDENTIFIER or len(gate_model) > MAX_GATE_BYTES):
        raise ValueError(f"the gate is not a TFLite flatbuffer of at most {MAX_GATE_BYTES >> 20} MiB")
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as bundle:
        members = [(MEMBER, metadata.to_json().encode())] + ([(GATE_MEMBER, gate_model)] if gate_model else [])
        for name, content in members:
            info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            bundle.writestr(info, content)
    return flatbuffer + archive.getvalue()


def read(model: bytes, name: str = "model") -> ModelMetadata:
    """The metadata inside a model file's bytes; MetadataError says what is wrong, naming `name`."""
    if model[4:8] != TFLITE_IDENTIFIER:
        raise MetadataError(f"{name} is not a TFLite model")
    text = _member(model, name, MEMBER, MAX_METADATA_BYTES)
    try:
        return ModelMetadata.from_json(text)
    except MetadataError as bad:
        raise MetadataError(f"{name}: {bad}") from None


def read_gate_model(model: bytes, name: str = "model") -> bytes:
    """The gate's int8 network inside a model file whose metadata (`read`) has a gate; MetadataError otherwise."""
    network = _member(model, name, GATE_MEMBER, MAX_GATE_BYTES)
    if network[4:8] != TFLITE_IDENTIFIER:
        raise MetadataError(f"{name}: its {GATE_MEMBER} is not a TFLite model")
    return network


def _member(model: bytes, name: str, member: str, max_bytes: int) -> bytes:
    """The bytes of an appended member. One declaring more than `max_bytes` is refused before any of it is inflated,
    and zipfile inflates no more than a member declares (one that inflates further fails its check): a small hostile
    file cannot make the runtime inflate and hold more."""
    try:
        with zipfile.ZipFile(io.BytesIO(model)) as bundle:
            info = bundle.getinfo(member)
            if info.file_size <= max_bytes:
                return bundle.read(info)
    # A damaged or hostile archive can fail in many ways (encrypted or unknown compression, bad
    # offsets, names that are not UTF-8); each means the same thing here.
    except (zipfile.BadZipFile, KeyError, zlib.error, lzma.LZMAError, EOFError, OSError, RuntimeError, ValueError,
            NotImplementedError):  # fmt: skip
        what = "edgeface metadata (labels, preprocessing)" if member == MEMBER else f"readable {member}"
        raise MetadataError(f"{name} carries no {what}; make the model with `edgeface convert`") from None
    raise MetadataError(f"{name}: its {member} is larger than {max_bytes >> 20} MiB")


def read_file(path: str | Path) -> ModelMetadata:
    """The metadata inside the model file at `path`."""
    return read(Path(path).read_bytes(), name=str(path))


def network_sha256(model: bytes) -> str:
    """sha256 of the flatbuffer alone, without the metadata appended to it: the identity of the
    network itself, to which enrolments are tied (a model's gallery or rule may change, its
    embeddings do not). `model` must be a file that `read` accepted."""
    with zipfile.ZipFile(io.BytesIO(model)) as bundle:
        start = min(info.header_offset for info in bundle.infolist())  # zipfile counts from the file's start
    return hashlib.sha256(model[:start]).hexdigest()
