"""The Kafka source's series (`metrics.part(KafkaMetrics)`); spans: pipeline.otlp's."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter


class KafkaMetrics:
    def __init__(self, r: CollectorRegistry) -> None:
        self.messages = Counter(
            "tla_kafka_messages_total", "Kafka messages consumed, by outcome (published: "
            "their events are in the stream; undecodable: not an OTLP export, logged and "
            "skipped)", ["outcome"], registry=r,
        )
        self.acked = Counter(
            "tla_kafka_acked_messages_total", "Messages acknowledged to faust after their "
            "events were XADDed: faust commits offsets up to these", registry=r,
        )
        self.publish_retries = Counter(
            "tla_kafka_publish_retries_total", "XADD batches retried because Redis was "
            "unavailable (the batch stays unacknowledged meanwhile)", registry=r,
        )
