"""Tunnels to hosts that are not providers: policy first, then bytes both ways, untouched.

The policy refuses ports outside the allowlist and addresses in private, loopback,
link-local and other special ranges unless an allowed CIDR covers them. The address
checked is the address dialled, so a name cannot resolve differently in between.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from dataclasses import dataclass

from proxyd.config import Network

CONNECT_TIMEOUT = 10.0


@dataclass(frozen=True)
class TunnelPolicy:
    ports: frozenset[int]
    allowed: tuple[Network, ...]

    def port_allowed(self, port: int) -> bool:
        return port in self.ports

    def address_allowed(self, address: str) -> bool:
        ip = ipaddress.ip_address(address)
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if any(ip in network for network in self.allowed):
            return True
        if isinstance(ip, ipaddress.IPv6Address):
            # 6to4 and Teredo addresses carry an IPv4 address that may be a private one.
            embedded = [ip.sixtofour, *(ip.teredo or ())]
            if any(v4 is not None and not v4.is_global for v4 in embedded):
                return False
        # Only globally routable addresses: not private, loopback, link-local, shared
        # (100.64/10, where some clouds keep their metadata service), reserved...
        return ip.is_global and not ip.is_multicast

    async def dial(
        self, host: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | str:
        """Connects to the first allowed address of `host`, or says why not."""
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):  # UnicodeError: a name IDNA cannot encode
            return "cannot resolve the host"
        addresses = [info[4][0] for info in infos]
        allowed = [a for a in addresses if self.address_allowed(a)]
        if not allowed:
            return "the host's address is in a private range"
        try:
            return await asyncio.wait_for(
                asyncio.open_connection(allowed[0], port), CONNECT_TIMEOUT
            )
        except (OSError, TimeoutError):
            return "cannot connect to the host"


async def splice(
    client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    first_bytes: bytes,
    idle_timeout: float,
) -> None:
    """Copies bytes both ways until both directions have ended, or one is idle too long."""
    if first_bytes:
        upstream[1].write(first_bytes)

    async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await asyncio.wait_for(reader.read(64 * 1024), idle_timeout):
                writer.write(data)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()  # half-close: the other direction may still be talking
        except (ConnectionError, OSError, TimeoutError):
            writer.close()

    try:
        await asyncio.gather(pump(client[0], upstream[1]), pump(upstream[0], client[1]))
    finally:
        upstream[1].close()
        with contextlib.suppress(ConnectionError, OSError):
            await upstream[1].wait_closed()
