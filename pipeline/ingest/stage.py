"""The ingest stage: consumer group `ingest` on `<p>traces` → dedup, rolling samples, dirty marks.

Each batch is read with XREADGROUP, validated entry by entry (a bad entry is dead-lettered
with its reason and acked, never blocking the rest), then applied in one Lua call
(pipeline/ingest/ingest.lua) that dedups, pushes, trims, marks dirty and acks atomically.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from redis.asyncio import Redis
from redis.exceptions import NoScriptError, ResponseError
from redis.typing import EncodableT, FieldT

from pipeline import streams
from pipeline.baselines import BaselineStore
from pipeline.buckets import BucketRef
from pipeline.daytypes import Calendar
from pipeline.cluster import is_cluster
from pipeline.entries import DeadLetterMeta
from pipeline.errors import InvalidEvent
from pipeline.events import parse_parts
from pipeline.fallback import Fallbacks
from pipeline.ingest.batch import ENTRY_ID, BucketKeys, IngestCall, Item
from pipeline.ingest.metrics import IngestMetrics
from pipeline.ingest.settings import IngestSettings
from pipeline.ingest.slots import SlotIngest
from pipeline.keys import INGEST_GROUP, Keys
from pipeline.metrics import Metrics
from pipeline.retry import Backoff, is_transient
from pipeline.rule import Fallback, RuleParams
from pipeline.stats import Baseline

log = logging.getLogger(__name__)

# Dead-lettered values longer than this are clipped: the reason matters, not 1 MB of junk.
DEAD_VALUE_BYTES = 1024
DEAD_MAX_FIELDS = 32
# A service at its endpoint cap logs once per this many seconds, not once per event.
CAP_LOG_EVERY_S = 60.0
# How often the stream is trimmed (never past unacknowledged entries) and the lag checked.
TRIM_EVERY_S = 10.0
# The dead-letter stream keeps about this many entries (XADD MAXLEN ~).
DEAD_MAXLEN = 100_000


@dataclass(frozen=True, slots=True)
class Batch:
    """A batch read and prepared, not yet applied (nothing written, nothing acked)."""

    entries: list[streams.Entry]
    groups: dict[BucketKeys, list[Item]]  # the valid entries by bucket, in read order
    baselines: dict[str, Baseline | None]  # each bucket's, for flagging anomalies
    fallbacks: Mapping[str, Fallback]  # what judges each thin bucket that has a fallback
    packed: bytes | None  # one node: the script call for `groups`, packed while prepared
    invalid: list[tuple[bytes, dict[bytes, bytes], str]]  # to dead-letter, with the reason
    prepare_s: float


@dataclass(frozen=True, slots=True)
class BatchResult:
    new: int = 0
    duplicate: int = 0
    invalid: int = 0
    marked: int = 0
    anomalies: int = 0
    capped: int = 0  # dead-lettered by the endpoint cap
    services_capped: int = 0  # dead-lettered by the service cap


class Ingestor:
    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        settings: IngestSettings,
        rule: RuleParams,
        zone: ZoneInfo,
        baselines: BaselineStore,
        metrics: Metrics,
        consumer: str,
        *,
        window_s: int,
        calendar: Calendar | None = None,
    ) -> None:
        """`window_s`: the recompute window (TLA_RECOMPUTE_INTERVAL_S) that dirty marks
        belong to; `calendar`: the holidays that are weekend days (TLA_HOLIDAYS_*)."""
        self.redis = redis
        self.keys = keys
        self.settings = settings
        self.rule = rule
        self.zone = zone
        self.tz_name = str(zone.key)
        self.baselines = baselines
        self.metrics = metrics
        self.series = metrics.part(IngestMetrics)
        self.consumer = consumer
        call = IngestCall(redis, keys, settings, rule, zone, window_s, calendar)
        # A cluster applies a batch per hash slot (pipeline/ingest/slots.py).
        self._call: IngestCall | SlotIngest = (
            SlotIngest(redis, call, keys, settings, window_s) if is_cluster(redis) else call)
        self._packer = call
        self._fallbacks = Fallbacks(baselines, rule)
        self._cap_logged: dict[str, float] = {}

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop` is set; the batch in flight always completes and is acked.

        The next batch is read and prepared (parsed, grouped by bucket, baselines fetched)
        while the current one is applied: this process does the next batch's Python work
        while Redis runs the current script, instead of one waiting for the other. A batch
        read ahead is pending under this consumer like any other until its script acks it,
        and a stop applies it before returning.
        """
        backoff = Backoff()
        next_claim = next_trim = 0.0
        started = False
        ahead: asyncio.Task[Batch | None] | None = None
        try:
            while not stop.is_set():
                try:
                    if not started:
                        await streams.ensure_group(self.redis, self.keys.traces, INGEST_GROUP)
                        await self._drain_own_pending()
                        started = True
                    now = time.monotonic()
                    if now >= next_claim:
                        await self.reclaim()
                        next_claim = now + self.settings.claim_every_s
                    if now >= next_trim:
                        await streams.safe_trim(self.redis, self.keys.traces)
                        await self.watch_lag()
                        next_trim = now + TRIM_EVERY_S
                    reading, ahead = ahead or self._read_next(), None
                    batch = await reading
                    if batch:
                        if not stop.is_set():
                            ahead = self._read_next()
                            # Let the read go out before the script: Redis answers it
                            # first, so the next batch is prepared while the script runs.
                            await asyncio.sleep(0)
                        await self.apply_batch(batch)
                    backoff.reset()
                except Exception as e:
                    if streams.is_nogroup(e):
                        log.warning("event=group_missing stream=%s action=recreate",
                                    self.keys.traces)
                        started = False
                        continue
                    if not is_transient(e):
                        raise
                    self.metrics.redis_errors.labels("ingest").inc()
                    log.warning("event=redis_error stage=ingest error=%r action=retry", e)
                    await backoff.wait(stop)
            if ahead is not None:
                reading, ahead = ahead, None
                await self._finish(reading)
        finally:
            if ahead is not None:
                ahead.cancel()
        try:
            await streams.leave_group(self.redis, self.keys.traces, INGEST_GROUP, self.consumer)
        except Exception as e:
            if not is_transient(e) and not streams.is_nogroup(e):
                raise
        log.info("event=stopped stage=ingest consumer=%s", self.consumer)

    def _read_next(self) -> asyncio.Task[Batch | None]:
        return asyncio.create_task(self._read_and_prepare())

    async def _read_and_prepare(self) -> Batch | None:
        entries = await streams.read_new(
            self.redis, self.keys.traces, INGEST_GROUP, self.consumer,
            self.settings.batch_size, self.settings.block_ms,
        )
        return await self.prepare(entries) if entries else None

    async def _finish(self, reading: asyncio.Task[Batch | None]) -> None:
        """On stop, apply the batch read ahead; if Redis is gone it stays pending (another
        consumer reclaims it, or this one drains it on restart)."""
        try:
            if batch := await reading:
                await self.apply_batch(batch)
        except Exception as e:
            if not is_transient(e) and not streams.is_nogroup(e):
                raise
            log.warning("event=shutdown_incomplete stage=ingest error=%r", e)

    async def _drain_own_pending(self) -> None:
        while entries := await streams.read_own_pending(
            self.redis, self.keys.traces, INGEST_GROUP, self.consumer, self.settings.batch_size
        ):
            await self.handle(entries)

    async def reclaim(self) -> int:
        """Take over entries dead consumers left pending; poison entries are dead-lettered."""
        claimed = await streams.autoclaim(
            self.redis, self.keys.traces, INGEST_GROUP, self.consumer,
            self.settings.claim_idle_ms, self.settings.batch_size,
        )
        if claimed.deleted_ids:
            # Trimmed while pending (only possible if someone trimmed unsafely): nothing to redo.
            await self.redis.xack(self.keys.traces, INGEST_GROUP, *claimed.deleted_ids)
            log.warning("event=pending_entries_deleted count=%d", len(claimed.deleted_ids))
        if not claimed.entries:
            return 0
        self.metrics.reclaimed.labels("traces").inc(len(claimed.entries))
        limit = self.settings.max_deliveries
        poison = [
            (i, f, f"delivered {claimed.deliveries[i]} times without an ack (max {limit})")
            for i, f in claimed.entries if claimed.deliveries.get(i, 1) > limit
        ]
        if poison:
            await self.dead_letter(poison)
        poisoned = {i for i, _f, _e in poison}
        await self.handle([e for e in claimed.entries if e[0] not in poisoned])
        return len(claimed.entries)

    async def watch_lag(self) -> None:
        """Export each group's lag on the streams ingest feeds; shout past the threshold."""
        for stream in (self.keys.traces, self.keys.dirty):
            for lag in await streams.group_lags(self.redis, stream):
                if lag.behind >= self.settings.lag_alert_entries:
                    log.error(
                        "event=group_lagging stream=%s group=%s undelivered=%d pending=%d "
                        "threshold=%d action=\"scale consumers or fix the stalled group; the "
                        "stream is kept (not trimmed) until it catches up, so memory grows\"",
                        stream, lag.group, lag.undelivered, lag.pending,
                        self.settings.lag_alert_entries,
                    )

    async def handle(self, entries: list[streams.Entry]) -> BatchResult:
        """Validate, dead-letter the bad, apply the good atomically; acks every entry."""
        return await self.apply_batch(await self.prepare(entries))

    async def prepare(self, entries: list[streams.Entry]) -> Batch:
        """Everything before the first write: parse, group by bucket, fetch baselines."""
        started = time.perf_counter()
        groups: dict[BucketKeys, list[Item]] = {}
        invalid: list[tuple[bytes, dict[bytes, bytes], str]] = []
        for entry_id, fields in entries:
            try:
                parts = parse_parts(fields)
            except InvalidEvent as e:
                invalid.append((entry_id, fields, str(e)))
                continue
            bucket = self._call.bucket(parts)
            group = groups.get(bucket)
            if group is None:
                groups[bucket] = group = []
            group.append((entry_id, parts, bucket))
        baselines = await self.baselines.get_many([b.id for b in groups]) if groups else {}
        fallbacks = await self._fallbacks(((b.ref, b.id) for b in groups), baselines)
        # On one node the whole script call is packed here too, off the critical path.
        packed = self._packer.packed(groups, baselines, fallbacks) if groups else None
        return Batch(entries, groups, baselines, fallbacks, packed, invalid,
                     time.perf_counter() - started)

    async def apply_batch(self, batch: Batch) -> BatchResult:
        """Dead-letter the bad entries, apply the good atomically; acks every entry."""
        started = time.perf_counter()
        if batch.invalid:
            await self.dead_letter(batch.invalid)
        result, rejected = (await self._apply_or_isolate(batch) if batch.groups
                            else (BatchResult(), []))
        if rejected:
            raw = dict(batch.entries)
            await self.dead_letter([(i, raw[i], reason) for i, reason in rejected])
        result = BatchResult(
            result.new, result.duplicate, len(batch.invalid), result.marked, result.anomalies,
            result.capped, result.services_capped,
        )
        self._record(result, len(batch.entries),
                     batch.prepare_s + time.perf_counter() - started)
        return result

    async def _apply_or_isolate(
        self, batch: Batch
    ) -> tuple[BatchResult, list[tuple[bytes, str]]]:
        """Apply the batch; if Redis rejects it, apply entry by entry so only the culprit
        is dead-lettered (the script fails before its first write, so retrying is safe)."""
        try:
            return await self.apply(batch.groups, batch.baselines, batch.fallbacks,
                                    batch.packed)
        except ResponseError as e:
            size = sum(map(len, batch.groups.values()))
            if (streams.is_nogroup(e) or isinstance(e, NoScriptError) or is_transient(e)
                    or size == 1):
                raise
            log.warning("event=batch_failed size=%d error=%r action=isolate", size, str(e))
        total, rejected = BatchResult(), []
        for bucket, items in batch.groups.items():
            for item in items:
                try:
                    one, capped = await self.apply({bucket: [item]}, batch.baselines,
                                                   batch.fallbacks)
                except ResponseError as e:
                    if streams.is_nogroup(e) or isinstance(e, NoScriptError) or is_transient(e):
                        raise
                    rejected.append((item[ENTRY_ID], f"processing failed: {e}"))
                    continue
                rejected += capped
                total = _add(total, one)
        return total, rejected

    def _record(self, result: BatchResult, size: int, seconds: float) -> None:
        m = self.series
        m.events.labels("new").inc(result.new)
        m.events.labels("duplicate").inc(result.duplicate)
        m.events.labels("invalid").inc(result.invalid)
        m.dirty_marks.inc(result.marked)
        m.anomalies.inc(result.anomalies)
        m.endpoint_capped.inc(result.capped)
        m.service_capped.inc(result.services_capped)
        m.batch_size.observe(size)
        m.batch_seconds.observe(seconds)

    async def apply(
        self, groups: dict[BucketKeys, list[Item]], baselines: dict[str, Baseline | None],
        fallbacks: Mapping[str, Fallback], packed: bytes | None = None,
    ) -> tuple[BatchResult, list[tuple[bytes, str]]]:
        """One Lua call for a batch grouped by bucket. Returns the counts and the entries it
        left unacked because their service is at its endpoint cap, or the deployment at its
        service cap, each with the reason."""
        new, dup, marked, flagged, *capped = (
            await self._packer.send(packed) if packed is not None
            else await self._call(groups, baselines, fallbacks))
        buckets = list(groups.items())
        rejected: list[tuple[bytes, str]] = []
        by_service = 0
        for b in map(int, capped):  # -b: the service cap refused bucket b
            bucket, items = buckets[abs(b) - 1]
            reason = self._cap_reason(bucket.ref) if b > 0 else self._service_cap_reason(bucket.ref)
            rejected += [(entry_id, reason) for entry_id, _p, _b in items]
            by_service += len(items) if b < 0 else 0
        result = BatchResult(int(new), int(dup), 0, int(marked), int(flagged),
                             len(rejected) - by_service, by_service)
        return result, rejected

    def _service_cap_reason(self, ref: BucketRef) -> str:
        cap = self.settings.max_services
        if self._shout(""):  # one line a minute for the whole deployment
            log.error(
                "event=service_cap_reached cap=%d service=%r action=\"new services are "
                "dead-lettered; is the service name carrying a pod name or version? raise "
                "TLA_INGEST_MAX_SERVICES if the services are real\"", cap, ref.service[:100],
            )
        return (
            f"service: {cap} services are already tracked (TLA_INGEST_MAX_SERVICES); "
            f"{ref.service[:128]!r} is not one of them. Is the service name carrying a pod "
            "name or a version?"
        )

    def _shout(self, key: str) -> bool:
        """True at most once per CAP_LOG_EVERY_S per key (a service, or '' for the
        deployment): caps are logged loudly, but not once per event."""
        now = time.monotonic()
        if now - self._cap_logged.get(key, -CAP_LOG_EVERY_S) < CAP_LOG_EVERY_S:
            return False
        if len(self._cap_logged) > 10_000:
            self._cap_logged.clear()
        self._cap_logged[key] = now
        return True

    def _cap_reason(self, ref: BucketRef) -> str:
        cap = self.settings.max_endpoints_per_service
        if self._shout(ref.service):
            log.error(
                "event=endpoint_cap_reached service=%r cap=%d endpoint=%r action=\"new "
                "endpoints of this service are dead-lettered; report route templates, not raw "
                "URLs, or raise TLA_INGEST_MAX_ENDPOINTS_PER_SERVICE\"",
                ref.service, cap, ref.endpoint[:100],
            )
        return (
            f"endpoint: service {ref.service[:128]!r} already tracks {cap} endpoints "
            "(TLA_INGEST_MAX_ENDPOINTS_PER_SERVICE); is the endpoint name a raw URL with IDs?"
        )

    async def dead_letter(self, bad: list[tuple[bytes, dict[bytes, bytes], str]]) -> None:
        """Copy to the dead-letter stream and ack, in one transaction; on a cluster (two
        slots) the ack follows the copy: a crash between them only copies again."""
        cluster = is_cluster(self.redis)
        async with self.redis.pipeline(transaction=not cluster) as pipe:
            for entry_id, fields, error in bad:
                log.warning("event=dead_letter origin_id=%s error=%r", entry_id.decode(), error)
                meta: DeadLetterMeta = {"error": error, "origin_id": entry_id.decode(),
                                        "consumer": self.consumer}
                record = clip_fields(fields)
                record.update({name.encode(): str(value).encode() for name, value in meta.items()})
                pipe.xadd(self.keys.dead, record, maxlen=DEAD_MAXLEN,
                          approximate=True)
            if not cluster:
                pipe.xack(self.keys.traces, INGEST_GROUP, *[b[0] for b in bad])
            await pipe.execute()
        if cluster:
            await self.redis.xack(self.keys.traces, INGEST_GROUP, *[b[0] for b in bad])
        self.series.events.labels("dead_lettered").inc(len(bad))


def _add(a: BatchResult, b: BatchResult) -> BatchResult:
    return BatchResult(a.new + b.new, a.duplicate + b.duplicate, a.invalid + b.invalid,
                       a.marked + b.marked, a.anomalies + b.anomalies, a.capped + b.capped,
                       a.services_capped + b.services_capped)


def clip_fields(fields: dict[bytes, bytes]) -> dict[FieldT, EncodableT]:
    """Keep a dead entry inspectable and bounded: few fields, short values."""
    out: dict[FieldT, EncodableT] = {}
    for name, value in list(fields.items())[:DEAD_MAX_FIELDS]:
        if len(value) > DEAD_VALUE_BYTES:
            value = value[:DEAD_VALUE_BYTES] + f"...[{len(value)} bytes]".encode()
        out[name[:DEAD_VALUE_BYTES]] = value
    return out
