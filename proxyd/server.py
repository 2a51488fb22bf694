"""The proxy's front door: one h11 request per new connection.

CONNECT with a valid gateway token → intercepted (provider host) or tunnelled (policy
permitting). Plain requests to the proxy itself serve /healthz, /readyz, /metrics and
/ca.pem. Everything else is refused: proxyd is never an open proxy.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import ssl
import time
from collections.abc import Sequence

import h11

from common import access, probes
from common.access import Call
from common.subscriber import Subscriber
from proxyd import metrics
from proxyd.certs import CertificateAuthority
from proxyd.http import loggable_target, next_event, refuse_malformed, reply
from proxyd.mitm import Interceptor
from proxyd.reload import LiveHostRouter
from proxyd.routes import host_key
from proxyd.tunnel import AddressNotAllowed, DialFailed, TunnelPolicy, splice

log = logging.getLogger(__name__)

PROXY_AUTHENTICATE = ("Proxy-Authenticate", 'Basic realm="aibridge"')
TLS_HANDSHAKE_TIMEOUT = 15.0
HEAD_TIMEOUT = 15.0


class ProxyServer:
    def __init__(
        self,
        state: LiveHostRouter,
        ca: CertificateAuthority,
        interceptor: Interceptor,
        policy: TunnelPolicy,
        *,
        tunnel: str,
        max_header_bytes: int,
        max_connections: int,
        idle_timeout: float,
        subscriber: Subscriber,
    ) -> None:
        self.state = state
        self.ca = ca
        self.interceptor = interceptor
        self.policy = policy
        self.tunnel = tunnel
        self.max_header_bytes = max_header_bytes
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.subscriber = subscriber
        self.readiness = probes.subscriber_readiness(self._version, subscriber)
        self.connections: set[asyncio.Task[None]] = set()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self.connections) >= self.max_connections:
            metrics.LIMIT_HITS.labels("connections").inc()
            writer.close()
            return
        task = asyncio.current_task()
        assert task is not None
        self.connections.add(task)
        metrics.CONNECTIONS.set(len(self.connections))
        try:
            await self._serve(reader, writer)
        except (ConnectionError, TimeoutError, ssl.SSLError, h11.ProtocolError, OSError):
            pass  # the client went away or spoke nonsense: nothing to answer
        finally:
            self.connections.discard(task)
            metrics.CONNECTIONS.set(len(self.connections))
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=self.max_header_bytes)
        try:
            # One deadline for the whole head: a byte at a time must not hold a slot.
            async with asyncio.timeout(HEAD_TIMEOUT):
                request = await next_event(conn, reader, self.idle_timeout, self.max_header_bytes)
        except h11.RemoteProtocolError as exc:
            await refuse_malformed(conn, writer, exc)
            return
        if not isinstance(request, h11.Request):
            return
        call = Call(
            request.method.decode("latin-1"), loggable_target(request.target),
            time.monotonic(),
        )  # fmt: skip
        if request.method == b"CONNECT":
            await self._connect(conn, request, reader, writer, call)
        elif request.target.startswith(b"/"):
            await self._local(conn, request, writer)
        else:
            # Plain-HTTP proxying (absolute-form) is not offered: LLM APIs speak HTTPS.
            await _refuse(conn, writer, call, 405, "Method Not Allowed", "only CONNECT is proxied",
                          "only_connect", headers=[("Allow", "CONNECT")])  # fmt: skip

    async def _connect(
        self,
        conn: h11.Connection,
        request: h11.Request,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        call: Call,
    ) -> None:
        authority = _authority(request.target.decode("latin-1"))
        if authority is None:
            await _refuse(conn, writer, call, 400, "Bad Request", "CONNECT needs host:port",
                          "bad_connect_target")  # fmt: skip
            return
        host, port = authority
        router = self.state.router
        if router is None:
            await _refuse(conn, writer, call, 503, "Service Unavailable", "no configuration yet",
                          "no_snapshot")  # fmt: skip
            return
        token = _proxy_token(request.headers)
        caller = None if token is None else router.callers.verify(token)
        if token is None or caller is None:
            await _refuse(
                conn, writer, call, 407, "Proxy Authentication Required",
                "a gateway token is required: http://user:TOKEN@proxy", "invalid_token",
                headers=[PROXY_AUTHENTICATE],
            )  # fmt: skip
            return
        call.token = caller.name
        key = host_key(host, port)
        if router.route(key) is not None:
            await self._intercept(conn, reader, writer, host, key, token, caller.name)
        elif self.tunnel == "deny":
            await _refuse(conn, writer, call, 403, "Forbidden", "only provider hosts are allowed",
                          "tunnel_denied")  # fmt: skip
        else:
            await self._tunnel(conn, reader, writer, host, port, call)

    async def _intercept(
        self,
        conn: h11.Connection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        host: str,
        key: str,
        token: str,
        token_name: str,
    ) -> None:
        """Decrypts the connection; each request in it is a line of the access log."""
        context = self.ca.context_for(host.lower())
        metrics.CERT_CACHE.set(self.ca.cached)
        writer.write(
            conn.send(h11.Response(status_code=200, reason="Connection established", headers=[]))
        )
        await writer.drain()
        if conn.trailing_data[0]:
            return  # bytes before our answer: not a TLS client we can serve
        metrics.SESSIONS.labels("intercepted").inc()
        await writer.start_tls(context, ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT)
        await self.interceptor.serve(reader, writer, key, token, token_name)

    async def _tunnel(
        self,
        conn: h11.Connection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        host: str,
        port: int,
        call: Call,
    ) -> None:
        if not self.policy.port_allowed(port):
            await _refuse(conn, writer, call, 403, "Forbidden", f"port {port} is not allowed",
                          "port_not_allowed")  # fmt: skip
            return
        try:
            upstream = await self.policy.dial(host, port)
        except AddressNotAllowed as refused:
            await _refuse(conn, writer, call, 403, "Forbidden", str(refused), "address_not_allowed")
            return
        except DialFailed as failed:
            await _refuse(conn, writer, call, 502, "Bad Gateway", str(failed), "tunnel_failed")
            return
        metrics.SESSIONS.labels("tunnelled").inc()
        writer.write(
            conn.send(h11.Response(status_code=200, reason="Connection established", headers=[]))
        )
        await writer.drain()
        call.status = 200
        try:
            call.bytes_in, call.bytes_out = await splice(
                (reader, writer), upstream, conn.trailing_data[0], self.idle_timeout
            )
        finally:
            access.log_call(call)  # the tunnel's line, once it is over

    def _version(self) -> int | None:
        """The version of the host map served, None before the first snapshot."""
        router = self.state.router
        return router.version if router is not None else None

    async def _local(
        self, conn: h11.Connection, request: h11.Request, writer: asyncio.StreamWriter
    ) -> None:
        path = request.target.split(b"?")[0]
        probe = await probes.answer(path.decode("latin-1"), self.readiness)
        if probe is not None:
            await reply(conn, writer, probe.status, probe.reason, probe.body,
                        content_type=probe.content_type)  # fmt: skip
        elif path == b"/ca.pem":
            await reply(
                conn, writer, 200, "OK", self.ca.cert_pem, content_type="application/x-pem-file"
            )
        else:
            await reply(conn, writer, 404, "Not Found", b"not found\n")


async def _refuse(
    conn: h11.Connection, writer: asyncio.StreamWriter, call: Call, status: int, reason: str,
    text: str, code: str, headers: list[tuple[str, str]] | None = None,
) -> None:  # fmt: skip
    """Answers a CONNECT (or other request) proxyd will not serve, and logs it."""
    metrics.SESSIONS.labels("refused").inc()
    body = f"{text}\n".encode()
    await reply(conn, writer, status, reason, body, headers=headers)
    call.status, call.error, call.bytes_out = status, code, len(body)
    access.log_call(call)


def _authority(target: str) -> tuple[str, int] | None:
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit() or not host:
        return None
    number = int(port)
    if not 0 < number < 65536:
        return None
    host = host.strip("[]")
    if not host or any(c.isspace() or c in "/@" for c in host):
        return None
    return host, number


def _proxy_token(headers: Sequence[tuple[bytes, bytes]]) -> str | None:
    """The password of `Proxy-Authorization: Basic` (or the user, when no password)."""
    for name, value in headers:
        if name.lower() != b"proxy-authorization":
            continue
        scheme, _, encoded = value.decode("latin-1").partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        user, _, password = decoded.partition(":")
        return password or user or None
    return None
