"""Fuzzing the two parsers that read untrusted bytes: the image reader (`image_size`, `decode`) and
the model's metadata (`artefact.read`). Only ImageError and MetadataError may come out of them.

The default run tries 100 examples of each; the slow run (`pytest -m slow`) 2000. Hypothesis runs
derandomized (the same examples on every run, so CI never fails on an example it had not seen before; set
`derandomize=False` locally to explore further) and without an example database (its `.hypothesis/` cache
git-ignores itself). Its deadline fails an example that takes seconds where milliseconds are normal; but a
deadline is only checked once an example returns, so a watchdog also ends the run, printing every thread's
stack, should an example never return.
"""

from __future__ import annotations

import copy
import faulthandler
import io
import json
import zipfile
from collections.abc import Callable, Iterator
from datetime import timedelta

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeface import artefact
from edgeface.artefact import MEMBER, MetadataError, ModelMetadata
from edgeface.images import MAX_PIXELS, ImageError, decode, image_size
from helpers import FIXTURES, Classifier, extended_webp, flatbuffer_of, jpeg_with_orientation

HANG_SECONDS = 300  # far above any test here: only a real hang reaches it
FUZZ = settings(
    deadline=timedelta(seconds=2),
    derandomize=True,
    database=None,
    report_multiple_bugs=False,  # the first failure, shrunk, as itself (not an ExceptionGroup)
    suppress_health_check=[HealthCheck.too_slow],
)


EXAMPLES = pytest.mark.parametrize("examples", [100, pytest.param(2000, marks=pytest.mark.slow)])


def fuzz(examples: int, strategy: st.SearchStrategy, check: Callable[[object], None]) -> None:
    """Runs `check` on `examples` values drawn from `strategy`, with the FUZZ settings."""
    settings(FUZZ, max_examples=examples)(given(strategy)(check))()


@pytest.fixture(autouse=True)
def hang_watchdog() -> Iterator[None]:
    """Ends the whole run with every thread's stack if a test hangs (even inside OpenCV's C++)."""
    faulthandler.dump_traceback_later(HANG_SECONDS, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


def _real_images() -> list[bytes]:
    """Small valid images in every accepted format and variant, for mutation; the BigTIFF is committed, since
    OpenCV cannot write one."""
    bgr = np.random.default_rng(0).integers(0, 255, (9, 12, 3), np.uint8)
    extensions = (".jpg", ".png", ".bmp", ".webp", ".tiff", ".ppm")
    return [cv2.imencode(extension, bgr)[1].tobytes() for extension in extensions] + [
        cv2.imencode(".pgm", bgr[..., 0])[1].tobytes(),
        cv2.imencode(".png", bgr.astype(np.uint16) * 257)[1].tobytes(),
        cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes(),
        jpeg_with_orientation(bgr, 6),
        cv2.imencode(".webp", bgr, [cv2.IMWRITE_WEBP_QUALITY, 101])[1].tobytes(),  # lossless: VP8L
        extended_webp(np.dstack([bgr, bgr[..., :1]])),
        (FIXTURES / "bigtiff.tif").read_bytes(),
        cv2.imencode(".tiff", bgr, [cv2.IMWRITE_TIFF_COMPRESSION, 5])[1].tobytes(),  # LZW
    ]


REAL_IMAGES = _real_images()
SIGNATURES = [
    b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR", b"BM", b"II*\0", b"MM\0*", b"II+\0", b"MM\0+", b"P5 ", b"P1\n",
    b"RIFF\0\0\0\0WEBPVP8 ", b"RIFF\0\0\0\0WEBPVP8L", b"RIFF\0\0\0\0WEBPVP8X", b"GIF89a",
]  # fmt: skip


@st.composite
def mutated_images(draw: st.DrawFn) -> bytes:
    """A real image with a few bytes changed (mostly in the header), maybe cut, maybe with bytes appended."""
    data = bytearray(draw(st.sampled_from(REAL_IMAGES)))
    for _ in range(draw(st.integers(0, 6))):
        position = draw(st.one_of(st.integers(0, min(63, len(data) - 1)), st.integers(0, len(data) - 1)))
        data[position] = draw(st.integers(0, 255))
    cut = draw(st.integers(0, len(data)))
    return bytes(data[: cut if draw(st.booleans()) else len(data)]) + draw(st.binary(max_size=32))


IMAGE_BYTES = st.one_of(
    st.binary(max_size=2048),
    st.builds(bytes.__add__, st.sampled_from(SIGNATURES), st.binary(max_size=512)),
    mutated_images(),
)


def _decode_or_refuse(content: bytes) -> None:
    """Decodes `content`; an ImageError is fine, anything else fails the test."""
    try:
        pixels = decode(content)
    except ImageError:
        return
    assert pixels.dtype == np.uint8 and pixels.ndim == 3 and pixels.shape[2] == 3
    assert pixels.shape[0] * pixels.shape[1] <= MAX_PIXELS


@EXAMPLES
def test_image_size_gives_a_size_or_none(examples: int):
    """Two positive ints or None: never an exception, whatever the bytes."""

    def size_or_none(content: bytes) -> None:
        size = image_size(content)
        assert size is None or (len(size) == 2 and all(isinstance(side, int) and side > 0 for side in size))

    fuzz(examples, IMAGE_BYTES, size_or_none)


@EXAMPLES
def test_decode_gives_pixels_or_an_image_error(examples: int):
    fuzz(examples, IMAGE_BYTES, _decode_or_refuse)


# -- the model's metadata ---------------------------------------------------------------------------


class ModelParts:
    """A real model's flatbuffer (without its appended archive) and its metadata as a document.

    Not a dataclass: hypothesis prints a dataclass' fields in its reports, here 1 MB of them.
    """

    def __init__(self, flatbuffer: bytes, document: dict) -> None:
        self.flatbuffer, self.document = flatbuffer, document

    def __repr__(self) -> str:
        return f"ModelParts(<{len(self.flatbuffer):,}-byte flatbuffer>, <metadata document>)"


@pytest.fixture(scope="module")
def model_parts(classifier: Classifier) -> ModelParts:
    """The classifier, split into its flatbuffer and its metadata."""
    return ModelParts(flatbuffer_of(classifier.tflite_file), artefact.read_file(classifier.tflite_file).to_dict())


# The metadata archive's header bytes (local file header and central directory, with the member's
# name, and the end record), where most of the parsing happens: flips are aimed there half the time.
LOCAL_HEADER = 30 + len(MEMBER)
CENTRAL_DIRECTORY = 46 + len(MEMBER) + 22


def _archive(text: bytes) -> bytes:
    """A zip archive holding `text` as the metadata member, as `artefact.embed` writes it."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr(MEMBER, text)
    return buffer.getvalue()


def _read_or_refuse(model: bytes) -> None:
    """Reads the metadata of `model`; a MetadataError is fine, anything else fails the test."""
    try:
        metadata = artefact.read(model, "fuzzed.tflite")
    except MetadataError:
        return
    assert isinstance(metadata, ModelMetadata) and len(metadata.labels) >= 2


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


def _key_paths(document: object, prefix: tuple = ()) -> list[tuple]:
    """The path (keys and list indexes) to every value inside `document`."""
    if isinstance(document, dict):
        items = document.items()
    elif isinstance(document, list):
        items = enumerate(document)
    else:
        return []
    paths = []
    for key, value in items:
        paths.append((*prefix, key))
        paths.extend(_key_paths(value, (*prefix, key)))
    return paths


def _mutated_document(data: st.DataObject, real: dict) -> dict:
    """`real` with one to three values replaced by random JSON, or removed."""
    document = copy.deepcopy(real)
    for _ in range(data.draw(st.integers(1, 3))):
        paths = _key_paths(document)
        *parents, last = data.draw(st.sampled_from(paths))
        container = document
        for key in parents:
            container = container[key]
        if data.draw(st.booleans()):
            container[last] = data.draw(JSON_VALUES)
        elif isinstance(container, dict):
            del container[last]
        else:
            container.pop(last)
    return document


@EXAMPLES
def test_random_bytes_are_not_a_model(examples: int):
    def refused(content: bytes) -> None:
        _read_or_refuse(content)
        _read_or_refuse(content[:4] + b"TFL3" + content[8:])

    fuzz(examples, st.binary(max_size=2048), refused)


@EXAMPLES
def test_a_damaged_metadata_archive_is_a_metadata_error(model_parts: ModelParts, examples: int):
    flatbuffer, real = model_parts.flatbuffer, model_parts.document

    def damaged(data: st.DataObject) -> None:
        archive = bytearray(_archive(json.dumps(real).encode()))
        end = len(archive)
        headers = st.one_of(st.integers(0, LOCAL_HEADER - 1), st.integers(end - CENTRAL_DIRECTORY, end - 1))
        for _ in range(data.draw(st.integers(1, 4))):
            archive[data.draw(st.one_of(headers, st.integers(0, end - 1)))] = data.draw(st.integers(0, 255))
        cut = data.draw(st.integers(1, end)) if data.draw(st.booleans()) else end
        _read_or_refuse(flatbuffer + bytes(archive[:cut]))

    fuzz(examples, st.data(), damaged)


def _damaged(archive: bytes, damage: str) -> bytes:
    """`archive` (one member, no comment) with its central directory entry or end record damaged."""
    data = bytearray(archive)
    directory, end = archive.rindex(b"PK\x01\x02"), len(archive) - 22
    if damage == "encrypted":
        data[directory + 8] |= 0x01
    elif damage == "unknown compression":
        data[directory + 10 : directory + 12] = (99).to_bytes(2, "little")
    elif damage == "bzip2 over deflate data":
        data[directory + 10 : directory + 12] = (12).to_bytes(2, "little")
    elif damage == "name not UTF-8 though flagged":
        data[directory + 9] |= 0x08
        data[directory + 46] = 0xFF
    elif damage == "directory offset past the start":
        data[end + 16 : end + 20] = (2**31 - 1).to_bytes(4, "little")
    return bytes(data)


@pytest.mark.parametrize(
    "damage",
    ["encrypted", "unknown compression", "bzip2 over deflate data", "name not UTF-8 though flagged",
     "directory offset past the start", "nested 100,000 deep"],
)  # fmt: skip
def test_known_damage_is_a_metadata_error(model_parts: ModelParts, damage: str):
    flatbuffer, real = model_parts.flatbuffer, model_parts.document
    if damage == "nested 100,000 deep":
        archive = _archive(b"[" * 100_000)
    else:
        archive = _damaged(_archive(json.dumps(real).encode()), damage)
    with pytest.raises(MetadataError):
        artefact.read(flatbuffer + archive)


@EXAMPLES
def test_a_damaged_metadata_document_is_a_metadata_error(model_parts: ModelParts, examples: int):
    flatbuffer, real = model_parts.flatbuffer, model_parts.document

    def damaged(data: st.DataObject) -> None:
        kind = data.draw(st.sampled_from(["mutated", "any JSON", "any bytes"]))
        if kind == "mutated":
            text = json.dumps(_mutated_document(data, real)).encode()
        elif kind == "any JSON":
            text = json.dumps(data.draw(JSON_VALUES)).encode()
        else:
            text = data.draw(st.binary(max_size=256))
        _read_or_refuse(flatbuffer + _archive(text))

    fuzz(examples, st.data(), damaged)
