"""Baseline statistics of a rolling sample: p50, p95 and MAD = median(|x - p50|)."""

from __future__ import annotations

import warnings
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


def baselines_of(raw_lists: Sequence[Sequence[bytes]], now_ms: int) -> list[Baseline]:
    """`compute_baseline(samples_to_ms(raw))` for many rolling lists at once, same numbers.

    Recompute's hot loop: parsing 1000 samples per bucket one list at a time costs more
    than Redis takes to send them. Here a whole chunk is parsed in one numpy call and
    the statistics run on a 2-D array per list length (nearly every list is full, so
    there are few groups), which clears 10k buckets several times faster.
    """
    lengths = np.fromiter(map(len, raw_lists), dtype=np.int64, count=len(raw_lists))
    values_ms = _parse_us(raw_lists, int(lengths.sum())) / 1000.0
    offsets = np.concatenate(([0], np.cumsum(lengths)[:-1])) if len(raw_lists) else lengths
    out: list[Baseline | None] = [None] * len(raw_lists)
    for length in np.unique(lengths).tolist():
        rows = np.flatnonzero(lengths == length)
        if length == 0:
            for r in rows.tolist():
                out[r] = Baseline(0.0, 0.0, 0.0, 0, now_ms)
            continue
        if rows.size == lengths.size:  # the usual case: every list is full
            matrix = values_ms.reshape(rows.size, length)
        else:
            matrix = values_ms[offsets[rows][:, None] + np.arange(length)]
        p50, p95 = np.percentile(matrix, [50.0, 95.0], axis=1)
        mad = np.median(np.abs(matrix - p50[:, None]), axis=1)
        for r, a, b, m in zip(rows.tolist(), p50.tolist(), p95.tolist(), mad.tolist()):
            out[r] = Baseline(a, b, m, length, now_ms)
    return out  # type: ignore[return-value]


def _parse_us(raw_lists: Sequence[Sequence[bytes]], total: int) -> np.ndarray:
    """Every list's integer-microsecond samples, concatenated, as int64."""
    if total == 0:
        return np.empty(0, dtype=np.int64)
    joined = b",".join([b",".join(raw) for raw in raw_lists if raw])
    with warnings.catch_warnings():
        # Text-mode fromstring is the fast C parser; on junk it warns and stops early.
        warnings.simplefilter("ignore", DeprecationWarning)
        values = np.fromstring(joined, dtype=np.int64, sep=",")
    if values.size != total:  # something not an integer: fail as the one-list path does
        return np.concatenate([samples_to_ms(raw) * 1000.0 for raw in raw_lists]).astype(np.int64)
    return values
