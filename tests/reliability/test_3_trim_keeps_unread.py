"""Promise 3: trimming never deletes entries a group still needs; lag is exported and shouted."""

from __future__ import annotations

import logging
import random

import pytest
from redis.asyncio import Redis

from pipeline import streams
from pipeline.keys import INGEST_GROUP
from pipeline.metrics import Metrics
from services.observer import Observer
from tests.reliability.conftest import Truth, drain, make_ingestor, random_event, report

TRACES = 3000
# Approximate MINID trimming removes whole listpack nodes (stream-node-max-entries, 100 by
# default) only, so up to one node of already-consumed entries may remain.
NODE_ENTRIES = 100


async def test_stalled_group_keeps_its_entries_and_is_reported(
    redis: Redis, truth: Truth, caplog: pytest.LogCaptureFixture
) -> None:
    keys = truth.keys
    rng = random.Random(3)
    await redis.xgroup_create(keys.traces, "stalled", id="0", mkstream=True)
    await redis.xgroup_create(keys.traces, "slow", id="0")
    ids = []
    for _ in range(TRACES):
        ids.append(await redis.xadd(keys.traces, random_event(truth, rng)))
    # "slow" read 500 entries and acknowledged none of them yet (a consumer mid-crash).
    await redis.xreadgroup("slow", "s1", {keys.traces: ">"}, count=500)
    ingestor = make_ingestor(redis, keys.prefix, ingest_lag_alert_entries=1000)
    await drain(ingestor)

    await streams.safe_trim(redis, keys.traces)
    assert await redis.xlen(keys.traces) == TRACES  # "stalled" has read nothing
    with caplog.at_level(logging.ERROR, logger="pipeline.ingest"):
        await ingestor.watch_lag()
    # The gauges are the observer's (the api process runs it); ingest logs the alarm.
    metrics = Metrics()
    await Observer(redis, keys, metrics).observe()
    lag = {g: metrics.registry.get_sample_value(
        "tla_stream_group_lag_entries", {"stream": "traces", "group": g})
        for g in ("stalled", "slow", INGEST_GROUP)}
    pending_slow = metrics.registry.get_sample_value(
        "tla_stream_group_pending_entries", {"stream": "traces", "group": "slow"})
    assert lag == {"stalled": TRACES, "slow": TRACES - 500, INGEST_GROUP: 0}
    assert pending_slow == 500
    shouted = [r.getMessage() for r in caplog.records if "event=group_lagging" in r.getMessage()]
    assert len(shouted) == 2 and any("group=stalled" in m for m in shouted)
    assert any("group=slow undelivered=2500 pending=500" in m for m in shouted)

    await redis.xgroup_destroy(keys.traces, "stalled")
    await streams.safe_trim(redis, keys.traces)
    left_slow = await redis.xlen(keys.traces)
    assert left_slow >= TRACES  # "slow" still needs its pending entries
    # "slow" catches up: its pending entries are still there to be read again.
    pending = await redis.xreadgroup("slow", "s1", {keys.traces: "0"}, count=500)
    assert [i for i, _f in pending[0][1]] == ids[:500]
    await redis.xack(keys.traces, "slow", *ids[:500])
    while batch := await redis.xreadgroup("slow", "s1", {keys.traces: ">"}, count=1000):
        await redis.xack(keys.traces, "slow", *[i for i, _f in batch[0][1]])
    await streams.safe_trim(redis, keys.traces)
    left = await redis.xlen(keys.traces)
    assert left <= NODE_ENTRIES  # memory is bounded once every group has consumed
    report("trim_keeps_unread", traces_sent=TRACES, length_with_stalled_group=TRACES,
           length_with_slow_group_pending=left_slow, length_after_all_consumed=left,
           stalled_lag_reported=int(lag["stalled"] or 0), lag_alerts=len(shouted))


async def test_trim_never_passes_undelivered_entries(redis: Redis, truth: Truth) -> None:
    """A group that read half the stream (acked it all) keeps the unread half."""
    keys = truth.keys
    rng = random.Random(4)
    await redis.xgroup_create(keys.traces, "half", id="0", mkstream=True)
    ids = [await redis.xadd(keys.traces, random_event(truth, rng)) for _ in range(1000)]
    got = await redis.xreadgroup("half", "h", {keys.traces: ">"}, count=500)
    await redis.xack(keys.traces, "half", *[i for i, _f in got[0][1]])
    await streams.safe_trim(redis, keys.traces)
    rest = await redis.xrange(keys.traces, min=ids[500])
    assert [i for i, _f in rest] == ids[500:]
    assert await redis.xlen(keys.traces) <= 500 + NODE_ENTRIES


async def test_trim_survives_a_group_acking_between_its_two_reads(
    redis: Redis, truth: Truth, monkeypatch: pytest.MonkeyPatch
) -> None:
    """XINFO says "pending", then the consumer acks before XPENDING answers (min: None):
    the trim goes on (it crashed ingest's loop once, in the demo)."""
    keys = truth.keys
    await redis.xgroup_create(keys.traces, INGEST_GROUP, id="0", mkstream=True)
    for _ in range(300):
        await redis.xadd(keys.traces, {"f": "v"})
    read = await redis.xreadgroup(INGEST_GROUP, "c1", {keys.traces: ">"}, count=300)
    ids = [entry_id for entry_id, _fields in read[0][1]]
    xinfo_groups = redis.xinfo_groups

    async def info_then_ack(stream: str) -> object:
        groups = await xinfo_groups(stream)
        await redis.xack(keys.traces, INGEST_GROUP, *ids)  # acked after XINFO answered
        return groups

    monkeypatch.setattr(redis, "xinfo_groups", info_then_ack)
    await streams.safe_trim(redis, keys.traces)
    assert await redis.xlen(keys.traces) <= NODE_ENTRIES  # everything was acked: trimmed
