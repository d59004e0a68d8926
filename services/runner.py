"""Process lifecycle: wire the stages, supervise them, stop them on SIGTERM/SIGINT.

Each stage is `async def run(stop)`. A stage that raises unexpectedly is logged with its
traceback and restarted with backoff; after MAX_FAILURES quick failures (or on a
ConfigError) the process stops with a non-zero exit. A signal sets `stop`: every stage
finishes its in-flight batch and returns; whatever has not returned after
SHUTDOWN_TIMEOUT_S is cancelled.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from pipeline.baselines import BaselineStore
from pipeline.buckets import ZoneBuckets, load_zone
from pipeline.errors import ConfigError
from pipeline.incidents import Detector
from pipeline.ingest import Ingestor
from pipeline.metrics import Metrics
from pipeline.recompute import Recomputer
from pipeline.retry import Backoff
from services.api import Api
from services.config import Settings
from services.embedded import embedded_redis
from services.health import Health
from services.http import serving
from services.redis_client import open_redis, redact

log = logging.getLogger(__name__)

Stage = Callable[[asyncio.Event], Coroutine[Any, Any, None]]
SHUTDOWN_TIMEOUT_S = 15.0
CANCEL_TIMEOUT_S = 5.0
MAX_FAILURES = 5
# A stage that ran this long before failing counts as healthy again.
HEALTHY_AFTER_S = 60.0
# What `run` starts of the roles (services/roles.py): the receiver only when TLA_OTLP_PORT is set, the Kafka source
# only when TLA_KAFKA_BROKERS is (build_stages checks both).


@dataclass(slots=True)
class Runtime:
    """What the stages of one process share."""

    settings: Settings
    redis: Redis
    redis_url: str
    metrics: Metrics
    health: Health
    stop: asyncio.Event


def consumer_name(settings: Settings, role: str) -> str:
    base = settings.ingest.consumer or f"{socket.gethostname()}-{os.getpid()}"
    return f"{base}-{role}"


@asynccontextmanager
async def runtime(settings: Settings, embedded_ok: bool) -> AsyncIterator[Runtime]:
    """Redis (configured or embedded), metrics and health, torn down in reverse order."""
    async with AsyncExitStack() as stack:
        url = settings.redis.url
        if url is None:
            if not embedded_ok:
                raise ConfigError(
                    "set TLA_REDIS_URL (e.g. redis://127.0.0.1:6379/0): only `run` and `demo` "
                    "start an embedded server"
                )
            url = await stack.enter_async_context(embedded_redis(Path(settings.state_dir)))
        stop = asyncio.Event()
        mode = settings.redis.mode if settings.redis.url else "standalone"  # embedded: one node
        redis = await open_redis(url, mode, stop)
        stack.push_async_callback(redis.aclose)
        log.info("event=redis url=%s", redact(url))
        yield Runtime(settings, redis, url, Metrics(), Health(), stop)


def build_stages(rt: Runtime, roles: list[str]) -> dict[str, Stage]:
    s = rt.settings
    stages: dict[str, Stage] = {}
    if "tempo-source" in roles and s.tempo.url:
        from pipeline.tempo_source.stage import TempoSource

        stages["tempo-source"] = TempoSource.from_settings(s, rt.redis, rt.metrics).run
    if "ingest" in roles:
        stages["ingest"] = make_ingestor(s, rt.redis, rt.metrics, consumer_name(s, "ingest")).run
    if "recompute" in roles:
        stages["recompute"] = make_recomputer(
            s, rt.redis, rt.metrics, consumer_name(s, "recompute")).run
    if "detect" in roles:
        stages["detect"] = make_detector(s, rt.redis, rt.metrics, consumer_name(s, "detect")).run
    if "api" in roles:
        if s.metrics.port == s.api.port:
            raise ConfigError(
                f"TLA_METRICS_PORT and TLA_API_PORT are both {s.api.port}: the api process "
                "serves /metrics on its own port too; set TLA_METRICS_PORT=0 or another port"
            )
        stages["api"] = lambda stop: serve_api(rt, stop)
    if "otlp" in roles and (s.otlp.port is not None or roles == ["otlp"]):
        from services.otlp import OtlpReceiver

        taken = {s.metrics.port} | ({s.api.port} if "api" in roles else set())
        if s.otlp.listen_port in taken:
            raise ConfigError(f"TLA_OTLP_PORT ({s.otlp.listen_port}) is taken by the API or "
                              "the metrics listener: choose another port")
        stages["otlp"] = OtlpReceiver(s, rt.redis, rt.metrics, rt.health).run
    if "kafka-source" in roles and s.kafka.brokers:
        from pipeline.kafka_source import KafkaSource

        stages["kafka-source"] = KafkaSource(
            s.kafka, s.otlp.spans, rt.redis, s.keys(), rt.metrics,
            Path(s.state_dir) / "kafka").run
    if "api" in roles or s.metrics.port:
        from services.observer import MetricsStage

        observe = "api" in roles  # stream gauges come from the api process only
        stages["metrics"] = MetricsStage(s, rt.redis, rt.metrics, rt.health, observe).run
    return stages


def make_ingestor(s: Settings, redis: Redis, metrics: Metrics, consumer: str) -> Ingestor:
    # Baselines for flagging ingested traces: re-read at most once per window.
    store = BaselineStore(redis, s.keys(), cache_ttl_s=s.recompute.interval_s)
    return Ingestor(redis, s.keys(), s.ingest, s.rule_params(), load_zone(s.timezone), store,
                    metrics, consumer, window_s=s.recompute.interval_s, calendar=s.calendar())


def make_recomputer(s: Settings, redis: Redis, metrics: Metrics, consumer: str) -> Recomputer:
    return Recomputer(redis, s.keys(), s.recompute, metrics, consumer,
                      bucket_ttl_s=s.ingest.bucket_ttl_s)


def make_detector(s: Settings, redis: Redis, metrics: Metrics, consumer: str) -> Detector:
    # Each interval's baseline is read when its first trace arrives: at most one window old.
    store = BaselineStore(redis, s.keys(), cache_ttl_s=s.recompute.interval_s)
    lateness_s = s.incidents_lateness_s()
    # Intervals are judged against the bucket ingest files their traces under (holidays too).
    zone = load_zone(s.timezone)
    return Detector(redis, s.keys(), s.incidents, s.incidents.params(s.rule_params().min_samples),
                    zone, store, metrics, consumer, lateness_s=lateness_s,
                    idle_flush_s=s.incidents.idle_flush(lateness_s),
                    buckets=ZoneBuckets(zone, s.calendar()))


async def serve_api(rt: Runtime, stop: asyncio.Event) -> None:
    api = Api(rt.settings, rt.redis, rt.metrics, health=rt.health)
    host, port = rt.settings.api.host, rt.settings.api.port
    # The baseline-version watch runs from before the first request.
    async with api.running(), serving(api.router, host, port, "API", "set TLA_API_PORT"):
        log.info("event=api_listening url=http://%s:%d", host, port)
        await stop.wait()


async def supervise(name: str, stage: Stage, rt: Runtime) -> None:
    backoff = Backoff(base_s=0.5, cap_s=30.0)
    failures = 0
    while not rt.stop.is_set():
        rt.health.set(name, "running")
        started = time.monotonic()
        try:
            await stage(rt.stop)
            break
        except ConfigError:
            rt.health.set(name, "failed")
            raise
        except Exception:
            log.exception("event=stage_crashed stage=%s", name)
            failures = 1 if time.monotonic() - started > HEALTHY_AFTER_S else failures + 1
            rt.metrics.stage_restarts.labels(name).inc()
            if failures >= MAX_FAILURES:
                rt.health.set(name, "failed")
                raise
            rt.health.set(name, "restarting")
            await backoff.wait(rt.stop)
    rt.health.set(name, "stopped")


def install_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _on_signal, stop, sig)


def _on_signal(stop: asyncio.Event, sig: signal.Signals) -> None:
    if stop.is_set():
        log.warning("event=second_signal signal=%s action=exit_now", sig.name)
        os._exit(130)
    log.info("event=shutdown signal=%s action=drain", sig.name)
    stop.set()


async def run_stages(rt: Runtime, stages: dict[str, Stage], extra: tuple[Stage, ...] = ()) -> None:
    """Run until `stop` or a fatal stage error; drain within SHUTDOWN_TIMEOUT_S."""
    tasks = [asyncio.create_task(supervise(n, s, rt), name=n) for n, s in stages.items()]
    # Signal handlers are in place by now: a SIGTERM from here on drains.
    log.info("event=running stages=%s", ",".join(stages))
    tasks += [asyncio.create_task(fn(rt.stop), name="extra") for fn in extra]
    stopper = asyncio.create_task(rt.stop.wait())
    await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
    rt.stop.set()
    done, pending = await asyncio.wait(tasks, timeout=SHUTDOWN_TIMEOUT_S)
    for task in pending:
        log.warning("event=shutdown_timeout stage=%s action=cancel", task.get_name())
        task.cancel()
    if pending:
        # Bounded too: a task that swallows its cancellation must not hold the exit.
        _, stuck = await asyncio.wait(pending, timeout=CANCEL_TIMEOUT_S)
        for task in stuck:
            log.error("event=shutdown_stuck stage=%s action=exit_anyway", task.get_name())
    stopper.cancel()
    errors = [t.exception() for t in done if not t.cancelled() and t.exception()]
    if errors:
        raise errors[0]  # type: ignore[misc]
