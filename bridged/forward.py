"""The request path: authenticate, route, inject the key, forward, stream back, record.

Everything a request needs is read from one route table, taken once at its start.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from collections import deque
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import aiohttp
from aiohttp import web
from google.protobuf.timestamp_pb2 import Timestamp
from multidict import CIMultiDict
from yarl import URL

from aibridge.v1 import usage_pb2
from bridged import metrics
from bridged.access import CALL, Call
from bridged.bodies import SENT_WHOLE, BodyRefused, HeldBody, RequestBodies, upstream_payload
from bridged.capture import Recording
from bridged.capture.recorder import ResponseRecorder
from bridged.clouds import eventstream
from bridged.clouds.calls import BadCloudRequest, CloudCall, cloud_call, cloud_path
from bridged.clouds.credentials import CloudCredentials, KeyRefused, TokenEndpointUnreachable
from bridged.clouds.errors import credential_refused
from bridged.clouds.responses import anthropic_error, anthropic_token_count
from bridged.errors import error_response, family_for_path
from bridged.governance import Governance
from bridged.headers import STRIPPED_RESPONSE, upstream_request_headers
from bridged.keys import KeyHealth
from bridged.limits import CONCURRENT, UNAVAILABLE, Admission, Counters, LocalCounters, Refusal
from bridged.reload import LiveRouteTable
from bridged.routes import Endpoint, ProviderKey, Route, RouteTable
from bridged.upstreams import UpstreamPools
from bridged.usage import Usage
from bridged.usage_reporter import UsageReporter
from common import access
from common.clouds import CLOUD_TYPES
from common.text import storable
from common.tokens import Caller

if TYPE_CHECKING:  # bridged.tracing loads the OpenTelemetry SDK: only with --otel-endpoint
    from opentelemetry.trace import Span

    from bridged.tracing import Tracing

log = logging.getLogger(__name__)

# Unique request ids (they key usage records), cheaply: a random prefix per process and a
# counter; a uuid4 per request would cost a system call.
_ID_PREFIX = os.urandom(8).hex()
_ID_COUNTER = itertools.count()


@dataclass
class Exchange:
    """One call through the gateway, for its usage record and metrics."""

    call: Call  # the access log's record: the request id, and when it started
    started_wall: float
    caller: Caller
    route: Route
    endpoint: Endpoint
    user_agent: str
    model: str = ""
    streaming: bool = False
    status: int = 0
    ttfb: float = 0.0
    usage: Usage | None = None
    span: Span | None = None  # with --otel-endpoint
    recording: Recording | None = None  # an intercepted call's: what the agent did
    user_name: str = ""  # the caller's user's, as of this request's snapshot
    admission: Admission | None = None  # counted by the limit counters: ended at the end

    @property
    def family(self) -> str:
        """The API the client speaks, for bridged's own errors."""
        return self.endpoint.dialect or self.route.family


class Forwarder:
    def __init__(
        self,
        state: LiveRouteTable,
        pools: UpstreamPools,
        keys: KeyHealth,
        reporter: UsageReporter,
        bodies: RequestBodies,
        tracing: Tracing | None = None,
        counters: Counters | None = None,
        credentials: CloudCredentials | None = None,
    ) -> None:
        self.state = state
        self.pools = pools
        self.keys = keys
        self.reporter = reporter
        self.bodies = bodies
        self.tracing = tracing
        self.counters: Counters = counters if counters is not None else LocalCounters()
        self.credentials = credentials if credentials is not None else CloudCredentials(10.0)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        metrics.IN_FLIGHT.inc()
        call = request[CALL] = Call(
            request.method, "/" + request.match_info["tail"], time.monotonic(),
            request_id=f"{_ID_PREFIX}{next(_ID_COUNTER):016x}",
        )  # fmt: skip
        try:
            response = await self._handle(request, call)
            if not response.prepared:  # a refusal: its id, for the access log's line
                response.headers["x-aibridge-request-id"] = call.request_id
            return response
        except BaseException as exc:
            # aiohttp writes no access line for a handler cancelled (its client left) or
            # broken after its answer began (the provider went silent or cut it short).
            if isinstance(exc, asyncio.CancelledError) or call.status:
                call.status = call.status or 499
                call.logged = True
                access.log_call(call)
            raise
        finally:
            metrics.IN_FLIGHT.dec()

    async def _handle(self, request: web.Request, call: Call) -> web.StreamResponse:
        started_wall = time.time()
        table = self.state.table  # read once: a reload never changes this request's view
        name = call.provider = request.match_info["provider"]
        path = call.route
        family = family_for_path(path)
        if table is None:
            return _refuse("", family, 503, "no_snapshot", "the gateway has no configuration yet")
        known = name if name in table.routes else ""
        caller = authenticate(request, table, api_key_first=family in CLOUD_TYPES)
        if caller is None:
            return _refuse(known, family, 401, "invalid_token", "missing, unknown or expired token")
        call.token = caller.name
        route = table.routes.get(name)
        if route is None:
            return _refuse("", family, 404, "unknown_provider", f"no provider named {name!r}")
        family = route.family
        if route.cloud and not path.startswith("/v1/messages"):
            family = route.type  # a client of the cloud's own API, or one lost there
        if not route.enabled:
            # 403, not 503: a client must not retry it (Claude Code retries a 503 for minutes).
            return _refuse(name, family, 403, "provider_disabled", f"provider {name!r} is disabled")
        endpoint = route.endpoint(request.method, path)
        if endpoint is None:
            return _refuse(
                name, family, 404, "route_not_allowed",
                f"{request.method} {path} is not available through the gateway",
            )  # fmt: skip
        try:
            held = await self.bodies.read(request)
        except BodyRefused as refusal:
            if refusal.limit:
                metrics.LIMIT_HITS.labels(refusal.limit).inc()
            retry = {"Retry-After": "1"} if refusal.status == 503 else None
            return _refuse(name, family, refusal.status, refusal.code, str(refusal), retry)
        call.bytes_in = len(held.body)
        exchange = Exchange(
            call=call,
            started_wall=started_wall,
            caller=caller,
            route=route,
            endpoint=endpoint,
            user_agent=request.headers.get("User-Agent", ""),
            user_name=table.governance.user_name(caller.user_id),
        )
        if endpoint.intercepted:
            exchange.recording = Recording(table.capture, endpoint.route)
            exchange.model, exchange.streaming = exchange.recording.read_request(
                request.headers, held.body
            )
            if endpoint.dialect:  # a cloud's path names the model, and whether it streams
                exchange.model, exchange.streaming = cloud_path(endpoint, path)
        try:
            if self.tracing is not None:
                exchange.span = _start_span(self.tracing, request, exchange)
            if table.governance.active:
                refused = await self._govern(table.governance, exchange)
                if refused is not None:
                    return refused
            return await self._exchange(request, exchange, path, held)
        except asyncio.CancelledError:
            if not exchange.status:  # the client left before the answer
                exchange.status = 499
                _failed(exchange, "the client went away before the provider answered")
            raise
        finally:
            held.release()
            if exchange.admission is not None:
                self._end(exchange)
            call.status = exchange.status
            try:
                self._record(exchange)
            except Exception:  # the answer matters more than its record
                log.exception("usage of request %s not recorded", call.request_id)
            if self.tracing is not None and exchange.span is not None:
                _end_span(self.tracing, exchange.span, exchange)

    async def _govern(self, governance: Governance, x: Exchange) -> web.Response | None:
        """The call's limit sets, in order: provider and model allowed, budget, counters
        (the last two only for the LLM calls, not the pass-through endpoints). A refusal,
        or None with the call admitted (x.admission: counted, to be ended)."""
        limits = governance.limits(x.caller)
        message = governance.provider_refusal(limits, x.route.name)
        if message is None and x.endpoint.intercepted:
            message = governance.model_refusal(limits, x.model)
        if message is not None:
            return self._refuse_call(x, 403, "model_not_allowed", message)
        if not x.endpoint.intercepted:
            return None
        message = governance.budget_refusal(limits)
        if message is not None:
            return self._refuse_call(x, 403, "budget_exceeded", message)
        if not limits.checks:
            return None
        admitted = await self.counters.admit(
            x.call.request_id, limits.checks, governance.redis_unavailable
        )
        if isinstance(admitted, Admission):
            x.admission = admitted
            return None
        return self._counted_out(x, admitted)

    def _counted_out(self, x: Exchange, r: Refusal) -> web.Response:
        if r.kind == UNAVAILABLE:
            return self._refuse_call(
                x, 503, "limits_unavailable", "the gateway cannot reach its limit counters",
                {"Retry-After": "1"},
            )  # fmt: skip
        if r.kind == CONCURRENT:
            return self._refuse_call(
                x, 429, "concurrency_limited",
                f"the concurrency limit of {r.scope} is reached: {r.limit} calls in flight",
                {"Retry-After": str(r.retry_after)},
            )  # fmt: skip
        per_minute = "requests" if r.kind == "requests" else "tokens"
        return self._refuse_call(
            x, 429, "rate_limited",
            f"the rate limit of {r.scope} is reached: {r.limit} {per_minute} per minute "
            f"(retry in {r.retry_after}s)",
            {
                "Retry-After": str(r.retry_after),
                f"x-ratelimit-limit-{r.kind}": str(r.limit),
                f"x-ratelimit-remaining-{r.kind}": str(r.remaining),
                f"x-ratelimit-reset-{r.kind}": reset_duration(r.reset),
            },
        )  # fmt: skip

    def _refuse_call(
        self, x: Exchange, status: int, code: str, message: str,
        headers: dict[str, str] | None = None,
    ) -> web.Response:  # fmt: skip
        metrics.REFUSALS.labels(code).inc()
        return self._fail(x, status, code, message, headers)

    def _end(self, x: Exchange) -> None:
        """Out of the concurrency sets, the call's tokens counted: once, whatever ended it."""
        assert x.admission is not None
        usage = x.usage
        tokens = usage.tpm_tokens(x.route.family) if usage is not None else 0
        try:
            self.counters.end(x.admission, tokens)
        except Exception:  # the call's record matters more
            log.exception("the end of request %s not counted", x.call.request_id)

    async def _exchange(
        self, request: web.Request, x: Exchange, path: str, held: HeldBody
    ) -> web.StreamResponse:
        route = x.route
        if not route.keys:
            return self._fail(x, 502, "no_keys", f"provider {route.name!r} has no keys")
        cloud: CloudCall | None = None
        if route.cloud:
            try:
                cloud = cloud_call(route, x.endpoint, path, held.body, request.headers, x.streaming)
            except BadCloudRequest as bad:
                return self._fail(x, 400, "invalid_request", str(bad))
            url, body = cloud.url, cloud.body
        else:
            url = route.upstream_url(path, request.rel_url.raw_query_string)
            body = held.body
        headers = upstream_request_headers(request.headers, x.endpoint.intercepted)
        if self.tracing is not None and x.span is not None:
            headers = self.tracing.with_trace_context(headers, x.span)
        if len(body) > SENT_WHOLE:  # sent in pieces, not chunked
            headers.append(("Content-Length", str(len(body))))
        tries = deque(self.keys.usable(route.keys))
        fresh_token_for: set[str] = set()  # keys tried again with a new Vertex token
        token_endpoint_down = False
        rate_limited = False
        forbidden: Kept | None = None  # a refusal of this request by a key, not the last
        async with self.pools.use(route.origin) as session:
            while tries:
                key = tries.popleft()
                if cloud is None:
                    auth = route.auth_headers(key.secret)
                else:
                    signed = await self._cloud_auth(route, key, request.method, url, body)
                    if isinstance(signed, _NoCredential):
                        token_endpoint_down |= signed.unreachable
                        continue
                    auth = signed
                try:
                    upstream = await session.request(
                        request.method, url, data=upstream_payload(body),
                        allow_redirects=False, headers=[*headers, *auth.items()],
                    )  # fmt: skip
                except TimeoutError:
                    return self._fail(
                        x, 504, "upstream_timeout", "the provider did not answer in time"
                    )
                except aiohttp.ClientError as exc:
                    log.warning("provider %s unreachable: %s", route.name, type(exc).__name__)
                    return self._fail(x, 502, "upstream_unreachable", "the provider is unreachable")
                async with upstream:
                    if upstream.status == 429:
                        self.keys.rate_limited(key, upstream.headers)
                        rate_limited = True
                        metrics.KEY_FAILOVERS.labels(route.name, "rate_limited").inc()
                        continue
                    unauthorized = upstream.status == 401 or (
                        cloud is not None and credential_refused(upstream.status, upstream.headers)
                    )
                    if (
                        unauthorized and cloud is not None and key.id not in fresh_token_for
                        and self.credentials.refused(key, auth)
                    ):  # fmt: skip
                        # A Vertex token refused before its time: once more with a new one.
                        fresh_token_for.add(key.id)
                        tries.appendleft(key)
                        continue
                    if unauthorized and x.endpoint.intercepted:
                        rest = self.keys.unauthorized(key)
                        log.warning(
                            "provider %s refused key %s (401); it rests %.0fs",
                            route.name, key.hint, rest,
                        )  # fmt: skip
                        metrics.KEY_FAILOVERS.labels(route.name, "unauthorized").inc()
                        continue
                    if not unauthorized:
                        self.keys.answered(key)
                    if upstream.status in (401, 403) and tries:
                        # About this request (its model; a pass-through a restricted key
                        # may not use): the next key may serve it, and this one keeps
                        # serving the others. The refusal is kept, for the client if no
                        # key serves it.
                        forbidden = await Kept.read(upstream)
                        metrics.KEY_FAILOVERS.labels(route.name, "forbidden").inc()
                        continue
                    held.release()  # answered: nothing will be replayed
                    if cloud is not None and (
                        cloud.count_tokens or (cloud.anthropic_errors and upstream.status >= 400)
                    ):
                        return await self._respond_in_anthropic_words(x, upstream, cloud)
                    return await self._respond(request, x, upstream, cloud)
        retry_after = self.keys.rate_limit_retry_after(route.keys)
        if rate_limited or retry_after is not None:
            return self._fail(
                x, 429, "all_keys_rate_limited", "every key of this provider is rate limited",
                {"Retry-After": str(retry_after or 1)},
            )  # fmt: skip
        if forbidden is not None:
            if cloud is not None and cloud.anthropic_errors:
                forbidden = forbidden.in_anthropic_words()
            x.status = forbidden.status
            if x.recording is not None:
                x.recording.refused(forbidden.status, forbidden.body)
            return forbidden.response(x.call.request_id)
        if token_endpoint_down:
            return self._fail(
                x, 502, "upstream_unreachable", "the provider's token endpoint is unreachable"
            )
        return self._fail(x, 502, "all_keys_refused", "the provider refused every key")

    async def _cloud_auth(
        self, route: Route, key: ProviderKey, method: str, url: URL, body: bytes | bytearray
    ) -> dict[str, str] | _NoCredential:
        """The signature or token that authorizes a cloud call with `key`, or why the
        key cannot have one now (the next key may)."""
        try:
            return await self.credentials.headers(route, key, method, url, body)
        except KeyRefused as refused:
            rest = self.keys.unauthorized(key)
            log.warning(
                "provider %s: no token for key %s (%s); it rests %.0fs",
                route.name, key.hint, refused, rest,
            )  # fmt: skip
            metrics.KEY_FAILOVERS.labels(route.name, "unauthorized").inc()
            return _NoCredential(unreachable=False)
        except TokenEndpointUnreachable as down:
            # Another key's service account may name another token_uri.
            log.warning(
                "provider %s: the token endpoint of key %s is unreachable (%s)",
                route.name, key.hint, down,
            )  # fmt: skip
            return _NoCredential(unreachable=True)

    async def _respond(
        self, request: web.Request, x: Exchange, upstream: aiohttp.ClientResponse,
        cloud: CloudCall | None = None,
    ) -> web.StreamResponse:  # fmt: skip
        x.status = upstream.status
        frames = upstream.content_type == eventstream.EVENT_STREAM  # Bedrock's stream
        # The client of the Anthropic API gets Bedrock's frames as SSE events.
        to_sse = None
        if frames and cloud is not None and cloud.frames_to_sse:
            to_sse = eventstream.EventStreamReader()
        event_stream = upstream.content_type == "text/event-stream" or to_sse is not None
        headers = CIMultiDict(
            (k, v) for k, v in upstream.headers.items() if k.lower() not in STRIPPED_RESPONSE
        )
        headers["x-aibridge-request-id"] = x.call.request_id
        if to_sse is not None:
            headers["Content-Type"] = "text/event-stream"
        if event_stream:
            headers["Cache-Control"] = "no-cache"
            headers["X-Accel-Buffering"] = "no"
        recorder: ResponseRecorder | eventstream.FramesRecorder | None = None
        if x.recording is not None:
            recorder = x.recording.responding(upstream.status, event_stream or frames)
            if frames and to_sse is None:  # the client reads the frames themselves
                recorder = eventstream.FramesRecorder(recorder)
        response = web.StreamResponse(status=upstream.status, headers=headers)
        if not event_stream and upstream.content_length is not None:
            # Kept, not re-chunked: the client learns the size, and aiohttp sends the head
            # together with the first bytes of a body that fits one read.
            response.content_length = upstream.content_length
        await response.prepare(request)
        try:
            async for chunk in upstream.content.iter_any():
                if not x.ttfb:
                    x.ttfb = time.monotonic() - x.call.started
                if to_sse is not None:
                    chunk = to_sse.feed(chunk)  # the events of the frames it completes
                if chunk:
                    await response.write(chunk)  # the client gets it before we look at it
                    x.call.bytes_out += len(chunk)
                    if recorder is not None:
                        recorder.feed(chunk)
                if to_sse is not None:
                    to_sse.check()  # after the events before a malformed frame
            if to_sse is not None:
                to_sse.finish()
        except TimeoutError:
            if _cut_short(x, recorder, 504, "the provider went silent mid-response"):
                log.warning("provider %s went silent mid-response", x.route.name)
                raise
            # Silent after the last event: the answer is whole, and the client gets its end.
        except (ConnectionResetError, aiohttp.ClientConnectionResetError, asyncio.CancelledError):
            # The client went away (aiohttp cancels its handler).
            _cut_short(x, recorder, 499, "the client went away mid-response")
            raise
        except aiohttp.ClientPayloadError:
            if _cut_short(x, recorder, 502, "the provider cut the response short"):
                log.warning("provider %s cut the response short", x.route.name)
                raise
        except eventstream.MalformedStream as bad:
            # The client gets an error event and the end of the stream: nothing hangs.
            log.warning("provider %s sent a malformed event stream: %s", x.route.name, bad)
            x.status = 502
            message = "the provider sent a malformed event stream"
            _failed(x, message, cut_short=True)
            event = eventstream.error_event("api_error", message)
            await response.write(event)
            if recorder is not None:
                recorder.feed(event)
        finally:
            if recorder is not None:
                x.usage = recorder.finish().usage
                x.model = x.usage.model or x.model
        await response.write_eof()
        return response

    async def _respond_in_anthropic_words(
        self, x: Exchange, upstream: aiohttp.ClientResponse, cloud: CloudCall
    ) -> web.Response:
        """A cloud's answer the Anthropic API words otherwise: its errors, and Bedrock's
        token count. Small: read whole. Its headers stay (Retry-After, request ids)."""
        answer = await Kept.read(upstream)
        if upstream.status >= 400:
            answer = answer.in_anthropic_words()
        elif cloud.count_tokens:
            answer = replace(answer, body=anthropic_token_count(answer.body))
        x.status = answer.status
        if x.recording is not None:
            x.recording.refused(answer.status, answer.body)
        return answer.response(x.call.request_id)

    def _fail(
        self, x: Exchange, status: int, code: str, message: str,
        headers: dict[str, str] | None = None,
    ) -> web.Response:  # fmt: skip
        x.status = status
        _failed(x, message)
        return error_response(x.family, status, code, message, headers)

    def _record(self, x: Exchange) -> None:
        duration = time.monotonic() - x.call.started
        route_name = x.endpoint.route or "passthrough"
        metrics.REQUESTS.labels(x.route.name, route_name, str(x.status)).inc()
        metrics.UPSTREAM_SECONDS.labels(x.route.name, route_name).observe(duration)
        if x.ttfb:
            metrics.TTFB_SECONDS.labels(x.route.name, route_name).observe(x.ttfb)
        if not x.endpoint.intercepted:
            return
        usage = x.usage or Usage()
        for kind, count in (
            ("input", usage.input_tokens), ("output", usage.output_tokens),
            ("cache_read", usage.cache_read_tokens), ("cache_write", usage.cache_write_tokens),
        ):  # fmt: skip
            if count:
                metrics.TOKENS.labels(x.route.name, kind).inc(count)
        started_at = Timestamp()
        started_at.FromNanoseconds(int(x.started_wall * 1e9))
        self.reporter.record(
            usage_pb2.Interception(
                request_id=x.call.request_id,
                started_at=started_at,
                token_id=x.caller.token_id,
                token_name=x.caller.name,
                user_id=x.caller.user_id,
                user_name=x.user_name,
                provider_id=x.route.id,
                provider_name=x.route.name,
                provider_type=x.route.type,
                model=storable(x.model[:200]),  # the upstream's answer may name it, whole
                route=x.endpoint.route,
                status=x.status,
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cache_read_tokens=usage.cache_read_tokens,
                cache_write_tokens=usage.cache_write_tokens,
                streaming=x.streaming,
                ttfb_ms=x.ttfb * 1000,
                duration_ms=duration * 1000,
                user_agent=storable(x.user_agent[:500]),
                **(x.recording.fields() if x.recording is not None else {}),
            )
        )


@dataclass(frozen=True)
class _NoCredential:
    """A key that cannot authorize a cloud call now."""

    unreachable: bool  # its token endpoint did not answer (else it refused the key)


@dataclass(frozen=True)
class Kept:
    """An upstream's refusal of one request, kept while the next key is tried."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes

    @classmethod
    async def read(cls, upstream: aiohttp.ClientResponse) -> Kept:
        headers = tuple(
            (k, v) for k, v in upstream.headers.items() if k.lower() not in STRIPPED_RESPONSE
        )
        return cls(upstream.status, headers, await _read_up_to(upstream, _KEPT_BODY_MAX))

    def in_anthropic_words(self) -> Kept:
        """A cloud's error as the Anthropic API's, for its clients."""
        headers = tuple((k, v) for k, v in self.headers if k.lower() != "content-type")
        headers += (("Content-Type", "application/json"),)
        return Kept(self.status, headers, anthropic_error(self.status, self.body))

    def response(self, request_id: str) -> web.Response:
        headers = CIMultiDict(self.headers)
        headers["x-aibridge-request-id"] = request_id
        return web.Response(status=self.status, body=self.body, headers=headers)


_KEPT_BODY_MAX = 64 * 1024  # an error message; more is not one


async def _read_up_to(upstream: aiohttp.ClientResponse, limit: int) -> bytes:
    """The answer's first `limit` bytes, or all of a shorter one (read(n) gives what has
    arrived, which may be less)."""
    body = bytearray()
    while len(body) < limit and (piece := await upstream.content.read(limit - len(body))):
        body += piece
    return bytes(body)


def authenticate(
    request: web.Request, table: RouteTable, api_key_first: bool = False
) -> Caller | None:
    """The gateway token from `Authorization: Bearer` or `x-api-key`, checked locally.
    On a cloud's paths x-api-key comes first: the clouds' SDKs put their own credential
    in Authorization (a SigV4 signature, a Google token), and the gateway's goes in a
    header of its own."""
    api_key = request.headers.get("x-api-key", "").strip()
    if api_key_first and api_key:
        return table.callers.verify(api_key)
    token = ""
    authorization = request.headers.get("Authorization", "")
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer":
        token = value.strip()
    token = token or api_key
    if not token:
        return None
    return table.callers.verify(token)


def reset_duration(seconds: int) -> str:
    """Seconds as OpenAI's x-ratelimit-reset-* headers write them: "12s", "1m0s"."""
    minutes, rest = divmod(max(0, seconds), 60)
    return f"{minutes}m{rest}s" if minutes else f"{rest}s"


def _cut_short(
    x: Exchange, recorder: ResponseRecorder | eventstream.FramesRecorder | None, status: int,
    message: str,
) -> bool:  # fmt: skip
    """Whether the answer was cut short, which fails the call with `status`: not once the
    stream's last event has passed. The client then has the whole answer (the openai SDK
    leaves at [DONE]; a provider may end its body late, or never), and the call succeeded."""
    if recorder is not None and recorder.ended:
        return False
    x.status = status
    _failed(x, message, cut_short=True)
    return True


def _failed(x: Exchange, message: str, cut_short: bool = False) -> None:
    """bridged failed the call itself (or saw it cut short): its record says why."""
    if x.recording is not None:
        x.recording.failed(message, cut_short)


def _start_span(tracing: Tracing, request: web.Request, x: Exchange) -> Span | None:
    try:
        return tracing.start(request, x)
    except Exception:  # a trace is worth less than the call: it goes on without one
        log.exception("request %s not traced", x.call.request_id)
        return None


def _end_span(tracing: Tracing, span: Span, x: Exchange) -> None:
    """After the usage record: a span that fails to end must not lose it."""
    r = x.recording
    stop = r.stop_reason if r is not None else ""
    try:
        tracing.end_span(
            span, x.status, x.usage, finish_reasons=(stop,) if stop else (),
            session_id=r.session_id if r is not None else "",
        )  # fmt: skip
    except Exception:
        log.exception("the span of request %s not ended", x.call.request_id)


def _refuse(
    provider: str, family: str, status: int, code: str, message: str,
    headers: dict[str, str] | None = None,
) -> web.Response:  # fmt: skip
    # `provider` is only a label when it names a provider: anonymous callers must not be
    # able to mint new time series.
    metrics.REQUESTS.labels(provider, "", str(status)).inc()
    return error_response(family, status, code, message, headers)
