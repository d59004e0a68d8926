"""The detect stage end to end on a real Redis: traffic XADDed to `<p>traces` (a replay
of last week's) → incidents with their real start and end; late traces within the
lateness counted, later ones not; redelivery counts nothing twice; state and watermark
survive a restart."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from pipeline import streams
from pipeline.baselines import BaselineStore
from pipeline.buckets import BucketRef, ZoneBuckets, load_zone
from pipeline.incidents import Detector, IncidentSettings
from pipeline.incidents.metrics import IncidentMetrics
from pipeline.incidents.stage import LeaseLost
from pipeline.keys import INCIDENTS_GROUP, Keys
from pipeline.metrics import Metrics
from pipeline.stats import Baseline

pytestmark = pytest.mark.redis
ZONE = load_zone("Asia/Taipei")
MIN_MS = 60_000
# A week ago, on a minute boundary: the replayed incident's real time.
WEEK_AGO_MS = (int(time.time() * 1000) - 7 * 86_400_000) // 3_600_000 * 3_600_000
SERVICE, ENDPOINT = "checkout", "POST /pay"
RATE_PER_MIN = 60


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def detector(redis: Redis, keys: Keys, clock: FakeClock | None = None,
             metrics: Metrics | None = None, **kw: object) -> Detector:
    s = IncidentSettings(batch_size=500, **kw)  # type: ignore[arg-type]
    return Detector(redis, keys, s, s.params(min_samples=50), ZONE, BaselineStore(redis, keys),
                    metrics or Metrics(), "test-detect", lateness_s=180, idle_flush_s=30,
                    clock=clock or FakeClock())


async def store_baselines(redis: Redis, keys: Keys, start_ms: int, hours: int,
                          service: str = SERVICE) -> None:
    """p50 100 ms, p95 ~160 ms for every hour the traffic touches."""
    buckets = ZoneBuckets(ZONE)
    for h in range(hours + 1):
        b = buckets((start_ms + h * 3_600_000) * 1_000_000)
        ref = BucketRef(service, ENDPOINT, b)
        await redis.hset(keys.base(ref.id), mapping=Baseline(100, 160, 15, 1000, 1).to_hash())


def traffic(start_ms: int, minutes: int, slow: tuple[int, int], factor: float,
            seed: int = 7, service: str = SERVICE) -> list[dict[str, str]]:
    """RATE_PER_MIN requests a minute, lognormal around 100 ms; minutes [slow) x factor."""
    rng = np.random.default_rng(seed)
    out = []
    for m in range(minutes):
        f = factor if slow[0] <= m < slow[1] else 1.0
        for i, d in enumerate(rng.lognormal(np.log(100), 0.2, RATE_PER_MIN) * f):
            out.append({"trace_id": f"{seed:04x}{m:08x}{i:08x}", "service": service,
                        "endpoint": ENDPOINT,
                        "start_ns": str((start_ms + m * MIN_MS + i * 997) * 1_000_000),
                        "duration_ms": f"{d:.3f}"})
    return out


async def xadd_all(redis: Redis, keys: Keys, events: list[dict[str, str]]) -> None:
    async with redis.pipeline(transaction=False) as pipe:
        for e in events:
            pipe.xadd(keys.traces, e)  # type: ignore[arg-type]
        await pipe.execute()


async def drain(d: Detector) -> None:
    while await d.poll(None):
        pass


async def incidents(redis: Redis, keys: Keys) -> list[dict[str, str]]:
    return [{k.decode(): v.decode() for k, v in f.items()}
            for _i, f in await redis.xrange(keys.incidents)]


async def test_a_replayed_week_finds_its_incident_with_real_start_and_end(
    redis: Redis, keys: Keys
) -> None:
    await store_baselines(redis, keys, WEEK_AGO_MS, 2)
    await xadd_all(redis, keys, traffic(WEEK_AGO_MS, 90, slow=(30, 55), factor=2.0))
    clock = FakeClock()
    metrics = Metrics()
    d = detector(redis, keys, clock, metrics)
    await d.start()
    await drain(d)
    # The newest start is at 89:59: intervals that ended 3 min (the lateness) before it
    # are judged, minute 86 (ends 87:00 > 86:59) is not yet.
    assert d.judged_ms == WEEK_AGO_MS + 86 * MIN_MS
    opened = await incidents(redis, keys)
    assert [e["state"] for e in opened][:1] == ["open"]
    assert int(opened[0]["started_ms"]) == WEEK_AGO_MS + 30 * MIN_MS
    clock.now += 31  # the replay ended: the idle flush judges the rest
    await d.poll(None)
    entries = await incidents(redis, keys)
    closed = [e for e in entries if e["state"] == "closed"]
    assert len(closed) == 1, entries
    c = closed[0]
    assert int(c["started_ms"]) == WEEK_AGO_MS + 30 * MIN_MS
    assert int(c["ended_ms"]) == WEEK_AGO_MS + 55 * MIN_MS
    assert c["degraded_intervals"] == "25" and float(c["share_above_p95"]) > 0.5
    assert c["reason"].startswith("checkout POST /pay was degraded ")
    assert "(25 min)" in c["reason"] and "above p95 160 ms (expected 5 %)" in c["reason"]
    assert await redis.zcard(keys.incidents_open) == 0
    assert await redis.zscore(keys.incidents_closed, c["id"]) == int(c["ended_ms"])
    stored = await redis.hgetall(keys.incident(c["id"]))
    assert stored[b"state"] == b"closed" and stored[b"ended_ms"] == c["ended_ms"].encode()
    # Nothing left behind: intervals deleted, every entry acked.
    assert await redis.zcard(keys.incident_intervals) == 0
    assert (await redis.xpending(keys.traces, INCIDENTS_GROUP))["pending"] == 0
    part = metrics.part(IncidentMetrics)
    assert part.opened.labels(SERVICE)._value.get() == 1
    assert part.closed._value.get() == 1
    assert part.open._value.get() == 0


async def test_normal_traffic_opens_nothing(redis: Redis, keys: Keys) -> None:
    await store_baselines(redis, keys, WEEK_AGO_MS, 3)
    await xadd_all(redis, keys, traffic(WEEK_AGO_MS, 180, slow=(0, 0), factor=1.0, seed=3))
    clock = FakeClock()
    d = detector(redis, keys, clock)
    await d.start()
    await drain(d)
    clock.now += 31
    await d.poll(None)
    assert await incidents(redis, keys) == []


async def test_late_traces_within_the_lateness_count_and_later_ones_do_not(
    redis: Redis, keys: Keys
) -> None:
    await store_baselines(redis, keys, WEEK_AGO_MS, 1)
    events = traffic(WEEK_AGO_MS, 12, slow=(0, 0), factor=1.0)
    minute_2 = [e for e in events if int(e["start_ns"]) // 1_000_000 // MIN_MS
                == WEEK_AGO_MS // MIN_MS + 2]
    others = [e for e in events if e not in minute_2]
    metrics = Metrics()
    d = detector(redis, keys, FakeClock(), metrics)
    await d.start()
    # Minutes 0-1 and 3-4 first; minute 2 arrives two minutes late (lateness: 3).
    await xadd_all(redis, keys, [e for e in others if int(e["start_ns"]) < (WEEK_AGO_MS + 5 * MIN_MS) * 1_000_000])
    await drain(d)
    assert d.judged_ms == WEEK_AGO_MS + MIN_MS  # 5 min seen - 3 lateness → minute 0 closed
    await xadd_all(redis, keys, minute_2[:30])
    await drain(d)
    key = keys.interval(BucketRef(SERVICE, ENDPOINT, ZoneBuckets(ZONE)(0)).tag,
                        WEEK_AGO_MS + 2 * MIN_MS)
    assert await redis.hlen(key) == 30 + 2  # the traces, @bucket, @ref
    # The rest of the hour pushes the watermark past minute 2; then its stragglers are late.
    await xadd_all(redis, keys, [e for e in others if e not in minute_2
                                 and int(e["start_ns"]) >= (WEEK_AGO_MS + 5 * MIN_MS) * 1_000_000])
    await drain(d)
    assert not await redis.exists(key)  # judged
    await xadd_all(redis, keys, minute_2[30:])
    await drain(d)
    assert metrics.part(IncidentMetrics).late_events._value.get() == 30


async def test_redelivered_entries_count_once_and_state_survives_a_restart(
    redis: Redis, keys: Keys
) -> None:
    await store_baselines(redis, keys, WEEK_AGO_MS, 1)
    await xadd_all(redis, keys, traffic(WEEK_AGO_MS, 10, slow=(2, 10), factor=3.0))
    d = detector(redis, keys)
    await d.start()
    await drain(d)
    # At-least-once: the same entries delivered again (a crash before the ack).
    await d.handle(await redis.xrange(keys.traces))
    tag = BucketRef(SERVICE, ENDPOINT, ZoneBuckets(ZONE)(0)).tag
    for m in range(7, 10):  # minutes the watermark has not closed yet
        assert await redis.hlen(keys.interval(tag, WEEK_AGO_MS + m * MIN_MS)) == RATE_PER_MIN + 2
    (opened,) = await incidents(redis, keys)
    assert opened["state"] == "open" and opened["requests"] == "180"
    # A new instance (takeover, once the old one's lease ran out) resumes the clock and
    # the endpoint's open incident.
    await d.lease.release()
    again = detector(redis, keys)
    await again.start()
    assert (again.judged_ms, again.max_event_ms) == (d.judged_ms, d.max_event_ms)
    await xadd_all(redis, keys, traffic(WEEK_AGO_MS + 10 * MIN_MS, 20, slow=(0, 0), factor=1.0,
                                        seed=9))
    await drain(again)
    closed = [e for e in await incidents(redis, keys) if e["state"] == "closed"]
    assert len(closed) == 1
    assert int(closed[0]["ended_ms"]) == WEEK_AGO_MS + 10 * MIN_MS
    assert closed[0]["requests"] != "180"


async def run_through(d: Detector, clock: FakeClock) -> None:
    """Read everything, then let the idle flush judge every interval."""
    await d.start()
    await drain(d)
    clock.now += 31
    await d.poll(None)


@pytest.mark.parametrize("point", ["after_judge", "after_xadd", "before_delete"])
async def test_a_crash_between_judging_and_publishing_loses_and_repeats_no_change(
    redis: Redis, keys: Keys, prefix: str, point: str
) -> None:
    """docs/incidents.md, "Crash safety": each instance dies at `point` of its first
    publication of a change (judged, not yet published / entries added, indexes not /
    all published, record not deleted); the next one recovers. The stream must read as
    one uninterrupted run's, and the indexes agree."""
    events = traffic(WEEK_AGO_MS, 50, slow=(5, 30), factor=3.0)
    ref_keys = Keys(f"{prefix}ref:")
    for k in (keys, ref_keys):
        await store_baselines(redis, k, WEEK_AGO_MS, 1)
        await xadd_all(redis, k, events)
    await run_through(detector(redis, ref_keys), FakeClock())
    expected = await incidents(redis, ref_keys)
    assert [e["state"] for e in expected][::len(expected) - 1] == ["open", "closed"]

    clock, crashes = FakeClock(), 0
    while True:
        d = detector(redis, keys, clock)
        publish = d._publish

        async def crash(tag: str, record: bytes, there: set[tuple[str, str, str]] | None = None,
                        publish=publish) -> None:  # type: ignore[no-untyped-def]
            if there is not None or not json.loads(record)["entries"]:
                return await publish(tag, record, there)  # recovery, or nothing to publish
            if point == "after_xadd":
                for e in json.loads(record)["entries"]:
                    await redis.xadd(keys.incidents, e)
            elif point == "before_delete":
                await publish(tag, record)
                await redis.set(keys.incident_pending(tag), record)
            raise RedisConnectionError("the stage died here")

        d._publish = crash  # type: ignore[method-assign]
        try:
            await run_through(d, clock)
            break
        except RedisConnectionError:
            crashes += 1
            await d.lease.release()  # its lease ran out
        assert crashes < 100
    # One per record with changes (a round's changes of the endpoint), each recovered.
    assert 2 <= crashes <= len(expected)
    got = await incidents(redis, keys)
    assert got == expected
    closed = expected[-1]["id"]
    assert await redis.zcard(keys.incidents_open) == 0
    assert await redis.zscore(keys.incidents_closed, closed) == int(expected[-1]["ended_ms"])
    assert await redis.zcard(keys.incident_intervals) == 0
    tag = closed.rpartition(":")[0]
    assert not await redis.exists(keys.incident_pending(tag))
    assert (await redis.hgetall(keys.incident(closed)))[b"state"] == b"closed"


async def test_a_detector_that_lost_its_lease_writes_nothing(redis: Redis, keys: Keys) -> None:
    await store_baselines(redis, keys, WEEK_AGO_MS, 1)
    await xadd_all(redis, keys, traffic(WEEK_AGO_MS, 20, slow=(2, 10), factor=3.0))
    clock = FakeClock()
    stale, other = detector(redis, keys, clock), detector(redis, keys, clock)
    await stale.start()
    while await stale.handle(await streams.read_new(redis, keys.traces, INCIDENTS_GROUP,
                                                    "test-detect", 500, None)):
        pass
    # Its lease expired while it was paused, and another instance holds it now.
    await redis.delete(keys.incidents_lease)
    assert await other.lease.acquire()
    clock.now += 31
    with pytest.raises(LeaseLost):
        await stale.judge_due()
    assert await redis.xlen(keys.incidents) == 0
    assert await redis.zcard(keys.incident_intervals) > 0
    assert stale.judged_ms == 0


async def test_a_standby_waits_for_the_lease(redis: Redis, keys: Keys) -> None:
    leader, standby = detector(redis, keys), detector(redis, keys)
    assert await leader.lease.acquire()
    assert not await standby.lease.acquire()
    await leader.lease.release()
    assert await standby.lease.acquire()


async def test_group_is_independent_of_ingest(redis: Redis, keys: Keys) -> None:
    d = detector(redis, keys)
    await d.start()
    groups = {g["name"] for g in await redis.xinfo_groups(keys.traces)}
    assert groups == {INCIDENTS_GROUP.encode()}
    assert await streams.safe_trim(redis, keys.traces) == 0
