"""The recompute stage: group `recompute` on `<p>dirty`, baselines per 30 s tumbling window.

`stage` holds the agent's loop; `store.lua` writes one chunk of baselines atomically.
"""

from __future__ import annotations

from pipeline.recompute.stage import RecomputeParams, Recomputer

__all__ = ["RecomputeParams", "Recomputer"]
