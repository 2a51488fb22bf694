"""The snapshot subscriber that bridged and proxyd run: connect, apply, acknowledge,
reconnect with backoff and jitter, resync, and keep serving the last snapshot while
the controlplane is away (fail static).

The data plane hands it one function, `apply(snapshot) -> ApplyResult`, that swaps
its own state; everything about the control channel lives here, once.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import secrets
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import grpc

from aibridge.v1 import snapshot_pb2, sync_pb2, sync_pb2_grpc
from common.backoff import Backoff, Sleep
from common.channel import (
    DEFAULT_KEEPALIVE_SECONDS,
    ClientTLS,
    auth_metadata,
    open_aio_channel,
)
from common.lifecycle import wait_set
from common.snapshot_file import SnapshotFile
from common.wire import (
    ACK_ERROR_MAX,
    MAX_SYNC_REQUEST_BYTES,
    SKIPPED_REASON_MAX,
    SkippedProvider,
)

log = logging.getLogger(__name__)

ProviderSnapshot = snapshot_pb2.ProviderSnapshot

# Seconds a data plane starting beside its controlplane waits quietly for it to answer.
STARTUP = 10.0


@dataclass(frozen=True)
class ApplyResult:
    """What the data plane reports back: rows it could not use (the rest were applied)."""

    skipped: Sequence[SkippedProvider] = field(default_factory=tuple)


Apply = Callable[[ProviderSnapshot], "ApplyResult | None | Awaitable[ApplyResult | None]"]


class Subscriber:
    def __init__(
        self,
        addresses: Sequence[str],
        role: str,
        token: str,
        apply: Apply,
        *,
        subscriber_id: str | None = None,
        tls: ClientTLS | None = None,
        backoff_base: float = 0.2,
        backoff_max: float = 5.0,
        ack_timeout: float = 5.0,
        keepalive_seconds: float = DEFAULT_KEEPALIVE_SECONDS,
        cache: SnapshotFile | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if not addresses:
            raise ValueError("at least one controlplane address is needed")
        self.addresses = list(addresses)
        self.role = role
        # Unique per process even where every container's pid is 1.
        self.subscriber_id = (
            subscriber_id or f"{role}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        )
        # Proves, with every Ack and Leave, that this process is the one behind its stream:
        # another process under the same id is another subscriber. Never logged or shown.
        self._instance_key = secrets.token_urlsafe(32)
        self._token = token
        self._apply = apply
        self._tls = tls
        # Jittered: replicas do not reconnect in step.
        self._backoff = Backoff(backoff_base, backoff_max, sleep=sleep)
        self._ack_timeout = ack_timeout
        self._keepalive_seconds = keepalive_seconds
        self._cache = cache
        self._cache_tried = False
        self._ready = asyncio.Event()
        self.current: ProviderSnapshot | None = None
        self.applied_version = 0
        self.connected_to: str | None = None
        self.last_snapshot_at: float | None = None  # time.monotonic() of the last applied one
        self.last_apply_seconds = 0.0  # how long the data plane took to apply it
        self.last_error = ""
        self.from_cache = False  # serving the snapshot saved by an earlier run
        self._skipped: Sequence[SkippedProvider] = ()  # of the applied snapshot, for re-acks
        self._stub: sync_pb2_grpc.SyncStub | None = None  # of the open session, for leave()
        self._leaving = False

    @property
    def connected(self) -> bool:
        return self.connected_to is not None

    async def wait_ready(self, timeout: float | None = None) -> ProviderSnapshot:
        """Waits for the first applied snapshot."""
        if not await wait_set(self._ready, timeout):
            raise TimeoutError("no snapshot applied yet")
        assert self.current is not None
        return self.current

    async def run(self) -> None:
        """Runs until cancelled. Never raises for a lost or refused connection."""
        index = 0
        started = time.monotonic()
        while True:
            address = self.addresses[index % len(self.addresses)]
            got_snapshot = False
            try:
                async for _ in self._session(address):
                    got_snapshot = True
                    self._backoff.reset()
                self.last_error = "stream ended"
                # The controlplane closed it: it is shutting down, and another may answer.
                log.info("controlplane %s ended the stream; reconnecting", address)
            except grpc.aio.AioRpcError as exc:
                self.last_error = f"{exc.code().name}: {exc.details()}"
                if exc.code() in _CONFIG_ERRORS:
                    log.error("controlplane %s: %s", address, self.last_error)
                elif self.connected_to is not None:
                    log.warning(
                        "lost controlplane %s (%s); serving version %d",
                        address, self.last_error, self.applied_version,
                    )  # fmt: skip
                elif self.last_snapshot_at is None and time.monotonic() - started < STARTUP:
                    # Processes started together (make run): the controlplane may be a
                    # moment behind. Not worth a warning unless it stays away.
                    log.info("controlplane %s not answering yet; retrying", address)
                else:
                    log.warning("controlplane %s: %s", address, self.last_error)
            except asyncio.CancelledError:
                self.connected_to = None  # shutting down: nothing was lost
                raise
            except Exception as exc:
                # Fail static: whatever went wrong, the process keeps serving the snapshot
                # it has and keeps trying (a bad snapshot is rejected in its ack, and
                # every failure is in last_error, the log and the fleet's status).
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("subscription to %s failed", address)
            finally:
                self.connected_to = None
            if not got_snapshot:
                self._backoff.failed()
                if self.current is None and self._backoff.failures >= len(self.addresses):
                    await self._serve_cached()  # every address failed: start from the cache
            # Try the next address: the one that failed may be the one that is down.
            index += 1
            await self._backoff.pause()

    async def leave(self, timeout: float = 2.0) -> None:
        """Tells the controlplane this process is shutting down for good, so that no wait
        holds for it; call it just before cancelling run(). A subscriber that vanishes
        without it is waited for during a wait's fleet grace: it may be reconnecting."""
        self._leaving = True  # a snapshot arriving from now on is not acknowledged
        if self._stub is None:
            return  # not connected: nobody to tell
        request = sync_pb2.LeaveRequest(
            subscriber_id=self.subscriber_id, instance_key=self._instance_key
        )
        try:
            await self._stub.Leave(request, metadata=auth_metadata(self._token), timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            # The controlplane is stopping too, say (make run's Ctrl-C): nothing is wrong.
            log.info("controlplane not told of this shutdown: %s", exc.code().name)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # this task is being cancelled
            # grpc cancels a call whose channel closes under it: the controlplane ended the
            # stream meanwhile, and forgets this process by itself.
            log.info("controlplane ended the stream before this shutdown was told")

    async def _session(self, address: str) -> AsyncIterator[ProviderSnapshot]:
        async with open_aio_channel(address, self._tls, self._keepalive_seconds) as channel:
            stub = sync_pb2_grpc.SyncStub(channel)
            request = sync_pb2.WatchRequest(
                subscriber_id=self.subscriber_id,
                role=self.role,
                applied_version=self.applied_version,
                database_id=self.current.database_id if self.current else "",
                instance_key=self._instance_key,
            )
            call = stub.Watch(request, metadata=auth_metadata(self._token))
            self._stub = stub
            try:
                async for snapshot in call:
                    if self.connected_to is None:
                        self.connected_to = address
                        self.last_error = ""
                        log.info("connected to controlplane %s", address)
                    await self._handle(stub, snapshot)
                    yield snapshot
            finally:
                self._stub = None

    async def _handle(self, stub: sync_pb2_grpc.SyncStub, snapshot: ProviderSnapshot) -> None:
        current = self.current
        if (
            current is not None
            and snapshot.version <= self.applied_version
            and snapshot.database_id == current.database_id
        ):
            # A resync with nothing new, or a replica that is behind: never go backwards.
            # (A snapshot of another database is taken whatever its version.) Either way
            # the controlplane has confirmed what we serve: it is no longer just the cache.
            self.from_cache = False
            self.last_snapshot_at = time.monotonic()
            await self._ack(stub, self.applied_version, skipped=self._skipped)
            return
        try:
            skipped = await self._take(snapshot)
        except Exception as exc:  # the data plane refused it: keep the old one, say why
            log.exception("snapshot version %d rejected", snapshot.version)
            await self._ack(stub, snapshot.version, error=f"{type(exc).__name__}: {exc}")
            return
        self.from_cache = False
        self.last_snapshot_at = time.monotonic()
        log.info(
            "applied snapshot version %d (%d providers, %d skipped) in %.1f ms",
            snapshot.version,
            len(snapshot.providers),
            len(skipped),
            self.last_apply_seconds * 1000,
        )
        await self._ack(stub, snapshot.version, skipped=skipped)
        if self._cache is not None:
            try:
                await asyncio.to_thread(self._cache.save, snapshot)
            except OSError as exc:
                log.warning("could not save the snapshot cache %s: %s", self._cache.path, exc)

    async def _take(self, snapshot: ProviderSnapshot) -> Sequence[SkippedProvider]:
        """Hands `snapshot` to the data plane; raises if it refuses it."""
        started = time.perf_counter()
        result = self._apply(snapshot)
        if inspect.isawaitable(result):
            result = await result
        self.last_apply_seconds = time.perf_counter() - started
        self.current = snapshot
        self.applied_version = snapshot.version
        self._skipped = result.skipped if isinstance(result, ApplyResult) else ()
        self._ready.set()
        return self._skipped

    async def _serve_cached(self) -> None:
        """Applies the snapshot an earlier run saved, once, if there is one."""
        if self._cache is None or self._cache_tried:
            return
        self._cache_tried = True
        snapshot = await asyncio.to_thread(self._cache.load, self.role)
        if snapshot is None:
            return
        try:
            await self._take(snapshot)
        except Exception:
            log.exception("cached snapshot version %d rejected", snapshot.version)
            return
        self.from_cache = True
        log.warning(
            "controlplane unreachable: serving the cached snapshot version %d from %s",
            snapshot.version,
            self._cache.path,
        )

    async def _ack(
        self,
        stub: sync_pb2_grpc.SyncStub,
        version: int,
        error: str = "",
        skipped: Sequence[SkippedProvider] = (),
    ) -> None:
        if self._leaving:
            return  # the controlplane has forgotten this process: an ack would be refused
        request = ack_request(self.subscriber_id, self._instance_key, version, error, skipped)
        try:
            await stub.Ack(request, metadata=auth_metadata(self._token), timeout=self._ack_timeout)
        except grpc.aio.AioRpcError as exc:
            # The stream will fail too if the controlplane is gone; the next session re-acks.
            log.warning("ack of version %d failed: %s", version, exc.code().name)


def ack_request(
    subscriber_id: str,
    instance_key: str,
    version: int,
    error: str,
    skipped: Sequence[SkippedProvider],
) -> sync_pb2.AckRequest:
    """An Ack the controlplane takes, whatever the snapshot held: the error and each reason
    cut to what the controlplane keeps, and the skipped rows past its limit on Sync
    requests left out (a last row says how many), so that it is never refused for its size."""
    request = sync_pb2.AckRequest(
        subscriber_id=subscriber_id,
        instance_key=instance_key,
        version=version,
        error=error[:ACK_ERROR_MAX],
    )
    rows = [
        sync_pb2.SkippedProvider(
            provider_id=s.provider_id, name=s.name, reason=s.reason[:SKIPPED_REASON_MAX]
        )
        for s in skipped
    ]
    room = MAX_SYNC_REQUEST_BYTES - request.ByteSize() - 1024  # 1 KiB for that last row
    kept = 0
    for row in rows:
        room -= row.ByteSize() + 4  # and the field's tag and length
        if room < 0:
            break
        kept += 1
    request.skipped.extend(rows[:kept])
    if kept < len(rows):
        request.skipped.add(
            reason=f"and {len(rows) - kept} more skipped providers, not listed: the "
            f"acknowledgement would pass the controlplane's {MAX_SYNC_REQUEST_BYTES} bytes"
        )
        log.warning(
            "acknowledging version %d with %d of its %d skipped providers: the rest would "
            "pass the controlplane's limit of %d bytes (each was logged when skipped)",
            version, kept, len(rows), MAX_SYNC_REQUEST_BYTES,
        )  # fmt: skip
    return request


_CONFIG_ERRORS = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)
