"""What the web view shows, read from Redis into JSON, with bounded work per request.

- the tracked endpoints (the service and endpoint indexes ingest keeps, `Keys.services`
  and `Keys.endpoints(service)`), each with its current bucket's baseline and how many
  anomalies it had in the last hour;
- the 48 buckets (24 hours x weekday/weekend) of one endpoint;
- the flagged traces of `<p>anomalies`, newest first (XREVRANGE, paged).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from collections.abc import Callable
from typing import Any, TypedDict

from redis.asyncio import Redis
from redis.exceptions import RedisError

from pipeline.baselines import BaselineStore
from pipeline.buckets import DAY_TYPES, BucketRef, TimeBucket, ZoneBuckets
from pipeline.errors import StoreUnavailable
from pipeline.keys import Keys
from pipeline.rule import RuleParams, threshold_of
from pipeline.stats import Baseline
from services.views import BaselineJson, ThresholdJson, baseline_json, threshold_json

log = logging.getLogger(__name__)

# Bounds on one request's work. The ingest caps allow 1000 services of 2000 endpoints;
# a page listing more than this many is unreadable anyway, and `truncated` says so.
MAX_SERVICES_LISTED = 200
MAX_ENDPOINTS_LISTED = 2000
# Anomalies are read newest first in pages; past ANOMALY_SCAN_MAX entries a request stops
# (the stream keeps about 10,000) and says so with `truncated`.
ANOMALY_PAGE = 500
ANOMALY_SCAN_MAX = 5000
HOUR_MS = 3_600_000
HOURS = range(24)
Entry = tuple[bytes, dict[bytes, bytes]]  # a stream entry as redis-py returns it


class EndpointJson(TypedDict):
    service: str
    endpoint: str
    lastSeenMs: int
    bucketId: str
    baseline: BaselineJson | None
    threshold: ThresholdJson | None
    anomaliesLastHour: int


class EndpointsJson(TypedDict):
    timezone: str
    hour: int
    dayType: str
    minSamples: int
    endpoints: list[EndpointJson]
    truncated: bool
    anomaliesTruncated: bool


class CellJson(TypedDict):
    hour: int
    dayType: str
    id: str
    baseline: BaselineJson | None
    threshold: ThresholdJson | None
    enoughSamples: bool


class BaselinesJson(TypedDict):
    service: str
    endpoint: str
    timezone: str
    hour: int
    dayType: str
    minSamples: int
    buckets: list[CellJson]


class AnomalyJson(TypedDict):
    id: str
    flaggedMs: int
    traceId: str
    traceUrl: str | None
    service: str
    endpoint: str
    bucketId: str
    startTimeUnixNano: str
    durationMs: float
    thresholdMs: float
    term: str
    p50: float
    p95: float
    mad: float
    count: int
    reason: str


class AnomaliesJson(TypedDict):
    anomalies: list[AnomalyJson]
    truncated: bool


@dataclass(frozen=True, slots=True)
class AnomalyQuery:
    """Which anomalies: flagged at or after `since_ms`, of one service/endpoint if set."""

    since_ms: int = 0
    service: str | None = None
    endpoint: str | None = None
    limit: int = 100

    def matches(self, fields: dict[bytes, bytes]) -> bool:
        return ((self.service is None or fields.get(b"service") == self.service.encode())
                and (self.endpoint is None or fields.get(b"endpoint") == self.endpoint.encode()))


class WebData:
    """The web view's reads. Baselines come from `store` (uncached: the pages show what
    Redis holds now, and the check path's cache is not filled with 48 buckets a view)."""

    def __init__(self, redis: Redis, keys: Keys, store: BaselineStore, rule: RuleParams,
                 buckets: ZoneBuckets, tz_name: str, trace_link: Callable[[str], str | None]) -> None:
        self.redis = redis
        self.keys = keys
        self.store = store
        self.rule = rule
        self.buckets = buckets  # holiday-aware, as on the check path
        self.tz_name = tz_name
        self.trace_link = trace_link  # trace ID -> its URL (TLA_UI_TRACE_URL), or None

    async def endpoints(self, now_ms: int) -> EndpointsJson:
        tracked, truncated = await self._tracked()
        now = self.buckets(now_ms * 1_000_000)
        refs = [BucketRef(s, e, now) for s, e, _ in tracked]
        baselines = await self.store.get_many([r.id for r in refs])
        counts, anomalies_truncated = await self._recent_counts(now_ms - HOUR_MS)
        rows = [self._endpoint_row(ref, seen_s, baselines[ref.id], counts)
                for ref, (_, _, seen_s) in zip(refs, tracked, strict=True)]
        rows.sort(key=lambda r: (r["service"], r["endpoint"]))
        return {"timezone": self.tz_name, "hour": now.hour, "dayType": now.day_type,
                "minSamples": self.rule.min_samples, "endpoints": rows,
                "truncated": truncated, "anomaliesTruncated": anomalies_truncated}

    def _endpoint_row(self, ref: BucketRef, seen_s: float, baseline: Baseline | None,
                      counts: Counter[tuple[str, str]]) -> EndpointJson:
        return {
            "service": ref.service, "endpoint": ref.endpoint, "lastSeenMs": int(seen_s * 1000),
            "bucketId": ref.id, "baseline": baseline_json(baseline, ref.id),
            "threshold": self._threshold(baseline),
            "anomaliesLastHour": counts[(ref.service, ref.endpoint)],
        }

    def _threshold(self, baseline: Baseline | None) -> ThresholdJson | None:
        return threshold_json(threshold_of(baseline, self.rule), self.rule) if baseline else None

    async def _tracked(self) -> tuple[list[tuple[str, str, float]], bool]:
        """(service, endpoint, last seen unix s), most recently seen services first, and
        whether the caps left some out. Three round trips: the services, how many
        endpoints each has, then as many of those as the cap leaves room for."""
        keys = self.keys
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.zcard(keys.services)
                pipe.zrevrange(keys.services, 0, MAX_SERVICES_LISTED - 1)
                n_services, raw = await pipe.execute()
            services = [_text(s) for s in raw]
            async with self.redis.pipeline(transaction=False) as pipe:
                for service in services:
                    pipe.zcard(keys.endpoints(service))
                sizes = await pipe.execute()
            shares: list[tuple[str, int]] = []  # (service, how many of its endpoints)
            room = MAX_ENDPOINTS_LISTED
            for service, size in zip(services, sizes, strict=True):
                if min(size, room) > 0:  # never ZREVRANGE 0 -1: that would be all of them
                    shares.append((service, min(size, room)))
                    room -= min(size, room)
            async with self.redis.pipeline(transaction=False) as pipe:
                for service, take in shares:
                    pipe.zrevrange(keys.endpoints(service), 0, take - 1, withscores=True)
                replies = await pipe.execute() if shares else []
        except (RedisError, OSError) as e:
            raise StoreUnavailable(f"endpoint index unavailable: {e.__class__.__name__}") from e
        tracked = [(service, _text(endpoint), float(seen_s))
                   for (service, _), taken in zip(shares, replies, strict=True)
                   for endpoint, seen_s in taken]
        return tracked, n_services > len(services) or sum(sizes) > len(tracked)

    async def _recent_counts(self, since_ms: int) -> tuple[Counter[tuple[str, str]], bool]:
        counts: Counter[tuple[str, str]] = Counter()
        entries, truncated = await self._scan(AnomalyQuery(since_ms, limit=ANOMALY_SCAN_MAX + 1))
        for _id, fields in entries:
            counts[(_text(fields.get(b"service", b"")), _text(fields.get(b"endpoint", b"")))] += 1
        return counts, truncated

    async def baselines(self, service: str, endpoint: str, now_ms: int) -> BaselinesJson:
        now = self.buckets(now_ms * 1_000_000)
        refs = [BucketRef(service, endpoint, TimeBucket(hour, day_type))
                for day_type in DAY_TYPES for hour in HOURS]
        found = await self.store.get_many([r.id for r in refs])
        cells: list[CellJson] = [{
            "hour": r.bucket.hour, "dayType": r.bucket.day_type, "id": r.id,
            "baseline": baseline_json(found[r.id], r.id, now_ms=now_ms),
            "threshold": self._threshold(found[r.id]),
            "enoughSamples": (b := found[r.id]) is not None and b.count >= self.rule.min_samples,
        } for r in refs]
        return {"service": service, "endpoint": endpoint, "timezone": self.tz_name,
                "hour": now.hour, "dayType": now.day_type, "minSamples": self.rule.min_samples,
                "buckets": cells}

    async def anomalies(self, query: AnomalyQuery) -> AnomaliesJson:
        entries, truncated = await self._scan(query)
        out = [a for entry_id, fields in entries if (a := self._anomaly(entry_id, fields))]
        return {"anomalies": out, "truncated": truncated}

    async def _scan(self, query: AnomalyQuery) -> tuple[list[Entry], bool]:
        """Matching entries newest first, at most `query.limit`; True when the scan stopped
        at ANOMALY_SCAN_MAX before reaching `since_ms` or the stream's first entry."""
        found: list[Entry] = []
        upper: str = "+"
        scanned = 0
        lower = f"{query.since_ms}-0"
        try:
            while scanned < ANOMALY_SCAN_MAX:
                count = min(ANOMALY_PAGE, ANOMALY_SCAN_MAX - scanned)
                page: Any = await self.redis.xrevrange(self.keys.anomalies, upper, lower, count)
                scanned += len(page)
                for entry_id, fields in page:
                    if query.matches(fields):
                        found.append((entry_id, fields))
                        if len(found) == query.limit:
                            return found, False
                if len(page) < count:
                    return found, False
                upper = f"({_text(page[-1][0])}"
        except (RedisError, OSError) as e:
            raise StoreUnavailable(f"anomalies stream unavailable: {e.__class__.__name__}") from e
        return found, True

    def _anomaly(self, entry_id: bytes, f: dict[bytes, bytes]) -> AnomalyJson | None:
        """One entry as JSON; None for an entry ingest did not write (a stray XADD)."""
        try:
            trace_id = _text(f[b"trace_id"])
            return {
                "id": _text(entry_id), "flaggedMs": int(_text(entry_id).partition("-")[0]),
                "traceId": trace_id, "traceUrl": self.trace_link(trace_id),
                "service": _text(f[b"service"]), "endpoint": _text(f[b"endpoint"]),
                "bucketId": _text(f[b"bucket"]), "startTimeUnixNano": _text(f[b"start_ns"]),
                "durationMs": float(f[b"duration_ms"]), "thresholdMs": float(f[b"threshold_ms"]),
                "term": _text(f[b"term"]), "p50": float(f[b"p50"]), "p95": float(f[b"p95"]),
                "mad": float(f[b"mad"]), "count": int(f[b"count"]), "reason": _text(f[b"reason"]),
            }
        except (KeyError, ValueError) as e:
            log.debug("event=anomaly_entry_unreadable id=%s error=%r", _text(entry_id), e)
            return None


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
