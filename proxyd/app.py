"""Wiring: the subscriber feeds the host map; the server answers CONNECTs from it."""

from __future__ import annotations

import asyncio
import logging

from common import access
from common.collector import Collector
from common.metrics import expose_gc_pauses, expose_subscriber
from common.runtime import LISTEN_BACKLOG
from common.supervise import SHUTDOWN_MARGIN, Supervisor
from proxyd.certs import CertificateAuthority
from proxyd.config import ProxydConfig
from proxyd.mitm import Interceptor
from proxyd.reload import LiveHostRouter
from proxyd.server import ProxyServer
from proxyd.tunnel import TunnelPolicy

log = logging.getLogger(__name__)

SHUTDOWN_GRACE = 5.0


async def serve(config: ProxydConfig) -> None:
    access.configure(config.access_log)
    ca = CertificateAuthority.load_or_create(
        config.ca_cert, config.ca_key, config.state_dir, config.cert_cache_size
    )
    state = LiveHostRouter()
    link = config.controlplane
    subscriber = link.subscriber("proxyd", state.apply)
    expose_subscriber("proxyd", subscriber)
    expose_gc_pauses("proxyd")
    interceptor = Interceptor(
        state, config.bridged_url, config.max_body_bytes, config.max_header_bytes,
        config.idle_timeout, config.bridged_idle_timeout,
    )  # fmt: skip
    await interceptor.start()
    proxy = ProxyServer(
        state,
        ca,
        interceptor,
        TunnelPolicy(config.tunnel_ports, config.allow_private_cidrs),
        tunnel=config.tunnel,
        max_header_bytes=config.max_header_bytes,
        max_connections=config.max_connections,
        idle_timeout=config.idle_timeout,
        subscriber=subscriber,
    )
    supervisor = Supervisor(shutdown_limit=SHUTDOWN_GRACE + SHUTDOWN_MARGIN)
    supervisor.start(subscriber.run(), "subscriber")
    server = await asyncio.start_server(
        proxy.handle,
        config.host,
        config.port,
        limit=config.max_header_bytes * 2,
        backlog=LISTEN_BACKLOG,
    )
    log.info(
        "proxyd serving on %s:%d; intercepted requests go to %s",
        config.host, config.port, config.bridged_url,
    )  # fmt: skip
    collector = Collector(lambda: len(proxy.connections))
    collector.start()

    await supervisor.wait()
    collector.stop()
    log.info("shutting down")
    server.close()
    if proxy.connections:
        _, pending = await asyncio.wait(set(proxy.connections), timeout=SHUTDOWN_GRACE)
        for task in pending:
            task.cancel()
    await subscriber.leave()  # so that no admin's --wait holds for this process
    await supervisor.stop()
    await interceptor.close()
    log.info("stopped")
    supervisor.check()
