"""Calling the admin API for a signed-in person: their credential on every call, and the
gRPC errors a page shows turned into exceptions it can place."""

from __future__ import annotations

from typing import Any

import grpc

from aibridge.v1 import admin_pb2, admin_pb2_grpc
from common.channel import ClientTLS, auth_metadata, open_aio_channel


class ControlplaneUnavailable(Exception):
    """The controlplane did not answer: every page shows a banner, not an error page."""


class SignedOut(Exception):
    """The session's credential is no longer accepted (rotated, or the controlplane's
    changed): the person signs in again."""


class Refused(Exception):
    """The API refused the call; `field` is the request field it named, if any."""

    def __init__(self, code: grpc.StatusCode, message: str, field: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field

    @property
    def stale(self) -> bool:
        """ABORTED: the form's expected revision is not the current one."""
        return self.code == grpc.StatusCode.ABORTED


# The API's refusals as HTTP statuses: of a page that shows one (a form re-rendered with
# the message beside its field), or of the page the middleware makes of one no page placed.
REFUSED_STATUS = {
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 503,
}


class AdminAPI:
    """One channel to the controlplane, shared by every session; the credential goes
    with each call."""

    def __init__(self, address: str, tls: ClientTLS | None, timeout: float) -> None:
        self.address = address
        self.timeout = timeout
        self._channel = open_aio_channel(address, tls)
        self._stub = admin_pb2_grpc.AdminStub(self._channel)

    async def call(self, method: str, request: Any, credential: str, actor: str) -> Any:
        """`method` of the Admin service (like "ListProviders"), as `actor` says who."""
        rpc = getattr(self._stub, method)
        metadata = (*auth_metadata(credential), ("x-aibridge-actor", actor))
        try:
            return await rpc(request, timeout=self.timeout, metadata=metadata)
        except grpc.aio.AioRpcError as exc:
            raise _translated(exc, self.address) from None

    async def role_of(self, credential: str) -> str | None:
        """ "admin" or "viewer"; None for any other credential. Whether the controlplane
        does not know it or knows it as a data plane's, the answer is the same: a sign-in
        page tells nobody which of its guesses is a credential."""
        try:
            reply = await self.call("WhoAmI", admin_pb2.WhoAmIRequest(), credential, "console")
        except (SignedOut, Refused):
            return None
        return str(reply.role) if reply.role in ("admin", "viewer") else None

    async def close(self) -> None:
        await self._channel.close()


def _translated(exc: grpc.aio.AioRpcError, address: str) -> Exception:
    code = exc.code()
    details = exc.details() or code.name
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return ControlplaneUnavailable(
            f"The controlplane at {address} is not answering ({code.name}: {details})."
        )
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return SignedOut(details)
    field = next((str(v) for k, v in exc.trailing_metadata() or () if k == "aibridge-field"), "")
    return Refused(code, details, field)
