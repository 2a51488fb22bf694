"""gRPC channels to the controlplane: TLS options, keepalive, and the bearer credential."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc

DEFAULT_CONTROLPLANE = "127.0.0.1:50051"

DEFAULT_KEEPALIVE_SECONDS = 10.0


def keepalive_options(keepalive_seconds: float) -> list[tuple[str, int]]:
    """Pings notice a dead peer (or a dead network path) while a stream is idle: one that
    has not answered within half the interval is given up on. Used by both ends."""
    timeout_ms = max(int(keepalive_seconds * 500), 500)
    return [
        ("grpc.keepalive_time_ms", int(keepalive_seconds * 1000)),
        ("grpc.keepalive_timeout_ms", timeout_ms),
        # Any unanswered ping (BDP probes too, which defer keepalive pings) ends the transport.
        ("grpc.http2.ping_timeout_ms", timeout_ms),
        ("grpc.keepalive_permit_without_calls", 1),
    ]


def channel_options(keepalive_seconds: float = DEFAULT_KEEPALIVE_SECONDS) -> list[tuple[str, int]]:
    return [
        *keepalive_options(keepalive_seconds),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.max_receive_message_length", 256 * 1024 * 1024),
        # gRPC's own reconnect backoff grows to 120 s: a controlplane back from a restart
        # would go unnoticed by an idle channel (the console's) for minutes.
        ("grpc.initial_reconnect_backoff_ms", 250),
        ("grpc.max_reconnect_backoff_ms", 2000),
    ]


@dataclass(frozen=True)
class ClientTLS:
    """Trust for the controlplane's certificate, and an optional client certificate."""

    ca_cert: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None

    @property
    def enabled(self) -> bool:
        return self.ca_cert is not None or self.client_cert is not None

    def credentials(self) -> grpc.ChannelCredentials:
        root = self.ca_cert.read_bytes() if self.ca_cert else None
        cert = self.client_cert.read_bytes() if self.client_cert else None
        key = self.client_key.read_bytes() if self.client_key else None
        return grpc.ssl_channel_credentials(root, key, cert)


def auth_metadata(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def open_aio_channel(
    address: str,
    tls: ClientTLS | None = None,
    keepalive_seconds: float = DEFAULT_KEEPALIVE_SECONDS,
) -> grpc.aio.Channel:
    options = channel_options(keepalive_seconds)
    if tls is not None and tls.enabled:
        return grpc.aio.secure_channel(address, tls.credentials(), options=options)
    return grpc.aio.insecure_channel(address, options=options)


def open_channel(address: str, tls: ClientTLS | None = None) -> grpc.Channel:
    options = channel_options()
    if tls is not None and tls.enabled:
        return grpc.secure_channel(address, tls.credentials(), options=options)
    return grpc.insecure_channel(address, options=options)
