"""The web view's fixtures: an API served on a real port for the JSON and the browser;
known traffic written as the pipeline writes it (recompute's baseline hashes, ingest's
service and endpoint indexes and anomaly entries); and the browser, Debian's chromium
driven by Playwright's async API (its sync API cannot run inside pytest-asyncio's loop)."""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import RawTestServer, TestClient
from playwright.async_api import Browser, Locator, Page, async_playwright
from redis.asyncio import Redis

from pipeline.buckets import BucketRef, TimeBucket, bucket_of, load_zone
from pipeline.events import TraceEvent
from pipeline.ingest.batch import anomaly_fields
from pipeline.keys import Keys
from pipeline.metrics import Metrics
from pipeline.rule import evaluate
from pipeline.stats import Baseline
from services.api import Api
from services.config import Settings

ZONE_NAME = "Asia/Taipei"
ZONE = load_zone(ZONE_NAME)
TOKEN = "web-t0ken"
TRACE_URL = "https://grafana.example/explore?trace={traceId}"
Serve = Callable[..., Awaitable[TestClient]]
# Debian's package: Playwright's own browser download is not used.
CHROMIUM = "/usr/bin/chromium"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


def now_bucket() -> TimeBucket:
    return bucket_of(time.time_ns(), ZONE)


def settings_for(prefix: str, **env: str) -> Settings:
    return Settings.load(env={"TLA_KEY_PREFIX": prefix, "TLA_TIMEZONE": ZONE_NAME,
                              "TLA_API_CACHE_TTL_S": "0", **env})


@pytest.fixture
async def serve(aiohttp_client: Callable[..., Awaitable[TestClient]], redis: Redis,
                prefix: str) -> AsyncIterator[Serve]:
    """`await serve(TLA_API_TOKEN=...)`: a client of the API (pages included) on a real
    127.0.0.1 port, `client.make_url("/")` for a browser."""
    async with contextlib.AsyncExitStack() as running:
        async def make(**env: str) -> TestClient:
            api = Api(settings_for(prefix, **env), redis, Metrics())
            await running.enter_async_context(api.running())
            client = await aiohttp_client(RawTestServer(api.router))
            running.push_async_callback(client.close)
            return client

        yield make


class Traffic:
    """Known state, written under the test's prefix in the pipeline's own formats."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self.rule = settings_for(keys.prefix).rule_params()

    async def endpoint(self, service: str, endpoint: str, seen_s: float | None = None) -> None:
        seen = time.time() if seen_s is None else seen_s
        await self.redis.zadd(self.keys.services, {service: seen})
        await self.redis.zadd(self.keys.endpoints(service), {endpoint: seen})

    async def baseline(self, service: str, endpoint: str, bucket: TimeBucket,
                       p50: float, p95: float, mad: float, count: int) -> BucketRef:
        ref = BucketRef(service, endpoint, bucket)
        b = Baseline(p50, p95, mad, count, int(time.time() * 1000))
        await self.redis.hset(self.keys.base(ref.id), mapping=b.to_hash())
        return ref

    async def anomaly(self, ref: BucketRef, trace_id: str, duration_ms: float,
                      flagged_ms: int | None = None, baseline: Baseline | None = None) -> str:
        """One `<p>anomalies` entry as ingest writes it; its id says when it was flagged."""
        b = baseline or Baseline(100.0, 200.0, 10.0, 500, int(time.time() * 1000))
        verdict = evaluate(duration_ms, ref, b, self.rule, ZONE_NAME)
        assert verdict.is_anomaly, verdict.reason
        fields = anomaly_fields(TraceEvent(trace_id, ref.service, ref.endpoint, time.time_ns(),
                                           duration_ms, "test"), verdict)
        entry_id = f"{flagged_ms}-*" if flagged_ms is not None else "*"
        new_id: Any = await self.redis.xadd(self.keys.anomalies,
                                            dict(zip(fields[::2], fields[1::2])), id=entry_id)
        return new_id.decode() if isinstance(new_id, bytes) else str(new_id)


@pytest.fixture
def traffic(redis: Redis, keys: Keys) -> Traffic:
    return Traffic(redis, keys)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"no {CHROMIUM}: apt-get install chromium (Debian's package; .ci/run does)")
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM,
                                    args=["--no-sandbox", "--disable-gpu"])
        yield b
        await b.close()


def cell_of(page: Page, bucket: TimeBucket) -> Locator:
    """The heatmap cell of one bucket."""
    return page.locator(f'.cell[data-hour="{bucket.hour}"][data-day-type="{bucket.day_type}"]')
