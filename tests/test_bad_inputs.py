"""A corpus of bad and odd inputs. Each gives exactly one outcome, a result or one recorded error,
through `decode`, through `edgeface scan` into a real SQLite log, and through a running `edgeface
watch` daemon, which goes on working afterwards. Real files, real processes, no mocks."""

from __future__ import annotations

import functools
import os
import shutil
import signal
import sqlite3
import struct
import subprocess
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeface.images import MAX_FILE_BYTES, MAX_PIXELS, ImageError, decode, image_size, read_input
from helpers import FIXTURES, YUNET, Child, Classifier, extended_webp, jpeg_with_orientation, wait_until


@dataclass(frozen=True)
class Case:
    """One corpus file: its name, how to make it, and its expected outcome.

    kind: "bytes" (a file holding `content`), "fifo" (a named pipe) or "huge" (a sparse file one
        byte over MAX_FILE_BYTES, which costs no disk).
    error: a part of the expected error message; None when the file must be decoded.
    shape: the decoded (height, width) when it must be.
    """

    name: str
    content: bytes = b""
    error: str | None = None
    shape: tuple[int, int] | None = None
    kind: str = "bytes"

    def make(self, folder: Path) -> Path:
        """Creates the file in `folder`; returns its path."""
        path = folder / self.name
        if self.kind == "fifo":
            os.mkfifo(path)
        elif self.kind == "huge":
            with open(path, "wb") as file:
                file.truncate(MAX_FILE_BYTES + 1)
        else:
            path.write_bytes(self.content)
        return path


def encode(extension: str, pixels: np.ndarray, options: list[int] | None = None) -> bytes:
    """`pixels` encoded by OpenCV in the format that `extension` names, with its `options`."""
    ok, encoded = cv2.imencode(extension, pixels, options or [])
    assert ok
    return encoded.tobytes()


def png_chunk(kind: bytes, body: bytes) -> bytes:
    """One PNG chunk: length, type, body and CRC."""
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def grey_png(width: int, height: int, idat: bytes) -> bytes:
    """A PNG whose IHDR says `width`×`height` 8-bit grey, with `idat` as its compressed data."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


BAND = 500  # rows of black_png compressed once and repeated


@functools.cache
def black_png(width: int, height: int) -> bytes:
    """A real, valid all-black PNG, 20000×20000 in 389 KB. A band of rows is compressed once, ending in a full flush
    (its deflate blocks then need nothing before them), and repeated: a tenth of a second, where compressing every
    row took seconds. Every byte of the data is zero (filter byte and pixels), so its Adler-32 is (length, 1)."""
    row = b"\0" + bytes(width)
    deflate = zlib.compressobj(9, wbits=-15)  # raw deflate: the zlib header and checksum are written here
    band = deflate.compress(row * BAND) + deflate.flush(zlib.Z_FULL_FLUSH)
    rest = deflate.compress(row * (height % BAND)) + deflate.flush()
    checksum = (len(row) * height % 65521) << 16 | 1
    return grey_png(width, height, b"\x78\xda" + band * (height // BAND) + rest + struct.pack(">I", checksum))


def gif_bomb() -> bytes:
    """35 bytes of GIF whose screen is 20000×20000: OpenCV decodes it, whatever its name, into 2.7 GB."""
    screen = struct.pack("<HHBBB", 20000, 20000, 0, 0, 0)
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0x80) + b"\0\0\0\xff\xff\xff"
    return b"GIF89a" + screen + frame + bytes([2, 2, 0x4C, 0x01, 0]) + b"\x3b"


def corrupted(jpeg: bytes) -> bytes:
    """`jpeg` with bytes of its entropy-coded data changed: libjpeg decodes it (with warnings)."""
    data = bytearray(jpeg)
    scan = jpeg.index(b"\xff\xda")
    for position in range(scan + 40, len(data) - 20, 37):
        data[position] ^= 0x55
    return bytes(data)


def make_corpus(face: np.ndarray) -> list[Case]:
    """The corpus, built from `face` (50×40 BGR, not square, so that a rotation shows, and the size of the committed
    CMYK JPEG, which OpenCV cannot write)."""
    height, width = face.shape[:2]
    jpeg, png = encode(".jpg", face), encode(".png", face)
    return [
        Case("empty.jpg", b"", "empty file"),
        Case("truncated.jpg", jpeg[: len(jpeg) // 2], "truncated JPEG: the end-of-image marker is missing"),
        Case("truncated.png", png[: len(png) // 2], "truncated PNG: the IEND chunk is missing"),
        Case("text.jpg", b"Dear diary, today I named a text file .jpg\n", "not a decodable image: not JPEG, PNG"),
        Case("damaged-header.jpg", b"\xff\xd8\xff\xe0 this JPEG stops here", "not a decodable image"),
        Case("one-pixel.png", encode(".png", face[:1, :1]), shape=(1, 1)),
        Case("thin-5000x1.png", encode(".png", np.zeros((1, 5000, 3), np.uint8)), shape=(1, 5000)),
        Case("tall-2x3000.png", encode(".png", np.zeros((3000, 2, 3), np.uint8)), shape=(3000, 2)),
        Case("bomb.png", black_png(20000, 20000), "20000×20000 pixels is above the limit of 20 megapixels"),
        Case("gif-bomb.jpg", gif_bomb(), "not a decodable image: not JPEG, PNG, BMP, WebP, TIFF or PNM"),
        Case("16-bit.png", encode(".png", face.astype(np.uint16) * 257), shape=(height, width)),
        Case("alpha.png", encode(".png", np.dstack([face, face[..., :1]])), shape=(height, width)),
        Case("grey.jpg", encode(".jpg", cv2.cvtColor(face, cv2.COLOR_BGR2GRAY)), shape=(height, width)),
        Case("cmyk.jpg", (FIXTURES / "cmyk.jpg").read_bytes(), shape=(50, 40)),
        Case("exif-rotated.jpg", jpeg_with_orientation(face, 6), shape=(width, height)),
        Case("corrupt-data.jpg", corrupted(jpeg), shape=(height, width)),
        Case("ünïcødé 顔.png", png, shape=(height, width)),
        Case("space in name.png", png, shape=(height, width)),
        Case("new\nline.png", png, shape=(height, width)),
        Case("named-pipe.jpg", error="cannot read: not a regular file", kind="fifo"),
        Case("huge.jpg", error="the file is larger than the limit of 32 MiB", kind="huge"),
    ]


@pytest.fixture(scope="module")
def corpus(classifier: Classifier) -> list[Case]:
    """The corpus around a held-out face of the classifier (detector `none`: every decodable image is one face),
    40×50 so that the EXIF rotation shows in the logged size."""
    return make_corpus(cv2.resize(cv2.imread(str(classifier.held_out[0][0])), (40, 50)))


def outcome(case: Case, folder: Path) -> tuple[str, str | None, tuple[int, int] | None]:
    """("done" or "error", the message, the decoded shape) of `case` through read_input and decode."""
    try:
        pixels = decode(read_input(case.make(folder)).content)
    except ImageError as error:
        return "error", str(error), None
    assert pixels.dtype == np.uint8 and pixels.ndim == 3 and pixels.shape[2] == 3
    return "done", None, pixels.shape[:2]


# -- (a) the reader, case by case -------------------------------------------------------------------


def test_each_case_gives_its_one_outcome(corpus: list[Case], tmp_path: Path):
    for case in corpus:
        status, error, shape = outcome(case, tmp_path)
        if case.error:
            assert status == "error" and case.error in error, (case.name, error)
        else:
            assert status == "done" and shape == case.shape, (case.name, error, shape)


def test_16_bit_and_alpha_pngs_decode_to_the_same_8_bit_bgr(corpus: list[Case]):
    face = decode(next(case.content for case in corpus if case.name == "space in name.png"))
    for name in ("16-bit.png", "alpha.png"):
        assert np.array_equal(decode(next(case.content for case in corpus if case.name == name)), face), name


def test_grey_and_cmyk_jpegs_decode_to_bgr():
    grey = decode(encode(".jpg", np.full((8, 8), 100, np.uint8)))
    assert grey.shape == (8, 8, 3) and np.all(np.abs(grey.astype(int) - 100) <= 1)
    card = decode((FIXTURES / "cmyk.jpg").read_bytes())  # red, green and blue thirds, saved as CMYK by Pillow
    for rows, colour in ((slice(2, 14), (0, 0, 255)), (slice(19, 31), (0, 255, 0)), (slice(36, 48), (255, 0, 0))):
        median = np.median(card[rows].reshape(-1, 3), axis=0)
        assert np.all(np.abs(median - colour) < 12), (colour, median)


@pytest.mark.parametrize("orientation, corner", [(1, (0, 0)), (3, (1, 1)), (6, (0, 1)), (8, (1, 0))])
def test_exif_orientation_is_applied(orientation: int, corner: tuple[int, int]):
    """A white block at the stored top-left ends where the orientation puts it; 6 and 8 swap the sides."""
    stored = np.zeros((40, 60, 3), np.uint8)
    stored[:10, :10] = 255
    pixels = decode(jpeg_with_orientation(stored, orientation))
    assert pixels.shape[:2] == ((60, 40) if orientation in (6, 8) else (40, 60))
    rows, columns = np.nonzero(pixels[..., 0] > 128)
    height, width = pixels.shape[:2]
    assert (int(rows.mean() > height / 2), int(columns.mean() > width / 2)) == corner


def test_the_pixel_limit_is_checked_from_the_header_before_decoding():
    at_limit, above = grey_png(5000, MAX_PIXELS // 5000, b"junk"), grey_png(5000, MAX_PIXELS // 5000 + 1, b"junk")
    assert image_size(at_limit) == (5000, 4000) and image_size(above) == (5000, 4001)
    with pytest.raises(ImageError, match="^not a decodable image$"):  # tried, and OpenCV refused the data
        decode(at_limit)
    with pytest.raises(ImageError, match="5000×4001 pixels is above the limit of 20 megapixels"):
        decode(above)


def test_a_thumbnail_inside_a_jpeg_is_skipped():
    """The size is the main picture's, not that of a smaller JPEG carried in a segment before it;
    and the thumbnail's end marker does not make a truncated picture look complete."""
    main = encode(".jpg", np.random.default_rng(0).integers(0, 255, (40, 50, 3), np.uint8))
    thumbnail = encode(".jpg", np.zeros((6, 8, 3), np.uint8))
    comment = b"\xff\xfe" + struct.pack(">H", len(thumbnail) + 2) + thumbnail
    photo = main[:2] + comment + main[2:]
    assert image_size(photo) == (50, 40) and decode(photo).shape == (40, 50, 3)
    with pytest.raises(ImageError, match="truncated JPEG"):
        decode(photo[:-100])


def tiff_header(order: str, big: bool, width: int, height: int) -> bytes:
    """A TIFF header and a first IFD holding only ImageWidth (LONG, or LONG8 in a BigTIFF) and
    ImageLength (SHORT), each value in the entry, left-justified."""
    mark = b"II" if order == "<" else b"MM"
    if big:
        head = mark + struct.pack(order + "HHHQ", 43, 8, 0, 16)
        entries = struct.pack(order + "HHQQ", 256, 16, 1, width) + struct.pack(order + "HHQH6x", 257, 3, 1, height)
        return head + struct.pack(order + "Q", 2) + entries
    head = mark + struct.pack(order + "HI", 42, 8)
    entries = struct.pack(order + "HHII", 256, 4, 1, width) + struct.pack(order + "HHIH2x", 257, 3, 1, height)
    return head + struct.pack(order + "H", 2) + entries


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("big", [False, True])
def test_tiff_sizes_in_both_byte_orders_and_bigtiff(order: str, big: bool):
    assert image_size(tiff_header(order, big, 70000, 3)) == (70000, 3)


def test_sizes_of_every_format_opencv_writes():
    pixels = np.random.default_rng(0).integers(0, 255, (30, 41, 3), np.uint8)
    grey = pixels[..., 0]
    for extension, picture in [(".jpg", pixels), (".png", pixels), (".bmp", pixels), (".webp", pixels),
                               (".tiff", pixels), (".ppm", pixels), (".pgm", grey), (".pbm", grey)]:  # fmt: skip
        assert image_size(encode(extension, picture)) == (41, 30), extension
    lossless = encode(".webp", pixels, [cv2.IMWRITE_WEBP_QUALITY, 101])  # VP8L
    extended = extended_webp(np.dstack([pixels, grey]))  # VP8X, for the alpha
    assert image_size(lossless) == image_size(extended) == (41, 30)
    top_down = bytearray(encode(".bmp", pixels))
    top_down[22:26] = struct.pack("<i", -30)
    assert image_size(bytes(top_down)) == (41, 30)
    assert image_size(b"P5 # a comment\n# another\n41\t30\n255\n") == (41, 30)


@pytest.mark.parametrize(
    "content",
    [b"GIF89a", b"P7\nWIDTH 4\nHEIGHT 4\n", b"PF\n4 4\n-1\n", b"\x59\xa6\x6a\x95", b"#?RADIANCE\n",
     b"\0\0\0\x0cjP  \r\n\x87\n", b"P5 99999999999 1\n", b"P5 #no line break" + b"#" * 100_000],
)  # fmt: skip
def test_other_formats_and_damaged_headers_have_no_size(content: bytes):
    assert image_size(content) is None
    with pytest.raises(ImageError, match="not a decodable image"):
        decode(content)


def test_every_prefix_of_every_header_is_read_safely():
    """Cut anywhere, a header gives its size or None, never an exception or a read past the end."""
    pixels = np.random.default_rng(0).integers(0, 255, (30, 41, 3), np.uint8)
    for extension in (".jpg", ".png", ".bmp", ".webp", ".tiff", ".ppm"):
        whole = encode(extension, pixels)
        for length in range(min(len(whole), 700)):
            assert image_size(whole[:length]) in (None, (41, 30)), (extension, length)
    for order in "<>":
        for big in (False, True):
            whole = tiff_header(order, big, 41, 30)
            assert [image_size(whole[:length]) for length in range(len(whole))] == [None] * len(whole)


def test_read_input_refuses_what_is_not_a_regular_file(tmp_path: Path):
    (tmp_path / "folder.jpg").mkdir()
    (tmp_path / "zero.jpg").symlink_to("/dev/zero")  # reading it would never end
    for name in ("folder.jpg", "zero.jpg"):
        with pytest.raises(ImageError, match="cannot read: not a regular file"):
            read_input(tmp_path / name)


# -- (b) through `edgeface scan` ----------------------------------------------------------------------


def logged(db: Path) -> dict[str, tuple[str, str | None, int | None, int | None, int]]:
    """path -> (status, error, width, height, number of faces) of every input in the log."""
    with sqlite3.connect(db) as connection:
        rows = connection.execute(
            "SELECT i.path, i.status, i.error, i.width, i.height, count(f.id) "
            "FROM inputs i LEFT JOIN faces f ON f.input_id = i.id GROUP BY i.id"
        ).fetchall()
    assert len(rows) == len({row[0] for row in rows}), "an input was logged twice"
    return {path: tuple(rest) for path, *rest in rows}


def check_logged(entry: tuple, case: Case) -> None:
    """Asserts that a `logged` entry is the outcome `case` expects (a decoded image is one face)."""
    status, error, width, height, faces = entry
    if case.error:
        assert status == "error" and case.error in error and faces == 0, (case.name, entry)
    else:
        assert (status, error, (height, width), faces) == ("done", None, case.shape, 1), (case.name, entry)


def test_scan_logs_one_outcome_per_bad_input_and_lists_the_failures(
    classifier: Classifier, corpus: list[Case], tmp_path: Path
):
    folder = tmp_path / "corpus"
    folder.mkdir()
    paths = [case.make(folder) for case in corpus]
    missing = folder / "not-there.jpg"
    db = tmp_path / "log.db"
    run = subprocess.run(
        [sys.executable, "-m", "edgeface", "scan", *map(str, paths), str(missing),
         "--model", str(classifier.tflite_file), "--db", str(db), "--json"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 1, run.stderr
    assert len(run.stdout.splitlines()) == len(paths)  # one JSON line per input, names escaped
    rows = logged(db)
    assert set(rows) == {str(path) for path in paths}  # a path that does not exist is no input: said, not logged
    for case, path in zip(corpus, paths):
        check_logged(rows[str(path)], case)
        if case.error:
            assert f"failed: {path}: " in run.stderr
    assert f"problem: no such file or folder: {missing}" in run.stderr
    assert f"{len(paths) - sum(case.error is None for case in corpus)} failed" in run.stderr


@pytest.mark.parametrize("detector", ["haar", "yunet"])
def test_degenerate_pictures_through_every_detector_end_as_one_outcome_each(
    classifier: Classifier, detector: str, tmp_path: Path
):
    """Pictures one pixel wide or high, or thinner than the detector shrinks to (a 95-byte 5000×1
    PNG crashed the scan once), are decoded, searched and logged like any other picture."""
    if detector == "yunet" and not YUNET.is_file():
        pytest.skip(f"YuNet's ONNX file is not at {YUNET}")
    shapes = [(1, 5000), (5000, 1), (2, 3000), (3000, 2), (1, 1), (641, 1)]
    paths = []
    for height, width in shapes:
        paths.append(tmp_path / f"{width}x{height}.png")
        cv2.imwrite(str(paths[-1]), np.full((height, width, 3), 90, np.uint8))
    db = tmp_path / "log.db"
    run = subprocess.run(
        [sys.executable, "-m", "edgeface", "scan", *map(str, paths), "--model", str(classifier.tflite_file),
         "--db", str(db), "--detector", detector, "--yunet-model", str(YUNET), "--workers", "1"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr
    rows = logged(db)
    assert {path: rows[str(path)][0] for path in paths} == dict.fromkeys(paths, "done")


def permissions_apply() -> list[str]:
    """A command prefix under which file permissions apply: none for an ordinary user; for root,
    `setpriv` taking away the two capabilities that let root read any file (root's Python may live
    where an unprivileged user cannot reach it, so dropping to `nobody` would not run at all)."""
    if os.geteuid() != 0:
        return []
    if not shutil.which("setpriv"):
        pytest.skip("running as root without setpriv: cannot make a file unreadable to ourselves")
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]


def test_a_file_without_read_permission_is_one_recorded_error(classifier: Classifier, tmp_path: Path):
    png = cv2.imread(str(classifier.held_out[0][0]))
    locked, readable = tmp_path / "locked.png", tmp_path / "readable.png"
    cv2.imwrite(str(locked), png)
    cv2.imwrite(str(readable), png)
    locked.chmod(0)
    db = tmp_path / "log.db"
    run = subprocess.run(
        [*permissions_apply(), sys.executable, "-m", "edgeface", "scan", str(locked), str(readable),
         "--model", str(classifier.tflite_file), "--db", str(db), "--json"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 1, run.stderr
    rows = logged(db)
    assert rows[str(locked)][:2] == ("error", "cannot read: Permission denied")
    assert rows[str(readable)][0] == "done"
    assert f"failed: {locked}: cannot read: Permission denied" in run.stderr


# -- (c) through the `edgeface watch` daemon ----------------------------------------------------------


def stopped(process: subprocess.Popen) -> bool:
    """Whether every thread of `process` is stopped (SIGSTOP takes effect a moment after it is sent)."""
    tasks = Path(f"/proc/{process.pid}/task")
    return all((task / "stat").read_text().rsplit(")", 1)[1].split()[0] == "T" for task in tasks.iterdir())


def test_the_daemon_gives_each_bad_input_one_outcome_and_goes_on(
    classifier: Classifier, corpus: list[Case], tmp_path: Path
):
    inbox, staging, db = tmp_path / "inbox", tmp_path / "staging", tmp_path / "log.db"
    inbox.mkdir()
    staging.mkdir()
    args = [str(inbox), "--model", str(classifier.tflite_file), "--db", str(db), "--move-done", str(tmp_path / "done"),
            "--move-failed", str(tmp_path / "failed"), "--settle", "0.3"]  # fmt: skip  (a bad file waits to settle)
    good = classifier.held_out[1][0].read_bytes()
    daemon = Child(tmp_path, "watch", *args).ready()
    for case in corpus:  # moved in, as uploaders do, so that the pipe and the sparse file arrive too
        os.rename(case.make(staging), inbox / case.name)
    wait_until(lambda: len(logged(db)) == len(corpus))
    # Files deleted between their event and the read: the events wait in the kernel while the
    # daemon is stopped, so the daemon reads only once the files are gone.
    daemon.process.send_signal(signal.SIGSTOP)
    wait_until(lambda: stopped(daemon.process))
    (inbox / "vanished.png").write_bytes(good)
    (staging / "vanished-moved.png").write_bytes(good)
    os.rename(staging / "vanished-moved.png", inbox / "vanished-moved.png")
    os.unlink(inbox / "vanished.png")
    os.unlink(inbox / "vanished-moved.png")
    daemon.process.send_signal(signal.SIGCONT)
    wait_until(lambda: len(logged(db)) == len(corpus) + 2)
    (inbox / "afterwards.png").write_bytes(good)
    wait_until(lambda: str(inbox / "afterwards.png") in logged(db))
    assert daemon.process.poll() is None
    code, stderr = daemon.stop()
    assert code == 0, stderr
    rows = logged(db)
    for case in corpus:
        check_logged(rows[str(inbox / case.name)], case)
    for name in ("vanished.png", "vanished-moved.png"):
        assert rows[str(inbox / name)][:2] == ("error", "cannot read: No such file or directory")
    assert rows[str(inbox / "afterwards.png")][0] == "done"
    done = sorted([*(case.name for case in corpus if not case.error), "afterwards.png"])
    failed = sorted(case.name for case in corpus if case.error)
    assert sorted(path.name for path in (tmp_path / "done").iterdir()) == done
    assert sorted(path.name for path in (tmp_path / "failed").iterdir()) == failed
    assert not list(inbox.iterdir())
