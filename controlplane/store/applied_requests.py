"""The idempotency keys of admin mutations: each applied request_id, written in its
mutation's transaction with the answer it got, and kept `KEEP`.

`check` runs once the mutation holds the revision lock, so two calls with one key are
in order: the second finds the first's row (committed with its change) and replays it.
`check_committed` looks first, without the lock: a retry of a change long committed
replays at once instead of queueing behind the mutations in progress.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.orm import Session

from controlplane.errors import InvalidArgument
from controlplane.store.db import Database
from controlplane.store.models import AppliedRequest, utcnow

KEEP = timedelta(hours=24)
DELETE_BATCH = 1000


@dataclass(frozen=True)
class Key:
    request_id: str
    method: str
    fingerprint: str  # of the request without its request_id


class Replay(Exception):
    """The key was applied already: nothing changes, and this is the first answer."""

    def __init__(self, method: str, revision: int, reply: bytes) -> None:
        super().__init__(f"{method} already applied at revision {revision}")
        self.method = method
        self.revision = revision
        self.reply = reply


def check(session: Session, key: Key) -> None:
    """Raises Replay if `key` was applied within KEEP, and InvalidArgument if it was
    applied for another call."""
    row = session.get(AppliedRequest, key.request_id)
    if row is not None and _expired(row):
        # Not deleted yet, but as good as gone. A statement, not session.delete: the
        # expiry task may delete it first.
        session.execute(delete(AppliedRequest).where(AppliedRequest.request_id == key.request_id))
        return
    _judge(row, key)


def check_committed(db: Database, key: Key) -> None:
    """`check` without the revision lock, on what is committed already."""
    with db.read() as session:
        row = session.get(AppliedRequest, key.request_id)
        if row is not None and not _expired(row):
            _judge(row, key)


def _expired(row: AppliedRequest) -> bool:
    """Applied more than KEEP ago: as good as gone, deleted or not."""
    return row.applied_at < utcnow() - KEEP


def _judge(row: AppliedRequest | None, key: Key) -> None:
    if row is None:
        return
    if (row.method, row.fingerprint) != (key.method, key.fingerprint):
        other = "with other arguments" if row.method == key.method else f"({row.method})"
        raise InvalidArgument(
            "request_id",
            f"was given to another call {other} within the last 24 hours: "
            "each change needs a request_id of its own",
        )
    raise Replay(row.method, row.revision, row.reply)


def record(session: Session, key: Key, revision: int, reply: bytes) -> None:
    session.add(
        AppliedRequest(
            request_id=key.request_id,
            method=key.method,
            fingerprint=key.fingerprint,
            revision=revision,
            reply=reply,
            applied_at=utcnow(),
        )
    )


def delete_expired(db: Database, now: datetime | None = None) -> int:
    """Deletes the keys applied more than KEEP before `now`, a batch per transaction;
    returns how many."""
    before = (now or utcnow()) - KEEP
    deleted = 0
    while True:
        count = db.delete_before(
            AppliedRequest.request_id, AppliedRequest.applied_at, before, DELETE_BATCH
        )
        deleted += count
        if count < DELETE_BATCH:
            return deleted
