"""Usage records that a stopping bridged could not deliver (the controlplane was away, or
stopping at the same moment: `make run`'s Ctrl-C), kept on disk and sent after the next
start. A controlplane outage delays usage; a restart during one does not lose it.

Each stopping process writes a file of its own into the spool directory; a starting one
claims every file by renaming it before reading, so that two processes sharing the
directory never both send one. Request ids make a record sent twice harmless anyway.
"""

from __future__ import annotations

import logging
import os
import secrets
import tempfile
from collections.abc import Sequence
from pathlib import Path

from google.protobuf.message import DecodeError

from aibridge.v1 import usage_pb2

log = logging.getLogger(__name__)

_SUFFIX = ".usage"


class UsageSpool:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def save(self, records: Sequence[usage_pb2.Interception]) -> Path:
        """Writes `records` to a new file of the spool (whole or not at all)."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        data = usage_pb2.ReportUsageRequest(interceptions=records).SerializeToString()
        path = self.directory / f"{os.getpid()}-{secrets.token_hex(4)}{_SUFFIX}"
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
        return path

    def take(self) -> list[usage_pb2.Interception]:
        """Every record in the spool, which is emptied; unreadable files are set aside."""
        records: list[usage_pb2.Interception] = []
        for path in sorted(self.directory.glob(f"*{_SUFFIX}")):
            if path.name.startswith("."):
                continue  # claimed by a process, or set aside as damaged
            claimed = path.with_name(f".taken-{os.getpid()}-{path.name}")
            try:
                os.rename(path, claimed)  # another process took it first: skip it
                data = claimed.read_bytes()
            except OSError:
                continue
            try:
                records.extend(usage_pb2.ReportUsageRequest.FromString(data).interceptions)
            except DecodeError:
                log.warning("usage spool file %s is damaged; left aside as %s", path, claimed)
                continue
            claimed.unlink()
        return records
