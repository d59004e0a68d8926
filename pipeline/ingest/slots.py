"""Ingest on a Redis Cluster: a batch applied as one ingest.lua call per hash slot, then
published and acked by idempotent steps, with the single-node call's promise.

On one node, ingest.lua does everything in one atomic call. A cluster runs a script only
on keys of one slot, and the trace, dirty and anomalies streams, the service index and
each service's endpoint index are keys of other slots. So a batch goes:

1. admit: new (service, endpoint) pairs join the capped indexes (admit.lua, one call per
   index, the endpoint indexes' calls all at once; at most once per window per pair and
   process);
2. apply: ingest.lua in slot mode, one call per slot, all at once: dedup, sample ring and
   the dirty mark, written as `<window>!` (unpublished), atomically per slot;
3. publish: XADD `<p>anomalies` for the new flagged events, XADD `<p>dirty` for every
   unpublished mark the calls reported, then flag those marks published
   (mark_published.lua, per slot; only a mark still unpublished for that window);
4. XACK the batch's entries.

A crash before 4 redelivers the entries; step 2 then finds every trace already seen
(nothing counted twice) and reports the marks still unpublished, so step 3 publishes them
(a second dirty entry for a mark is harmless: recompute does a bucket once per window).
docs/guarantees.md walks through every crash point.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from redis.asyncio import Redis

from pipeline.cluster import by_slot
from pipeline.events import EventParts
from pipeline.ingest.batch import ANOMALIES_MAXLEN, ENTRY_ID, BucketKeys, IngestCall, Item
from pipeline.ingest.settings import IngestSettings
from pipeline.keys import INGEST_GROUP, Keys
from pipeline.lua import PackedScript, read_script
from pipeline.rule import Fallback
from pipeline.stats import Baseline

ADMIT_LUA = read_script(__package__, "admit.lua")
MARK_PUBLISHED_LUA = read_script(__package__, "mark_published.lua")
# (service, endpoint) pairs remembered as admitted this window; past it, forgotten at once.
MAX_ADMITTED = 50_000


class SlotIngest:
    """`IngestCall`'s contract (same arguments, same reply) on a cluster."""

    def __init__(self, redis: Redis, call: IngestCall, keys: Keys, settings: IngestSettings,
                 window_s: int) -> None:
        self.redis = redis
        self.call = call
        self.keys = keys
        self.settings = settings
        self.window_s = window_s
        self._admit = PackedScript(redis, ADMIT_LUA)
        self._mark_published = PackedScript(redis, MARK_PUBLISHED_LUA)
        self._admitted: dict[tuple[str, str], int] = {}

    def bucket(self, parts: EventParts) -> BucketKeys:
        return self.call.bucket(parts)

    async def __call__(
        self, groups: dict[BucketKeys, list[Item]], baselines: dict[str, Baseline | None],
        fallbacks: Mapping[str, Fallback] | None = None,
    ) -> list[Any]:
        """new, duplicate, marked, flagged, then the capped bucket ordinals (see IngestCall)."""
        capped = await self.admit(list(groups))
        refused = {abs(b) - 1 for b in capped}
        admitted = [g for i, g in enumerate(groups.items()) if i not in refused]
        slots = list(by_slot(admitted, lambda g: g[0].keys[0]).values())
        replies = await self.call.many([dict(part) for part in slots], baselines, fallbacks)
        totals = [0, 0, 0, 0]
        marks: list[tuple[BucketKeys, bytes]] = []
        anomalies: list[list[str]] = []
        for part, (*counts, pubs, fresh) in zip(slots, replies, strict=True):
            totals = [t + int(c) for t, c in zip(totals, counts, strict=True)]
            marks += [(part[int(pubs[j]) - 1][0], pubs[j + 1]) for j in range(0, len(pubs), 2)]
            items = [item for _bucket, bucket_items in part for item in bucket_items]
            for ordinal in fresh:
                _id, parts, bucket = items[int(ordinal) - 1]
                fallback = fallbacks.get(bucket.id) if fallbacks else None
                anomalies.append(self.call.anomaly_fields_for(
                    parts, bucket, baselines[bucket.id], fallback))
        await self._publish(anomalies, marks)
        ids = [item[ENTRY_ID] for _bucket, items in admitted for item in items]
        if ids:
            await self.redis.xack(self.keys.traces, INGEST_GROUP, *ids)
        return [*totals, *capped]

    async def _publish(self, anomalies: list[list[str]], marks: list[tuple[BucketKeys, bytes]]
                       ) -> None:
        """Anomaly entries, then dirty entries, then their marks flagged published."""
        if anomalies or marks:
            async with self.redis.pipeline(transaction=False) as pipe:
                for fields in anomalies:
                    pipe.xadd(self.keys.anomalies, dict(zip(fields[::2], fields[1::2], strict=True)),
                              maxlen=ANOMALIES_MAXLEN, approximate=True)
                for bucket, window in marks:
                    pipe.xadd(self.keys.dirty, {b"bucket": bucket.id_b, b"window": window})
                await pipe.execute()
        if marks:
            ttl = b"%d" % (2 * self.window_s)
            by_key = by_slot(marks, lambda m: m[0].keys[1])
            await self._mark_published.many([
                ([b.keys[1] for b, _w in part], [ttl, *(w for _b, w in part)])
                for part in by_key.values()])

    async def admit(self, buckets: list[BucketKeys]) -> list[int]:
        """The capped buckets' ordinals (1-based; negative: the service cap), as ingest.lua
        reports them; pairs admitted this window by this process are not asked again."""
        s = self.settings
        if s.max_services <= 0 and s.max_endpoints_per_service <= 0:
            return []
        window = int(time.time()) // self.window_s
        todo = {b for b in buckets
                if self._admitted.get((b.ref.service, b.ref.endpoint)) != window}
        if not todo:
            return []
        ordered = [b for b in buckets if b in todo]  # admitted first come, first served
        services = list(dict.fromkeys(b.ref.service for b in ordered))
        [refused_services] = await self._refused([(self.keys.services, services)],
                                                 s.max_services)
        no_services = set(refused_services)
        endpoints: dict[str, list[str]] = {}
        for b in ordered:
            if b.ref.service not in no_services:
                endpoints.setdefault(b.ref.service, [])
                if b.ref.endpoint not in endpoints[b.ref.service]:
                    endpoints[b.ref.service].append(b.ref.endpoint)
        # Every service of the batch once per window (`_admitted` forgets at its end): one
        # admit.lua call per service's endpoint index, all sent together.
        refused = await self._refused([(self.keys.endpoints(svc), eps)
                                       for svc, eps in endpoints.items()],
                                      s.max_endpoints_per_service)
        no_endpoints = {(svc, ep) for svc, r in zip(endpoints, refused, strict=True) for ep in r}
        if len(self._admitted) >= MAX_ADMITTED:
            self._admitted.clear()
        capped = []
        for ordinal, b in enumerate(buckets, 1):
            pair = (b.ref.service, b.ref.endpoint)
            if b.ref.service in no_services:
                capped.append(-ordinal)
            elif pair in no_endpoints:
                capped.append(ordinal)
            elif b in todo:
                self._admitted[pair] = window
        return capped

    async def _refused(self, indexes: list[tuple[str, list[str]]], cap: int
                       ) -> list[list[str]]:
        """Per (index, members): the members admit.lua refused to add to the index (none
        when there is no cap); one call per index, all at once."""
        if cap <= 0:
            return [[] for _ in indexes]
        head = [b"%d" % cap, b"%d" % self.settings.bucket_ttl_s]
        todo = [(index, members) for index, members in indexes if members]
        replies = iter(await self._admit.many([
            ([index.encode()], [*head, *(m.encode() for m in members)])
            for index, members in todo]))
        return [[members[int(i) - 1] for i in next(replies)] if members else []
                for _index, members in indexes]
