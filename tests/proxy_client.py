"""A deliberately plain client for proxyd: raw CONNECT, TLS with a chosen CA, and HTTP/1.1
requests over one connection (h11), so tests control exactly what is on the wire."""

from __future__ import annotations

import base64
import json
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h11
from cryptography import x509


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def connect(
    port: int, target: str, token: str | None, timeout: float = 15
) -> tuple[int, socket.socket]:
    """Sends CONNECT `target` with the token as Basic password; returns (status, socket)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    headers = f"Host: {target}\r\n"
    if token is not None:
        credentials = base64.b64encode(f"user:{token}".encode()).decode()
        headers += f"Proxy-Authorization: Basic {credentials}\r\n"
    sock.sendall(f"CONNECT {target} HTTP/1.1\r\n{headers}\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        data = sock.recv(4096)
        if not data:
            break
        head += data
    status = int(head.split(b" ", 2)[1]) if head else 0
    return status, sock


def tls(sock: socket.socket, server_name: str, cafile: Path) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=str(cafile))
    context.set_alpn_protocols(["http/1.1"])
    return context.wrap_socket(sock, server_hostname=server_name)


def peer_certificate(secure: ssl.SSLSocket) -> x509.Certificate:
    """The certificate the other end presented (verified contexts require one)."""
    der = secure.getpeercert(binary_form=True)
    assert der is not None, "the peer presented no certificate"
    return x509.load_der_x509_certificate(der)


class HTTPConnection:
    """HTTP/1.1 keep-alive requests over an already established (TLS) socket."""

    def __init__(self, sock: socket.socket, host: str) -> None:
        self.sock = sock
        self.host = host
        self.conn = h11.Connection(h11.CLIENT)

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> Reply:
        if self.conn.our_state is h11.DONE:
            self.conn.start_next_cycle()
        data = json.dumps(body).encode() if body is not None else b""
        all_headers = {"Host": self.host, "Content-Length": str(len(data))} | (headers or {})
        if body is not None:
            all_headers["Content-Type"] = "application/json"
        self.sock.sendall(
            self.conn.send(
                h11.Request(method=method, target=path, headers=list(all_headers.items()))
            )
        )
        if data:
            self.sock.sendall(self.conn.send(h11.Data(data=data)))
        self.sock.sendall(self.conn.send(h11.EndOfMessage()))
        response = None
        chunks = []
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                self.conn.receive_data(self.sock.recv(65536))
            elif isinstance(event, h11.Response):
                response = event
            elif isinstance(event, h11.Data):
                chunks.append(event.data)
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                break
        assert response is not None
        return Reply(
            response.status_code,
            {k.decode().lower(): v.decode() for k, v in response.headers},
            b"".join(chunks),
        )

    def close(self) -> None:
        self.sock.close()


def request_through(
    port: int, target: str, token: str | None, cafile: Path, method: str, path: str,
    body: Any = None, *, host: str | None = None,
) -> Reply:  # fmt: skip
    """One request on a fresh CONNECT `target` to the proxy on `port`, trusting `cafile`
    for the TLS inside, then closed. The Host header is `host`, else `target`."""
    status, sock = connect(port, target, token)
    if status != 200:
        sock.close()
        raise AssertionError(f"CONNECT {target} answered {status}")
    conn = HTTPConnection(tls(sock, target.split(":")[0], cafile), host or target)
    try:
        return conn.request(method, path, body)
    finally:
        conn.close()
