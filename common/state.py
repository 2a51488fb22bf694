"""The local state directory (default `.aibridge/`) and the secrets generated there.

`make run` needs no configuration: each process loads its secrets from here and the
first one to start creates them. Creation is atomic (write a temporary file, then
link it into place), so processes starting together agree on one value.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Callable
from pathlib import Path

DEFAULT_STATE_DIR = ".aibridge"

ADMIN_TOKEN_FILE = "admin.token"
VIEWER_TOKEN_FILE = "viewer.token"
BRIDGED_TOKEN_FILE = "bridged.token"
PROXYD_TOKEN_FILE = "proxyd.token"
ENCRYPTION_KEYS_FILE = "encryption.keys"


def new_credential(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def credential(state_dir: Path, filename: str, prefix: str, given: str | None = None) -> str:
    """`given`, else the credential kept in `state_dir`/`filename`, made (`prefix`_...) by
    the first process to start: the controlplane and a data plane read the same file."""
    return given or load_or_create(state_dir / filename, lambda: new_credential(prefix))


def load_or_create(path: Path, generate: Callable[[], str]) -> str:
    """Returns the secret in `path`, creating it (mode 0600) if it does not exist yet."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:  # mkstemp creates the file 0600
            f.write(generate() + "\n")
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process won the race: use its value
    finally:
        os.unlink(tmp)
    return path.read_text().strip()


def read_if_exists(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except (FileNotFoundError, PermissionError):
        return None
