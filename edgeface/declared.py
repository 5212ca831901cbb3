"""Declared settings: dataclass fields that carry their default, their check and their help.

The daemon's settings tree and each detector's settings are frozen dataclasses of such fields, so
one declaration says a value's type, its range (with the reason a value fails it) and the text that
`--help` and the error messages show. Building one of these dataclasses checks every value, so a
settings object that exists is a valid one.
"""

from __future__ import annotations

import math
import typing
from collections.abc import Callable, Mapping
from dataclasses import Field, dataclass, field, fields, is_dataclass, replace
from functools import cache
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Check:
    """A test that a value must pass, and the reason said when it fails ("must be 1 to 64").

    choices: the only values allowed, when the check is a list of them (a flag offers them).
    """

    passes: Callable[[Any], bool]
    reason: str
    choices: tuple[str, ...] | None = None


def within(low: float, high: float, reason: str, low_open: bool = False) -> Check:
    """A finite number in [low, high], or in (low, high] with `low_open`."""
    return Check(lambda value: math.isfinite(value) and (low < value if low_open else low <= value) and value <= high,
                 reason)  # fmt: skip


def at_least(low: float, reason: str) -> Check:
    """A finite number of at least `low`."""
    return within(low, math.inf, reason)


def one_of(choices: tuple[str, ...]) -> Check:
    return Check(lambda value: value in choices, f"must be one of {', '.join(choices)}", choices)


def setting(default: object, help: str, check: Check | None = None, **details: object) -> Any:
    """A field with its default, its help and its check. `details` are read by the users of the
    declaration: `flags` (its spelling on the command line; a name without dashes is a positional
    argument), `metavar`, `env` (the environment variable that gives the flag its default),
    `stored=False` (a detector setting of this machine, not written into a model) and `before` (the value that
    does what versions without the setting did, for a model they wrote)."""
    return field(default=default, metadata={"help": help, "check": check, **details})


def section(kind: type) -> Any:
    """A field that holds a nested settings dataclass (a TOML table), its defaults unless given."""
    return field(default_factory=kind)


class Invalid(ValueError):
    """A value of the wrong type or outside its range; the message is `name reason`."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"{name} {reason}")
        self.name, self.reason = name, reason


@cache
def _hints(kind: type) -> dict[str, object]:
    return typing.get_type_hints(kind)


def value_type(kind: type, name: str) -> type:
    """The type that field `name` of `kind` holds, without its `| None`."""
    hint = _hints(kind)[name]
    return next((arg for arg in typing.get_args(hint) if arg is not type(None)), hint)


def _optional(kind: type, name: str) -> bool:
    return type(None) in typing.get_args(_hints(kind)[name])


def converted(kind: type, declared: Field, value: object) -> object:
    """`value` as field `declared` of `kind` holds it: an int where a float goes becomes one, and ""
    leaves an optional text unset (as the example config shows). Invalid says why it cannot be used."""
    wanted = value_type(kind, declared.name)
    if wanted is float and type(value) is int:
        value = float(value)
    if _optional(kind, declared.name) and value in (None, ""):
        return None
    if type(value) is not wanted:
        raise Invalid(declared.name, f"must be {'an' if wanted is int else 'a'} {wanted.__name__}, not {value!r}")
    check: Check | None = declared.metadata.get("check")
    if check and not check.passes(value):
        raise Invalid(declared.name, f"{check.reason}, not {value!r}")
    return value


class Checked:
    """Base of a settings dataclass: building one converts and checks every field (Invalid if one fails)."""

    def __post_init__(self) -> None:
        for declared in fields(self):
            if not is_dataclass(value_type(type(self), declared.name)):  # a section checked itself
                object.__setattr__(self, declared.name, converted(type(self), declared, getattr(self, declared.name)))


@dataclass(frozen=True)
class Key:
    """One setting of a tree, by its dotted name (`detector.min_face`), with its declaration."""

    name: str
    owner: type
    declared: Field

    @property
    def kind(self) -> type:
        return value_type(self.owner, self.declared.name)

    @property
    def default(self) -> object:
        return self.declared.default

    @property
    def help(self) -> str:
        return self.declared.metadata["help"]

    @property
    def check(self) -> Check | None:
        return self.declared.metadata.get("check")

    @property
    def flags(self) -> tuple[str, ...]:
        """Its spelling on the command line: declared, or `--` and its field name with dashes."""
        return self.declared.metadata.get("flags", ("--" + self.declared.name.replace("_", "-"),))

    @property
    def dest(self) -> str:
        """Where argparse keeps its flag's value: the flag's own name (`--min-face`: `min_face`)."""
        return self.flags[-1].lstrip("-").replace("-", "_").lower()

    def detail(self, name: str) -> object:
        return self.declared.metadata.get(name)

    def converted(self, value: object) -> object:
        """`value` as this setting holds it; Invalid names the dotted key."""
        try:
            return converted(self.owner, self.declared, value)
        except Invalid as error:
            raise Invalid(self.name, error.reason) from None


def keys_of(kind: type, prefix: str = "") -> dict[str, Key]:
    """Every setting of `kind` and its sections, by dotted name, in declaration order."""
    keys: dict[str, Key] = {}
    for declared in fields(kind):
        inner = value_type(kind, declared.name)
        if is_dataclass(inner):
            keys.update(keys_of(inner, f"{prefix}{declared.name}."))
        else:
            keys[prefix + declared.name] = Key(prefix + declared.name, kind, declared)
    return keys


def built(kind: type[T], values: Mapping[str, object], prefix: str = "") -> T:
    """A `kind` of `values` by dotted name (its defaults for the rest); Invalid if one fails its check."""
    given = {}
    for declared in fields(kind):
        inner = value_type(kind, declared.name)
        if is_dataclass(inner):
            given[declared.name] = built(inner, values, f"{prefix}{declared.name}.")
        elif prefix + declared.name in values:
            given[declared.name] = values[prefix + declared.name]
    return kind(**given)


def value_at(tree: object, key: str) -> object:
    """The value of dotted `key` in `tree`."""
    for name in key.split("."):
        tree = getattr(tree, name)
    return tree


def with_values(tree: T, values: Mapping[str, object]) -> T:
    """A copy of `tree` with `values` by dotted name."""
    for key, value in values.items():
        first, _, rest = key.partition(".")
        tree = replace(tree, **{first: with_values(getattr(tree, first), {rest: value}) if rest else value})
    return tree


def dotted(table: Mapping[str, object], prefix: str = "") -> dict[str, object]:
    """A nested mapping (a TOML file's tables, a model's metadata) flattened to dotted keys: {"a": {"b": 1}} gives
    {"a.b": 1}, as settings are named."""
    flat: dict[str, object] = {}
    for name, value in table.items():
        key = f"{prefix}{name}"
        if isinstance(value, Mapping):
            flat.update(dotted(value, f"{key}."))
        else:
            flat[key] = value
    return flat
