"""`tempo-anomaly backfill`: pull Tempo's history once, for a cold start, skipping what the
live source or an earlier backfill already published (`<p>tempo:covered`)."""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from typing import TextIO

from redis.asyncio import Redis

from pipeline.errors import ConfigError
from pipeline.metrics import Metrics
from pipeline.tempo_source.client import TempoRejected, TempoUnavailable
from pipeline.tempo_source.harvest import Harvester, Window, chunks
from pipeline.tempo_source.settings import TempoConfig
from pipeline.tempo_source.stage import discover, harvest_params, make_client, recorder
from pipeline.tempo_source.state import Coverage, Watermark, uncovered

log = logging.getLogger(__name__)

# Backfill searches history in windows this long, bisected when truncated.
BACKFILL_WINDOW_S = 3600


_SINCE = re.compile(r"^\s*(\d+)\s*([smhdw]?)\s*$")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(text: str) -> int:
    """'7d', '36h', '90m', '600s' (or plain seconds) → seconds."""
    m = _SINCE.match(text.lower())
    if m is None or int(m.group(1)) == 0:
        raise ValueError(f"--since must be a positive duration like 7d, 36h, 90m or 600s, "
                         f"got {text!r}")
    return int(m.group(1)) * _UNIT_S[m.group(2)]


def format_duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


@dataclass(frozen=True, slots=True)
class BackfillSummary:
    since_s: int
    tempo_version: str
    windows: int
    failed_windows: int
    queries: int
    seen: int
    published: int
    duplicates: int
    held_back: int
    truncations: int
    unresolved: int
    elapsed_s: float
    covered_s: int = 0  # of the range, already published earlier: not searched again

    @property
    def ok(self) -> bool:
        return self.failed_windows == 0

    def __str__(self) -> str:
        return (
            f"backfill {format_duration(self.since_s)}: published {self.published} traces "
            f"({self.duplicates} repeats skipped, {self.held_back} held back) from "
            f"{self.windows} windows in {self.queries} searches; {self.truncations} truncated "
            f"({self.unresolved} unresolved); {self.failed_windows} windows failed; "
            f"{self.elapsed_s:.1f}s; Tempo {self.tempo_version}"
            + (f"; {format_duration(self.covered_s)} already published, skipped"
               if self.covered_s else "")
        )


class _Progress:
    """A one-line bar on a terminal; every 10 % a plain line elsewhere (logs, pipes)."""

    WIDTH = 30

    def __init__(self, out: TextIO, total: int) -> None:
        self.out = out
        self.total = max(1, total)
        self.tty = bool(getattr(out, "isatty", lambda: False)())
        self._last_decile = -1

    def update(self, done: int, published: int) -> None:
        share = done / self.total
        filled = int(share * self.WIDTH)
        line = (f"[{'#' * filled}{'.' * (self.WIDTH - filled)}] {share:4.0%} "
                f"windows {done}/{self.total} published {published}")
        if self.tty:
            self.out.write("\r" + line + ("\n" if done >= self.total else ""))
        elif int(share * 10) > self._last_decile:
            self._last_decile = int(share * 10)
            self.out.write(line + "\n")
        self.out.flush()


async def backfill(settings: TempoConfig, redis: Redis, metrics: Metrics, since_s: int,
                   progress: TextIO) -> BackfillSummary:
    """Publish every trace of the last `since_s` seconds (minus Tempo's cutoff), window by
    window. Rejections raise ConfigError; a search still failing after `search_retry_s`
    counts its window as failed (what it published before stays recorded as covered)."""
    started = time.monotonic()
    t = settings.tempo
    keys = settings.keys()
    async with make_client(t) as client:
        features, _ = await discover(client)
        harvester = Harvester(client, redis, keys, metrics, harvest_params(t), features)
        cutoff_s = t.end_cutoff_s if t.end_cutoff_s is not None else features.end_cutoff_s
        end = int(time.time() - cutoff_s)
        coverage = Coverage(redis, keys)
        gaps = await coverage.gaps(end - since_s, end)
        covered_s = since_s - sum(g_end - g_start for g_start, g_end in gaps)
        if covered_s:
            progress.write(f"backfill: {format_duration(covered_s)} of the "
                           f"{format_duration(since_s)} were already published (by the live "
                           "source or an earlier backfill) and are skipped: searching them "
                           "again would count their traces twice\n")
        size_s = min(BACKFILL_WINDOW_S, since_s)
        windows = [w for g_start, g_end in gaps for w in chunks(g_start, g_end, size_s)]
        bar = _Progress(progress, len(windows))
        bar.update(0, 0)
        failed = 0
        for i, window in enumerate(windows, 1):
            # Coverage is read again per window: a live source catching up after an outage
            # may have covered part of it since the plan was made.
            covered = await coverage.intervals()
            harvester.skip_covered = covered
            for g_start, g_end in uncovered(window.start_s, window.end_s, covered):
                if not await _backfill_part(harvester, Window(g_start, g_end), coverage):
                    failed += 1
            bar.update(i, harvester.stats.published)
        if failed == 0:
            await _advance_after_backfill(Watermark(redis, keys), end - since_s, end)
    s = harvester.stats
    summary = BackfillSummary(since_s, features.version, len(windows), failed, s.queries, s.seen,
                              s.published, s.duplicates, s.held, s.truncations, s.unresolved,
                              time.monotonic() - started, covered_s)
    log.info("event=tempo_backfill_done summary=%r", str(summary))
    return summary


async def _backfill_part(harvester: Harvester, window: Window, coverage: Coverage) -> bool:
    """Cover `window`, recording each part as it is published; False when Tempo stayed
    unavailable past the retry bound."""
    try:
        return await harvester.cover(window, done=recorder(coverage))
    except TempoRejected as e:
        harvester.series.tempo_errors.labels(e.kind).inc()
        raise ConfigError(f"Tempo rejected the backfill search: {e}") from e
    except TempoUnavailable as e:
        log.error("event=tempo_backfill_window_failed start_s=%d end_s=%d kind=%s error=%r",
                  window.start_s, window.end_s, e.kind, str(e))
        return False


async def _advance_after_backfill(watermark: Watermark, start_s: int, end_s: int) -> None:
    """A contiguous backfill may move the watermark forward, so the live source resumes
    there; not across an uncovered gap older than the backfill, which must stay visible."""
    current = await watermark.get()
    if current is None or current >= start_s:
        await watermark.advance(end_s)
