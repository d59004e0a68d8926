"""The recompute stage's series (`metrics.part(RecomputeMetrics)`)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class RecomputeMetrics:
    def __init__(self, r: CollectorRegistry) -> None:
        self.buckets = Counter(
            "tla_recompute_buckets_total", "Baselines recomputed", registry=r,
        )
        self.window_seconds = Histogram(
            "tla_recompute_window_duration_seconds", "Time to clear one window's dirty buckets",
            registry=r,
        )
        self.last_window = Gauge(
            "tla_recompute_last_window_timestamp_seconds",
            "Unix time at which the last recompute window was cleared", registry=r,
        )
