"""The metrics exposition: `promtool check metrics` passes, names carry units and the prefix."""

from __future__ import annotations

import asyncio
import subprocess

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from pipeline.ingest.metrics import IngestMetrics
from pipeline.keys import Keys
from pipeline.metrics import Metrics
from services.api import CheckMetrics
from services.config import Settings
from services.health import Health
from services.observer import Observer
from services.runner import Runtime, build_stages
from tests.ops.exposition import PARTS, full_exposition, sample_names

# What a series name may end with: its unit (or _total for counters, which
# prometheus_client strips from the family name), per STYLE.md.
UNIT_SUFFIXES = ("_seconds", "_bytes", "_entries", "_events", "_consumers", "_ratio", "_info")
# 0/1 state gauges, named like Prometheus' own `up`; and counts of things whose name the
# product promises to operators (DESIGN §9: `tla_incidents_open`, the incidents open now).
STATE_GAUGES = {"tla_tempo_leader", "tla_incidents_open"}


def promtool_check(promtool: str, text: str) -> str:
    """promtool's complaints about an exposition ('' when clean)."""
    done = subprocess.run([promtool, "check", "metrics"], input=text.encode(),
                          capture_output=True, timeout=30)
    return (done.stdout + done.stderr).decode() if done.returncode else ""


async def populated_exposition(redis: Redis, keys: Keys) -> str:
    """Every family, with children: the observer on real streams plus each labelled metric."""
    await redis.xgroup_create(keys.traces, "ingest", id="0", mkstream=True)
    await redis.xadd(keys.traces, {"trace_id": "ab"})
    await redis.xadd(keys.anomalies, {"service": "checkout"})
    metrics = Metrics()
    observer = Observer(redis, keys, metrics)
    await observer.observe()
    await redis.xadd(keys.anomalies, {"service": "checkout"})
    await observer.observe()
    metrics.part(IngestMetrics).events.labels("new").inc(3)
    checks = metrics.part(CheckMetrics)
    checks.check_requests.labels("anomaly").inc()
    checks.check_seconds.observe(0.0004)
    metrics.redis_errors.labels("ingest").inc()
    return generate_latest(metrics.registry).decode()


@pytest.mark.redis
async def test_promtool_accepts_a_populated_exposition(
    promtool: str, redis: Redis, keys: Keys
) -> None:
    text = await populated_exposition(redis, keys)
    assert 'tla_stream_group_lag_entries{group="ingest",stream="traces"} 1.0' in text
    assert 'tla_anomalies_observed_total{service="checkout"} 1.0' in text
    assert promtool_check(promtool, text) == ""


def test_promtool_accepts_every_declared_family(promtool: str) -> None:
    assert promtool_check(promtool, full_exposition()) == ""


def test_promtool_would_catch_a_bad_name(promtool: str) -> None:
    """The check is real: a counter without _total is reported."""
    bad = "# HELP tla_bad_count x\n# TYPE tla_bad_count counter\ntla_bad_count 1\n"
    assert "_total" in promtool_check(promtool, bad)


def test_names_have_prefix_and_unit() -> None:
    wrong = []
    for family in text_string_to_metric_families(full_exposition()):
        name, kind = family.name, family.type
        if not name.startswith("tla_"):
            wrong.append(f"{name}: no tla_ prefix")
        elif kind == "counter" or name in STATE_GAUGES or name.endswith("_created"):
            continue  # the exposition adds _total; _created is the client's timestamp
        elif not name.endswith(UNIT_SUFFIXES):
            wrong.append(f"{name} ({kind}): does not end in a unit {UNIT_SUFFIXES}")
    assert wrong == []


def test_no_endpoint_or_trace_labels() -> None:
    """Bounded cardinality: nothing labelled by endpoint, trace, bucket or consumer."""
    unbounded = {"endpoint", "trace_id", "bucket", "consumer", "path", "url"}
    metrics = Metrics()
    for part in PARTS:
        metrics.part(part)
    for collector in list(metrics.registry._collector_to_names):  # noqa: SLF001
        labels = set(getattr(collector, "_labelnames", ()))
        assert not labels & unbounded, (collector, labels)


@pytest.mark.parametrize(("role", "own", "others"), [
    ("ingest", "tla_ingest_events_total", ("tla_recompute_", "tla_stream_length")),
    ("recompute", "tla_recompute_buckets_total", ("tla_ingest_", "tla_stream_length")),
    ("detect", "tla_incidents_open", ("tla_ingest_", "tla_recompute_", "tla_stream_length")),
])
def test_a_role_exports_its_own_families_only(role: str, own: str, others: tuple[str, ...]
                                              ) -> None:
    settings = Settings.load(env={})
    rt = Runtime(settings, Redis(), "redis://unused", Metrics(), Health(), asyncio.Event())
    assert list(build_stages(rt, [role])) == [role]
    names = sample_names(generate_latest(rt.metrics.registry).decode())
    assert own in names
    assert not [n for n in names if n.startswith(others)]
