"""The HTTP API (aiohttp): anomaly checks, baselines, health, metrics, the OpenAPI document.

Handlers stay thin: parse → pipeline function → JSON. Errors are mapped to HTTP in one
place, `route_guard`, which wraps every route (no middleware: see there): bad input 400
naming the field, unknown paths 404, other methods 405 with `Allow`, oversized bodies 413,
Redis down 503, and never a stack trace on the wire.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import yaml
from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from pipeline.baselines import BaselineStore, Miss
from pipeline.buckets import (
    TimeBucket,
    ZoneBuckets,
    bucket_of,
    load_zone,
    parse_day_type,
)
from pipeline.errors import InvalidEvent, StoreUnavailable
from pipeline.keys import MAX_ENDPOINT_CHARS, MAX_SERVICE_CHARS, BucketRef
from pipeline.metrics import Metrics
from pipeline.rule import RuleParams, threshold_of
from services.checks import CheckParser, json_of, read_json, string_field
from services.config import Settings
from services.health import Health
from services.logs import REQUEST_ID
from services.verdict_cache import VerdictCache
from services.views import baseline_json, bucket_json, threshold_json

log = logging.getLogger(__name__)

OPENAPI_PATH = Path(__file__).resolve().parent.parent / "schemas" / "openapi.yaml"
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


CTX = web.AppKey("ctx", Ctx)


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def error(status: int, message: str, **extra: Any) -> web.Response:
    return json_response({"error": message, **extra}, status)


def route_guard(token: bytes | None) -> Callable[[Handler, bool], Handler]:
    """`guard(handler, public)`: the handler with request ID and its log context, auth
    (unless `public`), and errors mapped to HTTP.

    Per route, not a middleware: an app with any middleware makes aiohttp wrap every
    request in a layer of its own and build the chain per route, which cost more than
    this function's own work. Request IDs are the client's `X-Request-ID` or this
    process's random prefix plus a counter (uuid4 cost more than the rest of this)."""
    prefix = secrets.token_hex(4) + "-"
    counter = itertools.count(1)

    def guard(handler: Handler, public: bool = False) -> Handler:
        required = None if public else token

        async def guarded(request: web.Request) -> web.StreamResponse:
            request_id = (request.headers.get("X-Request-ID", "")[:64]
                          or prefix + str(next(counter)))
            bound = REQUEST_ID.set(request_id)  # every line logged meanwhile carries request_id=
            try:
                if required is not None:
                    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
                    if scheme.lower() != "bearer" or not hmac.compare_digest(
                            value.strip().encode(), required):
                        raise Unauthorized
                response = await handler(request)
            except Exception as e:  # noqa: BLE001 - mapped to HTTP; a 500 is logged there
                response = _error_response(request, e, request_id)
            finally:
                REQUEST_ID.reset(bound)
            response.headers["X-Request-ID"] = request_id
            return response

        return guarded

    return guard


def add_routes(app: web.Application, token: bytes | None,
               routes: Iterable[tuple[str, str, Handler]]) -> None:
    """Each (method, path, handler) guarded by `route_guard`, plus the answers aiohttp
    would give without a route (404, 405 with `Allow`) as guarded routes too, so
    they carry the same JSON errors, auth and `X-Request-ID` with no middleware.

    405: every path gets a catch-all method ("*"), which aiohttp tries only after the
    path's own methods. 404: a catch-all path, indexed under "/", which aiohttp tries
    only after every longer path prefix had no match."""
    guard = route_guard(token)
    for method, path, handler in routes:
        guarded = guard(handler, path in PUBLIC_PATHS)
        if method == "GET":
            app.router.add_get(path, guarded)  # and HEAD, as aiohttp does
        else:
            app.router.add_route(method, path, guarded)
    for resource in list(app.router.resources()):
        assert isinstance(resource, web.Resource)  # add_route made each one
        allowed = {route.method for route in resource}
        public = resource.canonical in PUBLIC_PATHS
        resource.add_route("*", guard(_method_not_allowed(allowed), public))
    app.router.add_route("*", "/{path:.*}", guard(_not_found, False))


def _method_not_allowed(allowed: set[str]) -> Handler:
    async def method_not_allowed(request: web.Request) -> web.StreamResponse:
        raise web.HTTPMethodNotAllowed(request.method, allowed)

    return method_not_allowed


async def _not_found(request: web.Request) -> web.StreamResponse:
    raise web.HTTPNotFound


class Unauthorized(Exception):
    """No bearer token, or the wrong one, on a protected route."""


def _error_response(request: web.Request, e: Exception, request_id: str) -> web.Response:
    """The HTTP answer to an exception a handler raised (logged with the request ID)."""
    if isinstance(e, InvalidEvent):
        return error(400, e.message, field=e.field)
    if isinstance(e, Unauthorized):
        return error(401, "missing or wrong bearer token (Authorization: Bearer <TLA_API_TOKEN>)")
    if isinstance(e, StoreUnavailable):
        log.warning("event=store_unavailable path=%s error=%r", request.path, str(e))
        return error(503, "baseline store unavailable: Redis did not answer; retry later")
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


def arrived_body(request: web.Request, max_bytes: int) -> bytes | None:
    """The whole body if it has all arrived already (a small POST comes in the packet
    of its headers), else None: `request.read()` awaits two reads and copies twice.

    Over `max_bytes` it is a 413, as `read()` would answer past `client_max_size`."""
    content = request.content
    if not content.is_eof():
        return None
    body = content.read_nowait()
    if len(body) > max_bytes:
        raise web.HTTPRequestEntityTooLarge(max_bytes, len(body))
    return body


async def check(request: web.Request) -> web.Response:
    """`judge` for one item, inlined: in the steady state nothing is awaited."""
    started = time.perf_counter()
    ctx = request.app[CTX]
    body = arrived_body(request, ctx.max_body_bytes)
    if body is None:
        body = await request.read()
    ref, bucket_id, duration_ms = ctx.parse(json_of(body))
    baseline = ctx.baselines.cached(bucket_id)
    if isinstance(baseline, Miss):
        baseline = await ctx.baselines.get(bucket_id)
    result = ctx.verdicts.verdict_bytes(ref, bucket_id, baseline, duration_ms)
    ctx.metrics.check_seconds.observe(time.perf_counter() - started)
    return json_bytes_response(result)


async def check_batch(request: web.Request) -> web.Response:
    started = time.perf_counter()
    ctx = request.app[CTX]
    body = await read_json(request)
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


def _query_bucket(request: web.Request, ctx: Ctx) -> BucketRef:
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


async def baseline(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
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


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
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


async def metrics_handler(request: web.Request) -> web.Response:
    payload = generate_latest(request.app[CTX].metrics.registry)
    return web.Response(body=payload, headers={"Content-Type": CONTENT_TYPE_LATEST})


def load_openapi() -> dict[str, Any]:
    return yaml.safe_load(OPENAPI_PATH.read_text(encoding="utf-8"))


async def openapi(request: web.Request) -> web.Response:
    return json_response(request.app[OPENAPI])


OPENAPI = web.AppKey("openapi", dict)

ROUTES: tuple[tuple[str, str, Handler], ...] = (
    ("POST", "/v1/anomaly/check", check),
    ("POST", "/v1/anomaly/check:batch", check_batch),
    ("GET", "/v1/baseline", baseline),
    ("GET", "/healthz", healthz),
    ("GET", "/readyz", readyz),
    ("GET", "/metrics", metrics_handler),
    ("GET", "/openapi.json", openapi),
)


async def _watch_baseline_versions(app: web.Application) -> AsyncIterator[None]:
    """Follow recompute's version counter in the background for the app's lifetime."""
    stop = asyncio.Event()
    task = asyncio.create_task(app[CTX].baselines.watch_versions(stop), name="baseline-versions")
    yield
    stop.set()
    # Bounded: a GET stuck on a dead Redis ends at its socket timeout, or is cancelled here.
    done, _ = await asyncio.wait({task}, timeout=WATCH_STOP_S)
    if not done:
        task.cancel()


def create_app(
    settings: Settings,
    redis: Redis,
    metrics: Metrics,
    baselines: BaselineStore | None = None,
    health: Health | None = None,
) -> web.Application:
    baselines = baselines or BaselineStore(redis, settings.keys(), settings.api.cache_ttl_s)
    ctx = Ctx(settings, redis, metrics, baselines, health or Health())
    app = web.Application(client_max_size=settings.api.max_body_bytes)  # no middleware
    app[CTX] = ctx
    app.cleanup_ctx.append(_watch_baseline_versions)
    app[OPENAPI] = load_openapi()
    add_routes(app, ctx.token, ROUTES)
    return app
