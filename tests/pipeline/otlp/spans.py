"""Building OTLP exports for the tests: protobuf messages and their OTLP/JSON twins."""

from __future__ import annotations

from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

START_NS = 1_764_396_000_123_456_789
SERVER = Span.SpanKind.SPAN_KIND_SERVER
CLIENT = Span.SpanKind.SPAN_KIND_CLIENT
INTERNAL = Span.SpanKind.SPAN_KIND_INTERNAL


def span(trace: int, span_id: int, name: str, duration_ns: int, parent: int = 0,
         kind: int = SERVER, start_ns: int = START_NS, flags: int = 0) -> Span:
    return Span(trace_id=trace.to_bytes(16, "big"), span_id=span_id.to_bytes(8, "big"),
                parent_span_id=parent.to_bytes(8, "big") if parent else b"", name=name,
                kind=kind,  # type: ignore[arg-type]
                start_time_unix_nano=start_ns, end_time_unix_nano=start_ns + duration_ns,
                flags=flags)


def export(*services: tuple[str | None, list[Span]]) -> ExportTraceServiceRequest:
    """One ResourceSpans per (service.name, spans); None: a resource without the name."""
    out = ExportTraceServiceRequest()
    for service, spans in services:
        attributes = [] if service is None else [
            KeyValue(key="service.name", value=AnyValue(string_value=service))]
        out.resource_spans.append(ResourceSpans(
            resource=Resource(attributes=attributes), scope_spans=[ScopeSpans(spans=spans)]))
    return out


def as_json(request: ExportTraceServiceRequest) -> dict[str, Any]:
    """OTLP/JSON of `request`: camelCase, hex IDs, 64-bit integers as strings."""
    resource_spans = []
    for rs in request.resource_spans:
        attributes = [{"key": kv.key, "value": {"stringValue": kv.value.string_value}}
                      for kv in rs.resource.attributes]
        spans = [{"traceId": s.trace_id.hex(), "spanId": s.span_id.hex(),
                  "parentSpanId": s.parent_span_id.hex(), "name": s.name, "kind": s.kind,
                  "startTimeUnixNano": str(s.start_time_unix_nano),
                  "endTimeUnixNano": str(s.end_time_unix_nano), "flags": s.flags}
                 for ss in rs.scope_spans for s in ss.spans]
        resource_spans.append({"resource": {"attributes": attributes},
                               "scopeSpans": [{"scope": {"name": "t"}, "spans": spans}]})
    return {"resourceSpans": resource_spans}
