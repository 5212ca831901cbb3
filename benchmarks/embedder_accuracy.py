"""The embedder (dlib's ResNet on YuNet-aligned chips, float and int8) on lfw_dev split into known people and
strangers (lfw_split.py): float Keras against int8 LiteRT, latency, sizes. Run by accuracy.py; needs TensorFlow.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgeface.artefact import ModelMetadata
from edgeface.dataset import evenly_spaced, load_labelled_faces
from edgeface.embedder import FaceEmbedder
from edgeface_convert.embedder_net import load_dlib_embedder
from edgeface_convert.embedder_train import EMBEDDING_SIZE, cosines, embedder_preprocessing
from edgeface_convert.keras_io import SourceModel
from edgeface_convert.quantize import to_float_flatbuffer, to_int8_flatbuffer, write_model
from lfw_split import PeopleSplit, embed_all, recognition_figures, roles_of
from timing import median_ms, other_load


def embedder_files(source: SourceModel, calibration: np.ndarray, folder: Path) -> tuple[Path, Path]:
    """The int8 and float .tflite files of the embedder, with edgeface metadata and no gallery."""
    int8_path, float_path = folder / "embedder-int8.tflite", folder / "embedder-float.tflite"
    write_model(to_int8_flatbuffer(source, calibration), source.metadata, int8_path, calibration)
    write_model(to_float_flatbuffer(source), source.metadata, float_path, calibration)
    return int8_path, float_path


def embedder_latencies(int8_path: Path, float_path: Path, face: np.ndarray) -> dict:
    """Median ms per face at batch 1 on LiteRT, and the cores other work kept busy just before."""
    result = {"other_load_cores": other_load()}
    for threads in (1, 2):
        for kind, path in (("int8", int8_path), ("float", float_path)):
            embedder = FaceEmbedder(path, threads=threads)
            result[f"{kind}_tflite_{threads}t_ms"] = median_ms(lambda: embedder.embed(face))
    return result


def embedder_results(
    root: Path, split: PeopleSplit, calibration_count: int, folder: Path, yunet: Path, say: Callable[[str], None]
) -> dict:
    """Everything measured for the embedder on `split`, finding faces with YuNet's file `yunet`."""
    spec = embedder_preprocessing("yunet").with_detector(model=str(yunet))
    started = time.monotonic()
    faces = load_labelled_faces(root, spec)
    read_seconds = time.monotonic() - started
    say(f"embedder: YuNet found a face in {len(faces.paths)} photos, none in {len(faces.no_face)}, "
        f"in {read_seconds:.0f} s; embedding them with the float Keras model")  # fmt: skip
    model = load_dlib_embedder()
    float_embeddings = np.asarray(model.predict(faces.crops, batch_size=32, verbose=0), dtype=np.float32)
    metadata = ModelMetadata(labels=(), output="embedding", preprocessing=spec, kind="embedder",
                             embedding_size=EMBEDDING_SIZE)  # fmt: skip
    source = SourceModel(Path("dlib_resnet.h5"), metadata, keras_model=model)
    gallery = np.flatnonzero(roles_of(split, faces.paths) == "gallery")
    calibration = faces.crops[evenly_spaced(list(gallery), calibration_count)]
    say(f"embedder: converting to int8 (calibrated on {len(calibration)} gallery faces) and to float .tflite")
    int8_path, float_path = embedder_files(source, calibration, folder)
    int8_embeddings = embed_all(FaceEmbedder(int8_path, threads=2), faces.crops)
    test = roles_of(split, faces.paths) == "test"
    similarity = cosines(float_embeddings[test], int8_embeddings[test])
    say("embedder: timing")
    return {
        "detector": "yunet",
        "photos_with_face": len(faces.paths),
        "photos_without_face": len(faces.no_face),
        "test_photos_without_face": sum(split.roles[path] == "test" for path in faces.no_face),
        "read_detect_align_ms_per_photo": 1000 * read_seconds / max(1, len(faces.paths) + len(faces.no_face)),
        "calibration_faces": len(calibration),
        "cosine_int8_vs_float": {"faces": int(test.sum()), "min": float(similarity.min()),
                                 "median": float(np.median(similarity))},  # fmt: skip
        "float": recognition_figures(split, faces.paths, float_embeddings),
        "int8": recognition_figures(split, faces.paths, int8_embeddings),
        "latency": embedder_latencies(int8_path, float_path, faces.crops[:1]),
        "float_tflite_bytes": float_path.stat().st_size,
        "int8_tflite_bytes": int8_path.stat().st_size,
    }
