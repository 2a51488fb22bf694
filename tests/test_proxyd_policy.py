"""proxyd's rules: a token on every CONNECT, the tunnel policy, bad rows and bad input,
and certificates that strict verifiers accept."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import sqlalchemy as sa
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from aibridge.v1 import admin_pb2
from tests.conftest import UpstreamPKI
from tests.harness import Bridged, Controlplane, Proxyd, Secrets, wait_until
from tests.proxy_client import HTTPConnection, connect, tls
from tests.upstream import FakeUpstream

KEY = "sk-provider-key-policy-0001"
CHAT = {"model": "m", "messages": []}


def provider(cp: Controlplane, name: str, base_url: str, **kw) -> int:  # type: ignore[no-untyped-def]
    return cp.admin.create_provider(name, base_url, keys=[KEY], **kw).revision


def raw_connect(proxyd: Proxyd, target: str, authorization: str | None) -> bytes:
    with socket.create_connection(("127.0.0.1", proxyd.port), timeout=10) as sock:
        header = f"Proxy-Authorization: {authorization}\r\n" if authorization else ""
        sock.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n{header}\r\n".encode())
        return sock.recv(4096)


def test_every_connect_needs_a_live_token(
    controlplane: Controlplane, mitm: tuple[Bridged, Proxyd], token: str,
    tls_upstream_a: FakeUpstream,
) -> None:  # fmt: skip
    _bridged, proxyd = mitm
    admin = controlplane.admin
    admin.wait_applied(provider(controlplane, "p", f"https://localhost:{tls_upstream_a.port}/v1"))
    short = admin.CreateToken(admin_pb2.CreateTokenRequest(name="short", expires_in_seconds=1))
    doomed = admin.CreateToken(admin_pb2.CreateTokenRequest(name="doomed"))
    admin.wait_applied(doomed.revision)
    revoked = admin.RevokeToken(admin_pb2.RevokeTokenRequest(ref="doomed"))
    admin.wait_applied(revoked.revision)
    wait_until(
        lambda: connect(proxyd.port, f"localhost:{tls_upstream_a.port}", short.token)[0] == 407,
        what="the short token to expire",
    )
    for target in (f"localhost:{tls_upstream_a.port}", "example.com:443"):  # intercepted, tunnel
        for authorization in (
            None, "Basic !!!not-base64", f"Bearer {token}", "Basic dXNlcjp3cm9uZw==",
        ):  # fmt: skip
            answer = raw_connect(proxyd, target, authorization)
            assert answer.startswith(b"HTTP/1.1 407"), (target, authorization, answer)
            assert b'Proxy-Authenticate: Basic realm="aibridge"' in answer
        for dead in (doomed.token, short.token):
            assert connect(proxyd.port, target, dead)[0] == 407
    assert connect(proxyd.port, f"localhost:{tls_upstream_a.port}", token)[0] == 200


def test_tunnel_policy(
    controlplane: Controlplane, tmp_path: Path, secrets: Secrets, token: str,
    mitm: tuple[Bridged, Proxyd], pki: UpstreamPKI, tls_upstream_a: FakeUpstream,
    tls_upstream_b: FakeUpstream,
) -> None:  # fmt: skip
    bridged, default = mitm
    a, origin = tls_upstream_a, tls_upstream_b  # b is no provider's: a tunnel target
    controlplane.admin.wait_applied(provider(controlplane, "p", f"https://localhost:{a.port}/v1"))
    allowing = Proxyd(
        [controlplane.address], bridged.url, tmp_path, secrets, name="allowing",
        extra_args=("--allow-private-cidrs", "127.0.0.0/8", "--tunnel-ports", str(origin.port)),
    ).start()  # fmt: skip
    denying = Proxyd(
        [controlplane.address], bridged.url, tmp_path, secrets, name="denying",
        extra_args=("--tunnel", "deny", "--allow-private-cidrs", "127.0.0.0/8",
                    "--tunnel-ports", str(origin.port)),
    ).start()  # fmt: skip
    try:
        # Allowed: bytes go through untouched; the client sees the origin's certificate.
        status, sock = connect(allowing.port, f"127.0.0.1:{origin.port}", token)
        assert status == 200
        secure = tls(sock, "127.0.0.1", pki.ca.cert_path)  # the test CA, not proxyd's
        issuer = x509.load_der_x509_certificate(secure.getpeercert(binary_form=True)).issuer
        assert issuer == pki.ca.cert.subject
        reply = HTTPConnection(secure, f"127.0.0.1:{origin.port}").request(
            "POST", "/v1/chat/completions", CHAT, {"Authorization": "Bearer origin-sees-this"}
        )
        assert reply.json()["choices"][0]["message"]["content"] == "hello from B"
        assert origin.seen[-1].key == "origin-sees-this"  # not a gateway hop: untouched
        secure.close()

        # Loopback without --allow-private-cidrs, or a port off the list: 403.
        assert connect(default.port, f"127.0.0.1:{origin.port}", token)[0] == 403
        assert connect(allowing.port, "127.0.0.1:443", token)[0] == 403  # not on its list
        # --tunnel deny: every non-provider host refused; providers still intercepted.
        assert connect(denying.port, f"127.0.0.1:{origin.port}", token)[0] == 403
        status, sock = connect(denying.port, f"localhost:{a.port}", token)
        assert status == 200
        conn = HTTPConnection(tls(sock, "localhost", allowing.ca_path), f"localhost:{a.port}")
        assert conn.request("POST", "/v1/chat/completions", CHAT).status == 200
        conn.close()
        text = allowing.metrics()
        assert 'aibridge_proxyd_connect_sessions_total{kind="tunnelled"} 1.0' in text
        assert 'aibridge_proxyd_connect_sessions_total{kind="refused"} 1.0' in text
    finally:
        allowing.stop()
        denying.stop()


def test_garbage_leaves_proxyd_serving(
    controlplane: Controlplane, mitm: tuple[Bridged, Proxyd], token: str,
    tls_upstream_a: FakeUpstream,
) -> None:  # fmt: skip
    _bridged, proxyd = mitm
    a = tls_upstream_a
    controlplane.admin.wait_applied(provider(controlplane, "p", f"https://localhost:{a.port}/v1"))
    for garbage in (b"\x16\x03\x01\x02\x00garbage\r\n\r\n", b"HELLO THERE\r\n\r\n",
                    b"BREW /pot HTCPCP/1.0\r\n\r\n", b"GET http://example.com/ HTTP/1.1\r\n"
                    b"Host: example.com\r\n\r\n", b"CONNECT nohost HTTP/1.1\r\n\r\n"):  # fmt: skip
        with socket.create_connection(("127.0.0.1", proxyd.port), timeout=10) as sock:
            sock.sendall(garbage)
            answer = sock.recv(4096)
            assert answer.startswith(b"HTTP/1.1 4") or answer == b"", (garbage, answer)
    # Half-open: connect, say nothing, leave.
    socket.create_connection(("127.0.0.1", proxyd.port), timeout=10).close()
    # TLS garbage after a CONNECT to a provider host.
    status, sock = connect(proxyd.port, f"localhost:{a.port}", token)
    assert status == 200
    sock.sendall(b"this is not a TLS client hello" * 10)
    sock.close()
    # Still serving.
    status, sock = connect(proxyd.port, f"localhost:{a.port}", token)
    conn = HTTPConnection(tls(sock, "localhost", proxyd.ca_path), f"localhost:{a.port}")
    assert conn.request("POST", "/v1/chat/completions", CHAT).status == 200
    conn.close()
    assert proxyd.proc is not None and proxyd.proc.poll() is None


def insert_copy(url: str, template: str, **changes: str) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            row = dict(
                conn.execute(sa.text("SELECT * FROM providers WHERE name = :n"), {"n": template})
                .mappings().one()
            )  # fmt: skip
            row |= changes
            columns = ", ".join(row)
            values = ", ".join(f":{c}" for c in row)
            conn.execute(sa.text(f"INSERT INTO providers ({columns}) VALUES ({values})"), row)
    finally:
        engine.dispose()


def test_invalid_rows_are_skipped_and_reported(
    controlplane: Controlplane, mitm: tuple[Bridged, Proxyd], token: str,
    tls_upstream_a: FakeUpstream, tls_upstream_b: FakeUpstream,
) -> None:  # fmt: skip
    _bridged, proxyd = mitm
    admin = controlplane.admin
    a, b = tls_upstream_a, tls_upstream_b
    provider(controlplane, "zzz", f"https://localhost:{a.port}/v1")
    provider(controlplane, "aaa", f"https://LOCALHOST:{a.port}/other/v1")  # same host: aaa wins
    provider(controlplane, "valid", f"https://127.0.0.1:{b.port}/v1")
    insert_copy(
        controlplane.database_url, "valid", id="prv_empty000000001", name="empty", base_url=""
    )
    insert_copy(controlplane.database_url, "valid", id="prv_malformed00001", name="malformed",
                base_url="https://host:notaport/v1")  # fmt: skip
    touched = admin.UpdateProvider(admin_pb2.UpdateProviderRequest(ref="valid", display_name="V"))
    admin.wait_applied(touched.revision)

    status = admin.GetStatus(admin_pb2.GetStatusRequest())
    proxyd_state = next(s for s in status.subscribers if s.role == "proxyd")
    reasons = {s.name: s.reason for s in proxyd_state.skipped}
    assert set(reasons) == {"empty", "malformed", "zzz"}
    assert "already routed to aaa" in reasons["zzz"]
    for name in reasons:
        assert name in proxyd.log()

    status_code, sock = connect(proxyd.port, f"localhost:{a.port}", token)
    assert status_code == 200
    conn = HTTPConnection(tls(sock, "localhost", proxyd.ca_path), f"localhost:{a.port}")
    assert conn.request("POST", "/other/v1/chat/completions", CHAT).status == 200
    conn.close()
    assert 'aibridge_proxyd_requests_total{provider="aaa",status="200"} 1.0' in proxyd.metrics()
    status_code, sock = connect(proxyd.port, f"127.0.0.1:{b.port}", token)
    conn = HTTPConnection(tls(sock, "127.0.0.1", proxyd.ca_path), f"127.0.0.1:{b.port}")
    assert conn.request("POST", "/v1/chat/completions", CHAT).status == 200
    conn.close()

    # All invalid: nothing intercepted, and proxyd stays ready.
    for name in ("aaa", "zzz", "valid"):
        last = admin.DeleteProvider(admin_pb2.DeleteProviderRequest(ref=name))
    admin.wait_applied(last.revision)
    assert connect(proxyd.port, f"localhost:{a.port}", token)[0] == 403
    assert b"200" in raw_http(proxyd, "/readyz")


def raw_http(proxyd: Proxyd, path: str) -> bytes:
    with socket.create_connection(("127.0.0.1", proxyd.port), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: proxy\r\n\r\n".encode())
        return sock.recv(65536)


def test_leaf_certificates_satisfy_strict_verifiers(
    controlplane: Controlplane, mitm: tuple[Bridged, Proxyd], token: str,
    tls_upstream_a: FakeUpstream,
) -> None:  # fmt: skip
    _bridged, proxyd = mitm
    a = tls_upstream_a
    provider(controlplane, "named", f"https://localhost:{a.port}/v1")
    controlplane.admin.wait_applied(
        provider(controlplane, "ip", f"https://127.0.0.1:{a.port + 0}/x")
    )
    ca = x509.load_pem_x509_certificate(proxyd.ca_path.read_bytes())
    ca_ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    for host, san_type, expected in (
        ("localhost", x509.DNSName, "localhost"),
        ("127.0.0.1", x509.IPAddress, "127.0.0.1"),
    ):
        status, sock = connect(proxyd.port, f"{host}:{a.port}", token)
        assert status == 200
        context = ssl.create_default_context(cafile=str(proxyd.ca_path))
        context.verify_flags |= ssl.VERIFY_X509_STRICT
        context.set_alpn_protocols(["h2", "http/1.1"])
        with context.wrap_socket(sock, server_hostname=host) as secure:
            assert secure.selected_alpn_protocol() == "http/1.1"
            leaf = x509.load_der_x509_certificate(secure.getpeercert(binary_form=True))
        sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert [str(v) for v in sans.get_values_for_type(san_type)] == [expected]
        aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
        assert aki.key_identifier == ca_ski
        assert leaf.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert ExtendedKeyUsageOID.SERVER_AUTH in eku


def test_a_given_ca_signs_the_leaves(
    controlplane: Controlplane, mitm: tuple[Bridged, Proxyd], token: str, tmp_path: Path,
    secrets: Secrets, tls_upstream_a: FakeUpstream,
) -> None:  # fmt: skip
    from tests.certs import make_ca

    bridged, _default = mitm
    own = make_ca(tmp_path / "own", "own-ca", "our company CA")
    proxyd = Proxyd(
        [controlplane.address], bridged.url, tmp_path, secrets, name="own",
        extra_args=("--ca-cert", str(own.cert_path), "--ca-key", str(own.key_path)),
    ).start()  # fmt: skip
    try:
        a = tls_upstream_a
        controlplane.admin.wait_applied(
            provider(controlplane, "p", f"https://localhost:{a.port}/v1")
        )
        status, sock = connect(proxyd.port, f"localhost:{a.port}", token)
        assert status == 200
        conn = HTTPConnection(tls(sock, "localhost", own.cert_path), f"localhost:{a.port}")
        assert conn.request("POST", "/v1/chat/completions", CHAT).status == 200
        conn.close()
    finally:
        proxyd.stop()
