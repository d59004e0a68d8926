"""The observer: Redis-side state (stream lengths, group lag and pending, dead letters,
baseline freshness, anomalies by service) as gauges, and the metrics listener: the API's
probes (/metrics, /healthz, /readyz) on their own port, for roles without the API.

Counters in each stage say what that process did; only Redis knows what is still
waiting. The observer asks it every `observe_interval_s` with a handful of cheap calls
(XLEN, XINFO GROUPS, XPENDING summary, XINFO STREAM, a short XREVRANGE/XRANGE) and never
scans the keyspace, whose size grows with the dedup keys. It runs in the api process
(and `run`); API replicas all report the same numbers, so dashboards use `max by (...)`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from pipeline import streams
from pipeline.keys import Keys
from pipeline.metrics import MAX_SERVICE_LABELS, Metrics, ServiceLabels
from pipeline.retry import sleep_or_stop
from services.config import Settings
from services.health import Health
from services.http import PROBES, Router, ServerContext, serving

log = logging.getLogger(__name__)

# Baseline freshness is read from the buckets named by the newest dirty marks: those are
# the ones recompute must have refreshed most recently. 50 covers a busy window's tail.
RECENT_DIRTY = 50
# Anomalies are counted from the stream in pages; past this many per observation the
# rest waits for the next one (the stream is trimmed at 10,000, so a backlog is bounded).
ANOMALY_PAGE = 1000
ANOMALY_PAGES = 10
# Label cardinality bound of the anomalies' service label (pipeline/metrics.py).
MAX_SERVICES = MAX_SERVICE_LABELS


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def id_seconds(entry_id: bytes | str) -> float:
    """The Unix time (seconds) encoded in a stream entry id `<ms>-<seq>`."""
    return int(_text(entry_id).partition("-")[0]) / 1000


class ObserverMetrics:
    """The observer's gauges: what Redis says about the streams. Read periodically by the
    api process; every API replica reports the same values, so dashboards aggregate them
    with max by (...)."""

    def __init__(self, r: CollectorRegistry) -> None:
        self.stream_length = Gauge(
            "tla_stream_length_entries", "XLEN of a stream (traces, dirty, anomalies)",
            ["stream"], registry=r,
        )
        self.group_lag = Gauge(
            "tla_stream_group_lag_entries",
            "Entries of a stream not yet delivered to a consumer group (XINFO GROUPS lag)",
            ["stream", "group"], registry=r,
        )
        self.group_pending = Gauge(
            "tla_stream_group_pending_entries",
            "Entries delivered to a group but not acknowledged (XPENDING)",
            ["stream", "group"], registry=r,
        )
        self.group_oldest_pending_age = Gauge(
            "tla_stream_group_oldest_pending_age_seconds",
            "Age of the oldest unacknowledged entry of a group (0 when none is pending)",
            ["stream", "group"], registry=r,
        )
        self.group_consumers = Gauge(
            "tla_stream_group_consumers", "Consumers registered in a group (XINFO GROUPS)",
            ["stream", "group"], registry=r,
        )
        self.dead_letters = Gauge(
            "tla_dead_letters_entries", "Entries in the dead-letter stream <p>traces:dead",
            registry=r,
        )
        self.dead_letter_last = Gauge(
            "tla_dead_letter_last_timestamp_seconds",
            "Unix time of the newest dead letter (0 when there is none)", registry=r,
        )
        self.baseline_newest_age = Gauge(
            "tla_baseline_newest_age_seconds",
            "Seconds since the newest baseline write among recently dirtied buckets (NaN: none)",
            registry=r,
        )
        self.anomalies_by_service = Counter(
            "tla_anomalies_observed_total",
            "Entries seen on the anomalies stream, by service (the first 50 names, "
            "then 'other')", ["service"], registry=r,
        )
        self.observe_seconds = Gauge(
            "tla_observe_duration_seconds", "Time the last observation of Redis took",
            registry=r,
        )
        self.observe_last = Gauge(
            "tla_observe_last_timestamp_seconds", "Unix time of the last complete observation",
            registry=r,
        )


class Observer:
    """Reads the deployment's streams once per `observe()` and sets the gauges."""

    def __init__(
        self, redis: Redis, keys: Keys, metrics: Metrics, clock: Callable[[], float] = time.time
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.core = metrics
        self.metrics = metrics.part(ObserverMetrics)
        self.clock = clock
        self.streams = {"traces": keys.traces, "dirty": keys.dirty, "anomalies": keys.anomalies}
        self._groups: set[tuple[str, str]] = set()  # label pairs set last time
        self._newest_baseline_ms = 0
        self._anomalies_after: str | None = None  # last anomalies id counted
        self._service_label = ServiceLabels(MAX_SERVICES)

    async def observe(self) -> None:
        started = time.perf_counter()
        seen: set[tuple[str, str]] = set()
        for name, stream in self.streams.items():
            await self._stream(name, stream, seen)
        for name, group in self._groups - seen:  # groups deleted since the last look
            for gauge in self._group_gauges():
                gauge.remove(name, group)
        self._groups = seen
        await self._dead_letters()
        await self._baseline_age()
        await self._anomalies()
        self.metrics.observe_seconds.set(time.perf_counter() - started)
        self.metrics.observe_last.set(self.clock())

    def _group_gauges(self) -> tuple[Gauge, ...]:
        m = self.metrics
        return (m.group_lag, m.group_pending, m.group_oldest_pending_age, m.group_consumers)

    async def _stream(self, name: str, stream: str, seen: set[tuple[str, str]]) -> None:
        m = self.metrics
        m.stream_length.labels(name).set(await self.redis.xlen(stream))
        for g in await streams.group_lags(self.redis, stream):  # the one definition of lag
            group = g.group
            seen.add((name, group))
            m.group_lag.labels(name, group).set(g.undelivered)
            m.group_consumers.labels(name, group).set(g.consumers)
            m.group_pending.labels(name, group).set(g.pending)
            age = 0.0
            if g.pending:
                summary = await self.redis.xpending(stream, group)
                if summary.get("min"):
                    age = max(0.0, self.clock() - id_seconds(summary["min"]))
            m.group_oldest_pending_age.labels(name, group).set(age)

    async def _dead_letters(self) -> None:
        m = self.metrics
        m.dead_letters.set(await self.redis.xlen(self.keys.dead))
        try:
            info = await self.redis.xinfo_stream(self.keys.dead)
        except ResponseError as e:
            if "no such key" not in str(e).lower():
                raise
            m.dead_letter_last.set(0)
            return
        last = info.get("last-generated-id")
        m.dead_letter_last.set(id_seconds(last) if last and info["length"] else 0)

    async def _baseline_age(self) -> None:
        """Seconds since the newest baseline write known to this observer."""
        recent: Any = await self.redis.xrevrange(self.keys.dirty, count=RECENT_DIRTY)
        buckets = {_text(f[b"bucket"]) for _id, f in recent if b"bucket" in f}
        if buckets:
            async with self.redis.pipeline(transaction=False) as pipe:
                for bucket_id in buckets:
                    pipe.hget(self.keys.base(bucket_id), "updated_ms")
                written = [int(v) for v in await pipe.execute() if v is not None]
            self._newest_baseline_ms = max([self._newest_baseline_ms, *written])
        age = self.clock() - self._newest_baseline_ms / 1000
        self.metrics.baseline_newest_age.set(age if self._newest_baseline_ms else math.nan)

    async def _anomalies(self) -> None:
        stream = self.keys.anomalies
        if self._anomalies_after is None:  # count from now on, like any counter
            newest: Any = await self.redis.xrevrange(stream, count=1)
            self._anomalies_after = _text(newest[0][0]) if newest else "0-0"
            return
        for _ in range(ANOMALY_PAGES):
            page: Any = await self.redis.xrange(stream, min=f"({self._anomalies_after}",
                                           count=ANOMALY_PAGE)
            for entry_id, fields in page:
                self._count_anomaly(_text(fields.get(b"service", b"")))
                self._anomalies_after = _text(entry_id)
            if len(page) < ANOMALY_PAGE:
                break

    def _count_anomaly(self, service: str) -> None:
        self.metrics.anomalies_by_service.labels(self._service_label(service)).inc()

    async def run(self, stop: asyncio.Event, interval_s: float) -> None:
        """Observe every `interval_s` until `stop`; Redis trouble is counted, never fatal."""
        while not stop.is_set():
            try:
                await self.observe()
            except (RedisError, OSError) as e:
                self.core.redis_errors.labels("observer").inc()
                log.warning("event=observe_failed error=%r", f"{e.__class__.__name__}: {e}")
            await sleep_or_stop(stop, interval_s)


def listener(redis: Redis, metrics: Metrics, health: Health) -> Router[ServerContext]:
    """/metrics, /healthz and /readyz: the API's probe routes, on the one HTTP layer (no
    bearer token: the listener serves nothing else)."""
    return Router(ServerContext(redis=redis, metrics=metrics, health=health), PROBES)


@asynccontextmanager
async def listening(router: Router[ServerContext], host: str, port: int) -> AsyncIterator[None]:
    async with serving(router, host, port, "metrics listener",
                       "set TLA_METRICS_PORT (0 turns it off)"):
        log.info("event=metrics_listening url=http://%s:%d/metrics", host, port)
        yield


class MetricsStage:
    """The `metrics` stage: the listener (when TLA_METRICS_PORT is set) and the observer."""

    def __init__(
        self, settings: Settings, redis: Redis, metrics: Metrics, health: Health, observe: bool
    ) -> None:
        self.settings = settings.metrics
        self.router = listener(redis, metrics, health)
        interval_s = self.settings.observe_interval_s
        self.interval_s = interval_s if observe else 0.0
        self.observer = Observer(redis, settings.keys(), metrics)

    async def run(self, stop: asyncio.Event) -> None:
        if self.settings.port:
            async with listening(self.router, self.settings.host, self.settings.port):
                await self._observe_or_wait(stop)
        else:
            await self._observe_or_wait(stop)

    async def _observe_or_wait(self, stop: asyncio.Event) -> None:
        if self.interval_s > 0:
            await self.observer.run(stop, self.interval_s)
        else:
            await stop.wait()
