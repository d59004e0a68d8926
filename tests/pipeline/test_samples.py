"""The sample ring (pipeline/samples.py, written by ingest.lua): it holds the newest
windowSize samples in order whatever the batch sizes, survives a windowSize change, and
takes over the LISTs older versions left."""

from __future__ import annotations

import logging
import random
import struct
import time

import numpy as np
import pytest
from redis.asyncio import Redis

from pipeline import samples, streams
from pipeline.baselines import BaselineStore
from pipeline.buckets import BucketRef, bucket_of, load_zone
from pipeline.ingest import Ingestor, IngestSettings
from pipeline.keys import INGEST_GROUP, Keys
from pipeline.metrics import Metrics
from pipeline.recompute import Recomputer, RecomputeSettings
from pipeline.rule import RuleSettings

ZONE = load_zone("UTC")
NOW_NS = time.time_ns()
REF = BucketRef("checkout", "POST /pay", bucket_of(NOW_NS, ZONE))


def test_encode_decode_and_order() -> None:
    raw = samples.encode([1.5, 2.25, 150.0])
    assert len(raw) == 8 + 3 * 4
    assert samples.decode(raw).tolist() == [1.5, 2.25, 150.0]
    assert samples.decode(None).size == 0 and samples.decode(b"").size == 0
    # A full ring whose oldest sample sits in slot 2: read back oldest first.
    ring = struct.pack("<II", 5, 2) + np.array([4, 5, 1, 2, 3], dtype="<f4").tobytes()
    assert samples.in_order(ring).tolist() == [1, 2, 3, 4, 5]
    assert samples.decode(ring).tolist() == [4, 5, 1, 2, 3]  # statistics need no order
    # A filling ring: 3 samples, 2 free slots that are not samples.
    filling = struct.pack("<II", 3, 3) + np.array([7, 8, 9, 0, 0], dtype="<f4").tobytes()
    assert samples.decode(filling).tolist() == samples.in_order(filling).tolist() == [7, 8, 9]


def test_float32_keeps_what_a_latency_needs() -> None:
    for ms in (0.001, 0.5, 150.123, 29_999.9, 604_800_000.0):
        (back,) = struct.unpack("<f", samples.pack_ms(ms))
        assert abs(back - ms) <= ms * 2**-24


def test_malformed_strings_and_legacy_lists() -> None:
    for bad in (b"x", b"not a list", b"\0" * 9):
        assert not samples.is_ring(bad)
        with pytest.raises(samples.MalformedSamples):
            samples.decode(bad)
    assert samples.decode_legacy([b"300000", b"500", b"120000"]).tolist() == [120.0, 0.5, 300.0]


def ingestor(redis: Redis, keys: Keys, window_size: int) -> Ingestor:
    rule = RuleSettings(window_size=window_size).params()
    return Ingestor(redis, keys, IngestSettings(batch_size=50, block_ms=100), rule, ZONE,
                    BaselineStore(redis, keys), Metrics(), f"test-ring-{window_size}",
                    window_s=3600)


async def feed(redis: Redis, keys: Keys, ing: Ingestor, durations: list[float], first: int) -> None:
    for i, ms in enumerate(durations, first):
        await redis.xadd(keys.traces, {"trace_id": f"{i:x}", "service": REF.service,
                                       "endpoint": REF.endpoint, "start_ns": str(NOW_NS),
                                       "duration_ms": str(ms)})
    await streams.ensure_group(redis, keys.traces, INGEST_GROUP)
    while entries := await streams.read_new(redis, keys.traces, INGEST_GROUP, ing.consumer,
                                            ing.settings.batch_size, None):
        await ing.handle(entries)


@pytest.mark.redis
async def test_the_ring_keeps_the_newest_window_in_order_whatever_the_batches(
    redis: Redis, keys: Keys
) -> None:
    rng = random.Random(7)
    ing = ingestor(redis, keys, window_size=13)
    sent: list[float] = []
    for _ in range(40):  # fills, fills up mid-batch, wraps, wraps twice within a batch
        batch = [float(len(sent) + k + 1) for k in range(rng.choice([1, 2, 5, 12, 13, 30, 60]))]
        await feed(redis, keys, ing, batch, len(sent))
        sent += batch
        assert (await samples.read(redis, keys, REF.id)).tolist() == sent[-13:], len(sent)
    raw = await redis.get(keys.dur(REF.id))
    assert len(raw) == 8 + 13 * 4  # header + windowSize samples, nothing more
    assert await redis.ttl(keys.dur(REF.id)) > 86400


@pytest.mark.redis
async def test_a_window_size_change_keeps_the_newest_samples(redis: Redis, keys: Keys) -> None:
    sent = [float(i) for i in range(1, 26)]
    await feed(redis, keys, ingestor(redis, keys, 10), sent, 0)  # full and wrapped
    shrunk = ingestor(redis, keys, 4)
    await feed(redis, keys, shrunk, [100.0], 100)
    assert (await samples.read(redis, keys, REF.id)).tolist() == [23.0, 24.0, 25.0, 100.0]
    grown = ingestor(redis, keys, 8)
    await feed(redis, keys, grown, [101.0, 102.0], 200)  # a full ring of 4 grows to 8
    await feed(redis, keys, grown, [103.0], 300)
    assert (await samples.read(redis, keys, REF.id)).tolist() == [
        23.0, 24.0, 25.0, 100.0, 101.0, 102.0, 103.0]


@pytest.mark.redis
async def test_a_list_left_by_an_older_version_is_read_then_converted(
    redis: Redis, keys: Keys
) -> None:
    key = keys.dur(REF.id)
    await redis.lpush(key, *[100_000] * 40, *[300_500] * 20)  # integer us; the last is newest
    await redis.expire(key, 5000)
    recomputer = Recomputer(redis, keys, RecomputeSettings(), Metrics(), "t",
                            bucket_ttl_s=IngestSettings().bucket_ttl_s)
    (before,) = await recomputer.recompute([REF.id])  # recompute reads the list as it is
    assert (before.count, before.p50) == (60, 100.0)

    await feed(redis, keys, ingestor(redis, keys, 1000), [7.0], 0)
    assert await redis.type(key) == b"string"
    assert (await samples.read(redis, keys, REF.id)).tolist() == [100.0] * 40 + [300.5] * 20 + [7.0]
    assert await redis.ttl(key) > 5000  # a bucket that gets samples lives on, as before
    (after,) = await recomputer.recompute([REF.id])
    assert (after.count, after.p50) == (61, 100.0)


@pytest.mark.redis
async def test_recompute_leaves_out_a_key_that_is_not_a_ring(
    redis: Redis, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    good = BucketRef("checkout", "GET /ok", REF.bucket)
    await redis.set(keys.dur(good.id), samples.encode([50.0] * 60))
    await redis.set(keys.dur(REF.id), "not a ring")
    await redis.hset(keys.base(REF.id), mapping={"p50": "1", "p95": "2", "mad": "0",
                                                 "count": "60", "updated_ms": "0"})
    recomputer = Recomputer(redis, keys, RecomputeSettings(), Metrics(), "t",
                            bucket_ttl_s=IngestSettings().bucket_ttl_s)
    with caplog.at_level(logging.WARNING):
        (computed,) = await recomputer.recompute([REF.id, good.id])
    assert computed.p50 == 50.0
    assert "event=bad_samples" in caplog.text
    assert await redis.hget(keys.base(REF.id), "p50") == b"1"  # kept, not overwritten


@pytest.mark.redis
async def test_growing_the_window_keeps_order_when_the_ring_had_wrapped(
    redis: Redis, keys: Keys
) -> None:
    small = ingestor(redis, keys, 10)
    for i in range(1, 26):  # one sample per batch: the ring wraps, its header ends at 5
        await feed(redis, keys, small, [float(i)], i)
    assert struct.unpack("<II", (await redis.get(keys.dur(REF.id)))[:8]) == (10, 5)
    await feed(redis, keys, ingestor(redis, keys, 20), [100.0, 101.0], 100)  # same window
    assert (await samples.read(redis, keys, REF.id)).tolist() == [
        *map(float, range(16, 26)), 100.0, 101.0]


@pytest.mark.redis
async def test_a_bad_header_is_rewritten_not_grown(redis: Redis, keys: Keys) -> None:
    values = [float(i) for i in range(1, 11)]
    await redis.set(keys.dur(REF.id), struct.pack("<II", 10, 11) + samples.encode(values)[8:])
    await feed(redis, keys, ingestor(redis, keys, 10), [99.0], 0)
    raw = await redis.get(keys.dur(REF.id))
    assert len(raw) == 8 + 10 * 4
    assert samples.in_order(raw).tolist() == [*values[1:], 99.0]


@pytest.mark.redis
async def test_a_filling_ring_keeps_at_most_a_quarter_of_free_slots(
    redis: Redis, keys: Keys
) -> None:
    ing = ingestor(redis, keys, 1000)
    for i in range(1, 121):  # one sample per call, as a quiet endpoint's arrive
        await feed(redis, keys, ing, [float(i)], i)
        slots = (len(await redis.get(keys.dur(REF.id))) - 8) // 4
        assert i <= slots <= max(16, i + -(-i // 4)), (i, slots)
    assert (await samples.read(redis, keys, REF.id)).tolist() == [float(i) for i in range(1, 121)]
