"""dlib's face recognition ResNet as a Keras 3 model that computes dlib's 128-number face descriptors.

The model takes 150×150 RGB face chips, pixel values 0..255 as float32, aligned the way dlib's
`get_face_chip` aligns them, and returns the descriptor `compute_face_descriptor` gives. It uses
only layers TFLite's int8 kernels have (convolutions, pooling, ADD, PAD, MEAN, FULLY_CONNECTED),
and saves and loads as `.h5` in Keras' safe mode once this module is imported.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from edgeface_convert.dlib_format import (
    EMBEDDING_SIZE,
    RESIDUAL_BLOCKS,
    ResNetWeights,
    installed_weights_path,
    read_resnet,
)

MODEL_NAME = "edgeface_dlib_resnet"
# dlib's input layer computes (pixel − mean) / 256, not / 255.
INPUT_SCALE = 256.0


@keras.saving.register_keras_serializable(package="edgeface")
class ChannelPad(keras.layers.Layer):
    """Appends `extra` all-zero channels: dlib adds a shortcut with fewer channels as if zero-extended.

    Keras has no built-in layer for it; `keras.ops.pad` becomes TFLite's PAD.
    """

    def __init__(self, extra: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.extra = extra

    def call(self, inputs):
        return keras.ops.pad(inputs, [[0, 0], [0, 0], [0, 0], [0, self.extra]])

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (*input_shape[:-1], input_shape[-1] + self.extra)

    def get_config(self) -> dict:
        return {**super().get_config(), "extra": self.extra}


def build_embedder(weights: ResNetWeights) -> keras.Model:
    """The Keras model of `weights`: (None, size, size, 3) RGB 0..255 → (None, 128) dlib descriptors."""
    layers = keras.layers
    size = weights.input_size
    convs = iter(_with_input_scaling(weights))

    def convolution(x: keras.KerasTensor, stride: int, relu: bool, name: str) -> keras.KerasTensor:
        kernel, bias = next(convs)
        # dlib pads stride-1 convolutions by half the kernel and strided ones not at all.
        conv = layers.Conv2D(
            kernel.shape[-1], kernel.shape[:2], strides=stride, padding="same" if stride == 1 else "valid",
            activation="relu" if relu else None, name=name,
        )  # fmt: skip
        x = conv(x)
        conv.set_weights([kernel, bias])
        return x

    inputs = keras.Input(shape=(size, size, 3), dtype="float32", name="rgb")
    x = convolution(inputs, 2, relu=True, name="stem")
    x = layers.MaxPooling2D(3, strides=2, name="stem_pool")(x)
    for index, (_, down) in enumerate(RESIDUAL_BLOCKS):
        name = f"block{index}"
        branch = convolution(x, 2 if down else 1, relu=True, name=f"{name}_conv1")
        branch = convolution(branch, 1, relu=False, name=f"{name}_conv2")
        shortcut = layers.AveragePooling2D(2, strides=2, name=f"{name}_pool")(x) if down else x
        # Each side grows where the other is larger; both compare with the other's unpadded shape.
        branch, shortcut = (
            _zero_extend(branch, shortcut, f"{name}_conv"),
            _zero_extend(shortcut, branch, f"{name}_shortcut"),
        )
        x = layers.Add(name=f"{name}_add")([branch, shortcut])
        x = layers.ReLU(name=f"{name}_relu")(x)
    x = layers.GlobalAveragePooling2D(name="average")(x)
    dense = layers.Dense(EMBEDDING_SIZE, use_bias=False, name="descriptor")
    outputs = dense(x)
    dense.set_weights([weights.dense])
    return keras.Model(inputs, outputs, name=MODEL_NAME)


def load_dlib_embedder(path: str | Path | None = None) -> keras.Model:
    """`build_embedder` of the dlib weights file at `path`, by default the one face-recognition-models installed."""
    return build_embedder(read_resnet(path if path is not None else installed_weights_path()))


def _with_input_scaling(weights: ResNetWeights) -> list[tuple[np.ndarray, np.ndarray]]:
    """`weights.convs` with dlib's (pixel − mean) / 256 folded into the stem, so the model takes raw pixels.

    Exact because the stem pads nothing: every kernel tap sees a real pixel, so
    W·(p − m)/256 + b = (W/256)·p + (b − Σ W·m/256).
    """
    (kernel, bias), *rest = weights.convs
    kernel64 = kernel.astype(np.float64) / INPUT_SCALE
    shift = np.einsum("hwio,i->o", kernel64, np.asarray(weights.input_mean, dtype=np.float64))
    stem = (kernel64.astype(np.float32), (bias - shift).astype(np.float32))
    return [stem, *rest]


def _zero_extend(x: keras.KerasTensor, other: keras.KerasTensor, name: str) -> keras.KerasTensor:
    """`x` padded with zeros at the end of each dimension (bottom, right, channels) where `other` is larger.

    dlib's add_prev adds tensors of different shapes this way: the sum takes the larger size and
    the smaller tensor counts as zero outside its own extent. Here that happens to a down block's
    convolutions when an odd size halves (3×3 against the shortcut's 4×4, 1×1 against 2×2) and
    to its shortcut where the block adds channels.
    """
    _, rows, columns, channels = x.shape
    _, other_rows, other_columns, other_channels = other.shape
    if other_rows > rows or other_columns > columns:
        padding = ((0, max(other_rows - rows, 0)), (0, max(other_columns - columns, 0)))
        x = keras.layers.ZeroPadding2D(padding, name=f"{name}_pad_space")(x)
    if other_channels > channels:
        x = ChannelPad(other_channels - channels, name=f"{name}_pad_channels")(x)
    return x
