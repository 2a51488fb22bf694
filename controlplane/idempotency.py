"""Idempotent admin mutations, the service's side: a call's key, the answer kept for its
replays, and the task that forgets keys after 24 hours (the table's side is
controlplane/store/applied_requests.py).

A controlplane that commits a change and dies before answering leaves the caller blind;
the caller retries with the same request_id (through any replica) and gets the first
answer back, the change made once.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from typing import Any

from google.protobuf.message import Message

from aibridge.v1 import admin_pb2
from controlplane.errors import InvalidArgument
from controlplane.store.applied_requests import Key, delete_expired
from controlplane.store.db import Database, DatabaseUnavailable

log = logging.getLogger(__name__)

# The trailing metadata of a replayed answer.
REPLAYED = "aibridge-replayed"
MAX_REQUEST_ID = 128
EXPIRY_INTERVAL = 3600.0
# The answers' fields never kept: a new token's plaintext exists once, in the first answer.
_SECRET_FIELDS = {"CreateToken": "token"}
# Test hook: a controlplane started with this set to a method's name exits right after
# committing that method's change, before answering (the window a retry must cover).
EXIT_AFTER_COMMIT = os.environ.get("AIBRIDGE_TEST_EXIT_AFTER_COMMIT", "")


def key_of(method: str, request: Any) -> Key | None:
    """The call's idempotency key, or None if it has no request_id."""
    request_id: str = request.request_id
    if not request_id:
        return None
    if not (len(request_id) <= MAX_REQUEST_ID and request_id.isascii()
            and request_id.isprintable()):  # fmt: skip
        raise InvalidArgument(
            "request_id", f"must be 1 to {MAX_REQUEST_ID} printable ASCII characters"
        )
    bare = type(request)()
    bare.CopyFrom(request)
    bare.ClearField("request_id")
    arguments = bare.SerializeToString(deterministic=True)
    fingerprint = hashlib.sha256(method.encode() + b"\0" + arguments).hexdigest()
    return Key(request_id, method, fingerprint)


def kept(method: str, answer: Message) -> bytes:
    """What is stored of `answer` for replays: all of it but a new secret."""
    secret = _SECRET_FIELDS.get(method)
    if secret is None:
        return answer.SerializeToString()
    copy = type(answer)()
    copy.CopyFrom(answer)
    copy.ClearField(secret)
    return copy.SerializeToString()


def replayed(method: str, stored: bytes) -> Message:
    """The first call's answer, from what `kept` stored."""
    output = admin_pb2.DESCRIPTOR.services_by_name["Admin"].methods_by_name[method].output_type
    answer: Message = getattr(admin_pb2, output.name).FromString(stored)
    if method in _SECRET_FIELDS:
        answer.replayed = True  # type: ignore[attr-defined]  # the secret is not in it
    return answer


def exit_if_testing(method: str) -> None:
    if EXIT_AFTER_COMMIT == method:
        log.warning("test hook: exiting after committing %s, before answering", method)
        logging.shutdown()
        os._exit(17)


async def forget_expired(db: Database, interval: float = EXPIRY_INTERVAL) -> None:
    """Deletes the keys older than 24 hours, every `interval`."""
    while True:
        try:
            deleted = await asyncio.to_thread(delete_expired, db)
            if deleted:
                log.info("forgot %d admin request ids applied over 24 hours ago", deleted)
        except DatabaseUnavailable as exc:
            log.warning("cannot forget expired admin request ids now: %s", exc)
        await asyncio.sleep(interval)
