"""The web view of the product as users run it: `tempo-anomaly run` on a real Redis, known
traces published to `<p>traces`, ingest and recompute learning from them, and a browser
reading what they learned and flagged."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import httpx
import numpy as np
import pytest
import redis as sync_redis
from playwright.async_api import Browser, expect

from pipeline.buckets import TimeBucket, bucket_of, load_zone
from pipeline.stats import Baseline, compute_baseline
from tests.conftest import REDIS_URL
from tests.services.web.conftest import DESKTOP, cell_of
from tests.support import eventually, free_port

pytestmark = [pytest.mark.redis, pytest.mark.slow]
ROOT = Path(__file__).parents[3]
ZONE = load_zone("Asia/Taipei")
NS_PER_H = 3600 * 1_000_000_000
START_S = 30.0


def fmt_ms(v: float) -> str:
    """The pages' own formatting of milliseconds (app.js `fmtMs`)."""
    return f"{round(v)} ms" if v >= 100 else f"{v:.1f} ms" if v >= 10 else f"{v:.2f} ms"


def publish(r: sync_redis.Redis, prefix: str, first: int, start_ns: int,
            durations: list[float]) -> None:
    for i, duration in enumerate(durations):
        r.xadd(f"{prefix}traces", {"trace_id": f"{first + i:032x}", "service": "checkout",
                                   "endpoint": "POST /pay", "start_ns": str(start_ns),
                                   "duration_ms": str(duration)})


def learned(durations: list[float]) -> Baseline:
    return compute_baseline(np.array(durations, dtype=np.float32).astype(np.float64), 0)


def count_of(base: str, bucket: TimeBucket) -> int:
    reply = httpx.get(f"{base}/v1/baselines", timeout=2,
                      params={"service": "checkout", "endpoint": "POST /pay"}).json()
    cell = next(c for c in reply["buckets"]
                if (c["hour"], c["dayType"]) == (bucket.hour, bucket.day_type))
    return cell["baseline"]["count"] if cell["baseline"] else 0


async def test_what_run_learns_and_flags_shows_in_the_browser(
        browser: Browser, prefix: str, sredis: sync_redis.Redis, tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "TLA_REDIS_URL": REDIS_URL, "TLA_KEY_PREFIX": prefix,
           "TLA_API_PORT": str(port), "TLA_RECOMPUTE_INTERVAL_S": "1", "TLA_API_CACHE_TTL_S": "1",
           "TLA_CONFIG": "", "TLA_METRICS_OBSERVE_INTERVAL_S": "0"}
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "services.cli", "run"], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    r = sredis
    try:
        await eventually("the API", lambda: _up(base), START_S)
        now_ns = time.time_ns()
        earlier_ns = now_ns - 12 * NS_PER_H
        now, earlier = bucket_of(now_ns, ZONE), bucket_of(earlier_ns, ZONE)
        usual = [100.0 + i % 7 for i in range(80)]
        night = [40.0 + i % 5 for i in range(60)]
        publish(r, prefix, 1, now_ns, usual)
        publish(r, prefix, 1000, earlier_ns, night)
        await eventually("the baselines", lambda: count_of(base, now) == 80, START_S)
        # Ingest caches baselines for one recompute interval (1 s here): it may still hold
        # the bucket's "nothing learned" from when the 80 arrived. Let that expire, so the
        # slow trace is judged against the 80 (then learned).
        await asyncio.sleep(2.0)
        publish(r, prefix, 5000, now_ns, [900.0])
        await eventually("the slow trace learned", lambda: count_of(base, now) == 81, START_S)
        page = await browser.new_page(viewport=DESKTOP)
        await page.goto(f"{base}/")
        await expect(page.locator('tr[data-endpoint="POST /pay"]')).to_contain_text("81")
        await page.goto(f"{base}/endpoint?service=checkout&endpoint={quote('POST /pay')}")
        await expect(page.locator(".heatmap .cell")).to_have_count(48)
        for bucket, durations in ((now, [*usual, 900.0]), (earlier, night)):
            b = learned(durations)
            label = await cell_of(page, bucket).get_attribute("aria-label") or ""
            for part in (f"p95 {fmt_ms(b.p95)}", f"p50 {fmt_ms(b.p50)}", f"MAD {fmt_ms(b.mad)}",
                         f"{len(durations)} samples"):
                assert part in label, (part, label)
        await expect(page.locator(".cell.empty")).to_have_count(46)
        await page.goto(f"{base}/anomalies")
        flagged = page.locator(f'#recent-anomalies tr[data-trace-id="{5000:032x}"]')
        threshold = max(learned(usual).p95 * 2, learned(usual).p50 + 10 * learned(usual).mad)
        await expect(flagged).to_contain_text(f"900 ms > threshold {threshold:.3g} ms")
        await page.screenshot(path=tmp_path / "run-anomalies.png", full_page=True)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert proc.returncode == 0


def _up(base: str) -> bool:
    try:
        return httpx.get(f"{base}/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
