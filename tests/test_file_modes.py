"""Every file the gateway writes is its user's alone (0600): the SQLite database and the
-wal and -shm files beside it, secrets, the proxy CA, the snapshot caches, the lock."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

from tests.harness import Bridged, Controlplane, Proxyd, Secrets


def modes(directory: Path) -> dict[str, str]:
    return {
        str(path.relative_to(directory)): oct(stat.S_IMODE(path.stat().st_mode))
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


def test_every_file_the_gateway_writes_is_0600(tmp_path: Path, secrets: Secrets) -> None:
    state = tmp_path / "state"
    state.mkdir()
    # A database left by an older release, readable by everyone, with its WAL beside it.
    database = state / "aibridge.db"
    old_umask = os.umask(0o022)
    try:
        with sqlite3.connect(database) as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("CREATE TABLE leftover (x)")
    finally:
        os.umask(old_umask)
    database.chmod(0o644)

    cp = Controlplane(f"sqlite:///{database}", tmp_path, secrets).start()
    bridged = Bridged([cp.address], tmp_path, secrets).start()
    proxyd = Proxyd([cp.address], bridged.url, tmp_path, secrets).start()
    try:
        cp.admin.wait_applied(cp.admin.create_provider("p").revision)
        files = modes(state)
        for name in ("aibridge.db", "aibridge.db-wal", "aibridge.db-shm", "bridged.snapshot",
                     "proxyd.snapshot", "proxyd-ca.pem", "proxyd-ca.key"):  # fmt: skip
            assert name in files, files
        assert set(files.values()) == {"0o600"}, files
    finally:
        for process in (proxyd, bridged, cp):
            process.stop()
