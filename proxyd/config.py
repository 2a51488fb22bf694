"""proxyd's configuration: flags with AIBRIDGE_* equivalents, read once at start."""

from __future__ import annotations

import argparse
import ipaddress
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from common import dataplane
from common.flags import add_flag

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
    event_loop: str
    log_format: str
    log_level: str
    access_log: bool


def parse(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> ProxydConfig:
    environ = os.environ if env is None else env
    p = argparse.ArgumentParser(
        prog="aibridge-proxyd",
        description="HTTPS CONNECT proxy: provider hosts go to bridged, others are tunnelled.",
    )

    def flag(name: str, **kwargs: object) -> None:
        add_flag(p, name, env=environ, **kwargs)  # type: ignore[arg-type]

    # fmt: off
    flag("--listen", default="127.0.0.1:8888", env_var="AIBRIDGE_PROXYD_LISTEN",
         help="proxy listen address (also serves /healthz, /readyz, /metrics, /ca.pem)")
    dataplane.add_flags(flag, "proxyd")
    flag("--bridged", default="http://127.0.0.1:8080", env_var="AIBRIDGE_BRIDGED_URL",
         help="bridged's URL, where intercepted requests go")
    flag("--ca-cert", env_var="AIBRIDGE_PROXY_CA_CERT",
         help="CA certificate that signs intercepted hosts' certificates "
              "(default: generated into STATE_DIR/proxyd-ca.pem)")
    flag("--ca-key", env_var="AIBRIDGE_PROXY_CA_KEY", help="key of --ca-cert")
    flag("--tunnel", default="allow", choices=["allow", "deny"],
         help="what to do with CONNECTs to hosts that are not providers")
    flag("--tunnel-ports", default="443", help="ports tunnels may reach, comma-separated")
    flag("--allow-private-cidrs", default="",
         help="private/loopback/link-local networks tunnels may reach, comma-separated")
    flag("--cert-cache-size", type=int, default=1000, help="leaf certificates kept")
    flag("--max-body-bytes", type=int, default=32 * 1024 * 1024, help="largest request body")
    flag("--max-header-bytes", type=int, default=64 * 1024, help="largest request head")
    flag("--max-connections", type=int, default=10_000, help="client connections at once")
    flag("--idle-timeout", type=float, default=300.0,
         help="seconds an idle client connection is kept")
    # fmt: on
    a = p.parse_args(argv)

    host, port = dataplane.listen_address(p, a.listen)
    if bool(a.ca_cert) != bool(a.ca_key):
        p.error("--ca-cert and --ca-key go together")
    try:
        ports = frozenset(int(x) for x in a.tunnel_ports.split(",") if x.strip())
        cidrs = tuple(
            ipaddress.ip_network(x.strip(), strict=False)
            for x in a.allow_private_cidrs.split(",")
            if x.strip()
        )
    except ValueError as exc:
        p.error(str(exc))
    return ProxydConfig(
        host=host,
        port=port,
        controlplane=dataplane.link(a, "proxyd"),
        bridged_url=a.bridged.rstrip("/"),
        state_dir=Path(a.state_dir),
        ca_cert=Path(a.ca_cert) if a.ca_cert else None,
        ca_key=Path(a.ca_key) if a.ca_key else None,
        tunnel=a.tunnel,
        tunnel_ports=ports,
        allow_private_cidrs=cidrs,
        cert_cache_size=a.cert_cache_size,
        max_body_bytes=a.max_body_bytes,
        max_header_bytes=a.max_header_bytes,
        max_connections=a.max_connections,
        idle_timeout=a.idle_timeout,
        event_loop=a.event_loop,
        log_format=a.log_format,
        log_level=a.log_level,
        access_log=a.access_log == "on",
    )
