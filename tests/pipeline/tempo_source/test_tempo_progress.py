"""The Tempo source always makes progress: failed searches are retried in place, and every
completely searched part is recorded, so neither rejections nor outages stall the watermark.

Each pattern runs the same story against the Tempo double: polling last succeeded a minute
ago (an outage much longer than the lookback), so the source catches up through windows
holding more than `limit` traces, while new traces keep arriving and Tempo answers some
searches with errors. Every trace must reach the stream exactly once, nothing else may, no
completely searched part may be searched again beyond the lookback overlap, and the
watermark lag must come back to less than one lookback.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import dataclass

import pytest
from redis.asyncio import Redis
from tempo_fake import QUEUE_FULL, FakeTempo, Fault, Schedule, burst, either, every, make_traces
from tempo_support import WAIT_S, SettingsFor, by_id, entries, live, sample, wait_for

from pipeline.keys import Keys
from pipeline.metrics import Metrics
from pipeline.tempo_source.stage import TempoSource
from pipeline.tempo_source.state import Coverage

log = logging.getLogger(__name__)

# A minute of history at 8 traces/s: windows of LOOKBACK_S hold more than LIMIT traces,
# one second (plus the traces overlapping it) holds well under LIMIT, so bisecting resolves.
GAP_S = 60
HISTORY = 480
LIMIT = 30
LOOKBACK_S = 5
# Live traffic while the source catches up: this many batches of 3 traces, one per 0.5 s.
LIVE_BATCHES = 6
# Tiny intervals: the backoff starts at 0.1 s and is capped at 1 s; a search is retried in
# place for up to 10 s (far more than any pattern below needs, but the last two).
FAST = {"interval_s": 0.1, "lookback_s": LOOKBACK_S, "limit": LIMIT, "end_cutoff_s": 1.0,
        "search_retry_s": 10.0}
STATUS_503 = Fault(503, "LiveStore not ready: cannot guarantee complete results")


@dataclass(frozen=True, slots=True)
class Figures:
    """What one pattern did, for the report (printed; never asserted as speeds)."""

    pattern: str
    expected: int  # traces Tempo holds
    published: int  # entries in the stream
    searches: int  # /api/search requests, failed ones included
    failed: int  # of them answered with an error (scheduled, or the outage's 503s)
    split: int  # truncated answers whose window was bisected
    failed_polls: int  # poll cycles that ended because a search kept failing
    lag_s: float  # tla_tempo_watermark_lag_seconds once recovered

    def __str__(self) -> str:
        return (f"{self.pattern}: expected {self.expected} published {self.published} "
                f"searches {self.searches} ({self.failed} failed, {self.split} split) "
                f"failed polls {self.failed_polls} lag {self.lag_s:.1f} s")


async def feed(tempo: FakeTempo, batches: range) -> None:
    """Live traffic: one batch of 3 new traces every 0.5 s (a seed per batch: distinct IDs)."""
    for i in batches:
        tempo.traces += live(3, seed=1000 + i)
        await asyncio.sleep(0.5)


async def run_pattern(
    name: str, schedule: Schedule | None, redis: Redis, prefix: str, settings_for: SettingsFor,
    outage_s: float = 0.0, **tempo: object,
) -> Figures:
    """The story of the module docstring under `schedule`; with `outage_s`, Tempo is also
    entirely down (503) for that long once live traffic started."""
    now, metrics = time.time(), Metrics()
    async with FakeTempo("3.0.3", end_cutoff_s=1.0) as fake:
        fake.traces = make_traces(HISTORY, now - GAP_S, now - 3, seed=21)
        assert len({t.trace_id for t in fake.traces}) == HISTORY
        await redis.set(Keys(prefix).tempo_watermark, int(now - GAP_S))  # polled last then
        fake.schedule = schedule
        source = TempoSource.from_settings(settings_for(fake.url, **{**FAST, **tempo}), redis,
                                           metrics)
        stop = asyncio.Event()
        task = asyncio.create_task(source.run(stop))
        await feed(fake, range(LIVE_BATCHES // 2))
        fake.down = outage_s > 0
        await asyncio.sleep(outage_s)
        fake.down = False
        await feed(fake, range(LIVE_BATCHES // 2, LIVE_BATCHES))
        await wait_until_recovered(source, metrics, len(fake.traces))
        lag_s = sample(metrics, "tla_tempo_watermark_lag_seconds")
        stop.set()
        await asyncio.wait_for(task, WAIT_S)
    figures = Figures(
        name, len(fake.traces), len(await entries(redis, prefix)), fake.requests,
        fake.requests - len(fake.searches),
        int(sample(metrics, "tla_tempo_truncations_total", outcome="split")),
        int(sample(metrics, "tla_tempo_polls_total", outcome="unavailable")), lag_s)
    print(figures)
    log.info("event=test_figures %s", figures)
    assert by_id(await entries(redis, prefix)) == by_id([t.expected() for t in fake.traces])
    assert figures.split > 0  # windows held more than `limit` traces
    assert sample(metrics, "tla_tempo_truncations_total", outcome="unresolved") == 0
    assert_never_searched_twice(fake)
    await assert_covered(redis, prefix, int(now - GAP_S) - LOOKBACK_S)
    return figures


async def wait_until_recovered(source: TempoSource, metrics: Metrics, expected: int) -> None:
    """Every trace published, the lag back under one lookback, then three more polls, in
    which nothing else may be published."""
    await wait_for(lambda: source.harvester.stats.published >= expected, "every trace")
    await wait_for(lambda: sample(metrics, "tla_tempo_watermark_lag_seconds") < LOOKBACK_S,
                   "the watermark lag to recover")
    polls = sample(metrics, "tla_tempo_polls_total", outcome="ok")
    await wait_for(lambda: sample(metrics, "tla_tempo_polls_total", outcome="ok") >= polls + 3,
                   "three more polls")


def assert_never_searched_twice(fake: FakeTempo) -> None:
    """A search starts at most one lookback before the end of the last part that was
    searched completely (answered under `limit`): completed parts were recorded at once."""
    done_to = 0
    for sent, returned in zip(fake.searches, fake.returned, strict=True):
        start, end = int(sent["start"]), int(sent["end"])
        assert start >= done_to - LOOKBACK_S, f"[{start}, {end}] searched again (done to {done_to})"
        if returned < LIMIT:
            done_to = max(done_to, end)


async def assert_covered(redis: Redis, prefix: str, since_s: int) -> None:
    watermark = int(await redis.get(Keys(prefix).tempo_watermark))
    assert await Coverage(redis, Keys(prefix)).gaps(since_s, watermark) == []


@pytest.mark.parametrize("k", [2, 3, 4, 5, 6, 7])
async def test_every_kth_search_rejected(
    k: int, redis: Redis, prefix: str, settings_for: SettingsFor,
) -> None:
    figures = await run_pattern(f"every {k}-th search 429", every(k), redis, prefix,
                                settings_for)
    assert figures.failed > 0 and figures.failed_polls == 0


async def test_a_burst_of_5xx_is_retried_in_place(
    redis: Redis, prefix: str, settings_for: SettingsFor,
) -> None:
    """Six failures in a row fit in the retry bound: no poll cycle fails."""
    figures = await run_pattern("burst of 6 x 503", burst(5, 6, STATUS_503), redis, prefix,
                                settings_for)
    assert figures.failed == 6 and figures.failed_polls == 0


async def test_retry_after_is_honoured(
    redis: Redis, prefix: str, settings_for: SettingsFor, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="pipeline.tempo_source")
    slow_down = Fault(429, "too many outstanding requests", {"Retry-After": "1"})
    await run_pattern("Retry-After: 1 twice, every 7th 429",
                      either(burst(4, 2, slow_down), every(7)), redis, prefix, settings_for)
    waits = [float(m) for m in re.findall(r"event=tempo_search_retry .*?retry_in_s=([\d.]+)",
                                            caplog.text)]
    assert sum(w >= 1.0 for w in waits) >= 2


async def test_a_burst_past_the_retry_bound_ends_the_cycle_and_the_next_resumes(
    redis: Redis, prefix: str, settings_for: SettingsFor,
) -> None:
    """Twenty failures in a row outlast a 0.3 s bound: cycles end, and each next cycle
    resumes after the last recorded part (assert_never_searched_twice)."""
    figures = await run_pattern("burst of 20 x 429 past a 0.3 s bound", burst(10, 20),
                                redis, prefix, settings_for, search_retry_s=0.3)
    assert figures.failed == 20 and figures.failed_polls > 0


@pytest.mark.slow
async def test_one_in_seven_rejected_and_an_outage_longer_than_the_lookback(
    redis: Redis, prefix: str, settings_for: SettingsFor,
) -> None:
    """The operator's report: one search in seven answered 429, and Tempo entirely down for
    longer than the lookback while traffic goes on."""
    figures = await run_pattern("every 7th 429 + outage 6 s", every(7, QUEUE_FULL), redis,
                                prefix, settings_for, outage_s=LOOKBACK_S + 1, search_retry_s=3.0)
    assert figures.failed_polls > 0  # the outage outlasted the 3 s retry bound
