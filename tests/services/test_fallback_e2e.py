"""Thin buckets and holidays end to end on a real Redis: XADD → ingest → recompute (bucket
and all-hours baselines) → the check API and the anomalies stream, which must agree."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import pytest
from aiohttp.test_utils import RawTestServer, TestClient
from redis.asyncio import Redis

from pipeline import streams
from pipeline.baselines import BaselineStore
from pipeline.buckets import load_zone
from pipeline.ingest import Ingestor
from pipeline.keys import INGEST_GROUP, RECOMPUTE_GROUP, Keys
from pipeline.metrics import Metrics
from pipeline.recompute import Recomputer
from services.api import Api
from services.config import Settings

pytestmark = pytest.mark.redis
TZ = "Asia/Taipei"
ZONE = load_zone(TZ)
NS = 1_000_000_000
# Wednesday 2026-11-25 and Saturday 2026-11-28 in Taipei; 2026-01-01 is a Thursday and
# a Taiwanese holiday, 2026-12-24 a Thursday given as an extra date.
WED, SAT, NEW_YEAR, EVE = (2026, 11, 25), (2026, 11, 28), (2026, 1, 1), (2026, 12, 24)
IDS = itertools.count(1)


def at(day: tuple[int, int, int], hour: int, minute: int = 0) -> int:
    return int(datetime(*day, hour, minute, tzinfo=ZONE).timestamp()) * NS


def settings(prefix: str, **env: str) -> Settings:
    return Settings.load(env={"TLA_KEY_PREFIX": prefix, "TLA_TIMEZONE": TZ,
                              "TLA_RECOMPUTE_INTERVAL_S": "1", "TLA_API_CACHE_TTL_S": "0",
                              "TLA_HOLIDAYS_COUNTRY": "TW", "TLA_HOLIDAYS_EXTRA": "2026-12-24",
                              **env})


async def publish(redis: Redis, keys: Keys, endpoint: str, start_ns: int, *durations: float) -> None:
    for i, ms in enumerate(durations):
        await redis.xadd(keys.traces, {
            "trace_id": f"{next(IDS):032x}", "service": "checkout", "endpoint": endpoint,
            "start_ns": str(start_ns + i * NS), "duration_ms": str(ms)})


def ingestor(s: Settings, redis: Redis) -> Ingestor:
    keys = s.keys()
    return Ingestor(redis, keys, s.ingest, s.rule_params(), ZONE, BaselineStore(redis, keys),
                    Metrics(), "test-ingest", window_s=1, calendar=s.calendar())


async def drain(ing: Ingestor, redis: Redis, keys: Keys) -> None:
    await streams.ensure_group(redis, keys.traces, INGEST_GROUP)
    while entries := await streams.read_new(redis, keys.traces, INGEST_GROUP, ing.consumer,
                                            500, None):
        await ing.handle(entries)


async def recompute(s: Settings, redis: Redis) -> None:
    await streams.ensure_group(redis, s.keys().dirty, RECOMPUTE_GROUP)
    await asyncio.sleep(1.1)  # the marks' window closes
    rec = Recomputer(redis, s.keys(), s.recompute, Metrics(), "test-recompute",
                     bucket_ttl_s=s.ingest.bucket_ttl_s)
    await rec.run_window()


@contextlib.asynccontextmanager
async def api(aiohttp_client: Any, s: Settings, redis: Redis) -> AsyncIterator[TestClient]:
    app = Api(s, redis, Metrics())
    async with app.running():
        client = await aiohttp_client(RawTestServer(app.router))
        try:
            yield client
        finally:
            await client.close()


async def check(client: TestClient, endpoint: str, start_ns: int, ms: float) -> dict[str, Any]:
    reply = await client.post("/v1/anomaly/check", json={
        "rootServiceName": "checkout", "rootTraceName": endpoint,
        "startTimeUnixNano": str(start_ns), "durationMs": ms})
    assert reply.status == 200
    out: dict[str, Any] = await reply.json()
    return out


NORMAL = [100.0 + i % 10 for i in range(100)]
THIN = [100.0, 101.0, 102.0, 103.0, 104.0]


async def learn(redis: Redis, s: Settings) -> None:
    """One endpoint per fallback level, each with a thin 14:00 (or 20:00) weekday bucket."""
    keys = s.keys()
    await publish(redis, keys, "GET /neighbour", at(WED, 13), *NORMAL)
    await publish(redis, keys, "GET /neighbour", at(WED, 14), *THIN)
    await publish(redis, keys, "GET /other", at(SAT, 14), *NORMAL)
    await publish(redis, keys, "GET /other", at(WED, 14), *THIN)
    for hour in (2, 5, 8, 11):  # 60 samples in all, none of these buckets at minSamples 50
        await publish(redis, keys, "GET /endpoint", at(WED, hour), *NORMAL[:15])
    await publish(redis, keys, "GET /endpoint", at(WED, 20), *THIN[:3])
    await publish(redis, keys, "GET /nothing", at(WED, 14), *THIN)
    await publish(redis, keys, "GET /full", at(WED, 14), *NORMAL)
    await drain(ingestor(s, redis), redis, keys)
    await recompute(s, redis)


CASES = [  # endpoint, when, the level that judges, the baseline's id suffix
    ("GET /neighbour", at(WED, 14, 30), "neighbour_hour", ":13:weekday"),
    ("GET /other", at(WED, 14, 30), "other_day_type", ":14:weekend"),
    ("GET /endpoint", at(WED, 20, 30), "endpoint", ":all"),
    ("GET /full", at(WED, 14, 30), "bucket", ":14:weekday"),
]


async def test_thin_buckets_are_judged_through_each_level_by_api_and_ingest_alike(
    redis: Redis, prefix: str, aiohttp_client: Any
) -> None:
    s = settings(prefix)
    await learn(redis, s)
    keys = s.keys()
    all_hours = await redis.hgetall(f"{prefix}base-all:{{checkout|GET /endpoint}}")
    assert all_hours[b"count"] == b"63"  # every sample of the endpoint's buckets

    async with api(aiohttp_client, s, redis) as client:
        verdicts = {}
        for endpoint, when, level, source in CASES:
            v = await check(client, endpoint, when, 912)
            assert (v["status"], v["baseline"]["level"]) == ("anomaly", level), v
            assert v["baseline"]["id"].endswith(source)
            if level != "bucket":
                assert "judged on" in v["reason"] and "fewer than minSamples 50" in v["reason"]
            normal = await check(client, endpoint, when, 105)
            assert normal["status"] == "normal" and normal["baseline"]["level"] == level
            verdicts[endpoint] = v
        nothing = await check(client, "GET /nothing", at(WED, 14, 30), 912)
        assert nothing["status"] == "insufficient_samples"
        assert nothing["reason"].endswith("no fallback level has minSamples either")
        batch = await client.post("/v1/anomaly/check:batch", json={"traces": [
            {"rootServiceName": "checkout", "rootTraceName": e, "startTimeUnixNano": str(w),
             "durationMs": 912} for e, w, _l, _s in CASES]})
        assert [r["reason"] for r in (await batch.json())["results"]] == [
            verdicts[e]["reason"] for e, _w, _l, _s in CASES]

    # Ingest flags the same traces with the same verdicts.
    for endpoint, when, _level, _source in CASES:
        await publish(redis, keys, endpoint, when, 912)
    await publish(redis, keys, "GET /nothing", at(WED, 14, 30), 912)
    await drain(ingestor(s, redis), redis, keys)
    flagged = {f[b"endpoint"].decode(): f for _i, f in await redis.xrange(keys.anomalies)}
    assert set(flagged) == {e for e, _w, _l, _s in CASES}
    for endpoint, _when, level, _source in CASES:
        entry, v = flagged[endpoint], verdicts[endpoint]
        assert entry[b"level"].decode() == level
        assert entry[b"baseline_id"].decode() == v["baseline"]["id"]
        assert entry[b"reason"].decode() == v["reason"]
        assert float(entry[b"threshold_ms"]) == pytest.approx(v["threshold"]["valueMs"], rel=1e-3)


async def test_fallback_off_gives_the_seeds_verdicts(
    redis: Redis, prefix: str, aiohttp_client: Any
) -> None:
    on, off = settings(prefix), settings(prefix, TLA_RULE_FALLBACK="off")
    await learn(redis, on)
    async with api(aiohttp_client, off, redis) as client:
        for endpoint, when, level, _source in CASES:
            v = await check(client, endpoint, when, 912)
            if level == "bucket":
                assert v["status"] == "anomaly"
                async with api(aiohttp_client, on, redis) as with_fallback:
                    assert await check(with_fallback, endpoint, when, 912) == v | {
                        "baseline": {**v["baseline"], "ageS": pytest.approx(
                            v["baseline"]["ageS"], abs=2)}}
                continue
            assert v["status"] == "insufficient_samples" and v["baseline"]["level"] == "bucket"
            assert v["reason"] == (
                f"only {v['baseline']['count']} samples for checkout {endpoint}, "
                f"{v['bucket']['hour']:02d}:00 weekday {TZ} (minSamples 50): not judged yet")
    keys = off.keys()
    for endpoint, when, _level, _source in CASES:
        await publish(redis, keys, endpoint, when, 912)
    await drain(ingestor(off, redis), redis, keys)
    flagged = [f[b"endpoint"] for _i, f in await redis.xrange(keys.anomalies)]
    assert flagged == [b"GET /full"]  # thin buckets are never judged


async def test_a_holiday_is_bucketed_as_weekend_and_verdicts_say_so(
    redis: Redis, prefix: str, aiohttp_client: Any
) -> None:
    s = settings(prefix)
    keys = s.keys()
    await publish(redis, keys, "GET /day", at(NEW_YEAR, 14), *NORMAL[:50])  # TW holiday
    await publish(redis, keys, "GET /day", at(EVE, 14), *NORMAL[50:])  # TLA_HOLIDAYS_EXTRA
    await drain(ingestor(s, redis), redis, keys)
    assert await redis.exists(keys.dur("{checkout|GET /day}:14:weekend"))
    assert not await redis.exists(keys.dur("{checkout|GET /day}:14:weekday"))
    await recompute(s, redis)
    async with api(aiohttp_client, s, redis) as client:
        country = await check(client, "GET /day", at(NEW_YEAR, 14, 30), 912)
        assert country["bucket"]["dayType"] == "weekend"
        assert country["bucket"]["holiday"] == "Founding Day of the Republic of China"
        assert "14:00 weekend (holiday: Founding Day of the Republic of China) Asia/Taipei" \
            in country["reason"]
        assert country["status"] == "anomaly" and country["baseline"]["count"] == 100
        extra = await check(client, "GET /day", at(EVE, 14, 30), 912)
        assert extra["bucket"]["holiday"] == "holiday"
        assert "14:00 weekend (holiday) Asia/Taipei" in extra["reason"]
        ordinary = await check(client, "GET /day", at(WED, 14, 30), 912)
        assert ordinary["bucket"]["holiday"] is None and ordinary["bucket"]["dayType"] == "weekday"
    # Ingest names the holiday too, even in a batch that also holds a Saturday's trace.
    await publish(redis, keys, "GET /day", at(SAT, 14), 912)
    await publish(redis, keys, "GET /day", at(NEW_YEAR, 14, 30), 912)
    await drain(ingestor(s, redis), redis, keys)
    saturday, holiday = (f[b"reason"].decode() for _i, f in await redis.xrange(keys.anomalies))
    assert "14:00 weekend Asia/Taipei" in saturday
    assert holiday == country["reason"]
