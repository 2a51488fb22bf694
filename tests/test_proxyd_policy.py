"""proxyd's rules: a live token on every CONNECT (tunnels included), the tunnel policy,
and bad input that must not disturb anyone else."""

from __future__ import annotations

import base64
import json
import socket
from pathlib import Path

from cryptography import x509

from aibridge.v1 import admin_pb2
from mockupstream import MockUpstream
from tests.conftest import UpstreamPKI
from tests.harness import Bridged, Controlplane, Proxyd, Secrets, wait_until
from tests.proxy_client import HTTPConnection, connect, peer_certificate, tls

KEY = "sk-provider-key-policy-0001"
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def provider(cp: Controlplane, name: str, base_url: str) -> int:
    return cp.admin.create_provider(name, base_url, keys=[KEY]).revision


def status_of(proxyd: Proxyd, target: str, token: str | None) -> int:
    """The answer to one CONNECT (the connection is closed right after)."""
    status, sock = connect(proxyd.port, target, token)
    sock.close()
    return status


def raw(proxyd: Proxyd, data: bytes) -> bytes:
    """Sends `data` on a fresh connection; returns what proxyd answers before closing."""
    with socket.create_connection(("127.0.0.1", proxyd.port), timeout=10) as sock:
        sock.sendall(data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        return answer


def raw_connect(proxyd: Proxyd, target: str, authorization: str | None) -> bytes:
    header = f"Proxy-Authorization: {authorization}\r\n" if authorization else ""
    return raw(proxyd, f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n{header}\r\n".encode())


def chat_through(proxyd: Proxyd, host: str, port: int, token: str) -> int:
    """One intercepted chat completion on a fresh CONNECT; returns the HTTP status."""
    status, sock = connect(proxyd.port, f"{host}:{port}", token)
    assert status == 200
    conn = HTTPConnection(tls(sock, host, proxyd.ca_path), f"{host}:{port}")
    try:
        return conn.request("POST", "/v1/chat/completions", CHAT).status
    finally:
        conn.close()


def sessions(proxyd: Proxyd, kind: str) -> float:
    prefix = f'aibridge_proxyd_connect_sessions_total{{kind="{kind}"}} '
    lines = [line for line in proxyd.metrics().splitlines() if line.startswith(prefix)]
    return float(lines[0].removeprefix(prefix)) if lines else 0.0


def test_every_connect_needs_a_live_token(
    controlplane: Controlplane, mitm: tuple[Bridged, Proxyd], token: str,
    tls_upstream_a: MockUpstream,
) -> None:  # fmt: skip
    _bridged, proxyd = mitm
    admin = controlplane.admin
    intercepted = f"localhost:{tls_upstream_a.port}"
    provider(controlplane, "p", f"https://{intercepted}/v1")
    short = admin.CreateToken(admin_pb2.CreateTokenRequest(name="short", expires_in_seconds=3))
    doomed = admin.CreateToken(admin_pb2.CreateTokenRequest(name="doomed"))
    admin.wait_applied(doomed.revision)
    # Both work while they live...
    assert status_of(proxyd, intercepted, short.token) == 200
    assert status_of(proxyd, intercepted, doomed.token) == 200
    admin.wait_applied(admin.RevokeToken(admin_pb2.RevokeTokenRequest(ref="doomed")).revision)

    def basic(credentials: bytes) -> str:
        return "Basic " + base64.b64encode(credentials).decode()

    # ...and neither after: revoked, then expired (proxyd checks expiry itself).
    for target in (intercepted, "example.com:443", "127.0.0.1:9"):  # provider, tunnels
        for authorization in (
            None,  # no Proxy-Authorization at all
            "Basic !!!not-base64!!!",
            basic(b"\xff\xfe:\xff"),  # not UTF-8
            "Basic",
            f"Bearer {token}",  # the right token, the wrong scheme
            basic(b"user:abt_wrong_token"),
            basic(f"user:{doomed.token}".encode()),  # revoked
        ):
            answer = raw_connect(proxyd, target, authorization)
            assert answer.startswith(b"HTTP/1.1 407 "), (target, authorization, answer)
            assert b'Proxy-Authenticate: Basic realm="aibridge"' in answer
            assert token.encode() not in answer
    wait_until(
        lambda: status_of(proxyd, intercepted, short.token) == 407, what="the short token to expire"
    )
    for target in (intercepted, "example.com:443"):
        answer = raw_connect(proxyd, target, basic(f"user:{short.token}".encode()))
        assert answer.startswith(b"HTTP/1.1 407 ") and b"Proxy-Authenticate: Basic" in answer
    # The live token still passes.
    assert chat_through(proxyd, "localhost", tls_upstream_a.port, token) == 200


def test_tunnel_policy(
    controlplane: Controlplane, tmp_path: Path, secrets: Secrets, token: str,
    mitm: tuple[Bridged, Proxyd], pki: UpstreamPKI, tls_upstream_a: MockUpstream,
    tls_upstream_b: MockUpstream,
) -> None:  # fmt: skip
    bridged, _default = mitm
    a, origin = tls_upstream_a, tls_upstream_b  # b is no provider's: a tunnel target
    controlplane.admin.wait_applied(provider(controlplane, "p", f"https://localhost:{a.port}/v1"))
    ports = ("--tunnel-ports", str(origin.port))
    loopback = ("--allow-private-cidrs", "127.0.0.0/8")

    def start(name: str, *args: str) -> Proxyd:
        return Proxyd(
            [controlplane.address], bridged.url, tmp_path, secrets, name=name, extra_args=args
        ).start()

    allowing = start("allowing", *loopback, *ports)
    private = start("private", *ports)  # the port is allowed, loopback is not
    denying = start("denying", "--tunnel", "deny", *loopback, *ports)
    try:
        target = f"127.0.0.1:{origin.port}"
        # Never an open proxy, even to a target the policy lets through.
        assert status_of(allowing, target, None) == 407
        assert status_of(allowing, target, "abt_wrong") == 407

        # Allowed: the client sees the origin's certificate and bytes pass untouched.
        status, sock = connect(allowing.port, target, token)
        assert status == 200
        with tls(sock, "127.0.0.1", pki.ca.cert_path) as secure:  # the test CA: not proxyd's
            issuer = peer_certificate(secure).issuer
            proxyd_ca = x509.load_pem_x509_certificate(allowing.ca_path.read_bytes())
            assert issuer == pki.ca.cert.subject and issuer != proxyd_ca.subject
            reply = HTTPConnection(secure, target).request(
                "POST", "/v1/chat/completions", CHAT,
                {"Authorization": "Bearer origin-sees-this", "X-Custom": "kept as is"},
            )  # fmt: skip
        assert reply.status == 200
        assert reply.json()["choices"][0]["message"]["content"] == "hello from B"
        seen = origin.seen[-1]
        assert seen.key == "origin-sees-this"  # not a gateway hop: no key swapped in
        assert seen.headers["x-custom"] == "kept as is"
        assert seen.body == json.dumps(CHAT).encode()
        assert sessions(allowing, "tunnelled") == 1

        # A port off the list: 403, whatever the address.
        answer = raw_connect(allowing, "127.0.0.1:443", _basic(token))
        assert answer.startswith(b"HTTP/1.1 403 ") and b"port 443" in answer
        # Loopback without --allow-private-cidrs: 403, by address or by a name resolving there.
        # So are IPv6 spellings that carry an IPv4 address: NAT64, compatible, translated.
        for refused in (target, f"localhost:{origin.port}", f"[::1]:{origin.port}",
                        f"[::ffff:127.0.0.1]:{origin.port}", f"[64:ff9b::a9fe:a9fe]:{origin.port}",
                        f"[64:ff9b:1::a9fe:a9fe]:{origin.port}", f"[::127.0.0.1]:{origin.port}",
                        f"[::ffff:0:7f00:1]:{origin.port}"):  # fmt: skip
            answer = raw_connect(private, refused, _basic(token))
            assert answer.startswith(b"HTTP/1.1 403 ") and b"private" in answer, (refused, answer)
        assert sessions(private, "tunnelled") == 0

        # --tunnel deny: every non-provider host refused; providers still intercepted.
        assert status_of(denying, target, token) == 403
        assert status_of(denying, "example.com:443", token) == 403
        assert chat_through(denying, "localhost", a.port, token) == 200
        assert sessions(denying, "tunnelled") == 0
        assert sessions(denying, "intercepted") == 1
        assert len(origin.seen) == 1
    finally:
        for process in (allowing, private, denying):
            process.stop()


def _basic(token: str) -> str:
    return "Basic " + base64.b64encode(f"user:{token}".encode()).decode()


def test_garbage_leaves_proxyd_serving(
    controlplane: Controlplane, mitm: tuple[Bridged, Proxyd], token: str,
    tls_upstream_a: MockUpstream,
) -> None:  # fmt: skip
    _bridged, proxyd = mitm
    a = tls_upstream_a
    controlplane.admin.wait_applied(provider(controlplane, "p", f"https://localhost:{a.port}/v1"))
    # Connections that never finish, open during everything below.
    idle = socket.create_connection(("127.0.0.1", proxyd.port), timeout=10)  # says nothing
    partial = socket.create_connection(("127.0.0.1", proxyd.port), timeout=10)
    partial.sendall(b"CONNECT localhost:")  # half a request line
    status, handshake = connect(proxyd.port, f"localhost:{a.port}", token)
    assert status == 200  # ...and then no TLS handshake
    status, half_hello = connect(proxyd.port, f"localhost:{a.port}", token)
    half_hello.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # a ClientHello, cut
    try:
        for garbage in (
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(64) + b"\r\n\r\n",  # TLS
            b"HELLO THERE\r\n\r\n",  # not HTTP
            b"BREW /pot HTCPCP/1.0\r\n\r\n",  # not HTTP/1.x
            b"CONNECT nohost HTTP/1.1\r\nHost: nohost\r\n\r\n",  # no port
            b"CONNECT localhost:99999 HTTP/1.1\r\nHost: x\r\n\r\n",  # no such port
            b"CONNECT a b:443 HTTP/1.1\r\nHost: x\r\n\r\n",
        ):
            answer = raw(proxyd, garbage)
            assert answer.startswith(b"HTTP/1.1 400 "), (garbage[:40], answer)

        # Garbage instead of a TLS ClientHello after CONNECT to a provider host.
        status, sock = connect(proxyd.port, f"localhost:{a.port}", token)
        assert status == 200
        sock.sendall(b"this is not a TLS client hello\r\n" * 10)
        answer = b""
        while chunk := sock.recv(4096):  # proxyd hangs up (perhaps after a TLS alert)
            answer += chunk
        assert not answer.startswith(b"HTTP"), answer
        sock.close()

        # A client that leaves mid-stream of its own request.
        status, sock = connect(proxyd.port, f"localhost:{a.port}", token)
        secure = tls(sock, "localhost", proxyd.ca_path)
        secure.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Length: 99\r\n\r\n{"
        )
        secure.close()

        # Everyone else is served meanwhile.
        assert chat_through(proxyd, "localhost", a.port, token) == 200
    finally:
        for sock in (idle, partial, handshake, half_hello):
            sock.close()
    assert chat_through(proxyd, "localhost", a.port, token) == 200
    assert b'"ready": true' in raw(proxyd, b"GET /readyz HTTP/1.1\r\nHost: p\r\n\r\n")
    assert proxyd.proc is not None and proxyd.proc.poll() is None


def test_plain_http_proxying_is_refused(
    controlplane: Controlplane, mitm: tuple[Bridged, Proxyd], token: str,
    tls_upstream_a: MockUpstream,
) -> None:  # fmt: skip
    """Absolute-form requests (plain-HTTP proxying) get 405, with or without a token and
    whatever the method: proxyd only answers CONNECT, and its own local paths."""
    _bridged, proxyd = mitm
    a = tls_upstream_a
    controlplane.admin.wait_applied(provider(controlplane, "p", f"https://localhost:{a.port}/v1"))
    for request in (
        b"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n",
        b"POST http://localhost:%d/v1/chat/completions HTTP/1.1\r\nHost: localhost\r\n"
        b"Proxy-Authorization: %s\r\nContent-Length: 2\r\n\r\n{}"
        % (a.port, _basic(token).encode()),
        b"BREW http://example.com/pot HTTP/1.1\r\nHost: example.com\r\n\r\n",  # unknown method
        b"GET example.com:443 HTTP/1.1\r\nHost: example.com\r\n\r\n",  # authority-form, not CONNECT
    ):
        answer = raw(proxyd, request)
        assert answer.startswith(b"HTTP/1.1 405 "), (request[:40], answer)
        assert b"\r\nAllow: CONNECT\r\n" in answer
    assert a.seen == []
    # An unknown method on a local path is just an unknown path.
    assert raw(proxyd, b"BREW /pot HTTP/1.1\r\nHost: p\r\n\r\n").startswith(b"HTTP/1.1 404 ")
    assert chat_through(proxyd, "localhost", a.port, token) == 200
