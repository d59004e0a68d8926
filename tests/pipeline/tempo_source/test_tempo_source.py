"""The tempo-source agent end to end: outages, catch-up, takeover, rejections, backfill."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import logging
import random
import time

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError
from tempo_fake import QUEUE_FULL, FakeTempo, Fault, make_traces
from tempo_support import WAIT_S, SettingsFor, by_id, entries, live, sample, wait_for

from pipeline.errors import ConfigError
from pipeline.keys import Keys
from pipeline.metrics import Metrics
from pipeline.tempo_source.backfill import backfill
from pipeline.tempo_source.stage import TempoSource
from pipeline.tempo_source.state import Coverage


async def test_every_trace_exactly_once_through_outages_truncation_and_catch_up(
    redis: Redis, prefix: str, settings_for: SettingsFor, caplog: pytest.LogCaptureFixture,
) -> None:
    """The issue's "done means": history over `limit` per window behind an old watermark,
    live traffic with late roots, a 503 outage, a 429 burst, slow answers, a refused
    port, overlapping polls. The stream ends with each trace once and nothing else."""
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger="pipeline.tempo_source")
    metrics = Metrics()
    polls_before = [0.0]

    def errors(kind: str) -> float:
        return sample(metrics, "tla_tempo_errors_total", kind=kind)

    def ok_polls() -> float:
        return sample(metrics, "tla_tempo_polls_total", outcome="ok") - polls_before[0]
    now = time.time()
    async with FakeTempo("3.0.3", end_cutoff_s=1.0, tenant="acme", bearer="s3cr3t-tok") as tempo:
        tempo.traces = make_traces(400, now - 120, now - 3, seed=11)  # ~34 per 10 s window
        await redis.set(Keys(prefix).tempo_watermark, int(now - 120))  # down since then
        settings = settings_for(tempo.url, tenant="acme", token="s3cr3t-tok")
        source = TempoSource.from_settings(settings, redis, metrics)
        stop = asyncio.Event()
        task = asyncio.create_task(source.run(stop))

        await wait_for(lambda: source.harvester.stats.published >= 400, "the catch-up")
        tempo.traces += live(6, 1)
        tempo.traces += live(4, 2, root_at=time.time() + 2.0)  # root span arrives late
        await wait_for(lambda: sample(metrics, "tla_tempo_traces_held_back_total",
                                      reason="root_not_received"), "a held-back trace")
        tempo.down = True  # 503 from everything
        tempo.traces += live(6, 3)
        await wait_for(lambda: errors("http_5xx"), "a 503")
        tempo.down = False
        tempo.faults.extend(Fault(429, "too many outstanding requests") for _ in range(3))
        await wait_for(lambda: not tempo.faults, "the 429 burst")
        polls_before[0] = sample(metrics, "tla_tempo_polls_total", outcome="ok")
        tempo.delay_s = 0.2  # slow, under the client timeout
        await wait_for(lambda: errors("http_429") == 3 and ok_polls() >= 2, "slow polls")
        tempo.delay_s = 0.0
        await tempo.stop()  # connection refused
        tempo.traces += live(6, 4)
        await wait_for(lambda: errors("connect"), "a refused connection")
        await tempo.start()
        tempo.traces += live(6, 5)

        await wait_for(lambda: source.harvester.stats.published >= len(tempo.traces),
                       "every trace")
        settled = source.harvester.stats.queries
        await wait_for(lambda: source.harvester.stats.queries >= settled + 5, "more polls")
        stop.set()
        await asyncio.wait_for(task, WAIT_S)

    assert by_id(await entries(redis, prefix)) == by_id([t.expected() for t in tempo.traces])
    assert int(await redis.get(Keys(prefix).tempo_watermark)) >= int(now)
    assert sample(metrics, "tla_tempo_truncations_total", outcome="split") > 0
    assert sample(metrics, "tla_tempo_traces_held_back_total", reason="root_not_received") > 0
    for kind in ("http_5xx", "http_429", "connect"):
        assert sample(metrics, "tla_tempo_errors_total", kind=kind) > 0, kind
    assert sample(metrics, "tla_tempo_polls_total", outcome="ok") > 0
    assert sample(metrics, "tla_tempo_leader") == 0
    # Outages shorter than TLA_TEMPO_SEARCH_RETRY_S are retried in place: no cycle failed.
    assert "event=tempo_catch_up" in caplog.text and "event=tempo_search_retry" in caplog.text
    assert sample(metrics, "tla_tempo_polls_total", outcome="unavailable") == 0
    assert "s3cr3t-tok" not in caplog.text and "Bearer" not in caplog.text
    assert await redis.get(Keys(prefix).tempo_lease) is None  # released on stop


async def test_one_poller_at_a_time_and_a_standby_takes_over(
    redis: Redis, prefix: str, settings_for: SettingsFor,
) -> None:
    now = time.time()
    async with FakeTempo("2.9.1") as tempo:
        tempo.traces = make_traces(30, now - 8, now - 2, seed=3)
        settings = settings_for(tempo.url, end_cutoff_s=None)  # 2.x: no cut-off
        a = TempoSource.from_settings(settings, redis, Metrics())
        b = TempoSource.from_settings(settings, redis, Metrics())
        stop = asyncio.Event()
        task_a = asyncio.create_task(a.run(stop))
        await wait_for(lambda: a.harvester.stats.published == 30, "the first leader")
        task_b = asyncio.create_task(b.run(stop))
        await asyncio.sleep(0.5)
        assert b.harvester.stats.queries == 0  # the standby never polls

        task_a.cancel()  # the leader dies without releasing its lease
        # Bounded: this wait once never returned, when redis-py swallowed the cancellation
        # (see the next test).
        done, _ = await asyncio.wait([task_a], timeout=WAIT_S)
        assert done, "the cancelled leader did not finish"

        tempo.traces += live(6, 9)
        await wait_for(lambda: b.harvester.stats.published == 6, "the takeover")
        stop.set()
        await asyncio.wait_for(task_b, WAIT_S)

    # The new leader warmed its cache from the stream: no trace published twice.
    assert by_id(await entries(redis, prefix)) == by_id([t.expected() for t in tempo.traces])


async def test_a_leader_cancelled_at_any_point_ends(
    redis: Redis, prefix: str, settings_for: SettingsFor,
) -> None:
    """A cancellation landing while redis-py writes a command is swallowed on Python 3.11
    (pipeline/retry.py); about a third of these used to leave the leader polling on."""
    rng = random.Random(5)
    async with FakeTempo("3.0.3", end_cutoff_s=1.0) as tempo:
        tempo.traces = make_traces(30, time.time() - 8, time.time() - 2, seed=4)
        for _ in range(20):
            metrics = Metrics()
            source = TempoSource.from_settings(  # polls back to back: always busy
                settings_for(tempo.url, interval_s=0.001), redis, metrics)
            task = asyncio.create_task(source.run(asyncio.Event()))
            await wait_for(lambda: sample(metrics, "tla_tempo_polls_total", outcome="ok"),
                           "a poll")
            await asyncio.sleep(rng.random() * 0.05)
            task.cancel()
            done, _ = await asyncio.wait([task], timeout=WAIT_S)
            assert done and task.cancelled(), "the cancelled leader ran on"
            await redis.delete(Keys(prefix).tempo_lease)  # as if its TTL ran out


async def test_a_lease_keeper_that_fails_stops_the_leader_and_the_stage_says_why(
    redis: Redis, prefix: str, settings_for: SettingsFor, metrics: Metrics,
) -> None:
    """A keeper dying of an error it cannot retry used to leave `halt` unset: the leader
    polled on without renewing, a standby took the lease, and two polled at once."""
    async with FakeTempo("3.0.3", end_cutoff_s=1.0) as tempo:
        source = TempoSource.from_settings(settings_for(tempo.url), redis, metrics)
        task = asyncio.create_task(source.run(asyncio.Event()))
        await wait_for(lambda: sample(metrics, "tla_tempo_leader") == 1, "the lease")
        lease = Keys(prefix).tempo_lease
        await redis.delete(lease)
        await redis.hset(lease, "not", "a lease")  # the renewal now fails with WRONGTYPE
        done, _ = await asyncio.wait([task], timeout=WAIT_S)
    assert done, "the leader polled on without its lease"
    assert isinstance(task.exception(), ResponseError)  # the runner logs it and restarts
    assert sample(metrics, "tla_tempo_leader") == 0


async def test_rejections_log_what_to_fix_and_back_off(
    redis: Redis, prefix: str, settings_for: SettingsFor, caplog: pytest.LogCaptureFixture,
) -> None:
    metrics = Metrics()
    async with FakeTempo("3.0.3", tenant="acme") as tempo:
        source = TempoSource.from_settings(settings_for(tempo.url), redis, metrics)
        stop = asyncio.Event()
        task = asyncio.create_task(source.run(stop))
        await wait_for(lambda: tempo.requests >= 2, "two attempts")
        await asyncio.sleep(0.5)
        stop.set()
        await asyncio.wait_for(task, WAIT_S)
    # interval 0.1 s doubling: a handful of attempts, not a hot loop.
    assert 2 <= tempo.requests <= 8
    assert sample(metrics, "tla_tempo_errors_total", kind="http_401") == tempo.requests
    assert sample(metrics, "tla_tempo_polls_total", outcome="rejected") == tempo.requests
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors and "no org id" in errors[0] and "TLA_TEMPO_TENANT" in errors[0]


@pytest.mark.parametrize("version,cutoff_s", [("3.0.3", 30), ("2.10.0", 0)])
async def test_the_end_cut_off_follows_the_version(
    version: str, cutoff_s: int, redis: Redis, prefix: str, settings_for: SettingsFor,
    metrics: Metrics,
) -> None:
    async with FakeTempo(version) as tempo:
        settings = settings_for(tempo.url, end_cutoff_s=None, lookback_s=120)
        source = TempoSource.from_settings(settings, redis, metrics)
        before = time.time()
        await source.cycle(asyncio.Event())
        await source.aclose()
    sent = tempo.searches[0]
    assert int(sent["end"]) in (int(before) - cutoff_s, int(before) - cutoff_s + 1)
    assert int(sent["end"]) - int(sent["start"]) == 120
    assert ("most_recent=true" in sent["q"]) is True


async def test_stop_while_tempo_is_slow_returns_cleanly(
    redis: Redis, prefix: str, settings_for: SettingsFor,
) -> None:
    async with FakeTempo("3.0.3") as tempo:
        tempo.delay_s = 0.5
        source = TempoSource.from_settings(settings_for(tempo.url), redis, Metrics())
        stop = asyncio.Event()
        task = asyncio.create_task(source.run(stop))
        await wait_for(lambda: tempo.requests >= 1, "a request in flight")
        stop.set()
        await asyncio.wait_for(task, WAIT_S)
    assert await redis.get(Keys(prefix).tempo_watermark) is not None  # in-flight poll finished


async def test_backfill_pulls_history_in_windows_with_progress_and_summary(
    redis: Redis, prefix: str, settings_for: SettingsFor, metrics: Metrics,
) -> None:
    now = time.time()
    async with FakeTempo("3.0.3", end_cutoff_s=1.0) as tempo:
        tempo.traces = make_traces(500, now - 7150, now - 5, seed=5)
        tempo.faults.extend([Fault(503, "LiveStore not ready"), Fault(429, "slow down")])
        settings = settings_for(tempo.url, limit=50)
        out = io.StringIO()
        summary = await backfill(settings, redis, metrics, 7200, out)
    assert by_id(await entries(redis, prefix)) == by_id([t.expected() for t in tempo.traces])
    assert summary.ok and summary.published == 500 and summary.windows == 2
    assert summary.truncations > 0 and summary.tempo_version == "3.0.3"
    assert str(summary).startswith("backfill 2h: published 500 traces")
    assert "100%" in out.getvalue().splitlines()[-1]
    watermark = int(await redis.get(Keys(prefix).tempo_watermark))
    assert abs(watermark - (now - 1)) <= 2  # the live source resumes where it ended


async def test_a_backfill_never_searches_what_was_already_published(
    redis: Redis, prefix: str, settings_for: SettingsFor, metrics: Metrics,
) -> None:
    """Ingest's dedup forgets trace IDs after 15 minutes: a range searched twice, by the
    live source and then a backfill, or by two backfills, would be counted twice."""
    now = time.time()
    async with FakeTempo("3.0.3", end_cutoff_s=1.0) as tempo:
        tempo.traces = make_traces(120, now - 3500, now - 5, seed=8)
        settings = settings_for(tempo.url, limit=50, lookback_s=600)
        source = TempoSource.from_settings(settings, redis, metrics)
        await source.cycle(asyncio.Event())  # the live source covers the last 10 minutes
        await source.aclose()
        live_end = int(tempo.searches[-1]["end"])
        out = io.StringIO()
        first = await backfill(settings, redis, metrics, 3600, out)
        assert first.ok and 590 <= first.covered_s <= 610
        assert "already published" in out.getvalue() and "already published" in str(first)
        assert all(int(q["end"]) <= live_end - 590 for q in tempo.searches[1:])
        searched = len(tempo.searches)
        covered_to = (await Coverage(redis, Keys(prefix)).intervals())[-1][1]
        again = await backfill(settings, redis, metrics, 3600, io.StringIO())
    assert again.ok and again.published == 0 and again.covered_s >= 3600 - 3
    # Only the seconds that passed since: nothing searched twice.
    assert all(int(q["start"]) >= covered_to for q in tempo.searches[searched:])
    assert by_id(await entries(redis, prefix)) == by_id([t.expected() for t in tempo.traces])


async def test_a_backfill_cut_short_by_an_outage_keeps_what_it_published(
    redis: Redis, prefix: str, settings_for: SettingsFor, metrics: Metrics,
) -> None:
    """Each completely searched part is recorded as it is published, so the window that
    failed is not searched again from its start: the next backfill does the rest."""
    now = time.time()
    async with FakeTempo("3.0.3", end_cutoff_s=1.0) as tempo:
        tempo.traces = make_traces(300, now - 3500, now - 5, seed=13)
        tempo.schedule = lambda n: QUEUE_FULL if n > 6 else None  # then the queue stays full
        settings = settings_for(tempo.url, limit=50, search_retry_s=0.2)
        first = await backfill(settings, redis, metrics, 3600, io.StringIO())
        covered = await Coverage(redis, Keys(prefix)).intervals()
        searched = len(tempo.searches)
        tempo.schedule = None
        again = await backfill(settings, redis, metrics, 3600, io.StringIO())
    assert not first.ok and first.published > 0 and covered
    # Skipped: what the first run covered, less the seconds its range moved on since.
    assert again.ok and again.covered_s >= sum(end - start for start, end in covered) - 5
    for q in tempo.searches[searched:]:
        start, end = int(q["start"]), int(q["end"])
        assert not any(cs <= start and end <= ce for cs, ce in covered), (start, end)
    assert by_id(await entries(redis, prefix)) == by_id([t.expected() for t in tempo.traces])


async def test_a_trace_across_the_edge_of_a_covered_range_is_not_published_again(
    redis: Redis, prefix: str, settings_for: SettingsFor, metrics: Metrics,
) -> None:
    """Tempo matches traces by overlap: the live search of [B-600, B] returned a trace that
    started just before B-600, which a backfill of the older gap finds again."""
    edge = int(time.time() - 1.0) - 600
    async with FakeTempo("3.0.3", end_cutoff_s=1.0) as tempo:
        straddling = dataclasses.replace(make_traces(1, 0, 1, seed=9)[0],
                                         start_ns=int((edge - 0.3) * 1e9),
                                         root_duration_ns=2_000_000_000,
                                         trace_duration_ns=2_000_000_000)
        tempo.traces = [straddling, *make_traces(20, edge - 3000, edge - 10, seed=10)]
        settings = settings_for(tempo.url, limit=50, lookback_s=600)
        source = TempoSource.from_settings(settings, redis, metrics)
        await source.cycle(asyncio.Event())
        await source.aclose()
        summary = await backfill(settings, redis, metrics, 3600, io.StringIO())
    assert summary.ok and summary.published == 20 and summary.duplicates >= 1
    assert by_id(await entries(redis, prefix)) == by_id([t.expected() for t in tempo.traces])


async def test_what_stayed_truncated_is_not_recorded_as_covered(
    redis: Redis, prefix: str, settings_for: SettingsFor, metrics: Metrics,
) -> None:
    now = int(time.time())
    crowded = now - 1800
    async with FakeTempo("3.0.3", end_cutoff_s=1.0) as tempo:
        tempo.traces = make_traces(12, crowded + 0.1, crowded + 0.6, seed=12)  # > limit in 1 s
        settings = settings_for(tempo.url, limit=5, min_window_s=1)
        summary = await backfill(settings, redis, metrics, 3600, io.StringIO())
    assert summary.unresolved >= 1
    gaps = await Coverage(redis, Keys(prefix)).gaps(now - 3000, now - 600)
    assert gaps and all(end - start <= 2 for start, end in gaps)
    assert any(start <= crowded + 0.6 and end >= crowded + 0.1 for start, end in gaps)


async def test_coverage_merges_ranges_and_reports_the_gaps(redis: Redis, prefix: str) -> None:
    coverage = Coverage(redis, Keys(prefix))
    for start, end in [(100, 200), (300, 400), (150, 250), (400, 450), (500, 600), (90, 95)]:
        await coverage.add(start, end)
    assert await coverage.intervals() == [(90, 95), (100, 250), (300, 450), (500, 600)]
    assert await coverage.gaps(0, 700) == [(0, 90), (95, 100), (250, 300), (450, 500),
                                           (600, 700)]
    assert await coverage.gaps(120, 240) == []
    assert await coverage.gaps(240, 320) == [(250, 300)]
    await coverage.add(0, 1000)
    assert await coverage.intervals() == [(0, 1000)]


async def test_backfill_rejected_is_a_config_error(
    redis: Redis, prefix: str, settings_for: SettingsFor, metrics: Metrics,
) -> None:
    async with FakeTempo("3.0.3", tenant="acme") as tempo:
        with pytest.raises(ConfigError, match="TLA_TEMPO_TENANT"):
            await backfill(settings_for(tempo.url), redis, metrics, 600, io.StringIO())
    with pytest.raises(ConfigError, match="TLA_TEMPO_URL"):
        await backfill(settings_for("tempo:3200"), redis, metrics, 600, io.StringIO())
