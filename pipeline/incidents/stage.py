"""The detect stage: group `incidents` on `<p>traces` → per-endpoint event-time intervals →
incidents on `<p>incidents`.

Aggregation: each batch of trace events goes into one HASH per (endpoint, interval)
(`<p>incint:{svc|ep}:<start ms>`, field trace_id → duration ms), then is acked. Delivery
is at-least-once and the aggregation idempotent: a redelivered trace sets the same field
again, so a crash at any instant loses nothing and counts nothing twice. An interval also
records the baseline of its hour as it was when its first trace arrived (`@ref`), before
the interval's own traces could reach it.

Watermark: intervals close in event time. The stage remembers the newest trace start it
saw; an interval is judged once it ended `lateness` before that, or once no trace arrived
for `idle_flush_s` (a replay or a backfill ended). One endpoint's closed intervals are
judged, its state updated, the intervals deleted, its incidents' hashes written and the
publications still to make recorded, in one Lua call in the endpoint's slot (judge.lua);
then the record is published (the `<p>incidents` entries, the open/closed/intervals
indexes: keys of other slots) by steps that repeat harmlessly, and deleted. A record a
crash left is published before anything new (docs/incidents.md, "Crash safety"). Then
the watermark (`judged_ms`) moves. Same path on one node and on a Redis Cluster. A trace
whose interval was judged already is late: counted in tla_incidents_late_events_total,
not aggregated.

One instance works at a time (the lease `<p>incidents:lease`): the watermark and each
endpoint's state are sequential by nature. The lease is in another slot than the
endpoints' keys, so the writes cannot compare it atomically: it is renewed-and-checked
before every judge round and again whenever a third of its TTL passed during one. A
standby takes over once the lease expires and first takes what the dead instance left
pending.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast
from urllib.parse import unquote
from zoneinfo import ZoneInfo

import numpy as np
from redis.asyncio import Redis

from pipeline import streams
from pipeline.baselines import BaselineStore
from pipeline.buckets import TimeBucket, ZoneBuckets, escape
from pipeline.entries import IncidentEntry
from pipeline.errors import InvalidEvent
from pipeline.events import DURATION_MS, ENDPOINT, SERVICE, START_NS, TRACE_ID, format_ms, parse_parts
from pipeline.incidents.detect import (
    Change,
    EndpointState,
    Interval,
    Params,
    Reference,
    Status,
    explain,
    expire,
    judge,
    measure,
    reference_for,
    rejudged,
    step,
)
from pipeline.incidents.metrics import IncidentMetrics
from pipeline.incidents.settings import IncidentSettings
from pipeline.keys import INCIDENTS_GROUP, Keys
from pipeline.lease import Lease
from pipeline.lua import PackedScript, read_script
from pipeline.metrics import Metrics, ServiceLabels
from pipeline.retry import Backoff, is_transient, sleep_or_stop

log = logging.getLogger(__name__)

JUDGE_LUA = read_script(__package__, "judge.lua")
DELETE_PENDING_LUA = read_script(__package__, "pending_delete.lua")

NS_PER_MS = 1_000_000
READ_BLOCK_MS = 1000  # bounds how long a stop (and a lease renewal) waits
# An interval's hash outlives any lateness; one left behind by a bug still vanishes.
INTERVAL_TTL_S = 7 * 86400
# The incidents stream keeps about this many entries (open, update, close); the
# incidents themselves are kept `retention_days` in their hashes.
INCIDENTS_MAXLEN = 10_000
# Start times further ahead of the wall clock are clock bugs: aggregated, but they do
# not move the watermark (they would make every honest trace late).
MAX_FUTURE_MS = 300_000
# (service, endpoint) → hash tag, memoised: names repeat across nearly every event.
TAG_CACHE_SIZE = 8192


@dataclass(slots=True)
class _Pending:
    bucket: str
    durations: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Written:
    """An incident change as written (for callers and tests)."""

    id: str
    change: Change
    entry: IncidentEntry


class Detector:
    def __init__(
        self, redis: Redis, keys: Keys, settings: IncidentSettings, params: Params,
        zone: ZoneInfo, baselines: BaselineStore, metrics: Metrics, consumer: str, *,
        lateness_s: int, idle_flush_s: float, clock: Callable[[], float] = time.monotonic,
        buckets: Callable[[int], TimeBucket] | None = None,
    ) -> None:
        """`buckets`: start ns → the trace's bucket, as ingest decides it (default: the
        zone's hour and weekday/weekend)."""
        self.redis = redis
        self.keys = keys
        self.settings = settings
        self.params = params
        self.zone = zone
        self.baselines = baselines
        self.metrics = metrics
        self.series = metrics.part(IncidentMetrics)
        self.consumer = consumer
        self.lateness_ms = lateness_s * 1000
        self.idle_flush_s = idle_flush_s
        self._mono = clock
        self._buckets = buckets or ZoneBuckets(zone)
        self._tags: dict[tuple[str, str], str] = {}
        self._service_label = ServiceLabels()
        self.lease = Lease(redis, keys, settings.lease_ttl_s, key=keys.incidents_lease)
        self._lease_checked = -float("inf")
        self._judge_lua = PackedScript(redis, JUDGE_LUA)
        self._delete_pending = PackedScript(redis, DELETE_PENDING_LUA)
        self.max_event_ms = 0
        self.judged_ms = 0
        self._last_arrival = clock()

    # -- the loop ------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Hold the lease, read, aggregate and judge until `stop`; standby otherwise."""
        backoff = Backoff()
        ready = False
        renew_at = 0.0
        while not stop.is_set():
            try:
                if self._mono() >= renew_at:
                    if not await self.lease.acquire():
                        ready = False
                        await sleep_or_stop(stop, self.settings.lease_ttl_s / 3)
                        continue
                    renew_at = self._mono() + self.settings.lease_ttl_s / 3
                    self._lease_checked = self._mono()
                if not ready:
                    await self.start()
                    ready = True
                await self.poll(READ_BLOCK_MS)
                backoff.reset()
            except Exception as e:
                if isinstance(e, LeaseLost):
                    log.warning("event=lease_lost stage=detect holder=%s error=%s",
                                self.lease.holder, e)
                    ready = False
                    renew_at = 0.0
                    continue
                if streams.is_nogroup(e):
                    log.warning("event=group_missing stream=%s action=recreate", self.keys.traces)
                    ready = False
                    continue
                if not is_transient(e):
                    raise
                self.metrics.redis_errors.labels("detect").inc()
                log.warning("event=redis_error stage=detect error=%r action=retry", e)
                await backoff.wait(stop)
        await self._shutdown()

    async def _shutdown(self) -> None:
        try:
            await streams.leave_group(self.redis, self.keys.traces, INCIDENTS_GROUP, self.consumer)
            await self.lease.release()
        except Exception as e:
            if not is_transient(e) and not streams.is_nogroup(e):
                raise
            log.warning("event=shutdown_incomplete stage=detect error=%r", e)
        log.info("event=stopped stage=detect consumer=%s", self.consumer)

    async def start(self) -> None:
        """Create the group, load the clock, and take what a previous holder left pending
        (this consumer's own after a restart, a dead instance's after a takeover)."""
        await streams.ensure_group(self.redis, self.keys.traces, INCIDENTS_GROUP)
        raw = await self.redis.hgetall(self.keys.incidents_clock)
        self.max_event_ms = int(raw.get(b"max_event_ms", 0))
        self.judged_ms = int(raw.get(b"judged_ms", 0))
        while entries := await streams.read_own_pending(
            self.redis, self.keys.traces, INCIDENTS_GROUP, self.consumer, self.settings.batch_size
        ):
            await self.handle(entries)
        while True:
            claimed = await streams.autoclaim(
                self.redis, self.keys.traces, INCIDENTS_GROUP, self.consumer, 0,
                self.settings.batch_size)
            if claimed.deleted_ids:
                await self.redis.xack(self.keys.traces, INCIDENTS_GROUP, *claimed.deleted_ids)
            if not claimed.entries:
                break
            self.metrics.reclaimed.labels("traces").inc(len(claimed.entries))
            await self.handle(claimed.entries)

    async def poll(self, block_ms: int | None) -> int:
        """Read one batch (waiting up to `block_ms`), aggregate it, judge what closed."""
        entries = await streams.read_new(
            self.redis, self.keys.traces, INCIDENTS_GROUP, self.consumer,
            self.settings.batch_size, block_ms)
        if entries:
            await self.handle(entries)
        await self.judge_due()
        return len(entries)

    # -- aggregation ---------------------------------------------------------------

    async def handle(self, entries: list[streams.Entry]) -> int:
        """Aggregate the entries into their intervals and ack them; returns how many
        counted (invalid ones are ingest's to dead-letter, late ones are counted)."""
        interval_ms = self.params.interval_ms
        pending: dict[tuple[str, int], _Pending] = {}
        late = counted = 0
        newest = self.max_event_ms
        future_ms = int(time.time() * 1000) + MAX_FUTURE_MS
        for _entry_id, fields in entries:
            try:
                parts = parse_parts(fields)
            except InvalidEvent:
                continue
            start_ms = parts[START_NS] // NS_PER_MS
            start = start_ms - start_ms % interval_ms
            if start < self.judged_ms:
                late += 1
                continue
            if start_ms <= future_ms:
                newest = max(newest, start_ms)
            tag = self._tag(parts[SERVICE], parts[ENDPOINT])
            p = pending.get((tag, start))
            if p is None:
                b = self._buckets(parts[START_NS])
                p = pending[(tag, start)] = _Pending(f"{tag}:{b.hour}:{b.day_type}")
            p.durations[parts[TRACE_ID]] = format_ms(parts[DURATION_MS])
            counted += 1
        await self._store(pending, newest, [e[0] for e in entries])
        self.series.late_events.inc(late)
        if entries:
            self._last_arrival = self._mono()
        return counted

    def _tag(self, service: str, endpoint: str) -> str:
        tag = self._tags.get((service, endpoint))
        if tag is None:
            if len(self._tags) >= TAG_CACHE_SIZE:
                self._tags.clear()
            tag = self._tags[(service, endpoint)] = f"{{{escape(service)}|{escape(endpoint)}}}"
        return tag

    async def _store(self, pending: dict[tuple[str, int], _Pending], newest: int,
                     ids: list[bytes]) -> None:
        """Write the intervals, then ack: every write is idempotent, so a crash before the
        ack only makes the entries come again and set the same fields."""
        baselines = await self.baselines.get_many({p.bucket for p in pending.values()})
        async with self.redis.pipeline(transaction=False) as pipe:
            for (tag, start), p in pending.items():
                key = self.keys.interval(tag, start)
                pipe.hset(key, mapping=p.durations)  # type: ignore[arg-type]
                pipe.hsetnx(key, "@bucket", p.bucket)
                b = baselines.get(p.bucket)
                if b is not None:
                    pipe.hsetnx(key, "@ref", f"{b.p50!r} {b.p95!r} {b.count}")
                pipe.expire(key, INTERVAL_TTL_S)
                pipe.zadd(self.keys.incident_intervals, {f"{tag}:{start}": start}, nx=True)
            if newest > self.max_event_ms:
                pipe.hset(self.keys.incidents_clock, "max_event_ms", newest)
            if ids:
                pipe.xack(self.keys.traces, INCIDENTS_GROUP, *ids)
            await pipe.execute()
        self.max_event_ms = max(self.max_event_ms, newest)

    # -- judging -------------------------------------------------------------------

    def due_ms(self) -> int:
        """The watermark: intervals starting before it are closed. It trails the newest
        start time by the lateness, or reaches past it once the stream went idle."""
        if not self.max_event_ms:
            return self.judged_ms
        interval_ms = self.params.interval_ms
        mark = self.max_event_ms - self.lateness_ms
        if self._mono() - self._last_arrival >= self.idle_flush_s:
            mark = self.max_event_ms + interval_ms
        return max(self.judged_ms, mark - mark % interval_ms)

    async def judge_due(self) -> list[Written]:
        due = self.due_ms()
        return await self.judge_through(due) if due > self.judged_ms else []

    async def judge_through(self, through_ms: int) -> list[Written]:
        """Judge every interval starting before `through_ms`, endpoint by endpoint, and
        close incidents quiet for long enough by then; then move the watermark."""
        members = cast(list[tuple[bytes, float]], await self.redis.zrangebyscore(
            self.keys.incident_intervals, "-inf", f"({through_ms}", withscores=True))
        starts: dict[str, list[int]] = {}
        for member, score in members:
            tag = member.decode().rpartition(":")[0]
            starts.setdefault(tag, []).append(int(score))
        open_ids = cast(list[bytes], await self.redis.zrange(self.keys.incidents_open, 0, -1))
        for incident_id in open_ids:
            starts.setdefault(incident_id.decode().rpartition(":")[0], [])
        await self._check_lease()
        tags = list(starts)
        async with self.redis.pipeline(transaction=False) as pipe:
            for tag in tags:
                pipe.get(self.keys.incident_pending(tag))
            pending = await pipe.execute() if tags else []
        left = {tag: r for tag, r in zip(tags, pending, strict=True) if r is not None}
        if left:
            await self._recover(left)
        written: list[Written] = []
        for tag, tag_starts in starts.items():
            written += await self._judge_endpoint(tag, sorted(tag_starts), through_ms)
        await self.redis.hset(self.keys.incidents_clock, "judged_ms", through_ms)
        self.judged_ms = through_ms
        retention_ms = self.settings.retention_days * 86_400_000
        await self.redis.zremrangebyscore(
            self.keys.incidents_closed, "-inf", f"({int(time.time() * 1000) - retention_ms}")
        self.series.open.set(await self.redis.zcard(self.keys.incidents_open))
        self.series.judged_through.set(through_ms / 1000)
        return written

    async def _judge_endpoint(self, tag: str, starts: list[int], through_ms: int) -> list[Written]:
        """Judge one endpoint's closed intervals: apply the judgement in its slot (judge.lua,
        recording what is to publish), then publish it (see "Crash safety" in
        docs/incidents.md). A record left pending by a crash or an error is published
        first: the endpoint comes back in the next round, its intervals (or its open
        incident) still indexed until the record is published."""
        await self._check_lease()
        state_key = self.keys.incident_state(tag)
        pending_key = self.keys.incident_pending(tag)
        interval_keys = [self.keys.interval(tag, s) for s in starts]
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.get(pending_key)
            pipe.hgetall(state_key)
            for key in interval_keys:
                pipe.hgetall(key)
            raw = await pipe.execute()
        if raw[0] is not None:
            await self._recover({tag: raw[0]})
        state = EndpointState.from_hash(raw[1])
        changes: list[Change] = []
        statuses: list[Status] = []
        for start, fields in zip(starts, raw[2:], strict=True):
            if fields:
                iv, durations = self._interval(start, fields)
                ref = reference_for(state, iv, self.params)
                if ref is not None and ref is not iv.ref:
                    iv = rejudged(iv, durations, ref)
                status, _p_value = judge(iv, self.params)
                statuses.append(status)
                changes += step(state, iv, status, self.params)
        changes += expire(state, through_ms, self.params)
        service, endpoint = _names(tag)
        written = [self._written(tag, service, endpoint, c) for c in changes]
        record = b""
        if written or starts:
            record = json.dumps({
                "entries": [w.entry for w in written],
                "intervals": [f"{tag}:{s}" for s in starts],
            }, separators=(",", ":")).encode()
        state_fields = state.to_hash()
        args = [b"%d" % (self.settings.retention_days * 86400),
                b"%d" % (self.settings.retention_days * 86400),
                b"%d" % len(interval_keys), record, b"%d" % len(state_fields)]
        for k, v in state_fields.items():
            args += [k.encode(), v.encode()]
        incident_keys = []
        for w in written:
            fields = dict(w.entry) if w.change.kind == "closed" else {**w.entry, "state": "open"}
            incident_keys.append(self.keys.incident(w.id).encode())
            args += [b"closed" if w.change.kind == "closed" else b"open", b"%d" % len(fields)]
            for k, v in fields.items():
                args += [k.encode(), str(v).encode()]
        keys = [state_key.encode(), pending_key.encode(),
                *(k.encode() for k in interval_keys), *incident_keys]
        if not int(await self._judge_lua(keys, args)):
            # Only a stale holder racing us could have left a record since we published.
            raise LeaseLost(f"a pending record reappeared for {tag}")
        if record:
            await self._publish(tag, record)
        self._count(service, statuses, written)
        return written

    async def _recover(self, records: dict[str, bytes]) -> None:
        """Publish records a crash or an error left pending, maybe half published. Only
        this stage's lease holder writes `<p>incidents`, it publishes one record at a
        time and recovers every pending record before it publishes anything new, so the
        entries of a half published record are among the stream's newest: those already
        there are not added again."""
        bodies = {tag: json.loads(r) for tag, r in records.items()}
        count = sum(len(b["entries"]) for b in bodies.values())
        there: set[tuple[str, str, str]] = set()
        if count:
            tail = cast(list[tuple[bytes, dict[bytes, bytes]]], await self.redis.xrevrange(
                self.keys.incidents, "+", "-", count=count))
            there = {_entry_key({k.decode(): v.decode() for k, v in f.items()})
                     for _id, f in tail}
        for tag, record in records.items():
            log.warning("event=incident_record_recovered tag=%s", tag)
            await self._publish(tag, record, there)

    async def _publish(self, tag: str, record: bytes,
                       there: set[tuple[str, str, str]] | None = None) -> None:
        """Publish a pending record, then delete it. Every step repeats harmlessly: ZADD
        and ZREM set the same index state again, and entries already in the stream
        (`there`, when recovering) are not added twice."""
        body = json.loads(record)
        entries: list[dict[str, str]] = body["entries"]
        todo = [e for e in entries if there is None or _entry_key(e) not in there]
        async with self.redis.pipeline(transaction=False) as pipe:
            for e in todo:
                pipe.xadd(self.keys.incidents, e,  # type: ignore[arg-type]
                          maxlen=INCIDENTS_MAXLEN, approximate=True)
            for e in entries:  # in order: an incident opened and closed in one round
                if e["state"] == "closed":
                    pipe.zrem(self.keys.incidents_open, e["id"])
                    pipe.zadd(self.keys.incidents_closed, {e["id"]: int(e["ended_ms"])})
                else:
                    pipe.zadd(self.keys.incidents_open, {e["id"]: int(e["started_ms"])})
            if body["intervals"]:
                pipe.zrem(self.keys.incident_intervals, *body["intervals"])
            await pipe.execute()
        await self._delete_pending(
            [self.keys.incident_pending(tag).encode()], [record])

    async def _check_lease(self) -> None:
        """Renew-and-check the lease (take it when free) once a third of its TTL passed
        since the last check: every write of a round then starts within ttl/3 of a check
        that found the lease ours, long before it could expire and a standby take over
        (docs/incidents.md, "One instance, and the bound of its lease")."""
        if self._mono() - self._lease_checked < self.settings.lease_ttl_s / 3:
            return
        if not await self.lease.acquire():
            raise LeaseLost(f"lease {self.lease.key} is no longer {self.lease.holder}")
        self._lease_checked = self._mono()

    def _interval(self, start: int, fields: dict[bytes, bytes]) -> tuple[Interval, np.ndarray]:
        bucket = fields.pop(b"@bucket", b"").decode()
        ref_text = fields.pop(b"@ref", None)
        ref = None
        if ref_text is not None:
            p50, p95, count = ref_text.split()
            ref = Reference(float(p50), float(p95), int(count))
        durations = np.fromiter((float(v) for v in fields.values()), dtype=np.float64,
                                count=len(fields))
        return measure(durations, start, self.params.interval_ms, bucket, ref), durations

    def _written(self, tag: str, service: str, endpoint: str, c: Change) -> Written:
        incident_id = f"{tag}:{c.started_ms}"
        entry: IncidentEntry = {
            "id": incident_id, "service": service, "endpoint": endpoint, "state": c.kind,
            "started_ms": str(c.started_ms), "updated_ms": str(c.updated_ms),
            "reason": explain(service, endpoint, c, self.zone),
            "requests": str(c.requests), "above_p95": str(c.above),
            "share_above_p95": f"{c.share:.4f}", "median_ms": format_ms(c.median_ms),
            "p50_ms": format_ms(c.p50), "p95_ms": format_ms(c.p95),
            "degraded_intervals": str(c.degraded),
        }
        if c.ended_ms is not None:
            entry["ended_ms"] = str(c.ended_ms)
        return Written(incident_id, c, entry)

    def _count(self, service: str, statuses: list[Status], written: list[Written]) -> None:
        for status in statuses:
            self.series.intervals.labels(status).inc()
        for w in written:
            if w.change.kind == "open":
                self.series.opened.labels(self._service_label(service)).inc()
                log.warning("event=incident_opened id=%s reason=%r", w.id, w.entry["reason"])
            elif w.change.kind == "closed":
                self.series.closed.inc()
                log.info("event=incident_closed id=%s reason=%r", w.id, w.entry["reason"])


class LeaseLost(Exception):
    """The detect lease is no longer ours: stop writing, go back to standby."""


def _entry_key(e: dict[str, str]) -> tuple[str, str, str]:
    """What tells an incident entry apart from every other: an incident has one entry
    per state and event time."""
    return e["id"], e["state"], e["updated_ms"]


def _names(tag: str) -> tuple[str, str]:
    """(service, endpoint) of a hash tag `{svc|ep}` (escaped names, see buckets.escape)."""
    service, _, endpoint = tag[1:-1].partition("|")
    return unquote(service), unquote(endpoint)
