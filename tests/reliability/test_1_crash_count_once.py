"""Promise 1: ingest consumers SIGKILLed at random points under load count every trace once."""

from __future__ import annotations

import random
import threading
import time

import pytest

from pipeline.keys import INGEST_GROUP
from tests.reliability.conftest import Truth, group_state, random_event, report
from tests.support import wait_until

TRACES = 12000
DUPLICATES = 1200  # the same entry produced twice (a retrying producer)
KILLS = 12
CONSUMERS = 3


@pytest.mark.slow
def test_sigkilled_consumers_count_every_trace_exactly_once(sredis, truth: Truth, spawn) -> None:
    rng = random.Random(20261129)
    events = [random_event(truth, rng) for _ in range(TRACES)]
    stream = truth.keys.traces
    settings = {"ingest_batch_size": 20, "ingest_claim_idle_s": 1, "rule_window_size": 100000}

    def produce() -> None:
        resent = rng.sample(events, DUPLICATES)
        batch = events + resent
        rng.shuffle(batch)
        for i in range(0, len(batch), 100):
            with sredis.pipeline(transaction=False) as pipe:
                for fields in batch[i : i + 100]:
                    pipe.xadd(stream, fields)
                pipe.execute()
            time.sleep(0.05)

    def pending_of(name: str) -> list[object]:
        return sredis.xpending_range(stream, INGEST_GROUP, "-", "+", 10_000, consumername=f"{name}-ingest")

    def wait_for_pending(name: str) -> bool:
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            if pending_of(name):
                return True
            time.sleep(0.002)
        return False

    consumers = {f"c{i}": spawn("ingest", ingest_consumer=f"c{i}", **settings)
                 for i in range(CONSUMERS)}
    wait_until("the ingest group", lambda: group_state(sredis, stream) != (-1, -1), 30)
    producer = threading.Thread(target=produce)
    producer.start()
    restarted = replaced = orphaned = mid_batch = 0
    try:
        for k in range(KILLS):
            name = rng.choice(sorted(consumers))
            if k % 3 == 2:  # any instant, even mid start-up
                time.sleep(rng.uniform(0.05, 0.5))
            else:  # mid-batch: it holds delivered, unacked entries right now
                time.sleep(rng.uniform(0.0, 0.2))
                mid_batch += bool(wait_for_pending(name))
            consumers.pop(name).kill()
            orphaned += len(pending_of(name))
            if k % 2:  # the same consumer name comes back and finds its own pending entries
                consumers[name] = spawn("ingest", ingest_consumer=name, **settings)
                restarted += 1
            else:  # a new consumer replaces it; the dead one's pending entries are reclaimed
                new = f"r{k}"
                consumers[new] = spawn("ingest", ingest_consumer=new, **settings)
                replaced += 1
    finally:
        producer.join()

    wait_until("the group to drain (no lag, nothing pending)",
               lambda: group_state(sredis, stream) == (0, 0), timeout_s=90)
    for proc in consumers.values():
        # A consumer started by the last kills may still be importing: SIGTERM before its
        # handlers are in place would kill it, not drain it.
        wait_until("the consumer to run", lambda: "event=running" in proc.log(), timeout_s=60)
        assert proc.terminate() == 0, proc.log()[-2000:]

    counted = truth.counted(sredis)
    assert counted == truth.expected()
    assert all(n == 1 for c in counted.values() for n in c.values())
    assert sredis.xlen(truth.keys.dead) == 0
    pending = sredis.xpending(stream, INGEST_GROUP)["pending"]
    report("crash_count_once", traces_sent=TRACES, duplicate_entries_sent=DUPLICATES,
           consumers_killed=KILLS, restarted_same_name=restarted, replaced=replaced,
           buckets=len(counted), samples_counted=sum(sum(c.values()) for c in counted.values()),
           counted_twice=0, pending_after=pending, dead_lettered=0,
           killed_mid_batch=mid_batch, left_pending_by_killed=orphaned)
