"""The one convolutional autoencoder of edgeface, in two configurations: the face-quality gate (a tiny encoder of
its own) and the classic CNN's pretraining (the classic CNN's conv stack as its encoder).

Either way the network maps a crop to a small code and back to a crop of the same shape through a sigmoid, and
learns with mean squared error: after training on real face crops, a crop that reconstructs badly looks little
like those faces. The decoder mirrors the encoder's convolutions with stride-2 transposed ones.
"""

from __future__ import annotations

import keras
import numpy as np

from edgeface.gate import reconstruction_scores
from edgeface.progress import Progress

GATE_WIDTHS = (16, 32, 64)  # the gate's stride-2 convolutions: about 3 M multiply-adds on a 32×32 crop
GATE_CODE = 64
PRETRAIN_CODE = 128


def gate_encoder() -> list[keras.layers.Layer]:
    """The gate's encoder: three 3×3 stride-2 convolutions, each halving the crop."""
    return [keras.layers.Conv2D(width, 3, strides=2, padding="same", activation="relu") for width in GATE_WIDTHS]


def build_autoencoder(input_shape: tuple[int, int, int], encoder: list[keras.layers.Layer], code_size: int,
                      name: str) -> keras.Model:  # fmt: skip
    """The compiled autoencoder for (height, width, channels) crops with values in 0..1.

    encoder: fresh layers (convolutions and poolings) applied in order; then a Dense code of `code_size`. The
    decoder has one 3×3 stride-2 transposed convolution per convolution of the encoder, widths mirrored, the last
    giving the crop's channels through a sigmoid, and is resized to the input's size when the encoder's
    unpadded convolutions and poolings do not halve it exactly (the classic CNN's).
    """
    layers = keras.layers
    inputs = keras.Input(shape=input_shape)
    features = inputs
    for layer in encoder:
        features = layer(features)
    shape = tuple(int(n) for n in features.shape[1:])
    code = layers.Dense(code_size, activation="relu", name="code")(layers.Flatten()(features))
    decoded = layers.Reshape(shape)(layers.Dense(int(np.prod(shape)), activation="relu")(code))
    widths = [layer.filters for layer in encoder if isinstance(layer, layers.Conv2D)]
    for width in reversed(widths[:-1]):
        decoded = layers.Conv2DTranspose(width, 3, strides=2, padding="same", activation="relu")(decoded)
    decoded = layers.Conv2DTranspose(input_shape[2], 3, strides=2, padding="same", activation="sigmoid")(decoded)
    if tuple(decoded.shape[1:3]) != tuple(input_shape[:2]):
        decoded = layers.Resizing(input_shape[0], input_shape[1])(decoded)
    model = keras.Model(inputs, decoded, name=name)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    return model


class EpochProgress(keras.callbacks.Callback):
    """One step of a terminal progress line per epoch, with the loss; silent when stderr is not a terminal."""

    def __init__(self, what: str, epochs: int) -> None:
        super().__init__()
        self._progress = Progress(what, epochs)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self._progress.step()

    def on_train_end(self, logs: dict | None = None) -> None:
        self._progress.done()


def fit_autoencoder(model: keras.Model, crops: np.ndarray, epochs: int, seed: int, what: str) -> None:
    """Fits `model` to reconstruct `crops` and their mirror images (a face mirrored is still a face).

    crops: float32 (n, height, width, channels) in 0..1. No other augmentation: shifted, zoomed or relit crops
    would teach the network to reconstruct much besides faces, and a gate must not.
    """
    keras.utils.set_random_seed(seed)
    both = np.concatenate([crops, crops[:, :, ::-1]])
    model.fit(both, both, epochs=epochs, batch_size=16, shuffle=True, verbose=0, callbacks=[EpochProgress(what, epochs)])


def reconstruction_errors(model: keras.Model, crops: np.ndarray) -> np.ndarray:
    """float32 (n,): the mean squared difference between each crop and its reconstruction (the gate's score)."""
    if not len(crops):
        return np.empty(0, np.float32)
    reconstructed = np.asarray(model.predict(crops, batch_size=64, verbose=0), dtype=np.float32)
    return reconstruction_scores(reconstructed, crops)
