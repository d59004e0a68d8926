"""Redis memory: bytes per stored sample in the sample rings, and per remembered trace ID.

Samples: per latency profile, N buckets fed through the project's own ingest (trace events
XADDed round-robin over the buckets, as interleaved traffic arrives, then drained by an
`Ingestor`: each call of 500 events carries 500/N samples per bucket, 1-2 at the default
N = 300): 1,200 samples each, so the rings are full and have wrapped; MEMORY USAGE
(SAMPLES 0: exact) of each ring, summed, over the samples held. One more row: rings still
filling (500 samples). Trace IDs: M dedup keys with the ingest's name layout
(`<p>seen:{svc|ep}:<32 hex>`, SET NX EX), MEMORY USAGE of each, and the change in INFO
used_memory, which also counts the expires-table entry (noisy on a shared server).

    .venv/bin/python -m scripts.bench.memory [--buckets 300] [--traces 100000] [--smoke]
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import numpy as np
from redis.asyncio import Redis

from pipeline import samples as rings
from pipeline import streams
from pipeline.baselines import BaselineStore
from pipeline.buckets import BucketRef, TimeBucket, load_zone
from pipeline.ingest import Ingestor, IngestSettings
from pipeline.keys import INGEST_GROUP, Keys
from pipeline.metrics import Metrics
from pipeline.rule import RuleSettings
from scripts.bench import common
from services.redis_client import connect

WINDOW = 1000
SEEN_TTL_S = 900
PIPELINE = 500
# A Monday 00:00 UTC: bucket i gets hour i % 24 of it.
MONDAY_NS = 1_795_996_800 * 1_000_000_000
# (name, median ms, log-normal sigma, samples per bucket): where real endpoints sit.
CASES = (("fast (median 5 ms)", 5.0, 0.6, 1200), ("typical (median 40 ms)", 40.0, 0.6, 1200),
         ("slow (median 1.5 s)", 1500.0, 0.8, 1200),
         ("typical, still filling", 40.0, 0.6, WINDOW // 2))


async def samples(redis: Redis, keys: Keys, buckets: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(11)
    rows = []
    for p, (name, median_ms, sigma, n) in enumerate(CASES):
        case = Keys(f"{keys.prefix}{p}:")
        refs = [BucketRef(f"svc-{p}", f"GET /r/{i}", TimeBucket(i % 24, "weekday"))
                for i in range(buckets)]
        durations = rng.lognormal(np.log(median_ms), sigma, (n, buckets))
        await _ingest(redis, case, refs, durations)
        used = await _usage(redis, [case.dur(r.id) for r in refs])
        held = sum([(await rings.read(redis, case, r.id)).size for r in refs])
        rows.append({"profile": name, "rings": buckets, "samples": held,
                     "bytes": used, "bytes_per_sample": round(used / held, 2),
                     "encoding": (await redis.object("encoding", case.dur(refs[0].id))).decode()})
    return rows


async def _ingest(redis: Redis, keys: Keys, refs: list[BucketRef], durations: np.ndarray) -> None:
    """Round `r` sends one trace per bucket; the project's ingest stores them."""
    settings = IngestSettings(max_endpoints_per_service=0, max_services=0)
    ingestor = Ingestor(redis, keys, settings, RuleSettings(window_size=WINDOW).params(),
                        load_zone("UTC"), BaselineStore(redis, keys), Metrics(), "bench-memory",
                        window_s=3600)
    await streams.ensure_group(redis, keys.traces, INGEST_GROUP)
    events = [
        {"trace_id": f"{r:08x}{b:08x}", "service": ref.service, "endpoint": ref.endpoint,
         "start_ns": str(MONDAY_NS + ref.bucket.hour * 3_600_000_000_000 + r),
         "duration_ms": f"{ms:.3f}"}
        for r, row in enumerate(durations.tolist()) for b, (ref, ms) in enumerate(zip(refs, row))
    ]
    for i in range(0, len(events), PIPELINE):
        async with redis.pipeline(transaction=False) as pipe:
            for event in events[i : i + PIPELINE]:
                pipe.xadd(keys.traces, event)  # type: ignore[arg-type]
            await pipe.execute()
        while batch := await streams.read_new(redis, keys.traces, INGEST_GROUP,
                                              ingestor.consumer, settings.batch_size, None):
            await ingestor.handle(batch)
    await redis.delete(keys.traces)  # the stream is not what this measures


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
    buckets, traces = (10, 2000) if a.smoke else (a.buckets, a.traces)
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
