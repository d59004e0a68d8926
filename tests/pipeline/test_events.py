"""The trace event contract: strict parsing, every rejection with a reason."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.errors import InvalidEvent
from pipeline.events import (
    TraceEvent,
    format_ms,
    parse_entry,
    parse_parts,
    parse_strict,
    to_fields,
)

SCHEMA = json.loads((Path(__file__).parents[2] / "schemas" / "trace_event.schema.json").read_text())
GOOD = {
    b"trace_id": b"2a6bee861db8a7dff9561ae4344c226",
    b"service": b"checkout",
    b"endpoint": b"POST /pay",
    b"start_ns": b"1764396000123456789",
    b"duration_ms": b"912.5",
}


def entry(**changes: bytes | None) -> dict[bytes, bytes]:
    out = dict(GOOD)
    for name, value in changes.items():
        if value is None:
            out.pop(name.encode(), None)
        else:
            out[name.encode()] = value
    return out


def test_a_good_entry_parses_and_pads_short_trace_ids() -> None:
    event = parse_entry(entry())
    assert event == TraceEvent("02a6bee861db8a7dff9561ae4344c226", "checkout", "POST /pay",
                               1764396000123456789, 912.5)
    assert parse_entry(entry(trace_id=b"D6E9329D67B6146A")).trace_id == "0" * 16 + "d6e9329d67b6146a"


def test_to_fields_round_trips_and_matches_the_schema() -> None:
    event = parse_entry(entry(source=b"tempo"))
    fields = to_fields(event)
    jsonschema.validate(fields, SCHEMA)
    assert parse_entry({k.encode(): v.encode() for k, v in fields.items()}) == event


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"trace_id": None}, "trace_id", "missing"),
        ({"trace_id": b"xyz"}, "trace_id", "hex"),
        ({"trace_id": b"a" * 33}, "trace_id", "hex"),
        ({"trace_id": b"abc\n"}, "trace_id", "hex"),  # $ alone would accept a final newline
        ({"start_ns": b"1764396000123456789\n"}, "start_ns", "integer"),
        ({"duration_ms": b"12.5\n"}, "duration_ms", "decimal"),
        ({"service": b""}, "service", "empty"),
        ({"service": b"   "}, "service", "empty"),
        ({"service": b"a" * 129}, "service", "limit is 128"),
        ({"endpoint": b"GET /a\nb"}, "endpoint", "control"),
        ({"endpoint": b"\xff\xfe"}, "endpoint", "UTF-8"),
        ({"endpoint": b"x" * 1_000_000}, "endpoint", "bytes"),
        ({"start_ns": b"-5"}, "start_ns", "integer"),
        ({"start_ns": b"1764396000"}, "start_ns", "between 2000 and 2100"),
        ({"start_ns": b"1.7e18"}, "start_ns", "integer"),
        ({"duration_ms": b"-1"}, "duration_ms", "decimal"),
        ({"duration_ms": b"NaN"}, "duration_ms", "decimal"),
        ({"duration_ms": b"inf"}, "duration_ms", "decimal"),
        ({"duration_ms": b"1e3"}, "duration_ms", "decimal"),
        ({"duration_ms": b"999999999999"}, "duration_ms", "limit"),
        ({"source": b""}, "source", "empty"),
    ],
)
def test_every_rejection_names_its_field(changes: dict, field: str, words: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        parse_entry(entry(**changes))
    assert info.value.field == field
    assert words in str(info.value)


def test_names_with_separators_are_fine() -> None:
    event = parse_entry(entry(service=b"a{b}|c:%", endpoint="GET /ü/{id}".encode()))
    assert (event.service, event.endpoint) == ("a{b}|c:%", "GET /ü/{id}")


def test_zero_duration_is_valid() -> None:
    assert parse_entry(entry(duration_ms=b"0")).duration_ms == 0.0


@pytest.mark.parametrize(("value", "text"), [(912.5, "912.5"), (300.0, "300"), (0.0, "0"),
                                             (0.001, "0.001"), (1e-9, "0")])
def test_format_ms(value: float, text: str) -> None:
    assert format_ms(value) == text


FIELD_VALUES = st.one_of(
    st.sampled_from([b"", b" ", b"0", b"12.5", b"12.5\n", b"1e3", b"-1", b"inf", b"\xff",
                     b"1764396000123456789", b"99999999999999999999", b"604800000.000000001",
                     b"abc\x00", b"A" * 33, b"2A6BEE861DB8A7DF", b"svc\n", "ü".encode() * 65]),
    st.binary(max_size=40),
    st.from_regex(rb"\A[0-9a-fA-F]{1,33}\Z"),
    st.from_regex(rb"\A[0-9]{1,21}(\.[0-9]{0,10})?\Z"),
)


@given(st.dictionaries(st.sampled_from([b"trace_id", b"service", b"endpoint", b"start_ns",
                                        b"duration_ms", b"source", b"extra"]), FIELD_VALUES))
@settings(max_examples=2000)
def test_the_fast_path_agrees_with_the_strict_parser(changes: dict[bytes, bytes]) -> None:
    fields = {**GOOD, **changes}
    try:
        expected: object = parse_strict(fields)
    except InvalidEvent as e:
        expected = (e.field, str(e))
    try:
        got: object = TraceEvent(*parse_parts(fields))
    except InvalidEvent as e:
        got = (e.field, str(e))
    assert got == expected
