"""proxyd's host map under reloads: one fresh CONNECT per phase, each step waiting until
the revision is applied."""

from __future__ import annotations

import ssl
from typing import Any

from aibridge.v1 import admin_pb2
from mockupstream import MockUpstream
from tests.harness import Bridged, Controlplane, Proxyd
from tests.proxy_client import HTTPConnection, Reply, connect, tls

KEY = "sk-provider-key-for-proxyd-01"
CHAT = {"model": "gpt", "messages": [{"role": "user", "content": "hi"}]}


# The CONNECT status, and the reply to the request inside when it was let through.
Result = tuple[int, Reply | None]


def call(
    proxyd: Proxyd, host: str, port: int, token: str, path: str = "/v1/chat/completions"
) -> Result:
    """One fresh CONNECT and one request; returns the CONNECT status and the reply."""
    status, sock = connect(proxyd.port, f"{host}:{port}", token)
    if status != 200:
        sock.close()
        return status, None
    conn = HTTPConnection(tls(sock, host, proxyd.ca_path), f"{host}:{port}")
    try:
        return status, conn.request("POST", path, CHAT)
    finally:
        conn.close()


def answered(result: Result, upstream: MockUpstream) -> bool:
    status, reply = result
    assert status == 200, f"CONNECT answered {status}"
    assert reply is not None
    assert reply.status == 200, reply.body
    return reply.json()["choices"][0]["message"]["content"] == upstream.text()


def not_intercepted(result: Result) -> bool:
    # A host that is not a provider's is a tunnel candidate; loopback tunnels are refused.
    return result[0] == 403


def proxyd_requests(proxyd: Proxyd, provider: str) -> float:
    total = 0.0
    for line in proxyd.metrics().splitlines():
        if line.startswith("aibridge_proxyd_requests_total{") and f'provider="{provider}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_routing_follows_every_change(
    controlplane: Controlplane, mitm: tuple[Bridged, Proxyd], token: str,
    tls_upstream_a: MockUpstream, tls_upstream_b: MockUpstream,
) -> None:  # fmt: skip
    _bridged, proxyd = mitm
    admin = controlplane.admin
    a, b = tls_upstream_a, tls_upstream_b
    update = admin_pb2.UpdateProviderRequest

    def applied(response: Any) -> None:
        admin.wait_applied(response.revision)

    # Empty map: nothing is intercepted.
    assert not_intercepted(call(proxyd, "localhost", a.port, token))

    # Create → intercepted and routed.
    applied(admin.create_provider("first", f"https://localhost:{a.port}/v1", keys=[KEY]))
    assert answered(call(proxyd, "localhost", a.port, token), a)
    assert proxyd_requests(proxyd, "first") == 1

    # Rename with the same base_url → routed under the new name.
    applied(admin.UpdateProvider(update(ref="first", name="renamed")))
    assert answered(call(proxyd, "localhost", a.port, token), a)
    assert proxyd_requests(proxyd, "renamed") == 1

    # Change the base_url host → the new host is intercepted, the old one no longer.
    applied(admin.UpdateProvider(update(ref="renamed", base_url=f"https://127.0.0.1:{b.port}/v1")))
    assert answered(call(proxyd, "127.0.0.1", b.port, token), b)
    assert not_intercepted(call(proxyd, "localhost", a.port, token))

    # Add a second provider → both route.
    applied(admin.create_provider("second", f"https://localhost:{a.port}/v1", keys=[KEY]))
    assert answered(call(proxyd, "localhost", a.port, token), a)
    assert answered(call(proxyd, "127.0.0.1", b.port, token), b)

    # Delete one → the other still routes.
    applied(admin.DeleteProvider(admin_pb2.DeleteProviderRequest(ref="renamed")))
    assert not_intercepted(call(proxyd, "127.0.0.1", b.port, token))
    assert answered(call(proxyd, "localhost", a.port, token), a)

    # Delete all → nothing intercepted.
    applied(admin.DeleteProvider(admin_pb2.DeleteProviderRequest(ref="second")))
    assert not_intercepted(call(proxyd, "localhost", a.port, token))

    # Recreate → routes again.
    applied(admin.create_provider("again", f"https://localhost:{a.port}/v1", keys=[KEY]))
    assert answered(call(proxyd, "localhost", a.port, token), a)

    # The upstreams saw only the provider key, never the gateway token.
    for seen in a.seen + b.seen:
        assert seen.key == KEY and token not in repr(seen.headers)


def test_an_open_connection_follows_the_live_map(
    controlplane: Controlplane, mitm: tuple[Bridged, Proxyd], token: str,
    tls_upstream_a: MockUpstream,
) -> None:  # fmt: skip
    _bridged, proxyd = mitm
    admin = controlplane.admin
    a = tls_upstream_a
    admin.wait_applied(
        admin.create_provider("p", f"https://localhost:{a.port}/v1", keys=[KEY]).revision
    )
    status, sock = connect(proxyd.port, f"localhost:{a.port}", token)
    assert status == 200
    conn = HTTPConnection(tls(sock, "localhost", proxyd.ca_path), f"localhost:{a.port}")
    try:
        assert conn.request("POST", "/v1/chat/completions", CHAT).status == 200
        assert proxyd_requests(proxyd, "p") == 1

        # Renamed while the connection is open: the next request goes under the new name.
        renamed = admin.UpdateProvider(admin_pb2.UpdateProviderRequest(ref="p", name="q"))
        admin.wait_applied(renamed.revision)
        assert conn.request("POST", "/v1/chat/completions", CHAT).status == 200
        assert proxyd_requests(proxyd, "q") == 1

        # The host stops being a provider's: 421, and the connection closes.
        admin.wait_applied(admin.DeleteProvider(admin_pb2.DeleteProviderRequest(ref="q")).revision)
        reply = conn.request("POST", "/v1/chat/completions", CHAT)
        assert reply.status == 421
        assert reply.json()["error"]["code"] == "host_not_routed"
        assert reply.headers.get("connection") == "close"
        try:
            closed = conn.sock.recv(1) == b""
        except (ssl.SSLError, ConnectionError):
            closed = True
        assert closed, "proxyd kept the connection open after 421"
    finally:
        conn.close()
    assert len(a.seen) == 2  # nothing reached the upstream after the delete


def test_mixed_case_host_in_connect_still_matches(
    controlplane: Controlplane, mitm: tuple[Bridged, Proxyd], token: str,
    tls_upstream_a: MockUpstream,
) -> None:  # fmt: skip
    _bridged, proxyd = mitm
    admin = controlplane.admin
    a = tls_upstream_a
    admin.wait_applied(
        admin.create_provider("p", f"https://localhost:{a.port}/v1", keys=[KEY]).revision
    )
    assert answered(call(proxyd, "LocalHost", a.port, token), a)
