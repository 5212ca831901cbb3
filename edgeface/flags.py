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
    """Adds a flag for each setting of `kind` (or for the dotted names in `only`); each flag's dest is
    the setting's dotted name."""
    for key in keys_of(kind).values():
        if only is None or key.name in only:
            _add_flag(parser, key)


def given(args: argparse.Namespace, kind: type) -> dict[str, object]:
    """The values of `kind`'s flags that were given (or come from their variable), by dotted name."""
    values = {name: getattr(args, name, None) for name in keys_of(kind)}
    return {name: value for name, value in values.items() if value is not None}


def _add_flag(parser: argparse.ArgumentParser, key: Key) -> None:
    options: dict[str, object] = {"help": _help(key)}
    if key.kind is bool:
        options["action"] = argparse.BooleanOptionalAction
    else:
        choices = key.check.choices if key.check else None
        named = key.flags[-1].lstrip("-").replace("-", "_").upper()  # argparse's own would be the dotted dest
        options.update(type=key.kind, choices=choices, metavar=key.detail("metavar") or (None if choices else named))
    if key.flags[0].startswith("-"):
        variable = key.detail("env")
        parser.add_argument(*key.flags, dest=key.name, default=os.environ.get(variable) if variable else None,
                            **options)  # fmt: skip
    else:  # a positional argument, shown by its name; its dest is the dotted key
        parser.add_argument(key.name, nargs="?", **{**options, "metavar": key.flags[0]})


def _help(key: Key) -> str:
    """The setting's help and where its default comes from; argparse's % signs escaped."""
    text = key.help.replace("%", "%%")
    if key.detail("env"):
        return f"{text} (default: ${key.detail('env')})"
    if key.default is not None and key.default is not False:
        return f"{text} (default: {key.default})"
    return text
