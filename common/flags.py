"""Flags with AIBRIDGE_* environment equivalents, read in one place per process."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from typing import Any


def env_name(flag: str) -> str:
    """`--database-url` → `AIBRIDGE_DATABASE_URL`."""
    return "AIBRIDGE_" + flag.lstrip("-").replace("-", "_").upper()


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
    """Adds `flag`, whose default comes from its AIBRIDGE_* variable when that is set."""
    environ = os.environ if env is None else env
    name = env_var or env_name(flag)
    value = environ.get(name, default)
    if value is not None and kwargs.get("type") is not None and isinstance(value, str):
        value = kwargs["type"](value)
    if kwargs.get("action") == "store_true" and isinstance(value, str):
        value = value.lower() in ("1", "true", "yes", "on")
    parser.add_argument(flag, default=value, help=f"{help} [env {name}]".strip(), **kwargs)
