"""The recompute stage: group `recompute` on `<p>dirty`, baselines per 30 s tumbling window.

Windows are aligned to the wall clock of the Redis server (the ingest script stamps each
dirty mark with the window it was made in). Between boundaries an agent takes marks as
they arrive and holds them (pending, so a crash loses none). At every boundary it adds
the marks a crashed agent left pending, recomputes each bucket of the closed windows once
from its sample ring, writes `<p>base:...` and acks. Marks of the still-open window stay
held until it closes: recomputing early would swallow the window's only mark while
samples keep arriving. Several agents split the marks between them. After a window's
buckets, the all-hours baselines of their endpoints that are due are refreshed
(pipeline/recompute/endpoints.py: the last fallback level of thin buckets).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from redis.asyncio import Redis

from pipeline import samples, streams
from pipeline.buckets import BucketRef
from pipeline.cluster import by_slot, is_cluster
from pipeline.fallback import endpoint_id
from pipeline.keys import RECOMPUTE_GROUP, Keys
from pipeline.lua import PackedScript, read_script
from pipeline.metrics import Metrics
from pipeline.recompute import endpoints
from pipeline.recompute.metrics import RecomputeMetrics
from pipeline.recompute.settings import RecomputeSettings
from pipeline.retry import Backoff, is_transient
from pipeline.stats import Baseline, baselines_of

log = logging.getLogger(__name__)

READ_COUNT = 1000
# Longest XREADGROUP block between boundaries: bounds how long a stop waits.
MAX_BLOCK_MS = 1000
# One call per chunk of baselines, not one command per baseline: with the samples read
# by one GET each, packing and parsing per-baseline commands was most of a window's time.
STORE_LUA = read_script(__package__, "store.lua")
# Buckets per pipeline round trip (~1.6 MB of replies at 1000 samples). Smaller chunks
# overlap Redis's serialising with our parsing more finely: 100-250 cleared 10k buckets
# ~10% faster than 500-1000 (scripts/bench/recompute.py).
CHUNK_BUCKETS = 200


@dataclass(frozen=True, slots=True)
class WindowResult:
    window: int
    buckets: int
    marks: int
    held: int
    seconds: float


class Recomputer:
    def __init__(
        self, redis: Redis, keys: Keys, settings: RecomputeSettings, metrics: Metrics,
        consumer: str, *, bucket_ttl_s: int,
    ) -> None:
        """`bucket_ttl_s`: baselines expire with their samples (TLA_INGEST_BUCKET_TTL_S)."""
        self.redis = redis
        self.keys = keys
        self.settings = settings
        self.bucket_ttl_s = bucket_ttl_s
        self.metrics = metrics
        self.series = metrics.part(RecomputeMetrics)
        self.consumer = consumer
        self._held: list[streams.Entry] = []
        self._store_script = PackedScript(redis, STORE_LUA)

    async def run(self, stop: asyncio.Event) -> None:
        """Clear a window at every boundary until `stop`, taking marks in between."""
        backoff = Backoff()
        ready = False
        while not stop.is_set():
            try:
                if not ready:
                    await streams.ensure_group(self.redis, self.keys.dirty, RECOMPUTE_GROUP)
                    ready = True
                await self.run_window()
                backoff.reset()
                await self._take_marks_until_boundary(stop)
            except Exception as e:
                if streams.is_nogroup(e):
                    log.warning("event=group_missing stream=%s action=recreate", self.keys.dirty)
                    ready = False
                    self._held.clear()
                    continue
                if not is_transient(e):
                    raise
                self.metrics.redis_errors.labels("recompute").inc()
                log.warning("event=redis_error stage=recompute error=%r action=retry", e)
                await backoff.wait(stop)
        await self._shutdown()
        log.info("event=stopped stage=recompute consumer=%s", self.consumer)

    async def _shutdown(self) -> None:
        """Leave nothing pending: recompute the open window's marks now and clear them.

        Deleting the marks lets the next sample of the window mark its bucket again, so
        whoever runs next recomputes it at the boundary as usual.
        """
        try:
            if self._held:
                held, self._held = self._held, []
                bucket_ids = [b for b in dict.fromkeys(map(_bucket_of, held)) if _is_bucket(b)]
                await self.recompute(bucket_ids)
                await self.redis.delete(*[self.keys.mark(b) for b in bucket_ids])
                await self._ack_and_trim([e[0] for e in held])
            await streams.leave_group(self.redis, self.keys.dirty, RECOMPUTE_GROUP, self.consumer)
        except Exception as e:  # the store is gone: the marks stay pending and are reclaimed
            if not is_transient(e) and not streams.is_nogroup(e):
                raise
            log.warning("event=shutdown_incomplete stage=recompute error=%r", e)

    async def _take_marks_until_boundary(self, stop: asyncio.Event) -> None:
        """Take marks as they arrive and hold them until their window closes.

        Taking them early keeps the group's lag near zero, and a mark held by an agent
        that dies is pending, so another agent reclaims it (never lost, never skipped).
        """
        deadline = time.monotonic() + self.seconds_to_boundary()
        while not stop.is_set():
            left_ms = int((deadline - time.monotonic()) * 1000)
            if left_ms <= 0:
                return
            self._held += await streams.read_new(
                self.redis, self.keys.dirty, RECOMPUTE_GROUP, self.consumer, READ_COUNT,
                min(left_ms, MAX_BLOCK_MS),
            )

    def seconds_to_boundary(self) -> float:
        # A small margin past the boundary lets the last marks of the window land.
        w = self.settings.interval_s
        return w - (time.time() % w) + 0.2

    async def run_window(self) -> WindowResult:
        started = time.perf_counter()
        server_s, _us = await self.redis.time()
        current = int(server_s) // self.settings.interval_s
        entries = self._held + await self._collect()
        due: list[streams.Entry] = []
        held: list[streams.Entry] = []
        for entry in entries:
            (due if _window_of(entry) < current else held).append(entry)
        self._held = held
        bucket_ids = [b for b in dict.fromkeys(_bucket_of(e) for e in due) if _is_bucket(b)]
        await self.recompute(bucket_ids)
        await self.refresh_endpoints(endpoints.tag_of(b) for b in bucket_ids)
        if due:
            await self._ack_and_trim([e[0] for e in due])
        result = WindowResult(current - 1, len(bucket_ids), len(due), len(held),
                              time.perf_counter() - started)
        self._record(result)
        return result

    async def _collect(self) -> list[streams.Entry]:
        """Every mark waiting for this agent: orphaned by a dead agent, then new ones."""
        claimed = await streams.autoclaim(
            self.redis, self.keys.dirty, RECOMPUTE_GROUP, self.consumer,
            self.settings.claim_idle_ms, READ_COUNT,
        )
        if claimed.deleted_ids:
            await self.redis.xack(self.keys.dirty, RECOMPUTE_GROUP, *claimed.deleted_ids)
        self.metrics.reclaimed.labels("dirty").inc(len(claimed.entries))
        entries = list(claimed.entries)
        while batch := await streams.read_new(
            self.redis, self.keys.dirty, RECOMPUTE_GROUP, self.consumer, READ_COUNT, None
        ):
            entries += batch
        return entries

    async def recompute(self, bucket_ids: list[str]) -> list[Baseline]:
        """Recompute and store the baselines of `bucket_ids` from their sample rings, chunk
        by chunk, the next chunk's GETs in flight meanwhile (a bucket whose ring is
        unreadable keeps its baseline and is left out of the result).

        Redis serialises a chunk's replies while this process computes the previous one,
        so the two CPUs of a small machine work at the same time.
        """
        chunks = [bucket_ids[i : i + CHUNK_BUCKETS] for i in range(0, len(bucket_ids), CHUNK_BUCKETS)]
        out: list[Baseline] = []
        if not chunks:
            return out
        pending = asyncio.ensure_future(samples.fetch(self.redis, self.keys, chunks[0]))
        try:
            for i, chunk in enumerate(chunks):
                chunk, found = _readable(chunk, await pending)
                if i + 1 < len(chunks):
                    pending = asyncio.ensure_future(
                        samples.fetch(self.redis, self.keys, chunks[i + 1]))
                baselines = baselines_of(found, int(time.time() * 1000))
                await self._store(chunk, baselines)
                out += baselines
        finally:
            if not pending.done():
                pending.cancel()
                await asyncio.gather(pending, return_exceptions=True)
        return out

    async def refresh_endpoints(self, tags: Iterable[str]) -> list[str]:
        """Refresh the all-hours baselines of those endpoints among `tags` that are due
        (pipeline/recompute/endpoints.py); returns their tags."""
        now_ms = int(time.time() * 1000)
        due = await endpoints.due(self.redis, self.keys, tags, now_ms)
        if due:
            computed = await endpoints.compute(self.redis, self.keys, due, now_ms)
            await self._store([endpoint_id(tag) for tag in due], computed)
        return due

    async def _store(self, bucket_ids: list[str], baselines: list[Baseline]) -> None:
        """Write the baselines, then bump the version API caches watch (pipeline/baselines.py)."""
        keys, args = [], [b"%d" % self.bucket_ttl_s]
        for bucket_id, baseline in zip(bucket_ids, baselines, strict=True):
            keys.append(self.keys.base(bucket_id).encode())
            h = baseline.to_hash()
            args += [h["p50"].encode(), h["p95"].encode(), h["mad"].encode(),
                     h["count"].encode(), h["updated_ms"].encode()]
        if keys and is_cluster(self.redis):  # a script per hash slot, several in flight
            parts = by_slot(range(len(keys)), lambda i: keys[i]).values()
            await self._store_script.many([
                ([keys[i] for i in part], [args[0], *(a for i in part for a in args[1 + 5 * i:6 + 5 * i])])
                for part in parts])
        elif keys:
            await self._store_script(keys, args)
        await self.redis.incr(self.keys.base_version)

    async def _ack_and_trim(self, ids: Iterable[bytes]) -> None:
        await self.redis.xack(self.keys.dirty, RECOMPUTE_GROUP, *ids)
        await streams.safe_trim(self.redis, self.keys.dirty)

    def _record(self, result: WindowResult) -> None:
        self.series.buckets.inc(result.buckets)
        self.series.window_seconds.observe(result.seconds)
        self.series.last_window.set(time.time())
        if result.buckets:
            log.info(
                "event=window_cleared window=%d buckets=%d marks=%d held=%d seconds=%.3f",
                result.window, result.buckets, result.marks, result.held, result.seconds,
            )


def _readable(bucket_ids: list[str], found: list[np.ndarray | None]
              ) -> tuple[list[str], list[np.ndarray]]:
    """The buckets whose samples could be read, and their samples."""
    kept = [(b, f) for b, f in zip(bucket_ids, found, strict=True) if f is not None]
    return [b for b, _ in kept], [f for _, f in kept]


def _window_of(entry: streams.Entry) -> int:
    try:
        return int(entry[1].get(b"window", b"0"))
    except ValueError:
        return 0


def _is_bucket(bucket_id: str) -> bool:
    try:
        BucketRef.parse(bucket_id)
    except ValueError:
        log.warning("event=bad_dirty_mark bucket=%r action=skip", bucket_id[:200])
        return False
    return True


def _bucket_of(entry: streams.Entry) -> str:
    return entry[1].get(b"bucket", b"").decode("utf-8", "replace")
