"""The classic CNN and its training: Conv 32/64/128 with pooling, Dense 512, Dropout 0.5, Adam."""

from __future__ import annotations

import keras
import numpy as np

from edgeface.metrics import classification_report
from edgeface.model import label_probabilities
from edgeface_convert.dataset import FaceSet

SMALLEST_INPUT = 22  # three unpadded 3×3 convolutions, each followed by 2×2 pooling, need this many pixels


def output_kind(n_labels: int) -> str:
    """"sigmoid" (one unit, binary cross-entropy) for two labels, else "softmax"."""
    return "sigmoid" if n_labels == 2 else "softmax"


def build_classic_cnn(input_shape: tuple[int, int, int], n_labels: int, learning_rate: float = 1e-3) -> keras.Model:
    """The compiled model for (height, width, channels) inputs in the preprocessing's value range."""
    if min(input_shape[:2]) < SMALLEST_INPUT:
        raise ValueError(f"input size must be at least {SMALLEST_INPUT}×{SMALLEST_INPUT} pixels")
    sigmoid = output_kind(n_labels) == "sigmoid"
    layers = keras.layers
    model = keras.Sequential(
        [
            keras.Input(shape=input_shape),
            layers.Conv2D(32, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(64, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(128, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(512, activation="relu"),
            layers.Dropout(0.5),
            layers.Dense(1, activation="sigmoid") if sigmoid else layers.Dense(n_labels, activation="softmax"),
        ],
        name="edgeface_classic_cnn",
    )
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="binary_crossentropy" if sigmoid else "sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def train_model(train: FaceSet, validation: FaceSet, epochs: int, batch_size: int, seed: int) -> keras.Model:
    """A freshly built classic CNN fitted on `train`, printing one progress line per epoch."""
    keras.utils.set_random_seed(seed)
    model = build_classic_cnn(train.crops.shape[1:], len(train.labels))
    model.fit(
        train.crops,
        train.targets.astype(np.float32),
        validation_data=(validation.crops, validation.targets.astype(np.float32)) if len(validation.targets) else None,
        epochs=epochs,
        batch_size=batch_size,
        shuffle=True,
        verbose=2,
    )
    return model


def keras_probabilities(model: keras.Model, crops: np.ndarray) -> np.ndarray:
    """(n, n_labels) probabilities from the float Keras model."""
    units = model.output_shape[-1]
    scores = model.predict(crops, verbose=0, batch_size=64) if len(crops) else np.empty((0, units))
    return label_probabilities(np.asarray(scores, dtype=np.float32), "sigmoid" if units == 1 else "softmax")


def evaluate(model: keras.Model, faces: FaceSet) -> dict:
    """`edgeface.metrics.classification_report` of the float model on `faces`."""
    predicted = np.argmax(keras_probabilities(model, faces.crops), axis=1)
    return classification_report(faces.targets, predicted, faces.labels)
