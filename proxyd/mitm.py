"""Decrypted HTTP/1.1 on an intercepted connection → bridged, one request at a time.

Each request looks the host up in the live host map: a renamed provider is reached
under its new name; a host that is no longer a provider's gets 421 Misdirected Request
and the connection closes, so the client's next CONNECT is decided afresh (tunnelled or
refused), never sent to a stale route.
"""

from __future__ import annotations

import asyncio
import logging
import time

import aiohttp
import h11

from common import access
from common.access import Call
from common.wire import HOP_BY_HOP
from proxyd import metrics
from proxyd.http import json_error, loggable_target, next_event, refuse_malformed, reply
from proxyd.reload import LiveHostRouter
from proxyd.routes import HostRoute

log = logging.getLogger(__name__)

# The caller's own credentials (often the real provider key) never leave the machine.
STRIPPED_REQUEST = HOP_BY_HOP | {"host", "content-length", "authorization", "x-api-key", "api-key"}
STRIPPED_RESPONSE = HOP_BY_HOP


class Interceptor:
    def __init__(
        self,
        state: LiveHostRouter,
        bridged_url: str,
        max_body_bytes: int,
        max_header_bytes: int,
        idle_timeout: float,
        bridged_idle_timeout: float,
    ) -> None:
        self.state = state
        self.bridged_idle_timeout = bridged_idle_timeout
        self.bridged_url = bridged_url
        self.max_body_bytes = max_body_bytes
        self.max_header_bytes = max_header_bytes
        self.idle_timeout = idle_timeout
        self.session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self.session = aiohttp.ClientSession(
            # Idle connections are closed within twice the timeout (the pool's sweep runs
            # that often): after a burst, not held for aiohttp's default 15-30 s.
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=self.bridged_idle_timeout),
            timeout=aiohttp.ClientTimeout(total=None, connect=10),
            auto_decompress=False,  # bytes pass through exactly as bridged sent them
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
        )

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()

    async def serve(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        host_port: str,
        token: str,
        token_name: str,
    ) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=self.max_header_bytes)
        while True:
            try:
                event = await next_event(conn, reader, self.idle_timeout, self.max_header_bytes)
            except h11.RemoteProtocolError as exc:
                await refuse_malformed(conn, writer, exc)
                return
            if not isinstance(event, h11.Request):
                return  # ConnectionClosed, or the client gave up
            call = Call(
                event.method.decode("latin-1"), loggable_target(event.target),
                time.monotonic(), token=token_name,
            )  # fmt: skip
            try:
                kept = await self._one(conn, reader, writer, event, host_port, token, call)
            finally:
                access.log_call(call)
            if not kept or conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                return
            try:
                conn.start_next_cycle()
            except h11.LocalProtocolError:
                return

    async def _one(
        self, conn: h11.Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
        request: h11.Request, host_port: str, token: str, call: Call,
    ) -> bool:  # fmt: skip
        """One request of the connection, forwarded or refused; False to close."""
        if not safe_target(request.target):
            message = "the request target must be a plain path"
            await _refuse(conn, writer, call, 400, "Bad Request", message, "bad_target")
            return False
        if conn.they_are_waiting_for_100_continue:
            writer.write(conn.send(h11.InformationalResponse(status_code=100, headers=[])))
        body = await self._body(conn, reader)
        if body is None:
            metrics.LIMIT_HITS.labels("body_bytes").inc()
            message = "request body too large"
            await _refuse(
                conn, writer, call, 413, "Payload Too Large", message, "request_too_large"
            )
            return False
        call.bytes_in = len(body)
        router = self.state.router
        route = router.route(host_port) if router is not None else None
        if route is None:
            metrics.REQUESTS.labels("", "421").inc()
            message = f"{host_port} is no longer routed to a provider; reconnect"
            await _refuse(
                conn, writer, call, 421, "Misdirected Request", message, "host_not_routed"
            )
            return False
        call.provider = route.provider
        metrics.IN_FLIGHT.inc()
        try:
            return await self._forward(conn, writer, request, body, route, token, call)
        finally:
            metrics.IN_FLIGHT.dec()

    async def _body(self, conn: h11.Connection, reader: asyncio.StreamReader) -> bytes | None:
        parts: list[bytes] = []
        size = 0
        while True:
            event = await next_event(conn, reader, self.idle_timeout)
            if isinstance(event, h11.Data):
                size += len(event.data)
                if size > self.max_body_bytes:
                    return None
                parts.append(event.data)
            elif isinstance(event, h11.EndOfMessage):
                return b"".join(parts)
            else:
                raise ConnectionError("the client closed mid-request")

    async def _forward(
        self,
        conn: h11.Connection,
        writer: asyncio.StreamWriter,
        request: h11.Request,
        body: bytes,
        route: HostRoute,
        token: str,
        call: Call,
    ) -> bool:
        """Sends one request to bridged and streams the answer back (what happened goes
        in `call`); False to close."""
        assert self.session is not None
        target = request.target.decode("latin-1")
        path, _, query = target.partition("?")
        url = f"{self.bridged_url}/api/v2/aibridge/{route.provider}{route.bridged_path(path)}"
        if query:
            url += "?" + query
        headers = [
            (k.decode("latin-1"), v.decode("latin-1"))
            for k, v in request.headers
            if k.decode("latin-1").lower() not in STRIPPED_REQUEST
        ]
        headers.append(("Authorization", f"Bearer {token}"))
        started = False
        try:
            async with self.session.request(
                request.method.decode("ascii"), url, headers=headers, data=body,
                allow_redirects=False,
            ) as response:  # fmt: skip
                out = [
                    (k, v)
                    for k, v in response.headers.items()
                    if k.lower() not in STRIPPED_RESPONSE
                ]
                if "content-length" not in {k.lower() for k, _ in out}:
                    out.append(("Transfer-Encoding", "chunked"))
                writer.write(
                    conn.send(
                        h11.Response(
                            status_code=response.status, headers=out, reason=response.reason or ""
                        )
                    )
                )
                started = True
                call.status = response.status
                call.request_id = response.headers.get("x-aibridge-request-id", "")
                call.error = response.headers.get("x-aibridge-error", "")
                async for chunk in response.content.iter_any():
                    call.bytes_out += len(chunk)
                    writer.write(conn.send(h11.Data(data=chunk)))
                    await writer.drain()  # as it arrives: streams are never held back
                writer.write(conn.send(h11.EndOfMessage()))
                await writer.drain()
                metrics.REQUESTS.labels(route.provider, str(response.status)).inc()
                return True
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("bridged unreachable for %s: %s", route.provider, type(exc).__name__)
            metrics.REQUESTS.labels(route.provider, "502").inc()
            if not started:
                await _refuse(conn, writer, call, 502, "Bad Gateway",
                              "the gateway is unreachable", "bridged_unreachable")  # fmt: skip
            return False


async def _refuse(
    conn: h11.Connection, writer: asyncio.StreamWriter, call: Call, status: int, reason: str,
    message: str, code: str,
) -> None:  # fmt: skip
    """Answers, in JSON, a request proxyd does not forward (or could not)."""
    body = json_error(message, code)
    call.status, call.error, call.bytes_out = status, code, len(body)
    await reply(conn, writer, status, reason, body, content_type="application/json")


def safe_target(target: bytes) -> bool:
    """Origin-form only, and no dot segments (raw or %-encoded): a path must not climb out
    of its provider's prefix once bridged's URL is normalised."""
    if not target.startswith(b"/"):
        return False
    path = target.split(b"?", 1)[0].lower().replace(b"%2e", b".").replace(b"%2f", b"/")
    return not any(segment in (b".", b"..") for segment in path.split(b"/"))
