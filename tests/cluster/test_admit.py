"""Cluster ingest's admit step: the capped indexes of every service of a batch are asked
together, once per window, and the caps hold as on one node."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio import Redis

from pipeline.keys import Keys
from tests.cluster.test_crash_points import deliver, slot_call
from tests.pipeline.ingest.test_stage import event, ingestor

pytestmark = pytest.mark.redis
SERVICES = [f"svc-{n}" for n in range(5)]  # their endpoint indexes spread over the slots


async def test_every_services_endpoint_index_is_admitted_in_one_round(
    redis: Redis, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(60):
        await redis.xadd(keys.traces, event(i + 1, 10, f"GET /{i % 4}", SERVICES[i % 5]))
    ing = ingestor(redis, keys, max_services=10, max_endpoints_per_service=3)
    admit = slot_call(ing)._admit
    rounds: list[list[Any]] = []
    real = admit.many

    async def recorded(calls: list[Any]) -> list[Any]:
        rounds.append(calls)
        return await real(calls)

    monkeypatch.setattr(admit, "many", recorded)
    await ing.handle(await deliver(ing))
    assert [len(r) for r in rounds] == [1, len(SERVICES)]  # the service index, then all
    assert {r[0][0] for r in rounds[1]} == {keys.endpoints(s).encode() for s in SERVICES}
    for svc in SERVICES:
        assert await redis.zcard(keys.endpoints(svc)) == 3
    assert await redis.zcard(keys.services) == len(SERVICES)
    assert len(await redis.xrange(keys.dead)) == 5 * 3  # each service's 4th endpoint

    rounds.clear()  # the same pairs again in this window: nothing asked
    for i in range(60, 70):
        svc = i % 5  # svc-k's first endpoint, GET /{k % 4}, was admitted
        await redis.xadd(keys.traces, event(i + 1, 10, f"GET /{svc % 4}", SERVICES[svc]))
    await ing.handle(await deliver(ing))
    assert rounds == []
