"""Wiring: the subscriber feeds the route state; the aiohttp app serves requests from it."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from aiohttp import web

from bridged import client_errors, metrics
from bridged.access import AccessLogger
from bridged.bodies import RequestBodies
from bridged.clouds.credentials import CloudCredentials
from bridged.config import BridgedConfig
from bridged.connections import LimitedSite
from bridged.errors import error_response, family_for_path
from bridged.forward import Forwarder
from bridged.keys import KeyHealth
from bridged.limits import Counters, LocalCounters, RedisCounters
from bridged.reload import LiveRouteTable
from bridged.upstreams import UpstreamPools
from bridged.usage_reporter import UsageReporter
from bridged.usage_spool import UsageSpool
from common import access, probes
from common.collector import Collector
from common.metrics import expose_gc_pauses, expose_subscriber, gauge_value
from common.runtime import LISTEN_BACKLOG
from common.supervise import SHUTDOWN_MARGIN, Supervisor

if TYPE_CHECKING:
    from bridged.tracing import Tracing

log = logging.getLogger(__name__)

PREFIX = "/api/v2/aibridge"


class Gateway:
    def __init__(self, config: BridgedConfig) -> None:
        self.config = config
        self.pools = UpstreamPools(
            config.connect_timeout, config.idle_read_timeout, config.upstream_ca_file,
            idle_timeout=config.upstream_idle_timeout,
        )  # fmt: skip
        self.keys = KeyHealth(config.default_cooldown, config.unauthorized_cooldown)
        ca_file = str(config.upstream_ca_file) if config.upstream_ca_file else None
        self.credentials = CloudCredentials(config.connect_timeout, ca_file)
        self.state = LiveRouteTable(self.pools, self.keys, self.credentials)
        link = config.controlplane
        self.subscriber = link.subscriber("bridged", self.state.apply)
        self.reporter = UsageReporter(
            link.addresses,
            link.token,
            link.tls,
            batch_size=config.usage_batch_size,
            flush_interval=config.usage_flush_interval,
            capacity=config.usage_buffer,
            capacity_bytes=config.usage_buffer_bytes,
        )
        self.bodies = RequestBodies(
            config.max_body_bytes, config.max_buffered_bytes, config.keepalive_timeout
        )
        self.tracing: Tracing | None = None
        if config.otel_endpoint:
            from bridged.tracing import Tracing  # the SDK, loaded only when asked for

            self.tracing = Tracing(config.otel_endpoint, self.subscriber.subscriber_id)
        self.redis_counters: RedisCounters | None = None
        counters: Counters = LocalCounters()
        if config.limits_redis:
            counters = self.redis_counters = RedisCounters(
                config.limits_redis, config.limits_redis_prefix, config.limits_redis_timeout
            )
        self.forwarder = Forwarder(
            self.state, self.pools, self.keys, self.reporter, self.bodies, self.tracing,
            counters, self.credentials,
        )  # fmt: skip
        expose_subscriber("bridged", self.subscriber)
        expose_gc_pauses("bridged")
        metrics.UPSTREAM_POOLS.set_function(lambda: self.pools.open_pools)
        metrics.BUFFERED_BYTES.set_function(lambda: self.bodies.held)
        self.spool = UsageSpool(config.usage_spool) if config.usage_spool else None

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.config.max_body_bytes)
        probes.add_routes(app.router, probes.subscriber_readiness(self.version, self.subscriber))
        app.router.add_route("*", PREFIX + "/{provider}/{tail:.*}", self.forwarder.handle)
        app.router.add_route("*", "/{tail:.*}", self.not_found)
        return app

    def version(self) -> int | None:
        """The version of the route table served, None before the first snapshot."""
        table = self.state.table
        return table.version if table is not None else None

    async def not_found(self, request: web.Request) -> web.Response:
        return error_response(
            family_for_path(request.path), 404, "not_found",
            f"nothing at {request.path}; use {PREFIX}/{{provider}}/...",
        )  # fmt: skip


async def serve(config: BridgedConfig) -> None:
    gateway = Gateway(config)
    if gateway.spool is not None:
        for record in await asyncio.to_thread(gateway.spool.take):
            gateway.reporter.record(record)
        if gateway.reporter.pending:
            log.info(
                "%d usage records left by an earlier run: sending them", gateway.reporter.pending
            )
    supervisor = Supervisor(shutdown_limit=config.shutdown_grace + SHUTDOWN_MARGIN)
    subscription = supervisor.start(gateway.subscriber.run(), "subscriber")
    reporting = supervisor.start(gateway.reporter.run(), "usage")
    redis_counters = gateway.redis_counters
    if redis_counters is not None:
        counting = supervisor.start(redis_counters.run(), "limits")
    client_errors.install()
    access.configure(config.access_log)
    # handler_cancellation: a client that leaves ends its request at once (and the call
    # upstream, which stops the provider's work), instead of holding its body and
    # connection until the provider answers.
    runner = web.AppRunner(
        gateway.app(), access_log_class=AccessLogger,
        access_log=access.ACCESS if config.access_log else None,
        shutdown_timeout=config.shutdown_grace, keepalive_timeout=config.keepalive_timeout,
        handler_cancellation=True,
    )  # fmt: skip
    await runner.setup()
    site = LimitedSite(
        runner,
        config.host,
        config.port,
        backlog=LISTEN_BACKLOG,
        max_connections=config.max_connections,
    )
    await site.start()
    log.info("bridged serving on http://%s:%d%s/{provider}/", config.host, config.port, PREFIX)
    collector = Collector(lambda: gauge_value(metrics.IN_FLIGHT))
    collector.start()

    await supervisor.wait()
    collector.stop()
    log.info(
        "shutting down: no new connections; %.0fs for requests in flight", config.shutdown_grace
    )
    await runner.cleanup()  # stops listening, then waits for in-flight requests
    if gateway.tracing is not None:
        await gateway.tracing.close()  # the spans of the last requests
    if redis_counters is not None:  # the ends of the last calls, then the connections
        await supervisor.stop(counting)
        await redis_counters.close()
    await supervisor.stop(reporting)
    if not await gateway.reporter.flush(timeout=5.0, last=True):
        await _spool_the_rest(gateway)
    await gateway.reporter.close()
    await gateway.subscriber.leave()  # so that no admin's --wait holds for this process
    await supervisor.stop(subscription)
    await gateway.pools.close()
    gateway.credentials.close()
    log.info("stopped")
    supervisor.check()


async def _spool_the_rest(gateway: Gateway) -> None:
    """Usage the controlplane did not take before the end: on disk for the next start."""
    pending = gateway.reporter.pending
    if gateway.spool is None:
        log.error("%d usage records could not be delivered (--usage-spool off)", pending)
        return
    try:
        path = await asyncio.to_thread(gateway.spool.save, gateway.reporter.take_pending())
    except OSError as exc:
        log.error("%d usage records could not be delivered nor kept: %s", pending, exc)
        return
    log.info("%d usage records not delivered yet: kept in %s for the next start", pending, path)
