"""Every bound is configurable, refuses cleanly, and is counted in the metrics when hit:
connections, request heads and bodies, and proxyd's certificate cache."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import http.client
import json
import re
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest

from mockupstream import MockUpstream
from tests.conftest import UpstreamPKI, proxyd_before_bridged
from tests.harness import (
    Bridged,
    Controlplane,
    ManagedProcess,
    Proxyd,
    Secrets,
    async_wait_until,
    rss_bytes,
    wait_until,
)
from tests.proxy_client import HTTPConnection, connect, tls

KEY = "sk-provider-key-bounds-0001"


def limit_hits(process: ManagedProcess, role: str, limit: str) -> float:
    match = re.search(
        rf'^aibridge_{role}_limit_hits_total{{limit="{limit}"}} (\S+)$', process.metrics(), re.M
    )
    return float(match.group(1)) if match else 0.0


def answers(call: Callable[[], int]) -> int:
    """`call`'s status, or 0 while the process cannot take the connection yet (a slot
    held by a client that just left is freed when the process notices)."""
    try:
        return call()
    except (OSError, httpx.TransportError, http.client.HTTPException):
        return 0


@contextlib.contextmanager
def idle_connections(port: int, count: int) -> Iterator[list[socket.socket]]:
    sockets = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(count)]
    try:
        yield sockets
    finally:
        for s in sockets:
            s.close()


def chat(
    bridged: Bridged, token: str, body: Any = b'{"model": "m", "messages": []}'
) -> httpx.Response:
    return httpx.post(
        bridged.provider_url("llm") + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        content=body,
        timeout=15,
    )


def test_bridged_connections_and_body(
    controlplane: Controlplane, token: str, tmp_path: Path, secrets: Secrets,
    upstream_a: MockUpstream,
) -> None:  # fmt: skip
    bridged = Bridged(
        [controlplane.address], tmp_path, secrets,
        extra_args=("--max-connections", "3", "--max-body-bytes", "2000"),
    ).start()  # fmt: skip
    try:
        revision = controlplane.admin.create_provider("llm", upstream_a.url + "/v1", keys=[KEY])
        controlplane.admin.wait_applied(revision.revision)
        assert chat(bridged, token).status_code == 200

        with idle_connections(bridged.port, 3):
            refused = chat(bridged, token)
            assert refused.status_code == 503
            assert refused.headers["Retry-After"] == "1"
            assert refused.json()["error"]["code"] == "too_many_connections"
        # The held connections are gone: served again (their close is noticed shortly).
        wait_until(lambda: answers(lambda: chat(bridged, token).status_code) == 200, 10, "a slot")
        assert limit_hits(bridged, "bridged", "connections") >= 1  # and refused retries
        assert "aibridge_bridged_connections " in bridged.metrics()

        too_big = chat(bridged, token, b'{"model": "m", "messages": [], "pad": "' + b"x" * 3000)
        assert too_big.status_code == 413
        assert too_big.json()["error"]["code"] == "request_too_large"
        assert limit_hits(bridged, "bridged", "body_bytes") == 1
        # A body of unannounced length (chunked) is bounded as it arrives.
        chunked = chat(bridged, token, iter([b'{"model": "m", "pad": "', b"x" * 3000, b'"}']))
        assert chunked.status_code == 413, chunked.text
        assert limit_hits(bridged, "bridged", "body_bytes") == 2
        assert chat(bridged, token).status_code == 200
        bridged.check_alive()
    finally:
        bridged.stop()


def test_bridged_bounds_the_request_bytes_it_holds(
    controlplane: Controlplane, bridged: Bridged, token: str, upstream_a: MockUpstream
) -> None:
    """Twenty concurrent 30 MB bodies to an upstream that never answers: with every body
    held whole, bridged grew from 200 MB to 1.4 GB. The default bound holds eight."""
    upstream_a.silent = True
    upstream_a.record = False
    admin = controlplane.admin
    admin.wait_applied(admin.create_provider("llm", upstream_a.url + "/v1", keys=[KEY]).revision)
    body = b'{"model": "m", "pad": "' + b"x" * (30 * 1024 * 1024 - 30) + b'"}'
    assert bridged.proc is not None
    before = rss_bytes(bridged.proc.pid)

    async def flood() -> list[int | str]:
        async with aiohttp.ClientSession() as session:

            async def post() -> int | str:
                url = bridged.provider_url("llm") + "/v1/chat/completions"
                headers = {"Authorization": f"Bearer {token}"}
                try:
                    async with session.post(url, data=body, headers=headers) as response:
                        assert response.headers.get("Retry-After") == "1"
                        assert (await response.json())["error"]["code"] == "gateway_busy"
                        return response.status
                except asyncio.CancelledError:
                    return "held"

            posts = [asyncio.ensure_future(post()) for _ in range(20)]
            held = 256 // 30  # bodies that fit the default --max-buffered-bytes (256 MiB)
            await async_wait_until(
                lambda: sum(p.done() for p in posts) == 20 - held, 60, "the refusals"
            )
            # The held ones are read whole and sent to the upstream, which never answers.
            await async_wait_until(
                lambda: upstream_a.bytes_received >= held * len(body), 60, "the held bodies"
            )
            assert buffered(bridged) == held * len(body)
            for p in posts:
                p.cancel()  # the clients leave...
            statuses = await asyncio.gather(*posts)
        # ...and bridged ends their requests (and the calls upstream): their bodies go.
        await async_wait_until(lambda: buffered(bridged) == 0, 30, "the bodies to be released")
        return statuses

    statuses = asyncio.run(flood())
    assert sorted(statuses, key=str) == [503] * 12 + ["held"] * 8
    grown = rss_bytes(bridged.proc.pid, "VmHWM") - before
    assert grown < 600 * 1024 * 1024, f"bridged grew {grown / 2**20:.0f} MB"
    assert limit_hits(bridged, "bridged", "buffered_bytes") == 12
    upstream_a.silent = False
    assert chat(bridged, token).status_code == 200


@pytest.fixture
def impatient(
    controlplane: Controlplane, tmp_path: Path, secrets: Secrets, upstream_a: MockUpstream
) -> Iterator[Bridged]:
    """bridged with a 1 s --keepalive-timeout, and a provider "llm" on upstream A."""
    bridged = Bridged(
        [controlplane.address], tmp_path, secrets, extra_args=("--keepalive-timeout", "1")
    ).start()
    try:
        created = controlplane.admin.create_provider("llm", upstream_a.url + "/v1", keys=[KEY])
        controlplane.admin.wait_applied(created.revision)
        yield bridged
    finally:
        bridged.stop()


def test_a_body_that_stops_arriving_is_refused(
    impatient: Bridged, token: str, upstream_a: MockUpstream
) -> None:
    """A counted body must not be held forever by a client that stops sending it."""
    bridged = impatient
    with socket.create_connection(("127.0.0.1", bridged.port), timeout=15) as sock:
        sock.sendall(
            b"POST /api/v2/aibridge/llm/v1/chat/completions HTTP/1.1\r\n"
            b"Host: gateway\r\nAuthorization: Bearer " + token.encode() + b"\r\n"
            b"Content-Length: 1000\r\n\r\n" + b'{"model": "m", "pad": "'
        )
        head = sock.recv(4096)
    assert head.startswith(b"HTTP/1.1 408 "), head
    assert b"request_timeout" in head
    assert limit_hits(bridged, "bridged", "body_idle") == 1
    assert buffered(bridged) == 0
    assert upstream_a.seen == []
    assert chat(bridged, token).status_code == 200


def test_bodies_that_trickle_or_come_compressed(
    impatient: Bridged, token: str, upstream_a: MockUpstream
) -> None:
    """A body counted in full before it arrives must arrive at 256 KiB/s on average: a
    byte now and then must not hold the bound. A compressed body is read inflated, whole."""
    bridged = impatient
    with socket.create_connection(("127.0.0.1", bridged.port), timeout=30) as sock:
        sock.sendall(
            b"POST /api/v2/aibridge/llm/v1/chat/completions HTTP/1.1\r\n"
            b"Host: gateway\r\nAuthorization: Bearer " + token.encode() + b"\r\n"
            b"Content-Length: 1048576\r\n\r\n"  # 1 MiB: due within 1 s + 4 s
        )
        started = time.monotonic()
        sock.settimeout(0.5)
        head = b""
        while not head and time.monotonic() - started < 20:
            with contextlib.suppress(TimeoutError):
                sock.sendall(b"x")  # every half second: never idle for 1 s
                head = sock.recv(4096)
    assert head.startswith(b"HTTP/1.1 408 "), head
    assert 4 <= time.monotonic() - started < 15
    assert buffered(bridged) == 0

    body = json.dumps({"model": "m", "messages": [], "pad": "x" * 6000}).encode()
    compressed = httpx.post(
        bridged.provider_url("llm") + "/v1/chat/completions", content=gzip.compress(body),
        headers={"Authorization": f"Bearer {token}", "Content-Encoding": "gzip",
                 "Content-Type": "application/json"}, timeout=30,
    )  # fmt: skip
    assert compressed.status_code == 200, compressed.text
    assert upstream_a.seen[-1].body == body
    assert "content-encoding" not in upstream_a.seen[-1].headers


def buffered(bridged: Bridged) -> int:
    match = re.search(r"^aibridge_bridged_buffered_request_bytes (\S+)$", bridged.metrics(), re.M)
    assert match, "no aibridge_bridged_buffered_request_bytes"
    return int(float(match.group(1)))


@pytest.fixture
def small_proxyd(
    controlplane: Controlplane, tmp_path: Path, secrets: Secrets, pki: UpstreamPKI
) -> Iterator[Proxyd]:
    small = ("--max-connections", "2", "--max-header-bytes", "4096",
             "--max-body-bytes", "2000", "--cert-cache-size", "1")  # fmt: skip
    with proxyd_before_bridged(controlplane, tmp_path, secrets, pki, small) as (_, proxyd):
        yield proxyd


def test_proxyd_bounds(
    controlplane: Controlplane, small_proxyd: Proxyd, token: str, tls_upstream_a: MockUpstream
) -> None:
    proxyd, port = small_proxyd, tls_upstream_a.port
    admin = controlplane.admin
    admin.create_provider("by-name", f"https://localhost:{port}/v1", keys=[KEY])
    revision = admin.create_provider("by-ip", f"https://127.0.0.1:{port}/v1", keys=[KEY]).revision
    admin.wait_applied(revision)

    def intercepted(host: str, body: dict[str, object]) -> int:
        status, sock = connect(proxyd.port, f"{host}:{port}", token)
        assert status == 200
        conn = HTTPConnection(tls(sock, host, proxyd.ca_path), f"{host}:{port}")
        try:
            return conn.request("POST", "/v1/chat/completions", body).status
        finally:
            conn.close()

    chat: dict[str, object] = {"model": "m", "messages": []}
    # Two hosts through a cache of one certificate: the second evicts the first.
    assert intercepted("localhost", chat) == 200
    assert intercepted("127.0.0.1", chat) == 200
    assert intercepted("localhost", chat) == 200
    assert limit_hits(proxyd, "proxyd", "certificate_cache") >= 2

    assert intercepted("localhost", chat | {"pad": "x" * 3000}) == 413
    assert limit_hits(proxyd, "proxyd", "body_bytes") == 1

    with socket.create_connection(("127.0.0.1", proxyd.port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"y" * 8000 + b"\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 431 Request Header Fields Too Large")
    assert limit_hits(proxyd, "proxyd", "header_bytes") == 1

    with idle_connections(proxyd.port, 2):
        with socket.create_connection(("127.0.0.1", proxyd.port), timeout=10) as sock:
            assert sock.recv(4096) == b""  # closed at once
    wait_until(lambda: answers(lambda: proxyd.metrics().count("\n")), 10, "a free slot")
    assert limit_hits(proxyd, "proxyd", "connections") >= 1  # and any refused retries
    assert intercepted("localhost", chat) == 200
    proxyd.check_alive()


def test_bridged_closes_silent_and_half_sent_connections(
    controlplane: Controlplane, tmp_path: Path, secrets: Secrets
) -> None:
    """A client that sends nothing, or half a request head, does not hold a connection
    (and its descriptor) past --keepalive-timeout."""
    bridged = Bridged(
        [controlplane.address], tmp_path, secrets, extra_args=("--keepalive-timeout", "1")
    ).start()
    try:
        with idle_connections(bridged.port, 2) as (silent, half):
            half.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # no blank line: unfinished
            for sock in (silent, half):
                sock.settimeout(15)
                assert sock.recv(4096) == b"", "bridged should have closed the connection"
        assert httpx.get(bridged.url + "/healthz", timeout=5).status_code == 200
    finally:
        bridged.stop()
