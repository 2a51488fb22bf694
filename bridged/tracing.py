"""OpenTelemetry traces: a span per request the forwarder handles, sent over OTLP/HTTP.

Off unless --otel-endpoint names a collector; then the request path pays a None check.
On, a request's span continues the caller's W3C trace context (traceparent, tracestate),
and the upstream gets the span's context instead of the caller's, so that the provider's
own spans hang under ours. An intercepted call's span carries the GenAI semantic
conventions' attributes; a pass-through call's is a plain HTTP client span.

Ending a span only puts it in the SDK's bounded queue; a thread of the SDK's sends the
queue in batches. A collector that is slow or down costs requests nothing: its spans are
dropped (counted in aibridge_bridged_trace_spans_total), and the log says so once a
minute, not once a batch.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from aiohttp import web
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_INSTANCE_ID, SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as gen_ai
from opentelemetry.semconv.attributes import error_attributes, http_attributes, server_attributes
from opentelemetry.trace import Span, SpanKind, StatusCode, set_span_in_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from yarl import URL

from bridged import metrics
from bridged.usage import Usage

if TYPE_CHECKING:
    from bridged.forward import Exchange

log = logging.getLogger(__name__)

SERVICE = "aibridge-bridged"
EXPORT_TIMEOUT = 3.0  # seconds an export may take, retries included; then its spans drop
QUEUE_SIZE = 2048  # spans waiting for export; beyond, new ones are dropped
BATCH_SIZE = 512
EXPORT_INTERVAL_MS = 1000
LOG_INTERVAL = 60.0  # seconds between two lines of the SDK's about failed exports

# The OpenTelemetry names of our provider types (gen_ai.provider.name); the other
# OpenAI-compatible kinds have none and keep ours.
GEN_AI_PROVIDERS = {"azure-openai": "azure.ai.openai"}
TRACE_HEADERS = frozenset({"traceparent", "tracestate"})  # what the propagator writes

_PROPAGATOR = TraceContextTextMapPropagator()
# The SDK loggers that speak once per failed batch or dropped span.
_NOISY_LOGGERS = (
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.sdk._shared_internal",
)


class Tracing:
    """The tracer provider of one bridged: its spans, and their export."""

    def __init__(self, endpoint: str, instance_id: str) -> None:
        self._exporter = _CountedExporter(OTLPSpanExporter(endpoint, timeout=EXPORT_TIMEOUT))
        resource = Resource.create({SERVICE_NAME: SERVICE, SERVICE_INSTANCE_ID: instance_id})
        # Shut down by `close`, on bridged's own shutdown path.
        self._provider = TracerProvider(resource=resource, shutdown_on_exit=False)
        self._provider.add_span_processor(
            BatchSpanProcessor(
                self._exporter, max_queue_size=QUEUE_SIZE, max_export_batch_size=BATCH_SIZE,
                schedule_delay_millis=EXPORT_INTERVAL_MS,
            )
        )  # fmt: skip
        self._tracer = self._provider.get_tracer("bridged")
        for name in _NOISY_LOGGERS:
            logging.getLogger(name).addFilter(_OncePer(LOG_INTERVAL))
        log.info("tracing: a span per request to %s", endpoint)

    def start(self, request: web.Request, x: Exchange) -> Span:
        """The span of `x`, begun when the request was, under the caller's trace if any."""
        origin = URL(x.route.origin)
        attributes: dict[str, str | int] = {
            http_attributes.HTTP_REQUEST_METHOD: request.method,
            server_attributes.SERVER_ADDRESS: origin.host or "",
            server_attributes.SERVER_PORT: origin.port or 0,
            "aibridge.request_id": x.call.request_id,
            "aibridge.provider": x.route.name,
            "aibridge.token": x.caller.name,
        }
        name = request.method  # an HTTP client span's name, without a route template
        if x.endpoint.intercepted:
            name = f"chat {x.model}" if x.model else "chat"
            attributes[gen_ai.GEN_AI_OPERATION_NAME] = "chat"
            attributes[gen_ai.GEN_AI_PROVIDER_NAME] = GEN_AI_PROVIDERS.get(
                x.route.type, x.route.type
            )
            if x.model:
                attributes[gen_ai.GEN_AI_REQUEST_MODEL] = x.model
        return self._tracer.start_span(
            name, context=_PROPAGATOR.extract(request.headers), kind=SpanKind.CLIENT,
            attributes=attributes, start_time=int(x.started_wall * 1e9),
        )  # fmt: skip

    async def close(self) -> None:
        """Sends the spans still queued (the last requests'), unless the collector failed
        the last batch: a collector down must not hold the stop."""
        self._exporter.stopping = True
        await asyncio.to_thread(self._provider.shutdown)

    @staticmethod
    def with_trace_context(headers: Iterable[tuple[str, str]], span: Span) -> list[tuple[str, str]]:
        """The upstream's headers with the span's trace context in place of the caller's."""
        carrier: dict[str, str] = {}
        _PROPAGATOR.inject(carrier, set_span_in_context(span))
        kept = [(k, v) for k, v in headers if k.lower() not in TRACE_HEADERS]
        return kept + list(carrier.items())

    @staticmethod
    def end_span(
        span: Span, status: int, usage: Usage | None, finish_reasons: Sequence[str],
        session_id: str = "",
    ) -> None:  # fmt: skip
        """Ends `span` with what the answer said: `usage` for an intercepted call that was
        answered, None otherwise."""
        if span.is_recording():
            if status:
                span.set_attribute(http_attributes.HTTP_RESPONSE_STATUS_CODE, status)
            if usage is not None and usage.model:
                span.set_attribute(gen_ai.GEN_AI_RESPONSE_MODEL, usage.model)
            # An error's answer reports no usage: the span then says none, not zero.
            if usage is not None and (usage.input_tokens or usage.output_tokens):
                span.set_attribute(gen_ai.GEN_AI_USAGE_INPUT_TOKENS, usage.input_tokens)
                span.set_attribute(gen_ai.GEN_AI_USAGE_OUTPUT_TOKENS, usage.output_tokens)
            if finish_reasons:
                span.set_attribute(gen_ai.GEN_AI_RESPONSE_FINISH_REASONS, list(finish_reasons))
            if session_id:
                span.set_attribute(gen_ai.GEN_AI_CONVERSATION_ID, session_id)
            if not 0 < status < 400:  # 0: the request broke before it had a status
                span.set_attribute(error_attributes.ERROR_TYPE, str(status) if status else "_OTHER")
                span.set_status(StatusCode.ERROR)
        span.end()


class _CountedExporter(SpanExporter):
    """The OTLP exporter, counting the spans the collector took and those it failed."""

    def __init__(self, exporter: SpanExporter) -> None:
        self._exporter = exporter
        self._failing = False
        self.stopping = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self.stopping and self._failing:
            result = SpanExportResult.FAILURE  # no new wait on a collector that is down
        else:
            result = self._exporter.export(spans)
        self._failing = result is not SpanExportResult.SUCCESS
        metrics.TRACE_SPANS.labels("failed" if self._failing else "exported").inc(len(spans))
        return result

    def shutdown(self) -> None:
        self._exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._exporter.force_flush(timeout_millis)


class _OncePer(logging.Filter):
    """Lets a record through when none did for `interval` seconds."""

    def __init__(self, interval: float) -> None:
        super().__init__()
        self._interval = interval
        self._next = 0.0

    def filter(self, record: logging.LogRecord) -> bool:
        now = time.monotonic()
        if now < self._next:
            return False
        self._next = now + self._interval
        return True
