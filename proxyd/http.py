"""Small h11 helpers shared by the proxy's layers: read the next event, write a reply."""

from __future__ import annotations

import asyncio
import json

import h11

READ_SIZE = 64 * 1024


async def next_event(conn: h11.Connection, reader: asyncio.StreamReader, idle: float) -> object:
    """The next h11 event, reading from the socket as needed (raises TimeoutError when idle)."""
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        data = await asyncio.wait_for(reader.read(READ_SIZE), idle)
        conn.receive_data(data)  # b"" is end of stream


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


def json_error(message: str, code: str) -> bytes:
    """OpenAI's error shape: the most common client behind the proxy parses it."""
    return json.dumps({"error": {"message": message, "type": "proxy_error", "code": code}}).encode()
