"""Tunnels to hosts that are not providers: policy first, then bytes both ways, untouched.

The policy refuses ports outside the allowlist and addresses in private, loopback,
link-local and other special ranges unless an allowed CIDR covers them. An IPv6 address
that carries an IPv4 address is judged by that IPv4 address too (embedded_ipv4). The
address checked is the address dialled, so a name cannot resolve differently in between.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from dataclasses import dataclass

from proxyd.config import Network

CONNECT_TIMEOUT = 10.0

_V4_IN_LAST_32_BITS = tuple(
    ipaddress.IPv6Network(n)
    for n in (
        "::ffff:0:0/96",  # IPv4-mapped
        "::ffff:0:0:0/96",  # IPv4-translated (SIIT, RFC 6145)
        "64:ff9b::/96",  # NAT64, well-known prefix (RFC 6052)
        "::/96",  # IPv4-compatible (deprecated, still routed by some stacks)
    )
)
# NAT64 local-use prefix (RFC 8215): where the IPv4 address sits depends on the
# operator's prefix length, and it reaches the operator's own networks: never global.
_LOCAL_NAT64 = ipaddress.IPv6Network("64:ff9b:1::/48")
_ISATAP_IID = 0x00005EFE  # RFC 5214: interface id 00-00-5E-FE, u/g bits aside


def embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """Every IPv4 address `ip` carries, in any of the forms a stack or a translator will
    reach it by: mapped, translated, NAT64, compatible, 6to4, Teredo and ISATAP."""
    if any(ip in network for network in _V4_IN_LAST_32_BITS):
        return [ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)]
    found = [ip.sixtofour, *(ip.teredo or ())]
    if (int(ip) >> 32) & 0xFCFFFFFF == _ISATAP_IID:
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return [v4 for v4 in found if v4 is not None]


class DialFailed(Exception):
    """The tunnel's host could not be reached (a 502); the message says why."""


class AddressNotAllowed(DialFailed):
    """Every address of the host is one the policy refuses (a 403: no retry will help)."""


@dataclass(frozen=True)
class TunnelPolicy:
    ports: frozenset[int]
    allowed: tuple[Network, ...]

    def port_allowed(self, port: int) -> bool:
        return port in self.ports

    def address_allowed(self, address: str) -> bool:
        ip = ipaddress.ip_address(address)
        if isinstance(ip, ipaddress.IPv4Address) or any(ip in n for n in self.allowed):
            return self._reachable(ip)
        embedded = embedded_ipv4(ip)
        if any(ip in network for network in _V4_IN_LAST_32_BITS):
            return self._reachable(embedded[0])  # only a spelling of that IPv4 address
        # A tunnel (6to4, Teredo, ISATAP) goes to both addresses: each must be allowed.
        return self._reachable(ip) and all(self._reachable(v4) for v4 in embedded)

    def _reachable(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        if any(ip in network for network in self.allowed):
            return True
        if ip in _LOCAL_NAT64:
            return False
        # Only globally routable addresses: not private, loopback, link-local, shared
        # (100.64/10, where some clouds keep their metadata service), reserved...
        return ip.is_global and not ip.is_multicast

    async def dial(self, host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Connects to the first allowed address of `host`; raises DialFailed (or its
        AddressNotAllowed) saying why not."""
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):  # UnicodeError: a name IDNA cannot encode
            raise DialFailed("cannot resolve the host") from None
        addresses = [str(info[4][0]) for info in infos]
        allowed = [a for a in addresses if self.address_allowed(a)]
        if not allowed:
            raise AddressNotAllowed("the host's address is in a private range")
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                return await asyncio.open_connection(allowed[0], port)
        except (OSError, TimeoutError):
            raise DialFailed("cannot connect to the host") from None


async def splice(
    client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    first_bytes: bytes,
    idle_timeout: float,
) -> tuple[int, int]:
    """Copies bytes both ways until both directions have ended, or one is idle too long;
    returns how many went each way (to the upstream, to the client)."""
    if first_bytes:
        upstream[1].write(first_bytes)

    async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> int:
        copied = 0
        try:
            while True:
                async with asyncio.timeout(idle_timeout):
                    data = await reader.read(64 * 1024)
                if not data:
                    break
                writer.write(data)
                copied += len(data)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()  # half-close: the other direction may still be talking
        except (ConnectionError, OSError, TimeoutError):
            writer.close()
        return copied

    try:
        sent, received = await asyncio.gather(
            pump(client[0], upstream[1]), pump(upstream[0], client[1])
        )
        return len(first_bytes) + sent, received
    finally:
        upstream[1].close()
        with contextlib.suppress(ConnectionError, OSError):
            await upstream[1].wait_closed()
