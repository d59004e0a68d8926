"""Pure Tempo knowledge: version features, the poll query, and search JSON → trace events.

Tempo serialises protobuf with jsonpb (see shared/fixtures/tempo/TEMPO_API.md §0):
64-bit integers arrive as strings, 32-bit ones as numbers, zero values are omitted,
trace IDs lose their leading zeros. Everything here is plain functions over decoded JSON,
tested without I/O; client.py does the HTTP.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipeline.errors import InvalidEvent
from pipeline.events import TraceEvent, normalize_trace_id

# pkg/search/util.go RootSpanNotYetReceivedText, unchanged since Tempo 1.x.
ROOT_NOT_RECEIVED = "<root span not yet received>"
# 3.x `query_end_cutoff` default: Tempo silently clamps `end` to now - 30 s.
V3_END_CUTOFF_S = 30.0
MOST_RECENT_HINT = "with (most_recent=true)"

_VERSION = re.compile(r"^v?(\d+)\.(\d+)(?:\.(\d+))?")
_ROOTS_ONLY = re.compile(r"nestedSetParent\s*(<\s*0|=\s*-1)\b")
_WITH_CLAUSE = re.compile(r"\bwith\s*\(")


@dataclass(frozen=True, slots=True)
class Features:
    """What the Tempo behind the URL understands, from /api/status/buildinfo."""

    version: str  # as reported; "unknown" when buildinfo was unavailable
    with_hint: bool  # `with (...)` query hints parse (2.4+); before, a 400
    most_recent: bool  # `most_recent=true` honoured (2.8+): newest `limit` traces
    nested_set: bool  # `nestedSetParent` intrinsic (2.5+)
    end_cutoff_s: float  # Tempo hides the newest seconds (3.x query_end_cutoff)

    @property
    def major(self) -> int | None:
        parsed = parse_version(self.version)
        return parsed[0] if parsed else None


def parse_version(text: str) -> tuple[int, int, int] | None:
    """'3.0.3', 'v2.8.2', '2.10.0-rc.1' → numbers; 'main-1a2b3c' or '' → None."""
    m = _VERSION.match(text.strip())
    if m is None:
        return None
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


def features_for(version: str | None) -> Features:
    """Feature gates by version. Unknown builds (main-…, gateways hiding buildinfo) are
    assumed current, with the 3.x cutoff: asking for less recent data is always safe,
    and an unsupported hint is detected from its 400 and dropped (see drop_hint)."""
    parsed = parse_version(version or "")
    if parsed is None:
        return Features(version or "unknown", True, True, True, V3_END_CUTOFF_S)
    v = parsed[:2]
    return Features(
        version=version or "unknown",
        with_hint=v >= (2, 4),
        most_recent=v >= (2, 8),
        nested_set=v >= (2, 5),
        end_cutoff_s=V3_END_CUTOFF_S if v >= (3, 0) else 0.0,
    )


def without_hint(features: Features) -> Features:
    """After a 400 blaming the `with` clause: never send a hint to this server again."""
    return Features(features.version, False, False, features.nested_set, features.end_cutoff_s)


def effective_query(query: str, features: Features) -> str:
    """The configured TraceQL adapted to the server: root-span filter needs 2.5 (else
    `{}` and the trace metadata), and `most_recent` is appended where it is honoured."""
    q = query.strip()
    if not features.nested_set and _ROOTS_ONLY.search(q):
        q = "{}"
    if features.with_hint and features.most_recent and not _WITH_CLAUSE.search(q):
        q = f"{q} {MOST_RECENT_HINT}"
    return q


def selects_roots(query: str) -> bool:
    """True when every matched span is a root span (`{ nestedSetParent < 0 ... }`)."""
    return bool(_ROOTS_ONLY.search(query)) and "||" not in query


def is_parse_error(body: str) -> bool:
    """A 400 from the TraceQL parser; when the query carried a hint, Tempo < 2.4 (whose
    parser lacks `with`) is the likely cause, so the hint is dropped and the query retried."""
    return "parse error" in body.lower()


def max_limit_from(body: str) -> int | None:
    """'limit 1000 exceeds max limit 500' (2.4+) → 500."""
    m = re.search(r"exceeds max limit (\d+)", body)
    return int(m.group(1)) if m else None


# ---------------------------------------------------------------------------------------
# Search response


@dataclass(frozen=True, slots=True)
class Span:
    name: str
    start_ns: int
    duration_ns: int
    nested_set_parent: int | None  # -1 on a root span, when Tempo returned it


@dataclass(frozen=True, slots=True)
class SearchTrace:
    trace_id: str  # normalised: 32 lowercase hex
    root_service: str  # "" when omitted
    root_name: str  # "" when omitted
    start_ns: int
    duration_ms: int  # trace duration, truncated; 0 when omitted (< 1 ms)
    spans: tuple[Span, ...]  # spans of the first spanset (spanSets[0] or legacy spanSet)


@dataclass(frozen=True, slots=True)
class SearchPage:
    traces: tuple[SearchTrace, ...]
    malformed: tuple[str, ...]  # one reason per trace entry that could not be read
    returned: int  # len(traces) as Tempo sent them: what to compare with `limit`


@dataclass(frozen=True, slots=True)
class Held:
    """A trace not published this time; later polls see it again."""

    reason: str  # root_not_received | no_endpoint | no_service


def as_int(value: Any, field: str) -> int:
    """jsonpb integers: numbers or numeric strings; absent means 0."""
    if value is None:
        return 0
    if isinstance(value, bool):
        raise TypeError(f"{field} is a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"-?\d{1,20}", value.strip()):
        return int(value)
    raise ValueError(f"{field} is not an integer: {str(value)[:40]!r}")


def _attr_int(attributes: Any, key: str) -> int | None:
    for kv in attributes or ():
        if isinstance(kv, dict) and kv.get("key") == key:
            value = kv.get("value") or {}
            return as_int(value.get("intValue", value.get("doubleValue")), key)
    return None


def _span(raw: dict[str, Any]) -> Span:
    return Span(
        name=str(raw.get("name") or ""),
        start_ns=as_int(raw.get("startTimeUnixNano"), "startTimeUnixNano"),
        duration_ns=as_int(raw.get("durationNanos"), "durationNanos"),
        nested_set_parent=_attr_int(raw.get("attributes"), "nestedSetParent"),
    )


def _first_spanset(raw: dict[str, Any]) -> list[dict[str, Any]]:
    sets = raw.get("spanSets")
    first = sets[0] if isinstance(sets, list) and sets else raw.get("spanSet")  # v2.0/2.1
    spans = first.get("spans") if isinstance(first, dict) else None
    return [s for s in spans or () if isinstance(s, dict)]


def parse_trace(raw: Any) -> SearchTrace:
    """One entry of `traces`; ValueError/TypeError (or InvalidEvent) name what is wrong."""
    if not isinstance(raw, dict):
        raise TypeError("trace entry is not an object")
    trace_id = raw.get("traceID")
    if not isinstance(trace_id, str):
        raise TypeError("traceID is missing")
    return SearchTrace(
        trace_id=normalize_trace_id(trace_id),
        root_service=str(raw.get("rootServiceName") or ""),
        root_name=str(raw.get("rootTraceName") or ""),
        start_ns=as_int(raw.get("startTimeUnixNano"), "startTimeUnixNano"),
        duration_ms=as_int(raw.get("durationMs"), "durationMs"),
        spans=tuple(_span(s) for s in _first_spanset(raw)),
    )


def parse_search(body: Any) -> SearchPage:
    """A decoded /api/search body. Bad entries are reported, never fatal for the rest."""
    if not isinstance(body, dict):
        raise TypeError("search response is not a JSON object")
    raw_traces = body.get("traces")
    raw_traces = [] if raw_traces is None else raw_traces  # omitted: nothing matched
    if not isinstance(raw_traces, list):
        raise TypeError("search response field 'traces' is not a list")
    traces: list[SearchTrace] = []
    malformed: list[str] = []
    for raw in raw_traces:
        try:
            traces.append(parse_trace(raw))
        except (ValueError, TypeError, InvalidEvent) as e:
            malformed.append(str(e))
    return SearchPage(tuple(traces), tuple(malformed), len(raw_traces))


def root_span(trace: SearchTrace, roots_only: bool) -> Span | None:
    """The root span among the returned ones: marked by nestedSetParent < 0, or any span
    when the query matches roots only. Several roots (broken parents): prefer the one
    named like the trace, then the one starting with it."""
    roots = [
        s for s in trace.spans
        if (s.nested_set_parent is not None and s.nested_set_parent < 0)
        or (roots_only and s.nested_set_parent is None)
    ]
    if not roots:
        return None
    picks: tuple[Callable[[Any], bool], ...] = (lambda s: s.name == trace.root_name,
                                                 lambda s: s.start_ns == trace.start_ns)
    for pick in picks:
        for span in roots:
            if pick(span) and span.duration_ns > 0:
                return span
    return roots[0] if roots[0].duration_ns > 0 else None


def to_event(trace: SearchTrace, roots_only: bool, source: str = "tempo") -> TraceEvent | Held:
    """service = rootServiceName, endpoint = rootTraceName (or the root span's name),
    start = trace start, duration = root span durationNanos (ns-precise) when the root
    span came back, else the truncated trace durationMs."""
    if trace.root_service == ROOT_NOT_RECEIVED:
        return Held("root_not_received")
    if not trace.root_service:
        return Held("no_service")
    root = root_span(trace, roots_only)
    endpoint = trace.root_name or (root.name if root else "")
    if not endpoint:
        return Held("no_endpoint")
    duration_ms = root.duration_ns / 1e6 if root else float(trace.duration_ms)
    return TraceEvent(
        trace.trace_id, trace.root_service, endpoint, trace.start_ns, duration_ms, source
    )
