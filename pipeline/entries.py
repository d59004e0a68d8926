"""The fields of the stream entries and hashes the pipeline writes itself, typed.

Their JSON Schemas are in schemas/streams.schema.json (a test checks both name the same
fields); the trace events any producer writes are `pipeline.events.TraceEntry`. Every
value is a string, as Redis stores it.
"""

from __future__ import annotations

from typing import NotRequired, TypedDict


class DirtyEntry(TypedDict):
    """`<p>dirty`: a bucket got samples in a recompute window (written by ingest.lua)."""

    bucket: str
    window: str  # floor(server unix seconds / window length)


class AnomalyEntry(TypedDict):
    """`<p>anomalies`: an ingested trace that broke its bucket's threshold. p50, p95, mad
    and count are the judging baseline's: the bucket's own, or its fallback's."""

    trace_id: str
    service: str
    endpoint: str
    bucket: str
    start_ns: str
    duration_ms: str
    threshold_ms: str
    term: str
    p50: str
    p95: str
    mad: str
    count: str
    reason: str
    level: str  # pipeline.rule.Level: "bucket" or the fallback level that judged
    baseline_id: str  # that baseline's id: a bucket id, or `{svc|ep}:all`


class IncidentEntry(TypedDict):
    """`<p>incidents` (and the `<p>incident:<id>` HASH): an incident opened, still open
    (update) or closed, by the detect stage (pipeline/incidents). Times are unix ms of
    event time (trace start times)."""

    id: str  # `{svc|ep}:<started_ms>`
    service: str
    endpoint: str
    state: str  # open | update | closed (the HASH: open | closed)
    started_ms: str
    ended_ms: NotRequired[str]  # when closed: the end of the last degraded interval
    updated_ms: str  # event time the numbers reach up to
    reason: str
    requests: str  # requests of the endpoint since the incident started
    above_p95: str  # ... of which above the pinned p95
    share_above_p95: str
    median_ms: str  # the latest degraded interval's median
    p50_ms: str  # the baseline the incident is judged against
    p95_ms: str
    degraded_intervals: str


class DeadLetterMeta(TypedDict):
    """`<p>traces:dead`: what is added to the original (clipped) fields."""

    error: str
    origin_id: str
    consumer: str


class BaselineHash(TypedDict):
    """`<p>base:{svc|ep}:<hour>:<daytype>`, and an endpoint's all-hours baseline
    `<p>base-all:{svc|ep}` (written by recompute's store.lua)."""

    p50: str
    p95: str
    mad: str
    count: str
    updated_ms: str
