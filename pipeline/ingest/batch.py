"""One batch as one call of ingest.lua: buckets and their key names, flagged events.

The call's layout is documented at the top of ingest.lua. Per event it carries the seen
key, the duration and the stream id; per bucket its three keys, id and endpoint; anomaly
fields only for the events above their bucket's threshold. Key names and thresholds are
remembered per bucket, since escaping names and building thresholds per event was most
of ingest's Python time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from zoneinfo import ZoneInfo

from redis.asyncio import Redis

from pipeline.buckets import BucketRef, ZoneBuckets
from pipeline.daytypes import NO_HOLIDAYS, Calendar
from pipeline.cluster import is_cluster
from pipeline.entries import AnomalyEntry
from pipeline.events import (
    DURATION_MS,
    ENDPOINT,
    SERVICE,
    START_NS,
    TRACE_ID,
    EventParts,
    TraceEvent,
    format_ms,
)
from pipeline.ingest.settings import IngestSettings
from pipeline.keys import INGEST_GROUP, Keys
from pipeline.lua import PackedScript, read_script
from pipeline.rule import Fallback, RuleParams, Threshold, Verdict, evaluate, judged_threshold
from pipeline.samples import pack_ms
from pipeline.stats import Baseline

INGEST_LUA = read_script(__package__, "ingest.lua")
# Buckets whose key names (and thresholds) are remembered; ~300 bytes each. A deployment
# with more live buckets than this rebuilds the names now and then, nothing worse.
MAX_MEMO_BUCKETS = 50_000
# The anomalies stream keeps about this many entries (XADD MAXLEN ~).
ANOMALIES_MAXLEN = 10_000


@dataclass(frozen=True, slots=True, eq=False)
class BucketKeys:
    """One bucket's id and key names, memoised per bucket; hashed by identity (fast)."""

    ref: BucketRef
    id: str
    seen: str  # prefix of the bucket's dedup keys, completed by the trace ID
    # What the script takes, as bytes: sample ring, dirty mark, the service's endpoint index.
    keys: tuple[bytes, bytes, bytes]
    id_b: bytes
    service_b: bytes
    endpoint_b: bytes

    @classmethod
    def of(cls, ref: BucketRef, keys: Keys, slot_mode: bool = False) -> BucketKeys:
        """`slot_mode` (a cluster): the endpoint index, in another slot, is left out (the
        mark key stands in; ingest.lua does not touch it then)."""
        bucket_id = ref.id
        index = keys.mark(bucket_id) if slot_mode else keys.endpoints(ref.service)
        script_keys = (keys.dur(bucket_id).encode(), keys.mark(bucket_id).encode(),
                       index.encode())
        return cls(ref, bucket_id, keys.seen(ref.tag, ""), script_keys, bucket_id.encode(),
                   ref.service.encode(), ref.endpoint.encode())


# One valid entry on its way to the script: (stream id, parsed fields, its bucket); the
# code unpacks it, or reads the id through ENTRY_ID.
Item = tuple[bytes, EventParts, BucketKeys]
ENTRY_ID: Final = 0


class IngestCall:
    """Builds and makes the script call for a batch grouped by bucket."""

    def __init__(self, redis: Redis, keys: Keys, settings: IngestSettings, rule: RuleParams,
                 zone: ZoneInfo, window_s: int, calendar: Calendar | None = None) -> None:
        self.keys = keys
        self._rule = rule
        self._tz_name = str(zone.key)
        self._script = PackedScript(redis, INGEST_LUA)
        self._stream_keys = [k.encode() for k in (keys.traces, keys.dirty, keys.anomalies,
                                                  keys.services)]
        s = settings
        # Slot mode (a cluster, pipeline/ingest/slots.py): streams and caps are handled
        # outside the call, which then applies the buckets of one hash slot.
        self.slot_mode = is_cluster(redis)
        self._static_args = [str(a).encode() for a in (
            "" if self.slot_mode else INGEST_GROUP, window_s, s.dedup_ttl_s, s.bucket_ttl_s,
            rule.window_size, ANOMALIES_MAXLEN)]
        self._max_endpoints_arg = b"0" if self.slot_mode else str(s.max_endpoints_per_service).encode()
        self._max_services_arg = b"0" if self.slot_mode else str(s.max_services).encode()
        self._zone_buckets = ZoneBuckets(zone, calendar or NO_HOLIDAYS)
        self._bucket_memo: dict[tuple[str, str, int, str], BucketKeys] = {}
        self._thresholds: dict[
            str, tuple[Baseline | None, Fallback | None, Threshold | None]] = {}

    def bucket(self, parts: EventParts) -> BucketKeys:
        """The event's bucket with its key names, built once per bucket (escaping is slow)."""
        time_bucket = self._zone_buckets(parts[START_NS])
        # One BucketKeys per bucket id (a batch groups by it): a holiday's events share it
        # with the weekend's, and `anomaly_fields_for` names the holiday.
        memo_key = (parts[SERVICE], parts[ENDPOINT], time_bucket.hour, time_bucket.day_type)
        bucket = self._bucket_memo.get(memo_key)
        if bucket is None:
            if len(self._bucket_memo) >= MAX_MEMO_BUCKETS:
                self._bucket_memo.clear()
            ref = BucketRef(parts[SERVICE], parts[ENDPOINT], time_bucket)
            bucket = BucketKeys.of(ref, self.keys, self.slot_mode)
            self._bucket_memo[memo_key] = bucket
        return bucket

    def build(self, groups: dict[BucketKeys, list[Item]], baselines: dict[str, Baseline | None],
              fallbacks: Mapping[str, Fallback] | None = None) -> tuple[list[bytes], list[bytes]]:
        """The script call's keys and arguments for a batch grouped by bucket. `fallbacks`:
        the baseline that judges each thin bucket that has one (pipeline/fallback.py)."""
        keys = [next(iter(groups)).keys[0]] * 4 if self.slot_mode else list(self._stream_keys)
        seen_keys: list[bytes] = []
        ids: list[bytes] = []
        flags: list[bytes] = []
        per_bucket: list[bytes] = []
        for bucket, items in groups.items():
            keys += bucket.keys
            per_bucket += [bucket.id_b, bucket.service_b, bucket.endpoint_b, b"%d" % len(items)]
            per_bucket += [pack_ms(parts[DURATION_MS]) for _i, parts, _b in items]
            seen_keys += [(bucket.seen + parts[TRACE_ID]).encode() for _i, parts, _b in items]
            fallback = fallbacks.get(bucket.id) if fallbacks else None
            threshold = self._threshold(bucket, baselines[bucket.id], fallback)
            if threshold is not None:
                for n, (_i, parts, _b) in enumerate(items, len(ids) + 1):
                    if parts[DURATION_MS] > threshold.value_ms:
                        fields = self.anomaly_fields_for(parts, bucket, baselines[bucket.id],
                                                         fallback)
                        flags += [b"%d" % n, b"%d" % len(fields), *(f.encode() for f in fields)]
            ids += [entry_id for entry_id, _p, _b in items]
        args = [*self._static_args, b"%d" % len(groups), self._max_endpoints_arg,
                b"%d" % len(ids), b"%d" % len(flags), self._max_services_arg, *flags, *ids,
                *per_bucket]
        return keys + seen_keys, args

    async def __call__(
        self, groups: dict[BucketKeys, list[Item]], baselines: dict[str, Baseline | None],
        fallbacks: Mapping[str, Fallback] | None = None,
    ) -> list[Any]:
        """The script's reply: new, duplicate, marked, flagged, then the ordinal of each
        bucket the endpoint cap refused (negated when the service cap did)."""
        reply: list[Any] = await self._script(*self.build(groups, baselines, fallbacks))
        return reply

    def packed(self, groups: dict[BucketKeys, list[Item]], baselines: dict[str, Baseline | None],
               fallbacks: Mapping[str, Fallback] | None = None) -> bytes | None:
        """The whole call packed ahead (one node only; None on a cluster), for `send`."""
        return None if self.slot_mode else self._script.pack(*self.build(groups, baselines,
                                                                          fallbacks))

    async def send(self, packed: bytes) -> list[Any]:
        """`__call__`'s reply for a call `packed` built."""
        reply: list[Any] = await self._script.call_packed(packed)
        return reply

    async def many(self, parts: list[dict[BucketKeys, list[Item]]],
                   baselines: dict[str, Baseline | None],
                   fallbacks: Mapping[str, Fallback] | None = None) -> list[list[Any]]:
        """Slot mode: one call per part (the buckets of one slot), pipelined per node."""
        return await self._script.many([self.build(part, baselines, fallbacks) for part in parts])

    def _threshold(self, bucket: BucketKeys, baseline: Baseline | None,
                   fallback: Fallback | None) -> Threshold | None:
        """`judged_threshold`, kept per bucket while its baseline (and fallback) objects
        stay the same."""
        cached = self._thresholds.get(bucket.id)
        if cached is None or cached[0] is not baseline or cached[1] is not fallback:
            if len(self._thresholds) >= MAX_MEMO_BUCKETS:
                self._thresholds.clear()
            cached = self._thresholds[bucket.id] = (
                baseline, fallback, judged_threshold(baseline, self._rule, fallback))
        return cached[2]

    def anomaly_fields_for(self, parts: EventParts, bucket: BucketKeys,
                           baseline: Baseline | None, fallback: Fallback | None) -> list[str]:
        """The `<p>anomalies` entry's fields of a flagged event, from the full verdict
        (SlotIngest publishes them itself on a cluster)."""
        event = TraceEvent(*parts)
        ref, time_bucket = bucket.ref, self._zone_buckets(event.start_ns)
        if time_bucket != ref.bucket:  # the same bucket, but a holiday (or not) this time
            ref = BucketRef(ref.service, ref.endpoint, time_bucket)
        verdict = evaluate(event.duration_ms, ref, baseline, self._rule, self._tz_name,
                           fallback)
        assert verdict.is_anomaly, "judged_threshold and evaluate disagree"
        return anomaly_fields(event, verdict)


def anomaly_fields(event: TraceEvent, verdict: Verdict) -> list[str]:
    """Flat fields of one `<p>anomalies` entry (readable with redis-cli XRANGE)."""
    b, t = verdict.baseline, verdict.threshold
    assert b is not None and t is not None
    entry: AnomalyEntry = {
        "trace_id": event.trace_id, "service": event.service, "endpoint": event.endpoint,
        "bucket": verdict.ref.id, "start_ns": str(event.start_ns),
        "duration_ms": format_ms(event.duration_ms), "threshold_ms": format_ms(t.value_ms),
        "term": t.term, "p50": format_ms(b.p50), "p95": format_ms(b.p95),
        "mad": format_ms(b.mad), "count": str(b.count), "reason": verdict.reason,
        "level": verdict.level,
        "baseline_id": verdict.fallback.source if verdict.fallback else verdict.ref.id,
    }
    return [text for name, value in entry.items() for text in (name, str(value))]
