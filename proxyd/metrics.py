"""proxyd's Prometheus metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

SESSIONS = Counter(
    "aibridge_proxyd_connect_sessions_total", "CONNECT sessions", ["kind"]
)  # kind: intercepted, tunnelled, refused
REQUESTS = Counter(
    "aibridge_proxyd_requests_total", "Intercepted requests answered", ["provider", "status"]
)
IN_FLIGHT = Gauge("aibridge_proxyd_requests_in_flight", "Intercepted requests being served")
CONNECTIONS = Gauge("aibridge_proxyd_connections", "Open client connections")
LIMIT_HITS = Counter(
    "aibridge_proxyd_limit_hits_total",
    "Refusals (and certificate evictions) at a configured bound",
    ["limit"],  # connections, header_bytes, body_bytes, certificate_cache
)
INTERCEPTED_HOSTS = Gauge("aibridge_proxyd_intercepted_hosts", "Hosts routed to bridged")
CERT_CACHE = Gauge("aibridge_proxyd_certificates_cached", "Leaf certificates cached")
