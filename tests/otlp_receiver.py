"""An OpenTelemetry collector for tests: an OTLP/HTTP receiver on 127.0.0.1 whose spans a
test reads, decoded from the ExportTraceServiceRequest (protobuf) of each export.

The server is a MockUpstream: it keeps every request it is sent, and answers 200 to a
path it does not serve, as a collector answers an export it took (the exporter reads no
more than the status)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from mockupstream import MockUpstream

SPAN_KINDS = {value: name.removeprefix("SPAN_KIND_") for name, value in Span.SpanKind.items()}


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as the collector got it: ids in hex, attributes as Python values."""

    trace_id: str
    span_id: str
    parent_span_id: str  # "" for a trace's root
    name: str
    kind: str  # "CLIENT", "SERVER", ...
    attributes: dict[str, Any]
    error: bool  # its status is ERROR
    resource: dict[str, Any]


@dataclass
class OTLPReceiver:
    server: MockUpstream = field(default_factory=lambda: MockUpstream("collector"))

    @property
    def url(self) -> str:
        """The collector's base URL, as an operator would give it."""
        return self.server.url

    def start(self) -> OTLPReceiver:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    @property
    def paths(self) -> set[str]:
        """Where the exports were sent."""
        return {seen.path for seen in list(self.server.seen)}

    @property
    def spans(self) -> list[ReceivedSpan]:
        spans: list[ReceivedSpan] = []
        for seen in list(self.server.seen):  # a copy: the server's thread appends
            assert seen.method == "POST", seen
            assert seen.headers["content-type"] == "application/x-protobuf", seen.headers
            export = ExportTraceServiceRequest.FromString(seen.body)
            for resource_spans in export.resource_spans:
                resource = _attributes(resource_spans.resource.attributes)
                for scope_spans in resource_spans.scope_spans:
                    spans.extend(_received(span, resource) for span in scope_spans.spans)
        return spans


def _received(span: Span, resource: dict[str, Any]) -> ReceivedSpan:
    return ReceivedSpan(
        trace_id=span.trace_id.hex(),
        span_id=span.span_id.hex(),
        parent_span_id=span.parent_span_id.hex(),
        name=span.name,
        kind=SPAN_KINDS[span.kind],
        attributes=_attributes(span.attributes),
        error=span.status.code == Status.STATUS_CODE_ERROR,
        resource=resource,
    )


def _attributes(pairs: Iterable[KeyValue]) -> dict[str, Any]:
    return {pair.key: _value(pair.value) for pair in pairs}


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    return getattr(value, kind) if kind else None
