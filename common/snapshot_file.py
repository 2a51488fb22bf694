"""The last applied snapshot on disk, so that a data plane starting while the
controlplane is unreachable can serve what it served before (fail static across
restarts).

bridged's snapshot holds provider keys, so the file is always encrypted, with a key
derived from the role's own credential: whoever can read the file but not the
credential learns nothing. Writes go to a temporary file (mode 0600) that replaces
the old one, so a reader sees the old snapshot or the new one, never half of either.
A process killed in the middle of a write leaves its temporary file behind: the next start
removes it. An unreadable file (damaged, or written under another credential) is ignored.
"""

from __future__ import annotations

import base64
import logging
import os
import tempfile
import time
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from google.protobuf.message import DecodeError

from aibridge.v1 import snapshot_pb2

log = logging.getLogger(__name__)

_KDF_INFO = b"aibridge snapshot cache v1"
# A write takes milliseconds: a temporary file this old belongs to no write in progress
# (another process given the same file by mistake may be writing a newer one).
STALE_AFTER = 60.0


class SnapshotFile:
    def __init__(self, path: Path, credential: str) -> None:
        self.path = path
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_KDF_INFO).derive(
            credential.encode()
        )
        self._fernet = Fernet(base64.urlsafe_b64encode(key))

    def load(self, role: str) -> snapshot_pb2.ProviderSnapshot | None:
        """The saved snapshot for `role`, or None if there is none that can be used."""
        try:
            sealed = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("snapshot cache %s unreadable: %s", self.path, exc)
            return None
        try:
            snapshot = snapshot_pb2.ProviderSnapshot.FromString(self._fernet.decrypt(sealed))
        except InvalidToken:
            log.warning("snapshot cache %s was sealed with another credential; ignored", self.path)
            return None
        except DecodeError:
            log.warning("snapshot cache %s is damaged; ignored", self.path)
            return None
        if snapshot.role != role:
            log.warning("snapshot cache %s holds a %s snapshot; ignored", self.path, snapshot.role)
            return None
        return snapshot

    def remove_stale_temporaries(self) -> int:
        """Removes the temporary files that writes killed midway left beside the cache;
        returns how many there were."""
        removed = 0
        try:
            names = os.listdir(self.path.parent)
        except FileNotFoundError:
            return 0
        for name in names:
            if not name.startswith(self._temporary_prefix):
                continue
            leftover = self.path.parent / name
            try:
                if time.time() - leftover.stat().st_mtime > STALE_AFTER:
                    leftover.unlink()
                    removed += 1
            except FileNotFoundError:
                continue  # gone meanwhile
        if removed:
            log.info("removed %d temporary files left by an interrupted write of %s", removed,
                     self.path)  # fmt: skip
        return removed

    @property
    def _temporary_prefix(self) -> str:
        return f".{self.path.name}."

    def save(self, snapshot: snapshot_pb2.ProviderSnapshot) -> None:
        sealed = self._fernet.encrypt(snapshot.SerializeToString())
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=self._temporary_prefix)
        try:
            with os.fdopen(fd, "wb") as f:  # mkstemp creates the file 0600
                f.write(sealed)
            os.replace(tmp, self.path)
        except BaseException:
            os.unlink(tmp)
            raise
