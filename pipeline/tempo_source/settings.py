"""`tempo.*` (TLA_TEMPO_*): the Tempo source's settings, each declared once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from pipeline.keys import Keys
from pipeline.settings import setting

MAX_CATCHUP_DEFAULT_S = 6 * 3600  # raised to lookback_s: one cycle searches that far


@dataclass(frozen=True, slots=True)
class TempoSettings:
    url: str | None = setting(
        None, "Tempo's base URL with any path prefix, e.g. `http://tempo:3200`",
        unset="no Tempo polling")
    interval_s: float = setting(15.0, "seconds between polls", above=0)
    lookback_s: int = setting(
        120, "how far each poll looks back; also the catch-up window size", min=1)
    query: str = setting(
        "{ nestedSetParent < 0 }",
        "TraceQL selecting root spans (replaced by `{}` on Tempo < 2.5)")
    limit: int = setting(500, "traces per search; a full answer is split in two", min=1)
    spss: int = setting(1, "spans per span set", min=0, max=100, why="Tempo's default cap")
    tenant: str | None = setting(
        None, "`X-Scope-OrgID`, for multi-tenant Tempo (`a|b` queries several tenants)",
        unset="no header")
    user: str | None = setting(
        None, "HTTP basic auth user (Grafana Cloud: the numeric user)", unset="no basic auth")
    password: str | None = setting(None, "HTTP basic auth password or token", unset="none")
    token: str | None = setting(None, "`Authorization: Bearer ...`", unset="none")
    timeout_s: float = setting(10.0, "HTTP timeout per search (connect: at most 5 s)", above=0)
    verify_tls: bool = setting(True, "verify Tempo's TLS certificate")
    ca_file: str | None = setting(None, "a private CA bundle", unset="the system's")
    max_catchup_s: int | None = setting(
        None, "after an outage, catch up at most this far back", min=1,
        unset="derived: 21600 (6 h), or the lookback if longer")
    min_window_s: int = setting(1, "smallest window a truncated search is split into", min=1)
    lease_ttl_s: float = setting(
        10.0, "a standby poller takes over this long after the leader dies", min=1)
    end_cutoff_s: float | None = setting(
        None, "newest seconds Tempo hides from search (3.x `query_end_cutoff`)", min=0,
        unset="30 on Tempo 3.x, 0 on 2.x")
    search_retry_s: float = setting(
        60.0, "how long one failing search (429, 5xx, timeout) is retried in place before "
        "the poll cycle ends; the next cycle resumes after the last recorded part "
        "(0: not retried)", min=0)

    @property
    def catchup_s(self) -> int:
        """`max_catchup_s`, or its default derived from `lookback_s`."""
        if self.max_catchup_s is not None:
            return self.max_catchup_s
        return max(MAX_CATCHUP_DEFAULT_S, self.lookback_s)


class TempoConfig(Protocol):
    """What the Tempo source reads of the process's settings (services.config.Settings)."""

    @property
    def tempo(self) -> TempoSettings: ...

    def keys(self) -> Keys: ...
