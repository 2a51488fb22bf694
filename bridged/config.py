"""bridged's configuration: flags with AIBRIDGE_* equivalents, read once at start."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from yarl import URL

from bridged.usage_reporter import DEFAULT_BATCH_SIZE, DEFAULT_BUFFER_BYTES, MAX_BATCH_BYTES
from common import dataplane, flags
from common.flags import Flag, Invalid


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
    upstream_idle_timeout: float
    shutdown_grace: float
    usage_batch_size: int
    usage_flush_interval: float
    usage_buffer: int
    usage_buffer_bytes: int
    usage_spool: Path | None
    default_cooldown: float
    unauthorized_cooldown: float
    event_loop: str
    log_format: str
    log_level: str
    access_log: bool
    otel_endpoint: str | None  # the collector's traces URL; None: no tracing
    limits_redis: str | None  # the Redis of shared limit counters; None: in-process
    limits_redis_prefix: str
    limits_redis_timeout: float


FLAGS = (
    Flag(
        "--listen",
        default="127.0.0.1:8080",
        env_var="AIBRIDGE_BRIDGED_LISTEN",
        help="HTTP listen address",
    ),
    *dataplane.flags("bridged"),
    Flag(
        "--upstream-ca-file",
        type=flags.optional_path,
        help="extra CA bundle to trust for upstream providers",
    ),
    Flag(
        "--max-body-bytes", type=int, default=32 * 1024 * 1024, help="largest request body accepted"
    ),
    Flag(
        "--max-buffered-bytes",
        type=int,
        default=256 * 1024 * 1024,
        help="request body bytes held at once, all requests together; beyond, 503",
    ),
    Flag(
        "--max-connections",
        type=int,
        default=10_000,
        help="client connections served at once; more are answered 503",
    ),
    Flag(
        "--keepalive-timeout",
        type=float,
        default=75.0,
        help="seconds a client connection may stay idle, take to send a request head, or "
        "pause in the middle of a request body",
    ),
    Flag("--connect-timeout", type=float, default=10.0, help="seconds to connect to an upstream"),
    Flag(
        "--idle-read-timeout",
        type=float,
        default=300.0,
        help="seconds an upstream may stay silent before the request fails",
    ),
    Flag(
        "--upstream-idle-timeout",
        type=float,
        default=10.0,
        help="seconds an idle upstream connection is kept for reuse; it is closed within "
        "twice that (after a burst of streams, their connections go back to the provider)",
    ),
    Flag(
        "--shutdown-grace",
        type=float,
        default=30.0,
        help="seconds requests in flight get to finish on SIGTERM",
    ),
    Flag(
        "--usage-batch-size",
        type=int,
        default=DEFAULT_BATCH_SIZE,
        help=f"usage records per batch (1 to {DEFAULT_BATCH_SIZE}; a batch is also cut "
        "under the controlplane's 4 MiB limit on usage requests)",
    ),
    Flag("--usage-flush-interval", type=float, default=1.0, help="seconds between usage batches"),
    Flag(
        "--usage-buffer",
        type=int,
        default=100_000,
        help="usage records kept while the controlplane is unreachable",
    ),
    Flag(
        "--usage-buffer-bytes",
        type=int,
        default=DEFAULT_BUFFER_BYTES,
        help="bytes of usage records kept while the controlplane is unreachable (records "
        "carry prompts and tool calls: up to about 1.2 MiB each)",
    ),
    Flag(
        "--usage-spool",
        help="directory keeping the usage records a stop could not deliver, sent after the "
        "next start ('off' to lose them; default: STATE_DIR/bridged-usage)",
    ),
    Flag(
        "--default-cooldown",
        type=float,
        default=10.0,
        help="seconds a rate-limited key rests when the upstream gives no Retry-After",
    ),
    Flag(
        "--unauthorized-cooldown",
        type=float,
        default=60.0,
        help="seconds a key the upstream answers 401 rests before a request tries it again; "
        "doubled at each 401 in a row, up to 64 times",
    ),
    Flag(
        "--otel-endpoint",
        metavar="URL",
        help="OpenTelemetry collector to send a trace span per request to, over OTLP/HTTP: "
        "its base URL (http://collector:4318; /v1/traces is appended) or its traces URL "
        "(one ending in /v1/traces, used as given); unset: no tracing",
    ),
    Flag(
        "--limits-redis",
        metavar="URL",
        help="Redis holding the limit counters (redis://host:6379/0), for several bridged "
        "to enforce one limit together; unset: counted in this process",
    ),
    Flag(
        "--limits-redis-prefix",
        default="aibridge:",
        help="prefix of the keys of the limit counters in --limits-redis",
    ),
    Flag(
        "--limits-redis-timeout",
        type=float,
        default=0.25,
        help="seconds a call's limit check waits for --limits-redis; beyond, Redis counts as "
        "unavailable (the setting limits.redis_unavailable says what then)",
    ),
)


def parse(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> BridgedConfig:
    return flags.parse(
        BridgedConfig,
        FLAGS,
        argv,
        env,
        prog="aibridge-bridged",
        description="The LLM gateway: routes /api/v2/aibridge/{provider}/... to the provider.",
        finish=_finish,
    )


def _finish(a: Mapping[str, Any]) -> dict[str, Any]:
    host, port = flags.listen_address(a["listen"])
    if a["max_body_bytes"] <= 0:
        raise Invalid("--max-body-bytes must be positive")
    if a["max_buffered_bytes"] < a["max_body_bytes"]:
        raise Invalid("--max-buffered-bytes must be at least --max-body-bytes")
    if a["max_connections"] <= 0:
        raise Invalid("--max-connections must be positive")
    if a["upstream_idle_timeout"] <= 0:
        raise Invalid("--upstream-idle-timeout must be positive")
    if a["unauthorized_cooldown"] <= 0:
        raise Invalid("--unauthorized-cooldown must be positive")
    if not 0 < a["usage_batch_size"] <= DEFAULT_BATCH_SIZE:
        raise Invalid(f"--usage-batch-size must be between 1 and {DEFAULT_BATCH_SIZE}")
    if a["usage_buffer_bytes"] < MAX_BATCH_BYTES:
        raise Invalid(f"--usage-buffer-bytes must be at least {MAX_BATCH_BYTES} (one batch)")
    if a["limits_redis_timeout"] <= 0:
        raise Invalid("--limits-redis-timeout must be positive")
    redis_url = a["limits_redis"]
    if redis_url and _scheme(redis_url) not in ("redis", "rediss", "unix"):
        raise Invalid("--limits-redis: expected a redis://, rediss:// or unix:// URL")
    spool = a["usage_spool"]
    otel_endpoint = traces_url(a["otel_endpoint"]) if a["otel_endpoint"] else None
    return {
        "host": host,
        "port": port,
        **dataplane.derived(a, "bridged"),
        "usage_spool": None if spool == "off" else Path(spool or a["state_dir"] / "bridged-usage"),
        "otel_endpoint": otel_endpoint,
        "limits_redis": redis_url or None,
    }


def _scheme(url: str) -> str:
    try:
        return URL(url).scheme
    except ValueError:
        return ""


TRACES_PATH = "/v1/traces"


def traces_url(endpoint: str) -> str:
    """The collector's OTLP/HTTP traces URL, from its base URL or that URL itself (the
    OTEL_EXPORTER_OTLP_ENDPOINT and OTEL_EXPORTER_OTLP_TRACES_ENDPOINT forms). Raises
    Invalid."""
    try:
        url = URL(endpoint)
        usable = url.scheme in ("http", "https") and bool(url.host) and url.port is not None
    except ValueError:  # a bad port or IPv6 address
        usable = False
    if not usable:
        raise Invalid("--otel-endpoint: expected an http:// or https:// URL with a host")
    if url.user is not None or url.password is not None:
        # The URL is logged; a collector's credential goes in OTEL_EXPORTER_OTLP_HEADERS.
        raise Invalid("--otel-endpoint: no credentials in the URL (use OTEL_EXPORTER_OTLP_HEADERS)")
    path = url.path.rstrip("/")
    if path.endswith(TRACES_PATH):
        return str(url)
    return str(url.with_path(path + TRACES_PATH, keep_query=True))
