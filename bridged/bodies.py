"""Request bodies, read whole (a request failed over to the next key is replayed byte for
byte) within bounds: `--max-body-bytes` for one body, `--max-buffered-bytes` for all the
bodies held at once, and `--keepalive-timeout` for a body that stops arriving. Without
the second, a few large bodies at once grow bridged by gigabytes (docs/benchmarks.md,
section 7).

A body announced by Content-Length is counted in full before it is read, so that the
bodies admitted are the ones that can all be held (rather than every body refused half
way). Being counted before it arrives, it must then arrive at MIN_RATE at least: a
caller trickling bytes must not hold the bound for everyone. It stays counted until an
upstream answers (no replay is needed after that) or the request is over.

A compressed body (Content-Encoding) is read as aiohttp inflates it, counted as it
arrives: its Content-Length is not its size.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web

SENT_WHOLE = 256 * 1024  # a body up to this size goes to the socket in one write
PIECE = 64 * 1024
MIN_RATE = 256 * 1024  # bytes a second an announced body must arrive at, on average


class BodyRefused(Exception):
    def __init__(self, status: int, code: str, limit: str | None, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.limit = limit  # its label in aibridge_bridged_limit_hits_total, if it is a bound


@dataclass
class HeldBody:
    body: bytearray
    _bodies: RequestBodies

    def release(self) -> None:
        """No longer counted (once an upstream answered, or at the end): idempotent."""
        self._bodies.held -= len(self.body)
        self.body = bytearray()


class RequestBodies:
    def __init__(self, max_body_bytes: int, max_buffered_bytes: int, idle_timeout: float) -> None:
        self.max_body_bytes = max_body_bytes
        self.max_buffered_bytes = max_buffered_bytes
        self.idle_timeout = idle_timeout
        self.held = 0  # bytes of every body being read or held

    async def read(self, request: web.Request) -> HeldBody:
        """The request's body, counted until `release()`; raises BodyRefused."""
        length = request.content_length
        if length is None or "Content-Encoding" in request.headers:
            return HeldBody(await self._read_chunked(request), self)
        self._take(length)
        try:
            return HeldBody(await self._read_exactly(request, length), self)
        except BaseException:
            self.held -= length
            raise

    async def _read_exactly(self, request: web.Request, length: int) -> bytearray:
        """Into one buffer of the announced size: a body is in memory once, not twice."""
        body = bytearray(length)
        view = memoryview(body)
        filled = 0
        deadline = asyncio.get_running_loop().time() + self.idle_timeout + length / MIN_RATE
        while filled < length:
            chunk = await self._next(request, deadline)
            if not chunk:
                raise BodyRefused(400, "incomplete_body", None, "the request body ended early")
            chunk = chunk[: length - filled]  # aiohttp stops at Content-Length anyway
            view[filled : filled + len(chunk)] = chunk
            filled += len(chunk)
        return body

    async def _read_chunked(self, request: web.Request) -> bytearray:
        """A body of unannounced length (chunked): counted as it arrives."""
        body = bytearray()
        try:
            while chunk := await self._next(request, None):
                if len(body) + len(chunk) > self.max_body_bytes:
                    raise self._too_large()
                self._take(len(chunk))
                body += chunk
        except BaseException:
            self.held -= len(body)
            raise
        return body

    async def _next(self, request: web.Request, deadline: float | None) -> bytes:
        """The next piece of the body, within the idle timeout and the body's deadline."""
        when = asyncio.get_running_loop().time() + self.idle_timeout
        try:
            async with asyncio.timeout_at(when if deadline is None else min(when, deadline)):
                return await request.content.readany()
        except TimeoutError:
            raise BodyRefused(
                408, "request_timeout", "body_idle",
                f"the request body stopped arriving, or arrives slower than {MIN_RATE} bytes "
                "a second",
            ) from None  # fmt: skip

    def _take(self, size: int) -> None:
        if size > self.max_body_bytes:
            raise self._too_large()
        if self.held + size > self.max_buffered_bytes:
            raise BodyRefused(
                503, "gateway_busy", "buffered_bytes",
                "the gateway holds as many request bodies as it may; retry shortly",
            )  # fmt: skip
        self.held += size

    def _too_large(self) -> BodyRefused:
        return BodyRefused(
            413, "request_too_large", "body_bytes",
            f"request body is larger than {self.max_body_bytes} bytes",
        )  # fmt: skip


def upstream_payload(
    body: bytes | bytearray,
) -> bytes | bytearray | AsyncIterator[memoryview]:
    """What to send upstream: a small body as it is; a large one in pieces, each written
    once the socket took the one before, so that the transport never holds a copy of it
    (its Content-Length is the caller's to set: aiohttp would chunk an iterator)."""
    if len(body) <= SENT_WHOLE:
        return body
    return _pieces(memoryview(body))


async def _pieces(view: memoryview) -> AsyncIterator[memoryview]:
    for start in range(0, len(view), PIECE):
        yield view[start : start + PIECE]
