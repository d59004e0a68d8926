"""Check request bodies: JSON in, (bucket, bucket id, duration) out, or InvalidEvent naming the field.

`check_of` is the definition. `CheckParser` answers the same for the requests most
clients send (the usual JSON types, an endpoint already seen in this 15-minute slot)
without re-running the name checks or rebuilding the bucket and its id, and hands
everything else to `check_of`, so answers and errors are identical
(tests/services/test_checks.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NotRequired, TypedDict
from zoneinfo import ZoneInfo

import orjson

from pipeline.buckets import (
    MAX_ENDPOINT_CHARS,
    MAX_SERVICE_CHARS,
    SLOT_NS,
    BucketRef,
    TimeBucket,
    ZoneBuckets,
    bucket_of,
)
from pipeline.errors import InvalidEvent
from pipeline.events import (
    MAX_DURATION_MS,
    MAX_START_NS,
    MIN_START_NS,
    check_duration_ms,
    check_name,
    check_start_ns,
)

# (service, endpoint, 15-minute slot)s remembered; past this the memo starts over. Checks
# arrive within minutes of their traces, so the live set is about one or two slots per
# endpoint: 50k holds a few thousand endpoints for hours, and a start over costs each
# endpoint one check_of.
MAX_REFS = 50_000
# The longest decimal string that can still be in range (unix ns before 2100: 19 digits).
MAX_START_DIGITS = 20


class CheckRequest(TypedDict):
    """`POST /v1/anomaly/check` (OpenAPI `CheckRequest`). What arrives is untrusted JSON,
    so the parsers take `dict[str, Any]` and check every field; clients build this."""

    rootServiceName: str
    rootTraceName: str
    startTimeUnixNano: str | int  # unix ns, as a decimal string (uint64 in OTLP JSON)
    durationMs: float
    traceId: NotRequired[str]


class CheckBatchRequest(TypedDict):
    """`POST /v1/anomaly/check:batch`: up to 1000 checks."""

    traces: list[CheckRequest]


def json_of(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise InvalidEvent("body", f"is not valid JSON: {e}") from e


def string_field(body: dict[str, Any], name: str, max_chars: int) -> str:
    value = body.get(name)
    if not isinstance(value, str):
        raise InvalidEvent(name, "is required and must be a string")
    try:
        return check_name(name, value, max_chars)
    except InvalidEvent as e:
        raise InvalidEvent(name, e.message) from e


def _start_ns(body: dict[str, Any]) -> int:
    value = body.get("startTimeUnixNano")
    # isdecimal, not isdigit: "²" is a digit that int() refuses (it was a 500).
    if isinstance(value, str) and value.isdecimal() and len(value) <= MAX_START_DIGITS:
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidEvent(
            "startTimeUnixNano", "is required: unix time in nanoseconds, as a string or integer"
        )
    try:
        return check_start_ns(value)
    except InvalidEvent as e:
        raise InvalidEvent("startTimeUnixNano", e.message) from e


def _duration_ms(body: dict[str, Any]) -> float:
    value = body.get("durationMs")
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise InvalidEvent("durationMs", "is required and must be a number (milliseconds)")
    try:
        return check_duration_ms(float(value))
    except (InvalidEvent, OverflowError) as e:
        raise InvalidEvent(
            "durationMs", f"must be a finite number between 0 and 604800000, got {value}"
        ) from e


def check_of(
    body: Any, zone: ZoneInfo, buckets: Callable[[int], TimeBucket] | None = None
) -> tuple[BucketRef, float]:
    """The bucket and duration of one check request, or InvalidEvent naming the field.

    `buckets` (a ZoneBuckets of `zone`) answers from its cache; the result is the same."""
    if not isinstance(body, dict):
        raise InvalidEvent("body", "must be a JSON object")
    service = string_field(body, "rootServiceName", MAX_SERVICE_CHARS)
    endpoint = string_field(body, "rootTraceName", MAX_ENDPOINT_CHARS)
    start_ns = _start_ns(body)
    duration_ms = _duration_ms(body)
    if not isinstance(body.get("traceId", ""), str):
        raise InvalidEvent("traceId", "must be a string when given")
    bucket = buckets(start_ns) if buckets is not None else bucket_of(start_ns, zone)
    return BucketRef(service, endpoint, bucket), duration_ms


class CheckParser:
    """`check_of` plus the bucket id, the usual request answered from a memo."""

    def __init__(self, zone: ZoneInfo, buckets: ZoneBuckets, max_refs: int = MAX_REFS) -> None:
        self.zone = zone
        self.buckets = buckets
        self._max = max_refs
        # (service, endpoint, 15-minute slot) -> (ref, id), for pairs check_of accepted in
        # a slot that lies in one bucket: a hit needs no name checks and no bucket work.
        self._refs: dict[tuple[str, str, int], tuple[BucketRef, str]] = {}

    def __call__(self, body: Any) -> tuple[BucketRef, str, float]:
        """The bucket, its id and the duration of one check request, or InvalidEvent.

        In one function (the API's hot path): a dict whose fields have their usual JSON
        types and ranges, for a (service, endpoint, slot) already remembered, is answered
        from the memo. That accepts a subset of what check_of accepts, with equal results;
        the rest goes through check_of. NaN fails both range comparisons; an int duration
        this small converts to float exactly as check_of's float() does."""
        if type(body) is dict:
            start = body.get("startTimeUnixNano")
            if type(start) is str and start.isdecimal() and len(start) <= MAX_START_DIGITS:
                start_ns = int(start)
            else:
                start_ns = start if type(start) is int else 0  # 0: out of range below
            duration = body.get("durationMs")
            service, endpoint = body.get("rootServiceName"), body.get("rootTraceName")
            if ((type(duration) is float or type(duration) is int)
                    and 0 <= duration <= MAX_DURATION_MS
                    and MIN_START_NS <= start_ns < MAX_START_NS
                    and type(service) is str and type(endpoint) is str  # hashable too
                    and type(body.get("traceId", "")) is str):
                known = self._refs.get((service, endpoint, start_ns // SLOT_NS))
                if known is not None:
                    return known[0], known[1], float(duration)
        ref, duration_ms = check_of(body, self.zone, self.buckets)
        return ref, self._remember(body, ref), duration_ms

    def _remember(self, body: dict[str, Any], ref: BucketRef) -> str:
        """`ref.id`, remembered for ref's slot when the slot lies in one bucket.

        Keyed by ref's names, which `__call__` looks up with the body's raw values: equal,
        because check_name accepts a name as it is or refuses it (never rewrites it)."""
        bucket_id = ref.id
        start = body["startTimeUnixNano"]  # check_of accepted it: an int or its digits
        slot = int(start) // SLOT_NS
        if self.buckets.of_slot(slot) is not None:
            if len(self._refs) >= self._max:
                self._refs.clear()
            self._refs[(ref.service, ref.endpoint, slot)] = (ref, bucket_id)
        return bucket_id
