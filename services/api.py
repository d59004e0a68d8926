"""The HTTP API: anomaly checks, baselines, health, metrics, the OpenAPI document.

`Api` is a handler for aiohttp's low-level server (`web.Server`, public API, see
https://docs.aiohttp.org/en/stable/web_lowlevel.html): one dict lookup by path and method
picks the route. aiohttp's `Application` resolves every request through its router,
match info and app chain first, which cost ~11-15 us per request on the benchmark machine,
more than the whole check (BENCHMARKS.md); nothing here needs those features.

Handlers stay thin: parse → pipeline function → JSON. Errors are mapped to HTTP in one
place, `route_guard`, which wraps every route: bad input 400 naming the field, unknown
paths 404, other methods 405 with `Allow`, oversized bodies 413, Redis down 503, and never
a stack trace on the wire.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import yaml
from aiohttp import web
from aiohttp.http import HttpVersion11
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.asyncio import Redis
from redis.exceptions import RedisError

import schemas
from pipeline.baselines import BaselineStore, Miss
from pipeline.buckets import (
    MAX_ENDPOINT_CHARS,
    MAX_SERVICE_CHARS,
    BucketRef,
    TimeBucket,
    ZoneBuckets,
    bucket_of,
    load_zone,
    parse_day_type,
)
from pipeline.errors import InvalidEvent, StoreUnavailable
from pipeline.metrics import Metrics
from pipeline.rule import RuleParams, threshold_of
from services.checks import CheckParser, json_of, string_field
from services.config import Settings
from services.health import Health
from services.logs import REQUEST_ID
from services.verdict_cache import VerdictCache
from services.views import baseline_json, bucket_json, threshold_json

log = logging.getLogger(__name__)

MAX_BATCH = 1000
PUBLIC_PATHS = frozenset({"/healthz", "/readyz"})
READY_TIMEOUT_S = 1.0
# How long cleanup waits for the baseline-version watch to finish its GET: a healthy
# Redis answers in microseconds, and shutdown must not hang on a dead one.
WATCH_STOP_S = 2.0


class Ctx:
    """Everything a handler needs, built once per app."""

    def __init__(
        self, settings: Settings, redis: Redis, metrics: Metrics, baselines: BaselineStore,
        health: Health,
    ) -> None:
        self.settings = settings
        self.redis = redis
        self.metrics = metrics
        self.baselines = baselines
        self.health = health
        self.rule: RuleParams = settings.rule_params()
        self.zone: ZoneInfo = load_zone(settings.timezone)
        self.tz_name = settings.timezone
        self.token = settings.api.token.encode() if settings.api.token else None
        self.max_body_bytes = settings.api.max_body_bytes
        # The check path's precomputed work: time-zone slots and compiled verdicts.
        self.buckets = ZoneBuckets(self.zone)
        self.parse = CheckParser(self.zone, self.buckets)
        self.verdicts = VerdictCache(self.rule, self.tz_name, metrics.check_requests)
        self.openapi = load_openapi()


# A route's handler: the app's context (`Ctx`; the benchmark's bare routes take None) and
# the request in, a response out. Bodies are read with `read_body`/`arrived_body`, never
# `request.read()`: the low-level server's requests keep aiohttp's default 1 MiB limit,
# not TLA_API_MAX_BODY_BYTES.
RouteHandler = Callable[[Any, web.BaseRequest], Awaitable[web.StreamResponse]]
# What `route_guard` makes of one: the request in, a response out, nothing raised.
Guarded = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def error(status: int, message: str, **extra: Any) -> web.Response:
    return json_response({"error": message, **extra}, status)


def route_guard(ctx: Any, token: bytes | None) -> Callable[[RouteHandler, bool], Guarded]:
    """`guard(handler, public)`: `handler(ctx, request)` with request ID and its log
    context, auth (unless `public`), and errors mapped to HTTP.

    Request IDs are the client's `X-Request-ID` or this process's random prefix plus a
    counter (uuid4 cost more than the rest of this)."""
    prefix = secrets.token_hex(4) + "-"
    counter = itertools.count(1)

    def guard(handler: RouteHandler, public: bool = False) -> Guarded:
        required = None if public else token

        async def guarded(request: web.BaseRequest) -> web.StreamResponse:
            request_id = (request.headers.get("X-Request-ID", "")[:64]
                          or prefix + str(next(counter)))
            bound = REQUEST_ID.set(request_id)  # every line logged meanwhile carries request_id=
            try:
                if required is not None:
                    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
                    if scheme.lower() != "bearer" or not hmac.compare_digest(
                            value.strip().encode(), required):
                        raise Unauthorized
                response = await handler(ctx, request)
            except Exception as e:  # noqa: BLE001 - mapped to HTTP; a 500 is logged there
                response = _error_response(request, e, request_id)
            finally:
                REQUEST_ID.reset(bound)
            response.headers["X-Request-ID"] = request_id
            return response

        return guarded

    return guard


class Dispatch:
    """Routes for aiohttp's low-level server: `await dispatch(request)` runs the guarded
    handler of the request's path and method.

    Each (method, path, handler) is guarded by `route_guard`; a GET route answers HEAD
    too. What has no route gets the answers aiohttp's router would give, guarded as
    well, so they carry the same JSON errors, auth and `X-Request-ID`: 405 with `Allow`
    for a known path (its methods' "*" entry), 404 for any other. Paths are matched as
    aiohttp's router matches them: percent-decoded except for an encoded "/" or "%"
    (`path_safe`), so `/v1%2Fbaseline` is no route."""

    def __init__(self, ctx: Any, token: bytes | None,
                 routes: Iterable[tuple[str, str, RouteHandler]]) -> None:
        guard = route_guard(ctx, token)
        # path -> method -> guarded handler; "*": any other method (the 405).
        handlers: dict[str, dict[str, Guarded]] = {}
        for method, path, handler in routes:
            guarded = guard(handler, path in PUBLIC_PATHS)
            methods = handlers.setdefault(path, {})
            methods[method] = guarded
            if method == "GET":
                methods["HEAD"] = guarded
        for path, methods in handlers.items():
            methods["*"] = guard(_method_not_allowed(set(methods)), path in PUBLIC_PATHS)
        self.routes = handlers
        self._not_found = guard(_not_found, False)

    def __call__(self, request: web.BaseRequest) -> Awaitable[web.StreamResponse]:
        """The route's coroutine, for aiohttp to await (not a coroutine itself: one
        frame less per request)."""
        methods = self.routes.get(request.rel_url.path_safe)
        if methods is None:
            return self._not_found(request)
        return (methods.get(request.method) or methods["*"])(request)


def _method_not_allowed(allowed: set[str]) -> RouteHandler:
    async def method_not_allowed(ctx: Any, request: web.BaseRequest) -> web.StreamResponse:
        raise web.HTTPMethodNotAllowed(request.method, allowed)

    return method_not_allowed


async def _not_found(ctx: Any, request: web.BaseRequest) -> web.StreamResponse:
    raise web.HTTPNotFound


class Unauthorized(Exception):
    """No bearer token, or the wrong one, on a protected route."""


def _error_response(request: web.BaseRequest, e: Exception, request_id: str) -> web.Response:
    """The HTTP answer to an exception a handler raised (logged with the request ID)."""
    if isinstance(e, InvalidEvent):
        return error(400, e.message, field=e.field)
    if isinstance(e, Unauthorized):
        return error(401, "missing or wrong bearer token (Authorization: Bearer <TLA_API_TOKEN>)")
    if isinstance(e, StoreUnavailable):
        log.warning("event=store_unavailable path=%s error=%r", request.path, str(e))
        return error(503, "baseline store unavailable: Redis did not answer; retry later")
    if isinstance(e, ConnectionError):  # the client went away mid-body: no one to answer
        log.info("event=client_disconnected path=%s error=%r", request.path, str(e))
        return error(400, "connection lost while reading the request")
    if isinstance(e, web.HTTPException):
        response = error(e.status, e.reason)
        if "Allow" in e.headers:  # 405 must list the methods (RFC 9110)
            response.headers["Allow"] = e.headers["Allow"]
        return response
    log.exception("event=unhandled_error path=%s", request.path, exc_info=e)
    return error(500, "internal error", requestId=request_id)


async def judge(ctx: Ctx, items: list[tuple[BucketRef, str, float]]) -> list[bytes]:
    """Verdicts as JSON, as `verdict_json(evaluate(...))` would serialize, from compiled
    parts (and counted by status); the baselines come from the store's cache in the
    steady state."""
    baselines = await ctx.baselines.get_many([bucket_id for _, bucket_id, _ in items])
    return [ctx.verdicts.verdict_bytes(ref, bucket_id, baselines[bucket_id], duration_ms)
            for ref, bucket_id, duration_ms in items]


def json_bytes_response(body: bytes) -> web.Response:
    return web.Response(body=body, content_type="application/json")


def arrived_body(request: web.BaseRequest, max_bytes: int) -> bytes | None:
    """The whole body if it has all arrived already, else None (then `read_body`).

    A small POST's body comes in the packet of its headers: it is taken from the buffer
    as it is (`request.read()` awaits two reads and copies twice), with no coroutine."""
    content = request.content
    if not content.is_eof():
        return None
    body = content.read_nowait()
    if len(body) > max_bytes:
        raise web.HTTPRequestEntityTooLarge(max_bytes, len(body))
    return body


async def read_body(request: web.BaseRequest, max_bytes: int) -> bytes:
    """The request body, at most `max_bytes` (else 413, as aiohttp's `client_max_size`):
    `arrived_body`, or read chunk by chunk as it arrives, after a `100 Continue` if the
    client waits for one (a declared length over the limit is refused first)."""
    body = arrived_body(request, max_bytes)
    return body if body is not None else await _read_arriving(request, max_bytes)


async def _read_arriving(request: web.BaseRequest, max_bytes: int) -> bytes:
    """`read_body` for a body that has not all arrived yet."""
    declared = request.content_length
    if declared is not None and declared > max_bytes:
        raise web.HTTPRequestEntityTooLarge(max_bytes, declared)
    await _expect_continue(request)
    content = request.content
    parts: list[bytes] = []
    size = 0
    while chunk := await content.readany():
        size += len(chunk)
        if size > max_bytes:
            raise web.HTTPRequestEntityTooLarge(max_bytes, size)
        parts.append(chunk)
    return b"".join(parts)


async def _expect_continue(request: web.BaseRequest) -> None:
    """Answer `Expect: 100-continue` before reading a body that has not arrived (curl
    sends it for bodies over 1 KiB and waits a second for it), as aiohttp's router did.

    Other expectations are ignored, whenever the body arrives: RFC 9110 lets a server
    answer them with 417 but does not require it, and refusing them only when a body
    came in a second packet would make the answer depend on timing."""
    expect = request.headers.get("Expect", "")
    if expect.lower() != "100-continue" or request.version != HttpVersion11:
        return
    await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    request.writer.output_size = 0  # the response proper has not started


async def read_json(ctx: Ctx, request: web.BaseRequest) -> Any:
    return json_of(await read_body(request, ctx.max_body_bytes))


async def check(ctx: Ctx, request: web.BaseRequest) -> web.Response:
    """`judge` for one item, inlined: in the steady state nothing is awaited."""
    started = time.perf_counter()
    body = arrived_body(request, ctx.max_body_bytes)  # read_body, its first step not awaited
    if body is None:
        body = await _read_arriving(request, ctx.max_body_bytes)
    ref, bucket_id, duration_ms = ctx.parse(json_of(body))
    baseline = ctx.baselines.cached(bucket_id)
    if isinstance(baseline, Miss):
        baseline = await ctx.baselines.get(bucket_id)
    result = ctx.verdicts.verdict_bytes(ref, bucket_id, baseline, duration_ms)
    ctx.metrics.check_seconds.observe(time.perf_counter() - started)
    return json_bytes_response(result)


async def check_batch(ctx: Ctx, request: web.BaseRequest) -> web.Response:
    started = time.perf_counter()
    body = await read_json(ctx, request)
    traces = body.get("traces") if isinstance(body, dict) else None
    if not isinstance(traces, list) or not 1 <= len(traces) <= MAX_BATCH:
        raise InvalidEvent("traces", f"must be a list of 1 to {MAX_BATCH} check requests")
    items = []
    for i, trace in enumerate(traces):
        try:
            items.append(ctx.parse(trace))
        except InvalidEvent as e:
            raise InvalidEvent(f"traces[{i}].{e.field}", e.message) from e
    results = await judge(ctx, items)
    ctx.metrics.check_seconds.observe(time.perf_counter() - started)
    return json_bytes_response(b'{"results":[' + b",".join(results) + b"]}")


def _query_bucket(request: web.BaseRequest, ctx: Ctx) -> BucketRef:
    q = request.query
    service = string_field(dict(q), "service", MAX_SERVICE_CHARS)
    endpoint = string_field(dict(q), "endpoint", MAX_ENDPOINT_CHARS)
    now_bucket = bucket_of(time.time_ns(), ctx.zone)
    hour_text = q.get("hour")
    if hour_text is None:
        hour = now_bucket.hour
    elif hour_text.isdecimal() and 0 <= int(hour_text) <= 23:  # not isdigit: "²"
        hour = int(hour_text)
    else:
        raise InvalidEvent("hour", f"must be an integer 0-23, got {hour_text[:20]!r}")
    try:
        day_type = parse_day_type(q["dayType"]) if "dayType" in q else now_bucket.day_type
    except ValueError as e:
        raise InvalidEvent("dayType", "must be 'weekday' or 'weekend'") from e
    return BucketRef(service, endpoint, TimeBucket(hour, day_type))


async def baseline(ctx: Ctx, request: web.BaseRequest) -> web.Response:
    ref = _query_bucket(request, ctx)
    found = await ctx.baselines.get(ref.id)
    body = {
        "bucket": bucket_json(ref, ctx.tz_name),
        "baseline": baseline_json(found),
        "threshold": threshold_json(threshold_of(found, ctx.rule), ctx.rule) if found else None,
        "minSamples": ctx.rule.min_samples,
    }
    if found is None:
        return json_response({**body, "error": f"no baseline yet for {ref.id}"}, 404)
    return json_response(body)


async def healthz(ctx: Ctx, request: web.BaseRequest) -> web.Response:
    return json_response({"status": "ok"})


async def readyz(ctx: Ctx, request: web.BaseRequest) -> web.Response:
    try:
        async with asyncio.timeout(READY_TIMEOUT_S):  # not wait_for: see pipeline/retry.py
            await ctx.redis.ping()
        redis_ok = True
    except (RedisError, OSError, TimeoutError):
        redis_ok = False
    broken = ctx.health.broken()
    body = {"redis": "ok" if redis_ok else "unavailable", "stages": ctx.health.stages}
    if redis_ok and not broken:
        return json_response({"status": "ready", **body})
    return json_response({"status": "not ready", **body}, 503)


async def metrics_handler(ctx: Ctx, request: web.BaseRequest) -> web.Response:
    payload = generate_latest(ctx.metrics.registry)
    return web.Response(body=payload, headers={"Content-Type": CONTENT_TYPE_LATEST})


def load_openapi() -> dict[str, Any]:
    return yaml.safe_load(schemas.read_text("openapi.yaml"))


async def openapi(ctx: Ctx, request: web.BaseRequest) -> web.Response:
    return json_response(ctx.openapi)


ROUTES: tuple[tuple[str, str, RouteHandler], ...] = (
    ("POST", "/v1/anomaly/check", check),
    ("POST", "/v1/anomaly/check:batch", check_batch),
    ("GET", "/v1/baseline", baseline),
    ("GET", "/healthz", healthz),
    ("GET", "/readyz", readyz),
    ("GET", "/metrics", metrics_handler),
    ("GET", "/openapi.json", openapi),
)


class Api:
    """The API as a handler for aiohttp's low-level server; `running()` around serving it.

        api = Api(settings, redis, metrics)
        async with api.running():
            runner = web.ServerRunner(api.server(), handle_signals=False)
            await runner.setup()
            await web.TCPSite(runner, host, port).start()
            ...  # serve until asked to stop
            await runner.cleanup()
    """

    def __init__(self, settings: Settings, redis: Redis, metrics: Metrics,
                 baselines: BaselineStore | None = None, health: Health | None = None) -> None:
        baselines = baselines or BaselineStore(redis, settings.keys(), settings.api_cache_ttl_s())
        self.ctx = Ctx(settings, redis, metrics, baselines, health or Health())
        self.dispatch = Dispatch(self.ctx, self.ctx.token, ROUTES)

    def server(self, **kwargs: Any) -> web.Server:
        """The low-level server for this API (kwargs go to aiohttp's RequestHandler)."""
        return web.Server(self.dispatch, access_log=None, **kwargs)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Follow recompute's version counter in the background while serving."""
        stop = asyncio.Event()
        task = asyncio.create_task(self.ctx.baselines.watch_versions(stop),
                                   name="baseline-versions")
        try:
            yield
        finally:
            stop.set()
            # Bounded: a GET stuck on a dead Redis ends at its socket timeout, or is
            # cancelled here.
            done, _ = await asyncio.wait({task}, timeout=WATCH_STOP_S)
            if not done:
                task.cancel()
