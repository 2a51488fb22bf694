"""bridged's access log: aiohttp calls it once a response is sent (its bytes counted);
the request path leaves on the request what it learnt of the call."""

from __future__ import annotations

from time import monotonic

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from common import access, probes
from common.access import Call

CALL = web.RequestKey("call", Call)


class AccessLogger(AbstractAccessLogger):
    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        call = request.get(CALL)
        if call is not None and call.logged:
            return
        if call is None:  # not a provider's route
            if request.path in probes.PATHS:  # polled constantly: not calls
                return
            call = Call(request.method, request.path, started=monotonic() - time)
        call.status = response.status
        call.error = response.headers.get("x-aibridge-error", "")
        if isinstance(response, web.Response):  # the gateway's own answer, not a stream
            call.bytes_out = len(response.body or b"")  # type: ignore[arg-type]
        access.log_call(call)

    @property
    def enabled(self) -> bool:
        return access.enabled()
