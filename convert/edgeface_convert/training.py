"""The classic CNN and its training: Conv 32/64/128 with pooling, Dense 512, Dropout 0.5, Adam."""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from edgeface.metrics import classification_report
from edgeface.dataset import FaceSet
from edgeface_convert.autoencoder import PRETRAIN_CODE, build_autoencoder, fit_autoencoder
from edgeface_convert.keras_io import SourceModel
from edgeface_convert.options import SMALLEST_INPUT


def output_kind(n_labels: int) -> str:
    """"sigmoid" (one unit, binary cross-entropy) for two labels, else "softmax"."""
    return "sigmoid" if n_labels == 2 else "softmax"


def classic_encoder() -> list[keras.layers.Layer]:
    """The classic CNN's conv stack, fresh: Conv 32/64/128 (3×3, ReLU, unpadded), each followed by 2×2 pooling.
    The classic CNN and its pretraining autoencoder both start with it."""
    layers = keras.layers
    return [layer for width in (32, 64, 128) for layer in (layers.Conv2D(width, 3, activation="relu"), layers.MaxPooling2D(2))]


def pretrained_conv_stack(crops: np.ndarray, epochs: int, seed: int) -> keras.Model:
    """An autoencoder whose encoder is `classic_encoder`, trained `epochs` on unlabelled face crops (float32, cropped
    as the CNN's): `train_model` starts the CNN from its convolutions."""
    autoencoder = build_autoencoder(crops.shape[1:], classic_encoder(), PRETRAIN_CODE, "edgeface_classic_pretraining")
    fit_autoencoder(autoencoder, crops, epochs, seed, "pretraining")
    return autoencoder


def copy_encoder(pretrained: keras.Model, model: keras.Model) -> int:
    """Copies the weights of `pretrained`'s convolutions into `model`'s, in order; returns how many were copied.
    Both must start with `classic_encoder`, so the first convolutions of each are the same layers' shapes."""
    def convolutions(network: keras.Model) -> list[keras.layers.Layer]:
        return [layer for layer in network.layers if type(layer) is keras.layers.Conv2D]

    pairs = list(zip(convolutions(pretrained), convolutions(model)))
    for source, target in pairs:
        target.set_weights(source.get_weights())
    return len(pairs)


def build_classic_cnn(
    input_shape: tuple[int, int, int], n_labels: int, learning_rate: float = 1e-3, label_smoothing: float = 0.1
) -> keras.Model:
    """The compiled model for (height, width, channels) inputs in the preprocessing's value range.

    Targets are one-hot rows for softmax and 0/1 for the sigmoid. Label smoothing keeps the model
    from pushing probabilities to 1: an int8 output cannot tell 0.997 from 1.0, and an unknown
    rule needs room above the confidence strangers get.
    """
    if min(input_shape[:2]) < SMALLEST_INPUT:
        raise ValueError(f"input size must be at least {SMALLEST_INPUT}×{SMALLEST_INPUT} pixels")
    sigmoid = output_kind(n_labels) == "sigmoid"
    layers = keras.layers
    model = keras.Sequential(
        [
            keras.Input(shape=input_shape),
            *classic_encoder(),
            layers.Flatten(),
            layers.Dense(512, activation="relu"),
            layers.Dropout(0.5),
            layers.Dense(1, activation="sigmoid") if sigmoid else layers.Dense(n_labels, activation="softmax"),
        ],
        name="edgeface_classic_cnn",
    )
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=(
            keras.losses.BinaryCrossentropy(label_smoothing=label_smoothing)
            if sigmoid
            else keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing)
        ),
        metrics=["accuracy"],
    )
    return model


@dataclass(frozen=True)
class TrainingSettings:
    """How `train_model` fits: `patience` epochs without a better validation loss stop it early."""

    epochs: int = 30
    batch_size: int = 32
    seed: int = 0
    patience: int = 8
    augment: bool = True
    label_smoothing: float = 0.1


def model_targets(faces: FaceSet) -> np.ndarray:
    """What the loss compares outputs with: one-hot rows (softmax), or 0/1 for labels[1] (sigmoid)."""
    if output_kind(len(faces.labels)) == "sigmoid":
        return faces.targets.astype(np.float32)
    return np.eye(len(faces.labels), dtype=np.float32)[faces.targets]


def face_augmenter(value_range: tuple[float, float], seed: int) -> keras.Sequential:
    """Random changes a face photo plausibly has: mirror image, a small tilt, shift and zoom,
    other light. Applied to training batches only; the saved model does not contain it."""
    layers = keras.layers
    return keras.Sequential(
        [
            layers.RandomFlip("horizontal", seed=seed),
            layers.RandomRotation(0.03, fill_mode="nearest", seed=seed + 1),  # ±11°
            layers.RandomTranslation(0.06, 0.06, fill_mode="nearest", seed=seed + 2),
            layers.RandomZoom(0.1, fill_mode="nearest", seed=seed + 3),
            layers.RandomBrightness(0.15, value_range=value_range, seed=seed + 4),
            layers.RandomContrast(0.2, value_range=value_range, seed=seed + 5),
        ],
        name="face_augmenter",
    )


def class_weights(targets: np.ndarray, n_labels: int) -> np.ndarray:
    """float32 (n_labels,): total / (labels × count), so every label weighs the same in the loss
    however unequal the number of photos per person."""
    counts = np.bincount(targets, minlength=n_labels).astype(np.float64)
    weights = np.divide(len(targets), n_labels * counts, out=np.zeros(n_labels), where=counts > 0)
    return weights.astype(np.float32)


def train_model(
    train: FaceSet,
    validation: FaceSet,
    settings: TrainingSettings,
    value_range: tuple[float, float],
    pretrained: keras.Model | None = None,
) -> keras.Model:
    """A freshly built classic CNN fitted on `train`, one progress line per epoch.

    With a validation split, training stops after `settings.patience` epochs without a lower
    validation loss and keeps the best weights. pretrained: an autoencoder whose encoder is
    `classic_encoder`; its convolutions' weights are the CNN's start.
    """
    keras.utils.set_random_seed(settings.seed)
    model = build_classic_cnn(train.crops.shape[1:], len(train.labels), label_smoothing=settings.label_smoothing)
    if pretrained is not None:
        copy_encoder(pretrained, model)
    weights = class_weights(train.targets, len(train.labels))[train.targets]
    batches = tf.data.Dataset.from_tensor_slices((train.crops, model_targets(train), weights))
    batches = batches.shuffle(len(train.targets), seed=settings.seed).batch(settings.batch_size)
    if settings.augment:
        augmenter = face_augmenter(value_range, settings.seed)
        batches = batches.map(lambda x, y, w: (augmenter(x, training=True), y, w))
    has_validation = len(validation.targets) > 0
    stop_early = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=settings.patience, restore_best_weights=True
    )
    model.fit(
        batches.prefetch(2),
        validation_data=(validation.crops, model_targets(validation)) if has_validation else None,
        epochs=settings.epochs,
        callbacks=[stop_early] if has_validation else [],
        shuffle=False,  # the batches are already shuffled with the seed
        verbose=2,
    )
    return model


def evaluate(source: SourceModel, faces: FaceSet) -> dict:
    """`edgeface.metrics.classification_report` of the float model on `faces`."""
    predicted = np.argmax(source.probabilities(faces.crops), axis=1)
    return classification_report(faces.targets, predicted, faces.labels)
