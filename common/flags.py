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
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

Settings = TypeVar("Settings", bound="DataclassInstance")
Finish = Callable[[Mapping[str, Any]], Mapping[str, Any]]


SWITCH_ON = ("1", "true", "yes", "on")
DURATION = re.compile(r"^(\d+)([smhdw]?)$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# Longer is a slip of the finger, and far longer overflows a timedelta or a date.
MAX_DURATION_DAYS = 36500  # 100 years


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
    metavar: str | None = None
    switch: bool = False  # takes no value (on when given); its variable: 1, true, yes, on

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
        add_argument(parser, flag, env)
    return parser


def add_argument(
    parser: argparse.ArgumentParser,
    flag: Flag,
    env: Mapping[str, str] | None = None,
    *,
    hidden: bool = False,
) -> None:
    """Adds `flag` to `parser`, its variable in `env` (None: os.environ) standing for its
    default. `hidden`: no default and no help (aibridgectl repeats its global flags so on
    every subcommand, so that one left out there keeps the value given before it)."""
    env = os.environ if env is None else env
    if flag.switch:
        value = env[flag.env].lower() in SWITCH_ON if flag.env in env else bool(flag.default)
        options: dict[str, Any] = {"action": "store_true", "default": value}
    else:
        # A variable's text is the flag's default: argparse converts it with `type` only
        # when the flag is absent, and reports a bad value as it would the flag's own.
        options = {
            "default": env.get(flag.env, flag.default),
            "type": flag.type if flag.choices is None else _one_of(flag.choices, flag.type),
            "choices": flag.choices,
            "metavar": flag.metavar,
        }
    options["help"] = flag_help(flag.help, flag.env)
    if hidden:
        options.update(default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    parser.add_argument(flag.name, **options)


def _one_of(choices: Sequence[str], convert: Callable[[str], Any]) -> Callable[[str], Any]:
    """`convert`, refusing a value outside `choices`: argparse checks the choices of a
    value given on the command line but not of a default, which is where a variable's
    value goes (`AIBRIDGE_TUNNEL=DENY` must not leave tunnels open)."""

    def checked(value: str) -> Any:
        if value not in choices:
            shown = ", ".join(map(repr, choices))
            raise argparse.ArgumentTypeError(f"invalid choice: {value!r} (choose from {shown})")
        return convert(value)

    return checked


def listen_address(value: str, flag: str = "--listen") -> tuple[str, int]:
    """HOST:PORT as (host, port): no host is 127.0.0.1, an IPv6 one may be bracketed.
    Raises Invalid."""
    host, _, port = value.rpartition(":")
    if not port.isdigit():
        raise Invalid(f"{flag}: expected HOST:PORT, not {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def optional_path(value: str | None) -> Path | None:
    """A path flag whose empty value means none."""
    return Path(value) if value else None


def parse_duration(value: str) -> int:
    """`90s`, `15m`, `12h`, `30d`, `2w` or plain seconds → seconds (positive, at most
    100 years)."""
    match = DURATION.match(value.strip().lower())
    if not match:
        raise argparse.ArgumentTypeError(
            f"invalid duration {value!r}: use seconds or a number with s, m, h, d or w "
            "(like 90s, 15m, 12h, 30d, 2w)"
        )
    seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"invalid duration {value!r}: must be positive")
    if seconds > MAX_DURATION_DAYS * _UNIT_SECONDS["d"]:
        raise argparse.ArgumentTypeError(
            f"invalid duration {value!r}: at most {MAX_DURATION_DAYS}d (100 years)"
        )
    return seconds


def flag_help(help: str, env: str) -> str:
    return f"{help} [env {env}]".strip()
