"""JSON shapes of verdicts and baselines (camelCase, the seed's API contract, OpenAPI
`components.schemas`), typed, shared by API and CLI."""

from __future__ import annotations

import time
from typing import TypedDict

from pipeline.buckets import BucketRef
from pipeline.rule import Level, RuleParams, Threshold, Verdict
from pipeline.stats import Baseline


class BucketJson(TypedDict):
    service: str
    endpoint: str
    hour: int
    dayType: str
    timezone: str
    id: str
    holiday: str | None  # the holiday that made the day a weekend day, if one did


class BaselineJson(TypedDict):
    level: str  # pipeline.rule.Level: "bucket", or the fallback level that judged
    id: str  # the baseline's id: a bucket id, or `{svc|ep}:all` (the endpoint's)
    p50: float
    p95: float
    mad: float
    count: int
    updatedMs: int
    ageS: float


class ThresholdJson(TypedDict):
    valueMs: float
    term: str
    p95TermMs: float
    madTermMs: float
    factor: float
    k: float
    minSamples: int
    floorMs: float


class VerdictJson(TypedDict):
    """The answer to one check (OpenAPI `Verdict`)."""

    isAnomaly: bool
    status: str
    durationMs: float
    bucket: BucketJson
    baseline: BaselineJson | None
    threshold: ThresholdJson | None
    reason: str


def bucket_json(ref: BucketRef, tz_name: str) -> BucketJson:
    return {
        "service": ref.service,
        "endpoint": ref.endpoint,
        "hour": ref.bucket.hour,
        "dayType": ref.bucket.day_type,
        "timezone": tz_name,
        "id": ref.id,
        "holiday": ref.bucket.holiday,
    }


def baseline_json(b: Baseline | None, baseline_id: str, level: Level = "bucket",
                  now_ms: int | None = None) -> BaselineJson | None:
    if b is None:
        return None
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    return {
        "level": level,
        "id": baseline_id,
        "p50": b.p50,
        "p95": b.p95,
        "mad": b.mad,
        "count": b.count,
        "updatedMs": b.updated_ms,
        "ageS": round(max(0, now_ms - b.updated_ms) / 1000, 3),
    }


def threshold_json(t: Threshold | None, p: RuleParams) -> ThresholdJson | None:
    if t is None:
        return None
    return {
        "valueMs": t.value_ms,
        "term": t.term,
        "p95TermMs": t.p95_term_ms,
        "madTermMs": t.mad_term_ms,
        "factor": p.factor,
        "k": p.k,
        "minSamples": p.min_samples,
        "floorMs": p.floor_ms,
    }


def verdict_json(v: Verdict, p: RuleParams, tz_name: str) -> VerdictJson:
    return {
        "isAnomaly": v.is_anomaly,
        "status": v.status,
        "durationMs": v.duration_ms,
        "bucket": bucket_json(v.ref, tz_name),
        "baseline": baseline_json(v.baseline, verdict_baseline_id(v), v.level),
        "threshold": threshold_json(v.threshold, p),
        "reason": v.reason,
    }


def verdict_baseline_id(v: Verdict) -> str:
    """The id of the baseline that judged: the bucket's, or its fallback's."""
    return v.fallback.source if v.fallback is not None else v.ref.id
