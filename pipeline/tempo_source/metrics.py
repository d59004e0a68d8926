"""The Tempo source's series (`metrics.part(TempoMetrics)`)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class TempoMetrics:
    def __init__(self, r: CollectorRegistry) -> None:
        self.tempo_polls = Counter(
            "tla_tempo_polls_total", "Poll cycles of the Tempo source, by outcome "
            "(ok, unavailable, rejected)", ["outcome"], registry=r,
        )
        self.tempo_queries = Counter(
            "tla_tempo_queries_total", "Tempo /api/search requests, by outcome "
            "(ok, truncated, error)", ["outcome"], registry=r,
        )
        self.tempo_query_seconds = Histogram(
            "tla_tempo_query_duration_seconds", "Time of one Tempo /api/search request",
            registry=r,
        )
        self.tempo_traces_seen = Counter(
            "tla_tempo_traces_seen_total", "Traces returned by Tempo searches (with repeats)",
            registry=r,
        )
        self.tempo_traces_published = Counter(
            "tla_tempo_traces_published_total", "Traces added to the traces stream", registry=r,
        )
        self.tempo_traces_duplicate = Counter(
            "tla_tempo_traces_duplicate_total",
            "Traces skipped because this source published them recently", registry=r,
        )
        self.tempo_traces_held = Counter(
            "tla_tempo_traces_held_back_total", "Traces not published yet, by reason "
            "(root_not_received, no_service, no_endpoint, malformed)", ["reason"], registry=r,
        )
        self.tempo_truncations = Counter(
            "tla_tempo_truncations_total", "Searches that returned `limit` traces, by outcome "
            "(split: the window was bisected; unresolved: minimum window reached)",
            ["outcome"], registry=r,
        )
        self.tempo_errors = Counter(
            "tla_tempo_errors_total", "Tempo source errors, by kind (timeout, connect, "
            "http_429, http_5xx, http_4xx codes, bad_response, redis)", ["kind"], registry=r,
        )
        self.tempo_watermark_lag = Gauge(
            "tla_tempo_watermark_lag_seconds",
            "Seconds between now and the last fully covered second", registry=r,
        )
        self.tempo_skipped = Counter(
            "tla_tempo_skipped_seconds_total",
            "Seconds of history skipped because a gap exceeded max_catchup_s", registry=r,
        )
        self.tempo_leader = Gauge(
            "tla_tempo_leader", "1 while this process holds the Tempo polling lease", registry=r,
        )
