"""Reading input files: their identity (absolute path + content hash) and their pixels.

The identity decides what the log treats as "the same input": the same bytes at the same path.
A file edited in place is a new input; the same photo copied elsewhere is another input too.

Every bad input ends as one ImageError, whose message is recorded, and never as a crash, a hang or
a memory blow-up that would take the daemon down (and, the file still pending, down again after
each restart). So before anything is decoded:

- only regular files are read (a named pipe called `x.jpg` would block the reader for ever, and
  `/dev/zero` would never end), and only up to MAX_FILE_BYTES;
- the width and height are read from the header, and an image above MAX_PIXELS is refused. This
  is the decompression-bomb guard: a 20000×20000 black PNG is a 400 KB file that OpenCV (whose own
  limit is 2^30 pixels) decodes into 1.2 GB, 2.3 GB at its peak;
- content that is none of JPEG, PNG, BMP, WebP, TIFF and PNM is refused, whatever its name: OpenCV
  recognises formats by their first bytes, and would otherwise decode GIF, Sun raster, HDR, PFM,
  PAM, JPEG 2000 or AVIF content named `.jpg` with no size check (a 35-byte GIF that claims a
  20000×20000 screen makes it allocate 2.7 GB);
- a JPEG or PNG without its end marker is refused as truncated, not decoded as a partial picture.

Tiny images, even 1×1, are decoded like any other: the detector's minimum face size decides, so
the Haar cascade finds no face in them, and a model whose detector is `none` classifies them whole.
"""

from __future__ import annotations

import errno
import hashlib
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edgeface.paths import FileRefused, absolute, read_regular_file

FORMATS = "JPEG, PNG, BMP, WebP, TIFF or PNM"

# Both limits come from the systemd units' MemoryMax=300M: a file that cannot be decoded within it
# gets the daemon killed, and killed again after every restart while the file is still pending.
# Before it reads a file the daemon holds about 72 MB (measured: model, detector, LiteRT, SQLite);
# then it holds the file's bytes, and decoding peaks at 6.3 bytes a pixel for JPEG, PNG, TIFF, BMP
# and PNM, 7.3 for WebP and 9.3 for WebP with alpha (measured on OpenCV 4.14: the decoded image,
# the copy that OpenCV's Python binding makes of it, the decoder's buffers). Worst case: 72 MB +
# 32 MiB + 20 MP × 9.3 B = 292 MB. (A 50 MP JPEG peaked at 368 MB.) 20 MP still takes 12 MP phones
# and Pi cameras, 4K frames and 20 MP (5472×3648) cameras.
MAX_PIXELS = 20_000_000
MAX_FILE_BYTES = 32 * 2**20


class ImageError(Exception):
    """An input that cannot be read or decoded; the message is recorded in the log."""


@dataclass(frozen=True)
class InputFile:
    """One input's identity and bytes.

    path: absolute, normalised, symlinks not resolved (the name the user or the folder gave).
    sha256: hex digest of the content.
    """

    path: str
    content: bytes
    sha256: str

    @property
    def size(self) -> int:
        return len(self.content)


def read_input(path: str | Path) -> InputFile:
    """The file's bytes and identity; ImageError when it cannot be read, is not a regular file,
    or is larger than MAX_FILE_BYTES."""
    try:
        content = read_regular_file(path, MAX_FILE_BYTES)
    except FileRefused as refused:
        if refused.errno == errno.EFBIG:
            raise ImageError(f"the file is {refused.strerror} (reading it could exhaust the memory)") from None
        raise ImageError(f"cannot read: {refused.strerror}") from None
    except OSError as error:
        raise ImageError(f"cannot read: {error.strerror or error}") from None
    return InputFile(absolute(path), content, hashlib.sha256(content).hexdigest())


def decode(content: bytes, reduced_by: int = 1) -> np.ndarray:
    """Pixels of an encoded image as H×W×3 uint8 BGR, EXIF rotation applied; ImageError if not an image.

    OpenCV (IMREAD_COLOR) turns grey, 16-bit, alpha and CMYK images into 8-bit BGR. Nothing is
    decoded before the header has given a size within MAX_PIXELS (see the module's docstring).
    `reduced_by` (see `reduction`) decodes a JPEG at 1/2, 1/4 or 1/8 of its size, which libjpeg does
    while it decodes and much faster than decoding it whole (benchmarks/large_photos.py); other formats
    ignore it.
    """
    if not content:
        raise ImageError("empty file")
    size = image_size(content)
    if size is None:  # a damaged header of a known format is what OpenCV would have refused anyway
        raise ImageError("not a decodable image" + ("" if content.startswith(_SIGNATURES) else f": not {FORMATS}"))
    width, height = size
    if width * height > MAX_PIXELS:
        raise ImageError(
            f"{width}×{height} pixels is above the limit of {MAX_PIXELS // 1_000_000} megapixels "
            "(decoding it could exhaust the memory)"
        )
    if content.startswith(_JPEG) and content.rfind(b"\xff\xd9") < _jpeg_frame(content)[2]:
        raise ImageError("truncated JPEG: the end-of-image marker is missing")
    if content.startswith(_PNG) and b"\0\0\0\0IEND" not in content:
        raise ImageError("truncated PNG: the IEND chunk is missing")
    if content.startswith(_PNG) and not _png_chunks_fit(content):
        raise ImageError("damaged PNG: a chunk says it is longer than the file")
    try:
        flag = _REDUCED_FLAGS.get(reduced_by, cv2.IMREAD_COLOR) if content.startswith(_JPEG) else cv2.IMREAD_COLOR
        pixels = cv2.imdecode(np.frombuffer(content, dtype=np.uint8), flag)
    except cv2.error as error:
        raise ImageError(f"not a decodable image: {error.err or 'OpenCV failed'}") from None
    if pixels is None:
        raise ImageError("not a decodable image")
    return pixels


def reduction(content: bytes, scale: float) -> int:
    """How many times smaller than its size (1, 2, 4 or 8) to decode an image that will be looked at `scale`
    times its size at most: the largest reduction a JPEG decoder can make that keeps that much detail."""
    if not content.startswith(_JPEG):
        return 1
    return next((factor for factor in sorted(_REDUCED_FLAGS, reverse=True) if factor * scale <= 1.0), 1)


def image_size(content: bytes) -> tuple[int, int] | None:
    """(width, height) read from the header of a JPEG, PNG, BMP, WebP, TIFF or PNM image, without
    decoding it; None when `content` is none of these, or its header is damaged or cut short.

    Only reads within `content` (through struct's bounds checks), and takes time linear in its
    length at worst.
    """
    for signatures, reader in _READERS:
        if content.startswith(signatures):
            try:
                size = reader(content)
            except (struct.error, IndexError, OverflowError):  # cut short, or an offset beyond any buffer
                return None
            return size if size and size[0] > 0 and size[1] > 0 else None
    return None


_JPEG = b"\xff\xd8"
_REDUCED_FLAGS = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}
REDUCTIONS = (1, *_REDUCED_FLAGS)  # the sizes a JPEG decodes at: whole, or 2, 4 or 8 times smaller
_PNG = b"\x89PNG\r\n\x1a\n"
# Start-of-frame markers: baseline, extended, progressive, lossless, hierarchical, arithmetic.
_SOF_MARKERS = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_STANDALONE_MARKERS = frozenset({0x01, *range(0xD0, 0xD8)})  # TEM and RST0–7 carry no length


def _jpeg_frame(content: bytes) -> tuple[int, int, int]:
    """(width, height, offset) of a JPEG's first frame header, found by walking the markers from
    the start and skipping each segment by its length (so an EXIF thumbnail is skipped whole).

    Bytes other than 0xFF where a marker should be are skipped, as libjpeg does (with a warning).
    Every step moves forward; IndexError when there is no frame header before the scan or the end.
    """
    position = 2
    while True:
        marker = content[position + 1]
        if content[position] != 0xFF:
            position = content.find(b"\xff", position)
            if position < 0:
                raise IndexError("no marker")
        elif marker == 0xFF:  # a fill byte before the marker
            position += 1
        elif marker in _STANDALONE_MARKERS:
            position += 2
        elif marker in (0xD8, 0xD9, 0xDA):  # SOI again, EOI or start of scan: no frame header before them
            raise IndexError("no frame header")
        elif marker in _SOF_MARKERS:
            height, width = struct.unpack_from(">HH", content, position + 5)
            return width, height, position
        else:
            (length,) = struct.unpack_from(">H", content, position + 2)
            position += 2 + max(length, 2)


def _jpeg_size(content: bytes) -> tuple[int, int]:
    """From the first frame header (SOF)."""
    width, height, _ = _jpeg_frame(content)
    return width, height


def _png_chunks_fit(content: bytes) -> bool:
    """Whether every chunk up to IEND lies within the file. A chunk that claims more (a single changed byte can
    claim 2 GB) made OpenCV's PNG reader allocate that much before refusing the file: a Pi would run out."""
    offset = len(_PNG)
    while offset + 8 <= len(content):
        length, kind = struct.unpack(">I4s", content[offset : offset + 8])
        offset += 12 + length  # length, type, data, CRC
        if offset > len(content):
            return False
        if kind == b"IEND":
            return True
    return False


def _png_size(content: bytes) -> tuple[int, int] | None:
    """From the IHDR chunk, which must come first."""
    if content[12:16] != b"IHDR":
        return None
    return struct.unpack_from(">II", content, 16)


def _bmp_size(content: bytes) -> tuple[int, int] | None:
    """From the DIB header: 16-bit sizes in OS/2's 12-byte one, signed 32-bit in the others (a
    negative height means the rows are stored top down)."""
    (header_size,) = struct.unpack_from("<I", content, 14)
    if header_size == 12:
        return struct.unpack_from("<HH", content, 18)
    if header_size < 16:
        return None
    width, height = struct.unpack_from("<ii", content, 18)
    return abs(width), abs(height)


def _webp_size(content: bytes) -> tuple[int, int] | None:
    """From the first chunk: VP8 (lossy), VP8L (lossless) or VP8X (extended: the canvas size,
    which libwebp requires a still image's bitstream to match)."""
    if content[8:12] != b"WEBP":
        return None
    chunk = content[12:16]
    if chunk == b"VP8 ":  # a 3-byte frame tag, the start code, then 14-bit width and height
        if content[23:26] != b"\x9d\x01\x2a":
            return None
        width, height = struct.unpack_from("<HH", content, 26)
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L":  # the signature byte 0x2F, then 14-bit width - 1 and height - 1
        if content[20] != 0x2F:
            return None
        (bits,) = struct.unpack_from("<I", content, 21)
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(content) >= 30:  # flags, 3 reserved bytes, 24-bit width - 1 and height - 1
        return int.from_bytes(content[24:27], "little") + 1, int.from_bytes(content[27:30], "little") + 1
    return None


_TIFF_WIDTH, _TIFF_LENGTH = 256, 257
_TIFF_NUMBER_FORMATS = {3: "H", 4: "I", 16: "Q"}  # SHORT, LONG, LONG8 (BigTIFF)
_TIFF_MAX_ENTRIES = 2**16  # a classic IFD's count is 16-bit; BigTIFF's 64-bit one is cut to that


def _tiff_size(content: bytes) -> tuple[int, int] | None:
    """ImageWidth and ImageLength of the first IFD (the image OpenCV decodes), in either byte
    order, classic TIFF or BigTIFF; the values are stored in the entries themselves."""
    order = "<" if content[:2] == b"II" else ">"
    if content[2:4] in (b"+\0", b"\0+"):  # BigTIFF: 64-bit offsets and counts, 20-byte entries
        (start,) = struct.unpack_from(order + "Q", content, 8)
        (count,) = struct.unpack_from(order + "Q", content, start)
        first, entry_size, entry_format = start + 8, 20, order + "HHQ8s"
    else:
        (start,) = struct.unpack_from(order + "I", content, 4)
        (count,) = struct.unpack_from(order + "H", content, start)
        first, entry_size, entry_format = start + 2, 12, order + "HHI4s"
    found: dict[int, int] = {}
    for index in range(min(count, _TIFF_MAX_ENTRIES, (len(content) - first) // entry_size)):
        tag, kind, _, value = struct.unpack_from(entry_format, content, first + index * entry_size)
        if tag in (_TIFF_WIDTH, _TIFF_LENGTH) and kind in _TIFF_NUMBER_FORMATS:
            found[tag] = struct.unpack_from(order + _TIFF_NUMBER_FORMATS[kind], value)[0]
    if _TIFF_WIDTH not in found or _TIFF_LENGTH not in found:
        return None
    return found[_TIFF_WIDTH], found[_TIFF_LENGTH]


# P1–P6, then width and height in decimal, with whitespace and "#" comments (to the end of the
# line) between them, and whitespace after (so a header cut inside a number gives no size). A
# comment must end with a line break, so the pattern cannot split one comment in many ways:
# matching takes linear time whatever the bytes.
_PNM_HEADER = re.compile(rb"P[1-6](?:\s|#[^\r\n]*[\r\n])+(\d{1,10})(?:\s|#[^\r\n]*[\r\n])+(\d{1,10})\s")


def _pnm_size(content: bytes) -> tuple[int, int] | None:
    """From the text header of a PBM, PGM or PPM file, plain or raw."""
    match = _PNM_HEADER.match(content)
    return (int(match[1]), int(match[2])) if match else None


_READERS: tuple[tuple[tuple[bytes, ...], Callable[[bytes], tuple[int, int] | None]], ...] = (
    ((_JPEG,), _jpeg_size),
    ((_PNG,), _png_size),
    ((b"BM",), _bmp_size),
    ((b"RIFF",), _webp_size),
    ((b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"), _tiff_size),
    ((b"P1", b"P2", b"P3", b"P4", b"P5", b"P6"), _pnm_size),
)
_SIGNATURES = tuple(signature for signatures, _ in _READERS for signature in signatures)
