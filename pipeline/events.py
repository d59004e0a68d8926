"""The trace event contract of the `<p>traces` stream, and its strict parser.

Entries are flat field/value pairs (schemas/trace_event.schema.json):
`trace_id` (1-32 hex), `service`, `endpoint`, `start_ns` (unix ns integer string),
`duration_ms` (decimal string, may be fractional), optional `source`. Every rejection
names the field and says what was wrong; the ingest stage dead-letters it with that text.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Final, NotRequired, TypedDict

from pipeline.buckets import MAX_ENDPOINT_CHARS, MAX_SERVICE_CHARS
from pipeline.errors import InvalidEvent

# Start times outside [2000-01-01, 2100-01-01) are clock bugs or unit mistakes (ms, us).
MIN_START_NS = 946_684_800 * 1_000_000_000
MAX_START_NS = 4_102_444_800 * 1_000_000_000
# A week: nothing a latency baseline should learn from lasts longer.
MAX_DURATION_MS = 7 * 24 * 3600 * 1000.0
MAX_SOURCE_CHARS = 64
MAX_FIELD_BYTES = 4096

_HEX = re.compile(r"^[0-9a-fA-F]{1,32}$")
_INT = re.compile(r"^[0-9]{1,20}$")
_DECIMAL = re.compile(r"^[0-9]{1,15}(\.[0-9]{1,9})?$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
REQUIRED = ("trace_id", "service", "endpoint", "start_ns", "duration_ms")
# The fast path's byte patterns accept a subset of what the checks below accept; anything
# else takes the strict path, which rejects it with a reason or accepts it the same way.
# One pattern for trace_id, start_ns and duration_ms joined by newlines (which none of
# them may contain): a third of the cost of three matches.
_FAST_B = re.compile(rb"[0-9a-fA-F]{1,32}\n[0-9]{1,20}\n[0-9]{1,15}(?:\.[0-9]{1,9})?")
# Distinct names remembered as valid. Names repeat across nearly every event, and the
# endpoint cap keeps them few; a flood of distinct ones only costs cache misses.
NAME_CACHE_SIZE = 8192
# UTF-8 spends at most 4 bytes per character: a longer raw name is over its limit anyway,
# which also keeps the cache's keys small.
MAX_UTF8_BYTES_PER_CHAR = 4

# (trace_id, service, endpoint, start_ns, duration_ms, source): TraceEvent's fields, as a
# plain tuple read through the index names below. Ingest builds one per event, and a
# NamedTuple cost ~0.7 us more per event to build (timeit here), a few % of ingest.
EventParts = tuple[str, str, str, int, float, str]
TRACE_ID: Final = 0
SERVICE: Final = 1
ENDPOINT: Final = 2
START_NS: Final = 3
DURATION_MS: Final = 4
SOURCE: Final = 5


@dataclass(frozen=True, slots=True)
class TraceEvent:
    trace_id: str  # 32 lowercase hex characters, left-padded
    service: str
    endpoint: str
    start_ns: int
    duration_ms: float
    source: str = ""


def normalize_trace_id(value: str) -> str:
    """Tempo strips leading zeros (16/31-char IDs): pad to 32 lowercase hex."""
    if not _HEX.fullmatch(value):
        raise InvalidEvent("trace_id", f"must be 1-32 hex characters, got {value[:40]!r}")
    return value.lower().rjust(32, "0")


def check_name(field: str, value: str, max_chars: int) -> str:
    if not value or not value.strip():
        raise InvalidEvent(field, "must not be empty")
    if len(value) > max_chars:
        raise InvalidEvent(field, f"is {len(value)} characters, the limit is {max_chars}")
    if _CONTROL.search(value):
        raise InvalidEvent(field, "must not contain control characters (newline, tab, NUL...)")
    return value


def check_start_ns(value: int) -> int:
    if not MIN_START_NS <= value < MAX_START_NS:
        raise InvalidEvent(
            "start_ns", f"{value} is not a unix time in nanoseconds between 2000 and 2100"
        )
    return value


def check_duration_ms(value: float) -> float:
    if not math.isfinite(value) or value < 0:
        raise InvalidEvent("duration_ms", f"must be a finite number >= 0, got {value}")
    if value > MAX_DURATION_MS:
        raise InvalidEvent("duration_ms", f"{value} exceeds the limit of {MAX_DURATION_MS:.0f} ms")
    return value


def _text(fields: dict[bytes, bytes], name: str) -> str:
    raw = fields.get(name.encode())
    if raw is None:
        raise InvalidEvent(name, "is missing")
    if len(raw) > MAX_FIELD_BYTES:
        raise InvalidEvent(name, f"is {len(raw)} bytes, the limit is {MAX_FIELD_BYTES}")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InvalidEvent(name, "is not valid UTF-8") from e


def parse_entry(fields: dict[bytes, bytes]) -> TraceEvent:
    """Validate one raw stream entry; raises InvalidEvent naming the first bad field."""
    return TraceEvent(*parse_parts(fields))


def parse_parts(fields: dict[bytes, bytes]) -> EventParts:
    """`parse_entry` as a plain tuple, without an object per event (the ingest hot path).

    Well-formed entries are validated on bytes, with each distinct name checked once;
    anything the fast path does not accept goes through `parse_strict`.
    """
    get = fields.get
    trace_id, start, dur = get(b"trace_id"), get(b"start_ns"), get(b"duration_ms")
    if (trace_id is not None and start is not None and dur is not None
            and _FAST_B.fullmatch(b"\n".join((trace_id, start, dur)))):
        service = _valid_name(get(b"service"), MAX_SERVICE_CHARS)
        endpoint = _valid_name(get(b"endpoint"), MAX_ENDPOINT_CHARS)
        raw_source = get(b"source")
        source = "" if raw_source is None else _valid_name(raw_source, MAX_SOURCE_CHARS)
        start_ns, duration_ms = int(start), float(dur)  # the patterns make both exact
        if (service is not None and endpoint is not None and source is not None
                and MIN_START_NS <= start_ns < MAX_START_NS and duration_ms <= MAX_DURATION_MS):
            return (trace_id.decode("ascii").lower().rjust(32, "0"), service, endpoint,
                    start_ns, duration_ms, source)
    e = parse_strict(fields)
    return (e.trace_id, e.service, e.endpoint, e.start_ns, e.duration_ms, e.source)


def _valid_name(raw: bytes | None, max_chars: int) -> str | None:
    """The decoded name if `check_name` accepts it, else None (the strict path says why)."""
    if raw is None or len(raw) > max_chars * MAX_UTF8_BYTES_PER_CHAR:
        return None
    return _checked_name(raw, max_chars)


@lru_cache(maxsize=NAME_CACHE_SIZE)
def _checked_name(raw: bytes, max_chars: int) -> str | None:
    try:
        return check_name("name", raw.decode("utf-8"), max_chars)
    except (UnicodeDecodeError, InvalidEvent):
        return None


def parse_strict(fields: dict[bytes, bytes]) -> TraceEvent:
    """Validate field by field in contract order; the first bad field raises InvalidEvent."""
    trace_id = normalize_trace_id(_text(fields, "trace_id"))
    service = check_name("service", _text(fields, "service"), MAX_SERVICE_CHARS)
    endpoint = check_name("endpoint", _text(fields, "endpoint"), MAX_ENDPOINT_CHARS)
    start_raw = _text(fields, "start_ns")
    if not _INT.fullmatch(start_raw):
        raise InvalidEvent("start_ns", f"must be an integer string, got {start_raw[:40]!r}")
    start_ns = check_start_ns(int(start_raw))
    dur_raw = _text(fields, "duration_ms")
    if not _DECIMAL.fullmatch(dur_raw):
        raise InvalidEvent(
            "duration_ms", f"must be a non-negative decimal string, got {dur_raw[:40]!r}"
        )
    duration_ms = check_duration_ms(float(dur_raw))
    source = ""
    if b"source" in fields:
        source = check_name("source", _text(fields, "source"), MAX_SOURCE_CHARS)
    return TraceEvent(trace_id, service, endpoint, start_ns, duration_ms, source)


class TraceEntry(TypedDict):
    """A `<p>traces` entry: what any producer XADDs (schemas/trace_event.schema.json)."""

    trace_id: str
    service: str
    endpoint: str
    start_ns: str
    duration_ms: str
    source: NotRequired[str]


def to_fields(event: TraceEvent) -> TraceEntry:
    """The stream entry for an event (what producers XADD)."""
    fields: TraceEntry = {
        "trace_id": event.trace_id,
        "service": event.service,
        "endpoint": event.endpoint,
        "start_ns": str(event.start_ns),
        "duration_ms": format_ms(event.duration_ms),
    }
    if event.source:
        fields["source"] = event.source
    return fields


def format_ms(value: float) -> str:
    """Decimal string without exponent or trailing zeros: 12.5, 300, 0.001."""
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return text or "0"
