"""The controlplane's configuration: flags, AIBRIDGE_* variables, and the state directory."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from common import flags, state
from common.channel import DEFAULT_CONTROLPLANE
from common.flags import Flag, Invalid, parse_duration
from controlplane.auth import Role
from controlplane.store.keyring import KeyRing


@dataclass(frozen=True)
class ServerTLS:
    cert: Path
    key: Path
    client_ca: Path | None = None  # when set, clients must present a certificate it signed


@dataclass(frozen=True)
class ControlplaneConfig:
    listen: str
    metrics_listen: str
    # Secrets (a database URL may hold a password): never in a printed config.
    database_url: str = field(repr=False)
    state_dir: Path
    encryption_keys: str = field(repr=False)
    credentials: Mapping[Role, str] = field(repr=False)
    tls: ServerTLS | None
    revision_check_interval: float
    shutdown_grace: float
    keepalive_seconds: float
    max_calls: int
    max_streams: int
    retention: timedelta | None  # None: interceptions are kept for ever
    retention_interval: float
    controlplane_id: str
    log_format: str
    log_level: str
    test_exit_after_commit: str  # see controlplane/idempotency.py


def retention_period(value: str) -> timedelta | None:
    if value.strip().lower() in ("0", "off"):
        return None
    return timedelta(seconds=parse_duration(value))


FLAGS = (
    Flag(
        "--listen",
        default=DEFAULT_CONTROLPLANE,
        env_var="AIBRIDGE_CONTROLPLANE_LISTEN",
        help="gRPC listen address",
    ),
    Flag(
        "--metrics-listen",
        default="127.0.0.1:9464",
        env_var="AIBRIDGE_CONTROLPLANE_METRICS_LISTEN",
        help="HTTP address for /metrics, /healthz and /readyz; empty to disable",
    ),
    Flag(
        "--state-dir",
        type=Path,
        default=state.DEFAULT_STATE_DIR,
        help="where generated secrets and the default SQLite database live",
    ),
    Flag(
        "--database-url",
        help="sqlite:///PATH (default: STATE_DIR/aibridge.db) or postgresql+psycopg://USER@HOST/DB",
    ),
    Flag(
        "--encryption-keys",
        help="Fernet keys, comma-separated, newest first "
        "(default: generated into STATE_DIR/encryption.keys)",
    ),
    Flag("--admin-token", help="credential for the admin API (default: STATE_DIR/admin.token)"),
    Flag(
        "--viewer-token",
        help="read-only credential for the admin API, the console's viewer sign-in "
        "(default: STATE_DIR/viewer.token)",
    ),
    Flag(
        "--bridged-token", help="credential bridged watches with (default: STATE_DIR/bridged.token)"
    ),
    Flag("--proxyd-token", help="credential proxyd watches with (default: STATE_DIR/proxyd.token)"),
    Flag("--tls-cert", help="serve gRPC over TLS with this certificate (PEM)"),
    Flag("--tls-key", help="private key of --tls-cert (PEM)"),
    Flag("--tls-client-ca", help="require client certificates signed by this CA (PEM)"),
    Flag(
        "--revision-check-interval",
        type=float,
        default=5.0,
        help="seconds between safety-net checks of the database revision",
    ),
    Flag(
        "--shutdown-grace", type=float, default=2.0, help="seconds in-flight calls get on SIGTERM"
    ),
    Flag(
        "--keepalive-seconds",
        type=float,
        default=10.0,
        help="ping idle subscribers this often; one silent for half as long again is dropped",
    ),
    Flag(
        "--max-calls",
        type=int,
        default=16,
        help="unary calls each gRPC service runs at once; up to --max-streams more wait "
        "their turn for at most 5 s, then are refused (RESOURCE_EXHAUSTED)",
    ),
    Flag(
        "--max-streams",
        type=int,
        default=1000,
        help="streams open at once per gRPC service (Sync/Watch: one per subscriber); "
        "more are refused (RESOURCE_EXHAUSTED)",
    ),
    Flag(
        "--retention",
        type=retention_period,
        default="60d",
        metavar="DURATION",
        help="delete interceptions older than this (like 60d, 12h, 30m); 0 or off keeps all",
    ),
    Flag(
        "--retention-interval",
        type=float,
        default=3600.0,
        metavar="SECONDS",
        help="seconds between deletions of old interceptions (the first comes soon after start)",
    ),
    Flag("--controlplane-id", help="name of this replica (default: host-pid-random)"),
    Flag("--log-format", default="text", choices=["text", "json"], help="log line format"),
    Flag("--log-level", default="info", help="debug, info, warning or error"),
    Flag(
        "--test-exit-after-commit",
        default="",
        metavar="METHOD",
        help="for tests of retries only: exit right after committing an Admin METHOD's "
        "change, before answering",
    ),
)


def parse(
    argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None
) -> ControlplaneConfig:
    return flags.parse(
        ControlplaneConfig,
        FLAGS,
        argv,
        env,
        prog="aibridge-controlplane",
        description="Owns the database; serves the admin API and the snapshot stream over gRPC.",
        finish=_finish,
    )


def _finish(a: Mapping[str, Any]) -> dict[str, Any]:
    if bool(a["tls_cert"]) != bool(a["tls_key"]):
        raise Invalid("--tls-cert and --tls-key go together")
    if not a["retention_interval"] > 0:
        raise Invalid("--retention-interval must be positive")
    if a["max_calls"] < 1 or a["max_streams"] < 1:
        raise Invalid("--max-calls and --max-streams must be at least 1")
    if a["tls_client_ca"] and not a["tls_cert"]:
        raise Invalid("--tls-client-ca needs --tls-cert and --tls-key")
    if a["metrics_listen"]:
        flags.listen_address(a["metrics_listen"], "--metrics-listen")
    state_dir: Path = a["state_dir"]

    def credential(given: str | None, filename: str, prefix: str) -> str:
        return state.credential(state_dir, filename, prefix, given)

    return {
        "database_url": a["database_url"] or f"sqlite:///{(state_dir / 'aibridge.db').resolve()}",
        "encryption_keys": a["encryption_keys"]
        or state.load_or_create(state_dir / state.ENCRYPTION_KEYS_FILE, KeyRing.generate_key),
        "credentials": {
            Role.ADMIN: credential(a["admin_token"], state.ADMIN_TOKEN_FILE, "aba"),
            Role.VIEWER: credential(a["viewer_token"], state.VIEWER_TOKEN_FILE, "abv"),
            Role.BRIDGED: credential(a["bridged_token"], state.BRIDGED_TOKEN_FILE, "abb"),
            Role.PROXYD: credential(a["proxyd_token"], state.PROXYD_TOKEN_FILE, "abp"),
        },
        "tls": ServerTLS(
            Path(a["tls_cert"]),
            Path(a["tls_key"]),
            Path(a["tls_client_ca"]) if a["tls_client_ca"] else None,
        )
        if a["tls_cert"]
        else None,
        "controlplane_id": a["controlplane_id"]
        or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}",
    }
