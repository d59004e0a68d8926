"""The HTTP API: anomaly checks, baselines, the OpenAPI document, the probes, and the web
view (services/web/: its pages and the JSON behind them).

Its routes run on the one HTTP layer, `services/http.py` (routing, the guard, errors to
HTTP, bounded bodies, /healthz /readyz /metrics). Handlers stay thin: parse → pipeline
function → JSON, with what they share in an `ApiContext` built once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import yaml
from aiohttp import web
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

import schemas
from pipeline.baselines import BaselineStore, Miss
from pipeline.buckets import (
    MAX_ENDPOINT_CHARS,
    MAX_SERVICE_CHARS,
    BucketRef,
    TimeBucket,
    ZoneBuckets,
    load_zone,
    parse_day_type,
)
from pipeline.errors import InvalidEvent
from pipeline.fallback import Fallbacks
from pipeline.keys import Keys
from pipeline.metrics import Metrics, PlainHistogram, StatusCounter
from pipeline.rule import RuleParams, threshold_of
from services.checks import CheckParser, json_of, string_field
from services.config import Settings
from services.health import Health
from services.incidents import list_incidents
from services.http import (
    PROBES,
    Route,
    Router,
    arrived_body,
    int_param,
    json_bytes_response,
    json_response,
    read_arriving,
    read_body,
)
from services.verdict_cache import VerdictCache
from services.views import baseline_json, bucket_json, threshold_json
from services.web import routes as web_routes
from services.web.data import WebData
from services.web.routes import WebContext

MAX_BATCH = 1000
# How long cleanup waits for the baseline-version watch to finish its GET: a healthy
# Redis answers in microseconds, and shutdown must not hang on a dead one.
WATCH_STOP_S = 2.0


# Check latency lives well under a millisecond in the steady state; the top buckets
# catch Redis round trips and stalls.
CHECK_BUCKETS_S = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1.0)


class CheckMetrics:
    """The check API's series (`metrics.part(CheckMetrics)`): plain numbers on the hot
    path, exposed as prometheus_client's own types would be (pipeline/metrics.py)."""

    def __init__(self, r: CollectorRegistry) -> None:
        self.check_requests = StatusCounter(
            "tla_check_requests_total", "Anomaly checks answered, by verdict status",
            "status", registry=r,
        )
        self.check_seconds = PlainHistogram(
            "tla_check_duration_seconds", "Server time of one anomaly check",
            buckets=CHECK_BUCKETS_S, registry=r,
        )


@dataclass(slots=True, kw_only=True)
class ApiContext(WebContext):
    """What the API's handlers share, built once per API by `ApiContext.build`."""

    baselines: BaselineStore
    keys: Keys
    rule: RuleParams
    zone: ZoneInfo
    tz_name: str
    # The bucket of an instant, holidays included (the check path's slots).
    buckets: ZoneBuckets
    # The check path's precomputed work: time-zone slots and compiled verdicts.
    parse: CheckParser
    verdicts: VerdictCache
    fallbacks: Fallbacks  # what judges a thin bucket
    openapi: dict[str, Any]
    checks: CheckMetrics

    @classmethod
    def build(cls, settings: Settings, redis: Redis, metrics: Metrics,
              baselines: BaselineStore, health: Health) -> ApiContext:
        rule = settings.rule_params()
        zone = load_zone(settings.timezone)
        buckets = ZoneBuckets(zone, settings.calendar())
        checks = metrics.part(CheckMetrics)
        # Uncached: the pages show what Redis holds, and keep out of the check path's cache.
        web = WebData(redis, settings.keys(), BaselineStore(redis, settings.keys()), rule,
                      buckets, settings.timezone, settings.ui.trace_link)
        return cls(
            redis=redis, metrics=metrics, health=health,
            token=settings.api.token.encode() if settings.api.token else None,
            max_body_bytes=settings.api.max_body_bytes,
            baselines=baselines, keys=settings.keys(), rule=rule, zone=zone,
            tz_name=settings.timezone, buckets=buckets, parse=CheckParser(zone, buckets),
            verdicts=VerdictCache(rule, settings.timezone, checks.check_requests),
            fallbacks=Fallbacks(baselines, rule),
            openapi=load_openapi(), checks=checks, web=web, assets=web_routes.load_assets(),
        )


async def judge(ctx: ApiContext, items: list[tuple[BucketRef, str, float]]) -> list[bytes]:
    """Verdicts as JSON, as `verdict_json(evaluate(...))` would serialize, from compiled
    parts (and counted by status); the baselines come from the store's cache in the
    steady state, the fallbacks of thin buckets too."""
    baselines = await ctx.baselines.get_many([bucket_id for _, bucket_id, _ in items])
    fallbacks = await ctx.fallbacks(((ref, i) for ref, i, _ in items), baselines)
    return [ctx.verdicts.verdict_bytes(ref, bucket_id, baselines[bucket_id], duration_ms,
                                       fallbacks.get(bucket_id))
            for ref, bucket_id, duration_ms in items]


async def check(ctx: ApiContext, request: web.BaseRequest) -> web.Response:
    """`judge` for one item, inlined: in the steady state nothing is awaited."""
    started = time.perf_counter()
    body = arrived_body(request, ctx.max_body_bytes)  # read_body, its first step not awaited
    if body is None:
        body = await read_arriving(request, ctx.max_body_bytes)
    ref, bucket_id, duration_ms = ctx.parse(json_of(body))
    baseline = ctx.baselines.cached(bucket_id)
    if isinstance(baseline, Miss):
        baseline = await ctx.baselines.get(bucket_id)
    fallback = None
    if ctx.rule.fallback and (baseline is None or baseline.count < ctx.rule.min_samples):
        # A thin bucket: a few more lookups, from the store's cache in the steady state.
        found = await ctx.fallbacks(((ref, bucket_id),), {bucket_id: baseline})
        fallback = found.get(bucket_id)
    result = ctx.verdicts.verdict_bytes(ref, bucket_id, baseline, duration_ms, fallback)
    ctx.checks.check_seconds.observe(time.perf_counter() - started)
    return json_bytes_response(result)


async def check_batch(ctx: ApiContext, request: web.BaseRequest) -> web.Response:
    started = time.perf_counter()
    body = json_of(await read_body(request, ctx.max_body_bytes))
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
    ctx.checks.check_seconds.observe(time.perf_counter() - started)
    return json_bytes_response(b'{"results":[' + b",".join(results) + b"]}")


def _query_bucket(request: web.BaseRequest, ctx: ApiContext) -> BucketRef:
    q = request.query
    service = string_field(dict(q), "service", MAX_SERVICE_CHARS)
    endpoint = string_field(dict(q), "endpoint", MAX_ENDPOINT_CHARS)
    now_bucket = ctx.buckets(time.time_ns())
    hour = int_param(q, "hour", now_bucket.hour, 0, 23)
    try:
        day_type = parse_day_type(q["dayType"]) if "dayType" in q else now_bucket.day_type
    except ValueError as e:
        raise InvalidEvent("dayType", "must be 'weekday' or 'weekend'") from e
    return BucketRef(service, endpoint, TimeBucket(hour, day_type))


async def baseline(ctx: ApiContext, request: web.BaseRequest) -> web.Response:
    ref = _query_bucket(request, ctx)
    found = await ctx.baselines.get(ref.id)
    body = {
        "bucket": bucket_json(ref, ctx.tz_name),
        "baseline": baseline_json(found, ref.id),
        "threshold": threshold_json(threshold_of(found, ctx.rule), ctx.rule) if found else None,
        "minSamples": ctx.rule.min_samples,
    }
    if found is None:
        return json_response({**body, "error": f"no baseline yet for {ref.id}"}, 404)
    return json_response(body)


def load_openapi() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(schemas.read_text("openapi.yaml"))
    return doc


async def openapi(ctx: ApiContext, request: web.BaseRequest) -> web.Response:
    return json_response(ctx.openapi)


ROUTES: tuple[Route[ApiContext], ...] = (
    Route("POST", "/v1/anomaly/check", check),
    Route("POST", "/v1/anomaly/check:batch", check_batch),
    Route("GET", "/v1/baseline", baseline),
    Route("GET", "/v1/incidents", list_incidents),
    *PROBES,
    Route("GET", "/openapi.json", openapi),
    *web_routes.ROUTES,
)


class Api:
    """The API's router, and `running()` around serving it.

        api = Api(settings, redis, metrics)
        async with api.running(), serving(api.router, host, port, "API", "set TLA_API_PORT"):
            ...  # serve until asked to stop
    """

    def __init__(self, settings: Settings, redis: Redis, metrics: Metrics,
                 baselines: BaselineStore | None = None, health: Health | None = None) -> None:
        baselines = baselines or BaselineStore(redis, settings.keys(), settings.api_cache_ttl_s())
        self.ctx = ApiContext.build(settings, redis, metrics, baselines, health or Health())
        self.router = Router(self.ctx, ROUTES)

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
