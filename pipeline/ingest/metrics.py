"""The ingest stage's series (`metrics.part(IngestMetrics)`)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

BATCH_SIZE_BUCKETS = (1, 10, 50, 100, 250, 500, 1000, 2000)


class IngestMetrics:
    def __init__(self, r: CollectorRegistry) -> None:
        self.events = Counter(
            "tla_ingest_events_total", "Trace events handled by ingest, by outcome",
            ["outcome"], registry=r,
        )
        self.batch_size = Histogram(
            "tla_ingest_batch_size_events", "Entries per ingest batch",
            buckets=BATCH_SIZE_BUCKETS, registry=r,
        )
        self.batch_seconds = Histogram(
            "tla_ingest_batch_duration_seconds", "Time to apply one ingest batch", registry=r,
        )
        self.dirty_marks = Counter(
            "tla_ingest_dirty_marks_total", "Buckets marked dirty (once per window)", registry=r,
        )
        self.anomalies = Counter(
            "tla_ingest_anomalies_total", "Ingested traces flagged anomalous", registry=r,
        )

        self.endpoint_capped = Counter(
            "tla_ingest_endpoint_cap_rejected_total",
            "Trace events dead-lettered because their service reached its endpoint cap",
            registry=r,
        )
        self.service_capped = Counter(
            "tla_ingest_service_cap_rejected_total",
            "Trace events dead-lettered because the deployment reached its service cap",
            registry=r,
        )
