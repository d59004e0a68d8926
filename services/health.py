"""Liveness of the stages in this process, as /readyz reports it."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class Health:
    """Stage name → 'starting' | 'running' | 'restarting' | 'failed' | 'stopped'."""

    stages: dict[str, str] = field(default_factory=dict)

    def set(self, stage: str, state: str) -> None:
        self.stages[stage] = state

    def broken(self) -> list[str]:
        return [name for name, state in self.stages.items() if state in ("restarting", "failed")]
