"""Reading inputs: identity by absolute path and content hash, decoding, and clear errors."""

import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeface.images import ImageError, decode, read_input, reduction
from edgeface.paths import is_image_name


def test_identity_is_the_absolute_path_and_the_content_hash(astronaut_file: Path, monkeypatch):
    monkeypatch.chdir(astronaut_file.parent)
    source = read_input("astronaut.png")
    assert source.path == str(astronaut_file)
    assert source.sha256 == hashlib.sha256(astronaut_file.read_bytes()).hexdigest()
    assert source.size == astronaut_file.stat().st_size


def test_decodes_png_and_jpeg_to_bgr(astronaut_file: Path, tmp_path: Path):
    jpeg = tmp_path / "astronaut.JPG"
    cv2.imwrite(str(jpeg), cv2.imread(str(astronaut_file)))
    for path in (astronaut_file, jpeg):
        pixels = decode(path.read_bytes())
        assert pixels.shape == (512, 512, 3) and pixels.dtype == np.uint8


def test_grey_images_come_back_with_three_channels(tmp_path: Path):
    path = tmp_path / "grey.pgm"
    cv2.imwrite(str(path), np.full((5, 7), 9, dtype=np.uint8))
    assert decode(path.read_bytes()).shape == (5, 7, 3)


@pytest.mark.parametrize(
    "content, message",
    [(b"", "empty"), (b"this is text, not a photo", "not a decodable image")],
)
def test_undecodable_content_is_an_image_error(content, message):
    with pytest.raises(ImageError, match=message):
        decode(content)


def test_a_truncated_jpeg_is_an_image_error(astronaut_file: Path):
    ok, encoded = cv2.imencode(".jpg", cv2.imread(str(astronaut_file)))
    with pytest.raises(ImageError):
        decode(encoded.tobytes()[:200])


def test_a_missing_file_is_an_image_error(tmp_path: Path):
    with pytest.raises(ImageError, match="cannot read"):
        read_input(tmp_path / "gone.jpg")


@pytest.mark.parametrize("name", ["a.jpg", "B.JPEG", "c.Png", "d.webp", "e.TIFF", "f.pgm"])
def test_image_names_in_any_case(name):
    assert is_image_name(name)


def test_other_names_are_not_images():
    assert not is_image_name("notes.txt") and not is_image_name("model.tflite")


def test_a_png_chunk_that_claims_more_than_the_file_is_refused_before_decoding():
    """One changed byte made the first IDAT claim 2 GB, which OpenCV allocated before refusing the file."""
    encoded = bytearray(cv2.imencode(".png", np.zeros((8, 8), np.uint8))[1].tobytes())
    encoded[33] = 0x7F  # the high byte of the IDAT chunk's length
    with pytest.raises(ImageError, match="a chunk says it is longer than the file"):
        decode(bytes(encoded))


def test_a_jpeg_is_decoded_as_small_as_it_will_be_looked_at_and_other_formats_whole():
    pixels = np.full((400, 600, 3), 90, np.uint8)
    jpeg, png = (cv2.imencode(extension, pixels)[1].tobytes() for extension in (".jpg", ".png"))
    assert [reduction(jpeg, scale) for scale in (1.0, 0.6, 0.5, 0.3, 0.25, 0.2, 0.1, 0.01)] == [1, 1, 2, 2, 4, 4, 8, 8]
    assert reduction(png, 0.1) == 1
    assert decode(jpeg, 4).shape == (100, 150, 3) and decode(png, 4).shape == (400, 600, 3)
