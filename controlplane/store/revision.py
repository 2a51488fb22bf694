"""Moving the revision forward when the database went back in time.

A database restored from a backup has a lower revision than the snapshots data planes
hold, with the same identity; they would ignore every change until the counter caught
up. When a subscriber reports a version above the database's revision, the revision
jumps past it (an audited mutation that changes nothing else), so every subscriber
takes the database's current state as new.
"""

from __future__ import annotations

from controlplane.store import audit
from controlplane.store.db import Database


def advance_past(db: Database, version: int, reason: str) -> int | None:
    """Moves the revision past `version`; returns the new one, or None if it already is."""
    if db.current_revision() > version:
        return None
    with db.mutation(at_least=version + 1) as m:
        audit.record(
            m, "controlplane", "revision.advance", "revision", {"past": version, "reason": reason}
        )
        return m.revision
