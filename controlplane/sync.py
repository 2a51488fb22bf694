"""The Sync service: Watch streams snapshots to subscribers, Ack records what they did,
Leave forgets one that shuts down cleanly."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
from prometheus_client import Counter, Gauge

from aibridge.v1 import sync_pb2, sync_pb2_grpc
from common.wire import SKIPPED_REASON_MAX, SkippedProvider
from controlplane.auth import Credentials, Role
from controlplane.cache import SnapshotCache
from controlplane.publisher import SnapshotPublisher
from controlplane.registry import SubscriberRegistry, SubscriberState, instance_of

log = logging.getLogger(__name__)

MAX_VERSION = 2**62  # revisions are signed 64-bit in the database; this leaves room to grow

SUBSCRIBERS = Gauge("aibridge_controlplane_subscribers", "Connected subscribers", ["role"])
SNAPSHOTS_SENT = Counter("aibridge_controlplane_snapshots_sent_total", "Snapshots sent", ["role"])
ACKS = Counter("aibridge_controlplane_acks_total", "Acknowledgements", ["role", "result"])

MIN_KEY, MAX_KEY = 32, 200  # an instance key's length


class SyncService(sync_pb2_grpc.SyncServicer):
    def __init__(
        self,
        cache: SnapshotCache,
        registry: SubscriberRegistry,
        credentials: Credentials,
        publisher: SnapshotPublisher,
    ) -> None:
        self.cache = cache
        self.registry = registry
        self.credentials = credentials
        self.publisher = publisher

    async def Watch(
        self, request: sync_pb2.WatchRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:  # encoded ProviderSnapshots (see add_sync_service)
        role = await self._role_for(request.role, context)
        subscriber_id = request.subscriber_id
        if not subscriber_id or len(subscriber_id) > 200:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "subscriber_id: required (at most 200 characters), to acknowledge with",
            )
        if not MIN_KEY <= len(request.instance_key) <= MAX_KEY:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"instance_key: required ({MIN_KEY} to {MAX_KEY} characters), a random secret "
                "made once per process, that Ack and Leave send too",
            )
        if request.applied_version > MAX_VERSION:
            # A restored database moves its revision past what a subscriber holds: a made-up
            # version near 2^64 would leave no revision for any later change.
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"applied_version: {request.applied_version} is beyond any revision",
            )
        state = self.registry.connect(
            subscriber_id,
            role,
            instance_of(request.instance_key),
            context.peer(),
            applied_version=request.applied_version,
        )
        SUBSCRIBERS.labels(role.value).inc()
        log.info(
            "subscriber %s (%s, instance %s) connected from %s, applied version %d",
            subscriber_id,
            role,
            state.fingerprint,
            context.peer(),
            request.applied_version,
        )
        try:
            self._check_ahead(request)
            with self.cache.watch() as watch:
                while True:
                    snapshot = await watch.next()
                    if snapshot is None:
                        return
                    yield snapshot.encoded[role]
                    state.sent_version = snapshot.version
                    SNAPSHOTS_SENT.labels(role.value).inc()
        finally:
            self.registry.disconnect(state)
            SUBSCRIBERS.labels(role.value).dec()
            log.info("subscriber %s (%s) disconnected", subscriber_id, role)

    def _check_ahead(self, request: sync_pb2.WatchRequest) -> None:
        """A subscriber ahead of this database's revision, on the same database: the
        database went back in time (a restored backup). The publisher moves its revision
        past the subscriber's, or the subscribers would ignore it until the counter caught
        up."""
        current = self.cache.current()
        if (
            current is None
            or not request.database_id
            or request.database_id != current.database_id
            or request.applied_version <= current.version
        ):
            return
        reason = f"subscriber {request.subscriber_id} holds version {request.applied_version}"
        self.publisher.subscriber_ahead(request.applied_version, reason)

    async def Ack(
        self, request: sync_pb2.AckRequest, context: grpc.aio.ServicerContext
    ) -> sync_pb2.AckResponse:
        state = await self._entry_of(request, context, connected=True)
        skipped = [
            SkippedProvider(s.provider_id, s.name, s.reason[:SKIPPED_REASON_MAX])
            for s in request.skipped
        ]
        self.registry.ack(state, request.version, request.error, skipped)
        ACKS.labels(state.role.value, "rejected" if request.error else "applied").inc()
        if request.error:
            log.warning(
                "subscriber %s rejected version %d: %s", state.id, request.version, request.error
            )
        for s in skipped:
            log.warning(
                "subscriber %s skipped provider %s (%s): %s",
                state.id,
                s.name,
                s.provider_id,
                s.reason,
            )
        return sync_pb2.AckResponse()

    async def Leave(
        self, request: sync_pb2.LeaveRequest, context: grpc.aio.ServicerContext
    ) -> sync_pb2.LeaveResponse:
        state = await self._entry_of(request, context, connected=False)
        self.registry.leave(state)
        log.info("subscriber %s (%s) is shutting down: forgotten", state.id, state.role)
        return sync_pb2.LeaveResponse()

    async def _entry_of(
        self,
        request: sync_pb2.AckRequest | sync_pb2.LeaveRequest,
        context: grpc.aio.ServicerContext,
        connected: bool,
    ) -> SubscriberState:
        """The entry of the process that sent `request`: role, id and instance key must all
        match, or NOT_FOUND. (Not PERMISSION_DENIED for an id known under another key: the
        answer does not tell the caller whether the id exists, and a real subscriber whose
        entry is gone gets the answer it always got.)"""
        role = self.credentials.role_of(context.invocation_metadata())
        assert role is not None  # the interceptor let only data-plane roles in
        state = self.registry.find(role, request.subscriber_id, instance_of(request.instance_key))
        if state is None or state.left or (connected and not state.connected):
            await context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"no {role} subscriber {request.subscriber_id!r} with this instance key is "
                "connected",
            )
        assert state is not None
        return state

    async def _role_for(self, requested: str, context: grpc.aio.ServicerContext) -> Role:
        role = self.credentials.role_of(context.invocation_metadata())
        try:
            wanted = Role(requested)
        except ValueError:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"role: must be bridged or proxyd, not {requested!r}",
            )
        if wanted is Role.ADMIN or wanted != role:
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"the {role} credential may not watch the {wanted} snapshot",
            )
        return role


def add_sync_service(service: SyncService, server: grpc.aio.Server) -> None:
    """`sync_pb2_grpc.add_SyncServicer_to_server`, except that Watch answers with
    snapshots already encoded (each is serialised once, for every watcher): a handler
    with no response serializer sends the bytes it is given."""
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {
        "Watch": grpc.unary_stream_rpc_method_handler(
            service.Watch, request_deserializer=sync_pb2.WatchRequest.FromString
        ),
        "Ack": grpc.unary_unary_rpc_method_handler(
            service.Ack,
            request_deserializer=sync_pb2.AckRequest.FromString,
            response_serializer=sync_pb2.AckResponse.SerializeToString,
        ),
        "Leave": grpc.unary_unary_rpc_method_handler(
            service.Leave,
            request_deserializer=sync_pb2.LeaveRequest.FromString,
            response_serializer=sync_pb2.LeaveResponse.SerializeToString,
        ),
    }
    name = sync_pb2.DESCRIPTOR.services_by_name["Sync"].full_name
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(name, handlers),))
    server.add_registered_method_handlers(name, handlers)
