"""OTLP trace exports → `Span` records: protobuf (`opentelemetry-proto`) and OTLP/JSON.

Both encodings carry the same `ExportTraceServiceRequest` (the Collector's Kafka exporter
writes the same message as `TracesData`, whose fields match). OTLP/JSON differs from
protobuf's JSON mapping: trace and span IDs are hex, 64-bit integers may be strings, enum
values are integers (names are accepted too). A body that is not such a message raises
InvalidEvent("body", ...); a span whose fields have the wrong JSON type is rejected alone
(`Decoded.rejected`), nothing else of the export is lost.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from pipeline.errors import InvalidEvent

SERVICE_NAME = "service.name"
SPAN_KIND_SERVER = 2
_KIND_NAMES = {"SPAN_KIND_UNSPECIFIED": 0, "SPAN_KIND_INTERNAL": 1, "SPAN_KIND_SERVER": 2,
               "SPAN_KIND_CLIENT": 3, "SPAN_KIND_PRODUCER": 4, "SPAN_KIND_CONSUMER": 5}


@dataclass(frozen=True, slots=True)
class Span:
    """What the mapping reads of one span; IDs as lowercase hex ("" when absent)."""

    trace_id: str
    span_id: str
    parent_span_id: str
    service: str | None  # the resource's `service.name`
    name: str
    kind: int
    start_ns: int
    end_ns: int
    flags: int = 0  # W3C flags + OTLP's "parent is remote" bits (0x100 known, 0x200 remote)


@dataclass(slots=True)
class Decoded:
    spans: list[Span] = field(default_factory=list)
    rejected: Counter[str] = field(default_factory=Counter)  # reason -> spans
    # Child spans counted but not kept (`roots_only`): the `root` mapping never reads them.
    children: int = 0

    @property
    def received(self) -> int:
        return len(self.spans) + self.children + sum(self.rejected.values())


def decode_proto(body: bytes, roots_only: bool = False) -> Decoded:
    """An `ExportTraceServiceRequest` in protobuf; with `roots_only`, child spans are only
    counted (a third of the decoding time of a typical export goes to them otherwise)."""
    try:
        request = ExportTraceServiceRequest.FromString(body)
    except DecodeError as e:
        raise InvalidEvent("body", f"is not an OTLP ExportTraceServiceRequest in protobuf: {e}"
                           ) from e
    out = Decoded()
    add = out.spans.append
    for rs in request.resource_spans:
        service = None
        for kv in rs.resource.attributes:
            if kv.key == SERVICE_NAME and kv.value.HasField("string_value"):
                service = kv.value.string_value
        for ss in rs.scope_spans:
            for s in ss.spans:
                if roots_only and s.parent_span_id.strip(b"\0"):
                    out.children += 1
                    continue
                add(Span(s.trace_id.hex(), s.span_id.hex(), s.parent_span_id.hex(), service,
                         s.name, s.kind, s.start_time_unix_nano, s.end_time_unix_nano,
                         s.flags))
    return out


def decode_json(body: bytes, roots_only: bool = False) -> Decoded:
    """An `ExportTraceServiceRequest` in OTLP/JSON (`roots_only` as for protobuf)."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise InvalidEvent("body", f"is not JSON: {e}") from e
    if not isinstance(doc, dict):
        raise InvalidEvent("body", "must be a JSON object with `resourceSpans`")
    out = Decoded()
    for rs in _list(doc, "resourceSpans", "body"):
        service = _service(_obj(rs, "resource", "resourceSpans[]"))
        for ss in _list(rs, "scopeSpans", "resourceSpans[]"):
            for raw in _list(ss, "spans", "scopeSpans[]"):
                try:
                    one = _json_span(raw, service)
                except InvalidEvent as e:
                    out.rejected[e.field] += 1
                    continue
                if roots_only and one.parent_span_id.strip("0"):
                    out.children += 1
                else:
                    out.spans.append(one)
    return out


def _obj(parent: Any, name: str, where: str) -> dict[str, Any]:
    value = parent.get(name) if isinstance(parent, dict) else None
    if value is None:
        if not isinstance(parent, dict):
            raise InvalidEvent("body", f"{where} must be a JSON object")
        return {}
    if not isinstance(value, dict):
        raise InvalidEvent("body", f"{where}.{name} must be a JSON object")
    return value


def _list(parent: Any, name: str, where: str) -> list[Any]:
    if not isinstance(parent, dict):
        raise InvalidEvent("body", f"{where} must be a JSON object")
    value = parent.get(name)
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidEvent("body", f"{where}.{name} must be a JSON array")
    return value


def _service(resource: dict[str, Any]) -> str | None:
    attributes = resource.get("attributes")
    for kv in attributes if isinstance(attributes, list) else ():
        if isinstance(kv, dict) and kv.get("key") == SERVICE_NAME:
            value = kv.get("value")
            if isinstance(value, dict) and isinstance(value.get("stringValue"), str):
                return str(value["stringValue"])
    return None


def _json_span(raw: Any, service: str | None) -> Span:
    if not isinstance(raw, dict):
        raise InvalidEvent("span", "must be a JSON object")
    name = raw.get("name", "")
    if not isinstance(name, str):
        raise InvalidEvent("endpoint", "span name must be a string")
    return Span(_hex(raw, "traceId", "trace_id"), _hex(raw, "spanId", "span_id"),
                _hex(raw, "parentSpanId", "span_id"), service, name, _kind(raw.get("kind", 0)),
                _uint(raw, "startTimeUnixNano", "start_ns"),
                _uint(raw, "endTimeUnixNano", "duration_ms"), _uint(raw, "flags", "span"))


def _hex(raw: dict[str, Any], name: str, reason: str) -> str:
    value = raw.get(name, "")
    if not isinstance(value, str):
        raise InvalidEvent(reason, f"{name} must be a hex string")
    return value.lower()


def _uint(raw: dict[str, Any], name: str, reason: str) -> int:
    value = raw.get(name, 0)
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InvalidEvent(reason, f"{name} must be an integer or an integer string")
    try:
        number = int(value)
    except ValueError as e:
        raise InvalidEvent(reason, f"{name} must be an integer string") from e
    if number < 0:
        raise InvalidEvent(reason, f"{name} must not be negative")
    return number


def _kind(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        return _KIND_NAMES.get(value, 0)
    raise InvalidEvent("span", "kind must be an integer")
