"""What each CLI command does, once settings are loaded and logging is configured."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from pipeline import samples as stored_samples
from pipeline.buckets import BucketRef, TimeBucket, bucket_of, load_zone
from pipeline.errors import ConfigError
from pipeline.rule import where
from services import runner
from services.checks import CheckRequest
from services.config import Settings
from services.demo import DemoTraffic, print_anomalies
from services.embedded import url_file
from services.inspect import collect, render
from services.redis_client import open_redis
from services.roles import ROLES

HTTP_TIMEOUT_S = 10.0


async def run(settings: Settings, demo: bool) -> int:
    """Every stage + the API in one process (the embedded store when no Redis is set)."""
    async with runner.runtime(settings, embedded_ok=True) as rt:
        runner.install_signals(rt.stop)
        stages = runner.build_stages(rt, list(ROLES))
        extra: tuple[runner.Stage, ...] = ()
        if demo:
            traffic = DemoTraffic(rt.redis, settings.keys(), load_zone(settings.timezone))
            await traffic.backfill()
            window = settings.recompute.interval_s
            print(
                f"demo: first baselines when the current {window} s window closes; live traffic "
                f"now, ~2% of it slow. API and web view: {settings.api_url()}/  (Ctrl-C stops)",
                flush=True,
            )

            async def show(stop: Any) -> None:
                await print_anomalies(rt.redis, settings.keys(), stop, sys.stdout)

            extra = (traffic.run, show)
        await runner.run_stages(rt, stages, extra)
    return 0


async def stage(settings: Settings, role: str) -> int:
    if role == "tempo-source" and not settings.tempo.url:
        raise ConfigError("tempo-source needs TLA_TEMPO_URL (Tempo's base URL)")
    if role == "kafka-source" and not settings.kafka.brokers:
        raise ConfigError("kafka-source needs TLA_KAFKA_BROKERS (comma-separated host:port)")
    async with runner.runtime(settings, embedded_ok=False) as rt:
        runner.install_signals(rt.stop)
        await runner.run_stages(rt, runner.build_stages(rt, [role]))
    return 0


def _api_client(settings: Settings) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {settings.api.token}"} if settings.api.token else {}
    return httpx.AsyncClient(base_url=settings.api_url(), headers=headers, timeout=HTTP_TIMEOUT_S)


async def _call(settings: Settings, method: str, path: str, **kw: Any) -> tuple[int, Any]:
    async with _api_client(settings) as client:
        try:
            response = await client.request(method, path, **kw)
        except httpx.TransportError as e:
            raise ConfigError(
                f"cannot reach the API at {settings.api_url()} ({e.__class__.__name__}); "
                "is `tempo-anomaly run` or `api` running? (TLA_API_URL / TLA_API_PORT)"
            ) from e
    return response.status_code, response.json()


def _printed_json(status: int, reply: Any, as_json: bool) -> int | None:
    """The API's JSON reply printed as it is when asked (--json) or an error, and the exit
    status then; None: the caller prints the reply its own way."""
    if as_json or status != 200:
        print(orjson.dumps(reply, option=orjson.OPT_INDENT_2).decode())
        return 0 if status == 200 else 1
    return None


async def check(settings: Settings, args: argparse.Namespace) -> int:
    body: CheckRequest = {
        "rootServiceName": args.service,
        "rootTraceName": args.endpoint,
        "startTimeUnixNano": str(args.start_ns or time.time_ns()),
        "durationMs": args.duration_ms,
    }
    status, reply = await _call(settings, "POST", "/v1/anomaly/check", json=body)
    if (exit_code := _printed_json(status, reply, args.json)) is not None:
        return exit_code
    print(("ANOMALY: " if reply["isAnomaly"] else "normal: ") + reply["reason"])
    return 0


async def baseline(settings: Settings, args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"service": args.service, "endpoint": args.endpoint}
    if args.hour is not None:
        params["hour"] = args.hour
    if args.day_type:
        params["dayType"] = args.day_type
    status, reply = await _call(settings, "GET", "/v1/baseline", params=params)
    if (exit_code := _printed_json(status, reply, args.json)) is not None:
        return exit_code
    b, t, where = reply["baseline"], reply["threshold"], reply["bucket"]
    print(f"{where['service']} {where['endpoint']}, {where['hour']:02d}:00 {where['dayType']} "
          f"{where['timezone']}: p50 {b['p50']} ms, p95 {b['p95']} ms, MAD {b['mad']} ms, "
          f"n={b['count']}, updated {b['ageS']:.0f} s ago; threshold {t['valueMs']} ms ({t['term']})")
    return 0


async def incidents(settings: Settings, args: argparse.Namespace) -> int:
    """The incidents `GET /v1/incidents` lists, one line each (its reason), newest first."""
    since = args.since
    if not since.isdecimal():
        from pipeline.tempo_source.backfill import parse_since

        try:
            since = str(int((time.time() - parse_since(since)) * 1000))
        except ValueError as e:
            raise ConfigError(f"--since: {e}") from e
    params: dict[str, Any] = {"state": args.state, "since": since, "limit": args.limit}
    if args.service:
        params["service"] = args.service
    status, reply = await _call(settings, "GET", "/v1/incidents", params=params)
    if (exit_code := _printed_json(status, reply, args.json)) is not None:
        return exit_code
    for i in reply["incidents"]:
        print(f"{i['state'].upper():<6}  {i['reason']}")
    if not reply["incidents"]:
        print("no incidents" + (" open" if args.state == "open" else ""))
    return 0


def redis_url_for_tools(settings: Settings) -> str:
    """TLA_REDIS_URL, else the embedded server a running `run` recorded."""
    if settings.redis.url:
        return settings.redis.url
    recorded = url_file(Path(settings.state_dir))
    if recorded.exists():
        return recorded.read_text().strip()
    raise ConfigError("set TLA_REDIS_URL, or start `tempo-anomaly run` (embedded store) first")


async def inspect(settings: Settings, as_json: bool) -> int:
    redis = await open_redis(redis_url_for_tools(settings), settings.redis.mode)
    try:
        report = await collect(redis, settings.keys())
    finally:
        await redis.aclose()
    print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode() if as_json else render(report))
    return 0


async def samples(settings: Settings, args: argparse.Namespace) -> int:
    """One bucket's stored samples, newest last (the ring is binary: redis-cli can't show it)."""
    if args.hour is not None and not 0 <= args.hour <= 23:
        raise ConfigError(f"--hour must be 0-23, got {args.hour}")
    zone = load_zone(settings.timezone)
    now = bucket_of(time.time_ns(), zone, settings.calendar())
    ref = BucketRef(args.service, args.endpoint,
                    TimeBucket(now.hour if args.hour is None else args.hour,
                               args.day_type or now.day_type))
    redis = await open_redis(redis_url_for_tools(settings), settings.redis.mode)
    try:
        values = await stored_samples.read(redis, settings.keys(), ref.id)
    finally:
        await redis.aclose()
    newest = [round(v, 3) for v in values[-args.last:].tolist()] if args.last > 0 else []
    if args.json:
        print(orjson.dumps({"bucket": ref.id, "count": int(values.size),
                            "windowSize": settings.rule.window_size, "newestMs": newest}).decode())
        return 0
    print(f"{where(ref, settings.timezone)}: {values.size} samples "
          f"(window {settings.rule.window_size})")
    if newest:
        print(f"newest {len(newest)}, oldest first (ms): " + " ".join(f"{v:g}" for v in newest))
    return 0


async def backfill(settings: Settings, since: str) -> int:
    if not settings.tempo.url:
        raise ConfigError("backfill needs TLA_TEMPO_URL (Tempo's base URL)")
    from pipeline.metrics import Metrics
    from pipeline.tempo_source.backfill import backfill as run_backfill
    from pipeline.tempo_source.backfill import parse_since

    try:
        since_s = parse_since(since)
    except ValueError as e:
        raise ConfigError(str(e)) from e
    redis = await open_redis(redis_url_for_tools(settings), settings.redis.mode)
    try:
        summary = await run_backfill(settings, redis, Metrics(), since_s, sys.stderr)
    finally:
        await redis.aclose()
    print(summary)
    return 0 if summary.ok else 1
