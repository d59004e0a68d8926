"""Covering windows against Tempo-like servers of several versions, into a real Redis stream."""

from __future__ import annotations

import asyncio
import time

import pytest
from redis.asyncio import Redis
from tempo_fake import QUEUE_FULL, FakeTempo, Fault, burst, either, every, make_traces

from pipeline.keys import Keys
from pipeline.metrics import Metrics
from pipeline.tempo_source.client import TempoClient, TempoRejected, TempoUnavailable
from pipeline.tempo_source.harvest import (
    Harvester,
    HarvestParams,
    SearchRetry,
    Window,
    remember_published,
)
from pipeline.tempo_source.stage import discover

ROOTS = "{ nestedSetParent < 0 }"
QUICK = SearchRetry(bound_s=10.0, base_s=0.01, cap_s=0.05)  # retries in place, tiny waits


async def stream(redis: Redis, keys: Keys) -> list[dict[str, str]]:
    return [{k.decode(): v.decode() for k, v in fields.items()}
            for _id, fields in await redis.xrange(keys.traces)]


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


async def harvester(tempo: FakeTempo, redis: Redis, prefix: str, metrics: Metrics,
                    client: TempoClient, **params: object) -> Harvester:
    features, _ = await discover(client)
    fields: dict = {"query": ROOTS, "limit": 20, "spss": 1, **params}  # type: ignore[type-arg]
    p = HarvestParams(**fields)
    return Harvester(client, redis, Keys(prefix), metrics, p, features)


def window(now: float, back_s: int, cutoff_s: int = 0) -> Window:
    return Window(int(now) - back_s, int(now) - cutoff_s)


@pytest.mark.parametrize("version", ["2.6.0", "3.0.3"])
async def test_truncated_windows_are_bisected_until_every_trace_is_found(
    version: str, redis: Redis, prefix: str, metrics: Metrics,
) -> None:
    now = time.time()
    async with FakeTempo(version, end_cutoff_s=0, numbers="mixed") as tempo:
        tempo.traces = make_traces(300, now - 600, now - 5)
        async with TempoClient(tempo.url) as client:
            h = await harvester(tempo, redis, prefix, metrics, client)
            assert await h.cover(window(now, 600))
    entries = await stream(redis, Keys(prefix))
    assert sorted(entries, key=lambda e: e["trace_id"]) == sorted(
        (t.expected() for t in tempo.traces), key=lambda e: e["trace_id"])
    assert h.stats.truncations > 0 and h.stats.unresolved == 0
    assert sample(metrics, "tla_tempo_truncations_total", outcome="split") == h.stats.truncations
    assert sample(metrics, "tla_tempo_traces_published_total") == 300
    hinted = all("most_recent=true" in s["q"] for s in tempo.searches)
    assert hinted == (version == "3.0.3")  # 2.6 would ignore it: not sent


async def test_tempo_2_1_gets_the_plain_query_and_trace_durations(
    redis: Redis, prefix: str, metrics: Metrics,
) -> None:
    now = time.time()
    async with FakeTempo("2.1.0") as tempo:
        tempo.traces = make_traces(30, now - 100, now - 5)
        async with TempoClient(tempo.url) as client:
            h = await harvester(tempo, redis, prefix, metrics, client, limit=500)
            assert await h.cover(window(now, 100))
    assert {s["q"] for s in tempo.searches} == {"{}"}
    entries = await stream(redis, Keys(prefix))
    assert sorted(entries, key=lambda e: e["trace_id"]) == sorted(
        (t.expected(precise=False) for t in tempo.traces), key=lambda e: e["trace_id"])


async def test_a_hint_rejected_by_an_old_tempo_hiding_its_version_is_dropped(
    redis: Redis, prefix: str, metrics: Metrics,
) -> None:
    now = time.time()
    async with FakeTempo("2.3.0", hide_buildinfo=True) as tempo:
        tempo.traces = make_traces(10, now - 100, now - 5)
        async with TempoClient(tempo.url) as client:
            h = await harvester(tempo, redis, prefix, metrics, client, query="{}")
            assert await h.cover(window(now, 100))
            assert await h.cover(window(now, 100))
    assert tempo.requests == 3  # one rejected, then plain queries only
    assert len(await stream(redis, Keys(prefix))) == 10


async def test_a_limit_over_the_servers_max_is_lowered_to_it(
    redis: Redis, prefix: str, metrics: Metrics,
) -> None:
    now = time.time()
    async with FakeTempo("3.0.3", end_cutoff_s=0, max_result_limit=10) as tempo:
        tempo.traces = make_traces(40, now - 100, now - 5)
        async with TempoClient(tempo.url) as client:
            h = await harvester(tempo, redis, prefix, metrics, client, limit=1000)
            assert await h.cover(window(now, 100))
    assert h.limit == 10 and len(await stream(redis, Keys(prefix))) == 40


async def test_an_unsplittable_window_is_counted_and_nothing_is_invented(
    redis: Redis, prefix: str, metrics: Metrics,
) -> None:
    now = int(time.time())
    async with FakeTempo("2.6.0") as tempo:
        tempo.traces = make_traces(30, now - 50, now - 49.5)  # 30 traces in one second
        for t in tempo.traces:
            t.trace_duration_ns = t.root_duration_ns = 1_000_000
        async with TempoClient(tempo.url) as client:
            h = await harvester(tempo, redis, prefix, metrics, client, limit=10)
            assert await h.cover(Window(now - 52, now - 48))
    entries = await stream(redis, Keys(prefix))
    truth = {t.trace_id: t.expected() for t in tempo.traces}
    assert 10 <= len(entries) < 30 and all(truth[e["trace_id"]] == e for e in entries)
    assert len({e["trace_id"] for e in entries}) == len(entries)
    assert h.stats.unresolved >= 1
    assert sample(metrics, "tla_tempo_truncations_total", outcome="unresolved") >= 1


async def test_traces_without_their_root_are_held_until_it_arrives_then_published_once(
    redis: Redis, prefix: str, metrics: Metrics,
) -> None:
    now = time.time()
    async with FakeTempo("3.0.3", end_cutoff_s=0) as tempo:
        tempo.traces = make_traces(10, now - 60, now - 5)
        late = make_traces(5, now - 60, now - 5, seed=2, root_at=now + 0.5)
        tempo.traces += late
        async with TempoClient(tempo.url) as client:
            h = await harvester(tempo, redis, prefix, metrics, client)
            await h.cover(window(now, 60))
            assert len(await stream(redis, Keys(prefix))) == 10
            assert sample(metrics, "tla_tempo_traces_held_back_total",
                          reason="root_not_received") == 5
            await asyncio.sleep(max(0.0, now + 0.6 - time.time()))
            for _ in range(3):  # overlapping polls see every trace again
                await h.cover(window(now, 60))
    entries = await stream(redis, Keys(prefix))
    assert sorted(entries, key=lambda e: e["trace_id"]) == sorted(
        (t.expected() for t in tempo.traces), key=lambda e: e["trace_id"])
    assert sample(metrics, "tla_tempo_traces_duplicate_total") == 10 + 15 + 15


async def test_the_cache_is_warmed_from_the_stream_tail(
    redis: Redis, prefix: str, metrics: Metrics,
) -> None:
    now = time.time()
    async with FakeTempo("3.0.3", end_cutoff_s=0) as tempo:
        tempo.traces = make_traces(25, now - 60, now - 5)
        async with TempoClient(tempo.url) as client:
            first = await harvester(tempo, redis, prefix, metrics, client)
            await first.cover(window(now, 60))
            await redis.xadd(Keys(prefix).traces, {"trace_id": "ab", "source": "otlp"})
            second = await harvester(tempo, redis, prefix, metrics, client)
            assert await remember_published(redis, Keys(prefix), second.recent, 0) == 25
            await second.cover(window(now, 60))
    assert second.stats.published == 0 and len(await stream(redis, Keys(prefix))) == 26


async def test_a_rejection_nobody_can_fix_here_propagates(
    redis: Redis, prefix: str, metrics: Metrics,
) -> None:
    async with FakeTempo(tenant="t") as tempo, TempoClient(tempo.url) as client:
        h = await harvester(tempo, redis, prefix, metrics, client)
        with pytest.raises(TempoRejected):
            await h.cover(window(time.time(), 60))
    assert sample(metrics, "tla_tempo_queries_total", outcome="error") == 1


async def test_failed_searches_are_retried_in_place_and_parts_reported_oldest_first(
    redis: Redis, prefix: str, metrics: Metrics,
) -> None:
    now = time.time()
    async with FakeTempo("3.0.3", end_cutoff_s=0) as tempo:
        tempo.traces = make_traces(100, now - 100, now - 5)
        # Three 503s in a row from the second search on; every 4th search a 429 besides.
        tempo.schedule = either(burst(2, 3, Fault(503, "LiveStore not ready")), every(4))
        parts: list[tuple[Window, bool]] = []

        async def done(part: Window, complete: bool) -> None:
            parts.append((part, complete))

        async with TempoClient(tempo.url) as client:
            h = await harvester(tempo, redis, prefix, metrics, client, retry=QUICK)
            assert await h.cover(window(now, 100), done=done)
    assert sorted(await stream(redis, Keys(prefix)), key=lambda e: e["trace_id"]) == sorted(
        (t.expected() for t in tempo.traces), key=lambda e: e["trace_id"])
    # The completed parts tile the window, oldest first: each could be recorded at once.
    assert [p.start_s for p, _ in parts] == [int(now) - 100] + [p.end_s for p, _ in parts[:-1]]
    assert parts[-1][0].end_s == int(now) and all(complete for _, complete in parts)
    failed = tempo.requests - len(tempo.searches)
    assert failed >= 4 and h.stats.truncations > 0
    assert sample(metrics, "tla_tempo_queries_total", outcome="error") == failed
    assert (sample(metrics, "tla_tempo_errors_total", kind="http_5xx")
            + sample(metrics, "tla_tempo_errors_total", kind="http_429")) == failed


async def test_a_retry_after_beyond_the_bound_gives_up_at_once(
    redis: Redis, prefix: str, metrics: Metrics,
) -> None:
    """Waiting 30 s would overrun a 1 s bound: the error goes to the caller, which waits
    at least the Retry-After before its next cycle."""
    now = time.time()
    async with FakeTempo("3.0.3", end_cutoff_s=0) as tempo:
        tempo.schedule = burst(1, 1, Fault(429, "slow down", {"Retry-After": "30"}))
        async with TempoClient(tempo.url) as client:
            h = await harvester(tempo, redis, prefix, metrics, client,
                                retry=SearchRetry(bound_s=1.0, base_s=0.01, cap_s=0.05))
            with pytest.raises(TempoUnavailable) as raised:
                await h.cover(window(now, 60))
    assert raised.value.retry_after_s == 30 and tempo.requests == 1


async def test_a_stop_while_waiting_to_retry_ends_the_cover(
    redis: Redis, prefix: str, metrics: Metrics,
) -> None:
    now = time.time()
    async with FakeTempo("3.0.3", end_cutoff_s=0) as tempo:
        tempo.schedule = every(1, QUEUE_FULL)  # Tempo's queue stays full
        async with TempoClient(tempo.url) as client:
            h = await harvester(tempo, redis, prefix, metrics, client,
                                retry=SearchRetry(bound_s=600.0, base_s=60.0, cap_s=60.0))
            stop = asyncio.Event()
            covering = asyncio.create_task(h.cover(window(now, 60), stop))
            while tempo.requests < 1:
                await asyncio.sleep(0.01)
            stop.set()
            assert await asyncio.wait_for(covering, 10) is False
    assert tempo.requests == 1
