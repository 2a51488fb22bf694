"""The console's configuration: flags with AIBRIDGE_* equivalents, read once at start."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from common import flags
from common.channel import DEFAULT_CONTROLPLANE, ClientTLS
from common.flags import Flag, Invalid, optional_path


@dataclass(frozen=True)
class ConsoleConfig:
    host: str
    port: int
    controlplane: str
    tls: ClientTLS | None
    session_hours: float
    secure_cookies: bool
    call_timeout: float
    log_format: str
    log_level: str


FLAGS = (
    Flag(
        "--listen",
        default="127.0.0.1:8090",
        env_var="AIBRIDGE_CONSOLE_LISTEN",
        help="HTTP listen address",
    ),
    Flag("--controlplane", default=DEFAULT_CONTROLPLANE, help="controlplane gRPC address"),
    Flag(
        "--controlplane-ca-cert",
        help="CA that signed the controlplane's certificate (enables TLS)",
    ),
    Flag("--controlplane-client-cert", help="client certificate for the controlplane (mTLS)"),
    Flag("--controlplane-client-key", help="key of --controlplane-client-cert"),
    Flag(
        "--session-hours",
        type=float,
        default=12.0,
        help="hours a sign-in lasts; sessions live in this process (a restart signs everyone out)",
    ),
    Flag(
        "--secure-cookies",
        switch=True,
        help="mark the session cookie Secure: set it when browsers reach the console over "
        "HTTPS through a reverse proxy (it is set by itself on a direct HTTPS request)",
    ),
    Flag(
        "--call-timeout",
        type=float,
        default=10.0,
        help="seconds each admin API call may take",
    ),
    Flag("--log-format", default="text", choices=["text", "json"], help="log line format"),
    Flag("--log-level", default="info", help="debug, info, warning or error"),
)


def parse(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> ConsoleConfig:
    return flags.parse(
        ConsoleConfig,
        FLAGS,
        argv,
        env,
        prog="aibridge-console",
        description="The web UI: a client of the controlplane's admin API.",
        finish=_finish,
    )


def _finish(a: Mapping[str, Any]) -> dict[str, Any]:
    host, port = flags.listen_address(a["listen"])
    if not a["session_hours"] > 0:
        raise Invalid("--session-hours must be positive")
    if not a["call_timeout"] > 0:
        raise Invalid("--call-timeout must be positive")
    if bool(a["controlplane_client_cert"]) != bool(a["controlplane_client_key"]):
        raise Invalid("--controlplane-client-cert and --controlplane-client-key go together")
    tls = ClientTLS(
        optional_path(a["controlplane_ca_cert"]),
        optional_path(a["controlplane_client_cert"]),
        optional_path(a["controlplane_client_key"]),
    )
    return {"host": host, "port": port, "tls": tls if tls.enabled else None}
