"""bridged's Prometheus metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter(
    "aibridge_bridged_requests_total", "Requests answered", ["provider", "route", "status"]
)
IN_FLIGHT = Gauge("aibridge_bridged_requests_in_flight", "Requests being served")
CONNECTIONS = Gauge("aibridge_bridged_connections", "Open client connections")
LIMIT_HITS = Counter(
    "aibridge_bridged_limit_hits_total",
    "Connections or requests refused at a configured bound",
    ["limit"],  # connections, body_bytes, buffered_bytes, body_idle
)
BUFFERED_BYTES = Gauge(
    "aibridge_bridged_buffered_request_bytes", "Bytes of request bodies held (--max-buffered-bytes)"
)
UPSTREAM_SECONDS = Histogram(
    "aibridge_bridged_upstream_seconds", "Upstream request duration", ["provider", "route"]
)
TTFB_SECONDS = Histogram(
    "aibridge_bridged_time_to_first_byte_seconds",
    "Time from the request's start to the upstream's first body byte",
    ["provider", "route"],
)
TOKENS = Counter("aibridge_bridged_tokens_total", "Tokens reported", ["provider", "kind"])
KEY_FAILOVERS = Counter(
    "aibridge_bridged_key_failovers_total", "Retries with the next key", ["provider", "reason"]
)
SKIPPED_PROVIDERS = Gauge(
    "aibridge_bridged_skipped_providers", "Provider rows that could not be used"
)
UPSTREAM_POOLS = Gauge("aibridge_bridged_upstream_pools", "Open upstream connection pools")
USAGE_BUFFERED = Gauge("aibridge_bridged_usage_buffered", "Usage records waiting to be sent")
USAGE_SENT = Counter("aibridge_bridged_usage_sent_total", "Usage records delivered")
USAGE_DROPPED = Counter(
    "aibridge_bridged_usage_dropped_total", "Usage records dropped because the buffer was full"
)
TRACE_SPANS = Counter(
    "aibridge_bridged_trace_spans_total",
    "Spans sent to the trace collector (--otel-endpoint), by whether it took them",
    ["result"],  # exported, failed
)
REFUSALS = Counter(
    "aibridge_bridged_refusals_total",
    "Calls refused by a limit set (or for want of the limit counters)",
    ["reason"],  # model_not_allowed, budget_exceeded, rate_limited, concurrency_limited,
    # limits_unavailable
)
LIMITS_REDIS_ERRORS = Counter(
    "aibridge_bridged_limits_redis_errors_total",
    "Failed exchanges with the --limits-redis server, and calls decided without it in the "
    "second after one (the call was admitted uncounted, or refused, as the setting "
    "limits.redis_unavailable says)",
)
