"""The controlplane's configuration: flags, AIBRIDGE_* variables, and the state directory."""

from __future__ import annotations

import argparse
import os
import socket
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from common import state
from common.channel import DEFAULT_CONTROLPLANE
from common.flags import add_flag
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
    database_url: str
    state_dir: Path
    encryption_keys: str
    credentials: Mapping[Role, str]
    tls: ServerTLS | None
    revision_check_interval: float
    shutdown_grace: float
    keepalive_seconds: float
    max_calls: int
    max_streams: int
    controlplane_id: str
    log_format: str
    log_level: str


def parse(
    argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None
) -> ControlplaneConfig:
    environ = os.environ if env is None else env
    p = argparse.ArgumentParser(
        prog="aibridge-controlplane",
        description="Owns the database; serves the admin API and the snapshot stream over gRPC.",
    )

    def flag(name: str, **kwargs: object) -> None:
        add_flag(p, name, env=environ, **kwargs)  # type: ignore[arg-type]

    flag(
        "--listen",
        default=DEFAULT_CONTROLPLANE,
        env_var="AIBRIDGE_CONTROLPLANE_LISTEN",
        help="gRPC listen address",
    )
    flag(
        "--metrics-listen",
        default="127.0.0.1:9464",
        env_var="AIBRIDGE_CONTROLPLANE_METRICS_LISTEN",
        help="HTTP address for /metrics and /healthz; empty to disable",
    )
    flag(
        "--state-dir",
        default=state.DEFAULT_STATE_DIR,
        help="where generated secrets and the default SQLite database live",
    )
    flag(
        "--database-url",
        help="sqlite:///PATH (default: STATE_DIR/aibridge.db) or postgresql+psycopg://USER@HOST/DB",
    )
    flag(
        "--encryption-keys",
        help="Fernet keys, comma-separated, newest first "
        "(default: generated into STATE_DIR/encryption.keys)",
    )
    flag("--admin-token", help="credential for the admin API (default: STATE_DIR/admin.token)")
    flag(
        "--bridged-token", help="credential bridged watches with (default: STATE_DIR/bridged.token)"
    )
    flag("--proxyd-token", help="credential proxyd watches with (default: STATE_DIR/proxyd.token)")
    flag("--tls-cert", help="serve gRPC over TLS with this certificate (PEM)")
    flag("--tls-key", help="private key of --tls-cert (PEM)")
    flag("--tls-client-ca", help="require client certificates signed by this CA (PEM)")
    flag(
        "--revision-check-interval",
        type=float,
        default=5.0,
        help="seconds between safety-net checks of the database revision",
    )
    flag("--shutdown-grace", type=float, default=2.0, help="seconds in-flight calls get on SIGTERM")
    flag(
        "--keepalive-seconds",
        type=float,
        default=10.0,
        help="ping idle subscribers this often; one silent for half as long again is dropped",
    )
    flag(
        "--max-calls",
        type=int,
        default=16,
        help="unary calls each gRPC service runs at once; up to --max-streams more wait "
        "their turn for at most 5 s, then are refused (RESOURCE_EXHAUSTED)",
    )
    flag(
        "--max-streams",
        type=int,
        default=1000,
        help="streams open at once per gRPC service (Sync/Watch: one per subscriber); "
        "more are refused (RESOURCE_EXHAUSTED)",
    )
    flag("--controlplane-id", help="name of this replica (default: host-pid-random)")
    flag("--log-format", default="text", choices=["text", "json"], help="log line format")
    flag("--log-level", default="info", help="debug, info, warning or error")
    a = p.parse_args(argv)

    state_dir = Path(a.state_dir)
    if bool(a.tls_cert) != bool(a.tls_key):
        p.error("--tls-cert and --tls-key go together")
    if a.max_calls < 1 or a.max_streams < 1:
        p.error("--max-calls and --max-streams must be at least 1")
    if a.tls_client_ca and not a.tls_cert:
        p.error("--tls-client-ca needs --tls-cert and --tls-key")
    encryption_keys = a.encryption_keys or state.load_or_create(
        state_dir / state.ENCRYPTION_KEYS_FILE, KeyRing.generate_key
    )

    def credential(given: str | None, filename: str, prefix: str) -> str:
        return given or state.load_or_create(
            state_dir / filename, lambda: state.new_credential(prefix)
        )

    return ControlplaneConfig(
        listen=a.listen,
        metrics_listen=a.metrics_listen,
        database_url=a.database_url or f"sqlite:///{(state_dir / 'aibridge.db').resolve()}",
        state_dir=state_dir,
        encryption_keys=encryption_keys,
        credentials={
            Role.ADMIN: credential(a.admin_token, state.ADMIN_TOKEN_FILE, "aba"),
            Role.BRIDGED: credential(a.bridged_token, state.BRIDGED_TOKEN_FILE, "abb"),
            Role.PROXYD: credential(a.proxyd_token, state.PROXYD_TOKEN_FILE, "abp"),
        },
        tls=ServerTLS(
            Path(a.tls_cert), Path(a.tls_key), Path(a.tls_client_ca) if a.tls_client_ca else None
        )
        if a.tls_cert
        else None,
        revision_check_interval=a.revision_check_interval,
        shutdown_grace=a.shutdown_grace,
        keepalive_seconds=a.keepalive_seconds,
        max_calls=a.max_calls,
        max_streams=a.max_streams,
        controlplane_id=a.controlplane_id
        or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}",
        log_format=a.log_format,
        log_level=a.log_level,
    )
