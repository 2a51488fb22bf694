"""The floor for any Python hop: a bare aiohttp pass-through (forward, stream back, reuse
connections, nothing else). python -m bench.passthrough PORT UPSTREAM_URL"""

from __future__ import annotations

import sys

import aiohttp
from aiohttp import web
from prometheus_client import generate_latest

from common.metrics import expose_gc_pauses
from common.runtime import LISTEN_BACKLOG, raise_descriptor_limit

HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


async def make_app(upstream: str) -> web.Application:
    # No cap on connections (aiohttp's default is 100), as bridged has none.
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), auto_decompress=False)

    async def forward(request: web.Request) -> web.StreamResponse:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP}
        async with session.request(
            request.method, upstream + request.path_qs, headers=headers, data=await request.read()
        ) as upstream_response:
            response = web.StreamResponse(
                status=upstream_response.status,
                headers={
                    k: v for k, v in upstream_response.headers.items() if k.lower() not in HOP
                },
            )
            await response.prepare(request)
            async for chunk in upstream_response.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response

    async def metrics(_request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), content_type="text/plain")

    # Its GC pauses, measured as bridged measures its own (bench/streams.py reads them).
    expose_gc_pauses("passthrough")
    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_route("*", "/{tail:.*}", forward)
    return app


if __name__ == "__main__":
    port, upstream = int(sys.argv[1]), sys.argv[2]
    raise_descriptor_limit()
    web.run_app(
        make_app(upstream), host="127.0.0.1", port=port, access_log=None, print=None,
        backlog=LISTEN_BACKLOG,
    )  # fmt: skip
