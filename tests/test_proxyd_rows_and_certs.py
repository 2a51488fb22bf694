"""proxyd with rows it cannot route (skipped, reported, the rest keeps routing), the
certificates it presents (strict verifiers accept them), its CA, metrics and health."""

from __future__ import annotations

import datetime
import ipaddress
import json
import socket
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from aibridge.v1 import admin_pb2
from mockupstream import MockUpstream
from tests.certs import make_ca
from tests.harness import Bridged, Controlplane, Proxyd, Secrets, insert_copy, skipped_by
from tests.proxy_client import HTTPConnection, Reply, connect, peer_certificate, tls

KEY = "sk-provider-key-rows-certs-01"
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def provider(cp: Controlplane, name: str, base_url: str) -> int:
    return cp.admin.create_provider(name, base_url, keys=[KEY]).revision


def chat(
    proxyd: Proxyd, host: str, port: int, token: str, path: str = "/v1/chat/completions"
) -> Reply:
    """One request on a fresh intercepted CONNECT, trusting proxyd's generated CA."""
    status, sock = connect(proxyd.port, f"{host}:{port}", token)
    assert status == 200, f"CONNECT {host}:{port} answered {status}"
    conn = HTTPConnection(tls(sock, host, proxyd.ca_path), f"{host}:{port}")
    try:
        return conn.request("POST", path, CHAT)
    finally:
        conn.close()


def connect_status(proxyd: Proxyd, target: str, token: str | None) -> int:
    status, sock = connect(proxyd.port, target, token)
    sock.close()
    return status


def metric(proxyd: Proxyd, series: str) -> float | None:
    for line in proxyd.metrics().splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def readyz(proxyd: Proxyd) -> tuple[int, dict]:
    with socket.create_connection(("127.0.0.1", proxyd.port), timeout=10) as sock:
        sock.sendall(b"GET /readyz HTTP/1.1\r\nHost: proxy\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(body)


BAD_ROWS = {  # name → (id, base_url, the reason proxyd gives)
    "empty": ("prv_rowsempty00001", "", "unusable base_url: is required"),
    "malformed": (
        "prv_rowsmalformed1",
        "https://host:notaport/v1",
        "unusable base_url: is malformed",
    ),
    "hostless": ("prv_rowshostless01", "https:///v1", "unusable base_url: must have a host"),
}


def test_invalid_rows_are_skipped_and_reported(
    controlplane: Controlplane, mitm: tuple[Bridged, Proxyd], token: str,
    tls_upstream_a: MockUpstream, tls_upstream_b: MockUpstream,
) -> None:  # fmt: skip
    _bridged, proxyd = mitm
    admin = controlplane.admin
    a, b = tls_upstream_a, tls_upstream_b
    # Same host (the second in another case): the name that sorts first wins, whatever the
    # order of creation.
    provider(controlplane, "zzz", f"https://localhost:{a.port}/v1")
    provider(controlplane, "aaa", f"https://LOCALHOST:{a.port}/other/v1")
    provider(controlplane, "valid", f"https://127.0.0.1:{b.port}/v1")
    for name, (row_id, base_url, _reason) in BAD_ROWS.items():
        insert_copy(controlplane.database_url, "valid", id=row_id, name=name, base_url=base_url)
    # The inserts bumped no revision: an admin change makes the next snapshot carry them.
    touched = admin.UpdateProvider(admin_pb2.UpdateProviderRequest(ref="valid", display_name="V"))
    admin.wait_applied(touched.revision)

    skipped = skipped_by(controlplane, "proxyd")
    assert set(skipped) == {*BAD_ROWS, "zzz"}
    for name, (row_id, _base_url, reason) in BAD_ROWS.items():
        assert skipped[name][0] == row_id
        assert skipped[name][1].startswith(reason), skipped[name]
        assert f"provider {name} ({row_id}) not intercepted: {reason}" in proxyd.log()
    assert skipped["zzz"][1] == f"host localhost:{a.port} is already routed to aaa"
    assert f"provider zzz ({skipped['zzz'][0]}) not intercepted" in proxyd.log()

    # The valid ones keep routing: the shared host to aaa, the other host to valid.
    assert chat(proxyd, "localhost", a.port, token, "/other/v1/chat/completions").status == 200
    assert [s.path for s in a.seen] == ["/other/v1/chat/completions"]  # aaa's base_url
    assert metric(proxyd, 'aibridge_proxyd_requests_total{provider="aaa",status="200"}') == 1
    assert metric(proxyd, 'aibridge_proxyd_requests_total{provider="zzz",status="200"}') is None
    assert chat(proxyd, "127.0.0.1", b.port, token).json()["choices"][0]["message"]["content"] == (
        "hello from B"
    )
    assert metric(proxyd, "aibridge_proxyd_intercepted_hosts") == 2

    # All invalid: nothing intercepted (loopback is then a refused tunnel), still ready.
    for name in ("aaa", "zzz", "valid"):
        last = admin.DeleteProvider(admin_pb2.DeleteProviderRequest(ref=name))
    admin.wait_applied(last.revision)
    assert set(skipped_by(controlplane, "proxyd")) == set(BAD_ROWS)
    assert connect_status(proxyd, f"localhost:{a.port}", token) == 403
    assert connect_status(proxyd, f"127.0.0.1:{b.port}", token) == 403
    assert metric(proxyd, "aibridge_proxyd_intercepted_hosts") == 0
    assert readyz(proxyd) == (
        200, {"ready": True, "version": last.revision, "controlplane_connected": True,
            "from_cache": False}
    )  # fmt: skip
    assert proxyd.proc is not None and proxyd.proc.poll() is None


def test_leaf_certificates_satisfy_strict_verifiers(
    controlplane: Controlplane, mitm: tuple[Bridged, Proxyd], token: str
) -> None:
    _bridged, proxyd = mitm
    port = 8443  # interception needs no listener there: proxyd answers the handshake itself
    hosts = [  # (CONNECT host, the base_url's host, the SAN expected)
        ("localhost", "localhost", x509.DNSName("localhost")),
        ("127.0.0.1", "127.0.0.1", x509.IPAddress(ipaddress.ip_address("127.0.0.1"))),
        ("::1", "[::1]", x509.IPAddress(ipaddress.ip_address("::1"))),
        # An internationalised host is intercepted (and certified) as clients send it.
        ("xn--bcher-kva.example", "BÜCHER.example", x509.DNSName("xn--bcher-kva.example")),
    ]
    for i, (_host, base_host, _san) in enumerate(hosts):
        revision = provider(controlplane, f"p{i}", f"https://{base_host}:{port}/v1")
    controlplane.admin.wait_applied(revision)
    ca = x509.load_pem_x509_certificate(proxyd.ca_path.read_bytes())
    ca_ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest

    for host, _base_host, san in hosts:
        target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        status, sock = connect(proxyd.port, target, token)
        assert status == 200, target
        context = ssl.create_default_context(cafile=str(proxyd.ca_path))
        context.verify_flags |= ssl.VERIFY_X509_STRICT
        context.set_alpn_protocols(["h2", "http/1.1"])
        with context.wrap_socket(sock, server_hostname=host) as secure:  # name and chain
            assert secure.selected_alpn_protocol() == "http/1.1"
            leaf = peer_certificate(secure)
        assert leaf.issuer == ca.subject
        sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert list(sans) == [san]
        aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
        assert aki.key_identifier == ca_ski
        assert leaf.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
        assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
        assert lifetime <= datetime.timedelta(days=398)


def test_the_generated_ca(mitm: tuple[Bridged, Proxyd]) -> None:
    _bridged, proxyd = mitm
    key = proxyd.ca_path.with_name("proxyd-ca.key")
    assert key.stat().st_mode & 0o777 == 0o600
    ca = x509.load_pem_x509_certificate(proxyd.ca_path.read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)


def test_a_given_ca_signs_the_leaves(
    controlplane: Controlplane, mitm: tuple[Bridged, Proxyd], token: str, tmp_path: Path,
    secrets: Secrets, tls_upstream_a: MockUpstream,
) -> None:  # fmt: skip
    bridged, _default = mitm
    a = tls_upstream_a
    own = make_ca(tmp_path / "own", "own-ca", "our company CA")
    proxyd = Proxyd(
        [controlplane.address], bridged.url, tmp_path, secrets, name="own",
        extra_args=("--ca-cert", str(own.cert_path), "--ca-key", str(own.key_path)),
    ).start()  # fmt: skip
    try:
        controlplane.admin.wait_applied(
            provider(controlplane, "p", f"https://localhost:{a.port}/v1")
        )
        assert _http_get(proxyd, "/ca.pem") == own.cert_pem  # what users download
        # The generated CA (in the shared state dir) is not what signs this proxyd's leaves.
        status, sock = connect(proxyd.port, f"localhost:{a.port}", token)
        assert status == 200
        with pytest.raises(ssl.SSLCertVerificationError):
            tls(sock, "localhost", proxyd.ca_path)
        sock.close()
        status, sock = connect(proxyd.port, f"localhost:{a.port}", token)
        context = ssl.create_default_context(cafile=str(own.cert_path))
        context.verify_flags |= ssl.VERIFY_X509_STRICT
        secure = context.wrap_socket(sock, server_hostname="localhost")
        leaf = peer_certificate(secure)
        assert leaf.issuer == own.cert.subject
        conn = HTTPConnection(secure, f"localhost:{a.port}")
        assert conn.request("POST", "/v1/chat/completions", CHAT).status == 200
        conn.close()
    finally:
        proxyd.stop()


def _http_get(proxyd: Proxyd, path: str) -> bytes:
    with socket.create_connection(("127.0.0.1", proxyd.port), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: proxy\r\n\r\n".encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), head
    return body


def test_metrics_and_health(
    controlplane: Controlplane, mitm: tuple[Bridged, Proxyd], token: str, tmp_path: Path,
    secrets: Secrets, tls_upstream_a: MockUpstream, tls_upstream_b: MockUpstream,
) -> None:  # fmt: skip
    bridged, _default = mitm
    a, origin = tls_upstream_a, tls_upstream_b
    proxyd = Proxyd(
        [controlplane.address], bridged.url, tmp_path, secrets, name="metered",
        extra_args=("--allow-private-cidrs", "127.0.0.0/8", "--tunnel-ports", str(origin.port)),
    ).start()  # fmt: skip
    try:
        revision = provider(controlplane, "p", f"https://localhost:{a.port}/v1")
        controlplane.admin.wait_applied(revision)
        assert chat(proxyd, "localhost", a.port, token).status == 200  # intercepted
        status, sock = connect(proxyd.port, f"127.0.0.1:{origin.port}", token)  # tunnelled
        assert status == 200
        sock.close()
        assert connect_status(proxyd, f"localhost:{a.port}", None) == 407  # refused
        assert connect_status(proxyd, "127.0.0.1:1", token) == 403  # refused: the port

        for kind, count in (("intercepted", 1), ("tunnelled", 1), ("refused", 2)):
            series = f'aibridge_proxyd_connect_sessions_total{{kind="{kind}"}}'
            assert metric(proxyd, series) == count, kind
        assert metric(proxyd, 'aibridge_proxyd_requests_total{provider="p",status="200"}') == 1
        assert metric(proxyd, "aibridge_proxyd_snapshot_version") == revision
        assert metric(proxyd, "aibridge_proxyd_controlplane_connected") == 1
        assert readyz(proxyd) == (
            200, {"ready": True, "version": revision, "controlplane_connected": True,
            "from_cache": False}
        )  # fmt: skip
        assert _http_get(proxyd, "/healthz") == b'{"status": "ok"}'
    finally:
        proxyd.stop()
