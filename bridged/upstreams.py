"""Connection pools to upstreams, one per origin, shared by every route table that
names that origin. When a reload drops an origin, its pool closes as soon as its last
request ends, so nothing leaks however many reloads there are."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp

log = logging.getLogger(__name__)


class Upstream:
    def __init__(self, origin: str, session: aiohttp.ClientSession) -> None:
        self.origin = origin
        self.session = session
        self.in_flight = 0


class UpstreamPools:
    def __init__(
        self, connect_timeout: float, idle_read_timeout: float, ca_file: Path | None = None,
        idle_timeout: float = 10.0,
    ) -> None:  # fmt: skip
        self._idle_timeout = idle_timeout
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=connect_timeout, sock_read=idle_read_timeout
        )
        self._ssl = ssl.create_default_context()
        if ca_file is not None:
            self._ssl.load_verify_locations(cafile=str(ca_file))
        self._upstreams: dict[str, Upstream] = {}
        self._retired: set[Upstream] = set()  # dropped by a reload, still serving a request
        self._wanted: frozenset[str] | None = None  # origins of the live route table
        self._closing: set[asyncio.Task[None]] = set()

    def keep_only(self, origins: Iterable[str]) -> None:
        """Retires the pools of origins no longer in any route (after a reload)."""
        wanted = self._wanted = frozenset(origins)
        for origin in list(self._upstreams):
            if origin not in wanted:
                upstream = self._upstreams.pop(origin)
                if upstream.in_flight == 0:
                    self._close(upstream)
                else:
                    self._retired.add(upstream)

    @asynccontextmanager
    async def use(self, origin: str) -> AsyncIterator[aiohttp.ClientSession]:
        upstream = self._upstreams.get(origin)
        if upstream is None:
            upstream = Upstream(origin, self._new_session())
            if self._wanted is None or origin in self._wanted:
                self._upstreams[origin] = upstream
            else:
                # A request still on an older table: its pool goes when it is done.
                self._retired.add(upstream)
        upstream.in_flight += 1
        try:
            yield upstream.session
        finally:
            upstream.in_flight -= 1
            if upstream.in_flight == 0 and upstream in self._retired:
                self._close(upstream)

    @property
    def open_pools(self) -> int:
        return len(self._upstreams) + len(self._retired)

    def _new_session(self) -> aiohttp.ClientSession:
        # An idle connection is closed by the pool's sweep, which runs every `idle_timeout`:
        # within twice that. After a burst of 2,000 streams, their 2,000 connections stay
        # that long, not aiohttp's default of 15 s (up to 30 s).
        connector = aiohttp.TCPConnector(
            limit=0, ssl=self._ssl, enable_cleanup_closed=True,
            keepalive_timeout=self._idle_timeout,
        )  # fmt: skip
        # Bytes go to the client exactly as the upstream sent them: no decompression.
        return aiohttp.ClientSession(
            connector=connector, timeout=self._timeout, auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
        )  # fmt: skip

    def _close(self, upstream: Upstream) -> None:
        self._retired.discard(upstream)
        log.info("closing connections to %s", upstream.origin)
        task = asyncio.get_running_loop().create_task(upstream.session.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        for upstream in [*self._upstreams.values(), *self._retired]:
            await upstream.session.close()
        self._upstreams.clear()
        self._retired.clear()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
