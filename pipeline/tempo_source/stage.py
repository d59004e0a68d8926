"""The tempo-source stage: poll Tempo's search under a lease, catch up from the watermark.

Every `interval_s` the leader searches [min(now, watermark) - lookback, now - cutoff] in
windows of at most `lookback_s` (so after an outage it catches up window by window, at
most `max_catchup_s` back), bisecting any truncated window. Each part of a window is
recorded as soon as it is published (coverage, and the watermark moved to its end), so
whatever ends a cycle, the next one resumes after it. A search Tempo cannot answer (429,
5xx, timeouts) is retried in place with jittered backoff for up to `search_retry_s`; only
then does the cycle end and back off. Rejections (400/401/403/404) log what to fix and
back off longer; neither stops the stage. `backfill` pulls history once, for a cold start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from redis.asyncio import Redis

from pipeline.errors import ConfigError
from pipeline.keys import Keys
from pipeline.metrics import Metrics
from pipeline.retry import TRANSIENT, Backoff, is_transient, sleep_or_stop
from pipeline.settings import check_bounds
from pipeline.tempo_source.client import TempoClient, TempoError, TempoRejected, TempoUnavailable
from pipeline.tempo_source.harvest import (
    Harvester,
    HarvestParams,
    PartDone,
    SearchRetry,
    Window,
    chunks,
    remember_published,
)
from pipeline.tempo_source.metrics import TempoMetrics
from pipeline.tempo_source.parse import Features, features_for
from pipeline.tempo_source.settings import TempoConfig, TempoSettings
from pipeline.lease import Lease
from pipeline.tempo_source.state import Coverage, Watermark

log = logging.getLogger(__name__)

# Longest wait after a rejection (bad credentials, bad query): it is re-tried this often so
# a fixed gateway or a new token is picked up without a restart.
REJECTED_CAP_S = 300.0
# How long the leader waits for its lease-keeping helpers once it cancelled them.
HELPER_STOP_S = 5.0


@dataclass(frozen=True, slots=True)
class PollPlan:
    windows: list[Window]
    skipped_s: int  # history older than max_catchup_s that will not be searched


def plan_poll(now_s: float, watermark: int | None, t: TempoSettings, cutoff_s: float) -> PollPlan:
    """The windows of one cycle. Resuming `lookback_s` before the watermark re-reads the
    traces that were not yet searchable when the previous cycle ran."""
    end = int(now_s - cutoff_s)
    start = (end if watermark is None else min(end, watermark)) - t.lookback_s
    floor = end - t.catchup_s
    return PollPlan(chunks(max(start, floor), end, t.lookback_s), max(0, floor - start))


def validate_tempo(t: TempoSettings) -> None:
    """What the source needs to start: a URL, the bounds TempoSettings declares, and a
    catch-up that covers one lookback."""
    if not t.url:
        raise ConfigError("the Tempo source needs TLA_TEMPO_URL (Tempo's base URL)")
    check_bounds("tempo", t)
    if t.catchup_s < t.lookback_s:
        raise ConfigError("TLA_TEMPO_MAX_CATCHUP_S must be >= TLA_TEMPO_LOOKBACK_S")


def make_client(t: TempoSettings) -> TempoClient:
    validate_tempo(t)
    assert t.url is not None
    return TempoClient(t.url, tenant=t.tenant, user=t.user, password=t.password, token=t.token,
                       timeout_s=t.timeout_s, verify_tls=t.verify_tls, ca_file=t.ca_file)


async def discover(client: TempoClient) -> tuple[Features, bool]:
    """Features from buildinfo; (assumed-current features, False) when it cannot be read
    now. A 4xx counts as final: gateways often hide buildinfo."""
    try:
        info = await client.buildinfo()
    except TempoUnavailable as e:
        log.warning("event=tempo_buildinfo_unavailable kind=%s error=%r", e.kind, str(e))
        return features_for(None), False
    except TempoRejected as e:
        log.info("event=tempo_buildinfo_hidden status=%d assume=current", e.status)
        return features_for(None), True
    features = features_for(str(info.get("version") or ""))
    log.info("event=tempo_version version=%s most_recent=%s end_cutoff_s=%s", features.version,
             features.most_recent, features.end_cutoff_s)
    return features, True


class TempoSource:
    """The polling agent. `run(stop)` returns when `stop` is set and closes the client."""

    def __init__(self, client: TempoClient, redis: Redis, keys: Keys, metrics: Metrics,
                 tempo: TempoSettings, clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.redis = redis
        self.keys = keys
        self.metrics = metrics
        self.series = metrics.part(TempoMetrics)
        self.tempo = tempo
        self.clock = clock
        self.lease = Lease(redis, keys, tempo.lease_ttl_s)
        self.watermark = Watermark(redis, keys)
        self.coverage = Coverage(redis, keys)
        self._record_covered = recorder(self.coverage)
        self.harvester = Harvester(client, redis, keys, metrics, harvest_params(tempo),
                                   features_for(None))
        self._features_known = False
        retry = search_retry(tempo)
        self._unavailable = Backoff(base_s=retry.base_s, cap_s=retry.cap_s)
        self._rejected = Backoff(base_s=tempo.interval_s, cap_s=REJECTED_CAP_S)

    @classmethod
    def from_settings(cls, settings: TempoConfig, redis: Redis, metrics: Metrics) -> TempoSource:
        return cls(make_client(settings.tempo), redis, settings.keys(), metrics, settings.tempo)

    async def aclose(self) -> None:
        await self.client.aclose()

    @property
    def cutoff_s(self) -> float:
        t = self.tempo
        if t.end_cutoff_s is not None:
            return t.end_cutoff_s
        return self.harvester.features.end_cutoff_s

    async def run(self, stop: asyncio.Event) -> None:
        log.info("event=tempo_source_start url=%s holder=%s", self.client.url, self.lease.holder)
        redis_backoff = Backoff(cap_s=5.0)
        try:
            while not stop.is_set():
                try:
                    if await self.lease.acquire():
                        await self._lead(stop)
                        redis_backoff.reset()
                    else:
                        await sleep_or_stop(stop, self.tempo.lease_ttl_s / 3)
                except Exception as e:
                    if not is_transient(e):
                        raise
                    self.series.tempo_errors.labels("redis").inc()
                    log.warning("event=tempo_redis_error error=%r", e)
                    await redis_backoff.wait(stop)
        finally:
            self.series.tempo_leader.set(0)
            await self.aclose()
            log.info("event=tempo_source_stop")

    async def _lead(self, stop: asyncio.Event) -> None:
        """Poll while holding the lease; return on stop or when the lease is lost, raise
        what broke the lease keeper."""
        halt = asyncio.Event()
        tasks = [asyncio.create_task(self._keep_lease(halt)),
                 asyncio.create_task(_link(stop, halt))]
        self.series.tempo_leader.set(1)
        log.info("event=tempo_lease_acquired holder=%s", self.lease.holder)
        try:
            await self._warm_cache()
            while not halt.is_set():
                delay_s = await self.cycle(halt)
                await sleep_or_stop(halt, delay_s)
        finally:
            halt.set()  # the keeper renews no more, even if its cancellation went astray
            self.series.tempo_leader.set(0)
            for task in tasks:
                task.cancel()
            # Bounded: a helper that swallows its cancellation must not keep the leader
            # (and a shutdown or a takeover test) waiting forever.
            _, stuck = await asyncio.wait(tasks, timeout=HELPER_STOP_S)
            for task in stuck:
                log.error("event=tempo_helper_stuck task=%s action=abandon", task.get_coro())
            if stop.is_set():
                with contextlib.suppress(*TRANSIENT):
                    await self.lease.release()
        if (error := _failure(tasks)) is not None:
            raise error

    async def _keep_lease(self, halt: asyncio.Event) -> None:
        """Renew at a third of the TTL while leading. Sets `halt` once the lease is (or
        may be) gone, and also when this helper fails: the leader must never poll on
        without a lease (a standby would take over, and two would poll)."""
        ttl_s = self.tempo.lease_ttl_s
        renewed = time.monotonic()
        try:
            while not await sleep_or_stop(halt, ttl_s / 3):
                try:
                    if not await self.lease.renew():
                        log.warning("event=tempo_lease_lost holder=%s", self.lease.holder)
                        return
                    renewed = time.monotonic()
                except Exception as e:
                    if not is_transient(e):
                        raise
                    log.warning("event=tempo_lease_renew_failed error=%r", e)
                    if time.monotonic() - renewed >= ttl_s:
                        return  # someone else may hold it by now
        finally:
            halt.set()

    async def _warm_cache(self) -> None:
        since_s = self.clock() - self.tempo.lookback_s - self.tempo.catchup_s
        n = await remember_published(self.redis, self.keys, self.harvester.recent,
                                     int(max(0, since_s) * 1000))
        if n:
            log.info("event=tempo_cache_warmed trace_ids=%d", n)

    async def cycle(self, halt: asyncio.Event) -> float:
        """One poll (with any catch-up); returns how long to wait before the next."""
        started = time.monotonic()
        try:
            if not self._features_known:
                self.harvester.features, self._features_known = await discover(self.client)
            await self.catch_up(halt)
        except TempoUnavailable as e:
            return self._failed("unavailable", e, self._unavailable.next_delay_s(), e.retry_after_s)
        except TempoRejected as e:
            return self._failed("rejected", e, self._rejected.next_delay_s(), None)
        self.series.tempo_polls.labels("ok").inc()
        self._unavailable.reset()
        self._rejected.reset()
        return max(0.0, self.tempo.interval_s - (time.monotonic() - started))

    def _failed(
        self, outcome: str, e: TempoError, delay_s: float, at_least_s: float | None
    ) -> float:
        self.series.tempo_polls.labels(outcome).inc()
        delay_s = min(REJECTED_CAP_S, max(delay_s, at_least_s or 0.0))
        if isinstance(e, TempoRejected):
            self.series.tempo_errors.labels(e.kind).inc()
            log.error("event=tempo_rejected status=%d body=%r fix=%r retry_in_s=%.1f",
                      e.status, e.body, e.hint, delay_s)
        else:  # the harvester counted each failed attempt
            log.warning("event=tempo_unavailable kind=%s error=%r retry_bound_s=%.1f "
                        "retry_in_s=%.1f", e.kind, str(e), self.tempo.search_retry_s, delay_s)
        return delay_s

    async def catch_up(self, halt: asyncio.Event) -> None:
        """Cover every window from the watermark to now - cutoff, oldest first."""
        watermark = await self.watermark.get()
        plan = plan_poll(self.clock(), watermark, self.tempo, self.cutoff_s)
        self._update_lag(watermark)
        if plan.skipped_s:
            self.series.tempo_skipped.inc(plan.skipped_s)
            log.warning("event=tempo_gap_skipped seconds=%d fix=%r", plan.skipped_s,
                        f"run `tempo-anomaly backfill --since {plan.skipped_s + 60}s`")
        if len(plan.windows) > 1:
            log.info("event=tempo_catch_up windows=%d from_s=%d to_s=%d", len(plan.windows),
                     plan.windows[0].start_s, plan.windows[-1].end_s)
        for window in plan.windows:
            if not await self.harvester.cover(window, halt, self._part_done):
                return
        s = self.harvester.stats
        log.debug("event=tempo_poll windows=%d published_total=%d seen_total=%d",
                  len(plan.windows), s.published, s.seen)

    async def _part_done(self, part: Window, complete: bool) -> None:
        """Record a published part at once, so a failure later in the cycle, or a restart,
        resumes after it. A part that stayed truncated moves the watermark too (a search
        cannot find more there), but is not covered (see `_recorder`)."""
        await self._record_covered(part, complete)
        await self.watermark.advance(part.end_s)
        self._update_lag(part.end_s)

    def _update_lag(self, watermark: int | None) -> None:
        if watermark is not None:
            self.series.tempo_watermark_lag.set(max(0.0, self.clock() - watermark))


async def _link(stop: asyncio.Event, halt: asyncio.Event) -> None:
    await stop.wait()
    halt.set()


def _failure(tasks: list[asyncio.Task[None]]) -> BaseException | None:
    """The exception a finished helper ended with, if any."""
    for task in tasks:
        if task.done() and not task.cancelled() and (error := task.exception()) is not None:
            return error
    return None


def search_retry(t: TempoSettings) -> SearchRetry:
    """Retries start near one interval (at most 1 s) and double up to four intervals
    (1-60 s): the same steps as the backoff between failed cycles."""
    return SearchRetry(bound_s=t.search_retry_s, base_s=min(1.0, t.interval_s),
                       cap_s=min(60.0, max(1.0, t.interval_s * 4)))


def harvest_params(t: TempoSettings) -> HarvestParams:
    return HarvestParams(query=t.query, limit=t.limit, spss=t.spss, min_window_s=t.min_window_s,
                         retry=search_retry(t))


# ---------------------------------------------------------------------------------------
# Backfill


def recorder(coverage: Coverage) -> PartDone:
    """Record completed parts as covered; parts that stayed truncated are not: a backfill
    with a higher limit may still find what they held."""
    async def done(part: Window, complete: bool) -> None:
        if complete:
            await coverage.add(part.start_s, part.end_s)
    return done
