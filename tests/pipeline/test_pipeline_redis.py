"""The whole path on a real Redis: XADD → ingest group → recompute window → verdict."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import jsonschema
import pytest
from redis.asyncio import Redis

from pipeline import samples, streams
from pipeline.baselines import BaselineStore
from pipeline.buckets import BucketRef, bucket_of, load_zone
from pipeline.ingest import Ingestor, IngestSettings
from pipeline.keys import INGEST_GROUP, RECOMPUTE_GROUP, Keys
from pipeline.metrics import Metrics
from pipeline.recompute import Recomputer, RecomputeSettings
from pipeline.rule import RuleSettings, evaluate

pytestmark = pytest.mark.redis
ZONE = load_zone("Asia/Taipei")
STREAMS_SCHEMA = json.loads(
    (Path(__file__).parents[2] / "schemas" / "streams.schema.json").read_text()
)
RULE = RuleSettings().params()
BUCKET_TTL_S = IngestSettings().bucket_ttl_s


def event(i: int, ms: float, start_ns: int, endpoint: str = "POST /pay") -> dict[str, str]:
    return {"trace_id": f"{i:x}", "service": "checkout", "endpoint": endpoint,
            "start_ns": str(start_ns), "duration_ms": str(ms)}


def ingestor(redis: Redis, keys: Keys, window_size: int = 1000, window_s: int = 30) -> Ingestor:
    rule = RuleSettings(window_size=window_size).params()
    return Ingestor(redis, keys, IngestSettings(batch_size=200, block_ms=100), rule, ZONE,
                    BaselineStore(redis, keys), Metrics(), "test-ingest", window_s=window_s)


async def drain(ing: Ingestor, redis: Redis, keys: Keys) -> None:
    """Handle everything in the stream the way the run loop does, without its timers."""
    await streams.ensure_group(redis, keys.traces, INGEST_GROUP)
    while entries := await streams.read_new(redis, keys.traces, INGEST_GROUP, ing.consumer, 200, None):
        await ing.handle(entries)


async def test_samples_are_counted_once_trimmed_and_marked_dirty_once(redis: Redis, keys: Keys) -> None:
    now = time.time_ns()
    ref = BucketRef("checkout", "POST /pay", bucket_of(now, ZONE))
    for i in range(120):
        await redis.xadd(keys.traces, event(i, 100 + i, now))
    for i in range(30):  # the same trace IDs again: another poll saw them
        await redis.xadd(keys.traces, event(i, 100 + i, now))
    ing = ingestor(redis, keys, window_size=100)
    await drain(ing, redis, keys)

    stored = await samples.read(redis, keys, ref.id)
    assert len(stored) == 100  # the newest windowSize, read oldest first
    assert stored[0] == 120.0 and stored[-1] == 219.0  # milliseconds
    assert await redis.ttl(keys.dur(ref.id)) > 86400 * 7
    seen_ttl = await redis.ttl(keys.seen(ref.tag, "0" * 31 + "1"))
    assert 0 < seen_ttl <= 900
    dirty = await redis.xrange(keys.dirty)
    assert len(dirty) == 1 and dirty[0][1][b"bucket"] == ref.id.encode()
    jsonschema.validate({k.decode(): v.decode() for k, v in dirty[0][1].items()},
                        STREAMS_SCHEMA["$defs"]["dirty"])
    pending = await redis.xpending(keys.traces, INGEST_GROUP)
    assert pending["pending"] == 0
    counted = ing.series.events
    assert counted.labels("new")._value.get() == 120
    assert counted.labels("duplicate")._value.get() == 30


async def test_bad_entries_are_dead_lettered_with_reasons_and_never_block_the_batch(
    redis: Redis, keys: Keys
) -> None:
    now = time.time_ns()
    await redis.xadd(keys.traces, event(1, 10, now))
    bad_id = await redis.xadd(keys.traces, {"trace_id": "nothex", "service": "s"})
    await redis.xadd(keys.traces, {**event(2, 10, now), "duration_ms": "-3"})
    await redis.xadd(keys.traces, {**event(3, 10, now), "endpoint": "x" * 1_000_000})
    await redis.xadd(keys.traces, {**event(4, 10, now), "service": b"\xff\xfe"})
    await redis.xadd(keys.traces, event(5, 10, now))
    await drain(ingestor(redis, keys), redis, keys)

    ref = BucketRef("checkout", "POST /pay", bucket_of(now, ZONE))
    assert len(await samples.read(redis, keys, ref.id)) == 2
    dead = await redis.xrange(keys.dead)
    assert len(dead) == 4
    first = dead[0][1]
    assert first[b"origin_id"] == bad_id and first[b"consumer"] == b"test-ingest"
    assert b"trace_id" in first[b"error"] and first[b"service"] == b"s"
    assert all(len(v) < 2000 for _i, f in dead for v in f.values())  # 1 MB value clipped
    for _i, fields in dead:
        jsonschema.validate({k.decode(): v.decode("utf-8", "replace") for k, v in fields.items()},
                            STREAMS_SCHEMA["$defs"]["dead"])
    assert (await redis.xpending(keys.traces, INGEST_GROUP))["pending"] == 0


async def test_recompute_window_builds_the_baseline_and_flags_after(redis: Redis, keys: Keys) -> None:
    now = time.time_ns()
    ref = BucketRef("checkout", "POST /pay", bucket_of(now, ZONE))
    for i in range(100):
        await redis.xadd(keys.traces, event(i, 100 + (i % 10), now))
    ing = ingestor(redis, keys, window_s=1)
    await drain(ing, redis, keys)
    rec = Recomputer(redis, keys, RecomputeSettings(interval_s=1), Metrics(), "test-recompute",
                     bucket_ttl_s=BUCKET_TTL_S)
    await streams.ensure_group(redis, keys.dirty, RECOMPUTE_GROUP)
    await asyncio.sleep(1.1)  # let the window the marks belong to close
    result = await rec.run_window()
    assert (result.buckets, result.held) == (1, 0)

    raw = await redis.hgetall(keys.base(ref.id))
    assert raw[b"count"] == b"100" and float(raw[b"p50"]) == pytest.approx(104.5)
    jsonschema.validate({k.decode(): v.decode() for k, v in raw.items()},
                        STREAMS_SCHEMA["$defs"]["baseline"])
    baseline = await BaselineStore(redis, keys).get(ref.id)
    assert evaluate(500, ref, baseline, RULE, "Asia/Taipei").is_anomaly
    assert not evaluate(110, ref, baseline, RULE, "Asia/Taipei").is_anomaly

    # An ingested slow trace is now recorded in <p>anomalies with its reason.
    await redis.xadd(keys.traces, event(999, 5000, now))
    await drain(ing, redis, keys)
    (entry,) = await redis.xrange(keys.anomalies)
    fields = {k.decode(): v.decode() for k, v in entry[1].items()}
    jsonschema.validate(fields, STREAMS_SCHEMA["$defs"]["anomaly"])
    assert fields["reason"].startswith("5000 ms > threshold") and fields["term"] == "p95_factor"
    assert (await redis.xinfo_groups(keys.dirty))[0]["lag"] == 1  # the new window's mark


async def test_marks_of_the_open_window_are_held_until_it_closes(redis: Redis, keys: Keys) -> None:
    now = time.time_ns()
    ing = ingestor(redis, keys, window_s=3600)
    rec = Recomputer(redis, keys, RecomputeSettings(interval_s=3600), Metrics(), "r1",
                     bucket_ttl_s=BUCKET_TTL_S)
    await streams.ensure_group(redis, keys.dirty, RECOMPUTE_GROUP)
    await redis.xadd(keys.traces, event(1, 10, now))
    await drain(ing, redis, keys)
    result = await rec.run_window()
    assert (result.buckets, result.held) == (0, 1)
    await redis.xadd(keys.traces, event(2, 10, now))
    await drain(ing, redis, keys)
    assert await redis.xlen(keys.dirty) == 1  # still one mark in this window


async def test_two_recompute_agents_split_the_marks(redis: Redis, keys: Keys) -> None:
    now = time.time_ns()
    for n in range(40):
        await redis.xadd(keys.traces, event(n, 10, now, endpoint=f"GET /e{n}"))
    await drain(ingestor(redis, keys, window_s=1), redis, keys)
    await asyncio.sleep(1.1)
    await streams.ensure_group(redis, keys.dirty, RECOMPUTE_GROUP)
    a, b = (Recomputer(redis, keys, RecomputeSettings(interval_s=1), Metrics(), name,
                       bucket_ttl_s=BUCKET_TTL_S) for name in "ab")
    ra, rb = await asyncio.gather(a.run_window(), b.run_window())
    assert ra.buckets + rb.buckets == 40
    assert len([k async for k in redis.scan_iter(match=keys.base_pattern())]) == 40


async def test_run_loop_consumes_and_stops_cleanly(redis: Redis, keys: Keys) -> None:
    now = time.time_ns()
    ing = ingestor(redis, keys)
    stop = asyncio.Event()
    task = asyncio.create_task(ing.run(stop))
    for i in range(50):
        await redis.xadd(keys.traces, event(i, 10, now))
    for _ in range(100):
        info = await redis.xinfo_groups(keys.traces) if await redis.exists(keys.traces) else []
        if info and info[0]["lag"] == 0 and info[0]["pending"] == 0:
            break
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(task, 5)
    group = (await redis.xinfo_groups(keys.traces))[0]
    assert (group["pending"], group["lag"], group["consumers"]) == (0, 0, 0)


async def test_a_lost_group_is_recreated(redis: Redis, keys: Keys) -> None:
    ing = ingestor(redis, keys)
    stop = asyncio.Event()
    task = asyncio.create_task(ing.run(stop))
    await asyncio.sleep(0.3)
    await redis.delete(keys.traces)  # as after a Redis restart without persistence
    await asyncio.sleep(0.3)
    await redis.xadd(keys.traces, event(1, 10, time.time_ns()))
    for _ in range(60):
        groups = await redis.xinfo_groups(keys.traces)
        if groups and groups[0]["pending"] == 0 and groups[0]["lag"] == 0:
            break
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert ing.series.events.labels("new")._value.get() == 1
