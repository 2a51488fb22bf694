"""What one gRPC call may cost the controlplane, and how many run at once.

grpc.aio receives a unary request whole before its handler runs, but a streamed
request only message by message, as the handler reads it. So every handler is served
here as a request-streaming one, and a request is received only in a turn:

- Unary calls: at most `max_calls` per service hold a turn, from receiving the request
  to the answer. More wait, in order, up to `max_streams` of them and for at most
  QUEUE_SECONDS: every subscriber acknowledges every snapshot at the same moment, and
  that burst must wait, not fail. Beyond, RESOURCE_EXHAUSTED at once. A waiting call's
  request is not read: it costs its call state, and what its client sent before the
  server stopped reading (one flow-control window, 64 KiB; see server.py).
- Streams (Sync.Watch, Health.Watch, reflection): at most `max_streams` open per
  service, refused beyond. Each of their request messages is received in a call turn.
- A request over its service's REQUEST_LIMITS is refused with RESOURCE_EXHAUSTED
  before it is parsed. gRPC's own limit (SERVER_REQUEST_LIMIT, the largest) applies to
  every message before any handler sees it, so a request costs at most that much while
  it is received: `max_calls` × 4 MiB per service at worst.

Services are bounded apart: a flood of admin calls leaves the subscribers' acks alone,
and a flood of health checks leaves the admin API alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import traceback
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from prometheus_client import Counter, Gauge

from common.wire import MAX_SYNC_REQUEST_BYTES, MAX_USAGE_REQUEST_BYTES

KiB = 1024

# The largest request message each service takes, in bytes.
REQUEST_LIMITS = {
    "aibridge.v1.Usage": MAX_USAGE_REQUEST_BYTES,
    "aibridge.v1.Sync": MAX_SYNC_REQUEST_BYTES,
    # The largest admin request is a provider with its keys: 60 keys of the longest
    # allowed (4,096 characters) fit, with room for the rest. More go in further calls.
    "aibridge.v1.Admin": 256 * KiB,
}
OTHER_REQUEST_LIMIT = 64 * KiB  # health checks and reflection: a name or two
SERVER_REQUEST_LIMIT = max(REQUEST_LIMITS.values())

QUEUE_SECONDS = 5.0  # the longest a unary call waits for its turn
RECEIVE_SECONDS = 10.0  # a request must arrive within this of its turn: no slow sender keeps one

LIMIT_HITS = Counter(
    "aibridge_controlplane_limit_hits_total",
    "gRPC calls refused at a configured bound",
    ["limit", "service"],  # calls, streams, request_bytes, receive_seconds
)
CALLS_IN_PROGRESS = Gauge(
    "aibridge_controlplane_calls_in_progress", "Unary calls holding a turn", ["service"]
)
CALLS_WAITING = Gauge("aibridge_controlplane_calls_waiting", "Unary calls waiting", ["service"])
STREAMS_OPEN = Gauge("aibridge_controlplane_streams_open", "Streams open", ["service"])


class Turns:
    """`size` holders at once; up to `queue` more wait for a turn, first come first served."""

    def __init__(self, size: int, queue: int) -> None:
        self.size = size
        self.queue = queue
        self.holders = 0
        self._waiting: deque[asyncio.Future[None]] = deque()

    async def take(self, timeout: float) -> bool:
        """True once the caller holds a turn; False if the queue is full or the wait too long."""
        if self.holders < self.size and not self._waiting:
            self.holders += 1
            return True
        if len(self._waiting) >= self.queue:
            return False
        turn = asyncio.get_running_loop().create_future()
        self._waiting.append(turn)
        try:
            async with asyncio.timeout(timeout):
                await turn
        except TimeoutError:
            self._abandon(turn)
            return False
        except asyncio.CancelledError:
            self._abandon(turn)
            raise
        return True

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def give_back(self) -> None:
        while self._waiting:
            turn = self._waiting.popleft()
            if not turn.done():
                turn.set_result(None)  # handed on: the count of holders stays
                return
        self.holders -= 1

    def _abandon(self, turn: asyncio.Future[None]) -> None:
        if turn.done() and not turn.cancelled():
            self.give_back()  # it was handed this turn just as it gave up
        elif turn in self._waiting:
            self._waiting.remove(turn)


class ServiceBounds:
    """The turns and the request limit of one service."""

    def __init__(self, service: str, max_calls: int, max_streams: int) -> None:
        self.service = service
        self.request_limit = REQUEST_LIMITS.get(service, OTHER_REQUEST_LIMIT)
        self.calls = Turns(max_calls, queue=max_streams)
        self.streams = Turns(max_streams, queue=0)
        CALLS_IN_PROGRESS.labels(service).set_function(lambda: self.calls.holders)
        CALLS_WAITING.labels(service).set_function(lambda: self.calls.waiting)
        STREAMS_OPEN.labels(service).set_function(lambda: self.streams.holders)

    async def take_call(self, context: grpc.aio.ServicerContext) -> None:
        # Refused a little before its deadline, a caller learns why it was not served.
        remaining = context.time_remaining()
        wait = QUEUE_SECONDS if remaining is None else min(QUEUE_SECONDS, remaining - 0.5)
        if not await self.calls.take(wait):
            LIMIT_HITS.labels("calls", self.service).inc()
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"{self.service} is busy: {self.calls.size} calls in progress and more "
                f"waiting (the controlplane's --max-calls); try again",
            )

    async def take_stream(self, context: grpc.aio.ServicerContext) -> None:
        if not await self.streams.take(0):
            LIMIT_HITS.labels("streams", self.service).inc()
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"{self.service} has {self.streams.size} streams open "
                f"(the controlplane's --max-streams); try again later",
            )

    async def receive(
        self, context: grpc.aio.ServicerContext, parse: Callable[[bytes], Any]
    ) -> Any | None:
        """The call's next request message, parsed; None at the end of its stream.
        (context.read, not the handler's request iterator: that iterator is an async
        generator which holds the last message it gave until it is finalized, after
        the call, and a garbage collection, are over.)"""
        try:
            async with asyncio.timeout(RECEIVE_SECONDS):
                raw = await context.read()
        except TimeoutError:
            LIMIT_HITS.labels("receive_seconds", self.service).inc()
            await context.abort(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"the request did not arrive within {RECEIVE_SECONDS:g} s",
            )
        if raw is grpc.aio.EOF:
            return None
        if len(raw) > self.request_limit:
            LIMIT_HITS.labels("request_bytes", self.service).inc()
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"request of {len(raw)} bytes: {self.service} takes at most "
                f"{self.request_limit} bytes",
            )
        return parse(raw)


class LimitInterceptor(grpc.aio.ServerInterceptor):
    """Serves every handler within its service's bounds (ServiceBounds)."""

    def __init__(self, max_calls: int, max_streams: int) -> None:
        self.max_calls = max_calls
        self.max_streams = max_streams
        self._bounds: dict[str, ServiceBounds] = {}

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(details)
        if handler is None:  # no such method: grpc answers UNIMPLEMENTED, unread
            return None
        service = details.method.split("/")[1]
        bounds = self._bounds.get(service)
        if bounds is None:
            bounds = self._bounds[service] = ServiceBounds(
                service, self.max_calls, self.max_streams
            )
        return _bounded(handler, bounds)


def _bounded(handler: grpc.RpcMethodHandler, bounds: ServiceBounds) -> grpc.RpcMethodHandler:
    """`handler` as a request-streaming handler that receives its requests within `bounds`."""
    parse = handler.request_deserializer or (lambda raw: raw)
    behaviour = (
        handler.unary_unary or handler.unary_stream or handler.stream_unary or handler.stream_stream
    )
    if not (inspect.iscoroutinefunction(behaviour) or inspect.isasyncgenfunction(behaviour)):
        raise TypeError(f"{behaviour} is not async: grpc.aio would run it in a thread")
    call: Callable[..., Any] = behaviour  # async, as checked (grpc's stubs type it sync)

    async def one_request(context: Any) -> Any:
        request = await bounds.receive(context, parse)
        if request is None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "no request message")
        return request

    async def requests(context: Any) -> AsyncIterator[Any]:
        """A client's stream of requests, each received in a call turn."""
        while True:
            await bounds.take_call(context)
            try:
                request = await bounds.receive(context, parse)
            finally:
                bounds.calls.give_back()
            if request is None:
                return
            yield request

    # grpc passes request iterators, never used: requests are read with context.read.
    async def unary(_requests: Any, context: Any) -> Any:
        await bounds.take_call(context)
        try:
            return await call(await one_request(context), context)
        except BaseException as exc:
            _forget_locals(exc)
            raise
        finally:
            bounds.calls.give_back()

    async def stream(_requests: Any, context: Any) -> AsyncIterator[Any]:
        await bounds.take_stream(context)
        try:
            if handler.request_streaming:
                request: Any = requests(context)
            else:
                await bounds.take_call(context)
                try:
                    request = await one_request(context)
                finally:
                    bounds.calls.give_back()
            if inspect.isasyncgenfunction(behaviour):
                async with contextlib.aclosing(behaviour(request, context)) as responses:
                    async for response in responses:
                        yield response
            else:
                await call(request, context)  # writes with context.write
        except BaseException as exc:
            _forget_locals(exc)
            raise
        finally:
            bounds.streams.give_back()

    if handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(
            stream, response_serializer=handler.response_serializer
        )
    if handler.request_streaming:  # the controlplane serves none
        raise TypeError(f"no bounds for a client-streaming handler: {behaviour}")
    return grpc.stream_unary_rpc_method_handler(
        unary, response_serializer=handler.response_serializer
    )


def _forget_locals(exc: BaseException | None) -> None:
    """grpc.aio keeps an aborted call's exception in the call's state, which its traceback's
    frames reach back to: a reference cycle that holds every frame's locals, the request
    among them, until a full garbage collection. Under a flood of refused calls that was
    gigabytes. The frames the exception (and the one it was raised in handling) left are
    done: their locals can go now."""
    while exc is not None:
        traceback.clear_frames(exc.__traceback__)
        exc = exc.__context__
