"""Promise 8: over-long names are rejected clearly; caps on endpoints per service and on
services bound cardinality."""

from __future__ import annotations

import logging
import time

import pytest
from redis.asyncio import Redis

from pipeline.buckets import MAX_ENDPOINT_CHARS, MAX_SERVICE_CHARS
from pipeline.keys import INGEST_GROUP
from pipeline.metrics import Metrics
from tests.reliability.conftest import BASE_NS, Truth, drain, make_ingestor, report

CAP = 20
IDS = 100  # "GET /users/<id>": one endpoint per request


async def test_names_over_the_limit_are_dead_lettered_with_the_limit(
    redis: Redis, sredis, truth: Truth
) -> None:
    keys = truth.keys
    ok_service = "s" * MAX_SERVICE_CHARS
    ok_endpoint = "e" * MAX_ENDPOINT_CHARS
    await redis.xadd(keys.traces, truth.make(ok_service, ok_endpoint, BASE_NS))
    long_service = truth.make("s" * (MAX_SERVICE_CHARS + 1), "GET /", BASE_NS)
    long_endpoint = truth.make("svc", "e" * (MAX_ENDPOINT_CHARS + 1), BASE_NS)
    for fields in (long_service, long_endpoint):
        truth.sent.pop(fields["trace_id"])
        await redis.xadd(keys.traces, fields)
    await drain(make_ingestor(redis, keys.prefix))
    errors = sorted(f[b"error"].decode() for _i, f in await redis.xrange(keys.dead))
    assert errors == [
        f"endpoint: is {MAX_ENDPOINT_CHARS + 1} characters, the limit is {MAX_ENDPOINT_CHARS}",
        f"service: is {MAX_SERVICE_CHARS + 1} characters, the limit is {MAX_SERVICE_CHARS}",
    ]
    assert sum(sum(c.values()) for c in truth.counted(sredis).values()) == 1


async def test_endpoint_cap_bounds_cardinality_with_metric_and_log(
    redis: Redis, truth: Truth, caplog: pytest.LogCaptureFixture
) -> None:
    keys = truth.keys
    metrics = Metrics()
    ingestor = make_ingestor(redis, keys.prefix, metrics=metrics,
                             ingest_max_endpoints_per_service=CAP)
    for i in range(IDS):
        await redis.xadd(keys.traces, truth.make("users", f"GET /users/{i}", BASE_NS + i))
    for i in range(5):  # another service is not affected
        await redis.xadd(keys.traces, truth.make("cart", f"GET /c{i}", BASE_NS + i))
    with caplog.at_level(logging.ERROR, logger="pipeline.ingest"):
        await drain(ingestor)
    tracked = await redis.zcard(keys.endpoints("users"))
    dead = await redis.xrange(keys.dead)
    capped = metrics.registry.get_sample_value("tla_ingest_endpoint_cap_rejected_total")
    shouts = [r for r in caplog.records if "event=endpoint_cap_reached" in r.getMessage()]
    assert tracked == CAP
    assert len(dead) == IDS - CAP and capped == IDS - CAP
    assert all(b"TLA_INGEST_MAX_ENDPOINTS_PER_SERVICE" in f[b"error"] for _i, f in dead)
    assert len(shouts) == 1  # rate-limited: once per service per minute
    assert (await redis.xpending(keys.traces, INGEST_GROUP))["pending"] == 0
    dur_keys = [k async for k in redis.scan_iter(match=f"{keys.prefix}dur:*", count=1000)]
    assert len(dur_keys) == CAP + 5

    # A tracked endpoint keeps counting at the cap; an endpoint idle past the bucket TTL
    # frees its slot for a new one.
    await redis.xadd(keys.traces, truth.make("users", "GET /users/0", BASE_NS + 7))
    stale = time.time() - 15 * 86400
    await redis.zadd(keys.endpoints("users"), {"GET /users/1": stale})
    await redis.xadd(keys.traces, truth.make("users", "GET /users/new", BASE_NS + 8))
    await drain(ingestor)
    assert len(await redis.xrange(keys.dead)) == IDS - CAP
    members = {m.decode() for m in await redis.zrange(keys.endpoints("users"), 0, -1)}
    assert "GET /users/new" in members and "GET /users/1" not in members
    report("input_bounds", endpoints_sent=IDS, cap=CAP, tracked=tracked,
           dead_lettered=len(dead), cap_metric=int(capped or 0), cap_log_lines=len(shouts),
           other_service_counted=5)


async def test_service_cap_bounds_cardinality_with_metric_and_log(
    redis: Redis, sredis, truth: Truth, caplog: pytest.LogCaptureFixture
) -> None:
    """A producer that puts pod names in the service name must not grow Redis without bound."""
    keys = truth.keys
    metrics = Metrics()
    ingestor = make_ingestor(redis, keys.prefix, metrics=metrics, ingest_max_services=3)
    for i in range(10):
        fields = truth.make(f"checkout-7f9c-{i}", "POST /pay", BASE_NS + i)
        if i >= 3:
            truth.sent.pop(fields["trace_id"])  # expected dead-lettered, never counted
        await redis.xadd(keys.traces, fields)
    with caplog.at_level(logging.ERROR, logger="pipeline.ingest"):
        await drain(ingestor)
    dead = await redis.xrange(keys.dead)
    assert len(dead) == 7
    assert all(b"TLA_INGEST_MAX_SERVICES" in f[b"error"] for _i, f in dead)
    assert metrics.registry.get_sample_value("tla_ingest_service_cap_rejected_total") == 7
    assert metrics.registry.get_sample_value("tla_ingest_endpoint_cap_rejected_total") == 0
    assert len([r for r in caplog.records if "event=service_cap_reached" in r.getMessage()]) == 1
    assert await redis.zcard(keys.services) == 3
    assert truth.counted(sredis) == truth.expected()
    assert (await redis.xpending(keys.traces, INGEST_GROUP))["pending"] == 0

    # A tracked service keeps counting; one idle past the bucket TTL frees its slot.
    await redis.zadd(keys.services, {"checkout-7f9c-0": time.time() - 15 * 86400})
    await redis.xadd(keys.traces, truth.make("checkout-7f9c-1", "GET /other", BASE_NS))
    await redis.xadd(keys.traces, truth.make("cart", "POST /add", BASE_NS))
    await drain(ingestor)
    assert len(await redis.xrange(keys.dead)) == 7
    members = {m.decode() for m in await redis.zrange(keys.services, 0, -1)}
    assert members == {"checkout-7f9c-1", "checkout-7f9c-2", "cart"}
