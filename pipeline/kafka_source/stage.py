"""The Kafka source stage: a batch of OTLP messages → trace events → one XADD, retried
until Redis takes it; and the faust app's lifecycle inside the process's supervisor."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path

from redis.asyncio import Redis

from pipeline.errors import InvalidEvent, StoreUnavailable
from pipeline.kafka_source.app import build_app
from pipeline.kafka_source.metrics import KafkaMetrics
from pipeline.kafka_source.settings import KafkaSettings
from pipeline.keys import Keys
from pipeline.metrics import Metrics
from pipeline.otlp.decode import Decoded, decode_json, decode_proto
from pipeline.otlp.mapping import map_spans
from pipeline.otlp.metrics import SpanMetrics
from pipeline.otlp.publish import publish
from pipeline.retry import Backoff, sleep_or_stop

log = logging.getLogger(__name__)

SOURCE = "kafka"  # the `source` field of the entries this stage publishes
# How often the stage looks whether faust crashed (then the supervisor restarts it).
CRASH_CHECK_S = 1.0


class KafkaSource:
    def __init__(self, settings: KafkaSettings, spans_mode: str, redis: Redis, keys: Keys,
                 metrics: Metrics, data_dir: Path) -> None:
        self.settings = settings
        self.spans_mode = spans_mode
        self.redis = redis
        self.keys = keys
        self.metrics = metrics
        self.kafka_metrics = metrics.part(KafkaMetrics)
        self.span_metrics = metrics.part(SpanMetrics)
        self.data_dir = data_dir
        self.stop = asyncio.Event()
        self._decode = decode_json if settings.encoding == "otlp_json" else decode_proto

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop`; a crashed faust app raises, for the supervisor to restart."""
        self.stop = stop
        self.data_dir.mkdir(parents=True, exist_ok=True)  # faust keeps its (unused) tables here
        app = build_app(self.settings, self.data_dir, self.handle, self.kafka_metrics)
        try:  # a start that fails half way (a broker refusing) still stops what it began
            await app.start()
            log.info("event=kafka_source_started topic=%s group=%s", self.settings.topic,
                     self.settings.group)
            while not await sleep_or_stop(stop, CRASH_CHECK_S):
                if app.crashed:
                    raise RuntimeError(f"the faust app crashed: {app.crash_reason!r}")
        finally:
            await app.stop()

    async def handle(self, messages: Sequence[bytes]) -> bool:
        """Publish the events of `messages`; True once they are in the stream, False when
        stopping before that (the batch must then not be acked)."""
        decoded, good = self._decoded(messages)
        mapped = map_spans(decoded, self.spans_mode, SOURCE)
        backoff = Backoff(base_s=0.1, cap_s=5.0)
        while True:
            try:
                await publish(self.redis, self.keys, mapped.events)
                break
            except StoreUnavailable as e:
                log.warning("event=kafka_publish_retry events=%d error=%r", len(mapped.events),
                            str(e))
                self.metrics.redis_errors.labels("kafka-source").inc()
                self.kafka_metrics.publish_retries.inc()
                if await sleep_or_stop(self.stop, backoff.next_delay_s()):
                    return False
        self.kafka_metrics.messages.labels("published").inc(good)
        self.span_metrics.count(SOURCE, decoded.received, len(mapped.events), mapped.skipped,
                                mapped.rejected)
        if mapped.rejected:
            log.info("event=kafka_spans_rejected count=%d reasons=%r", mapped.rejected_spans,
                     mapped.message())
        return True

    def _decoded(self, messages: Sequence[bytes]) -> tuple[Decoded, int]:
        """Every message's spans in one `Decoded`, and how many messages were decodable;
        undecodable ones are logged and counted."""
        out = Decoded()
        good = 0
        for value in messages:
            try:
                one = self._decode(value or b"", self.spans_mode == "root")
            except InvalidEvent as e:
                self.kafka_metrics.messages.labels("undecodable").inc()
                log.warning("event=kafka_message_undecodable bytes=%d error=%r",
                            len(value or b""), str(e))
                continue
            good += 1
            out.spans.extend(one.spans)
            out.children += one.children
            out.rejected.update(one.rejected)
        return out, good
