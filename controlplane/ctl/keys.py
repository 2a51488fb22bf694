"""Provider keys on the command line: given inline, or read from a file or standard input
so that they stay out of the process list and the shell's history."""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from controlplane.ctl.errors import CtlError


@dataclass(frozen=True)
class KeySource:
    """A provider key as given on the command line: the key itself, or where to read it
    (a file, or `-` for standard input), so that it stays out of the process list and
    the shell's history. Sources keep their order: it is the failover order."""

    key: str = field(default="", repr=False)
    path: str = ""

    @classmethod
    def given(cls, value: str) -> KeySource:
        return cls(path="-") if value == "-" else cls(key=value)

    @classmethod
    def file(cls, path: str) -> KeySource:
        return cls(path=path)


def add_key_sources(parser: argparse.ArgumentParser, flag: str, dest: str, what: str) -> None:
    """FLAG KEY|- and FLAG-file PATH, into one list: a key's source keeps its place."""
    parser.add_argument(
        flag, action="append", default=[], dest=dest, type=KeySource.given, metavar="KEY|-",
        help=f"{what}; - reads it from standard input",
    )  # fmt: skip
    parser.add_argument(
        f"{flag}-file", action="append", dest=dest, type=KeySource.file, metavar="PATH",
        help=f"{what}, read from PATH: the whole file is one key (a credential JSON may span "
        "many lines; repeat the option for more keys), kept out of the process list and shell "
        "history",
    )  # fmt: skip


def read_keys(sources: Sequence[KeySource]) -> list[str]:
    """Each source's key. A file (or standard input) holds one key, surrounding
    whitespace aside. From a terminal, `-` asks for it without echoing it."""
    if sum(source.path == "-" for source in sources) > 1:
        raise CtlError("only one key can come from standard input (-); use --key-file for more")
    keys = []
    for source in sources:
        if not source.path:
            keys.append(source.key)
            continue
        try:
            if source.path == "-" and sys.stdin.isatty():
                text = getpass.getpass("provider key (not shown): ")
            elif source.path == "-":
                text = sys.stdin.read()
            else:
                text = Path(source.path).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise CtlError(f"cannot read a key from {source.path}: {reason}") from None
        if not text.strip():
            where = "standard input" if source.path == "-" else source.path
            raise CtlError(f"{where} holds no key")
        keys.append(text.strip())
    return keys
