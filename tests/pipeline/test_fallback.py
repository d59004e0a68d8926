"""Thin buckets: the fallback levels, their order, and the verdicts they give (pure; the
memo's invalidation uses fakeredis)."""

from __future__ import annotations

import fakeredis
import pytest

from pipeline.baselines import BaselineStore
from pipeline.buckets import BucketRef, TimeBucket
from pipeline.fallback import Fallbacks, candidates, choose, endpoint_id, resolve
from pipeline.keys import Keys
from pipeline.rule import RuleSettings, evaluate, judged_threshold
from pipeline.stats import Baseline

RULE = RuleSettings().params()  # minSamples 50, fallback on
OFF = RuleSettings(fallback=False).params()
TZ = "Asia/Taipei"
REF = BucketRef("checkout", "POST /pay", TimeBucket(14, "weekday"))
TAG = REF.tag
THIN = Baseline(100, 200, 10, 12, 1)


def full(p50: float = 100, count: int = 1000) -> Baseline:
    return Baseline(p50, p50 * 2, p50 / 10, count, 1)


def ids(ref: BucketRef = REF) -> list[str]:
    return [c[1] for c in candidates(ref)]


def test_candidates_in_order_wrap_midnight_and_stay_in_the_endpoint() -> None:
    assert ids() == [f"{TAG}:13:weekday", f"{TAG}:15:weekday", f"{TAG}:14:weekend",
                     f"{TAG}:all"]
    midnight = BucketRef("checkout", "POST /pay", TimeBucket(0, "weekend"))
    assert ids(midnight)[:3] == [f"{TAG}:23:weekend", f"{TAG}:1:weekend", f"{TAG}:0:weekday"]
    assert endpoint_id(TAG) == f"{TAG}:all"


@pytest.mark.parametrize(("present", "level", "source"), [
    ({"13:weekday": full(), "14:weekend": full(), "all": full()}, "neighbour_hour",
     "13:weekday"),
    ({"15:weekday": full(), "all": full()}, "neighbour_hour", "15:weekday"),
    ({"14:weekend": full(), "all": full()}, "other_day_type", "14:weekend"),
    ({"13:weekday": full(count=49), "14:weekend": full(count=49), "all": full()},
     "endpoint", "all"),
])
def test_the_first_level_with_min_samples_is_chosen(
    present: dict[str, Baseline], level: str, source: str
) -> None:
    found = {f"{TAG}:{k}": v for k, v in present.items()}
    chosen = choose(REF, found, RULE)
    assert chosen is not None and (chosen.level, chosen.source) == (level, f"{TAG}:{source}")
    assert chosen.baseline is found[chosen.source]


def test_of_the_two_neighbours_the_one_with_more_samples_wins_the_earlier_on_a_tie() -> None:
    found = {f"{TAG}:13:weekday": full(100, 60), f"{TAG}:15:weekday": full(200, 900)}
    assert choose(REF, found, RULE).source == f"{TAG}:15:weekday"  # type: ignore[union-attr]
    found[f"{TAG}:13:weekday"] = full(100, 900)
    assert choose(REF, found, RULE).source == f"{TAG}:13:weekday"  # type: ignore[union-attr]


def test_no_level_with_min_samples_leaves_the_seed_verdict() -> None:
    found = {i: full(count=49) for i in ids()}
    assert choose(REF, found, RULE) is None
    verdict = evaluate(5000, REF, THIN, RULE, TZ, None)
    assert verdict.status == "insufficient_samples" and verdict.level == "bucket"
    assert verdict.reason.endswith("no fallback level has minSamples either")


def test_a_fallback_verdict_names_its_level_and_says_why() -> None:
    neighbour = choose(REF, {f"{TAG}:13:weekday": Baseline(120, 300, 15, 800, 1)}, RULE)
    verdict = evaluate(912, REF, THIN, RULE, TZ, neighbour)
    assert (verdict.status, verdict.level) == ("anomaly", "neighbour_hour")
    assert verdict.baseline is neighbour.baseline  # type: ignore[union-attr]
    assert verdict.threshold is not None and verdict.threshold.value_ms == 600
    assert verdict.reason == (
        "912 ms > threshold 600 ms = max(2 x p95 300 ms, p50 120 ms + 10 x MAD 15 ms) for "
        "checkout POST /pay, 14:00 weekday Asia/Taipei, judged on the neighbouring hour "
        "13:00 weekday, n=800 (this bucket has 12 samples, fewer than minSamples 50)")
    assert judged_threshold(THIN, RULE, neighbour) == verdict.threshold
    none_yet = evaluate(100, REF, None, RULE, TZ, neighbour)
    assert none_yet.status == "normal" and "this bucket has 0 samples" in none_yet.reason


def test_a_bucket_with_min_samples_ignores_any_fallback() -> None:
    own = full(100, 50)
    other = choose(REF, {f"{TAG}:all": full(1000)}, RULE)
    verdict = evaluate(500, REF, own, RULE, TZ, other)
    assert verdict.level == "bucket" and verdict.is_anomaly and verdict.fallback is None
    assert verdict == evaluate(500, REF, own, RULE, TZ)
    assert judged_threshold(own, RULE, other) == judged_threshold(own, RULE)


def test_fallback_off_gives_the_seeds_verdicts_exactly() -> None:
    anyway = choose(REF, {f"{TAG}:all": full()}, RULE)  # off ignores one given anyway
    assert judged_threshold(THIN, OFF, anyway) is None
    for baseline in (None, THIN, Baseline(0, 0, 0, 0, 1)):
        verdict = evaluate(5000, REF, baseline, OFF, TZ, anyway)
        assert verdict.reason in (
            "no baseline yet for checkout POST /pay, 14:00 weekday Asia/Taipei: not judged",
            "only 12 samples for checkout POST /pay, 14:00 weekday Asia/Taipei "
            "(minSamples 50): not judged yet")
        assert not verdict.is_anomaly and verdict.level == "bucket"


@pytest.fixture
def store() -> BaselineStore:
    client = fakeredis.FakeAsyncRedis()
    return BaselineStore(client, Keys("t:"), cache_ttl_s=30, version_check_s=None)


async def write(store: BaselineStore, baseline_id: str, baseline: Baseline) -> None:
    await store._redis.hset(Keys("t:").base(baseline_id), mapping=baseline.to_hash())


async def test_resolve_reads_the_levels_and_off_reads_nothing(store: BaselineStore) -> None:
    await write(store, f"{TAG}:all", full(300))
    own = {REF.id: THIN}
    assert await resolve(store, [(REF, REF.id)], own, OFF) == {}
    found = await resolve(store, [(REF, REF.id)], own, RULE)
    assert found[REF.id].level == "endpoint" and found[REF.id].baseline.p50 == 300
    assert await resolve(store, [(REF, REF.id)], {REF.id: full()}, RULE) == {}


async def test_remembered_choices_follow_the_store(store: BaselineStore) -> None:
    fallbacks = Fallbacks(store, RULE)
    await write(store, f"{TAG}:all", full(300))
    first = await fallbacks([(REF, REF.id)], {REF.id: THIN})
    assert first[REF.id].level == "endpoint"
    await write(store, f"{TAG}:13:weekday", full(120))  # not seen until the cache lets go
    assert await fallbacks([(REF, REF.id)], {REF.id: THIN}) == first
    store.forget()  # what a new recompute version does
    second = await fallbacks([(REF, REF.id)], {REF.id: THIN})
    assert second[REF.id].level == "neighbour_hour" and second[REF.id].baseline.p50 == 120
    # a new own baseline object (the bucket recomputed) is asked again, too
    assert (await fallbacks([(REF, REF.id)], {REF.id: full()})) == {}
