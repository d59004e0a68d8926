"""The Kafka source on faust-streaming: batches of OTLP messages become `<p>traces`
entries, acked only once XADDed; on a real Kafka-protocol broker (Tansu), a worker
killed mid-stream and restarted leaves every trace counted exactly once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from pipeline.buckets import BucketRef, bucket_of, load_zone
from pipeline.events import parse_entry
from pipeline.kafka_source import KafkaSettings, KafkaSource, stage
from pipeline.kafka_source.app import build_app, credentials
from pipeline.kafka_source.metrics import KafkaMetrics
from pipeline.keys import Keys
from pipeline.metrics import Metrics
from pipeline.otlp.metrics import SpanMetrics
from pipeline import samples
from services.config import Settings
from services.runner import make_ingestor
from tests.conftest import REDIS_URL
from tests.pipeline.otlp.spans import as_json, export, span
from tests.support import eventually, free_port

ROOT = Path(__file__).parents[3]
# Short group timeouts: faust's defaults wait ~30 s to join and to notice a dead worker.
FAST_GROUP = {"session_timeout_s": 4.0, "rebalance_timeout_s": 4.0,
              "heartbeat_interval_s": 1.0}
FAST_GROUP_ENV = {"TLA_KAFKA_SESSION_TIMEOUT_S": "4", "TLA_KAFKA_REBALANCE_TIMEOUT_S": "4",
                  "TLA_KAFKA_HEARTBEAT_INTERVAL_S": "1"}
START_NS = 1_764_396_000_000_000_000


def message(first_trace: int, traces: int, endpoint: str = "GET /cart") -> bytes:
    """One OTLP export of `traces` root spans (trace IDs first_trace..), as the Collector's
    kafka exporter writes it (otlp_proto)."""
    spans = [span(t, 1, endpoint, 1_000_000 * (10 + t % 7), start_ns=START_NS)
             for t in range(first_trace, first_trace + traces)]
    return export(("shop", spans)).SerializeToString()


async def trace_ids(redis: Redis, keys: Keys) -> list[str]:
    return [parse_entry(f).trace_id for _id, f in await redis.xrange(keys.traces)]


def source(redis: Redis, keys: Keys, tmp_path: Path, **kafka: object) -> KafkaSource:
    settings = KafkaSettings(**{"brokers": "127.0.0.1:1", **kafka})  # type: ignore[arg-type]
    return KafkaSource(settings, "root", redis, keys, Metrics(), tmp_path)


# --- pure units: the agent's batches, through faust's test context -------------------------

async def test_the_agent_acks_a_batch_only_after_handle_took_it(tmp_path: Path) -> None:
    batches: list[list[bytes]] = []
    answers = [False, True]  # the first batch is "not published" (stopping)

    async def handle(values: Sequence[bytes]) -> bool:
        batches.append(list(values))
        return answers.pop(0) if answers else True

    metrics = KafkaMetrics(CollectorRegistry())
    app = build_app(KafkaSettings(brokers="127.0.0.1:1", batch_wait_s=0.05), tmp_path, handle,
                    metrics)
    async with app.agents["tla-kafka-source"].test_context() as agent:
        await agent.put(b"one")
        await eventually("the first batch", lambda: batches, 10)
        assert metrics.acked._value.get() == 0
    async with app.agents["tla-kafka-source"].test_context() as agent:
        await agent.put(b"two")
        await agent.put(b"three")
        await eventually("the second batch", lambda: metrics.acked._value.get() == 2, 10)
    assert batches == [[b"one"], [b"two", b"three"]]
    # The test context builds faust's consumer, whose thread has an event loop of its own
    # that only a started-then-stopped consumer closes: close it, or it leaks.
    app.consumer._thread.thread_loop.close()


async def test_a_start_that_fails_still_stops_the_app(
        redis: Redis, keys: Keys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    class FailingApp:
        async def start(self) -> None:
            calls.append("start")
            raise ConnectionError("the broker refused")

        async def stop(self) -> None:
            calls.append("stop")

    monkeypatch.setattr(stage, "build_app", lambda *_args: FailingApp())
    with pytest.raises(ConnectionError, match="the broker refused"):
        await source(redis, keys, tmp_path).run(asyncio.Event())
    assert calls == ["start", "stop"]


def test_credentials_follow_the_security_protocol() -> None:
    assert credentials(KafkaSettings()) is None
    sasl = credentials(KafkaSettings(security_protocol="SASL_PLAINTEXT", sasl_user="u",
                                     sasl_password="p", sasl_mechanism="SCRAM-SHA-512"))
    assert (sasl.username, sasl.mechanism.value, sasl.ssl_context) == (  # type: ignore[union-attr]
        "u", "SCRAM-SHA-512", None)
    tls = credentials(KafkaSettings(security_protocol="SASL_SSL", sasl_user="u",
                                    sasl_password="p"))
    assert tls.ssl_context is not None  # type: ignore[union-attr]


# --- handle: decode, map, XADD on the real Redis ------------------------------------------

async def test_handle_publishes_proto_and_json_and_skips_undecodable(
        redis: Redis, keys: Keys, tmp_path: Path) -> None:
    proto = source(redis, keys, tmp_path)
    assert await proto.handle([message(1, 3), b"\xff\xfe not otlp", message(4, 1)])
    json = source(redis, keys, tmp_path, encoding="otlp_json")
    assert await json.handle([orjson.dumps(as_json(export(("shop", [span(9, 1, "GET /j", 5)]))))])
    assert await trace_ids(redis, keys) == [f"{t:032x}" for t in (1, 2, 3, 4, 9)]
    kafka = proto.kafka_metrics
    assert kafka.messages.labels("published")._value.get() == 2
    assert kafka.messages.labels("undecodable")._value.get() == 1
    assert proto.metrics.part(SpanMetrics).published.labels("kafka")._value.get() == 4
    entry = (await redis.xrange(keys.traces, count=1))[0][1]
    assert entry[b"source"] == b"kafka"


async def test_handle_retries_while_redis_is_down_and_gives_up_on_stop(
        keys: Keys, tmp_path: Path) -> None:
    nowhere = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=1)
    stage = source(nowhere, keys, tmp_path)
    stage.stop = asyncio.Event()
    pending = asyncio.create_task(stage.handle([message(1, 2)]))
    await eventually("two retries", lambda: stage.kafka_metrics.publish_retries._value.get() >= 2,
                     10)
    assert not pending.done()
    stage.stop.set()
    assert await pending is False  # not published: the batch must not be acked
    await nowhere.aclose()


# --- on a real broker ------------------------------------------------------------------------

@pytest.fixture
def topic() -> str:
    return f"otlp_spans_{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def producer(broker: str, topic: str) -> AsyncIterator[AIOKafkaProducer]:
    admin = AIOKafkaAdminClient(bootstrap_servers=broker)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
    finally:
        await admin.close()
    kafka = AIOKafkaProducer(bootstrap_servers=broker)
    await kafka.start()
    yield kafka
    await kafka.stop()


async def produce(kafka: AIOKafkaProducer, topic: str, first: int, messages: int,
                  traces_each: int) -> None:
    for i in range(messages):
        t = first + i * traces_each
        await kafka.send_and_wait(topic, message(t, traces_each), key=str(t).encode())


@pytest.mark.slow
async def test_a_worker_consumes_the_topic(broker: str, topic: str, producer: AIOKafkaProducer,
                                           redis: Redis, keys: Keys, tmp_path: Path) -> None:
    await produce(producer, topic, 1, 10, 5)
    stage = source(redis, keys, tmp_path, brokers=broker, topic=topic,
                   group=f"g-{topic}", batch_wait_s=0.2, **FAST_GROUP)
    stop = asyncio.Event()
    task = asyncio.create_task(stage.run(stop))
    try:
        await eventually("50 traces", lambda: _count(redis, keys, 50), 60)
        await produce(producer, topic, 51, 2, 5)  # live traffic too
        await eventually("60 traces", lambda: _count(redis, keys, 60), 60)
    finally:
        stop.set()
        await task
    assert sorted(await trace_ids(redis, keys)) == [f"{t:032x}" for t in range(1, 61)]
    assert stage.kafka_metrics.acked._value.get() == 12


async def _count(redis: Redis, keys: Keys, n: int) -> bool:
    return len(set(await trace_ids(redis, keys))) >= n


def worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "services.cli", "kafka-source"],
                                env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)


@pytest.mark.slow
async def test_a_worker_killed_mid_stream_and_restarted_counts_every_trace_once(
        broker: str, topic: str, producer: AIOKafkaProducer, redis: Redis, keys: Keys,
        prefix: str, tmp_path: Path) -> None:
    """SIGKILL while batches are in flight (faust commits every few seconds, so the new
    worker is handed messages already XADDed): the stream may hold a trace twice, the
    ingest stage counts it once."""
    traces = 400
    env = {**os.environ, **FAST_GROUP_ENV, "TLA_REDIS_URL": REDIS_URL, "TLA_KEY_PREFIX": prefix,
           "TLA_KAFKA_BROKERS": broker, "TLA_KAFKA_TOPIC": topic, "TLA_KAFKA_GROUP": f"g-{topic}",
           "TLA_KAFKA_BATCH_SIZE": "5", "TLA_STATE_DIR": str(tmp_path / "state"),
           "TLA_CONFIG": ""}
    log = tmp_path / "worker.log"
    await produce(producer, topic, 1, 40, 5)  # the first half
    first = worker(env, log)
    try:
        await eventually("the first entries", lambda: redis.xlen(keys.traces), 60, 0.01)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    before = len(await trace_ids(redis, keys))
    await produce(producer, topic, 201, 40, 5)  # the second half, while no worker runs
    second = worker(env, log)
    try:
        await eventually("every trace in the stream",
                         lambda: _count(redis, keys, traces), 90)
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(30)
    ids = await trace_ids(redis, keys)
    assert set(ids) == {f"{t:032x}" for t in range(1, traces + 1)}, log.read_text()[-3000:]
    assert 0 < before < traces and len(ids) >= traces  # redelivered entries included
    await _ingest_everything(redis, keys, prefix)
    ref = BucketRef("shop", "GET /cart", bucket_of(START_NS, load_zone("Asia/Taipei")))
    assert (await samples.read(redis, keys, ref.id)).size == traces


async def _ingest_everything(redis: Redis, keys: Keys, prefix: str) -> None:
    settings = Settings.load(env={"TLA_KEY_PREFIX": prefix, "TLA_REDIS_URL": REDIS_URL})
    ingest = make_ingestor(settings, redis, Metrics(), "test-ingest")
    stop = asyncio.Event()
    task = asyncio.create_task(ingest.run(stop))

    async def drained() -> bool:
        groups = await redis.xinfo_groups(keys.traces)
        return bool(groups) and groups[0]["lag"] == 0 and groups[0]["pending"] == 0

    try:
        await eventually("ingest to drain the stream", drained, 60)
    finally:
        stop.set()
        await task


def acked(port: int) -> float:
    """tla_kafka_acked_messages_total of the worker whose metrics listener is on `port`."""
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except httpx.HTTPError:
        return -1.0
    for line in text.splitlines():
        if line.startswith("tla_kafka_acked_messages_total "):
            return float(line.split()[1])
    return 0.0


def owns_one_partition(log: Path) -> bool:
    """The worker's latest assignment (aiokafka's log line) is one partition."""
    lines = [line for line in log.read_text().splitlines()
             if "Setting newly assigned partitions" in line] if log.exists() else []
    return bool(lines) and lines[-1].count("TopicPartition(") == 1


@pytest.mark.slow
async def test_two_workers_of_one_group_share_the_partitions(
        broker: str, topic: str, producer: AIOKafkaProducer, redis: Redis, keys: Keys,
        prefix: str, tmp_path: Path) -> None:
    """Scaling is adding workers: with two in the group, each consumes one of the topic's two
    partitions, and together they publish every trace once."""
    ports = [free_port(), free_port()]
    base = {**os.environ, **FAST_GROUP_ENV, "TLA_REDIS_URL": REDIS_URL, "TLA_KEY_PREFIX": prefix,
            "TLA_KAFKA_BROKERS": broker, "TLA_KAFKA_TOPIC": topic,
            "TLA_KAFKA_GROUP": f"g-{topic}", "TLA_STATE_DIR": str(tmp_path / "state"),
            "TLA_CONFIG": ""}
    logs = [tmp_path / f"worker-{i}.log" for i in range(2)]
    workers = [worker({**base, "TLA_METRICS_PORT": str(p)}, log) for p, log in zip(ports, logs)]
    try:
        await eventually("one partition each", lambda: all(map(owns_one_partition, logs)), 60)
        await produce(producer, topic, 1, 60, 2)  # keys spread the messages over both partitions
        await eventually("120 traces", lambda: _count(redis, keys, 120), 90)
        await eventually("all 60 messages acked",
                         lambda: sum(acked(p) for p in ports) == 60, 30)
        shares = [acked(p) for p in ports]
    finally:
        for w in workers:
            w.send_signal(signal.SIGTERM)
        for w in workers:
            w.wait(30)
    assert all(share > 0 for share in shares), (shares, logs[0].read_text()[-3000:])
    assert sorted(set(await trace_ids(redis, keys))) == [f"{t:032x}" for t in range(1, 121)]
