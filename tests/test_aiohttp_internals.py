"""bridged/connections.py's LimitedSite.start is aiohttp's TCPSite.start with the protocol
factory wrapped, written on TCPSite's private attributes. When aiohttp changes the code
it copies, these fail: re-read the new code, port LimitedSite.start to it, then update
the copies below and the aiohttp bound in pyproject.toml."""

from __future__ import annotations

import asyncio
import difflib
import inspect
import textwrap
from collections.abc import Callable
from typing import Any

from aiohttp import web

from bridged.connections import LimitedSite

# aiohttp 3.14's code that LimitedSite.start stands in for, or relies on.
COPIED = {
    "TCPSite.start": """
    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_event_loop()
        server = self._runner.server
        assert server is not None
        self._server = await loop.create_server(
            server,
            self._host,
            self._port,
            ssl=self._ssl_context,
            backlog=self._backlog,
            reuse_address=self._reuse_address,
            reuse_port=self._reuse_port,
        )
        if self._server.sockets:
            self._bound_port = self._server.sockets[0].getsockname()[1]
        else:
            self._bound_port = self._port
""",
    "BaseSite.start": """
    @abstractmethod
    async def start(self) -> None:
        self._runner._reg_site(self)
""",
    "BaseSite.stop": """
    async def stop(self) -> None:
        self._runner._check_site(self)
        if self._server is not None:  # Maybe not started yet
            self._server.close()

        self._runner._unreg_site(self)
""",
}


def test_the_copied_aiohttp_code_is_unchanged() -> None:
    methods: dict[str, Callable[..., Any]] = {
        "TCPSite.start": web.TCPSite.start,
        "BaseSite.start": web.BaseSite.start,
        "BaseSite.stop": web.BaseSite.stop,
    }
    for name, method in methods.items():
        expected = textwrap.dedent(COPIED[name]).strip()
        actual = textwrap.dedent(inspect.getsource(method)).strip()
        diff = "\n".join(
            difflib.unified_diff(expected.splitlines(), actual.splitlines(), lineterm="")
        )
        assert actual == expected, f"aiohttp's {name} changed; LimitedSite.start copies it:\n{diff}"


def test_the_private_attributes_are_where_limited_site_reads_them() -> None:
    slots = set(web.TCPSite.__slots__) | set(web.BaseSite.__slots__)
    assert {"_runner", "_server", "_backlog", "_host", "_port", "_bound_port"} <= slots


async def _limited_site_end_to_end() -> None:
    async def ok(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", ok)
    runner = web.AppRunner(app)
    await runner.setup()
    site = LimitedSite(runner, "127.0.0.1", 0, backlog=16, max_connections=1)
    await site.start()
    try:
        assert site in runner.sites
        port = site.port  # the bound port, read from what start() set
        assert port != 0 and site.name == f"http://127.0.0.1:{port}"

        first_r, first_w = await asyncio.open_connection("127.0.0.1", port)
        first_w.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await first_r.readline()).startswith(b"HTTP/1.1 200")
        # The first connection is still open (keep-alive): the second is over the bound.
        second_r, second_w = await asyncio.open_connection("127.0.0.1", port)
        assert (await second_r.readline()).startswith(b"HTTP/1.1 503")
        second_w.close()
        first_w.close()
    finally:
        await runner.cleanup()
    # cleanup() stopped the site, which closed the listening socket start() opened.
    assert site not in runner.sites
    try:
        _, w = await asyncio.open_connection("127.0.0.1", port)
    except ConnectionRefusedError:
        return
    w.close()
    raise AssertionError("the listening socket is still open after cleanup")


def test_limited_site_serves_counts_and_stops() -> None:
    asyncio.run(asyncio.wait_for(_limited_site_end_to_end(), timeout=30))
