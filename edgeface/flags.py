"""Command-line flags derived from declared settings (`edgeface.declared`).

Each setting's flag takes its spelling, type, choices and help from the declaration, so a setting
and its flag cannot drift apart. A flag's argparse default is None ("not given"), so that only the
flags given override a config file; a setting that declares `env` takes that environment variable
as its flag's default instead, read here, once, when the parser is built: the one place the
command line reads such a variable.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterable

from edgeface.declared import Key, keys_of


def add_flags(parser: argparse.ArgumentParser, kind: type, only: Iterable[str] | None = None) -> None:
    """Adds a flag for each setting of `kind` (or for the dotted names in `only`); each flag keeps its
    value under its own name (`args.min_face`), as a hand-written flag would."""
    for key in keys_of(kind).values():
        if only is None or key.name in only:
            _add_flag(parser, key)


def given(args: argparse.Namespace, kind: type) -> dict[str, object]:
    """The values of `kind`'s flags that were given (or come from their variable), by dotted name."""
    values = {name: getattr(args, key.dest, None) for name, key in keys_of(kind).items()}
    return {name: value for name, value in values.items() if value is not None}


def _add_flag(parser: argparse.ArgumentParser, key: Key) -> None:
    options: dict[str, object] = {"help": _help(key)}
    if key.kind is bool:
        options["action"] = argparse.BooleanOptionalAction
    else:
        choices = key.check.choices if key.check else None
        options.update(type=key.kind, choices=choices, metavar=key.detail("metavar"))
    if key.flags[0].startswith("-"):
        variable = key.detail("env")
        parser.add_argument(*key.flags, default=os.environ.get(variable) if variable else None, **options)
    else:  # a positional argument, shown by its name
        parser.add_argument(key.dest, nargs="?", **{**options, "metavar": key.flags[0]})


def _help(key: Key) -> str:
    """The setting's help and where its default comes from; argparse's % signs escaped."""
    text = key.help.replace("%", "%%")
    if key.detail("env"):
        return f"{text} (default: ${key.detail('env')})"
    if key.default is not None and key.default is not False:
        return f"{text} (default: {key.default})"
    return text
