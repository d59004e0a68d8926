"""The fields of the stream entries and hashes the pipeline writes itself, typed.

Their JSON Schemas are in schemas/streams.schema.json (a test checks both name the same
fields); the trace events any producer writes are `pipeline.events.TraceEntry`. Every
value is a string, as Redis stores it.
"""

from __future__ import annotations

from typing import TypedDict


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
