"""A bound on open client connections (--max-connections).

aiohttp has none, so the listening site wraps its protocol factory: at the bound, a
new connection is answered 503 and closed at once instead of being served. aiohttp's
server already tracks its open connections; the count is read from there.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

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


class _Refuse(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(_REFUSAL)
        transport.close()


class LimitedSite(web.TCPSite):
    """A TCPSite that serves at most `max_connections` connections at once."""

    def __init__(self, runner: web.AppRunner, *args: Any, max_connections: int, **kw: Any):
        super().__init__(runner, *args, **kw)
        self._max_connections = max_connections

    async def start(self) -> None:
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        limit = self._max_connections

        def protocol() -> asyncio.Protocol:
            if len(server.connections) >= limit:
                metrics.LIMIT_HITS.labels("connections").inc()
                return _Refuse()
            return server()

        metrics.CONNECTIONS.set_function(lambda: len(server.connections))
        self._server = await asyncio.get_running_loop().create_server(
            protocol, self._host, self._port, backlog=self._backlog
        )
