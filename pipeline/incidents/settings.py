"""`incidents.*` (TLA_INCIDENTS_*): the incidents stage's settings, each declared once."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.incidents.detect import Params
from pipeline.settings import setting

# The default lateness is the Tempo source's lookback plus this margin: a trace the
# source publishes late (up to one lookback after it started) still lands in its interval.
LATENESS_MARGIN_S = 60


@dataclass(frozen=True, slots=True)
class IncidentSettings:
    """The detect stage (`tempo-anomaly detect`, and inside `run`)."""

    interval_s: int = setting(
        60, "event-time interval judged as one (trace start times)", min=10, max=3600,
        why="shorter intervals hold too few requests to test, longer ones delay detection")
    min_requests: int = setting(
        10, "fewer requests in an interval: not judged (one slow request of three is no "
        "incident)", min=1)
    alpha: float = setting(
        0.001, "significance of the binomial test of the share above p95 against 5 %",
        min=1e-12, max=0.5)
    min_share: float = setting(
        0.2, "an interval is degraded only with at least this share above p95 (the "
        "effect size; 5 % is normal)", min=0.06, max=1.0)
    open_after: int = setting(
        3, "consecutive degraded intervals that open an incident", min=1)
    quiet_s: int = setting(
        300, "an incident closes after this much event time without a degraded interval",
        min=1)
    pin_max_s: int = setting(
        86_400, "a shift lasting longer is the new normal (a deploy): judged against the "
        "learned baselines again, the incident closes once they caught up (a day: every "
        "hour's baseline has seen the new level by then)", min=60)
    lateness_s: int | None = setting(
        None, "allowed lateness: traces this far behind the newest start time still count",
        min=0, unset=f"derived: TLA_TEMPO_LOOKBACK_S + {LATENESS_MARGIN_S}")
    idle_flush_s: float | None = setting(
        None, "no new trace for this long (wall clock): judge every interval seen so far "
        "(the end of a replay or backfill)", above=0, unset="derived: the lateness, at least 5 s")
    retention_days: int = setting(
        30, "closed incidents are kept this long for `GET /v1/incidents`", min=1)
    batch_size: int = setting(1000, "entries per XREADGROUP", above=0, max=10_000)
    lease_ttl_s: float = setting(
        10.0, "one instance aggregates and judges; a standby takes over this long after it "
        "dies", min=1)

    def params(self, min_samples: int) -> Params:
        """The detector's parameters; `min_samples`: the rule's (a thinner baseline judges
        nothing)."""
        return Params(self.interval_s * 1000, self.min_requests, self.alpha, self.min_share,
                      self.open_after, self.quiet_s * 1000, min_samples, self.pin_max_s * 1000)

    def lateness(self, tempo_lookback_s: int) -> int:
        """`lateness_s`, or its default derived from the Tempo source's lookback."""
        if self.lateness_s is not None:
            return self.lateness_s
        return tempo_lookback_s + LATENESS_MARGIN_S

    def idle_flush(self, lateness_s: int) -> float:
        if self.idle_flush_s is not None:
            return self.idle_flush_s
        return float(max(5, lateness_s))
