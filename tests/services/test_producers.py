"""The producers as users run them: their settings, which stages each role and `run` start,
and end to end, an OTel SDK exporter and a faust worker on a real broker feeding `run`
until its API returns baselines and verdicts."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis as redis_sync
from aiokafka import AIOKafkaProducer
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from redis.asyncio import Redis

from pipeline.errors import ConfigError
from pipeline.metrics import Metrics
from services.config import Settings
from services.health import Health
from services.roles import ROLES
from services.runner import Runtime, build_stages
from tests.conftest import REDIS_URL
from tests.kafka_broker import tansu
from tests.pipeline.otlp.spans import export, span
from tests.support import free_port, wait_until

ROOT = Path(__file__).parents[2]


@pytest.mark.parametrize(("env", "needle"), [
    ({"TLA_OTLP_SPANS": "all"}, "TLA_OTLP_SPANS must be 'root' or 'server'"),
    ({"TLA_OTLP_PORT": "0"}, "TLA_OTLP_PORT must be >= 1"),
    ({"TLA_KAFKA_ENCODING": "json"}, "TLA_KAFKA_ENCODING must be 'otlp_proto' or 'otlp_json'"),
    ({"TLA_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "needs TLA_KAFKA_SASL_USER"),
    ({"TLA_KAFKA_CERT_FILE": "/c.pem"}, "TLA_KAFKA_KEY_FILE"),
    ({"TLA_KAFKA_HEARTBEAT_INTERVAL_S": "60", "TLA_KAFKA_SESSION_TIMEOUT_S": "10"},
     "must be below TLA_KAFKA_SESSION_TIMEOUT_S"),
])
def test_bad_producer_settings_say_what_to_fix(env: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        Settings.load(env=env)


def stages_of(roles: list[str], **env: str) -> set[str]:
    settings = Settings.load(env=env)
    unused = Redis.from_url("redis://127.0.0.1:1/0")
    rt = Runtime(settings, unused, "redis://127.0.0.1:1/0", Metrics(), Health(), asyncio.Event())
    return set(build_stages(rt, roles))


def test_run_starts_the_receiver_when_the_port_is_set_and_kafka_when_brokers_are() -> None:
    assert stages_of(list(ROLES)) == {"ingest", "recompute", "detect", "api", "metrics"}
    assert "otlp" in stages_of(list(ROLES), TLA_OTLP_PORT="4318")
    assert "kafka-source" in stages_of(list(ROLES), TLA_KAFKA_BROKERS="k:9092")
    assert stages_of(["otlp"]) == {"otlp"}  # the role listens on 4318 by default
    assert stages_of(["kafka-source"]) == set()  # the CLI refuses it without brokers
    with pytest.raises(ConfigError, match="TLA_OTLP_PORT"):
        stages_of(list(ROLES), TLA_OTLP_PORT="8080")


def test_the_kafka_source_role_needs_brokers() -> None:
    done = subprocess.run([sys.executable, "-m", "services.cli", "kafka-source"],
                          env={**os.environ, "TLA_CONFIG": "", "TLA_REDIS_URL": REDIS_URL},
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "TLA_KAFKA_BROKERS" in done.stderr


@pytest.fixture
def broker() -> Iterator[str]:
    with tansu(free_port()) as address:
        yield address


def sdk_export(url: str, service: str, endpoint: str, durations_ms: list[int],
               start_ns: int) -> SpanExportResult:
    """One root span per duration, timed as given, sent by the SDK's OTLP/HTTP exporter."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("tests")
    for ms in durations_ms:
        one = tracer.start_span(endpoint, kind=SpanKind.SERVER, start_time=start_ns)
        one.end(end_time=start_ns + ms * 1_000_000)
    provider.shutdown()
    exporter = OTLPSpanExporter(endpoint=url, timeout=10)
    try:
        return exporter.export(memory.get_finished_spans())
    finally:
        exporter.shutdown()


async def send_kafka(broker: str, topic: str, endpoint: str, durations_ms: list[int],
                     start_ns: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=broker)
    await producer.start()
    try:
        for i, ms in enumerate(durations_ms):
            body = export(("shop", [span(0xABC000 + i, 1, endpoint, ms * 1_000_000,
                                         start_ns=start_ns)])).SerializeToString()
            await producer.send_and_wait(topic, body)
    finally:
        await producer.stop()


def verdict(api: str, endpoint: str, duration_ms: float, start_ns: int) -> dict[str, object]:
    body = {"rootServiceName": "shop", "rootTraceName": endpoint,
            "startTimeUnixNano": str(start_ns), "durationMs": duration_ms}
    reply: dict[str, object] = httpx.post(api + "/v1/anomaly/check", json=body, timeout=5).json()
    return reply


@pytest.mark.slow
@pytest.mark.redis
def test_sdk_exporter_and_kafka_worker_feed_run_to_baselines_and_verdicts(
        broker: str, prefix: str, tmp_path: Path) -> None:
    api_port, otlp_port = free_port(), free_port()
    env = {**os.environ, "TLA_CONFIG": "", "TLA_REDIS_URL": REDIS_URL, "TLA_KEY_PREFIX": prefix,
           "TLA_API_PORT": str(api_port), "TLA_OTLP_PORT": str(otlp_port),
           "TLA_KAFKA_BROKERS": broker, "TLA_KAFKA_SESSION_TIMEOUT_S": "4",
           "TLA_KAFKA_REBALANCE_TIMEOUT_S": "4", "TLA_KAFKA_HEARTBEAT_INTERVAL_S": "1",
           "TLA_RECOMPUTE_INTERVAL_S": "2", "TLA_API_CACHE_TTL_S": "1",
           "TLA_STATE_DIR": str(tmp_path / "state")}
    api = f"http://127.0.0.1:{api_port}"
    proc = subprocess.Popen([sys.executable, "-m", "services.cli", "run"], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until("the receiver", lambda: _up(f"http://127.0.0.1:{otlp_port}/healthz"), 30)
        now = time.time_ns()
        durations = [100 + i % 7 for i in range(60)]
        result = sdk_export(f"http://127.0.0.1:{otlp_port}/v1/traces", "shop", "GET /otel",
                            durations, now)
        assert result == SpanExportResult.SUCCESS
        asyncio.run(send_kafka(broker, "otlp_spans", "GET /kafka", durations, now))
        for endpoint in ("GET /otel", "GET /kafka"):
            wait_until(f"a baseline of {endpoint} that flags 900 ms",
                       lambda e=endpoint: verdict(api, e, 900, now).get("isAnomaly"), 60)
            reply = verdict(api, endpoint, 103, now)
            assert reply["isAnomaly"] is False
            assert reply["baseline"]["count"] == 60  # type: ignore[index]
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=60)
        client = redis_sync.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(match=f"{prefix}*"):
            client.delete(key)
        client.close()
    assert proc.returncode == 0, out[-3000:]


def _up(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
