"""bridged's configuration: flags with AIBRIDGE_* equivalents, read once at start."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from bridged.usage_reporter import DEFAULT_BATCH_SIZE
from common import dataplane
from common.flags import add_flag


@dataclass(frozen=True)
class BridgedConfig:
    host: str
    port: int
    controlplane: dataplane.ControlplaneLink
    upstream_ca_file: Path | None
    max_body_bytes: int
    max_buffered_bytes: int
    max_connections: int
    keepalive_timeout: float
    connect_timeout: float
    idle_read_timeout: float
    shutdown_grace: float
    usage_batch_size: int
    usage_flush_interval: float
    usage_buffer: int
    usage_spool: Path | None
    default_cooldown: float
    unauthorized_cooldown: float
    event_loop: str
    log_format: str
    log_level: str
    access_log: bool


def parse(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> BridgedConfig:
    environ = os.environ if env is None else env
    p = argparse.ArgumentParser(
        prog="aibridge-bridged",
        description="The LLM gateway: routes /api/v2/aibridge/{provider}/... to the provider.",
    )

    def flag(name: str, **kwargs: object) -> None:
        add_flag(p, name, env=environ, **kwargs)  # type: ignore[arg-type]

    flag(
        "--listen",
        default="127.0.0.1:8080",
        env_var="AIBRIDGE_BRIDGED_LISTEN",
        help="HTTP listen address",
    )
    dataplane.add_flags(flag, "bridged")
    flag("--upstream-ca-file", help="extra CA bundle to trust for upstream providers")
    flag(
        "--max-body-bytes", type=int, default=32 * 1024 * 1024, help="largest request body accepted"
    )
    flag(
        "--max-buffered-bytes",
        type=int,
        default=256 * 1024 * 1024,
        help="request body bytes held at once, all requests together; beyond, 503",
    )
    flag(
        "--max-connections",
        type=int,
        default=10_000,
        help="client connections served at once; more are answered 503",
    )
    flag(
        "--keepalive-timeout",
        type=float,
        default=75.0,
        help="seconds a client connection may stay idle, take to send a request head, or "
        "pause in the middle of a request body",
    )
    flag("--connect-timeout", type=float, default=10.0, help="seconds to connect to an upstream")
    flag(
        "--idle-read-timeout",
        type=float,
        default=300.0,
        help="seconds an upstream may stay silent before the request fails",
    )
    flag(
        "--shutdown-grace",
        type=float,
        default=30.0,
        help="seconds requests in flight get to finish on SIGTERM",
    )
    flag(
        "--usage-batch-size",
        type=int,
        default=DEFAULT_BATCH_SIZE,
        help=f"usage records per batch (1 to {DEFAULT_BATCH_SIZE}: more could pass the "
        "controlplane's 4 MiB limit on usage requests)",
    )
    flag("--usage-flush-interval", type=float, default=1.0, help="seconds between usage batches")
    flag(
        "--usage-buffer",
        type=int,
        default=100_000,
        help="usage records kept while the controlplane is unreachable",
    )
    flag(
        "--usage-spool",
        help="directory keeping the usage records a stop could not deliver, sent after the "
        "next start ('off' to lose them; default: STATE_DIR/bridged-usage)",
    )
    flag(
        "--default-cooldown",
        type=float,
        default=10.0,
        help="seconds a rate-limited key rests when the upstream gives no Retry-After",
    )
    flag(
        "--unauthorized-cooldown",
        type=float,
        default=60.0,
        help="seconds a key the upstream answers 401 rests before a request tries it again; "
        "doubled at each 401 in a row, up to 64 times",
    )
    a = p.parse_args(argv)

    host, port = dataplane.listen_address(p, a.listen)
    if a.max_body_bytes <= 0:
        p.error("--max-body-bytes must be positive")
    if a.max_buffered_bytes < a.max_body_bytes:
        p.error("--max-buffered-bytes must be at least --max-body-bytes")
    if a.max_connections <= 0:
        p.error("--max-connections must be positive")
    if a.unauthorized_cooldown <= 0:
        p.error("--unauthorized-cooldown must be positive")
    if not 0 < a.usage_batch_size <= DEFAULT_BATCH_SIZE:
        p.error(f"--usage-batch-size must be between 1 and {DEFAULT_BATCH_SIZE}")
    return BridgedConfig(
        host=host,
        port=port,
        controlplane=dataplane.link(a, "bridged"),
        upstream_ca_file=Path(a.upstream_ca_file) if a.upstream_ca_file else None,
        max_body_bytes=a.max_body_bytes,
        max_buffered_bytes=a.max_buffered_bytes,
        max_connections=a.max_connections,
        keepalive_timeout=a.keepalive_timeout,
        connect_timeout=a.connect_timeout,
        idle_read_timeout=a.idle_read_timeout,
        shutdown_grace=a.shutdown_grace,
        usage_batch_size=a.usage_batch_size,
        usage_flush_interval=a.usage_flush_interval,
        usage_buffer=a.usage_buffer,
        usage_spool=None
        if a.usage_spool == "off"
        else Path(a.usage_spool or Path(a.state_dir) / "bridged-usage"),
        default_cooldown=a.default_cooldown,
        unauthorized_cooldown=a.unauthorized_cooldown,
        event_loop=a.event_loop,
        log_format=a.log_format,
        log_level=a.log_level,
        access_log=a.access_log == "on",
    )
