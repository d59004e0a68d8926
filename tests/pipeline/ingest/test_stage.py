"""Ingest's once-per-window bookkeeping and flagging, on a real Redis."""

from __future__ import annotations

import asyncio
import time

import pytest
from redis.asyncio import Redis

from pipeline import samples, streams
from pipeline.baselines import BaselineStore
from pipeline.buckets import BucketRef, bucket_of, load_zone
from pipeline.ingest import Ingestor, IngestSettings
from pipeline.keys import INGEST_GROUP, Keys
from pipeline.metrics import Metrics
from pipeline.rule import RuleSettings
from pipeline.stats import Baseline

pytestmark = pytest.mark.redis
ZONE = load_zone("Asia/Taipei")
NOW_NS = time.time_ns()


def event(i: int, ms: float, endpoint: str = "POST /pay", service: str = "checkout"
          ) -> dict[str, str]:
    return {"trace_id": f"{i:x}", "service": service, "endpoint": endpoint,
            "start_ns": str(NOW_NS), "duration_ms": str(ms)}


def ref(endpoint: str = "POST /pay", service: str = "checkout") -> BucketRef:
    return BucketRef(service, endpoint, bucket_of(NOW_NS, ZONE))


def ingestor(redis: Redis, keys: Keys, **settings: int) -> Ingestor:
    s = IngestSettings(batch_size=50, block_ms=100, **settings)
    return Ingestor(redis, keys, s, RuleSettings().params(), ZONE, BaselineStore(redis, keys),
                    Metrics(), "test-ingest", window_s=3600)


async def drain(ing: Ingestor) -> None:
    await streams.ensure_group(ing.redis, ing.keys.traces, INGEST_GROUP)
    while entries := await streams.read_new(
        ing.redis, ing.keys.traces, INGEST_GROUP, ing.consumer, ing.settings.batch_size, None
    ):
        await ing.handle(entries)


async def test_many_batches_of_one_window_mark_each_bucket_once(redis: Redis, keys: Keys) -> None:
    for i in range(300):  # 6 batches over 3 buckets
        await redis.xadd(keys.traces, event(i, 10, f"GET /{i % 3}"))
    await drain(ingestor(redis, keys))
    marks = [f[b"bucket"].decode() for _i, f in await redis.xrange(keys.dirty)]
    assert sorted(marks) == sorted(ref(f"GET /{n}").id for n in range(3))
    for n in range(3):
        assert len(await samples.read(redis, keys, ref(f"GET /{n}").id)) == 100
    assert (await redis.xpending(keys.traces, INGEST_GROUP))["pending"] == 0


async def test_a_mark_deleted_mid_window_is_set_again(redis: Redis, keys: Keys) -> None:
    ing = ingestor(redis, keys)
    await redis.xadd(keys.traces, event(1, 10))
    await drain(ing)
    await redis.delete(keys.mark(ref().id))  # what recompute's shutdown does
    await redis.xadd(keys.traces, event(2, 10))
    await drain(ing)
    assert len(await redis.xrange(keys.dirty)) == 2


async def test_a_list_recreated_mid_window_gets_its_ttl(redis: Redis, keys: Keys) -> None:
    ing = ingestor(redis, keys)
    await redis.xadd(keys.traces, event(1, 10))
    await drain(ing)
    await redis.delete(keys.dur(ref().id))
    await redis.xadd(keys.traces, event(2, 10))
    await drain(ing)
    assert await redis.ttl(keys.dur(ref().id)) > 86400 * 7


async def test_wrong_type_in_a_marked_bucket_fails_before_any_write(
    redis: Redis, keys: Keys
) -> None:
    ing = ingestor(redis, keys)
    await redis.xadd(keys.traces, event(1, 10))
    await drain(ing)
    await redis.set(keys.dur(ref().id), "not a list")
    await redis.xadd(keys.traces, event(2, 10, "GET /other"))  # first in the batch
    culprit = await redis.xadd(keys.traces, event(3, 10))
    await drain(ing)
    dead = await redis.xrange(keys.dead)
    assert [f[b"origin_id"] for _i, f in dead] == [culprit]
    assert b"WRONGTYPE" in dead[0][1][b"error"]
    assert not await redis.exists(keys.seen(ref().tag, f"{3:032x}"))  # never counted
    assert len(await samples.read(redis, keys, ref("GET /other").id)) == 1
    assert (await redis.xpending(keys.traces, INGEST_GROUP))["pending"] == 0


async def test_flagged_events_are_recorded_once_among_normal_ones_and_capped_buckets(
    redis: Redis, keys: Keys
) -> None:
    baseline = Baseline(100.0, 200.0, 10.0, 1000, 0)  # threshold 400 ms
    await redis.hset(keys.base(ref().id), mapping=baseline.to_hash())
    await redis.zadd(keys.endpoints("checkout"), {"GET /old": time.time()})
    await redis.xadd(keys.traces, event(1, 50, "GET /old"))
    for i in range(2, 12):  # slow ones interleaved with normal ones and a capped endpoint
        await redis.xadd(keys.traces, event(i, 500 if i % 3 == 0 else 150))
        await redis.xadd(keys.traces, event(100 + i, 999, "GET /new"))
    await redis.xadd(keys.traces, event(3, 500))  # a re-sent slow trace: not again
    await redis.xadd(keys.traces, event(200, 10, "GET /z", "cart"))  # after the capped bucket
    await drain(ingestor(redis, keys, max_endpoints_per_service=2))
    flagged = [f for _i, f in await redis.xrange(keys.anomalies)]
    assert sorted(f[b"trace_id"].decode() for f in flagged) == [f"{i:032x}" for i in (3, 6, 9)]
    assert all(f[b"reason"].startswith(b"500 ms > threshold 400 ms") for f in flagged)
    assert len(await samples.read(redis, keys, ref().id)) == 10
    assert len(await samples.read(redis, keys, ref("GET /z", "cart").id)) == 1
    dead = await redis.xrange(keys.dead)
    assert len(dead) == 10 and all(f[b"endpoint"] == b"GET /new" for _i, f in dead)
    assert (await redis.xpending(keys.traces, INGEST_GROUP))["pending"] == 0


async def test_a_stop_handles_the_batch_read_ahead_and_leaves_nothing_pending(
    redis: Redis, keys: Keys
) -> None:
    for i in range(2000):
        await redis.xadd(keys.traces, event(i, 10))
    ing = ingestor(redis, keys)
    stop = asyncio.Event()
    task = asyncio.create_task(ing.run(stop))
    while not await redis.exists(keys.dirty):  # the first batch is applied
        await asyncio.sleep(0.001)
    stop.set()
    await asyncio.wait_for(task, 10)
    (group,) = await redis.xinfo_groups(keys.traces)
    assert group["pending"] == 0 and 0 < group["entries-read"] < 2000
    assert len(await samples.read(redis, keys, ref().id)) == min(group["entries-read"], 1000)
