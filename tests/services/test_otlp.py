"""The OTLP/HTTP receiver, fed by the real OpenTelemetry SDK exporter (gzip on and off)
and by raw OTLP/JSON: what reaches the stream, partial success, the retryable answers
while Redis is down or full, 400/413/415, the token, and gzip decoded exactly once."""

from __future__ import annotations

import asyncio
import gzip
import io
import os
import shutil
import subprocess
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import RawTestServer, TestClient
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from pipeline.events import parse_entry
from pipeline.keys import Keys
from pipeline.metrics import Metrics
from services.config import Settings
from services.health import Health
from services import otlp
from services.otlp import OtlpReceiver, rpc_status
from tests.pipeline.otlp.spans import CLIENT, START_NS, as_json, export, span
from tests.support import eventually, free_port

TOKEN = "otlp-s3cret"
T1, T2 = 0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x0AF7651916CD43DD8448EB211C80319C
PROTOBUF = {"Content-Type": "application/x-protobuf"}
JSON = {"Content-Type": "application/json"}

Start = Callable[..., Awaitable[tuple[str, OtlpReceiver]]]


@pytest.fixture
async def start(prefix: str, redis: Redis) -> AsyncIterator[Start]:
    """`await start(redis=..., **env)`: a receiver on a free port; its base URL."""
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []

    async def make(client: Redis = redis, **env: str) -> tuple[str, OtlpReceiver]:
        port = free_port()
        settings = Settings.load(env={"TLA_KEY_PREFIX": prefix, "TLA_OTLP_PORT": str(port),
                                      **env})
        receiver = OtlpReceiver(settings, client, Metrics(), Health())
        tasks.append(asyncio.create_task(receiver.run(stop)))
        url = f"http://127.0.0.1:{port}"

        async def up() -> bool:
            try:
                async with aiohttp.ClientSession() as s, s.get(url + "/healthz") as r:
                    return r.status == 200
            except aiohttp.ClientError:
                return False

        await eventually("the receiver", up, 10)
        return url, receiver

    yield make
    stop.set()
    await asyncio.gather(*tasks)


async def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    async with aiohttp.ClientSession() as s, s.post(url + "/v1/traces", data=body,
                                                    headers=headers) as r:
        return r.status, dict(r.headers), await r.read()


async def undecompressed_client(aiohttp_client: Callable[..., Awaitable[TestClient]],
                                receiver: OtlpReceiver) -> TestClient:
    """A client of the receiver's router on a server that hands it gzip bodies as they
    came (`auto_decompress` off: RawTestServer's constructor drops it, start_server not)."""
    server = RawTestServer(receiver.router)
    await server.start_server(auto_decompress=False)
    return await aiohttp_client(server)


async def entries(redis: Redis, keys: Keys) -> list[dict[bytes, bytes]]:
    return [fields for _id, fields in await redis.xrange(keys.traces)]


def sdk_spans(service: str) -> list[ReadableSpan]:
    """A request handled by `service`: a SERVER root span with a CLIENT child, as the
    OpenTelemetry SDK records them."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("tests")
    with tracer.start_as_current_span("GET /cart", kind=SpanKind.SERVER):
        with tracer.start_as_current_span("SELECT cart", kind=SpanKind.CLIENT):
            pass
    provider.shutdown()
    return list(memory.get_finished_spans())


@pytest.mark.parametrize("compression", [Compression.NoCompression, Compression.Gzip],
                         ids=["plain", "gzip"])
async def test_the_sdk_exporter_publishes_each_root_span(
        start: Start, redis: Redis, keys: Keys, compression: Compression) -> None:
    url, _ = await start()
    spans = sdk_spans("shop")
    exporter = OTLPSpanExporter(endpoint=url + "/v1/traces", compression=compression,
                                timeout=10)
    result = await asyncio.to_thread(exporter.export, spans)
    exporter.shutdown()
    assert result == SpanExportResult.SUCCESS
    (root,) = [s for s in spans if s.parent is None]
    assert root.end_time is not None and root.start_time is not None
    (entry,) = await entries(redis, keys)
    event = parse_entry(entry)
    assert (event.trace_id, event.service, event.endpoint, event.start_ns, event.source) == \
        (f"{root.context.trace_id:032x}", "shop", "GET /cart", root.start_time, "otlp")
    assert round(event.duration_ms * 1_000_000) == root.end_time - root.start_time


async def test_the_sdk_exporter_sends_the_token(start: Start, redis: Redis, keys: Keys) -> None:
    url, _ = await start(TLA_API_TOKEN=TOKEN)
    spans = sdk_spans("shop")
    denied = OTLPSpanExporter(endpoint=url + "/v1/traces", timeout=5)
    allowed = OTLPSpanExporter(endpoint=url + "/v1/traces", timeout=5,
                               headers={"Authorization": f"Bearer {TOKEN}"})
    assert await asyncio.to_thread(denied.export, spans) == SpanExportResult.FAILURE
    assert await entries(redis, keys) == []
    assert await asyncio.to_thread(allowed.export, spans) == SpanExportResult.SUCCESS
    assert len(await entries(redis, keys)) == 1
    status, _, _ = await post(url, b"", PROTOBUF)
    assert status == 401
    denied.shutdown()
    allowed.shutdown()


def mixed_export() -> Any:
    """Two good traces (one with a child span) and two bad root spans."""
    return export(("shop", [span(T1, 1, "GET /a", 2_000_000),
                            span(T1, 2, "db", 1_000_000, parent=1, kind=CLIENT),
                            span(T2, 3, "GET /b", 3_000_000),
                            span(T2 + 1, 4, "", 3_000_000)]),
                  (None, [span(T2 + 2, 5, "GET /c", 1_000_000)]))


async def test_raw_json_and_partial_success(start: Start, redis: Redis, keys: Keys) -> None:
    url, receiver = await start()
    status, headers, body = await post(url, orjson.dumps(as_json(mixed_export())), JSON)
    assert status == 200 and headers["Content-Type"] == "application/json"
    partial = orjson.loads(body)["partialSuccess"]
    assert partial["rejectedSpans"] == "2"
    assert "endpoint: must not be empty" in partial["errorMessage"]
    assert "service: the resource has no `service.name`" in partial["errorMessage"]
    assert [parse_entry(e).endpoint for e in await entries(redis, keys)] == ["GET /a", "GET /b"]
    metrics = receiver.ctx.span_metrics
    assert metrics.received.labels("otlp")._value.get() == 5
    assert metrics.published.labels("otlp")._value.get() == 2
    assert metrics.skipped.labels("otlp")._value.get() == 1
    assert metrics.rejected.labels("otlp", "service")._value.get() == 1


async def test_protobuf_partial_success_and_full_success(start: Start) -> None:
    url, receiver = await start()
    status, headers, body = await post(url, mixed_export().SerializeToString(), PROTOBUF)
    assert status == 200 and headers["Content-Type"] == "application/x-protobuf"
    reply = ExportTraceServiceResponse.FromString(body)
    assert reply.partial_success.rejected_spans == 2
    assert "endpoint" in reply.partial_success.error_message
    good = export(("shop", [span(T1 + 9, 1, "GET /a", 2_000_000)])).SerializeToString()
    status, _, body = await post(url, good, PROTOBUF)
    assert status == 200 and not ExportTraceServiceResponse.FromString(body).HasField(
        "partial_success")
    status, _, body = await post(url, b"{}", JSON)
    assert status == 200 and orjson.loads(body) == {}
    requests = receiver.ctx.otlp_metrics.requests
    assert requests.labels("200")._value.get() == 3


async def test_gzip_is_decoded_once_whether_or_not_aiohttp_did(
        start: Start, redis: Redis, keys: Keys, aiohttp_client: Callable[..., Awaitable[TestClient]]
) -> None:
    """aiohttp's server inflates `Content-Encoding: gzip` before the body is read; a server
    built without that (`auto_decompress=False`) hands the receiver gzip, which it inflates."""
    url, receiver = await start()
    body = gzip.compress(export(("shop", [span(T1, 1, "GET /a", 2_000_000)])).SerializeToString())
    status, _, _ = await post(url, body, {**PROTOBUF, "Content-Encoding": "gzip"})
    assert status == 200
    raw = await undecompressed_client(aiohttp_client, receiver)
    other = gzip.compress(export(("shop", [span(T2, 1, "GET /b", 2_000_000)])).SerializeToString())
    answer = await raw.post("/v1/traces", data=other,
                            headers={**PROTOBUF, "Content-Encoding": "gzip"})
    assert answer.status == 200
    assert [parse_entry(e).endpoint for e in await entries(redis, keys)] == ["GET /a", "GET /b"]


@pytest.mark.parametrize("encoding", ["protobuf", "json", "gzip"])
async def test_a_large_export_is_decoded_off_the_event_loop_and_answers_correctly(
        start: Start, redis: Redis, keys: Keys, monkeypatch: pytest.MonkeyPatch,
        aiohttp_client: Callable[..., Awaitable[TestClient]], encoding: str) -> None:
    url, receiver = await start()
    n = 6000  # over 1 MiB in either encoding, over 128 KiB gzipped (random names)
    request = export(("shop", [s for i in range(n) for s in (
        span(T1 + i, 2 * i + 1, f"GET /a/{i % 7}", 2_000_000, start_ns=START_NS + i),
        span(T1 + i, 2 * i + 2, "db " + os.urandom(48).hex(), 1_000_000, parent=2 * i + 1,
             kind=CLIENT))]),
        (None, [span(T2, 1, "GET /c", 1_000_000)]))
    body = orjson.dumps(as_json(request)) if encoding == "json" else request.SerializeToString()
    headers = JSON if encoding == "json" else PROTOBUF
    if encoding == "gzip":  # as a server without aiohttp's auto_decompress hands it over
        body = gzip.compress(body)
    assert otlp.off_loop(body), len(body)
    threads: list[int] = []
    bodies: list[bytes] = []
    decode = otlp._decode

    def recorded(ctx: Any, body: bytes, as_json: bool) -> Any:
        threads.append(threading.get_ident())
        bodies.append(body)
        return decode(ctx, body, as_json)

    monkeypatch.setattr(otlp, "_decode", recorded)
    if encoding == "gzip":
        raw = await undecompressed_client(aiohttp_client, receiver)
        answer = await raw.post("/v1/traces", data=body,
                                headers={**headers, "Content-Encoding": "gzip"})
        status, reply = answer.status, await answer.read()
    else:  # (aiohttp warns of a large body sent from bytes)
        async with aiohttp.ClientSession() as session, session.post(
                url + "/v1/traces", data=io.BytesIO(body), headers=headers) as answer:
            status, reply = answer.status, await answer.read()
    assert status == 200
    if encoding == "json":
        assert orjson.loads(reply)["partialSuccess"]["rejectedSpans"] == "1"
    else:
        assert ExportTraceServiceResponse.FromString(reply).partial_success.rejected_spans == 1
    assert threads and threads[0] != threading.get_ident()
    assert bodies[0].startswith(otlp.GZIP_MAGIC) == (encoding == "gzip")  # inflated here
    published = [parse_entry(e) for e in await entries(redis, keys)]
    assert {e.trace_id for e in published} == {f"{T1 + i:032x}" for i in range(n)}
    assert len(published) == n
    small = export(("shop", [span(T2 + 1, 1, "GET /b", 2_000_000)])).SerializeToString()
    assert not otlp.off_loop(small)
    assert (await post(url, small, PROTOBUF))[0] == 200
    assert threads[1] == threading.get_ident()  # a small one decodes inline


async def test_bad_bodies_400_and_oversized_413(start: Start, redis: Redis, keys: Keys) -> None:
    url, _ = await start(TLA_OTLP_MAX_BODY_BYTES="2048")
    status, headers, body = await post(url, b"\xff\xff\xff", PROTOBUF)
    assert status == 400 and body.startswith(rpc_status(3, "")[:1])
    assert b"ExportTraceServiceRequest" in body
    status, _, body = await post(url, b'{"resourceSpans": 7}', JSON)
    assert status == 400 and orjson.loads(body)["code"] == 3
    status, _, body = await post(url, b"x" * 4096, PROTOBUF)
    assert status == 413 and b"TLA_OTLP_MAX_BODY_BYTES" in body
    bomb = gzip.compress(b"\0" * 100_000)
    status, _, _ = await post(url, bomb, {**PROTOBUF, "Content-Encoding": "gzip"})
    assert status == 413
    status, _, body = await post(url, b"{}", {"Content-Type": "text/plain"})
    assert status == 415
    assert await entries(redis, keys) == []


async def test_redis_down_answers_503_with_retry_after(start: Start) -> None:
    nowhere = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=1)
    url, _ = await start(client=nowhere, TLA_OTLP_RETRY_AFTER_S="7")
    good = export(("shop", [span(T1, 1, "GET /a", 2_000_000)]))
    status, headers, body = await post(url, good.SerializeToString(), PROTOBUF)
    assert (status, headers["Retry-After"]) == (503, "7")
    assert body == rpc_status(14, "Redis did not answer; retry later")
    status, headers, body = await post(url, orjson.dumps(as_json(good)), JSON)
    assert (status, headers["Retry-After"]) == (503, "7")
    assert orjson.loads(body) == {"code": 14, "message": "Redis did not answer; retry later"}
    await nowhere.aclose()


@pytest.fixture
def full_redis() -> Iterator[str]:
    """A private redis-server that refuses every write (maxmemory 1 byte)."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", "--maxmemory", "1",
                             "--maxmemory-policy", "noeviction"], stdout=subprocess.DEVNULL)
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(10)


async def test_redis_out_of_memory_answers_429_with_retry_after(
        start: Start, full_redis: str) -> None:
    client = Redis.from_url(full_redis)

    async def answers() -> bool:
        try:
            return bool(await client.ping())
        except RedisConnectionError:
            return False

    await eventually("the private redis-server", answers, 10)
    url, _ = await start(client=client)
    good = export(("shop", [span(T1, 1, "GET /a", 2_000_000)]))
    status, headers, body = await post(url, good.SerializeToString(), PROTOBUF)
    assert (status, headers["Retry-After"]) == (429, "5")
    assert body.startswith(b"\x08\x08")  # google.rpc.Status code 8: RESOURCE_EXHAUSTED
    await client.aclose()
