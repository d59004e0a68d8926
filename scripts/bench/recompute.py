"""Recompute throughput: time to clear one window of N dirty buckets of 1000 samples each.

Fills N full sample rings (SET of a few 1000-sample templates, as ingest.lua leaves a full
ring), puts one dirty mark per bucket in a closed window, then times
`Recomputer.run_window()` (read marks, GET, statistics, the baseline writes, ack). Rows,
same run:
- `fetch-only (GET)`: the GETs alone, pipelined in the recompute's chunks (the I/O floor);
- `fetch-only (LRANGE, lists)`: the same samples as LISTs of integer microseconds, the
  format before the rings, fetched the same way and parsed: what the ring saves;
- `recompute`: the project's full window.

    .venv/bin/python -m scripts.bench.recompute [--buckets 10000] [--smoke] [--json out.json]
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
from redis.asyncio import Redis

from pipeline import samples, streams
from pipeline.buckets import BucketRef, DayType, TimeBucket
from pipeline.ingest import IngestSettings
from pipeline.keys import RECOMPUTE_GROUP, Keys
from pipeline.metrics import Metrics
from pipeline.recompute import Recomputer, RecomputeSettings
from pipeline.recompute.stage import CHUNK_BUCKETS
from scripts.bench import common
from services.redis_client import connect

SAMPLES = 1000
TEMPLATES = 16
FILL_PIPELINE = 500


def bucket_ids(n: int) -> list[str]:
    out = []
    for i in range(n):
        hour, rest = i % 24, i // 24
        day: DayType = "weekday" if rest % 2 == 0 else "weekend"
        ref = BucketRef(f"svc-{rest // 2 % 50}", f"GET /route/{rest // 100}", TimeBucket(hour, day))
        out.append(ref.id)
    return out


async def fill(redis: Redis, keys: Keys, ids: list[str], window: int) -> None:
    rng = np.random.default_rng(7)
    rings = [samples.encode(rng.lognormal(np.log(40.0 + 5.0 * t), 0.5, SAMPLES))
             for t in range(TEMPLATES)]
    for i in range(0, len(ids), FILL_PIPELINE):
        async with redis.pipeline(transaction=False) as pipe:
            for j, bucket_id in enumerate(ids[i : i + FILL_PIPELINE], start=i):
                pipe.set(keys.dur(bucket_id), rings[j % TEMPLATES])
                pipe.xadd(keys.dirty, {"bucket": bucket_id, "window": str(window)})
            await pipe.execute()
    await streams.ensure_group(redis, keys.dirty, RECOMPUTE_GROUP)


async def fetch_only(redis: Redis, keys: Keys, ids: list[str]) -> float:
    started = time.perf_counter()
    for i in range(0, len(ids), CHUNK_BUCKETS):
        await samples.fetch(redis, keys, ids[i : i + CHUNK_BUCKETS])
    return time.perf_counter() - started


async def fetch_lists(redis: Redis, keys: Keys, ids: list[str]) -> float:
    """The same samples as LISTs of integer us (the format before the rings): LRANGE + parse."""
    lists = Keys(keys.prefix + "lists:")
    rng = np.random.default_rng(7)
    templates = [(rng.lognormal(np.log(40_000 + 5_000 * t), 0.5, SAMPLES)).astype(np.int64)
                 for t in range(TEMPLATES)]
    for i in range(0, len(ids), FILL_PIPELINE):
        async with redis.pipeline(transaction=False) as pipe:
            for j, bucket_id in enumerate(ids[i : i + FILL_PIPELINE], start=i):
                pipe.rpush(lists.dur(bucket_id), *templates[j % TEMPLATES].tolist())
            await pipe.execute()
    started = time.perf_counter()
    for i in range(0, len(ids), CHUNK_BUCKETS):
        async with redis.pipeline(transaction=False) as pipe:
            for bucket_id in ids[i : i + CHUNK_BUCKETS]:
                pipe.lrange(lists.dur(bucket_id), 0, -1)
            for raw in await pipe.execute():
                samples.decode_legacy(raw)
    return time.perf_counter() - started


async def run(url: str, prefix: str, n: int) -> dict[str, float]:
    redis = connect(url, socket_timeout_s=60.0)
    keys = Keys(prefix)
    try:
        server_s, _ = await redis.time()
        settings = RecomputeSettings()
        ids = bucket_ids(n)
        await fill(redis, keys, ids, int(server_s) // settings.interval_s - 1)
        fetch_s = await fetch_only(redis, keys, ids)
        lists_s = await fetch_lists(redis, keys, ids)
        recomputer = Recomputer(redis, keys, settings, Metrics(), "bench-recompute",
                                bucket_ttl_s=IngestSettings().bucket_ttl_s)
        result = await recomputer.run_window()
        written = await redis.exists(*(keys.base(b) for b in ids[:1000]))
        return {"buckets": result.buckets, "samples_per_bucket": SAMPLES,
                "fetch_only_s": round(fetch_s, 3), "window_s": round(result.seconds, 3),
                "buckets_per_s": round(result.buckets / result.seconds, 1),
                "fetch_buckets_per_s": round(n / fetch_s, 1),
                "fetch_lists_s": round(lists_s, 3),
                "fetch_lists_buckets_per_s": round(n / lists_s, 1),
                "baselines_written_of_first_1000": int(written)}
    finally:
        await common.delete_prefix(redis, prefix)
        await redis.aclose()


def main() -> None:
    p = common.parser(__doc__ or "")
    p.add_argument("--buckets", type=int, default=10_000)
    a = p.parse_args()
    n = 300 if a.smoke else a.buckets
    prefix = a.prefix or common.unique_prefix("recompute")
    f = asyncio.run(run(a.redis_url, prefix, n))
    print(common.table(
        f"recompute: one window of {f['buckets']:,} dirty buckets x {SAMPLES} samples",
        ["stage", "seconds", "buckets/s"],
        [["fetch-only (GET)", f["fetch_only_s"], f["fetch_buckets_per_s"]],
         ["fetch-only (LRANGE, lists)", f["fetch_lists_s"], f["fetch_lists_buckets_per_s"]],
         ["recompute window", f["window_s"], f["buckets_per_s"]]]))
    common.write_json(a.json, "recompute", f, {})


if __name__ == "__main__":
    main()
