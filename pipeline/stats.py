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


def compute_baseline(samples_ms: np.ndarray, now_ms: int) -> Baseline:
    """p50/p95 by linear interpolation (numpy's default), MAD around p50."""
    if samples_ms.size == 0:
        return Baseline(0.0, 0.0, 0.0, 0, now_ms)
    p50, p95 = np.percentile(samples_ms, [50.0, 95.0])
    mad = float(np.median(np.abs(samples_ms - p50)))
    return Baseline(float(p50), float(p95), mad, int(samples_ms.size), now_ms)


def baselines_of(samples_ms: Sequence[np.ndarray], now_ms: int) -> list[Baseline]:
    """`compute_baseline` of many buckets' samples at once, the same numbers.

    Recompute's hot loop: the statistics run on one 2-D array per sample count (nearly
    every bucket holds a full window, so there are few groups) instead of per bucket.
    """
    lengths = np.fromiter(map(len, samples_ms), dtype=np.int64, count=len(samples_ms))
    out: list[Baseline | None] = [None] * len(samples_ms)
    for length in np.unique(lengths).tolist():
        rows = np.flatnonzero(lengths == length)
        if length == 0:
            for r in rows.tolist():
                out[r] = Baseline(0.0, 0.0, 0.0, 0, now_ms)
            continue
        matrix = np.stack([samples_ms[r] for r in rows.tolist()])
        p50, p95 = np.percentile(matrix, [50.0, 95.0], axis=1)
        mad = np.median(np.abs(matrix - p50[:, None]), axis=1)
        for r, a, b, m in zip(rows.tolist(), p50.tolist(), p95.tolist(), mad.tolist()):
            out[r] = Baseline(a, b, m, length, now_ms)
    return out  # type: ignore[return-value]
