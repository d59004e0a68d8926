"""Redis memory: bytes per stored sample in the rolling lists, and per remembered trace ID.

Samples: N full rolling lists (window 1000) per latency profile, filled with LPUSH of
integer microseconds exactly as ingest stores them; MEMORY USAGE (SAMPLES 0: exact) of
each list, summed, over the samples. Trace IDs: M dedup keys with the ingest's name
layout (`<p>seen:{svc|ep}:<32 hex>`, SET NX EX), MEMORY USAGE of each, and the change in
INFO used_memory, which also counts the expires-table entry (noisy on a shared server).

    .venv/bin/python -m scripts.bench.memory [--buckets 300] [--traces 100000] [--smoke]
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import numpy as np
from redis.asyncio import Redis

from pipeline.buckets import TimeBucket
from pipeline.keys import BucketRef, Keys
from scripts.bench import common
from services.redis_client import connect

WINDOW = 1000
SEEN_TTL_S = 900
PIPELINE = 500
# (name, median ms, log-normal sigma): where real endpoints sit.
PROFILES = (("fast (median 5 ms)", 5.0, 0.6), ("typical (median 40 ms)", 40.0, 0.6),
            ("slow (median 1.5 s)", 1500.0, 0.8))


async def samples(redis: Redis, keys: Keys, buckets: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(11)
    rows = []
    for p, (name, median_ms, sigma) in enumerate(PROFILES):
        ids = [BucketRef(f"svc-{p}", f"GET /r/{i}", TimeBucket(i % 24, "weekday")).id
               for i in range(buckets)]
        for i in range(0, buckets, 50):
            async with redis.pipeline(transaction=False) as pipe:
                for bucket_id in ids[i : i + 50]:
                    us = rng.lognormal(np.log(median_ms * 1000), sigma, WINDOW).astype(np.int64)
                    pipe.lpush(keys.dur(bucket_id), *us.tolist())
                await pipe.execute()
        used = await _usage(redis, [keys.dur(b) for b in ids])
        rows.append({"profile": name, "lists": buckets, "samples": buckets * WINDOW,
                     "bytes": used, "bytes_per_sample": round(used / (buckets * WINDOW), 2),
                     "encoding": (await redis.object("encoding", keys.dur(ids[0]))).decode()})
    return rows


async def seen(redis: Redis, keys: Keys, traces: int) -> dict[str, Any]:
    tags = [BucketRef(f"svc-{i % 10}", f"GET /api/v1/items/{i % 100}", TimeBucket(0, "weekday")).tag
            for i in range(100)]
    names = [keys.seen(tags[i % 100], uuid.uuid4().hex) for i in range(traces)]
    before = (await redis.info("memory"))["used_memory"]
    for i in range(0, traces, PIPELINE):
        async with redis.pipeline(transaction=False) as pipe:
            for name in names[i : i + PIPELINE]:
                pipe.set(name, "1", nx=True, ex=SEEN_TTL_S)
            await pipe.execute()
    after = (await redis.info("memory"))["used_memory"]
    usage = await _usage(redis, names)
    return {"traces": traces, "key_bytes_example": len(names[0]),
            "memory_usage_per_trace": round(usage / traces, 1),
            "used_memory_delta_per_trace": round((after - before) / traces, 1)}


async def _usage(redis: Redis, names: list[str]) -> int:
    total = 0
    for i in range(0, len(names), PIPELINE):
        async with redis.pipeline(transaction=False) as pipe:
            for name in names[i : i + PIPELINE]:
                pipe.memory_usage(name, samples=0)
            total += sum(int(x or 0) for x in await pipe.execute())
    return total


async def run(url: str, prefix: str, buckets: int, traces: int) -> dict[str, Any]:
    redis = connect(url, socket_timeout_s=60.0)
    keys = Keys(prefix)
    try:
        return {"samples": await samples(redis, keys, buckets),
                "seen": await seen(redis, keys, traces),
                "list_max_listpack_size": (await redis.config_get("list-max-listpack-size"))
                .get("list-max-listpack-size")}
    finally:
        await common.delete_prefix(redis, prefix)
        await redis.aclose()


def main() -> None:
    p = common.parser(__doc__ or "")
    p.add_argument("--buckets", type=int, default=300, help="full lists per profile")
    p.add_argument("--traces", type=int, default=100_000)
    a = p.parse_args()
    buckets, traces = (20, 2000) if a.smoke else (a.buckets, a.traces)
    prefix = a.prefix or common.unique_prefix("memory")
    f = asyncio.run(run(a.redis_url, prefix, buckets, traces))
    print(common.table(
        f"memory: rolling lists ({buckets} x {WINDOW} samples per profile, MEMORY USAGE)",
        ["latency profile", "samples", "bytes/sample", "encoding"],
        [[r["profile"], r["samples"], r["bytes_per_sample"], r["encoding"]]
         for r in f["samples"]]))
    s = f["seen"]
    print(common.table(
        f"\nmemory: remembered trace IDs ({s['traces']:,} dedup keys, "
        f"{s['key_bytes_example']}-byte names)",
        ["measure", "bytes/trace"],
        [["MEMORY USAGE per key", s["memory_usage_per_trace"]],
         ["INFO used_memory delta (incl. expires entry)", s["used_memory_delta_per_trace"]]]))
    common.write_json(a.json, "memory", f, {"buckets": buckets, "traces": traces})


if __name__ == "__main__":
    main()
