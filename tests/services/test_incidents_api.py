"""`GET /v1/incidents` on a real Redis, fed by the detect stage: newest first, filters,
open vs closed, bad parameters named."""

from __future__ import annotations

import random
from typing import Any, cast

import jsonschema
import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from pipeline.keys import Keys
from services.api import load_openapi
from services.incidents import MAX_SCANNED, PAGE, read_incidents
from tests.pipeline.incidents.test_stage import (
    MIN_MS,
    WEEK_AGO_MS,
    FakeClock,
    detector,
    drain,
    store_baselines,
    traffic,
    xadd_all,
)
from tests.services.test_api import client, serve  # noqa: F401 (fixtures)

pytestmark = pytest.mark.redis


async def two_incidents(redis: Redis, keys: Keys) -> None:
    """checkout: closed (minutes 10-30); cart: open since minute 40 when the replay ends."""
    await store_baselines(redis, keys, WEEK_AGO_MS, 1)
    await store_baselines(redis, keys, WEEK_AGO_MS, 1, service="cart")
    events = traffic(WEEK_AGO_MS, 50, slow=(10, 30), factor=2.5) + traffic(
        WEEK_AGO_MS, 50, slow=(40, 50), factor=2.5, seed=8, service="cart")
    # In start-time order, as a producer publishes (the watermark is the deployment's).
    await xadd_all(redis, keys, sorted(events, key=lambda e: int(e["start_ns"])))
    clock = FakeClock()
    d = detector(redis, keys, clock)
    await d.start()
    await drain(d)
    clock.now += 31
    await d.poll(None)


def validate(incident: dict) -> None:
    doc = load_openapi()
    schema = {**doc["components"]["schemas"]["Incident"], "components": doc["components"]}
    schema["properties"] = {**schema["properties"], "endedMs": {"type": ["integer", "null"]}}
    jsonschema.validate(incident, schema)


async def test_lists_open_and_closed_newest_first(client: TestClient, redis: Redis,  # noqa: F811
                                                  keys: Keys) -> None:
    await two_incidents(redis, keys)
    reply = await (await client.get("/v1/incidents")).json()
    found = reply["incidents"]
    assert [(i["service"], i["state"]) for i in found] == [("cart", "open"), ("checkout", "closed")]
    for i in found:
        validate(i)
    cart, checkout = found
    assert cart["startedMs"] == WEEK_AGO_MS + 40 * MIN_MS and cart["endedMs"] is None
    assert (checkout["startedMs"], checkout["endedMs"]) == (WEEK_AGO_MS + 10 * MIN_MS,
                                                           WEEK_AGO_MS + 30 * MIN_MS)
    assert checkout["reason"].startswith("checkout POST /pay was degraded")
    assert cart["reason"].startswith("cart POST /pay degraded since")
    assert checkout["shareAboveP95"] > 0.5 and checkout["degradedIntervals"] == 20

    only_open = await (await client.get("/v1/incidents?state=open")).json()
    assert [i["service"] for i in only_open["incidents"]] == ["cart"]
    by_service = await (await client.get("/v1/incidents?service=checkout")).json()
    assert [i["service"] for i in by_service["incidents"]] == ["checkout"]
    # since: closed before it → not listed; the open one always is.
    after = await (await client.get(f"/v1/incidents?since={WEEK_AGO_MS + 31 * MIN_MS}")).json()
    assert [i["service"] for i in after["incidents"]] == ["cart"]
    one = await (await client.get("/v1/incidents?limit=1")).json()
    assert len(one["incidents"]) == 1


async def test_nothing_yet_is_an_empty_list(client: TestClient) -> None:  # noqa: F811
    reply = await client.get("/v1/incidents?state=open")
    assert reply.status == 200 and await reply.json() == {"incidents": []}


@pytest.mark.parametrize(("query", "field"), [
    ("state=closed", "state"), ("since=-5", "since"), ("since=abc", "since"),
    ("limit=0", "limit"), ("limit=5000", "limit"), ("service=%0A", "service"),
])
async def test_bad_parameters_name_the_field(client: TestClient, query: str,  # noqa: F811
                                             field: str) -> None:
    reply = await client.get(f"/v1/incidents?{query}")
    assert reply.status == 400
    assert (await reply.json())["field"] == field


class Counting:
    """A Redis proxy counting what read_incidents asks: index pages and incident fetches."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self.pages = 0
        self.fetched = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.redis, name)

    async def zrevrangebyscore(self, *args: Any, **kw: Any) -> Any:
        self.pages += 1
        return await self.redis.zrevrangebyscore(*args, **kw)

    def pipeline(self, transaction: bool = True) -> Any:
        pipe = self.redis.pipeline(transaction=transaction)
        hgetall = pipe.hgetall

        def counted(key: str) -> Any:
            self.fetched += 1
            return hgetall(key)

        pipe.hgetall = counted  # type: ignore[method-assign]
        return pipe


async def test_reads_are_bounded_and_match_a_full_scan(redis: Redis, keys: Keys) -> None:
    """3,000 closed incidents of 20 services, some long (their end order is not their
    start order) and 30 open: each answer equals the full scan's, and only the incidents
    returned are fetched."""
    rng = random.Random(14)
    closed: dict[str, tuple[int, int, str]] = {}
    opened: dict[str, tuple[int, str]] = {}
    async with redis.pipeline(transaction=False) as pipe:
        for i in range(3030):
            service = f"svc-{i % 20}"
            start = WEEK_AGO_MS + rng.randrange(0, 7 * 86_400_000, 60_000)
            incident_id = f"{{{service}|GET /x}}:{start}"
            end = start + rng.choice([5, 10, 30, 600, 3000]) * 60_000
            fields = {"id": incident_id, "service": service, "endpoint": "GET /x",
                      "state": "closed", "started_ms": start, "updated_ms": end,
                      "reason": "r", "requests": 10, "above_p95": 5,
                      "share_above_p95": "0.5", "median_ms": "1", "p50_ms": "1",
                      "p95_ms": "2", "degraded_intervals": 3}
            if i < 3000:
                closed[incident_id] = (start, end, service)
                pipe.hset(keys.incident(incident_id), mapping={**fields, "ended_ms": end})
                pipe.zadd(keys.incidents_closed, {incident_id: end})
            else:
                opened[incident_id] = (start, service)
                pipe.hset(keys.incident(incident_id), mapping={**fields, "state": "open"})
                pipe.zadd(keys.incidents_open, {incident_id: start})
        await pipe.execute()

    def full_scan(state: str, since: int, service: str | None, limit: int) -> list[str]:
        rows = [(s, i) for i, (s, sv) in opened.items() if service in (None, sv)]
        if state == "all":
            rows += [(s, i) for i, (s, e, sv) in closed.items()
                     if e >= since and service in (None, sv)]
        return [i for _s, i in sorted(rows, reverse=True)[:limit]]

    mid = WEEK_AGO_MS + 4 * 86_400_000
    for state, since, service, limit in [("all", 0, None, 100), ("all", 0, "svc-3", 7),
                                         ("all", mid, None, 1000), ("open", 0, None, 5),
                                         ("all", mid, "svc-19", 1), ("all", 0, None, 1)]:
        counting = Counting(redis)
        got = await read_incidents(cast(Redis, counting), keys, state, since, service, limit)
        assert [i["id"] for i in got] == full_scan(state, since, service, limit)
        assert counting.fetched <= limit
        assert counting.pages <= 2 * (MAX_SCANNED // PAGE)
