"""gRPC channels to the controlplane: TLS options, keepalive, and the bearer credential."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc

DEFAULT_CONTROLPLANE = "127.0.0.1:50051"

# Pings notice a dead controlplane (or a dead network path) while a stream is idle.
KEEPALIVE_OPTIONS = [
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.max_receive_message_length", 256 * 1024 * 1024),
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


def open_aio_channel(address: str, tls: ClientTLS | None = None) -> grpc.aio.Channel:
    if tls is not None and tls.enabled:
        return grpc.aio.secure_channel(address, tls.credentials(), options=KEEPALIVE_OPTIONS)
    return grpc.aio.insecure_channel(address, options=KEEPALIVE_OPTIONS)


def open_channel(address: str, tls: ClientTLS | None = None) -> grpc.Channel:
    if tls is not None and tls.enabled:
        return grpc.secure_channel(address, tls.credentials(), options=KEEPALIVE_OPTIONS)
    return grpc.insecure_channel(address, options=KEEPALIVE_OPTIONS)
