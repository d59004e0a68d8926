"""The observer on a real Redis: group lag/pending, dead letters, baseline age, anomalies
by service; the /metrics listener of non-API roles."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from pipeline.errors import ConfigError
from pipeline.keys import Keys
from pipeline.metrics import Metrics
from services import observer as observer_mod
from services.config import MetricsSettings, Settings
from services.health import Health
from services.observer import MetricsStage, Observer
from tests.support import eventually, free_port

pytestmark = pytest.mark.redis

NOW_S = 2_000_000_000.0  # the observer's clock in these tests


def value(m: Metrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, labels)


async def add(redis: Redis, stream: str, n: int, ms: int | None = None, **fields: str) -> None:
    for i in range(n):
        entry_id = f"{ms}-{i}" if ms is not None else "*"
        entry: dict[Any, Any] = {"n": str(i), **fields}
        await redis.xadd(stream, entry, id=entry_id)


def observer_for(redis: Redis, keys: Keys) -> tuple[Observer, Metrics]:
    metrics = Metrics()
    return Observer(redis, keys, metrics, clock=lambda: NOW_S), metrics


async def test_lag_pending_consumers_and_oldest_pending_age(redis: Redis, keys: Keys) -> None:
    await redis.xgroup_create(keys.traces, "ingest", id="0", mkstream=True)
    await add(redis, keys.traces, 10, ms=int((NOW_S - 42) * 1000))
    await redis.xreadgroup("ingest", "c1", {keys.traces: ">"}, count=3)
    obs, m = observer_for(redis, keys)
    await obs.observe()
    labels = {"stream": "traces", "group": "ingest"}
    assert value(m, "tla_stream_length_entries", stream="traces") == 10
    assert value(m, "tla_stream_group_lag_entries", **labels) == 7
    assert value(m, "tla_stream_group_pending_entries", **labels) == 3
    assert value(m, "tla_stream_group_consumers", **labels) == 1
    assert value(m, "tla_stream_group_oldest_pending_age_seconds", **labels) == pytest.approx(42)
    assert value(m, "tla_stream_length_entries", stream="dirty") == 0  # absent stream


async def test_acked_group_has_no_pending_age_and_deleted_group_vanishes(
    redis: Redis, keys: Keys
) -> None:
    await redis.xgroup_create(keys.dirty, "recompute", id="0", mkstream=True)
    await add(redis, keys.dirty, 2)
    reply: Any = await redis.xreadgroup("recompute", "c1", {keys.dirty: ">"})
    await redis.xack(keys.dirty, "recompute", *[i for i, _f in reply[0][1]])
    obs, m = observer_for(redis, keys)
    await obs.observe()
    labels = {"stream": "dirty", "group": "recompute"}
    assert value(m, "tla_stream_group_pending_entries", **labels) == 0
    assert value(m, "tla_stream_group_oldest_pending_age_seconds", **labels) == 0
    await redis.xgroup_destroy(keys.dirty, "recompute")
    await obs.observe()
    assert value(m, "tla_stream_group_lag_entries", **labels) is None


async def test_dead_letters_length_and_newest_time(redis: Redis, keys: Keys) -> None:
    obs, m = observer_for(redis, keys)
    await obs.observe()
    assert value(m, "tla_dead_letters_entries") == 0
    assert value(m, "tla_dead_letter_last_timestamp_seconds") == 0
    await add(redis, keys.dead, 3, ms=1_700_000_000_000, error="bad duration_ms")
    await obs.observe()
    assert value(m, "tla_dead_letters_entries") == 3
    assert value(m, "tla_dead_letter_last_timestamp_seconds") == 1_700_000_000


async def test_baseline_age_from_recently_dirtied_buckets(redis: Redis, keys: Keys) -> None:
    obs, m = observer_for(redis, keys)
    await obs.observe()
    assert math.isnan(value(m, "tla_baseline_newest_age_seconds") or 0.0)
    for bucket, age_s in (("{svc|GET /a}:14:weekday", 90), ("{svc|GET /b}:14:weekday", 30)):
        await redis.xadd(keys.dirty, {"bucket": bucket})
        await redis.hset(keys.base(bucket), mapping={
            "p50": "1", "p95": "2", "mad": "0.5", "count": "60",
            "updated_ms": str(int((NOW_S - age_s) * 1000)),
        })
    await redis.xadd(keys.dirty, {"bucket": "{svc|GET /never}:3:weekend"})  # no baseline yet
    await obs.observe()
    assert value(m, "tla_baseline_newest_age_seconds") == pytest.approx(30)
    # The dirty stream trimmed away: the newest write known keeps ageing, it is not lost.
    await redis.delete(keys.dirty)
    obs.clock = lambda: NOW_S + 100
    await obs.observe()
    assert value(m, "tla_baseline_newest_age_seconds") == pytest.approx(130)


async def test_anomalies_counted_by_service_from_start_with_bounded_labels(
    redis: Redis, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(observer_mod, "MAX_SERVICES", 2)
    await add(redis, keys.anomalies, 4, service="before-start")
    obs, m = observer_for(redis, keys)
    await obs.observe()  # like any counter, counts from the process start
    for service in ("checkout", "checkout", "cart", "search", "auth"):
        await redis.xadd(keys.anomalies, {"service": service, "trace_id": "ab"})
    await obs.observe()
    await obs.observe()  # nothing new: nothing counted twice
    assert value(m, "tla_anomalies_observed_total", service="checkout") == 2
    assert value(m, "tla_anomalies_observed_total", service="cart") == 1
    assert value(m, "tla_anomalies_observed_total", service="other") == 2
    assert value(m, "tla_anomalies_observed_total", service="before-start") is None


async def test_anomalies_read_in_pages(
    redis: Redis, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(observer_mod, "ANOMALY_PAGE", 3)
    monkeypatch.setattr(observer_mod, "ANOMALY_PAGES", 2)
    obs, m = observer_for(redis, keys)
    await obs.observe()
    await add(redis, keys.anomalies, 8, service="checkout")
    await obs.observe()
    assert value(m, "tla_anomalies_observed_total", service="checkout") == 6
    await obs.observe()
    assert value(m, "tla_anomalies_observed_total", service="checkout") == 8


async def test_redis_down_is_counted_not_fatal(keys: Keys) -> None:
    dead = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.5)
    obs, m = observer_for(dead, keys)
    stop = asyncio.Event()
    task = asyncio.create_task(obs.run(stop, interval_s=0.05))
    # Counted, and counted again: the loop goes on observing after each failure.
    await eventually("two failed observations counted",
                     lambda: (value(m, "tla_redis_errors_total", stage="observer") or 0) >= 2,
                     timeout_s=10)
    assert not task.done(), "the observer stopped on a Redis error"
    stop.set()
    await asyncio.wait_for(task, 5)
    assert task.exception() is None
    assert value(m, "tla_observe_last_timestamp_seconds") == 0  # no observation completed
    await dead.aclose()


def stage_settings(prefix: str, port: int) -> Settings:
    return Settings(key_prefix=prefix).replace(
        metrics=MetricsSettings(port=port, observe_interval_s=0.05)
    )


async def test_listener_serves_metrics_health_and_readiness(redis: Redis, prefix: str) -> None:
    port = free_port()
    metrics, health = Metrics(), Health()
    stage = MetricsStage(stage_settings(prefix, port), redis, metrics, health, observe=True)
    stop = asyncio.Event()
    task = asyncio.create_task(stage.run(stop))
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            while True:
                try:
                    reply = await client.get("/metrics")
                    if "tla_observe_last_timestamp_seconds " in reply.text:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.05)
            assert reply.headers["content-type"].startswith("text/plain")
            assert (await client.get("/healthz")).json() == {"status": "ok"}
            assert (await client.get("/readyz")).status_code == 200
            health.set("ingest", "restarting")
            ready = await client.get("/readyz")
            assert ready.status_code == 503 and ready.json()["stages"]["ingest"] == "restarting"
            missing = await client.get("/nope")  # the API's HTTP layer: JSON errors, request IDs
            assert missing.status_code == 404 and missing.json() == {"error": "Not Found"}
            assert missing.headers["X-Request-ID"]
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


async def test_listener_port_taken_is_a_config_error(redis: Redis, prefix: str) -> None:
    port = free_port()
    blocker = await asyncio.start_server(lambda r, w: None, "127.0.0.1", port)
    try:
        stage = MetricsStage(stage_settings(prefix, port), redis, Metrics(), Health(), False)
        with pytest.raises(ConfigError, match="TLA_METRICS_PORT"):
            await stage.run(asyncio.Event())
    finally:
        blocker.close()
        await blocker.wait_closed()


def test_metrics_port_setting_from_environment() -> None:
    s = Settings.load(env={"TLA_METRICS_PORT": "9464", "TLA_METRICS_OBSERVE_INTERVAL_S": "5"})
    assert (s.metrics.port, s.metrics.observe_interval_s) == (9464, 5.0)
    with pytest.raises(ConfigError, match="TLA_METRICS_PORT"):
        Settings.load(env={"TLA_METRICS_PORT": "70000"})
