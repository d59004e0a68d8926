"""The performance paths give the same answers as the plain ones: zone slots, batch stats,
and the baseline cache's freshness (recompute bumps a version the cache follows)."""

from __future__ import annotations

import asyncio
import random

import numpy as np
import pytest
from redis.asyncio import Redis

from pipeline.baselines import BaselineStore
from pipeline.buckets import BucketRef, ZoneBuckets, bucket_of, load_zone
from pipeline.errors import StoreUnavailable
from pipeline.ingest import IngestSettings
from pipeline.keys import Keys
from pipeline.metrics import Metrics
from pipeline.recompute import Recomputer, RecomputeSettings
from pipeline.samples import encode
from pipeline.stats import Baseline, baselines_of, compute_baseline

# Whole-hour DST, 30/45-minute offsets, a 30-minute DST shift, the southern hemisphere.
ZONES = ["Asia/Taipei", "America/New_York", "Europe/London", "Asia/Kolkata",
         "Asia/Kathmandu", "Australia/Lord_Howe", "America/St_Johns", "Pacific/Chatham", "UTC"]
NS = 1_000_000_000


@pytest.mark.parametrize("name", ZONES)
def test_zone_slots_agree_with_bucket_of_around_every_2026_transition(name: str) -> None:
    zone = load_zone(name)
    slots = ZoneBuckets(zone)
    start_s, end_s = 1_767_225_600, 1_798_761_600  # 2026
    for s in range(start_s, end_s, 3600 * 6 + 7):  # coarse sweep of the year
        assert slots(s * NS) == bucket_of(s * NS, zone)
    for transition_s in _transitions(zone, start_s, end_s):
        for s in range(transition_s - 7200, transition_s + 7200, 59):
            assert slots(s * NS + 123) == bucket_of(s * NS + 123, zone), (name, s)


def _transitions(zone: object, start_s: int, end_s: int) -> list[int]:
    from datetime import datetime

    out, prev = [], None
    for s in range(start_s, end_s, 900):
        offset = datetime.fromtimestamp(s, tz=zone).utcoffset()  # type: ignore[arg-type]
        if prev is not None and offset != prev:
            out.append(s)
        prev = offset
    return out


def test_zone_slots_random_instants_and_bounded_cache() -> None:
    rng = random.Random(5)
    zone = load_zone("America/New_York")
    slots = ZoneBuckets(zone, max_slots=16)
    for _ in range(5000):
        t = rng.randrange(946_684_800, 4_102_444_800) * NS + rng.randrange(NS)
        assert slots(t) == bucket_of(t, zone)
    assert len(slots._slots) <= 16


def test_batch_stats_equal_the_one_bucket_path() -> None:
    rng = np.random.default_rng(3)
    found: list[np.ndarray] = []
    for i in range(300):
        n = 1000 if i % 3 else int(rng.integers(0, 1200))
        found.append(rng.lognormal(10, 1, n) / 1000.0)
    found += [np.zeros(60), np.empty(0), np.array([0.005]), np.array([120.0, 0.5, 0.0])]
    want = [compute_baseline(values, 7) for values in found]
    assert baselines_of(found, 7) == want
    assert baselines_of([], 7) == []
    assert baselines_of([np.empty(0)], 7) == [Baseline(0.0, 0.0, 0.0, 0, 7)]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.redis
async def test_cache_follows_the_version_recompute_bumps(redis: Redis, keys: Keys) -> None:
    ref = BucketRef("checkout", "POST /pay", bucket_of(1_780_000_000 * NS, load_zone("UTC")))
    await redis.set(keys.dur(ref.id), encode([100.0] * 60))
    recomputer = Recomputer(redis, keys, RecomputeSettings(), Metrics(), "t",
                            bucket_ttl_s=IngestSettings().bucket_ttl_s)
    await recomputer.recompute([ref.id])
    clock = Clock()
    store = BaselineStore(redis, keys, cache_ttl_s=30.0, clock=clock, version_check_s=0.5)
    first = await store.get(ref.id)
    assert first is not None and first.p50 == 100.0

    await redis.set(keys.dur(ref.id), encode([100.0] * 60 + [300.0] * 200))
    await recomputer.recompute([ref.id])
    clock.now += 0.1  # inside the version interval: the cached copy is served
    assert await store.get(ref.id) == first
    clock.now += 0.5  # the version moved: dropped and re-read, long before the TTL
    newer = await store.get(ref.id)
    assert newer is not None and newer.p50 == 300.0


@pytest.mark.redis
async def test_cache_ttl_still_bounds_age_without_versions(redis: Redis, keys: Keys) -> None:
    clock = Clock()
    store = BaselineStore(redis, keys, cache_ttl_s=5.0, clock=clock, version_check_s=None)
    assert await store.get("{a|b}:1:weekday") is None
    await redis.hset(keys.base("{a|b}:1:weekday"),
                     mapping=Baseline(1.0, 2.0, 0.1, 60, 0).to_hash())
    clock.now += 4.9
    assert await store.get("{a|b}:1:weekday") is None  # cached miss
    clock.now += 0.2
    assert await store.get("{a|b}:1:weekday") is not None


@pytest.mark.redis
async def test_unreadable_version_keeps_serving_the_cache(redis: Redis, keys: Keys) -> None:
    clock = Clock()
    store = BaselineStore(redis, keys, cache_ttl_s=5.0, clock=clock)
    await redis.hset(keys.base("{a|b}:1:weekday"),
                     mapping=Baseline(1.0, 2.0, 0.1, 60, 0).to_hash())
    assert await store.get("{a|b}:1:weekday") is not None
    await redis.lpush(keys.base_version, "not a string")  # GET now fails: WRONGTYPE
    clock.now += 1.0
    assert await store.get("{a|b}:1:weekday") is not None


@pytest.mark.redis
async def test_concurrent_misses_share_one_fetch(redis: Redis, keys: Keys) -> None:
    store = BaselineStore(redis, keys, cache_ttl_s=5.0)
    await redis.hset(keys.base("{a|b}:1:weekday"),
                     mapping=Baseline(1.0, 2.0, 0.1, 60, 0).to_hash())
    fetched: list[list[str]] = []
    real_fetch = store._fetch

    async def counting(bucket_ids: list[str]) -> dict[str, Baseline | None]:
        fetched.append(bucket_ids)
        return await real_fetch(bucket_ids)

    store._fetch = counting  # type: ignore[method-assign]
    results = await asyncio.gather(*(store.get("{a|b}:1:weekday") for _ in range(50)))
    assert all(r is not None and r.p50 == 1.0 for r in results)
    assert fetched == [["{a|b}:1:weekday"]]


async def test_a_failed_shared_fetch_fails_every_waiter(keys: Keys) -> None:
    down = Redis.from_url("redis://127.0.0.1:1", socket_connect_timeout=0.5)
    store = BaselineStore(down, keys, cache_ttl_s=5.0)
    results = await asyncio.gather(*(store.get("{a|b}:1:weekday") for _ in range(5)),
                                   return_exceptions=True)
    assert all(isinstance(r, StoreUnavailable) for r in results)
    assert store._inflight == {}
    await down.aclose()
