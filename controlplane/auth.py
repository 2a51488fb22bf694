"""Who may call what. Roles are proven by the bearer credential, never claimed.

admin   → the Admin service
viewer  → the Admin service's reads (Get*, List*, Query*, WaitForRevision, WhoAmI)
bridged → Watch (bridged cut), Ack, Leave, ReportUsage
proxyd  → Watch (proxyd cut), Ack, Leave
Health and reflection are open so that probes and grpcurl work.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Iterable
from enum import StrEnum
from typing import Any

import grpc


class Role(StrEnum):
    ADMIN = "admin"
    VIEWER = "viewer"
    BRIDGED = "bridged"
    PROXYD = "proxyd"


_OPEN_PREFIXES = ("/grpc.health.v1.", "/grpc.reflection.")
_SERVICE_ROLES = {
    "/aibridge.v1.Admin/": {Role.ADMIN, Role.VIEWER},
    "/aibridge.v1.Sync/": {Role.BRIDGED, Role.PROXYD},
    "/aibridge.v1.Usage/": {Role.BRIDGED},
}
_ADMIN = "/aibridge.v1.Admin/"
# What the viewer may call: the methods that change nothing, by name. A method added
# later is refused to the viewer until it is named here (tests/test_viewer.py checks it).
_READS = frozenset(
    f"{_ADMIN}{name}"
    for name in (
        "WhoAmI", "GetStatus", "WaitForRevision", "GetProvider", "ListProviders", "ListTokens",
        "QueryUsage", "ListAudit", "ListSettings", "ListInterceptions", "GetInterception",
        "ListSessions", "GetSession", "GetUser", "ListUsers", "GetTeam", "ListTeams",
        "ListLimits", "ListPrices", "QuerySpend",
    )
)  # fmt: skip


def is_read(method: str) -> bool:
    """Whether the full method name (/aibridge.v1.Admin/GetStatus) only reads."""
    return method in _READS


class Credentials:
    def __init__(self, tokens: dict[Role, str]) -> None:
        for role, token in tokens.items():
            if not token:
                raise ValueError(f"the {role} credential is empty")
        if len(set(tokens.values())) != len(tokens):
            raise ValueError("each role needs its own credential")
        self._tokens = [(token.encode(), role) for role, token in tokens.items()]

    def role_of(self, metadata: Iterable[tuple[str, Any]] | None) -> Role | None:
        presented = _bearer(metadata)
        if presented is None:
            return None
        found = None
        for token, role in self._tokens:  # compare with every one: no timing hint
            if hmac.compare_digest(token, presented):
                found = role
        return found


def _bearer(metadata: Iterable[tuple[str, Any]] | None) -> bytes | None:
    for key, value in metadata or ():
        if key == "authorization":
            text = value.decode() if isinstance(value, bytes) else str(value)
            scheme, _, token = text.partition(" ")
            if scheme.lower() == "bearer" and token:
                return token.strip().encode()
    return None


def actor(context: grpc.aio.ServicerContext) -> str:
    """Who did it, for the audit log: the user the client says, and where it called from."""
    claimed = "unknown"
    for key, value in context.invocation_metadata() or ():
        if key == "x-aibridge-actor" and value:
            claimed = str(value)[:100]
    return f"{claimed} ({context.peer()})"[:200]


class AuthInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, credentials: Credentials) -> None:
        self.credentials = credentials

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        method = details.method
        handler = await continuation(details)
        if handler is None or method.startswith(_OPEN_PREFIXES):
            return handler
        role = self.credentials.role_of(details.invocation_metadata)
        if role is None:
            return _refusing(
                handler, grpc.StatusCode.UNAUTHENTICATED, "missing or unknown credential"
            )
        allowed = next((r for p, r in _SERVICE_ROLES.items() if method.startswith(p)), set())
        if role not in allowed or (role is Role.VIEWER and not is_read(method)):
            return _refusing(
                handler,
                grpc.StatusCode.PERMISSION_DENIED,
                f"the {role} credential may not call {method}",
            )
        return handler


def _refusing(
    handler: grpc.RpcMethodHandler, code: grpc.StatusCode, message: str
) -> grpc.RpcMethodHandler:
    """A handler that refuses without reading the request. It takes a stream of requests:
    grpc.aio receives such a stream's messages only when the handler reads them, whereas
    for a unary request it receives and parses the whole message before the handler runs."""

    async def refuse(_requests: Any, context: grpc.aio.ServicerContext) -> None:
        await context.abort(code, message)

    async def refuse_stream(_requests: Any, context: grpc.aio.ServicerContext):  # type: ignore[no-untyped-def]
        await context.abort(code, message)
        yield  # pragma: no cover - makes this an async generator

    if handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(
            refuse_stream, response_serializer=handler.response_serializer
        )
    return grpc.stream_unary_rpc_method_handler(
        refuse, response_serializer=handler.response_serializer
    )
