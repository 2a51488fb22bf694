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
from common.wire import MAX_REQUEST_ID
from controlplane.errors import InvalidArgument
from controlplane.store.applied_requests import Key, delete_expired
from controlplane.store.db import Database, DatabaseUnavailable

log = logging.getLogger(__name__)

EXPIRY_INTERVAL = 3600.0
# The answers' fields never kept: a new token's plaintext exists once, in the first answer.
_SECRET_ANSWERS = {"CreateToken": "token"}
# The requests' secrets, fingerprinted by their count only: even a hash of a provider key
# would let whoever reads the table confirm a guess of it.
_SECRET_REQUESTS = {"CreateProvider": "keys", "UpdateProvider": "add_keys"}


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
    bare.DiscardUnknownFields()  # a newer client's fields this replica cannot read
    secrets = 0
    if method in _SECRET_REQUESTS:
        secrets = len(getattr(bare, _SECRET_REQUESTS[method]))
        bare.ClearField(_SECRET_REQUESTS[method])
    arguments = bare.SerializeToString(deterministic=True)
    digest = hashlib.sha256(f"{method}\0{secrets}\0".encode() + arguments)
    return Key(request_id, method, digest.hexdigest())


def kept(method: str, answer: Message) -> bytes:
    """What is stored of `answer` for replays: all of it but a new secret."""
    secret = _SECRET_ANSWERS.get(method)
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
    if "replayed" in answer.DESCRIPTOR.fields_by_name:  # says what it lacks (a secret)
        answer.replayed = True  # type: ignore[attr-defined]
    return answer


def exit_after_commit(method: str) -> None:
    """The test hook of --test-exit-after-commit: the window a retry must cover."""
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
