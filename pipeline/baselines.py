"""Reading baselines from `<p>base:*`, with an optional in-process cache for the hot paths."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from redis.asyncio import Redis
from redis.exceptions import RedisError

from pipeline.errors import StoreUnavailable
from pipeline.keys import Keys
from pipeline.stats import Baseline


class BaselineStore:
    """`get`/`get_many` by bucket id; a cached entry lives at most `cache_ttl_s`.

    With a TTL no longer than one recompute window, a reader never serves a baseline
    older than one window plus the TTL. A cached miss (no baseline) is cached too, so
    unknown endpoints cost no round trip per request either.
    """

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        cache_ttl_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._ttl_s = cache_ttl_s
        self._clock = clock
        self._cache: dict[str, tuple[float, Baseline | None]] = {}

    async def get(self, bucket_id: str) -> Baseline | None:
        return (await self.get_many((bucket_id,)))[bucket_id]

    async def get_many(self, bucket_ids: Iterable[str]) -> dict[str, Baseline | None]:
        now = self._clock()
        found: dict[str, Baseline | None] = {}
        missing: list[str] = []
        for bucket_id in bucket_ids:
            hit = self._cache.get(bucket_id)
            if hit is not None and hit[0] > now:
                found[bucket_id] = hit[1]
            elif bucket_id not in found:
                missing.append(bucket_id)
        if missing:
            fetched = await self._fetch(missing)
            expires = now + self._ttl_s
            for bucket_id, baseline in fetched.items():
                found[bucket_id] = baseline
                if self._ttl_s > 0:
                    self._cache[bucket_id] = (expires, baseline)
        return found

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
        else:
            self._cache.pop(bucket_id, None)
