"""Wiring: database, snapshot cache and publisher, gRPC services, metrics endpoint."""

from __future__ import annotations

import asyncio
import logging

import grpc
from aiohttp import web
from grpc_health.v1 import health as grpc_health
from grpc_health.v1 import health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import REGISTRY

from aibridge.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    sync_pb2,
    usage_pb2,
    usage_pb2_grpc,
)
from common import probes
from common.channel import keepalive_options
from common.flags import listen_address
from common.supervise import SHUTDOWN_MARGIN, Supervisor
from controlplane import idempotency
from controlplane.admin import AdminService
from controlplane.auth import AuthInterceptor, Credentials
from controlplane.cache import SnapshotCache
from controlplane.config import ControlplaneConfig
from controlplane.fleet import Fleet
from controlplane.health import Health
from controlplane.limits import SERVER_REQUEST_LIMIT, LimitInterceptor
from controlplane.publisher import SnapshotPublisher
from controlplane.registry import SubscriberRegistry
from controlplane.retention import Retention
from controlplane.spend_metrics import SpendMetrics
from controlplane.store import Database, KeyRing, key_rotation
from controlplane.store.interceptions import InterceptionLog
from controlplane.store.notify import RevisionListener
from controlplane.store.providers import Providers
from controlplane.store.settings import Settings
from controlplane.store.spend import Spending
from controlplane.store.teams import Teams
from controlplane.store.tokens import Tokens
from controlplane.store.usage import UsageLog
from controlplane.store.users import Users
from controlplane.sync import SyncService, add_sync_service
from controlplane.usage import UsageService

log = logging.getLogger(__name__)


def server_options(keepalive_seconds: float) -> list[tuple[str, int]]:
    """Pings find dead subscribers whose stream would otherwise look open forever; clients
    may ping as often as once a second without being told to go away.

    No BDP probing: it grows the window every new stream starts with to megabytes, which
    a client may fill before any handler decides whether to read the request (a flood of
    refused calls cost gigabytes). At gRPC's default, 64 KiB, a refused or waiting call
    costs that much at most; a request being read is granted a window for its whole
    message anyway, so a large one loses at most a round trip."""
    return [
        *keepalive_options(keepalive_seconds),
        ("grpc.http2.min_ping_interval_without_data_ms", 1_000),
        ("grpc.http2.max_ping_strikes", 0),
        ("grpc.http2.bdp_probe", 0),
        ("grpc.max_send_message_length", 256 * 1024 * 1024),
        ("grpc.max_receive_message_length", SERVER_REQUEST_LIMIT),  # per service: limits.py
    ]


SERVICE_NAMES = (
    admin_pb2.DESCRIPTOR.services_by_name["Admin"].full_name,
    sync_pb2.DESCRIPTOR.services_by_name["Sync"].full_name,
    usage_pb2.DESCRIPTOR.services_by_name["Usage"].full_name,
    grpc_health.SERVICE_NAME,
    reflection.SERVICE_NAME,
)


async def serve(config: ControlplaneConfig) -> None:
    db = Database(config.database_url)
    log.info("database %s", db.redacted_url())
    await asyncio.to_thread(db.migrate)
    keyring = KeyRing.parse(config.encryption_keys)
    await asyncio.to_thread(key_rotation.check_decryptable, db, keyring)
    credentials = Credentials(dict(config.credentials))

    cache = SnapshotCache()
    registry = SubscriberRegistry(config.controlplane_id)
    fleet = Fleet(db, registry, config.controlplane_id)
    await fleet.recall()
    health = Health()
    publisher = SnapshotPublisher(
        db, keyring, cache, config.controlplane_id, config.revision_check_interval,
        on_database=health.database,
    )  # fmt: skip
    await publisher.publish_now()  # never serve a Watch without a snapshot

    server = grpc.aio.server(
        interceptors=[
            AuthInterceptor(credentials),
            LimitInterceptor(config.max_calls, config.max_streams),
        ],
        options=server_options(config.keepalive_seconds),
    )
    admin_pb2_grpc.add_AdminServicer_to_server(
        AdminService(
            db,
            Providers(db, keyring),
            Tokens(db),
            UsageLog(db),
            InterceptionLog(db),
            Settings(db),
            cache,
            publisher,
            fleet,
            config.controlplane_id,
            Users(db),
            Teams(db),
            credentials,
            config.test_exit_after_commit,
        ),
        server,
    )
    add_sync_service(SyncService(cache, registry, credentials, publisher), server)
    usage_pb2_grpc.add_UsageServicer_to_server(
        UsageService(UsageLog(db), publisher.changed), server
    )
    health_pb2_grpc.add_HealthServicer_to_server(health.servicer, server)
    reflection.enable_server_reflection(SERVICE_NAMES, server)
    _bind(server, config)

    supervisor = Supervisor(shutdown_limit=config.shutdown_grace + SHUTDOWN_MARGIN)
    supervisor.start(publisher.run(), "publisher")
    supervisor.start(fleet.run(), "fleet")
    supervisor.start(idempotency.forget_expired(db), "applied-requests")
    if config.retention is not None:
        retention = Retention(db, config.retention, config.retention_interval)
        supervisor.start(retention.run(), "retention")
    if db.is_postgres:
        listener = RevisionListener(
            db.libpq_conninfo(), publisher.changed, config.revision_check_interval
        )
        supervisor.start(listener.run(), "listen")
    REGISTRY.register(SpendMetrics(Spending(db)))
    metrics = await _start_metrics(config.metrics_listen, health.readiness(cache))

    await server.start()
    await health.started()
    log.info(
        "controlplane %s serving gRPC on %s (%s) at revision %d",
        config.controlplane_id,
        config.listen,
        "TLS" if config.tls else "plaintext",
        cache.version,
    )

    await supervisor.wait()
    log.info("shutting down")
    await health.stopping()
    stopping = asyncio.create_task(server.stop(config.shutdown_grace))
    await asyncio.sleep(0)  # new calls are refused from here on
    cache.close()
    await stopping
    await supervisor.stop()
    if "fleet" not in supervisor.failed:  # a broken mirror would only fail again
        await fleet.publish()  # every stream has ended: the others wait for them to come back
    if metrics is not None:
        await metrics.cleanup()
    db.dispose()
    supervisor.check()


def _bind(server: grpc.aio.Server, config: ControlplaneConfig) -> None:
    tls = config.tls
    if tls is None:
        server.add_insecure_port(config.listen)
        return
    client_ca = tls.client_ca.read_bytes() if tls.client_ca else None
    credentials = grpc.ssl_server_credentials(
        [(tls.key.read_bytes(), tls.cert.read_bytes())],
        root_certificates=client_ca,
        require_client_auth=client_ca is not None,
    )
    server.add_secure_port(config.listen, credentials)


async def _start_metrics(listen: str, readiness: probes.Readiness) -> web.AppRunner | None:
    if not listen:
        return None
    app = web.Application()
    probes.add_routes(app.router, readiness)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    host, port = listen_address(listen, "--metrics-listen")  # checked by config.parse
    await web.TCPSite(runner, host, port).start()
    log.info("metrics on http://%s/metrics", listen)
    return runner
