"""`ingest.*` (TLA_INGEST_*): the ingest consumers' settings, each declared once."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.settings import setting

# Orphaned entries are looked for about twice per claim_idle_s, at least this often.
CLAIM_EVERY_MAX_S = 10.0
CLAIM_EVERY_MIN_S = 0.5


@dataclass(frozen=True, slots=True)
class IngestSettings:
    batch_size: int = setting(
        500, "entries per XREADGROUP and per Lua call", above=0, max=2000,
        why="one Lua call holds the batch")
    block_ms: int = setting(
        1000, "how long one XREADGROUP waits (bounds how long a stop waits too)", above=0)
    dedup_ttl_s: int = setting(
        900, "how long a trace ID is remembered (longer than the Tempo lookback and its "
        "catch-up overlap)", above=0)
    bucket_ttl_s: int = setting(
        14 * 86400, "idle buckets (samples, baseline) expire after this (more than 7 days, "
        "or weekend buckets would vanish mid-week)", above=0)
    claim_idle_s: float = setting(
        60.0, "a dead consumer's pending entries are reclaimed after this", above=0)
    max_deliveries: int = setting(
        5, "an entry delivered more often is dead-lettered", above=0)
    consumer: str | None = setting(
        None, "consumer name base (`-ingest`, `-recompute` appended)",
        unset="`<hostname>-<pid>`")
    max_endpoints_per_service: int = setting(
        2000, "endpoints one service may track (0: no cap); past it, new endpoints are "
        "dead-lettered (names with IDs in them would create buckets without bound)", min=0)
    max_services: int = setting(
        1000, "services tracked (0: no cap); past it, new services are dead-lettered",
        min=0)
    lag_alert_entries: int = setting(
        100_000, "a consumer group further behind (undelivered + pending) is logged at "
        "ERROR", above=0)

    @property
    def claim_every_s(self) -> float:
        return min(CLAIM_EVERY_MAX_S, max(CLAIM_EVERY_MIN_S, self.claim_idle_s / 2))

    @property
    def claim_idle_ms(self) -> int:
        return int(self.claim_idle_s * 1000)
