"""The incidents stage's series (`metrics.part(IncidentMetrics)`)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class IncidentMetrics:
    def __init__(self, r: CollectorRegistry) -> None:
        self.open = Gauge(
            "tla_incidents_open", "Incidents open now (set by the detect stage's leader)",
            registry=r,
        )
        self.opened = Counter(
            "tla_incidents_opened_total",
            "Incidents opened, by service (the first 50 names, then 'other')", ["service"],
            registry=r,
        )
        self.closed = Counter(
            "tla_incidents_closed_total", "Incidents closed after their quiet period", registry=r,
        )
        self.intervals = Counter(
            "tla_incidents_intervals_total",
            "Endpoint intervals judged, by status (degraded, normal, thin, no_baseline)",
            ["status"], registry=r,
        )
        self.late_events = Counter(
            "tla_incidents_late_events_total",
            "Traces that arrived after their interval was judged (beyond the allowed "
            "lateness): not counted in any interval", registry=r,
        )
        self.judged_through = Gauge(
            "tla_incidents_judged_through_timestamp_seconds",
            "Event time (unix s) up to which every interval is judged: the watermark",
            registry=r,
        )
