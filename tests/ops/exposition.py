"""Helpers over Prometheus text expositions: which sample names a registry can produce."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from pipeline.incidents.metrics import IncidentMetrics
from pipeline.ingest.metrics import IngestMetrics
from pipeline.kafka_source.metrics import KafkaMetrics
from pipeline.metrics import Metrics
from pipeline.otlp.metrics import SpanMetrics
from pipeline.recompute.metrics import RecomputeMetrics
from pipeline.tempo_source.metrics import TempoMetrics
from services.api import CheckMetrics
from services.observer import ObserverMetrics
from services.otlp import OtlpMetrics

# The sample names each metric type exposes, from its family name.
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "gauge": ("",),
}


def sample_names(text: str) -> set[str]:
    """Every series name the exposition declares, even families with no child yet."""
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.update(family.name + s for s in SUFFIXES.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names


# Every stage's own series: `run` registers all of them.
PARTS = (IngestMetrics, RecomputeMetrics, TempoMetrics, ObserverMetrics, CheckMetrics,
         SpanMetrics, OtlpMetrics, KafkaMetrics, IncidentMetrics)


def full_exposition() -> str:
    """What a process running every stage exports."""
    metrics = Metrics()
    for part in PARTS:
        metrics.part(part)
    return generate_latest(metrics.registry).decode()
