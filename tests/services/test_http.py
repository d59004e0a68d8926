"""The HTTP layer: routes as aiohttp's router answered them, the guard (request IDs, bearer
token), the one error path, bounded bodies with 100-continue, and the probes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import RawTestServer, TestClient
from redis.asyncio import Redis

from pipeline.errors import InvalidEvent, StoreUnavailable
from pipeline.metrics import Metrics
from services.health import Health
from services.http import (
    PROBES,
    Route,
    Router,
    ServerContext,
    int_param,
    json_response,
    read_body,
)

ClientMaker = Callable[..., Awaitable[TestClient]]
Serve = Callable[..., Awaitable[TestClient]]
TOKEN = "s3cret-token"
LIMIT = 1024


async def echo(ctx: ServerContext, request: web.BaseRequest) -> web.Response:
    return json_response({"bytes": len(await read_body(request, ctx.max_body_bytes))})


async def fail(ctx: ServerContext, request: web.BaseRequest) -> web.Response:
    raise {
        "invalid": InvalidEvent("thing", "must be a thing"),
        "store": StoreUnavailable("connection refused"),
        "gone": ConnectionResetError("peer went away"),
        "bug": RuntimeError("internal detail"),
    }[request.query["what"]]


ROUTES: tuple[Route[ServerContext], ...] = (
    Route("POST", "/echo", echo),
    Route("GET", "/fail", fail),
    Route("GET", "/open", fail, public=True),
    *PROBES,
)


@pytest.fixture
async def serve(aiohttp_client: ClientMaker) -> AsyncIterator[Serve]:
    """`await serve(token=..., redis=...)`: a client of a `Router` over `ROUTES` on
    aiohttp's low-level server, with a 1 KiB body limit."""
    unused = Redis.from_url("redis://127.0.0.1:1/0")  # only the probes talk to Redis

    async def make(token: str | None = None, redis: Redis = unused, health: Health | None = None
                   ) -> TestClient:
        ctx = ServerContext(redis=redis, metrics=Metrics(), health=health or Health(),
                            token=token.encode() if token else None, max_body_bytes=LIMIT)
        return await aiohttp_client(RawTestServer(Router(ctx, ROUTES)))

    yield make
    await unused.aclose()


async def raw(client: TestClient, head: bytes, body: bytes = b"") -> tuple[bytes, bytes]:
    """Send `head` (request line and headers, no blank line) on a connection of its own,
    then `body` once the server answered or after a pause; the raw bytes of the answer,
    as read before and after sending the body."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        writer.write(head + b"\r\nHost: test\r\nConnection: close\r\n\r\n")
        try:
            first = await asyncio.wait_for(reader.read(4096), 0.3)
        except TimeoutError:
            first = b""
        writer.write(body)
        return first, await reader.read()
    finally:
        writer.close()


async def test_unknown_paths_404_other_methods_405_with_allow(serve: Serve) -> None:
    client = await serve()
    missing = await client.get("/nope")
    assert missing.status == 404 and await missing.json() == {"error": "Not Found"}
    wrong = await client.get("/echo")
    assert wrong.status == 405 and await wrong.json() == {"error": "Method Not Allowed"}
    assert wrong.headers["Allow"] == "POST"
    wrong = await client.delete("/healthz")
    assert wrong.status == 405 and wrong.headers["Allow"] == "GET,HEAD"


async def test_get_routes_answer_head(serve: Serve) -> None:
    client = await serve()
    head = await client.head("/healthz")
    assert head.status == 200 and await head.read() == b""
    assert head.headers["Content-Type"] == "application/json"


async def test_paths_are_matched_as_aiohttps_router_matches_them(serve: Serve) -> None:
    """Percent-decoded, except an encoded "/" (or "%"): `/ech%6F` is /echo, `/%2Fecho` no
    route; a trailing slash is another path."""
    client = await serve()
    assert (await client.post("/ech%6F", data=b"12")).status == 200
    assert (await client.post("/%2Fecho", data=b"12")).status == 404
    assert (await client.get("/healthz/")).status == 404


async def test_request_ids_the_clients_or_fresh_on_every_answer(serve: Serve) -> None:
    client = await serve()
    sent = await client.get("/nope", headers={"X-Request-ID": "abc-1"})
    assert sent.headers["X-Request-ID"] == "abc-1"
    long = await client.get("/healthz", headers={"X-Request-ID": "x" * 100})
    assert long.headers["X-Request-ID"] == "x" * 64
    fresh = {(await client.get(path)).headers["X-Request-ID"]
             for path in ("/healthz", "/healthz", "/nope", "/echo")}
    assert len(fresh) == 4 and all(fresh)


@pytest.mark.parametrize("authorization", [
    None,
    "Bearer " + "s3cret-tokeN",  # the same length, one byte off
    "Bearer " + "s3cret-toke",  # a prefix
    "Bearer " + TOKEN + "x",  # longer
    "Bearer ",
    "Basic " + TOKEN,  # another scheme
    TOKEN,  # no scheme
])
async def test_wrong_or_missing_tokens_are_401(serve: Serve, authorization: str | None) -> None:
    client = await serve(token=TOKEN)
    headers = {"Authorization": authorization} if authorization is not None else {}
    denied = await client.get("/fail", params={"what": "bug"}, headers=headers)
    assert denied.status == 401 and denied.headers["X-Request-ID"]
    assert "Bearer <TLA_API_TOKEN>" in (await denied.json())["error"]


async def test_the_right_token_is_accepted_whatever_the_schemes_case(serve: Serve) -> None:
    client = await serve(token=TOKEN)
    for authorization in ("Bearer " + TOKEN, "bearer " + TOKEN + "  "):
        response = await client.post("/echo", data=b"{}", headers={"Authorization": authorization})
        assert response.status == 200, authorization


async def test_a_token_that_is_not_utf8_is_refused_not_a_crash(serve: Serve) -> None:
    client = await serve(token=TOKEN)
    first, rest = await raw(client, b"GET /fail?what=bug HTTP/1.1\r\nAuthorization: Bearer \xff")
    assert (first + rest).startswith(b"HTTP/1.1 401 ")


async def test_auth_comes_before_404_and_405_except_on_public_paths(serve: Serve) -> None:
    client = await serve(token=TOKEN)
    assert (await client.get("/nope")).status == 401
    assert (await client.get("/echo")).status == 401
    assert (await client.get("/healthz")).status == 200
    assert (await client.delete("/healthz")).status == 405
    assert (await client.get("/open", params={"what": "invalid"})).status == 400


async def test_errors_map_to_http_never_a_stack_trace(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    client = await serve()
    invalid = await client.get("/fail", params={"what": "invalid"})
    assert invalid.status == 400
    assert await invalid.json() == {"error": "must be a thing", "field": "thing"}
    store = await client.get("/fail", params={"what": "store"})
    assert store.status == 503 and "Redis did not answer" in (await store.json())["error"]
    gone = await client.get("/fail", params={"what": "gone"})
    assert gone.status == 400
    with caplog.at_level(logging.ERROR, logger="services.http"):
        bug = await client.get("/fail", params={"what": "bug"}, headers={"X-Request-ID": "b-1"})
    assert bug.status == 500
    assert await bug.json() == {"error": "internal error", "requestId": "b-1"}
    assert "internal detail" not in await bug.text()
    [record] = [r for r in caplog.records if "unhandled_error" in r.getMessage()]
    assert record.exc_info and "internal detail" in str(record.exc_info[1])


async def test_bodies_over_the_limit_are_413_however_they_arrive(serve: Serve) -> None:
    client = await serve()
    assert (await (await client.post("/echo", data=b"x" * LIMIT)).json()) == {"bytes": LIMIT}
    over = await client.post("/echo", data=b"x" * (LIMIT + 1))  # arrived with the headers
    assert over.status == 413 and "error" in await over.json()

    async def chunks() -> AsyncIterator[bytes]:  # chunked, still arriving when read
        for _ in range(3):
            yield b"x" * 500
            await asyncio.sleep(0.02)

    assert (await client.post("/echo", data=chunks())).status == 413


async def test_100_continue_is_sent_before_a_body_that_fits_and_never_for_one_that_does_not(
    serve: Serve
) -> None:
    client = await serve()
    head = b"POST /echo HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: %d"
    first, rest = await raw(client, head % 10, b"0123456789")
    assert first == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert rest.startswith(b"HTTP/1.1 200 ") and rest.endswith(b'{"bytes":10}')
    first, rest = await raw(client, head % (LIMIT + 1), b"x" * (LIMIT + 1))
    assert first.startswith(b"HTTP/1.1 413 ") and b"100 Continue" not in first + rest


@pytest.mark.redis
async def test_probes(serve: Serve, redis: Redis) -> None:
    health = Health()
    client = await serve(token=TOKEN, redis=redis, health=health)
    assert await (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status == 200
    assert await ready.json() == {"status": "ready", "redis": "ok", "stages": {}}
    health.set("ingest", "restarting")
    ready = await client.get("/readyz")
    assert ready.status == 503 and (await ready.json())["stages"] == {"ingest": "restarting"}
    assert (await client.get("/metrics")).status == 401  # not public
    scraped = await client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert scraped.headers["Content-Type"].startswith("text/plain")
    assert "tla_stage_restarts_total" in await scraped.text()  # the registry it was given


async def test_readyz_without_redis_is_503(serve: Serve) -> None:
    client = await serve()  # its Redis is a closed port
    ready = await client.get("/readyz")
    assert ready.status == 503 and (await ready.json())["redis"] == "unavailable"


@pytest.mark.parametrize("text", ["", "-1", "1.0", "0x10", "²", "٣", "101", "9" * 40, " 5"])
def test_int_param_refuses_what_is_not_an_integer_in_range(text: str) -> None:
    with pytest.raises(InvalidEvent, match="must be an integer 1-100") as e:
        int_param({"limit": text}, "limit", 10, 1, 100)
    assert e.value.field == "limit"


def test_int_param_reads_an_integer_and_defaults_when_absent() -> None:
    assert int_param({"limit": "100"}, "limit", 10, 1, 100) == 100
    assert int_param({"limit": "007"}, "limit", 10, 1, 100) == 7
    assert int_param({}, "limit", 10, 1, 100) == 10
    assert int_param({"since": str(2**63 - 1)}, "since", 0, 0, 2**63 - 1) == 2**63 - 1
