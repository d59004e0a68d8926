"""Promise 10 (docs/guarantees.md): the detect stage SIGKILLed at random points while
traces (some sent twice) arrive: the incident it reports counts every request of its
intervals exactly once, and its open and its close are each published once (on one
node, and on a Redis Cluster: tests/cluster/test_incidents.py reruns it)."""

from __future__ import annotations

import random
import threading
import time

import pytest

from pipeline.buckets import BucketRef, ZoneBuckets
from pipeline.stats import Baseline
from tests.pipeline.incidents.test_stage import (
    ENDPOINT,
    MIN_MS,
    SERVICE,
    WEEK_AGO_MS,
    ZONE,
    traffic,
)
from tests.reliability.conftest import Truth, report
from tests.support import wait_until

KILLS = 4
MINUTES = 50
SLOW = (5, 35)  # the incident's minutes


@pytest.mark.slow
def test_sigkilled_detect_counts_every_request_once(sredis, truth: Truth, spawn) -> None:
    keys = truth.keys
    buckets = ZoneBuckets(ZONE)
    for h in range(2):
        ref = BucketRef(SERVICE, ENDPOINT, buckets((WEEK_AGO_MS + h * 3_600_000) * 1_000_000))
        sredis.hset(keys.base(ref.id), mapping=Baseline(100, 160, 15, 1000, 1).to_hash())
    rng = random.Random(20261130)
    events = traffic(WEEK_AGO_MS, MINUTES, slow=SLOW, factor=3.0)
    sent = events + rng.sample(events, len(events) // 10)  # a retrying producer
    sent.sort(key=lambda e: int(e["start_ns"]))
    settings = {"incidents_batch_size": 40, "incidents_lease_ttl_s": 1,
                "incidents_idle_flush_s": 2}

    def produce() -> None:
        for i in range(0, len(sent), 100):
            with sredis.pipeline(transaction=False) as pipe:
                for fields in sent[i : i + 100]:
                    pipe.xadd(keys.traces, fields)
                pipe.execute()
            time.sleep(0.1)

    producer = threading.Thread(target=produce)
    producer.start()
    proc = spawn("detect", **settings)
    for _ in range(KILLS):
        # Killed while it works: after it started reading, at a random point.
        wait_until("detect to run", lambda: "event=running" in proc.log(), 30)
        time.sleep(rng.uniform(0.05, 0.6))
        proc.kill()
        proc = spawn("detect", **settings)
    producer.join()

    def closed() -> dict[bytes, bytes] | None:
        return next((f for _i, f in sredis.xrange(keys.incidents) if f[b"state"] == b"closed"),
                    None)

    entry = wait_until("the incident to close", closed, 60)
    wait_until("the last detect process to run", lambda: "event=running" in proc.log(), 30)
    assert proc.terminate() == 0, proc.log()
    assert isinstance(entry, dict)
    start_ns = [int(e["start_ns"]) for e in events]
    first, last = WEEK_AGO_MS + SLOW[0] * MIN_MS, WEEK_AGO_MS + (SLOW[1] + 5) * MIN_MS
    expected = sum(1 for ns in start_ns if first <= ns // 1_000_000 < last)
    assert int(entry[b"started_ms"]) == first
    assert int(entry[b"ended_ms"]) == WEEK_AGO_MS + SLOW[1] * MIN_MS
    assert int(entry[b"requests"]) == expected
    assert sredis.xpending(keys.traces, "incidents")["pending"] == 0
    changes = [(f[b"id"], f[b"state"]) for _i, f in sredis.xrange(keys.incidents)]
    assert changes.count((entry[b"id"], b"open")) == 1, changes
    assert changes.count((entry[b"id"], b"closed")) == 1, changes
    assert sredis.zcard(keys.incidents_open) == 0
    assert sredis.zscore(keys.incidents_closed, entry[b"id"]) == int(entry[b"ended_ms"])
    tag = entry[b"id"].decode().rpartition(":")[0]
    assert not sredis.exists(keys.incident_pending(tag))
    report("detect_crash_count_once", kills=KILLS, sent=len(sent), distinct=len(events),
           incident_requests=expected)
