"""The compiled verdicts of the check path equal `verdict_json(evaluate(...))`, key for key."""

from __future__ import annotations

import copy
import time

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from pipeline.buckets import BucketRef, TimeBucket
from pipeline.metrics import StatusCounter
from pipeline.rule import RuleSettings, evaluate
from pipeline.stats import Baseline
from services.verdict_cache import VerdictCache
from services.views import verdict_json

RULE = RuleSettings(factor=2.0, k=10.0, min_samples=50, floor_ms=1.0).params()
TZ = "Asia/Taipei"
REF = BucketRef("checkout", "POST /pay|{x}", TimeBucket(14, "weekday"))
ms_values = st.floats(min_value=0, max_value=1e6, allow_nan=False)


def reference(duration_ms: float, baseline: Baseline | None) -> dict[str, object]:
    return verdict_json(evaluate(duration_ms, REF, baseline, RULE, TZ), RULE, TZ)


def verdict(cache: VerdictCache, bucket_id: str, baseline: Baseline | None,
            duration_ms: float) -> dict[str, object]:
    return dict(orjson.loads(cache.verdict_bytes(REF, bucket_id, baseline, duration_ms)))


def same(got: dict[str, object], want: dict[str, object]) -> None:
    got = copy.deepcopy(got)  # nested parts are shared with the cache: never mutate them
    assert list(got) == list(want)  # same key order: the same JSON bytes
    got_base, want_base = got.pop("baseline"), want.pop("baseline")
    assert got == want
    if want_base is None:
        assert got_base is None
        return
    assert isinstance(got_base, dict) and isinstance(want_base, dict)
    assert abs(got_base.pop("ageS") - want_base.pop("ageS")) < 1.0
    assert got_base == want_base


@settings(max_examples=300, deadline=None)
@given(p50=ms_values, spread=ms_values, mad=ms_values, count=st.integers(0, 2000),
       duration_ms=ms_values)
def test_every_status_matches_the_reference(
    p50: float, spread: float, mad: float, count: int, duration_ms: float
) -> None:
    baseline = Baseline(p50, p50 + spread, mad, count, int(time.time() * 1000) - 5000)
    cache = VerdictCache(RULE, TZ)
    bucket_id = REF.id
    for d in (duration_ms, 0.0, duration_ms * 3 + 1):  # the compiled entry is reused
        same(verdict(cache, bucket_id, baseline, d), reference(d, baseline))


@settings(max_examples=300, deadline=None)
@given(p50=ms_values, spread=ms_values, mad=ms_values, count=st.integers(0, 2000),
       duration_ms=ms_values, known=st.booleans())
def test_with_and_without_a_baseline_the_bytes_match_the_reference(
    p50: float, spread: float, mad: float, count: int, duration_ms: float, known: bool
) -> None:
    baseline = Baseline(p50, p50 + spread, mad, count, int(time.time() * 1000) - 5000)
    cache = VerdictCache(RULE, TZ)
    for d in (duration_ms, 0.0, duration_ms * 3 + 1):
        b = baseline if known else None
        same(verdict(cache, REF.id, b, d), reference(d, b))


def test_no_baseline_and_a_new_baseline_recompile() -> None:
    cache = VerdictCache(RULE, TZ)
    same(verdict(cache, REF.id, None, 12.5), reference(12.5, None))
    fresh = Baseline(100.0, 200.0, 5.0, 500, int(time.time() * 1000))
    same(verdict(cache, REF.id, fresh, 450.0), reference(450.0, fresh))
    newer = Baseline(300.0, 600.0, 5.0, 500, int(time.time() * 1000))
    same(verdict(cache, REF.id, newer, 450.0), reference(450.0, newer))


def test_counts_each_verdict_by_status() -> None:
    registry = CollectorRegistry()
    counter = StatusCounter("checks", "checks", "status", registry=registry)
    cache = VerdictCache(RULE, TZ, counter)
    base = Baseline(100.0, 200.0, 5.0, 500, int(time.time() * 1000))
    cache.verdict_bytes(REF, REF.id, base, 1000.0)
    cache.verdict_bytes(REF, REF.id, base, 10.0)
    cache.verdict_bytes(REF, REF.id, None, 10.0)
    cache.verdict_bytes(REF, REF.id, base, 1000.0)
    cache.verdict_bytes(REF, REF.id, None, 10.0)
    assert registry.get_sample_value("checks_total", {"status": "anomaly"}) == 2
    assert registry.get_sample_value("checks_total", {"status": "normal"}) == 1
    assert registry.get_sample_value("checks_total", {"status": "no_baseline"}) == 2
    assert registry.get_sample_value("checks_total", {"status": "insufficient_samples"}) == 0


def test_bounded() -> None:
    cache = VerdictCache(RULE, TZ, max_buckets=2)
    for hour in range(5):
        ref = BucketRef("s", "e", TimeBucket(hour, "weekend"))
        cache.verdict_bytes(ref, ref.id, None, 1.0)
    assert len(cache._compiled) <= 2


@settings(max_examples=200, deadline=None)
@given(own_count=st.integers(0, 60), p50=ms_values, spread=ms_values, mad=ms_values,
       count=st.integers(50, 2000), duration_ms=ms_values,
       level=st.sampled_from(["neighbour_hour", "other_day_type", "endpoint"]),
       holiday=st.sampled_from([None, "holiday", "National Day"]))
def test_fallback_and_holiday_verdicts_match_the_reference(
    own_count: int, p50: float, spread: float, mad: float, count: int, duration_ms: float,
    level: str, holiday: str | None,
) -> None:
    from pipeline.fallback import choose, endpoint_id

    ref = BucketRef("checkout", "POST /pay", TimeBucket(14, "weekend", holiday))
    own = Baseline(100, 200, 10, own_count, int(time.time() * 1000)) if own_count else None
    source = {"neighbour_hour": f"{ref.tag}:13:weekend",
              "other_day_type": f"{ref.tag}:14:weekday", "endpoint": endpoint_id(ref.tag)}[level]
    used = Baseline(p50, p50 + spread, mad, count, int(time.time() * 1000) - 5000)
    fallback = choose(ref, {source: used}, RULE)
    assert fallback is not None and fallback.level == level
    cache = VerdictCache(RULE, TZ)
    plain = BucketRef("checkout", "POST /pay", TimeBucket(14, "weekend"))
    for d in (duration_ms, 0.0, duration_ms * 3 + 1):
        for r, f in ((ref, fallback), (plain, None), (ref, fallback)):  # recompiled each way
            got = orjson.loads(cache.verdict_bytes(r, r.id, own, d, f))
            same(got, verdict_json(evaluate(d, r, own, RULE, TZ, f), RULE, TZ))
