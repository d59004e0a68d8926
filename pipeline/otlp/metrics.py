"""The span counters both OTLP sources share (`metrics.part(SpanMetrics)`), by source."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter


class SpanMetrics:
    def __init__(self, r: CollectorRegistry) -> None:
        self.received = Counter(
            "tla_spans_received_total", "OTLP spans received, by source (otlp, kafka)",
            ["source"], registry=r,
        )
        self.published = Counter(
            "tla_spans_published_total", "Spans published as `<p>traces` entries, by source",
            ["source"], registry=r,
        )
        self.skipped = Counter(
            "tla_spans_skipped_total", "Valid spans that are not a root (or, with "
            "TLA_OTLP_SPANS=server, a service's entry) span, by source", ["source"], registry=r,
        )
        self.rejected = Counter(
            "tla_spans_rejected_total", "Spans dropped for a missing or invalid field, by "
            "source and reason (the field: trace_id, span_id, service, endpoint, start_ns, "
            "duration_ms; span: not a span object, or a bad kind or flags)",
            ["source", "reason"], registry=r,
        )

    def count(self, source: str, received: int, published: int, skipped: int,
              rejected: dict[str, int]) -> None:
        self.received.labels(source).inc(received)
        self.published.labels(source).inc(published)
        self.skipped.labels(source).inc(skipped)
        for reason, n in rejected.items():
            self.rejected.labels(source, reason).inc(n)
