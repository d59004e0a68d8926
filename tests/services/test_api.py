"""The HTTP API contract on a real Redis: verdicts, baselines, errors, health, OpenAPI."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import jsonschema
import orjson
import pytest
from aiohttp import StreamReader
from aiohttp.test_utils import RawTestServer, TestClient
from redis.asyncio import Redis

from pipeline.buckets import BucketRef, bucket_of, load_zone
from pipeline.keys import Keys
from pipeline.metrics import Metrics
from pipeline.stats import Baseline
from services.api import Api, load_openapi
from services.config import Settings
from services.logs import REQUEST_ID

pytestmark = pytest.mark.redis
ClientMaker = Callable[..., Awaitable[TestClient]]
Serve = Callable[..., Awaitable[TestClient]]
NOW_NS = time.time_ns()
ZONE = load_zone("Asia/Taipei")


def settings_for(prefix: str, **api: Any) -> Settings:
    env = {"TLA_KEY_PREFIX": prefix, "TLA_API_CACHE_TTL_S": "0"}
    env.update({f"TLA_API_{k.upper()}": str(v) for k, v in api.items()})
    return Settings.load(env=env)


@pytest.fixture
async def serve(aiohttp_client: ClientMaker, redis: Redis, prefix: str) -> AsyncIterator[Serve]:
    """`await serve(store=redis, **api_settings)`: a client of an `Api` served by aiohttp's
    low-level server, as `tempo-anomaly run` serves it, running while the test runs."""
    async with contextlib.AsyncExitStack() as running:
        async def make(store: Redis = redis, **api: Any) -> TestClient:
            app = Api(settings_for(prefix, **api), store, Metrics())
            await running.enter_async_context(app.running())
            client = await aiohttp_client(RawTestServer(app.router))
            running.push_async_callback(client.close)  # the server stops before the watch
            return client

        yield make


@pytest.fixture
async def client(serve: Serve) -> TestClient:
    return await serve()


async def store(redis: Redis, keys: Keys, baseline: Baseline, endpoint: str = "POST /pay") -> BucketRef:
    ref = BucketRef("checkout", endpoint, bucket_of(NOW_NS, ZONE))
    await redis.hset(keys.base(ref.id), mapping=baseline.to_hash())
    return ref


def body(**changes: Any) -> dict[str, Any]:
    out = {"rootServiceName": "checkout", "rootTraceName": "POST /pay",
           "startTimeUnixNano": str(NOW_NS), "durationMs": 912}
    out.update(changes)
    return {k: v for k, v in out.items() if v is not ...}


def schema_of(name: str) -> dict[str, Any]:
    doc = load_openapi()
    return {**doc["components"]["schemas"][name], "components": doc["components"]}


def plain_schema(schema: Any) -> Any:
    """OpenAPI 3.0 'nullable: true' as JSON Schema says it (a null type)."""
    if isinstance(schema, list):
        return [plain_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: plain_schema(v) for k, v in schema.items() if k != "nullable"}
    if schema.get("nullable") is True and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


def validate_verdict(reply: dict[str, Any]) -> None:
    # OpenAPI 3.0 'nullable' is not JSON Schema: check the nullable parts separately.
    doc = load_openapi()
    required = doc["components"]["schemas"]["Verdict"]["required"]
    assert set(required) <= set(reply)
    jsonschema.validate(reply["bucket"], plain_schema(doc["components"]["schemas"]["Bucket"]))
    for name in ("baseline", "threshold"):
        if reply[name] is not None:
            jsonschema.validate(reply[name], plain_schema(
                {**doc["components"]["schemas"][name.title()], "nullable": None}))


async def test_anomaly_verdict_explains_itself(client: TestClient, redis: Redis, keys: Keys) -> None:
    await store(redis, keys, Baseline(120, 300, 15, 1000, int(time.time() * 1000)))
    response = await client.post("/v1/anomaly/check", json=body())
    assert response.status == 200
    reply = await response.json()
    validate_verdict(reply)
    assert reply["isAnomaly"] is True and reply["status"] == "anomaly"
    assert reply["threshold"]["valueMs"] == 600 and reply["threshold"]["term"] == "p95_factor"
    assert reply["baseline"]["count"] == 1000
    assert reply["bucket"]["service"] == "checkout" and reply["bucket"]["timezone"] == "Asia/Taipei"
    assert reply["reason"].startswith("912 ms > threshold 600 ms = max(2 x p95 300 ms")
    assert response.headers["X-Request-ID"]


async def test_start_time_may_be_a_number_and_normal_is_normal(
    client: TestClient, redis: Redis, keys: Keys
) -> None:
    await store(redis, keys, Baseline(120, 300, 15, 1000, 0))
    reply = await (await client.post("/v1/anomaly/check",
                                     json=body(startTimeUnixNano=NOW_NS, durationMs=150.5))).json()
    assert (reply["isAnomaly"], reply["status"]) == (False, "normal")


async def test_unknown_bucket_and_thin_bucket(client: TestClient, redis: Redis, keys: Keys) -> None:
    reply = await (await client.post("/v1/anomaly/check", json=body())).json()
    validate_verdict(reply)
    assert (reply["isAnomaly"], reply["status"], reply["baseline"]) == (False, "no_baseline", None)
    await store(redis, keys, Baseline(120, 300, 15, 7, 0))
    reply = await (await client.post("/v1/anomaly/check", json=body())).json()
    assert reply["status"] == "insufficient_samples" and "only 7 samples" in reply["reason"]


async def test_batch_gives_the_same_verdicts(client: TestClient, redis: Redis, keys: Keys) -> None:
    await store(redis, keys, Baseline(120, 300, 15, 1000, 0))
    items = [body(durationMs=d) for d in (100, 912, 601)]
    batch = await (await client.post("/v1/anomaly/check:batch", json={"traces": items})).json()
    singles = [await (await client.post("/v1/anomaly/check", json=i)).json() for i in items]
    strip = lambda v: {k: v[k] for k in ("isAnomaly", "status", "reason", "threshold")}  # noqa: E731
    assert [strip(v) for v in batch["results"]] == [strip(v) for v in singles]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (body(rootServiceName=...), "rootServiceName"),
        (body(rootServiceName=5), "rootServiceName"),
        (body(rootTraceName=""), "rootTraceName"),
        (body(rootTraceName="x" * 300), "rootTraceName"),
        (body(startTimeUnixNano="yesterday"), "startTimeUnixNano"),
        (body(startTimeUnixNano=1.7e18), "startTimeUnixNano"),
        (body(startTimeUnixNano=True), "startTimeUnixNano"),
        (body(startTimeUnixNano="1764396000"), "startTimeUnixNano"),
        (body(durationMs="912"), "durationMs"),
        (body(durationMs=-1), "durationMs"),
        (body(durationMs=True), "durationMs"),
        (body(durationMs=1e300), "durationMs"),
        ([1, 2], "body"),
    ],
)
async def test_bad_input_is_400_naming_the_field(client: TestClient, payload: Any, field: str) -> None:
    response = await client.post("/v1/anomaly/check", json=payload)
    assert response.status == 400
    reply = await response.json()
    assert reply["field"] == field and reply["error"]


async def test_not_json_and_bad_batches(client: TestClient) -> None:
    response = await client.post("/v1/anomaly/check", data=b"{nope")
    assert response.status == 400 and (await response.json())["field"] == "body"
    response = await client.post("/v1/anomaly/check:batch", json={"traces": []})
    assert (await response.json())["field"] == "traces"
    response = await client.post("/v1/anomaly/check:batch",
                                 json={"traces": [body(), body(durationMs=-5)]})
    assert (await response.json())["field"] == "traces[1].durationMs"


async def test_oversized_body_is_413(serve: Serve) -> None:
    client = await serve(max_body_bytes=1024)
    response = await client.post("/v1/anomaly/check", data=b"{" + b" " * 5000 + b"}")
    assert response.status == 413
    assert "error" in await response.json()


async def test_baseline_endpoint(client: TestClient, redis: Redis, keys: Keys) -> None:
    ref = await store(redis, keys, Baseline(120, 300, 15, 1000, 0))
    params = {"service": "checkout", "endpoint": "POST /pay", "hour": str(ref.bucket.hour),
              "dayType": ref.bucket.day_type}
    reply = await (await client.get("/v1/baseline", params=params)).json()
    assert reply["baseline"]["p95"] == 300 and reply["threshold"]["valueMs"] == 600
    assert reply["bucket"]["id"] == ref.id
    missing = await client.get("/v1/baseline", params={**params, "endpoint": "GET /nothing"})
    assert missing.status == 404 and (await missing.json())["baseline"] is None
    for bad, field in (({"hour": "24"}, "hour"), ({"dayType": "holiday"}, "dayType"),
                       ({"service": ""}, "service")):
        response = await client.get("/v1/baseline", params={**params, **bad})
        assert response.status == 400 and (await response.json())["field"] == field


async def test_health_ready_metrics_openapi(client: TestClient) -> None:
    assert (await (await client.get("/healthz")).json()) == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status == 200 and (await ready.json())["redis"] == "ok"
    await client.post("/v1/anomaly/check", json=body())
    text = await (await client.get("/metrics")).text()
    assert 'tla_check_requests_total{status="no_baseline"} 1.0' in text
    doc = await (await client.get("/openapi.json")).json()
    assert doc["openapi"].startswith("3.") and "/v1/anomaly/check" in doc["paths"]
    missing = await client.get("/nope")
    assert missing.status == 404 and "error" in await missing.json()


async def test_redis_down_is_503_never_a_verdict(serve: Serve) -> None:
    dead = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    client = await serve(store=dead)
    response = await client.post("/v1/anomaly/check", json=body())
    assert response.status == 503
    assert "baseline store unavailable" in (await response.json())["error"]
    assert (await client.get("/readyz")).status == 503
    assert (await client.get("/healthz")).status == 200
    await dead.aclose()


async def test_bearer_token(serve: Serve) -> None:
    client = await serve(token="s3cret")
    assert (await client.post("/v1/anomaly/check", json=body())).status == 401
    wrong = {"Authorization": "Bearer nope"}
    assert (await client.get("/metrics", headers=wrong)).status == 401
    good = {"Authorization": "Bearer s3cret"}
    assert (await client.post("/v1/anomaly/check", json=body(), headers=good)).status == 200
    assert (await client.get("/healthz")).status == 200  # health stays open


async def test_unmatched_routes_are_json_404_and_405_with_allow(client: TestClient) -> None:
    for path in ("/nope", "/ui/nope.js", "/healthz/", "/v1/anomaly/check/extra"):  # "/": web view
        missing = await client.get(path, headers={"X-Request-ID": "lost-1"})
        assert missing.status == 404, path
        assert await missing.json() == {"error": "Not Found"}
        assert missing.headers["X-Request-ID"] == "lost-1"
    wrong = await client.get("/v1/anomaly/check")
    assert wrong.status == 405 and await wrong.json() == {"error": "Method Not Allowed"}
    assert wrong.headers["Allow"] == "POST" and wrong.headers["X-Request-ID"]
    wrong = await client.delete("/healthz")
    assert wrong.status == 405 and wrong.headers["Allow"] == "GET,HEAD"
    head = await client.head("/healthz")
    assert head.status == 200 and head.headers["X-Request-ID"]


async def test_every_route_guarded(client: TestClient) -> None:
    ids = set()
    for _ in range(3):
        response = await client.get("/healthz")
        ids.add(response.headers["X-Request-ID"])
    assert len(ids) == 3  # a fresh ID per request when the client sends none


async def test_token_guards_unknown_routes_too_and_not_health(
    serve: Serve
) -> None:
    client = await serve(token="s3cret")
    assert (await client.get("/nope")).status == 401
    assert (await client.get("/v1/anomaly/check")).status == 401  # auth before the 405
    denied = await client.delete("/healthz")
    assert denied.status == 405 and denied.headers["X-Request-ID"]  # public: no auth needed
    good = {"Authorization": "Bearer s3cret"}
    assert (await client.get("/nope", headers=good)).status == 404
    assert (await client.get("/v1/anomaly/check", headers=good)).status == 405


async def test_lines_logged_during_a_request_carry_its_id(
    serve: Serve
) -> None:
    dead = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    client = await serve(store=dead)
    seen: list[str | None] = []

    class Spy(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "store_unavailable" in record.getMessage():
                seen.append(REQUEST_ID.get(None))

    spy = Spy()
    logging.getLogger("services.http").addHandler(spy)
    try:
        response = await client.post("/v1/anomaly/check", json=body(),
                                      headers={"X-Request-ID": "trace-me"})
    finally:
        logging.getLogger("services.http").removeHandler(spy)
        await dead.aclose()
    assert response.status == 503 and response.headers["X-Request-ID"] == "trace-me"
    assert seen == ["trace-me"]


async def test_a_body_still_arriving_is_read_to_its_end(
    serve: Serve, redis: Redis, keys: Keys, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A body that has all arrived is taken from the buffer; one still coming (here
    chunked, its second half sent after a pause) is awaited, with the same limit."""
    client = await serve(max_body_bytes=1024)
    await store(redis, keys, Baseline(120, 300, 15, 1000, 0))

    awaited = []
    readany = StreamReader.readany

    async def spy(reader: StreamReader) -> bytes:
        chunk = await readany(reader)
        awaited.append(len(chunk))
        return chunk

    monkeypatch.setattr(StreamReader, "readany", spy)
    whole = orjson.dumps(body())
    response = await client.post("/v1/anomaly/check", data=whole)
    assert response.status == 200 and awaited == []  # arrived with its headers
    response = await client.post("/v1/anomaly/check", data=in_parts(whole))
    assert response.status == 200 and (await response.json())["status"] == "anomaly"
    # The server's reads up to the end of the body (the client's own reads follow).
    server_reads = awaited[:awaited.index(0)]
    assert sum(server_reads) == len(whole) and len(server_reads) >= 2
    response = await client.post("/v1/anomaly/check", data=in_parts(b"{" + b" " * 5000 + b"}"))
    assert response.status == 413


async def test_expect_100_continue_is_answered(serve: Serve, redis: Redis, keys: Keys) -> None:
    """curl sends `Expect: 100-continue` for bodies over 1 KiB and waits for the 100
    before sending them; aiohttp's client does the same with expect100=True."""
    client = await serve()
    await store(redis, keys, Baseline(120, 300, 15, 1000, 0))
    batch = {"traces": [body(durationMs=100 + i) for i in range(40)]}
    response = await client.post("/v1/anomaly/check:batch", json=batch, expect100=True)
    assert response.status == 200 and len((await response.json())["results"]) == 40
    small = await serve(max_body_bytes=1024)  # a declared length over the limit: 413, no 100
    big = await small.post("/v1/anomaly/check", data=b" " * 5000, expect100=True)
    assert big.status == 413
    # Other expectations are ignored, however the body arrives (RFC 9110: 417 is a MAY).
    for data in (orjson.dumps(body()), in_parts(orjson.dumps(body()))):
        odd = await client.post("/v1/anomaly/check", data=data, headers={"Expect": "odd"})
        assert odd.status == 200


async def test_paths_match_as_aiohttps_router_did(client: TestClient) -> None:
    """Percent-decoded, except an encoded slash: `/v1%2Fbaseline` is no route."""
    assert (await client.post("/v1/anomaly/check%3Abatch", json={"traces": []})).status == 400
    assert (await client.get("/v1%2Fbaseline", params={"service": "s", "endpoint": "e"})
            ).status == 404


def in_parts(payload: bytes) -> Any:
    async def parts() -> Any:
        yield payload[:10]
        await asyncio.sleep(0.05)
        yield payload[10:]
    return parts()
