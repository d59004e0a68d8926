"""`recompute.*` (TLA_RECOMPUTE_*): the recompute agents' settings, each declared once."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.settings import setting

# A live agent holds the open window's marks up to one window, so a mark is only
# orphaned after two; the margin covers a slow window.
CLAIM_IDLE_MARGIN_S = 15


@dataclass(frozen=True, slots=True)
class RecomputeSettings:
    interval_s: int = setting(30, "tumbling window length (wall-clock aligned)", above=0)
    claim_idle_s: float | None = setting(
        None, "a dead agent's marks are reclaimed after this", above=0,
        unset="derived: 2 windows + 15 s")

    @property
    def claim_idle_ms(self) -> int:
        idle_s = self.claim_idle_s
        if idle_s is None:
            idle_s = 2 * self.interval_s + CLAIM_IDLE_MARGIN_S
        return int(idle_s * 1000)
