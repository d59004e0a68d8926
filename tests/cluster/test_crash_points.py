"""Cluster ingest, crash point by crash point (docs/guarantees.md walks the same list).

A batch on a cluster is: admit, one ingest.lua call per slot, XADD anomalies and dirty
marks, flag the marks published, XACK. Each test makes the consumer die at one point
(the next step raises, as a SIGKILL would stop it there) and a fresh consumer of the
same name redeliver its pending entries: afterwards every sample is counted exactly
once, every bucket has a dirty entry, no mark is left unpublished, nothing is pending.
"""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio import Redis

from pipeline import samples, streams
from pipeline.ingest import Ingestor
from pipeline.ingest.slots import SlotIngest
from pipeline.keys import INGEST_GROUP, Keys
from tests.pipeline.ingest.test_stage import event, ingestor, ref

pytestmark = pytest.mark.redis
ENDPOINTS = [f"GET /{n}" for n in range(12)]  # spread over the three primaries' slots


class Crash(Exception):
    """The consumer 'dies' here."""


async def _die(*_args: Any, **_kw: Any) -> None:
    raise Crash


def slot_call(ing: Ingestor) -> SlotIngest:
    call = ing._call
    assert isinstance(call, SlotIngest)
    return call


async def produce(redis: Redis, keys: Keys, start: int = 0) -> None:
    for i in range(start, start + 120):
        await redis.xadd(keys.traces, event(i + 1, 10 + i % 5, ENDPOINTS[i % len(ENDPOINTS)]))


async def deliver(ing: Ingestor) -> list[streams.Entry]:
    await streams.ensure_group(ing.redis, ing.keys.traces, INGEST_GROUP)
    return await streams.read_new(ing.redis, ing.keys.traces, INGEST_GROUP, ing.consumer, 500,
                                  None)


async def assert_whole(redis: Redis, keys: Keys, per_bucket: int = 10) -> None:
    marked = {f[b"bucket"].decode() for _i, f in await redis.xrange(keys.dirty)}
    for ep in ENDPOINTS:
        bucket = ref(ep).id
        assert len(await samples.read(redis, keys, bucket)) == per_bucket, ep
        assert bucket in marked, ep
        mark = await redis.get(keys.mark(bucket))
        assert mark is not None and not mark.endswith(b"!"), (ep, mark)
    assert (await redis.xpending(keys.traces, INGEST_GROUP))["pending"] == 0


@pytest.mark.parametrize("point", ["some_slots", "before_publish", "before_flag", "before_ack"])
async def test_a_consumer_dying_at_each_point_loses_and_doubles_nothing(
    redis: Redis, keys: Keys, monkeypatch: pytest.MonkeyPatch, point: str
) -> None:
    await produce(redis, keys)
    dying = ingestor(redis, keys)
    call = slot_call(dying)
    if point == "some_slots":  # the first slot's call applies, every later one "dies"
        script = call.call._script
        real = script.many

        async def first_only(calls: list[Any]) -> Any:
            await real(calls[:1])
            raise Crash  # the other slots' calls never reached Redis

        monkeypatch.setattr(script, "many", first_only)
    elif point == "before_publish":
        monkeypatch.setattr(call, "_publish", _die)
    elif point == "before_flag":
        monkeypatch.setattr(call._mark_published, "many", _die)
    else:
        monkeypatch.setattr(call.redis, "xack", _die)
    with pytest.raises(Crash):
        await dying.handle(await deliver(dying))
    monkeypatch.undo()
    assert (await redis.xpending(keys.traces, INGEST_GROUP))["pending"] == 120

    heir = ingestor(redis, keys)  # same consumer name: re-reads its own pending entries
    await heir._drain_own_pending()
    await assert_whole(redis, keys)


async def test_redelivery_in_a_later_window_still_publishes_the_old_mark(
    redis: Redis, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unpublished mark lives as long as the dedup keys (a redelivery can come windows
    later, after XAUTOCLAIM's idle time) and is published with its own window, which
    recompute then treats as closed."""
    await produce(redis, keys)
    dying = ingestor(redis, keys)
    monkeypatch.setattr(slot_call(dying), "_publish", _die)
    with pytest.raises(Crash):
        await dying.handle(await deliver(dying))
    monkeypatch.undo()
    for ep in ENDPOINTS:  # as if the crash happened five windows ago
        mark_key = keys.mark(ref(ep).id)
        window = int((await redis.get(mark_key)).rstrip(b"!"))
        assert await redis.ttl(mark_key) >= dying.settings.dedup_ttl_s - 5
        await redis.set(mark_key, f"{window - 5}!", keepttl=True)
    heir = ingestor(redis, keys)
    await heir._drain_own_pending()
    await assert_whole(redis, keys)
    assert {f[b"window"] for _i, f in await redis.xrange(keys.dirty)} == {b"%d" % (window - 5)}
    await produce(redis, keys, 120)  # the current window's samples get a mark of their own
    await heir.handle(await deliver(heir))
    await assert_whole(redis, keys, per_bucket=20)
    assert {f[b"window"] for _i, f in await redis.xrange(keys.dirty)} == {
        b"%d" % (window - 5), b"%d" % window}
