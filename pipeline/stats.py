"""Baseline statistics of a rolling sample: p50, p95 and MAD = median(|x - p50|)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class Baseline:
    """What a bucket normally looks like; durations in milliseconds."""

    p50: float
    p95: float
    mad: float
    count: int
    updated_ms: int

    def to_hash(self) -> dict[str, str]:
        return {
            "p50": _fmt(self.p50),
            "p95": _fmt(self.p95),
            "mad": _fmt(self.mad),
            "count": str(self.count),
            "updated_ms": str(self.updated_ms),
        }

    @classmethod
    def from_hash(cls, raw: Mapping[bytes, bytes]) -> Baseline | None:
        """None for a missing or partial hash (it is not a baseline yet)."""
        try:
            return cls(
                float(raw[b"p50"]),
                float(raw[b"p95"]),
                float(raw[b"mad"]),
                int(raw[b"count"]),
                int(raw[b"updated_ms"]),
            )
        except (KeyError, ValueError):
            return None


def _fmt(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".") or "0"


def samples_to_ms(raw: Sequence[bytes]) -> np.ndarray:
    """Stored integer microseconds (as Redis returns them) to float milliseconds."""
    if not raw:
        return np.empty(0, dtype=np.float64)
    return np.array(raw, dtype=np.bytes_).astype(np.int64) / 1000.0


def compute_baseline(samples_ms: np.ndarray, now_ms: int) -> Baseline:
    """p50/p95 by linear interpolation (numpy's default), MAD around p50."""
    if samples_ms.size == 0:
        return Baseline(0.0, 0.0, 0.0, 0, now_ms)
    p50, p95 = np.percentile(samples_ms, [50.0, 95.0])
    mad = float(np.median(np.abs(samples_ms - p50)))
    return Baseline(float(p50), float(p95), mad, int(samples_ms.size), now_ms)
