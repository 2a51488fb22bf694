"""Small h11 helpers shared by the proxy's layers: read the next event, write a reply."""

from __future__ import annotations

import asyncio
import json
import re
from http import HTTPStatus

import h11

from proxyd import metrics

READ_SIZE = 64 * 1024


async def next_event(
    conn: h11.Connection, reader: asyncio.StreamReader, idle: float, max_head: int = 0
) -> object:
    """The next h11 event, reading from the socket as needed (raises TimeoutError when idle).
    A request head over `max_head` bytes is refused (431) even when it arrived whole, which
    h11's own bound (on incomplete events only) lets through."""
    while True:
        event = conn.next_event()
        if max_head and isinstance(event, h11.Request) and _head_size(event) > max_head:
            raise h11.RemoteProtocolError("request head too large", error_status_hint=431)
        if event is not h11.NEED_DATA:
            return event
        async with asyncio.timeout(idle):
            data = await reader.read(READ_SIZE)
        conn.receive_data(data)  # b"" is end of stream


def _head_size(request: h11.Request) -> int:
    """The head's size on the wire, give or take optional whitespace."""
    line = len(request.method) + len(request.target) + 12  # spaces, "HTTP/1.1", CRLF
    return line + sum(len(name) + len(value) + 4 for name, value in request.headers) + 2


async def reply(
    conn: h11.Connection,
    writer: asyncio.StreamWriter,
    status: int,
    reason: str,
    body: bytes = b"",
    headers: list[tuple[str, str]] | None = None,
    content_type: str = "text/plain; charset=utf-8",
) -> None:
    """A complete response after which the connection closes."""
    all_headers = [
        ("Content-Type", content_type),
        ("Content-Length", str(len(body))),
        ("Connection", "close"),
        *(headers or []),
    ]
    try:
        writer.write(
            conn.send(h11.Response(status_code=status, reason=reason, headers=all_headers))
        )
        if body:
            writer.write(conn.send(h11.Data(data=body)))
        writer.write(conn.send(h11.EndOfMessage()))
        await writer.drain()
    except (h11.LocalProtocolError, ConnectionError):
        pass


async def refuse_malformed(
    conn: h11.Connection, writer: asyncio.StreamWriter, exc: h11.RemoteProtocolError
) -> None:
    """Answers a request h11 could not parse: 400, or 431 for a head over the bound."""
    status = exc.error_status_hint
    if status == 431:
        metrics.LIMIT_HITS.labels("header_bytes").inc()
    phrase = HTTPStatus(status).phrase  # not h11's message: it may quote the client's headers
    await reply(conn, writer, status, phrase, f"{phrase}\n".encode())


def json_error(message: str, code: str) -> bytes:
    """OpenAI's error shape: the most common client behind the proxy parses it."""
    return json.dumps({"error": {"message": message, "type": "proxy_error", "code": code}}).encode()


def loggable_target(target: bytes) -> str:
    """A request target as the access log shows it: without a query or the userinfo of an
    absolute URL (a client may put a key in either, in a CONNECT's stead or inside an
    intercepted connection, where it is refused but still logged)."""
    return _USERINFO.sub("//", target.decode("latin-1").partition("?")[0])


_USERINFO = re.compile(r"//[^/@]*@")
