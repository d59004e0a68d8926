"""CheckParser answers exactly as check_of does: same bucket, id and duration, same errors."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.buckets import SLOT_NS, ZoneBuckets, load_zone
from pipeline.errors import InvalidEvent
from pipeline.events import MAX_START_NS, MIN_START_NS
from services.checks import CheckParser, check_of

ZONE = load_zone("Europe/London")
# Its DST transitions fell mid-slot until 2011 (at 00:01 local, -3:30 / -2:30, so at :31
# UTC): the memo's 15-minute slots that straddle one must never be remembered.
ST_JOHNS = load_zone("America/St_Johns")
ST_JOHNS_2010_NS = (1_268_537_460 * 10**9,  # 2010-03-14 03:31 UTC: 00:00 -> 01:01 local
                    1_289_097_060 * 10**9)  # 2010-11-07 02:31 UTC: 00:00 -> 23:01 local
NOW_NS = 1_764_396_000_000_000_000

names = st.one_of(st.sampled_from(["checkout", "POST /pay", "a|b{c}", "", " ", "x\ny"]),
                  st.text(max_size=8), st.integers(), st.none(), st.lists(st.integers()))
starts = st.one_of(
    st.integers(MIN_START_NS - 2, MAX_START_NS + 2).map(str),
    st.integers(MIN_START_NS - 2, MAX_START_NS + 2),
    st.sampled_from(["²", "١٧٦٤٣٩٦٠٠٠٠٠٠٠٠٠٠٠٠", "0", "-1", " 1", "1e18", "9" * 25, True]),
    st.floats(allow_nan=True), st.none())
durations = st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                      st.integers(-2, 10**12), st.sampled_from([True, "5", None, 604800000]))
trace_ids = st.one_of(st.just(...), st.text(max_size=4), st.none(), st.integers())


def outcome(parse: Any, body: Any) -> tuple[Any, ...]:
    try:
        return ("ok", *parse(body))
    except InvalidEvent as e:
        return ("error", e.field, e.message)


def reference(body: Any) -> tuple[Any, ...]:
    def parse(b: Any) -> tuple[Any, ...]:
        ref, duration_ms = check_of(b, ZONE)
        return ref, ref.id, duration_ms
    return outcome(parse, body)


@settings(max_examples=500, deadline=None)
@given(service=names, endpoint=names, start=starts, duration=durations, trace_id=trace_ids)
def test_same_answers_and_errors_as_check_of(
    service: Any, endpoint: Any, start: Any, duration: Any, trace_id: Any
) -> None:
    body = {"rootServiceName": service, "rootTraceName": endpoint,
            "startTimeUnixNano": start, "durationMs": duration, "traceId": trace_id}
    body = {k: v for k, v in body.items() if v is not ...}
    parser = CheckParser(ZONE, ZoneBuckets(ZONE))
    want = reference(body)
    assert outcome(parser, body) == want  # first sight: through check_of
    assert outcome(parser, body) == want  # again: from the memo when it was accepted


def test_memo_serves_other_durations_and_starts_of_a_known_bucket() -> None:
    parser = CheckParser(ZONE, ZoneBuckets(ZONE))
    first = {"rootServiceName": "checkout", "rootTraceName": "POST /pay",
             "startTimeUnixNano": str(NOW_NS), "durationMs": 12}
    parser(first)
    for change in ({"durationMs": 7.5}, {"startTimeUnixNano": NOW_NS + 10**9},
                   {"startTimeUnixNano": str(NOW_NS + 4 * 3600 * 10**9)}):
        body = {**first, **change}
        assert outcome(parser, body) == reference(body)


def test_memo_starts_over_when_full() -> None:
    parser = CheckParser(ZONE, ZoneBuckets(ZONE), max_refs=2)
    for i in range(5):
        body = {"rootServiceName": f"s{i}", "rootTraceName": "GET /",
                "startTimeUnixNano": NOW_NS, "durationMs": 1}
        assert outcome(parser, body) == reference(body)
    assert len(parser._refs) <= 2


@pytest.mark.parametrize("start", ["²", "³⁴"])
def test_superscript_digits_are_a_400_not_a_500(start: str) -> None:
    body = {"rootServiceName": "s", "rootTraceName": "e", "startTimeUnixNano": start,
            "durationMs": 1}
    with pytest.raises(InvalidEvent) as e:
        CheckParser(ZONE, ZoneBuckets(ZONE))(body)
    assert e.value.field == "startTimeUnixNano"


def test_slots_straddling_an_offset_change_are_never_remembered() -> None:
    """One parser for every start, minute by minute across two St. John's transitions
    that fall inside a 15-minute slot, each start sent twice (the second from the memo
    when remembered): the bucket is check_of's every time."""
    parser = CheckParser(ST_JOHNS, ZoneBuckets(ST_JOHNS))
    for around in ST_JOHNS_2010_NS:
        for minute in range(-40, 40):
            start = around + minute * 60 * 10**9
            for body in ({"rootServiceName": "s", "rootTraceName": "e",
                          "startTimeUnixNano": str(start), "durationMs": 1},) * 2:
                want_ref, want_ms = check_of(body, ST_JOHNS)
                assert parser(body) == (want_ref, want_ref.id, want_ms), start
    slots = ZoneBuckets(ST_JOHNS)
    straddling = {around // SLOT_NS for around in ST_JOHNS_2010_NS}
    assert all(slots.of_slot(slot) is None for slot in straddling)  # the case under test
    remembered = {slot for _, _, slot in parser._refs}
    assert remembered and not remembered & straddling
