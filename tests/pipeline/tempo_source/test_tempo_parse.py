"""Pure parts of the Tempo source: real response samples, versions, queries, windows."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from pipeline.errors import ConfigError
from pipeline.events import TraceEvent
from pipeline.tempo_source.backfill import BackfillSummary, _Progress, parse_since
from pipeline.tempo_source.client import TempoClient, _hint, check_url
from pipeline.tempo_source.harvest import RecentIds, Window, chunks
from pipeline.tempo_source.parse import (
    Held,
    as_int,
    effective_query,
    features_for,
    is_parse_error,
    max_limit_from,
    parse_search,
    parse_version,
    selects_roots,
    to_event,
    without_hint,
)
from pipeline.tempo_source.settings import TempoSettings
from pipeline.tempo_source.stage import plan_poll, validate_tempo

# Real Tempo responses, copied with their provenance (fixtures/README.md).
FIXTURES = Path(__file__).resolve().parent / "fixtures"
ROOTS = "{ nestedSetParent < 0 }"


def load(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def test_single_span_fixture_uses_the_root_span_duration() -> None:
    page = parse_search(load("search_traceql_single_span.json"))
    assert page.returned == 1 and not page.malformed
    event = to_event(page.traces[0], roots_only=True)
    assert event == TraceEvent("5b8efff798038103d269b633813fc700", "my.service", "I am a span!",
                               1694718625557000000, 10000.0, "tempo")


def test_non_root_span_falls_back_to_trace_duration_ms() -> None:
    # { status=error } matched a child span: its 447 ms is not the request's latency.
    page = parse_search(load("search_traceql_status_error.json"))
    event = to_event(page.traces[0], roots_only=selects_roots("{ status = error }"))
    assert isinstance(event, TraceEvent) and event.duration_ms == 557.0
    assert event.endpoint == "update-billing"


def test_tag_search_fixture_pads_64_bit_ids_and_has_no_spansets() -> None:
    page = parse_search(load("search_tags_minduration.json"))
    ids = [t.trace_id for t in page.traces]
    assert ids == ["0000000000000000d6e9329d67b6146a", "00000000000000001b1ba462b409200d"]
    assert all(t.spans == () for t in page.traces)
    assert [to_event(t, True).duration_ms for t in page.traces] == [611.0, 611.0]


def test_grafana_captured_fixture_tolerates_numbers_and_31_char_ids() -> None:
    page = parse_search(load("search_select_nestedset_spss.json"))
    assert page.returned == 10 and not page.malformed
    assert all(len(t.trace_id) == 32 and t.trace_id == t.trace_id.lower() for t in page.traces)
    assert page.traces[0].trace_id == "02a6bee861db8a7dff9561ae4344c226"
    # Its spans are children (nestedSetParent 18), so durationMs is used, not a child's.
    event = to_event(page.traces[0], roots_only=False)
    assert isinstance(event, TraceEvent) and event.duration_ms == 71.0


@pytest.mark.parametrize("raw,value", [("1684778327699392724", 1684778327699392724),
                                       (1684778327699392724, 1684778327699392724),
                                       (None, 0), (12.0, 12), (" 7 ", 7), ("-1", -1)])
def test_integers_as_strings_or_numbers_absent_is_zero(raw: object, value: int) -> None:
    assert as_int(raw, "f") == value


@pytest.mark.parametrize("raw", ["12a", 1.5, True, "", [1]])
def test_non_integers_are_rejected(raw: object) -> None:
    with pytest.raises((ValueError, TypeError)):
        as_int(raw, "f")


def _trace(**over: object) -> dict:
    raw = {"traceID": "abc", "rootServiceName": "api", "rootTraceName": "GET /x",
           "startTimeUnixNano": "1700000000000000000",
           "spanSets": [{"spans": [{"spanID": "1", "startTimeUnixNano": "1700000000000000000",
                                    "durationNanos": "1500",
                                    "attributes": [{"key": "nestedSetParent",
                                                    "value": {"intValue": "-1"}}]}],
                         "matched": 1}]}
    raw.update(over)
    return raw


def test_sub_millisecond_trace_keeps_its_precise_root_duration() -> None:
    page = parse_search({"traces": [_trace()]})  # durationMs omitted: 0
    event = to_event(page.traces[0], roots_only=False)  # marked by nestedSetParent -1
    assert isinstance(event, TraceEvent) and event.duration_ms == 0.0015
    assert event.trace_id == "0" * 29 + "abc"


def test_sentinel_and_missing_names_are_held_back() -> None:
    page = parse_search({"traces": [
        _trace(rootServiceName="<root span not yet received>", rootTraceName=None),
        _trace(rootServiceName=None), _trace(rootTraceName=None, spanSets=[]),
    ]})
    assert [to_event(t, True) for t in page.traces] == [
        Held("root_not_received"), Held("no_service"), Held("no_endpoint")]


def test_root_span_name_stands_in_for_a_missing_root_trace_name() -> None:
    raw = _trace(rootTraceName=None)
    raw["spanSets"][0]["spans"][0]["name"] = "POST /pay"
    event = to_event(parse_search({"traces": [raw]}).traces[0], True)
    assert isinstance(event, TraceEvent) and event.endpoint == "POST /pay"


def test_legacy_spanset_only_and_bad_entries_do_not_sink_the_page() -> None:
    legacy = _trace()
    legacy["spanSet"] = legacy.pop("spanSets")[0]
    page = parse_search({"traces": [legacy, {"traceID": "xyz!"}, "junk",
                                    _trace(startTimeUnixNano="soon")]})
    assert page.returned == 4 and len(page.traces) == 1 and len(page.malformed) == 3
    assert to_event(page.traces[0], True).duration_ms == 0.0015  # type: ignore[union-attr]


def test_several_orphan_roots_prefer_the_one_named_like_the_trace() -> None:
    raw = _trace()
    spans = raw["spanSets"][0]["spans"]
    spans.insert(0, {**spans[0], "name": "orphan", "durationNanos": "9000000"})
    spans[1]["name"] = "GET /x"
    event = to_event(parse_search({"traces": [raw]}).traces[0], True)
    assert isinstance(event, TraceEvent) and event.duration_ms == 0.0015


def test_unreadable_bodies_raise() -> None:
    for body in ([], {"traces": {}}):
        with pytest.raises(TypeError):
            parse_search(body)
    assert parse_search({}).returned == 0  # `traces` omitted = none


@pytest.mark.parametrize("version,hint,recent,nested,cutoff", [
    ("2.1.0", False, False, False, 0.0), ("v2.4.1", True, False, False, 0.0),
    ("2.6.0", True, False, True, 0.0), ("2.8.2", True, True, True, 0.0),
    ("2.10.0-rc.1", True, True, True, 0.0), ("3.0.3", True, True, True, 30.0),
    ("main-1a2b3c4", True, True, True, 30.0), (None, True, True, True, 30.0),
])
def test_features_by_version(
    version: str | None, hint: bool, recent: bool, nested: bool, cutoff: float,
) -> None:
    f = features_for(version)
    got = (f.with_hint, f.most_recent, f.nested_set, f.end_cutoff_s)
    assert got == (hint, recent, nested, cutoff)


def test_query_adapts_to_the_server() -> None:
    assert effective_query(ROOTS, features_for("3.0.3")) == f"{ROOTS} with (most_recent=true)"
    assert effective_query(ROOTS, features_for("2.6.0")) == ROOTS
    assert effective_query(ROOTS, features_for("2.1.0")) == "{}"
    own = "{ } with (most_recent=false)"
    assert effective_query(own, features_for("3.0.3")) == own
    assert effective_query(ROOTS, without_hint(features_for(None))) == ROOTS
    assert parse_version("garbage") is None
    assert selects_roots("{ nestedSetParent = -1 && resource.service.name = \"a\" }")
    assert not selects_roots("{ nestedSetParent < 0 || status = error }")


def test_rejection_bodies() -> None:
    assert max_limit_from("limit 1000 exceeds max limit 500") == 500
    assert max_limit_from("invalid limit: must be a positive number") is None
    assert is_parse_error("invalid TraceQL query: parse error at line 1, col 27: syntax error")
    assert "TLA_TEMPO_TENANT" in _hint(401, "no org id")
    assert "TLA_TEMPO_TENANT" in _hint(400, "no org id")
    assert "traces:read" in _hint(403, "forbidden")
    assert "/tempo" in _hint(404, "404 page not found")
    assert "TLA_TEMPO_LIMIT" in _hint(400, "limit 9 exceeds max limit 5")
    assert "TLA_TEMPO_SPSS" in _hint(400, "spans per span set exceeds 100. received 200")


@pytest.mark.parametrize("url", ["ftp://tempo:3200", "tempo:3200", "http://", "https://u:p@t.io"])
def test_bad_urls_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError):
        check_url(url)


async def test_client_refuses_two_auth_schemes_and_bad_ca_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not both"):
        TempoClient("http://t:3200", user="1", password="p", token="t")
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate")
    with pytest.raises(ConfigError, match="CA"):
        TempoClient("https://t:3200", ca_file=str(bad))
    assert check_url("https://tempo-prod-01.grafana.net/tempo/") == \
        "https://tempo-prod-01.grafana.net/tempo"


@pytest.mark.parametrize("change", [
    {"url": None}, {"limit": 0}, {"spss": 101}, {"min_window_s": 0},
    {"lookback_s": 600, "max_catchup_s": 60}, {"interval_s": 0}, {"end_cutoff_s": -1},
])
def test_tempo_settings_are_validated(change: dict) -> None:
    with pytest.raises(ConfigError):
        validate_tempo(TempoSettings(**{"url": "http://t:3200", **change}))


def test_windows_chunk_and_halve() -> None:
    assert chunks(0, 25, 10) == [Window(0, 10), Window(10, 20), Window(20, 25)]
    assert chunks(5, 5, 10) == []
    assert Window(0, 5).halves() == (Window(0, 2), Window(2, 5))


def test_poll_plan_resumes_lookback_before_the_watermark_and_caps_catch_up() -> None:
    t = TempoSettings(url="http://t", lookback_s=120, max_catchup_s=3600)
    first = plan_poll(10_000.4, None, t, 30)
    assert first.windows == [Window(9850, 9970)] and first.skipped_s == 0
    steady = plan_poll(10_000, 9955, t, 30)
    assert steady.windows == [Window(9835, 9955), Window(9955, 9970)]
    outage = plan_poll(10_000, 9000, t, 0)
    assert outage.windows[0] == Window(8880, 9000) and outage.windows[-1].end_s == 10_000
    assert len(outage.windows) == 10  # 1120 s in 120 s windows
    long = plan_poll(100_000, 1000, t, 0)
    assert long.windows[0].start_s == 100_000 - 3600 and long.skipped_s == 100_000 - 3600 - 880


def test_recent_ids_forget_the_oldest() -> None:
    recent = RecentIds(max_size=3)
    for tid in "abcd":
        recent.add(tid)
    assert "a" not in recent and "d" in recent and len(recent) == 3


@pytest.mark.parametrize("text,seconds", [("7d", 604800), ("36h", 129600), ("90m", 5400),
                                          ("600s", 600), ("600", 600), (" 2W ", 1209600)])
def test_parse_since(text: str, seconds: int) -> None:
    assert parse_since(text) == seconds


@pytest.mark.parametrize("text", ["", "0d", "7 days", "-1h", "1.5h", "d7"])
def test_parse_since_rejects_with_an_example(text: str) -> None:
    with pytest.raises(ValueError, match="like 7d, 36h, 90m or 600s"):
        parse_since(text)


def test_summary_line_and_progress() -> None:
    s = BackfillSummary(604800, "3.0.3", 168, 0, 200, 5000, 4900, 100, 0, 7, 0, 12.34)
    assert str(s).startswith("backfill 7d: published 4900 traces")
    assert "\n" not in str(s) and s.ok
    out = io.StringIO()
    bar = _Progress(out, 20)
    for i in range(21):
        bar.update(i, i * 10)
    lines = out.getvalue().splitlines()
    assert len(lines) == 11 and lines[-1].endswith("windows 20/20 published 200")
