"""Redis memory: bytes per stored sample in the sample rings, and per remembered trace ID.

Samples: N rings (window 1000) per latency profile, written with the commands ingest.lua
issues, in batches of 50 samples: the whole ring SET again while it fills, SETRANGE in
place once it is full (200 more samples, so it has wrapped); MEMORY USAGE (SAMPLES 0:
exact) of each ring, summed, over the samples. One more row: rings still filling (500
samples), written one sample per call as a quiet endpoint's are. Trace IDs: M
dedup keys with the ingest's name layout (`<p>seen:{svc|ep}:<32 hex>`, SET NX EX), MEMORY
USAGE of each, and the change in INFO used_memory, which also counts the expires-table
entry (noisy on a shared server).

    .venv/bin/python -m scripts.bench.memory [--buckets 300] [--traces 100000] [--smoke]
"""

from __future__ import annotations

import asyncio
import struct
import uuid
from typing import Any

import numpy as np
from redis.asyncio import Redis

from pipeline.buckets import TimeBucket
from pipeline.keys import BucketRef, Keys
from pipeline.samples import HEADER_BYTES, SAMPLE_BYTES, SAMPLE_DTYPE
from scripts.bench import common
from services.redis_client import connect

WINDOW = 1000
BATCH = 50  # samples per bucket per ingest call
SEEN_TTL_S = 900
PIPELINE = 500
# (name, median ms, log-normal sigma): where real endpoints sit.
PROFILES = (("fast (median 5 ms)", 5.0, 0.6), ("typical (median 40 ms)", 40.0, 0.6),
            ("slow (median 1.5 s)", 1500.0, 0.8))


async def samples(redis: Redis, keys: Keys, buckets: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(11)
    rows = []
    cases = [(name, median_ms, sigma, WINDOW + WINDOW // 5, BATCH)
             for name, median_ms, sigma in PROFILES]
    cases.append(("typical, still filling", 40.0, 0.6, WINDOW // 2, 1))
    for p, (name, median_ms, sigma, n, batch) in enumerate(cases):
        ids = [BucketRef(f"svc-{p}", f"GET /r/{i}", TimeBucket(i % 24, "weekday")).id
               for i in range(buckets)]
        for bucket_id in ids:
            await _fill_as_ingest(redis, keys.dur(bucket_id),
                                  rng.lognormal(np.log(median_ms), sigma, n), batch)
        used = await _usage(redis, [keys.dur(b) for b in ids])
        stored = buckets * min(n, WINDOW)
        rows.append({"profile": name, "rings": buckets, "samples": stored,
                     "bytes": used, "bytes_per_sample": round(used / stored, 2),
                     "encoding": (await redis.object("encoding", keys.dur(ids[0]))).decode()})
    return rows


async def _fill_as_ingest(redis: Redis, key: str, values_ms: np.ndarray, batch: int) -> None:
    """The commands ingest.lua issues for these samples arriving `batch` at a time."""
    cap = WINDOW * SAMPLE_BYTES
    for i in range(0, len(values_ms), batch):
        data = np.asarray(values_ms[i : i + batch], dtype=SAMPLE_DTYPE).tobytes()
        used = (await redis.strlen(key)) - HEADER_BYTES
        if used == cap:
            (oldest,) = struct.unpack("<I", await redis.getrange(key, 0, 3))
            first = min(len(data), cap - oldest * SAMPLE_BYTES)
            await redis.setrange(key, HEADER_BYTES + oldest * SAMPLE_BYTES, data[:first])
            if first < len(data):
                await redis.setrange(key, HEADER_BYTES, data[first:])
            await redis.setrange(key, 0, struct.pack("<I", (oldest + len(data) // 4) % WINDOW))
        else:
            body = ((await redis.get(key)) or bytes(HEADER_BYTES))[HEADER_BYTES:] + data
            await redis.set(key, bytes(HEADER_BYTES) + body[-cap:])


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
                "seen": await seen(redis, keys, traces)}
    finally:
        await common.delete_prefix(redis, prefix)
        await redis.aclose()


def main() -> None:
    p = common.parser(__doc__ or "")
    p.add_argument("--buckets", type=int, default=300, help="rings per profile")
    p.add_argument("--traces", type=int, default=100_000)
    a = p.parse_args()
    buckets, traces = (20, 2000) if a.smoke else (a.buckets, a.traces)
    prefix = a.prefix or common.unique_prefix("memory")
    f = asyncio.run(run(a.redis_url, prefix, buckets, traces))
    print(common.table(
        f"memory: sample rings ({buckets} per profile, window {WINDOW}, MEMORY USAGE)",
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
