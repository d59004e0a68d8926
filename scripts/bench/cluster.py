"""Ingest on a local 3-primary Redis Cluster: the product next to a hand-written per-slot
consumer, same cluster, same run; and the single-stream limits of one slot.

    python -m scripts.bench.cluster [--smoke] [--json out.json] [--events N]

It starts its own cluster (Debian's redis-server, `cluster-enabled yes`, free ports; the
same launcher as the tests: tests/cluster/servers.py) unless `--redis-url` names one.
Each consumer drains the same pre-filled workload (scripts/bench/ingest_workers.py:
~300 buckets, ~2% duplicates) from its own `<p>traces`; events/s are wall clock, and
each primary's CPU seconds (INFO cpu) tell how the work spread: `events/s per primary`
is what one primary would take at one full core, from the busiest primary's CPU per
event. The stream limits time XADD (pipelined), XREADGROUP (COUNT 500) and XACK (500
ids) on one slot. docs/cluster.md reads these figures.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from pipeline import streams
from pipeline.buckets import ZoneBuckets, load_zone
from pipeline.cluster import by_slot
from pipeline.keys import INGEST_GROUP
from pipeline.lua import PackedScript
from pipeline.metrics import Metrics
from scripts.bench.common import parser, ratio, table, unique_prefix, write_json
from scripts.bench.ingest_workers import SEEN_TTL_S, WINDOW_SIZE, workload
from services.config import Settings
from services.redis_client import connect
from services.runner import make_ingestor

READ_COUNT = 500
PRODUCE_BATCH = 2000

# The per-slot ceiling: what a minimal consumer does in one slot's call (dedup, a LIST
# ring, and it reports which buckets got samples); it publishes dirty marks and acks
# outside, as a cluster requires. No validation, escaping, caps or flagging.
SLOT_CEILING_LUA = """
-- KEYS: nb dur keys, then one seen key per event. ARGV: 1 seen ttl, 2 window size,
-- 3 nb, then per bucket: n, n durations. Returns the ordinals of buckets with new samples.
local nb, window_size = tonumber(ARGV[3]), tonumber(ARGV[2])
local a, s, out = 4, nb + 1, {}
for b = 1, nb do
  local n = tonumber(ARGV[a])
  local fresh = {}
  for i = 1, n do
    if redis.call('SET', KEYS[s], '1', 'NX', 'EX', ARGV[1]) then
      fresh[#fresh + 1] = ARGV[a + i]
    end
    s = s + 1
  end
  if #fresh > 0 then
    if redis.call('LPUSH', KEYS[b], unpack(fresh)) > window_size then
      redis.call('LTRIM', KEYS[b], 0, window_size - 1)
    end
    out[#out + 1] = b
  end
  a = a + 1 + n
end
return out
"""


async def fill(redis: Redis, stream: str, events: list[tuple[bytes, ...]]) -> None:
    for i in range(0, len(events), PRODUCE_BATCH):
        async with redis.pipeline(transaction=False) as pipe:
            for e in events[i : i + PRODUCE_BATCH]:
                pipe.xadd(stream, dict(zip(e[::2], e[1::2], strict=True)))
            await pipe.execute()
    await streams.ensure_group(redis, stream, INGEST_GROUP)


async def cpu_by_node(redis: Redis) -> dict[str, float]:
    info: Any = await redis.info("cpu", target_nodes="primaries")  # type: ignore[call-arg]
    return {node: float(v["used_cpu_user"]) + float(v["used_cpu_sys"]) for node, v in info.items()}


async def drained(redis: Redis, stream: str) -> bool:
    lags = await streams.group_lags(redis, stream)
    return bool(lags) and lags[0].behind == 0


async def run_project(redis: Redis, prefix: str, n: int) -> float:
    settings = Settings.load(env={"TLA_KEY_PREFIX": prefix})
    ingestor = make_ingestor(settings, redis, Metrics(), "bench-project")
    stop = asyncio.Event()
    started = time.perf_counter()
    task = asyncio.create_task(ingestor.run(stop))
    while not await drained(redis, f"{prefix}traces"):
        await asyncio.sleep(0.02)
    seconds = time.perf_counter() - started
    stop.set()
    await task
    return seconds


class SlotCeiling:
    """The hand-written per-slot consumer: XREADGROUP, one Lua call per slot (all at
    once), XADD dirty per bucket with new samples, XACK."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix
        self.traces = f"{prefix}traces"
        self.buckets = ZoneBuckets(load_zone("Asia/Taipei"))
        self.script = PackedScript(redis, SLOT_CEILING_LUA)

    async def run(self) -> float:
        started = time.perf_counter()
        while entries := await streams.read_new(self.redis, self.traces, INGEST_GROUP,
                                                "bench-ceiling", READ_COUNT, None):
            await self.apply(entries)
        return time.perf_counter() - started

    async def apply(self, entries: list[streams.Entry]) -> None:
        groups: dict[str, list[tuple[str, bytes]]] = {}
        for _id, f in entries:
            b = self.buckets(int(f[b"start_ns"]))
            tag = f"{{{f[b'service'].decode()}|{f[b'endpoint'].decode()}}}"
            groups.setdefault(f"{tag}:{b.hour}:{b.day_type}", []).append(
                (f"{self.prefix}seen:{tag}:{f[b'trace_id'].decode()}", f[b"duration_ms"]))
        parts = list(by_slot(groups.items(), lambda g: g[0]).values())
        replies = await asyncio.gather(*(self._call(part) for part in parts))
        async with self.redis.pipeline(transaction=False) as pipe:
            for part, fresh in zip(parts, replies, strict=True):
                for b in fresh:
                    pipe.xadd(f"{self.prefix}dirty", {"bucket": part[int(b) - 1][0]})
            await pipe.execute()
        await self.redis.xack(self.traces, INGEST_GROUP, *[i for i, _f in entries])

    async def _call(self, part: list[tuple[str, list[tuple[str, bytes]]]]) -> Any:
        keys = [f"{self.prefix}dur:{b}".encode() for b, _e in part]
        args = [b"%d" % SEEN_TTL_S, b"%d" % WINDOW_SIZE, b"%d" % len(part)]
        for _b, events in part:
            keys += [seen.encode() for seen, _d in events]
            args += [b"%d" % len(events), *(d for _s, d in events)]
        return await self.script(keys, args)


async def stream_limits(redis: Redis, prefix: str, n: int) -> dict[str, float]:
    """XADD, XREADGROUP and XACK on one stream (one slot, one primary): entries/s seen by
    this client, and entries per CPU second of the stream's primary (its ceiling)."""
    stream = f"{prefix}limits"
    entry = {b"trace_id": b"0" * 32, b"service": b"svc", b"endpoint": b"GET /x",
             b"start_ns": b"1764396000000000000", b"duration_ms": b"12.5"}
    ids: list[bytes] = []

    async def xadd() -> None:
        for i in range(0, n, PRODUCE_BATCH):
            async with redis.pipeline(transaction=False) as pipe:
                for _ in range(min(PRODUCE_BATCH, n - i)):
                    pipe.xadd(stream, entry)  # type: ignore[arg-type]
                await pipe.execute()
        await streams.ensure_group(redis, stream, INGEST_GROUP)

    async def xreadgroup() -> None:
        while batch := await streams.read_new(redis, stream, INGEST_GROUP, "limits",
                                              READ_COUNT, None):
            ids.extend(i for i, _f in batch)

    async def xack() -> None:
        for i in range(0, len(ids), READ_COUNT):
            await redis.xack(stream, INGEST_GROUP, *ids[i : i + READ_COUNT])

    out: dict[str, float] = {}
    for name, op in (("xadd", xadd), ("xreadgroup", xreadgroup), ("xack", xack)):
        before = await cpu_by_node(redis)
        started = time.perf_counter()
        await op()
        seconds = time.perf_counter() - started
        after = await cpu_by_node(redis)
        cpu = max(after[k] - before[k] for k in after) or 1e-9
        out[f"{name}_per_s"] = n / seconds
        out[f"{name}_per_cpu_s"] = n / cpu
    await redis.delete(stream)
    return out


async def measure(url: str, n: int, seed: int) -> dict[str, Any]:
    redis = connect(url, socket_timeout_s=60.0, mode="cluster")
    events = workload(n, seed, time.time_ns())
    distinct = len({e[1] for e in events})
    out: dict[str, Any] = {"events": n, "distinct_traces": distinct}
    prefixes = []
    try:
        for name in ("ceiling", "project"):
            prefix = unique_prefix(f"cluster-{name}")
            prefixes.append(prefix)
            await fill(redis, f"{prefix}traces", events)
            before = await cpu_by_node(redis)
            if name == "project":
                seconds = await run_project(redis, prefix, n)
            else:
                seconds = await SlotCeiling(redis, prefix).run()
            after = await cpu_by_node(redis)
            cpu = {node: round(after[node] - before[node], 3) for node in after}
            busiest = max(cpu.values()) or 1e-9
            out[name] = {"seconds": round(seconds, 3), "events_per_s": round(n / seconds),
                         "primary_cpu_s": cpu, "events_per_s_per_primary": round(n / busiest)}
        limits_prefix = unique_prefix("cluster-limits")
        prefixes.append(limits_prefix)
        out["stream_limits"] = {k: round(v) for k, v in
                                (await stream_limits(redis, limits_prefix, n)).items()}
    finally:
        for prefix in prefixes:
            keys = [k async for k in redis.scan_iter(match=f"{prefix}*", count=1000)]
            for i in range(0, len(keys), 500):
                await redis.delete(*keys[i : i + 500])
        await redis.aclose()
    out["ratio_project_vs_ceiling"] = ratio(out["project"]["events_per_s"],
                                            out["ceiling"]["events_per_s"])
    return out


def main() -> None:
    p = parser(__doc__ or "")
    p.set_defaults(redis_url=None)
    p.add_argument("--events", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    n = 5_000 if a.smoke else a.events
    local = None
    url = a.redis_url
    if url is None:
        from tests.cluster.servers import LocalCluster

        local = LocalCluster(Path(tempfile.mkdtemp(prefix="tla-bench-cluster-"))).start()
        url = local.url
    try:
        figures = asyncio.run(measure(url, n, a.seed))
    finally:
        if local is not None:
            local.stop()
    rows = [[name, figures[name]["events_per_s"], figures[name]["events_per_s_per_primary"],
             " ".join(f"{v:.2f}" for v in figures[name]["primary_cpu_s"].values())]
            for name in ("ceiling", "project")]
    print(table(f"cluster ingest, 3 primaries, {n:,} events (~2% duplicates), same run",
                ["consumer", "events/s", "events/s per primary (1 core)", "primary CPU s"],
                rows))
    print(f"project / per-slot ceiling: {figures['ratio_project_vs_ceiling']}")
    limits = figures["stream_limits"]
    print(table("one stream, one slot", ["op", "entries/s (this client)",
                                          "entries per CPU s of its primary"],
                [[label, limits[f"{op}_per_s"], limits[f"{op}_per_cpu_s"]] for op, label in (
                    ("xadd", "XADD (pipelined)"), ("xreadgroup", f"XREADGROUP COUNT {READ_COUNT}"),
                    ("xack", f"XACK {READ_COUNT} ids"))]))
    write_json(a.json, "cluster", figures, {"events": n, "primaries": 3})


if __name__ == "__main__":
    main()
