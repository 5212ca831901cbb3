"""The command line as a user meets it: help, version, exit codes and one-line errors.

The version runs `python -m edgeface` as a new interpreter and the usage errors run as processes, the way from the
command to its exit code;
the other refusals run the same `main` in this process (`run_in_process`), without the half second of imports a
process costs each."""

from pathlib import Path

import pytest

import edgeface
from edgeface.cli import COMMANDS, build_parser
from helpers import run_as_a_user_would, run_edgeface_together, run_in_process


def test_version():
    run = run_as_a_user_would("--version")
    assert run.returncode == 0 and run.stdout.strip() == f"edgeface {edgeface.__version__}"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_help_that_explains_it(command, capsys):
    with pytest.raises(SystemExit) as stop:
        build_parser().parse_args([command, "--help"])
    assert stop.value.code == 0
    assert len(capsys.readouterr().out.splitlines()) > 5


def test_scan_without_a_model_says_how_to_give_one(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("EDGEFACE_MODEL", raising=False)
    run = run_in_process("scan", str(tmp_path), "--db", str(tmp_path / "log.db"))
    assert run.returncode == 2
    assert run.stderr.strip() == "edgeface: error: no model: pass --model FILE.tflite or set EDGEFACE_MODEL"


def test_a_missing_model_file_is_a_clear_error(tmp_path: Path):
    missing = tmp_path / "nope.tflite"
    run = run_in_process("scan", str(tmp_path), "--model", str(missing), "--db", str(tmp_path / "l.db"))
    assert run.returncode == 2
    assert "cannot read model" in run.stderr and "nope.tflite" in run.stderr


def test_a_file_that_is_not_a_model_is_a_clear_error(astronaut_file: Path, tmp_path: Path):
    run = run_in_process("scan", str(tmp_path), "--model", str(astronaut_file), "--db", str(tmp_path / "l.db"))
    assert run.returncode == 2
    assert "is not a TFLite model" in run.stderr


def test_usage_errors_exit_2():
    without_paths, unknown = run_edgeface_together(["scan"], ["no-such-command"])
    assert without_paths.returncode == 2 and unknown.returncode == 2


@pytest.mark.parametrize("flag, value", [("--workers", "0"), ("--workers", "100000"), ("--threads", "0"), ("--threads", "100000")])
def test_scan_refuses_workers_and_threads_out_of_range(tmp_path: Path, flag: str, value: str):
    run = run_in_process("scan", str(tmp_path), "--model", str(tmp_path / "m.tflite"), flag, value)
    assert run.returncode == 2 and run.stderr.strip() == f"edgeface: error: {flag} must be 1 to 64, not {value}"


@pytest.mark.parametrize("args, message", [(["--before", ""], "'' is not a time"), (["--person", ""], "name must be"),
                                           (["--person", "a\nb"], "control characters")])  # fmt: skip
def test_forget_with_an_empty_or_forged_value_is_one_line_not_a_traceback(tmp_path: Path, args: list, message: str):
    db = tmp_path / "log.db"
    db.touch()
    run = run_in_process("forget", *args, "--db", str(db))
    assert run.returncode == 2 and message in run.stderr and "Traceback" not in run.stderr
