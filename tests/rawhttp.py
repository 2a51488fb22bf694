"""Raw HTTP/1.1 over plain sockets, for fault tests: the bytes on the wire are exactly the
test's (no client library to sanitise them), and the answer is parsed just enough to
tell a clean refusal from a crash: status, headers, body, or a closed connection."""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from typing import Protocol


@dataclass
class RawReply:
    """What the server sent back: `status` 0 when it closed without a status line."""

    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    raw: bytes = b""
    closed: bool = False  # the server closed the connection (after or instead of a reply)
    timed_out: bool = False  # nothing complete arrived before the deadline

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "")

    def __repr__(self) -> str:
        return (
            f"RawReply(status={self.status}, closed={self.closed}, timed_out={self.timed_out}, "
            f"raw={self.raw[:400]!r})"
        )


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def settled_fds(pid: int, timeout: float = 10.0, samples: int = 5) -> int:
    """The descriptor count once it has stopped moving (`samples` equal readings in a
    row, 20 ms apart): a connection that just closed on our side may still be open on
    the server's for a moment."""
    readings: list[int] = []
    deadline = time.monotonic() + timeout
    while True:
        readings = [*readings[-(samples - 1) :], open_fds(pid)]
        if len(readings) == samples and len(set(readings)) == 1:
            return readings[-1]
        if time.monotonic() > deadline:
            raise AssertionError(f"descriptors of {pid} never settled: {readings}")
        time.sleep(0.02)


def connect(port: int, timeout: float = 10.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def send_quietly(sock: socket.socket, data: bytes) -> bool:
    """sendall, tolerating a server that hangs up before it has read everything."""
    try:
        sock.sendall(data)
    except OSError:  # broken pipe, reset, or a TLS layer torn down
        return False
    return True


class Readable(Protocol):
    """What a reply is read from: a socket, or a stand-in for one."""

    def settimeout(self, value: float) -> None: ...

    def recv(self, size: int) -> bytes: ...


class _Wire:
    """Bytes from a socket, with a deadline; remembers everything it read."""

    def __init__(self, sock: Readable, deadline: float, reply: RawReply) -> None:
        self.sock = sock
        self.deadline = deadline
        self.reply = reply
        self.buffer = b""

    def more(self) -> bool:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            self.reply.timed_out = True
            return False
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            self.reply.timed_out = True
            return False
        except OSError:  # reset, broken pipe, or a TLS layer torn down (ssl.SSLError)
            chunk = b""
        if not chunk:
            self.reply.closed = True
            return False
        self.buffer += chunk
        self.reply.raw += chunk
        return True


def read_reply(sock: Readable, timeout: float = 10.0) -> RawReply:
    """Reads one final response (Content-Length, chunked, or until close) within `timeout`;
    interim 1xx responses are skipped."""
    reply = RawReply()
    wire = _Wire(sock, time.monotonic() + timeout, reply)
    while True:
        while b"\r\n\r\n" not in wire.buffer:
            if not wire.more():
                return reply
        head, _, wire.buffer = wire.buffer.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        try:
            reply.status = int(parts[1])
        except (IndexError, ValueError):
            reply.status = -1  # a status line that is not one
            return reply
        reply.headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            reply.headers[name.decode("latin-1").strip().lower()] = value.decode("latin-1").strip()
        if not 100 <= reply.status < 200:
            break
    if reply.header("content-length"):
        length = int(reply.header("content-length"))
        while len(wire.buffer) < length and wire.more():
            pass
        reply.body = wire.buffer[:length]
    elif "chunked" in reply.header("transfer-encoding").lower():
        while True:
            reply.body, complete = _dechunk(wire.buffer)
            if complete or not wire.more():
                break
    else:  # the body runs until the server closes
        while wire.more():
            pass
        reply.body = wire.buffer
    return reply


def _dechunk(data: bytes) -> tuple[bytes, bool]:
    out = b""
    position = 0
    while True:
        line_end = data.find(b"\r\n", position)
        if line_end < 0:
            return out, False
        size = int(data[position:line_end].split(b";")[0].strip() or b"0", 16)
        start = line_end + 2
        if size == 0:
            return out, data.find(b"\r\n", start) >= 0
        if len(data) < start + size + 2:
            return out, False
        out += data[start : start + size]
        position = start + size + 2


def exchange(
    port: int, data: bytes, timeout: float = 10.0, *, half_close: bool = False
) -> RawReply:
    """Sends `data` on a fresh connection and reads one response (or the close)."""
    with connect(port, timeout) as sock:
        sent = send_quietly(sock, data)
        if half_close and sent:
            sock.shutdown(socket.SHUT_WR)
        return read_reply(sock, timeout)


def request_bytes(
    method: bytes | str,
    target: bytes | str,
    headers: list[tuple[bytes | str, bytes | str]] | None = None,
    body: bytes = b"",
    *,
    content_length: bool = True,
) -> bytes:
    """An HTTP/1.1 request, byte for byte as given (nothing is validated or escaped)."""

    def b(value: bytes | str) -> bytes:
        return value if isinstance(value, bytes) else value.encode("latin-1")

    lines = [b(method) + b" " + b(target) + b" HTTP/1.1", b"Host: 127.0.0.1"]
    lines += [b(k) + b": " + b(v) for k, v in headers or []]
    if content_length and body:
        lines.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body
