"""Endpoints' all-hours baselines: what recompute computes, when, and where it keeps them."""

from __future__ import annotations

import numpy as np
import pytest
from redis.asyncio import Redis

from pipeline import samples
from pipeline.baselines import BaselineStore
from pipeline.fallback import endpoint_id
from pipeline.keys import Keys
from pipeline.metrics import Metrics
from pipeline.recompute import Recomputer, RecomputeSettings, endpoints
from pipeline.stats import Baseline, compute_baseline

TAG = "{checkout|POST /pay}"
NOW_MS = 1_800_000_000_000


def recomputer(redis: Redis, keys: Keys) -> Recomputer:
    return Recomputer(redis, keys, RecomputeSettings(), Metrics(), "t", bucket_ttl_s=3600)


async def test_the_all_hours_baseline_is_every_sample_of_every_bucket(
    redis: Redis, keys: Keys
) -> None:
    rings = {f"{TAG}:3:weekday": [10.0] * 30, f"{TAG}:14:weekday": [100.0] * 50,
             f"{TAG}:23:weekend": [1000.0] * 20, "{checkout|GET /other}:3:weekday": [5.0] * 9}
    for bucket_id, values in rings.items():
        await redis.set(keys.dur(bucket_id), samples.encode(values))
    assert await recomputer(redis, keys).refresh_endpoints([TAG, TAG]) == [TAG]
    stored = await BaselineStore(redis, keys).get(endpoint_id(TAG))
    want = compute_baseline(np.array([10.0] * 30 + [100.0] * 50 + [1000.0] * 20), 0)
    assert stored is not None and stored.count == 100
    assert (stored.p50, stored.p95, stored.mad) == pytest.approx((want.p50, want.p95, want.mad))
    key = keys.base(endpoint_id(TAG))
    assert key == f"{keys.prefix}base-all:{TAG}"  # the endpoint's slot, outside base:*
    assert 0 < await redis.ttl(key) <= 3600
    assert [k async for k in redis.scan_iter(match=keys.base_pattern())] == []


async def test_due_endpoints_missing_first_then_small_then_stale_at_most_the_limit(
    redis: Redis, keys: Keys
) -> None:
    def write(tag: str, count: int, age_s: float) -> object:
        b = Baseline(1, 2, 0, count, NOW_MS - int(age_s * 1000))
        return redis.hset(keys.base(endpoint_id(tag)), mapping=b.to_hash())  # type: ignore[arg-type]

    await write("{s|fresh}", 5000, 10)
    await write("{s|stale}", 5000, endpoints.REFRESH_S + 1)
    await write("{s|staler}", 5000, endpoints.REFRESH_S + 100)
    await write("{s|small}", endpoints.EAGER_SAMPLES - 1, 1)
    tags = ["{s|fresh}", "{s|stale}", "{s|staler}", "{s|small}", "{s|missing}"]
    assert await endpoints.due(redis, keys, tags, NOW_MS) == [
        "{s|missing}", "{s|small}", "{s|staler}", "{s|stale}"]
    assert await endpoints.due(redis, keys, tags, NOW_MS, limit=2) == ["{s|missing}", "{s|small}"]


async def test_an_endpoint_whose_samples_expired_loses_its_all_hours_baseline(
    redis: Redis, keys: Keys
) -> None:
    gone = Baseline(1, 2, 0, 5, 0).to_hash()
    await redis.hset(keys.base(endpoint_id(TAG)), mapping=gone)  # type: ignore[arg-type]
    await recomputer(redis, keys).refresh_endpoints([TAG])
    assert not await redis.exists(keys.base(endpoint_id(TAG)))
