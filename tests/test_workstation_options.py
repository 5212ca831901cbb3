"""The flags of train, convert and demo become typed options with the defaults the help shows, and
flags that do not fit are refused before TensorFlow loads."""

import re
from pathlib import Path

import pytest

from edgeface.cli import build_parser
from edgeface_convert.arguments import options_from
from edgeface_convert.common import CommandError
from edgeface_convert.options import ClassicOptions, ConvertOptions, DemoOptions, TrainOptions
from helpers import run_without_tensorflow


@pytest.fixture(autouse=True)
def inputs_in_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The folders and files the command lines below name, in the working folder."""
    monkeypatch.chdir(tmp_path)
    for folder in ("faces", "others"):
        (tmp_path / folder).mkdir()
    for name in ("m.h5", "m.keras"):
        (tmp_path / name).write_bytes(b"")


def options(*argv: str):
    return options_from(build_parser().parse_args(argv))


def test_left_out_flags_give_the_options_defaults():
    assert options("train", "faces", "-o", "m.h5") == TrainOptions(data="faces", output="m.h5")
    assert options("convert", "m.h5") == ConvertOptions(model="m.h5")
    assert options("demo") == DemoOptions()


def test_the_classic_cnn_gets_its_defaults_and_the_haar_cascade():
    classic = options("train", "faces", "-o", "m.h5", "--arch", "classic")
    assert classic == TrainOptions(data="faces", output="m.h5", detector="haar", classic=ClassicOptions())


def test_given_flags_reach_the_options():
    train = options("train", "faces", "-o", "m.h5", "--arch", "classic", "--input-size", "32", "--grayscale",
                    "--no-augment", "--epochs", "5", "--detector", "none", "--far", "0.05")  # fmt: skip
    assert train.detector == "none" and train.far == 0.05
    assert train.classic == ClassicOptions(input_size=32, grayscale=True, epochs=5, augment=False)
    convert = options("convert", "m.keras", "--value-range", "-1", "1", "--trust-model", "--far", "0.1", "--json")
    assert convert.value_range == (-1.0, 1.0) and convert.trust_model and convert.far == 0.1 and convert.json
    assert options("demo", "--dir", "here", "--epochs", "3") == DemoOptions(workdir=Path("here"), epochs=3)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--epochs", "5", "--grayscale"], "--grayscale, --epochs: only for --arch classic (the embedder is pretrained)"),
        (["--no-augment"], "--no-augment: only for --arch classic"),
        (["--detector", "haar"], "--detector haar: the embedder needs faces aligned by their five landmarks"),
        (["--arch", "classic", "--input-size", "16"], "--input-size 16: the classic CNN needs at least 22 pixels"),
    ],
)
def test_flags_that_do_not_fit_are_refused(flags: list, message: str):
    with pytest.raises(CommandError, match=re.escape(message)):
        options("train", "faces", "-o", "m.h5", *flags)


def test_the_refusal_comes_before_tensorflow_is_looked_for():
    argv = ["train", "faces", "-o", "m.h5", "--epochs", "5"]
    run = run_without_tensorflow(*argv)
    assert run.returncode == 2
    assert run.stderr.splitlines() == [
        "edgeface: error: --epochs: only for --arch classic (the embedder is pretrained)",
        "HEAVY []",
    ]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "facez", "-o", "m.h5"], "DIR facez: no such folder"),
        (["train", "faces", "-o", "m.h5", "--strangers", "typo/"], "--strangers typo/: no such folder (a folder of faces, or lfw_subset)"),
        (["convert", "m.h5", "--calibration", "nowhere"], "--calibration nowhere: no such folder"),
        (["convert", "m.h5", "--labels", "labels.txt"], "--labels labels.txt: no such file"),
        (["convert", "gone.h5"], "MODEL gone.h5: no such file or folder"),
    ],
)
def test_every_input_named_is_checked_before_any_work(argv: list, message: str):
    """`train --strangers typo/` failed only after the whole training run."""
    with pytest.raises(CommandError, match=re.escape(message)):
        options(*argv)
    assert options("train", "faces", "-o", "m.h5", "--strangers", "lfw_subset").strangers == "lfw_subset"
