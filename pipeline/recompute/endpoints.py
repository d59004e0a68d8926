"""Endpoints' all-hours baselines (`<p>base-all:{svc|ep}`): a thin bucket's last fallback level.

An endpoint's all-hours baseline is p50, p95 and MAD of every sample its 48 buckets hold
(24 hours x weekday/weekend, each bucket weighted by its samples), computed like a
bucket's (`pipeline.stats`), stored like one (store.lua, same TTL) under the endpoint's
hash tag, so it sits in the endpoint's cluster slot.

Recompute refreshes it for the endpoints whose buckets it recomputed in a window:
every window while it holds fewer than EAGER_SAMPLES (a new endpoint: its few small
rings cost no more than one bucket, and it becomes judgeable within a window of reaching
minSamples), else at most every REFRESH_S (the all-hours distribution moves slowly, and 48
full rings cost as much as 48 buckets). At most MAX_PER_WINDOW endpoints per window, the
stalest first: a deployment's first window, when every endpoint lacks one, costs a bounded
slice, and the rest follow in the next windows.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from redis.asyncio import Redis

from pipeline import samples
from pipeline.buckets import DAY_TYPES
from pipeline.fallback import endpoint_id
from pipeline.keys import Keys
from pipeline.stats import Baseline, compute_baseline

# Below this many samples the baseline is refreshed every window (see above).
EAGER_SAMPLES = 1000
# An endpoint with a full all-hours baseline is refreshed at most this often.
REFRESH_S = 300
# Endpoints refreshed per window, at most: 2,400 ring GETs when their rings are full,
# about a quarter of the work of a 10k-bucket window (scripts/bench/recompute.py); past
# 500 endpoints the refresh cycle stretches beyond REFRESH_S, which a distribution over
# all hours tolerates.
MAX_PER_WINDOW = 50
# Endpoints per pipelined fetch: 192 rings, about recompute's chunk of buckets.
CHUNK_ENDPOINTS = 4


def tag_of(bucket_id: str) -> str:
    """`{svc|ep}` of a bucket id (names are escaped: the last `}` closes the tag)."""
    return bucket_id[: bucket_id.rindex("}") + 1]


def bucket_ids_of(tag: str) -> list[str]:
    """Every bucket id of the endpoint: 24 hours of each day type."""
    return [f"{tag}:{hour}:{day_type}" for day_type in DAY_TYPES for hour in range(24)]


async def due(redis: Redis, keys: Keys, tags: Iterable[str], now_ms: int,
              limit: int = MAX_PER_WINDOW) -> list[str]:
    """The endpoints among `tags` whose all-hours baseline should be refreshed now, at
    most `limit`: missing ones first, then those below EAGER_SAMPLES, then stale ones,
    the least recently refreshed first within each."""
    tags = list(dict.fromkeys(tags))
    async with redis.pipeline(transaction=False) as pipe:
        for tag in tags:
            pipe.hmget(keys.base(endpoint_id(tag)), "count", "updated_ms")
        replies = await pipe.execute()
    ranked: list[tuple[int, int, str]] = []
    for tag, (count, updated) in zip(tags, replies, strict=True):
        if count is None or updated is None:
            ranked.append((0, 0, tag))
            continue
        updated_ms = int(updated)
        if int(count) < EAGER_SAMPLES:
            ranked.append((1, updated_ms, tag))
        elif now_ms - updated_ms >= REFRESH_S * 1000:
            ranked.append((2, updated_ms, tag))
    ranked.sort()
    return [tag for _rank, _updated, tag in ranked[:limit]]


async def compute(redis: Redis, keys: Keys, tags: Sequence[str],
                  now_ms: int) -> list[Baseline]:
    """The all-hours baselines of `tags`, in order, from their sample rings (a ring that
    cannot be read is left out, as recompute leaves such a bucket out)."""
    out: list[Baseline] = []
    for i in range(0, len(tags), CHUNK_ENDPOINTS):
        chunk = tags[i : i + CHUNK_ENDPOINTS]
        ids = [b for tag in chunk for b in bucket_ids_of(tag)]
        rings = await samples.fetch(redis, keys, ids)
        per_endpoint = len(ids) // len(chunk)
        for n in range(len(chunk)):
            parts = [r for r in rings[n * per_endpoint : (n + 1) * per_endpoint]
                     if r is not None and r.size]
            values = np.concatenate(parts) if parts else samples.EMPTY
            out.append(compute_baseline(values, now_ms))
    return out
