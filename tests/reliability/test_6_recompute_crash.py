"""Promise 6: a recompute agent SIGKILLed mid-window: its dirty buckets are still recomputed."""

from __future__ import annotations

import random

import pytest

from pipeline.keys import RECOMPUTE_GROUP
from tests.reliability.conftest import Truth, group_state, random_event, report
from tests.support import wait_until

WINDOW_S = 2
SETTINGS = {"recompute_interval_s": WINDOW_S, "recompute_claim_idle_s": 3,
            "api_cache_ttl_s": 1, "rule_window_size": 100000}


def all_recomputed(sredis, truth: Truth) -> bool:
    """Every bucket with samples has a baseline over exactly those samples."""
    for bucket, samples in truth.counted(sredis).items():
        count = sredis.hget(truth.keys.base(bucket), "count")
        if count is None or int(count) != sum(samples.values()):
            return False
    return True


@pytest.mark.slow
def test_killed_agent_leaves_no_dirty_bucket_behind(sredis, truth: Truth, spawn) -> None:
    rng = random.Random(6)
    keys = truth.keys
    ingest = spawn("ingest", ingest_consumer="i", **SETTINGS)
    agents = {"a": spawn("recompute", ingest_consumer="a", **SETTINGS)}
    wait_until("the dirty group", lambda: group_state(
        sredis, keys.dirty, RECOMPUTE_GROUP) != (-1, -1), 30)
    kills = orphaned = sent = 0
    for round_, (victim, heir) in enumerate((("a", "b"), ("b", "c"))):
        for _ in range(300 + 100 * round_):
            sredis.xadd(keys.traces, random_event(truth, rng))
            sent += 1
        # The agent has taken this window's marks and holds them until the window closes.
        wait_until("marks held by the agent", lambda v=victim: _pending_of(sredis, keys, v), 10,
                   every_s=0.01)
        orphaned += len(_pending_of(sredis, keys, victim))
        agents.pop(victim).kill()
        kills += 1
        for _ in range(100):  # more samples in the same window, for the dead agent's buckets
            sredis.xadd(keys.traces, random_event(truth, rng))
            sent += 1
        agents[heir] = spawn("recompute", ingest_consumer=heir, **SETTINGS)
        wait_until("every dirty bucket recomputed", lambda: all_recomputed(sredis, truth), 30)
        wait_until("the dead agent's marks reclaimed",
                   lambda v=victim: not _pending_of(sredis, keys, v), 30)

    for proc in [ingest, *agents.values()]:
        assert proc.terminate() == 0
    buckets = len(truth.counted(sredis))
    report("recompute_crash", traces_sent=sent, agents_killed=kills,
           marks_left_pending_by_killed=orphaned, buckets=buckets,
           buckets_recomputed=buckets, skipped=0)


def _pending_of(sredis, keys, agent: str) -> list[object]:
    return sredis.xpending_range(keys.dirty, RECOMPUTE_GROUP, "-", "+", 1000,
                                 consumername=f"{agent}-recompute")
