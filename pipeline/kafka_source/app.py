"""The faust-streaming app of the Kafka source, built from settings (never at import).

The agent iterates the topic in batches (`noack_take`: faust leaves acking to us) and
acks a batch only after `handle` returned True, i.e. after its events were XADDed. faust
commits offsets up to the acked messages only, so a worker killed before that leaves the
batch to the next owner of the partition: at least once, and ingest's dedup counts each
trace once. The app id is the consumer group: more workers of one group share the
partitions.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import faust

from pipeline.kafka_source.metrics import KafkaMetrics
from pipeline.kafka_source.settings import KafkaSettings

# The messages of one batch in, True once they may be acked (False: stopping, keep them).
Handler = Callable[[Sequence[bytes]], Awaitable[bool]]


def broker_urls(brokers: str) -> list[str]:
    return [f"kafka://{b.strip()}" for b in brokers.split(",") if b.strip()]


def credentials(k: KafkaSettings) -> faust.SASLCredentials | faust.SSLCredentials | None:
    """What faust hands aiokafka for TLS and SASL (None: PLAINTEXT)."""
    context = None
    if k.security_protocol in ("SSL", "SASL_SSL"):
        context = ssl.create_default_context(cafile=k.ca_file)
        if k.cert_file and k.key_file:
            context.load_cert_chain(k.cert_file, k.key_file)
    if k.security_protocol.startswith("SASL"):
        return faust.SASLCredentials(username=k.sasl_user, password=k.sasl_password,
                                     ssl_context=context, mechanism=k.sasl_mechanism)
    return faust.SSLCredentials(context) if context is not None else None


def build_app(k: KafkaSettings, data_dir: Path, handle: Handler, metrics: KafkaMetrics
              ) -> faust.App:
    """A faust app consuming `k.topic` with group `k.group`, each batch through `handle`."""
    assert k.brokers is not None, "the Kafka source needs TLA_KAFKA_BROKERS"
    app = faust.App(
        k.group,
        broker=broker_urls(k.brokers),
        broker_credentials=credentials(k),
        broker_session_timeout=k.session_timeout_s,
        broker_heartbeat_interval=k.heartbeat_interval_s,
        broker_rebalance_timeout=k.rebalance_timeout_s,
        consumer_auto_offset_reset="earliest",  # a new group reads what is already there
        value_serializer="raw",
        key_serializer="raw",
        topic_disable_leader=True,  # no leader election topic: the group is enough
        web_enabled=False,  # the process's probes and /metrics serve that role
        store="memory://",  # no tables
        datadir=str(data_dir),
        autodiscover=False,
    )
    topic = app.topic(k.topic, key_type=bytes, value_type=bytes, value_serializer="raw",
                      key_serializer="raw")

    async def consume(stream: Any) -> None:
        async for events in stream.noack_take(k.batch_size, within=k.batch_wait_s):
            if not await handle([e.value for e in events]):
                return  # stopping: the batch stays unacked, its offsets uncommitted
            for event in events:
                await stream.ack(event)
            metrics.acked.inc(len(events))

    app.agent(topic, name="tla-kafka-source")(consume)
    return app
