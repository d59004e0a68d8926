"""The ingest stage's parameters (derived from the settings in services/config.py)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class IngestParams:
    batch_size: int = 500
    block_ms: int = 1000  # how long one XREADGROUP waits; bounds shutdown latency too
    seen_ttl_s: int = 900  # dedup memory: longer than Tempo's lookback plus catch-up
    bucket_ttl_s: int = 14 * 86400  # > 7 days, or weekend buckets would vanish mid-week
    window_size: int = 1000
    window_s: int = 30  # the recompute window the dirty marks belong to
    claim_idle_ms: int = 60_000
    claim_every_s: float = 10.0
    max_deliveries: int = 5
    trim_every_s: float = 10.0  # also how often group lag is measured
    # Endpoints one service may track (0: no cap). Names with IDs in them would otherwise
    # create buckets without bound; idle endpoints free their slot after bucket_ttl_s.
    max_endpoints_per_service: int = 2000
    # Services tracked (0: no cap): a producer that puts pod names or versions in the
    # service name would otherwise create buckets without bound.
    max_services: int = 1000
    # A group this many entries behind (undelivered + pending) gets a loud log line.
    lag_alert_entries: int = 100_000
    dead_maxlen: int = 100_000
    anomalies_maxlen: int = 10_000
