"""Reading baselines from `<p>base:*`, with an optional in-process cache for the hot paths.

Freshness: recompute bumps `<p>base-version` in the same pipeline that writes a window's
baselines. A caching store re-reads that counter every `version_check_s` (0.5 s) and,
when it moved, drops its whole cache, so a recomputed baseline is served within about
half a second of being written. A long-lived reader (the API) runs `watch_versions()` as
a background task, so no request ever waits for that GET; without the task, the first
request after each interval reads the counter itself. `cache_ttl_s` (no longer than one
window, enforced by the settings) stays the hard bound on the age of a cached entry: if
the version cannot be read (Redis briefly unreachable), nobody bumps it or the watch
stalls, entries still expire on time. In the steady state a lookup is a dict read
(`cached`) and costs no Redis round trip.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Callable, Iterable

from redis.asyncio import Redis
from redis.exceptions import RedisError

from pipeline.errors import StoreUnavailable
from pipeline.keys import Keys
from pipeline.retry import sleep_or_stop
from pipeline.stats import Baseline

log = logging.getLogger(__name__)

# How stale a cached baseline may be after recompute rewrote it: one GET per interval
# is nothing next to the checks it serves, and half a second is far inside one window.
VERSION_CHECK_S = 0.5


class Miss(enum.Enum):
    """What `cached` returns when only a fetch can answer (None is a cached "no baseline")."""

    MISS = "miss"


MISS = Miss.MISS


class BaselineStore:
    """`get`/`get_many` by bucket id; a cached entry lives at most `cache_ttl_s`.

    With a TTL no longer than one recompute window, a reader never serves a baseline
    older than one window plus the TTL. A cached miss (no baseline) is cached too, so
    unknown endpoints cost no round trip per request either. Concurrent misses of one
    bucket share a single fetch.
    """

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        cache_ttl_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        version_check_s: float | None = VERSION_CHECK_S,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._ttl_s = cache_ttl_s
        self._clock = clock
        self._cache: dict[str, tuple[float, Baseline | None]] = {}
        self._version_check_s = version_check_s
        self._version: bytes | str | None = None
        self._next_version_check = 0.0
        self._watched = False  # a watch_versions() task reads the counter: requests never do
        # Bumped on every clear: a fetch that started before it must not refill the cache.
        self._generation = 0
        # Bumped whenever cached entries are dropped: a value derived from cached entries
        # holds while it stays the same and none of them expired (an entry is only ever
        # replaced once expired or dropped).
        self.epoch = 0
        self._inflight: dict[str, asyncio.Future[dict[str, Baseline | None]]] = {}

    async def get(self, bucket_id: str) -> Baseline | None:
        return (await self.get_many((bucket_id,)))[bucket_id]

    def cached(self, bucket_id: str) -> Baseline | None | Miss:
        """The cached baseline (None: cached as absent), or MISS when only `get` can tell.

        No coroutine and no clock beyond one monotonic read: the check path's steady state.
        """
        hit = self._cache.get(bucket_id)
        if hit is None:
            return MISS
        now = self._clock()
        if hit[0] <= now or (not self._watched and self._version_due(now)):
            return MISS
        return hit[1]

    def expires(self, bucket_id: str) -> float:
        """When the cached entry expires (this store's clock), 0.0 if none is cached."""
        hit = self._cache.get(bucket_id)
        return hit[0] if hit is not None else 0.0

    def now(self) -> float:
        return self._clock()

    async def watch_versions(self, stop: asyncio.Event) -> None:
        """Read the version every `version_check_s` until `stop` is set (an app's lifetime).

        Meanwhile requests skip the check; if this task ends, they resume doing it. Stopped
        by an event, not by cancelling: a cancellation landing inside redis-py's GET was
        seen swallowed there, leaving the task alive and the app's cleanup waiting on it."""
        interval_s = self._version_check_s
        if self._ttl_s <= 0 or interval_s is None:
            return  # nothing cached, or versions not followed: nothing to watch
        self._watched = True
        try:
            while not stop.is_set():
                await self._check_version(self._clock())
                await sleep_or_stop(stop, interval_s)
        finally:
            self._watched = False

    async def get_many(self, bucket_ids: Iterable[str]) -> dict[str, Baseline | None]:
        now = self._clock()
        if self._version_due(now):
            await self._check_version(now)
        found: dict[str, Baseline | None] = {}
        missing: list[str] = []
        for bucket_id in bucket_ids:
            hit = self._cache.get(bucket_id)
            if hit is not None and hit[0] > now:
                found[bucket_id] = hit[1]
            elif bucket_id not in found:
                missing.append(bucket_id)
        if missing:
            found.update(await self._fetch_shared(list(dict.fromkeys(missing)), now))
        return found

    async def _fetch_shared(self, bucket_ids: list[str], now: float) -> dict[str, Baseline | None]:
        """Fetch what no other request is fetching; wait for the rest (single flight).

        When a hot entry expires, every request arriving before the refetch lands would
        otherwise send its own HGETALL (50 connections: 50 round trips, and a p99 spike).
        """
        waits = [(b, f) for b in bucket_ids if (f := self._inflight.get(b)) is not None]
        mine = [b for b in bucket_ids if b not in self._inflight]
        found: dict[str, Baseline | None] = {}
        if mine:
            found.update(await self._fetch_and_publish(mine, now))
        for bucket_id, future in waits:
            try:
                found[bucket_id] = (await asyncio.shield(future))[bucket_id]
            except asyncio.CancelledError:
                if not future.cancelled():
                    raise  # this request was cancelled, not the shared fetch
                found.update(await self._fetch_and_publish([bucket_id], now))
        return found

    async def _fetch_and_publish(
        self, bucket_ids: list[str], now: float
    ) -> dict[str, Baseline | None]:
        future: asyncio.Future[dict[str, Baseline | None]] = (
            asyncio.get_running_loop().create_future())
        for bucket_id in bucket_ids:
            self._inflight[bucket_id] = future
        generation = self._generation
        try:
            fetched = await self._fetch(bucket_ids)
        except BaseException as e:
            if isinstance(e, asyncio.CancelledError):
                future.cancel()
            else:
                future.set_exception(e)
                future.exception()  # retrieved here: no "never retrieved" log if unshared
            raise
        finally:
            for bucket_id in bucket_ids:
                if self._inflight.get(bucket_id) is future:
                    del self._inflight[bucket_id]
        future.set_result(fetched)
        if self._ttl_s > 0 and generation == self._generation:
            expires = now + self._ttl_s
            for bucket_id, baseline in fetched.items():
                self._cache[bucket_id] = (expires, baseline)
        return fetched

    def _version_due(self, now: float) -> bool:
        return (self._ttl_s > 0 and self._version_check_s is not None and not self._watched
                and now >= self._next_version_check)

    async def _check_version(self, now: float) -> None:
        """Drop the cache if recompute published new baselines since the last look."""
        assert self._version_check_s is not None
        # Claimed before the await: concurrent requests keep using the cache meanwhile.
        self._next_version_check = now + self._version_check_s
        try:
            version = await self._redis.get(self._keys.base_version)
        except (RedisError, OSError) as e:  # the TTL still bounds staleness; retry later
            log.debug("event=baseline_version_unreadable error=%r", e)
            return
        if version != self._version:
            self._version = version
            self.forget()

    async def _fetch(self, bucket_ids: list[str]) -> dict[str, Baseline | None]:
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for bucket_id in bucket_ids:
                    pipe.hgetall(self._keys.base(bucket_id))
                replies = await pipe.execute()
        except (RedisError, OSError) as e:
            raise StoreUnavailable(f"baseline store unavailable: {e.__class__.__name__}") from e
        return {b: Baseline.from_hash(r) for b, r in zip(bucket_ids, replies, strict=True)}

    def forget(self, bucket_id: str | None = None) -> None:
        """Drop one cached entry, or all of them."""
        if bucket_id is None:
            self._cache.clear()
            self._generation += 1
        else:
            self._cache.pop(bucket_id, None)
        self.epoch += 1
