"""The README matches the code: CI runs its test command, and every flag it shows exists."""

import re

import pytest

from edgeface.cli import COMMANDS, build_parser
from helpers import REPO

README = (REPO / "README.md").read_text()


def test_ci_runs_the_readme_test_commands():
    """Both tiers' commands: the device tier's and the one that runs every tier."""
    commands = [line for line in README.splitlines() if "pytest" in line and line.startswith("python3 -m venv")]
    ci_lines = [line.replace(" -q", "") for line in (REPO / ".ci" / "run").read_text().splitlines()]
    assert len(commands) == 2 and all(command in ci_lines for command in commands), commands


def _options(command: str) -> set[str]:
    subparsers = next(a for a in build_parser()._actions if a.dest == "command")
    return {flag for action in subparsers.choices[command]._actions for flag in action.option_strings}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_is_documented_with_flags_that_exist(command):
    mentions = re.findall(rf"edgeface {command}(?![\w-])([^`\n|]*)", README)  # `train`, not `train-gate`
    assert mentions, f"the README never shows `edgeface {command}`"
    shown = {flag for text in mentions for flag in re.findall(r"(?<![\w-])--[a-z][a-z-]*", text)}
    assert shown <= _options(command), shown - _options(command)
