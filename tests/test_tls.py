"""gRPC over TLS, and mutual TLS: the controlplane, aibridgectl and the subscriber library."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2

from common.channel import ClientTLS
from tests.certs import CertFiles, issue, make_ca
from tests.harness import (
    Controlplane,
    RecordingSubscriber,
    Secrets,
    async_wait_until,
    ctl,
    health_stub,
)


@dataclass(frozen=True)
class Pki:
    ca: CertFiles
    server: CertFiles
    client: CertFiles
    other_ca: CertFiles  # trusted by nobody
    stranger: CertFiles  # a client certificate the other CA signed


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    directory = tmp_path / "pki"
    ca = make_ca(directory)
    other_ca = make_ca(directory, "other-ca", "someone else's CA")
    return Pki(
        ca=ca,
        server=issue(ca, directory, "server"),
        client=issue(ca, directory, "client", client=True),
        other_ca=other_ca,
        stranger=issue(other_ca, directory, "stranger", client=True),
    )


class TLSControlplane(Controlplane):
    """Health-waits (and makes its admin client) over TLS, with `client_tls`'s trust."""

    def __init__(self, *args: Any, client_tls: ClientTLS, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.client_tls = client_tls

    def channel_credentials(self) -> grpc.ChannelCredentials:
        return self.client_tls.credentials()


def _start(tmp_path: Path, pki: Pki, *, mutual: bool) -> Iterator[TLSControlplane]:
    args = ["--tls-cert", str(pki.server.cert_path), "--tls-key", str(pki.server.key_path)]
    if mutual:
        args += ["--tls-client-ca", str(pki.ca.cert_path)]
    client_tls = ClientTLS(
        pki.ca.cert_path,
        pki.client.cert_path if mutual else None,
        pki.client.key_path if mutual else None,
    )
    cp = TLSControlplane(
        f"sqlite:///{tmp_path}/aibridge.db",
        tmp_path,
        Secrets(),
        extra_args=tuple(args),
        client_tls=client_tls,
    )
    cp.start()
    try:
        yield cp
    finally:
        cp.stop()


@pytest.fixture
def tls_controlplane(tmp_path: Path, pki: Pki) -> Iterator[TLSControlplane]:
    yield from _start(tmp_path, pki, mutual=False)


@pytest.fixture
def mtls_controlplane(tmp_path: Path, pki: Pki) -> Iterator[TLSControlplane]:
    yield from _start(tmp_path, pki, mutual=True)


def health_check(cp: Controlplane, credentials: grpc.ChannelCredentials | None) -> grpc.StatusCode:
    """The status code of one health check over a fresh channel (OK when it answers)."""
    channel = (
        grpc.insecure_channel(cp.address)
        if credentials is None
        else grpc.secure_channel(cp.address, credentials)
    )
    with channel:
        try:
            health_stub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        except grpc.RpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


def subscriber_snapshot(cp: Controlplane, role: str, token: str, tls: ClientTLS) -> list[str]:
    """Runs the real subscriber over `tls` until it has applied the current revision;
    returns the subscriber ids `aibridgectl status` saw meanwhile (over the same TLS)."""

    async def scenario() -> list[str]:
        revision = await asyncio.to_thread(cp.admin.revision)
        sub = RecordingSubscriber([cp.address], role, token, tls=tls).start()
        try:
            await sub.wait_version(revision)
            assert sub.current is not None and sub.current.version == revision
            assert sub.subscriber.connected_to == cp.address
            args = ["--ca-cert", str(tls.ca_cert)]
            if tls.client_cert is not None:
                args += ["--client-cert", str(tls.client_cert), "--client-key", str(tls.client_key)]
            status = await asyncio.to_thread(ctl, cp, *args, "status", "--json", check=True)
            return [s["id"] for s in json.loads(status.stdout)["subscribers"]]
        finally:
            await sub.stop()

    return asyncio.run(scenario())


def refused_subscriber(cp: Controlplane, tls: ClientTLS | None) -> str:
    """Runs the real subscriber until it has failed to connect; returns its last error."""

    async def scenario() -> str:
        sub = RecordingSubscriber([cp.address], "bridged", cp.secrets.bridged, tls=tls).start()
        try:
            error = await async_wait_until(
                lambda: sub.subscriber.last_error, what="the subscriber to fail"
            )
            assert sub.applied == [] and not sub.subscriber.connected
            return error
        finally:
            await sub.stop()

    return asyncio.run(scenario())


# --- TLS --------------------------------------------------------------------------------------


def test_ctl_over_tls_needs_the_ca(tls_controlplane: TLSControlplane, pki: Pki) -> None:
    cp = tls_controlplane
    trusted = ctl(cp, "--ca-cert", str(pki.ca.cert_path), "status")
    assert trusted.returncode == 0, trusted.stderr
    assert "revision" in trusted.stdout

    # The option works after the subcommand too.
    after = ctl(cp, "status", "--ca-cert", str(pki.ca.cert_path), "--json")
    assert after.returncode == 0, after.stderr
    assert json.loads(after.stdout)["controlplane_id"] == cp.name

    plaintext = ctl(cp, "status")
    assert plaintext.returncode == 1
    assert "UNAVAILABLE" in plaintext.stderr
    assert cp.secrets.admin not in plaintext.stderr + plaintext.stdout

    untrusted = ctl(cp, "--ca-cert", str(pki.other_ca.cert_path), "status")
    assert untrusted.returncode == 1
    assert "UNAVAILABLE" in untrusted.stderr

    missing = ctl(cp, "--ca-cert", str(pki.ca.cert_path.with_name("nope.pem")), "status")
    assert missing.returncode == 1
    assert "nope.pem" in missing.stderr


def test_plaintext_and_untrusted_grpc_clients_fail(
    tls_controlplane: TLSControlplane, pki: Pki
) -> None:
    cp = tls_controlplane
    assert health_check(cp, None) == grpc.StatusCode.UNAVAILABLE
    other = grpc.ssl_channel_credentials(pki.other_ca.cert_path.read_bytes())
    assert health_check(cp, other) == grpc.StatusCode.UNAVAILABLE
    trusted = grpc.ssl_channel_credentials(pki.ca.cert_path.read_bytes())
    assert health_check(cp, trusted) == grpc.StatusCode.OK


def test_subscriber_over_tls_receives_a_snapshot(
    tls_controlplane: TLSControlplane, pki: Pki
) -> None:
    cp = tls_controlplane
    cp.admin.create_provider("openai")
    tls = ClientTLS(ca_cert=pki.ca.cert_path)
    seen = subscriber_snapshot(cp, "proxyd", cp.secrets.proxyd, tls)
    assert len(seen) == 1 and seen[0].startswith("proxyd-")


def test_subscriber_without_tls_is_refused(tls_controlplane: TLSControlplane) -> None:
    error = refused_subscriber(tls_controlplane, None)
    assert error.startswith("UNAVAILABLE")


# --- mutual TLS -------------------------------------------------------------------------------


def test_mtls_refuses_clients_without_a_trusted_certificate(
    mtls_controlplane: TLSControlplane, pki: Pki
) -> None:
    cp = mtls_controlplane
    ca = pki.ca.cert_path.read_bytes()
    assert health_check(cp, grpc.ssl_channel_credentials(ca)) == grpc.StatusCode.UNAVAILABLE
    stranger = grpc.ssl_channel_credentials(
        ca, pki.stranger.key_path.read_bytes(), pki.stranger.cert_path.read_bytes()
    )
    assert health_check(cp, stranger) == grpc.StatusCode.UNAVAILABLE
    assert health_check(cp, None) == grpc.StatusCode.UNAVAILABLE
    client = grpc.ssl_channel_credentials(
        ca, pki.client.key_path.read_bytes(), pki.client.cert_path.read_bytes()
    )
    assert health_check(cp, client) == grpc.StatusCode.OK

    no_cert = ctl(cp, "--ca-cert", str(pki.ca.cert_path), "status")
    assert no_cert.returncode == 1
    assert "UNAVAILABLE" in no_cert.stderr
    foreign = ctl(
        cp,
        "--ca-cert", str(pki.ca.cert_path),
        "--client-cert", str(pki.stranger.cert_path),
        "--client-key", str(pki.stranger.key_path),
        "status",
    )  # fmt: skip
    assert foreign.returncode == 1
    half = ctl(
        cp, "--ca-cert", str(pki.ca.cert_path), "--client-cert", str(pki.client.cert_path), "status"
    )
    assert half.returncode == 1
    assert "--client-cert needs --client-key" in half.stderr

    error = refused_subscriber(cp, ClientTLS(ca_cert=pki.ca.cert_path))
    assert error.startswith("UNAVAILABLE")


def test_mtls_with_a_client_certificate_works(mtls_controlplane: TLSControlplane, pki: Pki) -> None:
    cp = mtls_controlplane
    result = ctl(
        cp,
        "--ca-cert", str(pki.ca.cert_path),
        "--client-cert", str(pki.client.cert_path),
        "--client-key", str(pki.client.key_path),
        "status",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr

    tls = ClientTLS(pki.ca.cert_path, pki.client.cert_path, pki.client.key_path)
    seen = subscriber_snapshot(cp, "bridged", cp.secrets.bridged, tls)
    assert len(seen) == 1 and seen[0].startswith("bridged-")


def test_mtls_certificate_does_not_replace_the_bearer_credential(
    mtls_controlplane: TLSControlplane, pki: Pki
) -> None:
    cp = mtls_controlplane
    result = ctl(
        cp,
        "--ca-cert", str(pki.ca.cert_path),
        "--client-cert", str(pki.client.cert_path),
        "--client-key", str(pki.client.key_path),
        "status",
        env={"AIBRIDGE_ADMIN_TOKEN": "aba_wrong"},
    )  # fmt: skip
    assert result.returncode == 1
    assert "UNAUTHENTICATED" in result.stderr
