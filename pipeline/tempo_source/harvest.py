"""Covering a time window of Tempo: search, bisect on truncation, map, dedup, XADD.

Tempo has no pagination, and when more than `limit` traces match it returns an arbitrary
subset (or, with `most_recent=true` from 2.8, the newest `limit`). So a response of
exactly `limit` traces is treated as truncated and its window is split in two and
searched again, down to `min_window_s`. Tempo matches traces that *overlap* a window,
so neighbouring windows and overlapping polls return some traces twice: a bounded local
cache of recently published trace IDs keeps the stream free of repeats (the ingest
dedup stays the authority across processes). A truncated answer that is split is not
published: its halves return every trace it held. So everything published came from a
part searched as far as it can be, and recording those parts records what was published.

A search Tempo cannot answer now (429 when its queue is full, 5xx, timeouts) is retried
in place (`SearchRetry`), so one rejected search costs one backoff, not the window. The
parts of a window complete oldest first, and `cover` reports each one as it completes,
so the caller can record progress at the granularity of what was published.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from pipeline.events import TraceEvent, to_fields
from pipeline.keys import Keys
from pipeline.metrics import Metrics
from pipeline.retry import Backoff, sleep_or_stop
from pipeline.tempo_source.client import SearchQuery, TempoClient, TempoRejected, TempoUnavailable
from pipeline.tempo_source.metrics import TempoMetrics
from pipeline.tempo_source.parse import (
    Features,
    Held,
    SearchPage,
    effective_query,
    is_parse_error,
    max_limit_from,
    selects_roots,
    to_event,
    without_hint,
)

log = logging.getLogger(__name__)

# Enough for ~50 overlapping polls of 2,000 traces; ~150 bytes per remembered ID.
RECENT_IDS_MAX = 100_000


@dataclass(frozen=True, slots=True)
class Window:
    """[start_s, end_s] in unix seconds, as sent to Tempo."""

    start_s: int
    end_s: int

    @property
    def span_s(self) -> int:
        return self.end_s - self.start_s

    def halves(self) -> tuple[Window, Window]:
        mid = self.start_s + self.span_s // 2
        return Window(self.start_s, mid), Window(mid, self.end_s)


def chunks(start_s: int, end_s: int, size_s: int) -> list[Window]:
    """[start, end] cut into consecutive windows of at most `size_s`, oldest first."""
    out = []
    while start_s < end_s:
        out.append(Window(start_s, min(end_s, start_s + size_s)))
        start_s += size_s
    return out


@dataclass(frozen=True, slots=True)
class SearchRetry:
    """How a search Tempo could not answer is retried in place: full-jitter backoff from
    `base_s` doubling to `cap_s`, never sooner than a `Retry-After`, while the next attempt
    falls within `bound_s` of the first failure; after that the error propagates."""

    bound_s: float
    base_s: float = 1.0
    cap_s: float = 30.0


@dataclass(frozen=True, slots=True)
class HarvestParams:
    query: str
    limit: int
    spss: int
    min_window_s: int = 1  # bisecting stops here; a still-full answer is counted unresolved
    source: str = "tempo"
    retry: SearchRetry | None = None  # None: a failed search propagates at once


# Called as each part of a window completes, oldest first: (part, complete). `complete` is
# False for a minimal part that stayed truncated: searched as far as Tempo allows, not fully.
PartDone = Callable[[Window, bool], Awaitable[None]]


class _Retrying:
    """The in-place retries of one search under a SearchRetry (None: no retries)."""

    def __init__(self, policy: SearchRetry | None) -> None:
        self.policy = policy
        self.backoff = Backoff(policy.base_s, policy.cap_s) if policy else None
        self.first_failed: float | None = None
        self.attempts = 0

    def next_delay_s(self, error: TempoUnavailable) -> float | None:
        """The wait before the next attempt; None once it would land past the bound."""
        if self.policy is None or self.backoff is None:
            return None
        now = time.monotonic()
        if self.first_failed is None:
            self.first_failed = now
        self.attempts += 1
        delay_s = max(self.backoff.next_delay_s(), error.retry_after_s or 0.0)
        if now + delay_s - self.first_failed > self.policy.bound_s:
            return None
        return delay_s


@dataclass(slots=True)
class HarvestStats:
    """Running totals of one harvester (backfill prints them; the agent logs them)."""

    queries: int = 0
    seen: int = 0
    published: int = 0
    duplicates: int = 0
    held: int = 0
    truncations: int = 0
    unresolved: int = 0


class RecentIds:
    """Trace IDs published lately, oldest forgotten first (bounded memory)."""

    def __init__(self, max_size: int = RECENT_IDS_MAX) -> None:
        self.max_size = max_size
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, trace_id: object) -> bool:
        return trace_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, trace_id: str) -> None:
        self._ids[trace_id] = None
        self._ids.move_to_end(trace_id)
        while len(self._ids) > self.max_size:
            self._ids.popitem(last=False)


@dataclass
class Harvester:
    """Searches windows of one Tempo and publishes what it finds to `<p>traces`."""

    client: TempoClient
    redis: Redis
    keys: Keys
    metrics: Metrics
    params: HarvestParams
    features: Features
    recent: RecentIds = field(default_factory=RecentIds)
    stats: HarvestStats = field(default_factory=HarvestStats)
    # Sorted, disjoint [start_s, end_s] ranges some search already covered (backfill sets
    # it): a trace overlapping one was returned by that search and published then.
    skip_covered: list[tuple[int, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.limit = self.params.limit
        self.series = self.metrics.part(TempoMetrics)

    @property
    def query(self) -> str:
        return effective_query(self.params.query, self.features)

    async def cover(self, window: Window, stop: asyncio.Event | None = None,
                    done: PartDone | None = None) -> bool:
        """Search `window` until no part is truncated, calling `done` as each part completes
        (oldest first, so everything from window.start_s to that part's end is then
        published); False if `stop` interrupted it. TempoError propagates (an outage only
        once it outlasted the retry bound): the caller decides what to do next."""
        pending = [window]
        while pending:
            if stop is not None and stop.is_set():
                return False
            part = pending.pop()
            page = await self.search(part, stop)
            if page is None:
                return False
            if page.returned >= self.limit and self._split(part, pending):
                continue  # its halves return every trace it held: publish those
            await self.publish(page)
            if done is not None:
                await done(part, page.returned < self.limit)
        return True

    def _split(self, part: Window, pending: list[Window]) -> bool:
        """Queue the halves of a truncated part; False when it is too small to split."""
        self.stats.truncations += 1
        if part.span_s > self.params.min_window_s:
            self.series.tempo_truncations.labels("split").inc()
            left, right = part.halves()
            pending.extend((right, left))  # oldest half first
            return True
        self.stats.unresolved += 1
        self.series.tempo_truncations.labels("unresolved").inc()
        log.warning(
            "event=tempo_truncated_unresolved start_s=%d end_s=%d limit=%d hint=%s",
            part.start_s, part.end_s, self.limit,
            "more traces than TLA_TEMPO_LIMIT in the minimum window; raise the limit",
        )
        return False

    async def search(self, window: Window, stop: asyncio.Event | None = None
                     ) -> SearchPage | None:
        """One search, adapting once to a server that rejects the hint or the limit, and
        retried in place while Tempo is unavailable (params.retry). None when `stop` was
        set while waiting to retry."""
        retrying = _Retrying(self.params.retry)
        while True:
            query = SearchQuery(self.query, window.start_s, window.end_s, self.limit,
                                self.params.spss)
            try:
                page = await self._timed_search(query)
            except TempoRejected as e:
                if not self._adapt(e, query):
                    self.series.tempo_queries.labels("error").inc()
                    raise
                continue
            except TempoUnavailable as e:
                delay_s = self._unavailable(e, window, retrying)
                if delay_s is None:
                    raise
                if await _pause(stop, delay_s):
                    return None
                continue
            truncated = page.returned >= self.limit
            self.series.tempo_queries.labels("truncated" if truncated else "ok").inc()
            return page

    def _unavailable(self, error: TempoUnavailable, window: Window,
                     retrying: _Retrying) -> float | None:
        """Count a failed search; how long to wait before retrying it (None: give up)."""
        self.series.tempo_queries.labels("error").inc()
        self.series.tempo_errors.labels(error.kind).inc()
        delay_s = retrying.next_delay_s(error)
        if delay_s is not None:
            log.warning("event=tempo_search_retry start_s=%d end_s=%d kind=%s attempt=%d "
                        "retry_in_s=%.2f error=%r", window.start_s, window.end_s, error.kind,
                        retrying.attempts, delay_s, str(error))
        return delay_s

    async def _timed_search(self, query: SearchQuery) -> SearchPage:
        self.stats.queries += 1
        started = time.perf_counter()
        try:
            return await self.client.search(query)
        finally:
            self.series.tempo_query_seconds.observe(time.perf_counter() - started)

    def _adapt(self, error: TempoRejected, query: SearchQuery) -> bool:
        """True when the rejection names something we can change ourselves."""
        if error.status != 400:
            return False
        if is_parse_error(error.body) and "with" in query.q and self.features.with_hint:
            self.features = without_hint(self.features)
            log.warning("event=tempo_hint_dropped version=%s body=%r",
                        self.features.version, error.body)
            return True
        cap = max_limit_from(error.body)
        if cap is not None and 0 < cap < self.limit:
            log.warning("event=tempo_limit_lowered from=%d to=%d hint=%s", self.limit, cap,
                        "set TLA_TEMPO_LIMIT to the server's max_result_limit")
            self.limit = cap
            return True
        return False

    async def publish(self, page: SearchPage) -> int:
        """XADD the new, complete traces of `page`; returns how many were added."""
        for reason in page.malformed:
            self._held("malformed")
            log.warning("event=tempo_trace_malformed reason=%r", reason)
        roots_only = selects_roots(self.query)
        fresh: dict[str, TraceEvent] = {}
        for trace in page.traces:
            self.stats.seen += 1
            self.series.tempo_traces_seen.inc()
            if trace.trace_id in self.recent or trace.trace_id in fresh:
                self.stats.duplicates += 1
                self.series.tempo_traces_duplicate.inc()
                continue
            if self.skip_covered and _overlaps(trace.start_ns, trace.duration_ms,
                                               self.skip_covered):
                self.stats.duplicates += 1  # published by the search that covered it
                self.series.tempo_traces_duplicate.inc()
                continue
            event = to_event(trace, roots_only, self.params.source)
            if isinstance(event, Held):
                self._held(event.reason)
                continue
            fresh[trace.trace_id] = event
        if fresh:
            await self._xadd(list(fresh.values()))
        return len(fresh)

    def _held(self, reason: str) -> None:
        self.stats.held += 1
        self.series.tempo_traces_held.labels(reason).inc()

    async def _xadd(self, events: list[TraceEvent]) -> None:
        # No MAXLEN: trimming must never drop entries the ingest group has not acked.
        async with self.redis.pipeline(transaction=False) as pipe:
            for event in events:
                pipe.xadd(self.keys.traces, to_fields(event))  # type: ignore[arg-type]
            await pipe.execute()
        for event in events:
            self.recent.add(event.trace_id)
        self.stats.published += len(events)
        self.series.tempo_traces_published.inc(len(events))


async def _pause(stop: asyncio.Event | None, delay_s: float) -> bool:
    """Wait `delay_s`; True when `stop` was set meanwhile."""
    if stop is None:
        await asyncio.sleep(delay_s)
        return False
    return await sleep_or_stop(stop, delay_s)


def _overlaps(start_ns: int, duration_ms: int, ranges: list[tuple[int, int]]) -> bool:
    """Does the trace [start, start + duration] overlap one of the sorted, disjoint
    [start_s, end_s] ranges (Tempo's search matches by overlap)?"""
    start_s = start_ns / 1e9
    end_s = start_s + duration_ms / 1000
    i = bisect.bisect_right(ranges, (end_s, float("inf"))) - 1  # the last range starting <= end
    return i >= 0 and ranges[i][1] >= start_s


async def remember_published(redis: Redis, keys: Keys, recent: RecentIds, since_ms: int,
                             max_entries: int = 20_000) -> int:
    """Warm `recent` with the tempo-sourced trace IDs XADDed since `since_ms` (bounded),
    so a new leader does not re-publish what the previous one just did."""
    ids: list[str] = []
    scanned, newest = 0, "+"
    while scanned < max_entries:
        batch: list[Any] = await redis.xrevrange(
            keys.traces, max=newest, min=str(since_ms), count=1000) or []
        for _entry_id, fields in batch:
            source, trace_id = _field(fields, "source"), _field(fields, "trace_id")
            if source == "tempo" and trace_id:
                ids.append(trace_id)
        scanned += len(batch)
        if len(batch) < 1000:
            break
        newest = "(" + _text(batch[-1][0])
    for trace_id in reversed(ids):  # oldest first, so the newest are forgotten last
        recent.add(trace_id)
    return len(ids)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _field(fields: dict[Any, Any] | None, name: str) -> str | None:
    if not fields:
        return None
    value = fields.get(name.encode(), fields.get(name))
    return None if value is None else _text(value)
