"""What `train`, `train-gate`, `convert`, `demo` and `eval` of a float model are asked to do, as typed, frozen
options with their defaults in one place.

`edgeface_convert.arguments` makes them from the command line; the commands take nothing else.
No TensorFlow here: the runtime builds these before it knows whether TensorFlow is installed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DEFAULT_FAR = 0.01  # target false-accept rate of strangers for the unknown rule
EMBEDDER_DETECTOR = "yunet"  # the only detector that gives the five landmarks the embedder aligns on
CLASSIC_DETECTOR = "haar"
SMALLEST_INPUT = 22  # three unpadded 3×3 convolutions, each followed by 2×2 pooling, need this many pixels


@dataclass(frozen=True, kw_only=True)
class ClassicOptions:
    """The classic CNN's own settings, which the pretrained embedder has no use for."""

    input_size: int = 64  # width and height, pixels
    grayscale: bool = False
    margin: float = 0.1  # added around each face box, as a fraction of it
    align: bool = False  # eyes turned level (needs YuNet)
    epochs: int = 30
    batch_size: int = 32
    patience: int = 8  # epochs without a better validation loss before training stops
    augment: bool = True
    pretrain: str | None = None  # a folder of unlabelled faces to pretrain the conv stack on, as an autoencoder


@dataclass(frozen=True, kw_only=True)
class TrainOptions:
    """`edgeface train`: the people in `data`/<person>/ to the Keras model file `output`."""

    data: str
    output: str
    detector: str = EMBEDDER_DETECTOR
    validation: float = 0.2  # fraction of each person's photos held out
    seed: int = 0
    keep_no_face: bool = False
    strangers: str | None = None  # a folder of faces, or lfw_subset
    far: float = DEFAULT_FAR
    holdout_identities: int = 0  # people left out of training to serve as strangers
    yunet_model: str | None = None  # YuNet's ONNX file on this machine
    classic: ClassicOptions | None = None  # None: the embedder


@dataclass(frozen=True, kw_only=True)
class ConvertOptions:
    """`edgeface convert`: a float model to an int8 `.tflite`, checked against it.

    `labels`, `detector`, `margin`, `align` and `value_range` describe models that `edgeface train`
    did not make; its own models carry them.
    """

    model: str
    output: str | None = None  # None: the model's path with .tflite
    calibration: str | None = None  # None: the folder train used
    max_calibration: int = 300
    verify: str | None = None  # None: train's validation split
    min_agreement: float = 0.98  # below it the command exits 3
    strangers: str | None = None  # None: train's strangers
    far: float | None = None  # None: train's, else DEFAULT_FAR
    labels: str | None = None
    detector: str = CLASSIC_DETECTOR
    margin: float = 0.1
    align: bool = False
    value_range: tuple[float, float] = (0.0, 1.0)  # the input values of pixel 0 and 255
    trust_model: bool = False  # let a Keras file run the Python code it carries
    json: bool = False
    yunet_model: str | None = None
    gate: str | None = None  # a gate.h5 from `train-gate`, quantized and carried in the model file


@dataclass(frozen=True, kw_only=True)
class GateOptions:
    """`edgeface train-gate`: the face-quality gate, an autoencoder of the unlabelled faces under `faces`, to the
    Keras file `output`.

    The gate crops faces where the model it will serve does: `like` (a trained model's .h5) gives its detector,
    alignment and margin; without it, `detector` with the embedder's alignment and margin. Its own crop is grey,
    `size`×`size`, in 0..1.
    """

    faces: tuple[str, ...]
    output: str
    like: str | None = None
    detector: str | None = None  # None: the model's (`like`), else EMBEDDER_DETECTOR
    keep: float = 0.99  # the share of held-out real faces the threshold keeps
    epochs: int = 150
    size: int = 32  # width and height of the gate's crop, pixels: a multiple of 8
    seed: int = 0
    json: bool = False
    yunet_model: str | None = None


@dataclass(frozen=True, kw_only=True)
class EvalOptions:
    """`edgeface eval` of a float model (a `.tflite` is evaluated by the runtime)."""

    data: str
    model: str
    strangers: str | None = None
    keep_no_face: bool = False
    trust_model: bool = False
    json: bool = False
    yunet_model: str | None = None


@dataclass(frozen=True, kw_only=True)
class DemoOptions:
    """`edgeface demo`: train, convert and scan into `workdir`."""

    workdir: Path = Path("edgeface-demo")
    epochs: int = 25
    seed: int = 0


WorkstationOptions = TrainOptions | GateOptions | ConvertOptions | EvalOptions | DemoOptions
