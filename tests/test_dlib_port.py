"""dlib's face recognition ResNet read from its own weights file and rebuilt in Keras.

The reader must take the real file whole and refuse damaged copies of it with DlibFormatError.
The Keras port must give dlib's own descriptors on real faces (chips cut by dlib from
scikit-image's astronaut and, when the shared data folder is there, LFW photos), survive an
`.h5` round trip in safe mode, and quantize to built-in int8 ops that keep the descriptors'
direction (the int8 network `edgeface convert` makes of it, conftest's `dlib_embedder`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import pytest

from edgeface_convert.dlib_format import (
    DlibFormatError,
    ResNetWeights,
    WeightsNotInstalledError,
    installed_weights_path,
    read_resnet,
)
from helpers import LFW_DEV, flatbuffer_of
from make_fixtures import MadeModel

if TYPE_CHECKING:
    import keras  # imported where a test needs it: the device tier collects this module without Keras

pytestmark = pytest.mark.workstation  # the convert extra: dlib's weights, and TensorFlow for the port
LFW_PEOPLE = 8
# Stem, then two convolutions per residual block: 3 blocks of 32 channels, 4 of 64, 3 of 128,
# 4 of 256, the first block of each wider level growing the channels.
CONV_SHAPES = (
    [(7, 7, 3, 32)]
    + [(3, 3, 32, 32)] * 6
    + [(3, 3, 32, 64)] + [(3, 3, 64, 64)] * 7
    + [(3, 3, 64, 128)] + [(3, 3, 128, 128)] * 5
    + [(3, 3, 128, 256)] + [(3, 3, 256, 256)] * 7
)  # fmt: skip
INT8_OPS = {"CONV_2D", "ADD", "PAD", "MAX_POOL_2D", "AVERAGE_POOL_2D", "MEAN", "FULLY_CONNECTED", "QUANTIZE"}


@pytest.fixture(scope="module")
def dat_path() -> Path:
    try:
        return installed_weights_path()
    except WeightsNotInstalledError:
        pytest.skip("face-recognition-models is not installed")


@pytest.fixture(scope="module")
def weights(dat_path: Path) -> ResNetWeights:
    return read_resnet(dat_path)


@pytest.fixture(scope="module")
def model(weights: ResNetWeights) -> keras.Model:
    from edgeface_convert.embedder_net import build_embedder

    return build_embedder(weights)


@pytest.fixture(scope="module")
def chips(dat_path: Path) -> np.ndarray:
    """uint8 (n, 150, 150, 3) RGB face chips, aligned by dlib as `compute_face_descriptor` expects;
    without dlib, the astronaut's face cropped by hand (enough for the round trip and int8 tests)."""
    from skimage import data

    try:
        import dlib
    except ImportError:
        return cv2.resize(data.astronaut()[60:190, 155:285], (150, 150), interpolation=cv2.INTER_AREA)[np.newaxis]
    detector = dlib.get_frontal_face_detector()
    landmarks = dlib.shape_predictor(str(dat_path.parent / "shape_predictor_5_face_landmarks.dat"))
    photos = [data.astronaut()]
    if LFW_DEV.is_dir():
        for person in sorted(LFW_DEV.iterdir())[:LFW_PEOPLE]:
            first = sorted(person.glob("*.jpg"))[0]
            photos.append(cv2.cvtColor(cv2.imread(str(first)), cv2.COLOR_BGR2RGB))
    found = [
        dlib.get_face_chip(photo, landmarks(photo, face), size=150, padding=0.25)
        for photo in photos
        for face in detector(photo)
    ]
    assert found, "dlib found no face in scikit-image's astronaut"
    return np.stack(found)


def test_reader_takes_the_whole_network(weights: ResNetWeights) -> None:
    assert weights.layer_count == 130  # dlib layers between input and loss, tags and skips included
    assert [kernel.shape for kernel, _ in weights.convs] == CONV_SHAPES
    assert [bias.shape for _, bias in weights.convs] == [(shape[-1],) for shape in CONV_SHAPES]
    assert weights.dense.shape == (256, 128)
    assert all(array.dtype == np.float32 for conv in weights.convs for array in conv)
    assert weights.dense.dtype == np.float32
    np.testing.assert_allclose(weights.input_mean, (122.782, 117.001, 104.298), atol=1e-4)
    assert weights.input_size == 150


@pytest.fixture(scope="module")
def dat_bytes(dat_path: Path) -> bytes:
    return dat_path.read_bytes()


def _damaged(tmp_path: Path, content: bytes) -> Path:
    path = tmp_path / "damaged.dat"
    path.write_bytes(content)
    return path


@pytest.mark.parametrize("keep", [0, 1, 3, 20, 300, 400, 19_300, 11_000_000, -1])
def test_reader_refuses_a_truncated_file(tmp_path: Path, dat_bytes: bytes, keep: int) -> None:
    with pytest.raises(DlibFormatError, match="truncated"):
        read_resnet(_damaged(tmp_path, dat_bytes[:keep]))


def test_reader_refuses_a_corrupted_first_byte(tmp_path: Path, dat_bytes: bytes) -> None:
    for first in (0xFF, 0x00, 0x02):
        with pytest.raises(DlibFormatError):
            read_resnet(_damaged(tmp_path, bytes([first]) + dat_bytes[1:]))


def test_reader_refuses_trailing_bytes(tmp_path: Path, dat_bytes: bytes) -> None:
    with pytest.raises(DlibFormatError, match="1 unexpected bytes after the network"):
        read_resnet(_damaged(tmp_path, dat_bytes + b"\0"))


def test_reader_refuses_an_unknown_layer_version(tmp_path: Path, dat_bytes: bytes) -> None:
    with pytest.raises(DlibFormatError, match="con_5"):
        read_resnet(_damaged(tmp_path, dat_bytes.replace(b"con_4", b"con_5", 1)))


def test_reader_refuses_absurd_lengths(tmp_path: Path, dat_bytes: bytes) -> None:
    huge = bytes([8]) + (2**62).to_bytes(8, "little")  # an 8-byte integer
    # The loss layer's name: version 1, then the string's length 13 at byte 2.
    assert dat_bytes[2:4] == b"\x01\x0d"
    with pytest.raises(DlibFormatError, match="remain"):
        read_resnet(_damaged(tmp_path, dat_bytes[:2] + huge + dat_bytes[4:]))
    # The first convolution's parameters: tensor version 2, then 4736 (0x1280) values.
    start = dat_bytes.index(b"con_4") + len(b"con_4")
    assert dat_bytes[start : start + 5] == b"\x01\x02\x02\x80\x12"
    with pytest.raises(DlibFormatError, match="claims"):
        read_resnet(_damaged(tmp_path, dat_bytes[: start + 2] + huge + dat_bytes[start + 5 :]))


def _descriptors(model: keras.Model, chips: np.ndarray) -> np.ndarray:
    return model.predict(chips.astype(np.float32), verbose=0)


def test_keras_port_gives_dlibs_descriptors(model: keras.Model, dat_path: Path, chips: np.ndarray) -> None:
    dlib = pytest.importorskip("dlib")
    recognizer = dlib.face_recognition_model_v1(str(dat_path))
    expected = np.array([recognizer.compute_face_descriptor(chip) for chip in chips], dtype=np.float32)
    assert np.abs(_descriptors(model, chips) - expected).max() < 1e-4


def test_model_loads_back_from_h5_in_safe_mode(model: keras.Model, chips: np.ndarray, tmp_path: Path) -> None:
    import keras

    path = tmp_path / "dlib.h5"
    model.save(path)
    loaded = keras.models.load_model(path, compile=False, safe_mode=True)
    assert loaded.name == "edgeface_dlib_resnet"
    np.testing.assert_allclose(_descriptors(loaded, chips), _descriptors(model, chips), atol=1e-6)


def test_int8_conversion_keeps_the_descriptors(model: keras.Model, chips: np.ndarray, dlib_embedder: MadeModel) -> None:
    """The int8 network `edgeface convert` made of the port (conftest's `dlib_embedder`, calibrated on its training
    photos), on real chips it never saw: converting the 29 convolutions takes long, so it is done once a session."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    # Without the default XNNPACK delegate, so the op list shows TFLite's own kernels.
    interpreter = Interpreter(
        model_content=flatbuffer_of(dlib_embedder.tflite_file),
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    interpreter.allocate_tensors()
    assert {op["op_name"] for op in interpreter._get_ops_details()} <= INT8_OPS
    assert not [t["name"] for t in interpreter.get_tensor_details() if t["dtype"] == np.float32]
    source, target = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    in_scale, in_zero = source["quantization"]
    out_scale, out_zero = target["quantization"]
    quantized = []
    for chip in chips.astype(np.float32):
        pixels = np.clip(np.round(chip / in_scale + in_zero), -128, 127).astype(np.int8)
        interpreter.set_tensor(source["index"], pixels[np.newaxis])
        interpreter.invoke()
        quantized.append((interpreter.get_tensor(target["index"])[0].astype(np.float32) - out_zero) * out_scale)
    quantized, floats = np.array(quantized), _descriptors(model, chips)
    cosines = np.sum(quantized * floats, axis=1) / np.linalg.norm(quantized, axis=1) / np.linalg.norm(floats, axis=1)
    assert cosines.min() >= 0.99
