"""The check path's plain-number metrics expose exactly what prometheus_client's own would."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from pipeline.metrics import Metrics, PlainHistogram, StatusCounter
from services.api import CHECK_BUCKETS_S, CheckMetrics

STATUSES = ("anomaly", "normal", "no_baseline")
# Around and on every bound, and past the last one.
durations_s = st.one_of(st.sampled_from(CHECK_BUCKETS_S), st.floats(0, 2.0, allow_nan=False))


def without_created_values(text: str) -> str:
    """The exposition with `_created` timestamps blanked (they are creation times)."""
    return re.sub(r"(_created(?:\{[^}]*\})?) \S+", r"\1 T", text)


def pair() -> tuple[CollectorRegistry, CollectorRegistry, tuple[Counter, Histogram],
                    tuple[StatusCounter, PlainHistogram]]:
    ref, ours = CollectorRegistry(), CollectorRegistry()
    name, doc = "tla_check_requests_total", "Anomaly checks answered, by verdict status"
    hname, hdoc = "tla_check_duration_seconds", "Server time of one anomaly check"
    return ref, ours, (
        Counter(name, doc, ["status"], registry=ref),
        Histogram(hname, hdoc, buckets=CHECK_BUCKETS_S, registry=ref),
    ), (
        StatusCounter(name, doc, "status", registry=ours),
        PlainHistogram(hname, hdoc, buckets=CHECK_BUCKETS_S, registry=ours),
    )


@given(st.lists(st.tuples(st.sampled_from(STATUSES), durations_s), max_size=50))
def test_same_exposition_as_prometheus_client(checks: list[tuple[str, float]]) -> None:
    ref, ours, (counter, histogram), (plain_counter, plain_histogram) = pair()
    for status, seconds in checks:
        counter.labels(status).inc()
        histogram.observe(seconds)
        plain_counter.labels(status)  # what the hot path does once, then counts directly
        plain_counter.counts[status] += 1
        plain_histogram.observe(seconds)
    want = generate_latest(ref).decode()
    assert without_created_values(generate_latest(ours).decode()) == without_created_values(want)


def test_children_labels_inc_and_created() -> None:
    _, ours, _, (counter, _) = pair()
    assert generate_latest(ours).decode().count("tla_check_requests_total{") == 0
    counter.labels("normal").inc(2)
    assert ours.get_sample_value("tla_check_requests_total", {"status": "normal"}) == 2
    created = ours.get_sample_value("tla_check_requests_created", {"status": "normal"})
    assert created is not None and created > 1e9
    with pytest.raises(ValueError, match="non-negative"):
        counter.labels("normal").inc(-1)


def test_names_are_registered_so_a_clash_is_refused() -> None:
    metrics = Metrics()
    metrics.part(CheckMetrics)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        Counter("tla_check_requests_total", "again", registry=metrics.registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        Histogram("tla_check_duration_seconds", "again", registry=metrics.registry)


def test_unsorted_buckets_are_refused() -> None:
    with pytest.raises(ValueError, match="sorted"):
        PlainHistogram("h_seconds", "h", buckets=(1.0, 0.5), registry=CollectorRegistry())
