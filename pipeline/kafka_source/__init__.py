"""The Kafka source: consume the topic an OpenTelemetry Collector's `kafka` exporter writes
and publish each trace's root span as a `<p>traces` entry.

`app` builds the faust-streaming app from settings (its stream iteration: batches of
messages, acked once published), `stage` is the processing (decode, map, XADD, retry)
and the stage's lifecycle; `settings` and `metrics` are the stage's. faust is Kafka-only,
which is why it lives here and not around the Redis streams.
"""

from __future__ import annotations

from pipeline.kafka_source.settings import KafkaSettings
from pipeline.kafka_source.stage import KafkaSource

__all__ = ["KafkaSettings", "KafkaSource"]
