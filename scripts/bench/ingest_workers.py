"""Child processes of the ingest benchmarks: the producer, the project's ingest, the ceiling.

    python -m scripts.bench.ingest_workers produce|project|ceiling --redis-url U --prefix P ...

`produce` XADDs a deterministic workload (~2% duplicate trace IDs, 300 endpoints over an
hour or a week)
through a raw socket with pre-encoded commands, so the producer is never the bottleneck.
`project` runs the project's ingest stage exactly as `tempo-anomaly ingest` builds it.
`ceiling` is the minimal hand-written consumer the issue describes: XREADGROUP COUNT 500,
then one Lua call per batch doing SET NX EX, LPUSH per bucket, conditional LTRIM, one
dirty XADD per bucket and XACK; no validation, no escaping, no anomaly flagging.
SIGTERM stops a consumer after its batch in flight.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import signal
import socket
import time
from urllib.parse import urlsplit

from redis.asyncio import Redis

from pipeline.buckets import ZoneBuckets, load_zone
from pipeline.keys import INGEST_GROUP
from services.config import Settings
from services.redis_client import connect
from services.runner import build_stages, runtime

ENDPOINTS_PER_SERVICE = 10
# The two spreads the issue measures, both over 300 endpoints (30 services x 10):
# live traffic spans one hour (~300 buckets per batch window); a backfill spans a week
# (300 endpoints x 24 hours x 2 day types = 14,400 buckets).
SPREADS_HOURS = {"hour": 1, "week": 7 * 24}
SERVICES = 30
DUPLICATE_SHARE = 0.02
SEND_BATCH = 2000
CEILING_BATCH = 500
SEEN_TTL_S = 900
WINDOW_SIZE = 1000
WINDOW_S = 30

CEILING_LUA = """
-- KEYS: 1 traces, 2 dirty, then nb dur keys, then one seen key per event.
-- ARGV: 1 group, 2 seen ttl, 3 window size, 4 nb, 5 n ids, ids..., then per bucket:
--       bucket id, n, n durations.
local nb, n_ids = tonumber(ARGV[4]), tonumber(ARGV[5])
local window_size = tonumber(ARGV[3])
local a, s = 6 + n_ids, 3 + nb
for b = 1, nb do
  local n = tonumber(ARGV[a + 1])
  local fresh = {}
  for i = 1, n do
    if redis.call('SET', KEYS[s], '1', 'NX', 'EX', ARGV[2]) then
      fresh[#fresh + 1] = ARGV[a + 1 + i]
    end
    s = s + 1
  end
  if #fresh > 0 then
    if redis.call('LPUSH', KEYS[2 + b], unpack(fresh)) > window_size then
      redis.call('LTRIM', KEYS[2 + b], 0, window_size - 1)
    end
    redis.call('XADD', KEYS[2], '*', 'bucket', ARGV[a])
  end
  a = a + 2 + n
end
redis.call('XACK', KEYS[1], ARGV[1], unpack(ARGV, 6, 5 + n_ids))
return 0
"""


def workload(n: int, seed: int, now_ns: int, spread: str = "hour") -> list[tuple[bytes, ...]]:
    """`n` trace entries as (field, value, ...) tuples; about 2% repeat an earlier trace;
    start times spread over the last hour or week (`SPREADS_HOURS`)."""
    rng = random.Random(seed)
    spread_s = SPREADS_HOURS[spread] * 3600
    out: list[tuple[bytes, ...]] = []
    for _ in range(n):
        if out and rng.random() < DUPLICATE_SHARE:
            out.append(out[rng.randrange(len(out))])
            continue
        svc = rng.randrange(SERVICES)
        ep = rng.randrange(ENDPOINTS_PER_SERVICE)
        start_ns = now_ns - rng.randrange(spread_s) * 1_000_000_000
        duration_ms = rng.lognormvariate(3.5 + ep * 0.1, 0.6)
        out.append((
            b"trace_id", f"{rng.getrandbits(128):032x}".encode(),
            b"service", f"svc-{svc}".encode(),
            b"endpoint", f"GET /api/v1/items/{ep}".encode(),
            b"start_ns", str(start_ns).encode(),
            b"duration_ms", f"{duration_ms:.3f}".encode(),
        ))
    return out


def unique_traces(n: int, seed: int, spread: str = "hour") -> int:
    """How many distinct trace IDs `workload(n, seed, spread)` holds (what ingest must count)."""
    return len({e[1] for e in workload(n, seed, 0, spread)})


def resp(*args: bytes) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


def produce(url: str, prefix: str, n: int, seed: int, spread: str) -> None:
    """XADD the workload as fast as Redis takes it; writes the first XADD's time."""
    stream = f"{prefix}traces".encode()
    entries = workload(n, seed, time.time_ns(), spread)
    batches = [b"".join(resp(b"XADD", stream, b"*", *e) for e in entries[i : i + SEND_BATCH])
               for i in range(0, n, SEND_BATCH)]
    sock = raw_connect(url)
    started = time.time()
    for i, payload in enumerate(batches):
        sock.sendall(payload)
        read_replies(sock, min(SEND_BATCH, n - i * SEND_BATCH))
    sock.sendall(resp(b"SET", f"{prefix}bench:produced".encode(), repr(started).encode()))
    read_replies(sock, 1)
    sock.close()


def raw_connect(url: str) -> socket.socket:
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if parts.password:
        sock.sendall(resp(b"AUTH", (parts.username or "default").encode(),
                          parts.password.encode()))
        read_replies(sock, 1)
    db = (parts.path or "/0").strip("/") or "0"
    sock.sendall(resp(b"SELECT", db.encode()))
    read_replies(sock, 1)
    return sock


def read_replies(sock: socket.socket, count: int) -> None:
    """Consume `count` simple or bulk-string replies (XADD ids, +OK); fail on an error."""
    buf = b""
    seen = 0
    while seen < count:
        chunk = sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("Redis closed the connection")
        buf += chunk
        if b"\r\n-" in b"\r\n" + buf:
            raise RuntimeError(f"Redis error: {buf[:200]!r}")
        # A bulk reply is two CRLF-terminated lines, a simple reply one.
        lines = buf.count(b"\r\n")
        simple = buf.count(b"\r\n+") + buf.startswith(b"+")
        seen = (lines - simple) // 2 + simple


async def run_project(url: str, prefix: str, consumer: str, batch_size: int | None) -> None:
    env = {"TLA_REDIS_URL": url, "TLA_KEY_PREFIX": prefix, "TLA_INGEST_CONSUMER": consumer}
    if batch_size:
        env["TLA_INGEST_BATCH_SIZE"] = str(batch_size)
    settings = Settings.load(env=env)
    async with runtime(settings, embedded_ok=False) as rt:
        _stop_on_signals(rt.stop)
        stage = build_stages(rt, ["ingest"])["ingest"]
        await ready_set_go(rt.redis, prefix, consumer)
        await stage(rt.stop)


async def run_ceiling(url: str, prefix: str, consumer: str) -> None:
    redis = connect(url)
    stop = asyncio.Event()
    _stop_on_signals(stop)
    try:
        await ready_set_go(redis, prefix, consumer)
        await Ceiling(redis, prefix, consumer).run(stop)
    finally:
        await redis.aclose()


class Ceiling:
    """The hand-written grouped-Lua consumer: what ingest could reach on this machine."""

    def __init__(self, redis: Redis, prefix: str, consumer: str) -> None:
        self.redis = redis
        self.prefix = prefix
        self.consumer = consumer
        self.traces = f"{prefix}traces"
        self.dirty = f"{prefix}dirty"
        self.buckets = ZoneBuckets(load_zone("Asia/Taipei"))
        self.script = redis.register_script(CEILING_LUA)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            reply = await self.redis.xreadgroup(
                INGEST_GROUP, self.consumer, {self.traces: ">"}, count=CEILING_BATCH, block=200)
            if reply:
                await self.apply(reply[0][1])  # type: ignore[index,arg-type]

    async def apply(self, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> None:
        groups: dict[str, list[tuple[str, int]]] = {}
        for _id, f in entries:
            b = self.buckets(int(f[b"start_ns"]))
            tag = f"{{{f[b'service'].decode()}|{f[b'endpoint'].decode()}}}"
            bucket_id = f"{tag}:{b.hour}:{b.day_type}"
            groups.setdefault(bucket_id, []).append(
                (f"{self.prefix}seen:{tag}:{f[b'trace_id'].decode()}",
                 round(float(f[b"duration_ms"]) * 1000)))
        ids = [i for i, _f in entries]
        keys = [self.traces, self.dirty, *(f"{self.prefix}dur:{b}" for b in groups)]
        args: list[bytes | str | int] = [INGEST_GROUP, SEEN_TTL_S, WINDOW_SIZE, len(groups),
                                         len(ids), *ids]
        for bucket_id, events in groups.items():
            keys += [seen for seen, _d in events]
            args += [bucket_id, len(events), *(d for _s, d in events)]
        await self.script(keys=keys, args=args)


async def ready_set_go(redis: Redis, prefix: str, consumer: str) -> None:
    """Say this consumer is up (imports done, connected), then wait for the start key."""
    await redis.sadd(f"{prefix}bench:ready", consumer)
    while not await redis.exists(f"{prefix}bench:go"):
        await asyncio.sleep(0.001)


def _stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("role", choices=("produce", "project", "ceiling"))
    p.add_argument("--redis-url", required=True)
    p.add_argument("--prefix", required=True)
    p.add_argument("--events", type=int, default=200_000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--spread", choices=tuple(SPREADS_HOURS), default="hour")
    p.add_argument("--consumer", default="bench-1")
    p.add_argument("--batch-size", type=int, default=None, help="project: XREADGROUP COUNT")
    a = p.parse_args()
    if a.role == "produce":
        produce(a.redis_url, a.prefix, a.events, a.seed, a.spread)
    elif a.role == "project":
        asyncio.run(run_project(a.redis_url, a.prefix, a.consumer, a.batch_size))
    else:
        asyncio.run(run_ceiling(a.redis_url, a.prefix, a.consumer))


if __name__ == "__main__":
    main()
