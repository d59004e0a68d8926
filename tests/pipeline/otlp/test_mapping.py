"""OTLP spans → trace events: the root span of each trace (and, in `server` mode, each
service's entry spans), exact durations, bad spans rejected alone with their reason."""

from __future__ import annotations

import orjson
import pytest

from pipeline.errors import InvalidEvent
from pipeline.events import TraceEvent, to_fields
from pipeline.otlp import decode_json, decode_proto, map_spans
from pipeline.otlp.mapping import exact_ms
from tests.pipeline.otlp.spans import CLIENT, INTERNAL, START_NS, as_json, export, span

T1, T2 = 0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x0AF7651916CD43DD8448EB211C80319C


def both(request: object) -> list[list[TraceEvent]]:
    """The events of `request` decoded from protobuf and from OTLP/JSON (they must agree)."""
    proto = map_spans(decode_proto(request.SerializeToString()), "root", "otlp")  # type: ignore[attr-defined]
    json = map_spans(decode_json(orjson.dumps(as_json(request))), "root", "otlp")  # type: ignore[arg-type]
    return [proto.events, json.events]


def test_the_root_span_of_each_trace_becomes_one_event() -> None:
    request = export(("checkout", [span(T1, 1, "POST /pay", 912_500_000),
                                   span(T1, 2, "SELECT", 10_000_000, parent=1, kind=CLIENT)]),
                     ("cart", [span(T2, 7, "GET /cart", 1_234_567)]))
    for events in both(request):
        assert events == [
            TraceEvent(f"{T1:032x}", "checkout", "POST /pay", START_NS, 912.5, "otlp"),
            TraceEvent(f"{T2:032x}", "cart", "GET /cart", START_NS, 1.234567, "otlp"),
        ]


def test_durations_are_exact_to_the_nanosecond() -> None:
    assert [exact_ms(n) for n in (0, 1, 1_500_000, 2_000_000, 123_456_789)] == \
        ["0", "0.000001", "1.5", "2", "123.456789"]
    request = export(("svc", [span(T1, 1, "GET /", 1)]))
    event = map_spans(decode_proto(request.SerializeToString()), "root", "otlp").events[0]
    assert to_fields(event)["duration_ms"] == "0.000001"


def test_bad_spans_are_rejected_with_a_reason_and_the_good_ones_kept() -> None:
    request = export(
        (None, [span(T1, 1, "GET /a", 5_000_000)]),  # no service.name
        ("svc", [span(T2, 2, "", 5_000_000),  # no name
                 span(0, 3, "GET /b", 5_000_000),  # all-zero trace ID
                 span(T2 + 1, 4, "GET /c", 5_000_000, start_ns=5),  # 1970
                 span(T2 + 2, 5, "GET /ok", 5_000_000),
                 span(T2 + 3, 6, "GET /d", -10)]),  # ends before it starts
    )
    mapped = map_spans(decode_proto(request.SerializeToString()), "root", "otlp")
    assert [e.endpoint for e in mapped.events] == ["GET /ok"]
    assert dict(mapped.rejected) == {"service": 1, "endpoint": 1, "trace_id": 1,
                                     "start_ns": 1, "duration_ms": 1}
    assert mapped.rejected_spans == 5
    message = mapped.message()
    assert "service: the resource has no `service.name`" in message
    assert "duration_ms: the span ends 10 ns before it starts" in message


def test_json_spans_of_the_wrong_type_are_rejected_alone() -> None:
    doc = as_json(export(("svc", [span(T1, 1, "GET /ok", 1_000_000),
                                  span(T2, 2, "GET /x", 1_000_000)])))
    doc["resourceSpans"][0]["scopeSpans"][0]["spans"][1]["startTimeUnixNano"] = "soon"
    doc["resourceSpans"][0]["scopeSpans"][0]["spans"].append("not a span")
    mapped = map_spans(decode_json(orjson.dumps(doc)), "root", "otlp")
    assert [e.endpoint for e in mapped.events] == ["GET /ok"]
    assert dict(mapped.rejected) == {"start_ns": 1, "span": 1}


def test_ids_must_be_plain_hex_of_the_right_length() -> None:
    doc = as_json(export(("svc", [span(T1, 1, "GET /a", 1_000_000),
                                  span(T2, 2, "GET /b", 1_000_000)])))
    spans = doc["resourceSpans"][0]["scopeSpans"][0]["spans"]
    spans[0]["traceId"] = "0x" + spans[0]["traceId"][2:]
    spans[1]["traceId"] = spans[1]["traceId"][:30]
    mapped = map_spans(decode_json(orjson.dumps(doc)), "root", "otlp")
    assert (mapped.events, dict(mapped.rejected)) == ([], {"trace_id": 2})


def test_json_accepts_numbers_and_enum_names() -> None:
    doc = as_json(export(("svc", [span(T1, 1, "GET /", 2_000_000)])))
    one = doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    one["startTimeUnixNano"] = START_NS
    one["endTimeUnixNano"] = START_NS + 2_000_000
    one["kind"] = "SPAN_KIND_SERVER"
    one["traceId"] = one["traceId"].upper()
    (event,) = map_spans(decode_json(orjson.dumps(doc)), "root", "otlp").events
    assert (event.trace_id, event.duration_ms) == (f"{T1:032x}", 2.0)


@pytest.mark.parametrize("body", [b"{", b"[]", b'{"resourceSpans": {}}',
                                  b'{"resourceSpans": [{"scopeSpans": 3}]}'])
def test_undecodable_json_bodies_raise(body: bytes) -> None:
    with pytest.raises(InvalidEvent) as e:
        decode_json(body)
    assert e.value.field == "body"


def test_undecodable_protobuf_raises() -> None:
    with pytest.raises(InvalidEvent, match="protobuf"):
        decode_proto(b"\xff\xff\xff")


def test_server_mode_adds_each_services_entry_spans_with_unique_ids() -> None:
    """A → B twice in one trace: B's endpoint counts twice, its internal span never; the
    IDs stay the same on every delivery (dedup) and differ between the two calls."""
    request = export(
        ("front", [span(T1, 1, "GET /page", 50_000_000),
                   span(T1, 2, "call", 10_000_000, parent=1, kind=CLIENT),
                   span(T1, 3, "call", 10_000_000, parent=1, kind=CLIENT)]),
        ("back", [span(T1, 4, "GET /item", 8_000_000, parent=2),
                  span(T1, 5, "GET /item", 9_000_000, parent=3),
                  span(T1, 6, "work", 1_000_000, parent=4, kind=INTERNAL),
                  span(T1, 7, "GET /self", 1_000_000, parent=4),  # parent: same service
                  span(T2, 8, "GET /remote", 1_000_000, parent=99),  # parent elsewhere
                  span(T2, 9, "GET /local", 1_000_000, parent=98, flags=0x100)]),  # known local
    )
    body = request.SerializeToString()
    mapped = map_spans(decode_proto(body), "server", "otlp")
    got = [(e.service, e.endpoint, e.trace_id) for e in mapped.events]
    tid = f"{T1:032x}"
    assert got == [("front", "GET /page", tid),
                   ("back", "GET /item", tid[:16] + f"{4:016x}"),
                   ("back", "GET /item", tid[:16] + f"{5:016x}"),
                   ("back", "GET /remote", f"{T2:032x}"[:16] + f"{8:016x}")]
    assert mapped.skipped == 5
    assert map_spans(decode_proto(body), "server", "otlp").events == mapped.events
    assert [e.endpoint for e in map_spans(decode_proto(body), "root", "otlp").events] == \
        ["GET /page"]


def test_roots_only_decoding_maps_exactly_as_full_decoding() -> None:
    """The `root` mode's shortcut (child spans counted, not built) changes nothing seen."""
    request = export(("front", [span(T1, 1, "GET /page", 50_000_000),
                                span(T1, 2, "call", 10_000_000, parent=1, kind=CLIENT)]),
                     (None, [span(T2, 3, "GET /x", 1_000_000),
                             span(T2, 4, "db", 1_000_000, parent=3, kind=CLIENT)]))
    proto, json = request.SerializeToString(), orjson.dumps(as_json(request))
    for decode, body in ((decode_proto, proto), (decode_json, json)):
        full, short = decode(body), decode(body, True)  # type: ignore[operator]
        assert (full.received, short.received, short.children) == (4, 4, 2)
        a, b = map_spans(full, "root", "otlp"), map_spans(short, "root", "otlp")
        assert (a.events, a.skipped, a.rejected) == (b.events, b.skipped, b.rejected)
