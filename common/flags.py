"""Flags with AIBRIDGE_* environment equivalents, read in one place per process.

A process declares its flags once, as a sequence of `Flag`, and `parse` turns a command
line and an environment into its frozen settings dataclass: a flag given on the command
line wins over its variable, which wins over the default. Each settings field is filled
from the flag of the same name unless the process's `finish` step derives it (a
listen address split in two, a path read from the state directory, ...).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

Settings = TypeVar("Settings", bound="DataclassInstance")
Finish = Callable[[Mapping[str, Any]], Mapping[str, Any]]


def env_name(flag: str) -> str:
    """`--database-url` → `AIBRIDGE_DATABASE_URL`."""
    return "AIBRIDGE_" + flag.lstrip("-").replace("-", "_").upper()


@dataclass(frozen=True)
class Flag:
    """One command-line flag and the AIBRIDGE_* variable that stands in for it."""

    name: str  # "--max-calls"
    help: str = ""
    default: Any = None
    type: Callable[[str], Any] = str  # also applied to the variable's value
    choices: Sequence[str] | None = None
    env_var: str | None = None  # when not env_name(name)

    @property
    def env(self) -> str:
        return self.env_var or env_name(self.name)


class Invalid(ValueError):
    """Values each flag accepts but the settings refuse together; reported like argparse's
    own errors (usage, the message, exit status 2)."""


def parse(
    settings: type[Settings],
    flags: Sequence[Flag],
    argv: Sequence[str] | None,
    env: Mapping[str, str] | None,
    *,
    prog: str,
    description: str,
    finish: Finish,
) -> Settings:
    """Builds `settings` from `argv` (None: sys.argv) and `env` (None: os.environ).

    `finish` sees every flag's value by its dest, raises `Invalid` for a refused
    combination, and returns the fields it derives; the others are copied by name."""
    parser = parser_for(flags, os.environ if env is None else env, prog, description)
    values = vars(parser.parse_args(argv))
    try:
        derived = finish(values)
    except Invalid as exc:
        parser.error(str(exc))
    chosen = {**values, **derived}
    return settings(**{field.name: chosen[field.name] for field in dataclasses.fields(settings)})


def parser_for(
    flags: Sequence[Flag], env: Mapping[str, str], prog: str, description: str
) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    for flag in flags:
        # A variable's text is the flag's default: argparse converts it with `type` only
        # when the flag is absent, and reports a bad value as it would the flag's own.
        parser.add_argument(
            flag.name,
            default=env.get(flag.env, flag.default),
            type=flag.type,
            choices=flag.choices,
            help=flag_help(flag.help, flag.env),
        )
    return parser


def optional_path(value: str) -> Path | None:
    """A path flag whose empty value means none."""
    return Path(value) if value else None


def add_flag(
    parser: argparse.ArgumentParser,
    flag: str,
    *,
    env: Mapping[str, str] | None = None,
    default: Any = None,
    env_var: str | None = None,
    help: str = "",
    **kwargs: Any,
) -> None:
    """Adds `flag`, whose default comes from its AIBRIDGE_* variable when that is set.
    (For parsers `parse` does not build: aibridgectl's.)"""
    environ = os.environ if env is None else env
    name = env_var or env_name(flag)
    value = environ.get(name, default)
    if value is not None and kwargs.get("type") is not None and isinstance(value, str):
        value = kwargs["type"](value)
    if kwargs.get("action") == "store_true" and isinstance(value, str):
        value = value.lower() in ("1", "true", "yes", "on")
    parser.add_argument(flag, default=value, help=flag_help(help, name), **kwargs)


def flag_help(help: str, env: str) -> str:
    return f"{help} [env {env}]".strip()
