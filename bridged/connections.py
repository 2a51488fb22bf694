"""A bound on open client connections (--max-connections).

aiohttp has none, so the listening site wraps its protocol factory. Each accepted
connection is counted from the moment it is accepted until it is lost (a burst of
accepts cannot slip past the count); at the bound, a new connection is answered 503 and
closed instead of being served.
"""

from __future__ import annotations

import asyncio
import json
from typing import cast

from aiohttp import web

from bridged import metrics

_BODY = json.dumps(
    {"error": {"message": "bridged is at its connection limit; retry shortly",
               "type": "overloaded", "code": "too_many_connections"}}
).encode()  # fmt: skip
_REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Content-Type: application/json\r\n"
    b"Retry-After: 1\r\n"
    b"Connection: close\r\n"
    b"Content-Length: " + str(len(_BODY)).encode() + b"\r\n\r\n" + _BODY
)
_REFUSAL_LINGER = 2.0  # seconds the client gets to read the refusal before the close
_LINGERING_MAX = 100  # beyond this many lingering refusals, close at once: a flood gets RSTs


class _Refuse(asyncio.Protocol):
    """Answers 503 and half-closes; what the client sends meanwhile is read and dropped,
    so that closing does not reset the connection before the answer is read."""

    lingering = 0  # across every refused connection

    def __init__(self) -> None:
        self._lingers = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's is one, not a subclass
        transport.write(_REFUSAL)
        if _Refuse.lingering >= _LINGERING_MAX or not transport.can_write_eof():
            transport.close()
            return
        _Refuse.lingering += 1
        self._lingers = True
        transport.write_eof()
        asyncio.get_running_loop().call_later(_REFUSAL_LINGER, transport.close)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._lingers:
            _Refuse.lingering -= 1

    def eof_received(self) -> bool:
        return False  # the client is done too: close


class _Counted(asyncio.Protocol):
    """aiohttp's protocol for one connection, counted while it is open."""

    def __init__(self, inner: asyncio.Protocol, site: LimitedSite) -> None:
        self._inner = inner
        self._site = site

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._site.open -= 1
        self._inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()


class LimitedSite(web.TCPSite):
    """A TCPSite that serves at most `max_connections` connections at once.

    Its start() is TCPSite.start with the protocol factory wrapped, on aiohttp's private
    attributes: aiohttp is pinned to a minor release in pyproject.toml, and
    tests/test_aiohttp_internals.py fails when TCPSite.start is no longer the code copied.
    Plain TCP only: TLS and the reuse options are not passed on, so not accepted.
    """

    def __init__(
        self, runner: web.AppRunner, host: str, port: int, *, backlog: int, max_connections: int
    ) -> None:
        super().__init__(runner, host, port, backlog=backlog)
        self.max_connections = max_connections
        self.open = 0

    def _protocol(self) -> asyncio.Protocol:
        if self.open >= self.max_connections:
            metrics.LIMIT_HITS.labels("connections").inc()
            return _Refuse()
        server = self._runner.server
        assert server is not None
        self.open += 1
        return _Counted(server(), self)

    async def start(self) -> None:
        await web.BaseSite.start(self)
        metrics.CONNECTIONS.set_function(lambda: self.open)
        self._server = await asyncio.get_running_loop().create_server(
            self._protocol, self._host, self._port, backlog=self._backlog
        )
        self._bound_port = self._server.sockets[0].getsockname()[1]
