"""Which spans become `<p>traces` entries, and the entry each one becomes.

`root` mode: the root span of each trace (no parent span ID) gives `trace_id`, `service`
(the resource's `service.name`), `endpoint` (the span name), `start_ns` and `duration_ms`
(end - start, exact to the nanosecond). `server` mode also takes every SERVER span whose
parent belongs to another service: the parent is in the same export under another
`service.name`, or OTLP's span flags say it is remote, or it is not in the export at all
(a SERVER span's caller is almost always another service's CLIENT span). Such an entry's
`trace_id` is the trace ID's first 16 hex digits followed by the span ID: unique per
span, so two calls of one endpoint in one trace both count, and the same for every
delivery of the span, so ingest's dedup still counts each call once.

Every entry goes through ingest's own parser (`pipeline.events.parse_parts`, its fast
path and, for anything unusual, the strict one): a span ingest would dead-letter is
rejected here with the field and reason instead, and counted.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from pipeline.errors import InvalidEvent
from pipeline.events import TraceEvent, parse_parts
from pipeline.otlp.decode import SPAN_KIND_SERVER, Decoded, Span

TRACE_ID_HEX = 32
SPAN_ID_HEX = 16
# OTLP Span.flags bits 8 and 9: whether the parent's remoteness is known, and whether it is.
FLAG_PARENT_KNOWN = 0x100
FLAG_PARENT_REMOTE = 0x200
NS_PER_MS = 1_000_000
_HEX = re.compile(r"[0-9a-f]+")  # decode lowercases IDs


@dataclass(slots=True)
class Mapped:
    events: list[TraceEvent] = field(default_factory=list)
    skipped: int = 0  # valid spans that are neither roots nor (server mode) entry spans
    rejected: Counter[str] = field(default_factory=Counter)  # reason (field) -> spans
    examples: dict[str, str] = field(default_factory=dict)  # reason -> its first message

    @property
    def rejected_spans(self) -> int:
        return sum(self.rejected.values())

    def message(self) -> str:
        """The partial-success message: each reason with its count and first message."""
        return "; ".join(f"{n} span(s) rejected, {self.examples.get(reason, reason)}"
                         for reason, n in self.rejected.most_common())


def map_spans(decoded: Decoded, mode: str, source: str) -> Mapped:
    """The trace events of one export, tagged `source`, and what was skipped or rejected."""
    out = Mapped(rejected=Counter(decoded.rejected), skipped=decoded.children)
    for reason in decoded.rejected:
        out.examples[reason] = f"{reason}: has the wrong JSON type"
    services = _services_by_span(decoded.spans) if mode == "server" else {}
    for span in decoded.spans:
        root = _is_root(span)
        if not root and not (mode == "server" and _entered_from_elsewhere(span, services)):
            out.skipped += 1
            continue
        try:
            out.events.append(to_event(span, root, source))
        except InvalidEvent as e:
            out.rejected[e.field] += 1
            out.examples.setdefault(e.field, str(e))
    return out


def to_event(span: Span, root: bool, source: str) -> TraceEvent:
    """The entry of a chosen span, validated as ingest validates; InvalidEvent says why not."""
    trace_id = _checked_id(span.trace_id, TRACE_ID_HEX, "trace_id")
    if not root:
        trace_id = trace_id[:SPAN_ID_HEX] + _checked_id(span.span_id, SPAN_ID_HEX, "span_id")
    if span.service is None:
        raise InvalidEvent("service", "the resource has no `service.name` attribute")
    if span.end_ns < span.start_ns:
        raise InvalidEvent("duration_ms", f"the span ends {span.start_ns - span.end_ns} ns "
                           "before it starts")
    fields = {b"trace_id": trace_id.encode(), b"service": span.service.encode(),
              b"endpoint": span.name.encode(), b"start_ns": str(span.start_ns).encode(),
              b"duration_ms": exact_ms(span.end_ns - span.start_ns).encode(),
              b"source": source.encode()}
    return TraceEvent(*parse_parts(fields))


def exact_ms(duration_ns: int) -> str:
    """Nanoseconds as a decimal string of milliseconds, exact: 1500000 → "1.5"."""
    whole, rest = divmod(duration_ns, NS_PER_MS)
    return f"{whole}.{rest:06d}".rstrip("0").rstrip(".") if rest else str(whole)


def _checked_id(value: str, length: int, name: str) -> str:
    if len(value) != length or value.strip("0") == "" or not _is_hex(value):
        raise InvalidEvent(name, f"must be {length} hex digits, not all zero, got {value[:40]!r}")
    return value


def _is_hex(value: str) -> bool:
    return _HEX.fullmatch(value) is not None


def _is_root(span: Span) -> bool:
    return span.parent_span_id.strip("0") == ""


def _services_by_span(spans: list[Span]) -> dict[tuple[str, str], str | None]:
    return {(s.trace_id, s.span_id): s.service for s in spans}


def _entered_from_elsewhere(span: Span, services: dict[tuple[str, str], str | None]) -> bool:
    """A SERVER span whose parent is another service's (see the module's docstring)."""
    if span.kind != SPAN_KIND_SERVER:
        return False
    key = (span.trace_id, span.parent_span_id)
    if key in services:
        return services[key] != span.service
    if span.flags & FLAG_PARENT_KNOWN:
        return bool(span.flags & FLAG_PARENT_REMOTE)
    return True
