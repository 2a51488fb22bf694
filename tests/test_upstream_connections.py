"""bridged's connections to an upstream, and proxyd's to bridged: reused one after another
under steady load, and closed within twice the idle timeout (bridged's
--upstream-idle-timeout, proxyd's --bridged-idle-timeout) once a burst that opened many is
over."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from aibridge.v1 import admin_pb2
from mockupstream.server import MockUpstream
from tests.harness import Bridged, Controlplane, Proxyd, Secrets, wait_until

# A connection a burst left idle lives at least this long: long enough to count them all.
IDLE_TIMEOUT = 2.0
ESTABLISHED = "01"


@dataclass
class Stack:
    bridged: Bridged
    proxyd: Proxyd
    upstream: MockUpstream
    token: str


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    work: Path = tmp_path_factory.mktemp("upstream-connections")
    secrets = Secrets()
    upstream = MockUpstream("A", chunks=4, chunk_delay=0.2).start()
    cp = Controlplane(f"sqlite:///{work / 'aibridge.db'}", work, secrets).start()
    idle = ("--upstream-idle-timeout", str(IDLE_TIMEOUT))
    bridged = Bridged([cp.address], work, secrets, extra_args=idle).start()
    proxyd = Proxyd(
        [cp.address], bridged.url, work, secrets,
        extra_args=("--bridged-idle-timeout", str(IDLE_TIMEOUT)),
    ).start()  # fmt: skip
    try:
        cp.admin.create_provider("a", f"{upstream.url}/v1", keys=["sk-a"])
        created = cp.admin.CreateToken(admin_pb2.CreateTokenRequest(name="t"))
        cp.admin.wait_applied(created.revision)
        yield Stack(bridged, proxyd, upstream, created.token)
    finally:
        proxyd.stop()
        bridged.stop()
        cp.stop()
        upstream.stop()


def connections_to(port: int) -> int:
    """Established TCP connections on this machine whose far end is 127.0.0.1:`port`:
    the upstream's own ends have it as their local address, so these are bridged's."""
    count = 0
    with open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            fields = line.split()
            remote_port = int(fields[2].split(":")[1], 16)
            count += remote_port == port and fields[3] == ESTABLISHED
    return count


def chat(url: str, token: str, stream: bool) -> dict[str, object]:
    return {
        "url": f"{url}/v1/chat/completions",
        "json": {"model": "gpt", "stream": stream, "messages": [{"role": "user", "content": "hi"}]},
        "headers": {"Authorization": f"Bearer {token}"},
    }


async def burst(client: httpx.AsyncClient, url: str, token: str) -> None:
    """30 streams at once: each takes a connection of its own (four chunks 0.2 s apart)."""
    replies = await asyncio.gather(
        *(client.post(**chat(url, token, stream=True)) for _ in range(30))  # type: ignore[arg-type]
    )
    assert [r.status_code for r in replies] == [200] * 30


def closed_within_twice_the_timeout(port: int) -> None:
    """The pool's sweep runs every IDLE_TIMEOUT: an idle connection goes within twice that."""
    assert connections_to(port) >= 20
    wait_until(
        lambda: connections_to(port) == 0, timeout=2 * IDLE_TIMEOUT + 2,
        what=f"the burst's connections to port {port} to close",
    )  # fmt: skip


def test_calls_one_after_another_reuse_one_connection(stack: Stack) -> None:
    port = stack.upstream.port
    wait_until(lambda: connections_to(port) == 0, timeout=10, what="an idle pool")
    with httpx.Client(timeout=10) as client:
        for _ in range(20):
            call = chat(stack.bridged.provider_url("a"), stack.token, stream=False)
            assert client.post(**call).status_code == 200  # type: ignore[arg-type]
            assert connections_to(port) == 1


def test_a_burst_s_upstream_connections_close_after_the_idle_timeout(stack: Stack) -> None:
    async def direct() -> None:
        async with httpx.AsyncClient(timeout=10) as client:
            await burst(client, stack.bridged.provider_url("a"), stack.token)

    asyncio.run(direct())
    closed_within_twice_the_timeout(stack.upstream.port)


def test_a_burst_through_proxyd_closes_its_connections_to_bridged_after_the_idle_timeout(
    stack: Stack,
) -> None:
    trust = ssl.create_default_context(cafile=str(stack.proxyd.ca_path))

    async def proxied() -> None:
        proxy = stack.proxyd.proxy_url(stack.token)
        async with httpx.AsyncClient(proxy=proxy, verify=trust, timeout=10) as client:
            # The client believes it talks to the provider's own host; proxyd intercepts it.
            await burst(client, f"https://127.0.0.1:{stack.upstream.port}", "sk-ignored")

    asyncio.run(proxied())
    closed_within_twice_the_timeout(stack.bridged.port)
