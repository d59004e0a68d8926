"""Promise 2: bad entries are dead-lettered with reason and origin; the rest of the batch counts."""

from __future__ import annotations

import asyncio
from collections import Counter

from redis.asyncio import Redis

from pipeline.buckets import BucketRef, bucket_of
from pipeline.keys import INGEST_GROUP
from pipeline.metrics import Metrics
from tests.reliability.conftest import (
    BASE_NS,
    ZONE,
    Truth,
    drain,
    make_ingestor,
    report,
    us_counts,
)

MB = 1024 * 1024
GOOD = {"trace_id": "ab" * 16, "service": "svc", "endpoint": "GET /x",
        "start_ns": str(BASE_NS), "duration_ms": "12.5"}


def bad(field: str, value: bytes | str | None) -> dict[str, bytes | str]:
    entry: dict[str, bytes | str] = dict(GOOD)
    if value is None:
        del entry[field]
    else:
        entry[field] = value
    return entry


# (entry, the field its error must name)
POISON = [
    (bad("trace_id", None), "trace_id"),
    (bad("duration_ms", None), "duration_ms"),
    (bad("service", None), "service"),
    (bad("trace_id", "not-hex!"), "trace_id"),
    (bad("start_ns", "12.5"), "start_ns"),
    (bad("start_ns", "1700000000"), "start_ns"),  # seconds, not ns
    (bad("duration_ms", "abc"), "duration_ms"),
    (bad("duration_ms", "-5"), "duration_ms"),
    (bad("duration_ms", "NaN"), "duration_ms"),
    (bad("duration_ms", "inf"), "duration_ms"),
    (bad("duration_ms", "1e308"), "duration_ms"),
    (bad("duration_ms", "999999999999999"), "duration_ms"),
    (bad("service", b"caf\xe9\xff"), "service"),
    (bad("endpoint", "x" * MB), "endpoint"),
    (bad("endpoint", "GET /a\nSet-Cookie: x"), "endpoint"),
    (bad("service", "svc\x00"), "service"),
    (bad("endpoint", "\t"), "endpoint"),
    (bad("service", ""), "service"),
]
# Valid, and awkward for the key layout: must be counted under escaped names.
ODD_NAMES = [("{svc}", "GET /a|b"), ("s:v%c", "POST /{id}:x"), ("ünï", "GET /%7B"),
             ("svc", "GET /" + "y" * 200)]


async def test_poison_is_dead_lettered_and_good_entries_in_the_same_batch_count(
    redis: Redis, truth: Truth
) -> None:
    keys = truth.keys
    ids: dict[bytes, str] = {}
    good = 0
    for i, (entry, field) in enumerate(POISON):
        ids[await redis.xadd(keys.traces, entry)] = field
        fields = truth.make(*ODD_NAMES[i % len(ODD_NAMES)], BASE_NS + i)
        await redis.xadd(keys.traces, fields)
        good += 1
    await redis.xadd(keys.traces, {**GOOD, "extra": "z" * MB})  # unknown fields are ignored
    good_bucket = bucket_of(int(GOOD["start_ns"]), ZONE)
    truth.sent[GOOD["trace_id"]] = (BucketRef("svc", "GET /x", good_bucket).id, 12500)
    metrics = Metrics()
    await drain(make_ingestor(redis, keys.prefix, metrics=metrics))

    dead = await redis.xrange(keys.dead)
    assert len(dead) == len(POISON)
    for _id, fields in dead:
        origin = fields[b"origin_id"]
        assert origin in ids
        assert fields[b"error"].decode().startswith(ids[origin] + ":"), fields[b"error"]
        assert fields[b"consumer"] == b"t-ingest"
        assert all(len(v) < 2048 for v in fields.values())  # 1 MB values are clipped
    assert (await redis.xpending(keys.traces, INGEST_GROUP))["pending"] == 0
    assert await _counted(redis, truth) == truth.expected()
    dead_total = metrics.registry.get_sample_value(
        "tla_ingest_events_total", {"outcome": "dead_lettered"})
    assert dead_total == len(POISON)
    report("poison_entries", poison_sent=len(POISON), good_sent=good + 1,
           dead_lettered=len(dead), counted=sum(sum(c.values()) for c in
                                                (await _counted(redis, truth)).values()),
           pending_after=0)


async def _counted(redis: Redis, truth: Truth) -> dict[str, Counter[int]]:
    out = {}
    for bucket in {b for b, _us in truth.sent.values()}:
        out[bucket] = us_counts(await redis.get(truth.keys.dur(bucket)))
    return out


async def test_processing_failure_dead_letters_only_the_culprit(redis: Redis, truth: Truth) -> None:
    keys = truth.keys
    broken = truth.make("svc", "GET /broken", BASE_NS)
    broken_bucket, _ = truth.sent.pop(broken["trace_id"])
    await redis.set(keys.dur(broken_bucket), "not a list")  # not a sample ring: WRONGTYPE
    culprit = await redis.xadd(keys.traces, broken)
    for i in range(30):
        await redis.xadd(keys.traces, truth.make("svc", f"GET /ok{i % 3}", BASE_NS + i))
    await drain(make_ingestor(redis, keys.prefix))

    dead = await redis.xrange(keys.dead)
    assert [f[b"origin_id"] for _i, f in dead] == [culprit]
    assert b"processing failed: WRONGTYPE" in dead[0][1][b"error"]
    assert await _counted(redis, truth) == truth.expected()
    assert (await redis.xpending(keys.traces, INGEST_GROUP))["pending"] == 0
    report("processing_failure", sent=31, counted=30, dead_lettered=1)


async def test_entry_delivered_too_often_is_dead_lettered_and_acked(
    redis: Redis, truth: Truth
) -> None:
    keys = truth.keys
    ingestor = make_ingestor(redis, keys.prefix, ingest_max_deliveries=3,
                             ingest_claim_idle_s=0.05)
    await redis.xgroup_create(keys.traces, INGEST_GROUP, id="0", mkstream=True)
    poison = await redis.xadd(keys.traces, truth.make("svc", "GET /p", BASE_NS))
    truth.sent.clear()
    await redis.xadd(keys.traces, truth.make("svc", "GET /f", BASE_NS))
    gone = await redis.xadd(keys.traces, truth.make("svc", "GET /g", BASE_NS))
    truth.sent.pop(next(reversed(truth.sent)))
    # A consumer that crashed on them: read, never acked. One entry was redelivered 5 times.
    await redis.xreadgroup(INGEST_GROUP, "ghost", {keys.traces: ">"})
    await redis.execute_command("XCLAIM", keys.traces, INGEST_GROUP, "ghost", 0, poison,
                                 "RETRYCOUNT", 5)
    await redis.xdel(keys.traces, gone)  # deleted while pending: XAUTOCLAIM reports it
    await asyncio.sleep(0.1)
    reclaimed = await ingestor.reclaim()

    dead = await redis.xrange(keys.dead)
    assert [f[b"origin_id"] for _i, f in dead] == [poison]
    assert b"delivered 6 times without an ack (max 3)" in dead[0][1][b"error"]
    assert (await redis.xpending(keys.traces, INGEST_GROUP))["pending"] == 0
    assert await _counted(redis, truth) == truth.expected()
    report("max_deliveries", reclaimed=reclaimed, dead_lettered=1, deleted_ids_acked=1,
           counted=1)
