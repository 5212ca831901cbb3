"""Reads dlib's face recognition ResNet, `dlib_face_recognition_resnet_model_v1.dat`, into numpy arrays.

Pure Python and numpy, no dlib: the weights file comes from the PyPI package
`face-recognition-models`, and `embedder_net` rebuilds the network in Keras from what this reads.

dlib writes a network outermost layer first, each layer as its version, then the whole network
below it, then its own details, so the file holds every wrapper's version, the input layer, and
then the layers' details from the input up. Tag and skip layers do not store their ids: the
reader follows the known layout of dlib's `dnn_face_recognition_ex.cpp` and checks every layer's
kind and shape against it. Encodings:

- integer: a control byte (0x80 set = negative, low 4 bits = byte count), then the bytes, little-endian;
- boolean: ASCII "0" or "1";
- string: an integer length, then the bytes;
- float: two integers, mantissa then exponent (exponents 32000–32002 are +inf, -inf and NaN);
- tensor: integer version 2, four dimensions, then the values as little-endian float32;
- alias tensor (a view into a layer's parameters): integer version 1 and four dimensions, no data.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

WEIGHTS_FILE = "dlib_face_recognition_resnet_model_v1.dat"
INPUT_SIZE = 150
EMBEDDING_SIZE = 128
STEM_FILTERS = 32
STEM_KERNEL = 7
# (filters, down) of each residual block from the input side: dlib's levels alevel4 … alevel0.
# A "down" block's first convolution has stride 2 and its shortcut is a 2×2 average pool.
RESIDUAL_BLOCKS: tuple[tuple[int, bool], ...] = (
    ((32, False),) * 3
    + ((64, True),) + ((64, False),) * 3
    + ((128, True),) + ((128, False),) * 2
    + ((256, True),) + ((256, False),) * 2
    + ((256, True),)
)  # fmt: skip

_SPECIAL_EXPONENTS = {32000: math.inf, 32001: -math.inf, 32002: math.nan}
_FLOAT32 = np.dtype("<f4")


class DlibFormatError(ValueError):
    """A file that is not dlib's face recognition ResNet as this reader knows it."""


class WeightsNotInstalledError(FileNotFoundError):
    """dlib's weights file is missing: the message says which package ships it."""


@dataclass(frozen=True)
class ResNetWeights:
    """dlib's face recognition ResNet as numpy float32 arrays in Keras layout.

    convs: (kernel (kh, kw, in, out), bias (out,)) of every convolution in the order the network
        applies them, each with the affine layer after it folded in (kernel·γ, bias·γ + β):
        convs[0] is the 7×7 stride-2 stem, then two 3×3 convolutions per entry of
        `RESIDUAL_BLOCKS`, the block's first (stride 2 in a down block) before its second.
        The stem works on dlib's normalised input, (pixel − input_mean) / 256.
    dense: the final fully connected layer's (inputs, 128) kernel; dlib gives it no bias.
    input_mean: the mean red, green and blue values dlib subtracts from every pixel.
    input_size: the height and width, in pixels, of the face chips the network takes.
    layer_count: dlib layers between the input and the loss, tags and skips included.
    """

    convs: list[tuple[np.ndarray, np.ndarray]]
    dense: np.ndarray
    input_mean: tuple[float, float, float]
    input_size: int
    layer_count: int


def installed_weights_path() -> Path:
    """The weights file that `pip install face-recognition-models` put in site-packages.

    The package is found without importing it: its `__init__` imports `pkg_resources`, which
    warns, or is missing, with current setuptools.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        path = Path(folder) / "models" / WEIGHTS_FILE
        if path.is_file():
            return path
    raise WeightsNotInstalledError(f"{WEIGHTS_FILE} not found: pip install face-recognition-models")


def read_resnet(path: str | Path) -> ResNetWeights:
    """The weights in the dlib file at `path`; DlibFormatError unless it is exactly the expected network."""
    reader = _Reader(Path(path).read_bytes())
    _read_loss(reader)
    layout = _layout()
    for layer in reversed(layout[1:]):
        reader.expect_integer(1 if layer.kind in ("tag", "skip") else 2, f"version of a {layer.kind} layer")
    bottom_version = reader.integer("version of the input's layer")
    if bottom_version not in (2, 3):
        raise DlibFormatError(f"unknown version {bottom_version} of the layer on the input")
    input_mean, input_size = _read_input(reader)
    found = [_read_details(reader, layout[0])]
    _read_layer_state(reader)
    if bottom_version == 3:
        reader.integer("sample expansion factor")
    for layer in layout[1:]:
        if layer.kind not in ("tag", "skip"):
            found.append(_read_details(reader, layer))
            _read_layer_state(reader)
    if reader.remaining:
        raise DlibFormatError(f"{reader.remaining} unexpected bytes after the network, at byte {reader.offset}")
    # The layout puts an affine layer after every convolution and the fully connected layer last.
    *convolutions, (dense,) = [params for params in found if params]
    pairs = zip(convolutions[0::2], convolutions[1::2])
    return ResNetWeights(
        convs=[_fold(kernel, bias, gamma, beta) for (kernel, bias), (gamma, beta) in pairs],
        dense=dense,
        input_mean=input_mean,
        input_size=input_size,
        layer_count=len(layout),
    )


class _Reader:
    """A cursor over the file's bytes; every read checks that the bytes it needs are there."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.offset = 0

    @property
    def remaining(self) -> int:
        return len(self.data) - self.offset

    def take(self, size: int, what: str) -> bytes:
        if size > self.remaining:
            raise DlibFormatError(
                f"{what} at byte {self.offset} needs {size} bytes but {self.remaining} remain (truncated file?)"
            )
        chunk = self.data[self.offset : self.offset + size]
        self.offset += size
        return chunk

    def integer(self, what: str) -> int:
        start = self.offset
        control = self.take(1, what)[0]
        size = control & 0x0F
        if control & 0x70 or size > 8:  # dlib stores nothing wider than 64 bits
            raise DlibFormatError(f"{what} at byte {start}: {control:#04x} does not start an integer")
        magnitude = int.from_bytes(self.take(size, what), "little")
        return -magnitude if control & 0x80 else magnitude

    def expect_integer(self, expected: int, what: str) -> None:
        start = self.offset
        value = self.integer(what)
        if value != expected:
            raise DlibFormatError(f"{what} at byte {start} is {value}, expected {expected}")

    def boolean(self, what: str) -> bool:
        start = self.offset
        value = self.take(1, what)
        if value not in (b"0", b"1"):
            raise DlibFormatError(f"{what} at byte {start} is {value!r}, not a boolean")
        return value == b"1"

    def expect_string(self, expected: str, what: str) -> None:
        start = self.offset
        length = self.integer(f"length of {what}")
        if length < 0:
            raise DlibFormatError(f"{what} at byte {start} has a negative length")
        value = self.take(length, what)
        if value != expected.encode():
            raise DlibFormatError(f"{what} at byte {start} is {value[:40]!r}, expected {expected!r}")

    def real(self, what: str) -> float:
        start = self.offset
        mantissa = self.integer(f"mantissa of {what}")
        exponent = self.integer(f"exponent of {what}")
        if exponent in _SPECIAL_EXPONENTS:
            return _SPECIAL_EXPONENTS[exponent]
        try:
            return math.ldexp(mantissa, exponent)
        except OverflowError:
            raise DlibFormatError(f"{what} at byte {start} is too large for a float") from None

    def dimensions(self, what: str) -> tuple[int, int, int, int]:
        start = self.offset
        shape = tuple(self.integer(f"dimension of {what}") for _ in range(4))
        if min(shape) < 0:
            raise DlibFormatError(f"{what} at byte {start} has negative dimensions {shape}")
        return shape  # type: ignore[return-value]

    def tensor(self, what: str) -> np.ndarray:
        """A tensor's values as a float32 array of its (samples, channels, rows, columns) shape."""
        self.expect_integer(2, f"version of {what}")
        start = self.offset
        shape = self.dimensions(what)
        count = math.prod(shape)
        if count * _FLOAT32.itemsize > self.remaining:
            raise DlibFormatError(
                f"{what} at byte {start} claims {count} values but only {self.remaining} bytes remain (truncated file?)"
            )
        values = np.frombuffer(self.take(count * _FLOAT32.itemsize, what), dtype=_FLOAT32)
        return values.astype(np.float32).reshape(shape)

    def expect_alias(self, expected: tuple[int, int, int, int], what: str) -> None:
        self.expect_integer(1, f"version of {what}")
        start = self.offset
        shape = self.dimensions(what)
        if shape != expected:
            raise DlibFormatError(f"{what} at byte {start} has shape {shape}, expected {expected}")


@dataclass(frozen=True)
class _Layer:
    """One dlib layer of the expected network.

    kind: "con", "affine", "relu", "max_pool", "avg_pool", "add_prev", "fc", "tag" or "skip".
    outputs, inputs: channels out of and into a "con" or "fc"; channels of an "affine".
    window: a convolution's kernel or a pool's size, 0 to pool over everything.
    """

    kind: str
    outputs: int = 0
    inputs: int = 0
    window: int = 0
    stride: int = 1

    @property
    def padding(self) -> int:
        """dlib's default: none for strided layers, else half the window ('same' for odd windows)."""
        return 0 if self.stride != 1 else self.window // 2


def _layout() -> list[_Layer]:
    """The layers of dlib's face recognition ResNet from the input up (dnn_face_recognition_ex.cpp)."""
    layers = [
        _Layer("con", STEM_FILTERS, 3, STEM_KERNEL, 2),
        _Layer("affine", STEM_FILTERS),
        _Layer("relu"),
        _Layer("max_pool", window=3, stride=2),
    ]
    channels = STEM_FILTERS
    for filters, down in RESIDUAL_BLOCKS:
        layers += [
            _Layer("tag"),  # tag1: the block's input
            _Layer("con", filters, channels, 3, 2 if down else 1),
            _Layer("affine", filters),
            _Layer("relu"),
            _Layer("con", filters, filters, 3, 1),
            _Layer("affine", filters),
        ]
        if down:  # tag2 marks the block's output, skip1 goes back to its input to pool it
            layers += [_Layer("tag"), _Layer("skip"), _Layer("avg_pool", window=2, stride=2)]
        layers += [_Layer("add_prev"), _Layer("relu")]
        channels = filters
    layers += [_Layer("avg_pool", window=0, stride=1), _Layer("fc", EMBEDDING_SIZE, channels)]
    return layers


def _read_loss(reader: _Reader) -> None:
    reader.expect_integer(1, "version of the loss layer")
    reader.expect_string("loss_metric_2", "loss layer")
    reader.real("loss margin")
    reader.real("loss distance threshold")


def _read_input(reader: _Reader) -> tuple[tuple[float, float, float], int]:
    reader.expect_string("input_rgb_image_sized", "input layer")
    mean = tuple(reader.real(f"{colour} mean") for colour in ("red", "green", "blue"))
    if not all(0 <= value <= 255 for value in mean):
        raise DlibFormatError(f"input means {mean} are not pixel values")
    rows, columns = reader.integer("input rows"), reader.integer("input columns")
    if (rows, columns) != (INPUT_SIZE, INPUT_SIZE):
        raise DlibFormatError(f"input size {rows}×{columns}, expected {INPUT_SIZE}×{INPUT_SIZE}")
    return mean, rows  # type: ignore[return-value]


def _read_layer_state(reader: _Reader) -> None:
    """Skips what dlib keeps for training: three flags and three tensors (gradients, cached output)."""
    for flag in ("setup called", "gradient input stale", "gradient disabled"):
        reader.boolean(flag)
    for tensor in ("input gradient", "cached output", "parameter gradient"):
        reader.tensor(tensor)


def _read_details(reader: _Reader, layer: _Layer) -> tuple[np.ndarray, ...]:
    """A layer's own details; returns its parameters ((kernel, bias), (γ, β), (kernel,) or ())."""
    if layer.kind == "con":
        return _read_con(reader, layer)
    if layer.kind == "affine":
        return _read_affine(reader, layer)
    if layer.kind == "fc":
        return _read_fc(reader, layer)
    if layer.kind in ("max_pool", "avg_pool"):
        reader.expect_string(f"{layer.kind}_2", "pooling layer version")
        expected = (layer.window, layer.window, layer.stride, layer.stride, layer.padding, layer.padding)
        _expect_integers(reader, expected, "window, stride and padding of a pooling layer")
        return ()
    reader.expect_string({"relu": "relu_", "add_prev": "add_prev_"}[layer.kind], f"{layer.kind} layer version")
    return ()


def _read_con(reader: _Reader, layer: _Layer) -> tuple[np.ndarray, np.ndarray]:
    reader.expect_string("con_4", "convolution version")
    params = _parameters(reader, layer.outputs * layer.inputs * layer.window**2 + layer.outputs, "convolution")
    expected = (layer.outputs, layer.window, layer.window, layer.stride, layer.stride, layer.padding, layer.padding)
    _expect_integers(reader, expected, "filters, size, stride and padding of a convolution")
    reader.expect_alias((layer.outputs, layer.inputs, layer.window, layer.window), "convolution filters")
    reader.expect_alias((1, layer.outputs, 1, 1), "convolution biases")
    _skip_multipliers(reader)
    filters = params[: -layer.outputs].reshape(layer.outputs, layer.inputs, layer.window, layer.window)
    return filters.transpose(2, 3, 1, 0), params[-layer.outputs :]


def _read_affine(reader: _Reader, layer: _Layer) -> tuple[np.ndarray, np.ndarray]:
    reader.expect_string("affine_", "affine layer version")
    params = _parameters(reader, 2 * layer.outputs, "affine layer")
    reader.expect_alias((1, layer.outputs, 1, 1), "affine γ")
    reader.expect_alias((1, layer.outputs, 1, 1), "affine β")
    reader.expect_integer(0, "affine mode (0: per channel)")
    return params[: layer.outputs], params[layer.outputs :]


def _read_fc(reader: _Reader, layer: _Layer) -> tuple[np.ndarray]:
    reader.expect_string("fc_2", "fully connected layer version")
    _expect_integers(reader, (layer.outputs, layer.inputs), "outputs and inputs of the fully connected layer")
    params = _parameters(reader, layer.inputs * layer.outputs, "fully connected layer")
    reader.expect_alias((layer.inputs, layer.outputs, 1, 1), "fully connected weights")
    reader.expect_alias((0, 0, 0, 0), "fully connected biases")
    reader.expect_integer(1, "fully connected bias mode (1: no bias)")
    _skip_multipliers(reader)
    return (params.reshape(layer.inputs, layer.outputs),)


def _parameters(reader: _Reader, count: int, what: str) -> np.ndarray:
    """A layer's parameter tensor, flattened, checked for its size and for finite values."""
    start = reader.offset
    params = reader.tensor(f"{what} parameters").reshape(-1)
    if params.size != count:
        raise DlibFormatError(f"{what} parameters at byte {start}: {params.size} values, expected {count}")
    if not np.isfinite(params).all():
        raise DlibFormatError(f"{what} parameters at byte {start} are not all finite")
    return params


def _expect_integers(reader: _Reader, expected: tuple[int, ...], what: str) -> None:
    start = reader.offset
    values = tuple(reader.integer(what) for _ in expected)
    if values != expected:
        raise DlibFormatError(f"{what} at byte {start} are {values}, expected {expected}")


def _skip_multipliers(reader: _Reader) -> None:
    """Skips the learning rate and weight decay multipliers of the weights and of the biases: training only."""
    for _ in range(4):
        reader.real("training multiplier")


def _fold(
    kernel: np.ndarray, bias: np.ndarray, gamma: np.ndarray, beta: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """One convolution computing conv(x)·γ + β: the affine layer scales each output channel."""
    return (kernel * gamma).astype(np.float32), (bias * gamma + beta).astype(np.float32)
