"""proxyd's configuration: flags with AIBRIDGE_* equivalents, read once at start."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import dataplane, flags
from common.flags import Flag, Invalid

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class ProxydConfig:
    host: str
    port: int
    controlplane: dataplane.ControlplaneLink
    bridged_url: str
    state_dir: Path
    ca_cert: Path | None
    ca_key: Path | None
    tunnel: str  # "allow" or "deny"
    tunnel_ports: frozenset[int]
    allow_private_cidrs: tuple[Network, ...]
    cert_cache_size: int
    max_body_bytes: int
    max_header_bytes: int
    max_connections: int
    idle_timeout: float
    bridged_idle_timeout: float
    event_loop: str
    log_format: str
    log_level: str
    access_log: bool


# fmt: off
FLAGS = (
    Flag("--listen", default="127.0.0.1:8888", env_var="AIBRIDGE_PROXYD_LISTEN",
         help="proxy listen address (also serves /healthz, /readyz, /metrics, /ca.pem)"),
    *dataplane.flags("proxyd"),
    Flag("--bridged", default="http://127.0.0.1:8080", env_var="AIBRIDGE_BRIDGED_URL",
         help="bridged's URL, where intercepted requests go"),
    Flag("--ca-cert", type=flags.optional_path, env_var="AIBRIDGE_PROXY_CA_CERT",
         help="CA certificate that signs intercepted hosts' certificates "
              "(default: generated into STATE_DIR/proxyd-ca.pem)"),
    Flag("--ca-key", type=flags.optional_path, env_var="AIBRIDGE_PROXY_CA_KEY",
         help="key of --ca-cert"),
    Flag("--tunnel", default="allow", choices=["allow", "deny"],
         help="what to do with CONNECTs to hosts that are not providers"),
    Flag("--tunnel-ports", default="443", help="ports tunnels may reach, comma-separated"),
    Flag("--allow-private-cidrs", default="",
         help="private/loopback/link-local networks tunnels may reach, comma-separated"),
    Flag("--cert-cache-size", type=int, default=1000, help="leaf certificates kept"),
    Flag("--max-body-bytes", type=int, default=32 * 1024 * 1024, help="largest request body"),
    Flag("--max-header-bytes", type=int, default=64 * 1024, help="largest request head"),
    Flag("--max-connections", type=int, default=10_000, help="client connections at once"),
    Flag("--idle-timeout", type=float, default=300.0,
         help="seconds an idle client connection is kept"),
    Flag("--bridged-idle-timeout", type=float, default=10.0,
         help="seconds an idle connection to bridged is kept for reuse; it is closed within "
              "twice that"),
)
# fmt: on


def parse(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> ProxydConfig:
    return flags.parse(
        ProxydConfig,
        FLAGS,
        argv,
        env,
        prog="aibridge-proxyd",
        description="HTTPS CONNECT proxy: provider hosts go to bridged, others are tunnelled.",
        finish=_finish,
    )


def _finish(a: Mapping[str, Any]) -> dict[str, Any]:
    host, port = flags.listen_address(a["listen"])
    if a["bridged_idle_timeout"] <= 0:
        raise Invalid("--bridged-idle-timeout must be positive")
    if (a["ca_cert"] is None) != (a["ca_key"] is None):
        raise Invalid("--ca-cert and --ca-key go together")
    try:
        ports = frozenset(int(x) for x in a["tunnel_ports"].split(",") if x.strip())
        cidrs = tuple(
            ipaddress.ip_network(x.strip(), strict=False)
            for x in a["allow_private_cidrs"].split(",")
            if x.strip()
        )
    except ValueError as exc:
        raise Invalid(str(exc)) from None
    return {
        "host": host,
        "port": port,
        **dataplane.derived(a, "proxyd"),
        "bridged_url": a["bridged"].rstrip("/"),
        "tunnel_ports": ports,
        "allow_private_cidrs": cidrs,
    }
