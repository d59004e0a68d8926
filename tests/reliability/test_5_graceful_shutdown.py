"""Promise 5: SIGTERM finishes the in-flight batch, acks it, exits in bounded time, leaves nothing pending."""

from __future__ import annotations

import random
import threading
import time

import pytest

from pipeline.keys import INGEST_GROUP, RECOMPUTE_GROUP
from tests.reliability.conftest import Truth, group_state, random_event, report
from tests.support import wait_until

# The runner cancels stages still running after 15 s; a clean stop must come well before.
EXIT_BOUND_S = 20.0
# Recompute's window here. Ingest is stopped just after a boundary, so its last marks
# stay in the open window (held by recompute) for this long while ingest exits.
WINDOW_S = 4


def window_second(r) -> float:  # type: ignore[no-untyped-def]
    """Seconds since the current window began, by the Redis server's clock (as recompute's)."""
    seconds, micros = r.time()
    return (seconds % WINDOW_S) + micros / 1e6


@pytest.mark.slow
def test_sigterm_under_load_leaves_nothing_pending(sredis, truth: Truth, spawn) -> None:
    rng = random.Random(5)
    keys = truth.keys
    # Rings hold every sample (the default 1000 per bucket would drop the oldest once a
    # fast producer sends more than 18 x 1000, and the count below would miss them).
    settings = {"ingest_batch_size": 50, "recompute_interval_s": WINDOW_S, "api_cache_ttl_s": 1,
                "rule_window_size": 100000}
    ingest = [spawn("ingest", ingest_consumer=f"g{i}", **settings) for i in range(2)]
    recompute = spawn("recompute", ingest_consumer="g-r", **settings)
    wait_until("the groups", lambda: group_state(sredis, keys.traces) != (-1, -1)
               and group_state(sredis, keys.dirty, RECOMPUTE_GROUP) != (-1, -1), 30)
    stop = threading.Event()
    sent = 0

    def produce() -> None:
        nonlocal sent
        while not stop.is_set():
            with sredis.pipeline(transaction=False) as pipe:
                for _ in range(50):
                    pipe.xadd(keys.traces, random_event(truth, rng))
                pipe.execute()
            sent += 50
            time.sleep(0.01)

    producer = threading.Thread(target=produce)
    producer.start()
    try:
        time.sleep(1.0)
        # Just after a boundary, mid-batch: the marks ingest makes until it exits are held
        # by recompute until the window closes, nearly a whole window later.
        wait_until("a window to begin", lambda: window_second(sredis) < 0.3, 2 * WINDOW_S,
                   every_s=0.01)
        wait_until("ingest mid-batch", lambda: group_state(sredis, keys.traces)[1] > 0, 20,
                   every_s=0.005)
        started = time.monotonic()
        for proc in ingest:
            proc.popen.send_signal(15)
        codes = [proc.popen.wait(EXIT_BOUND_S) for proc in ingest]
        ingest_s = time.monotonic() - started
    finally:
        stop.set()
        producer.join()
    # Marks of the open window are held pending by recompute until it stops.
    wait_until("recompute to hold marks", lambda: group_state(
        sredis, keys.dirty, RECOMPUTE_GROUP)[1] > 0, WINDOW_S, every_s=0.01)
    held = group_state(sredis, keys.dirty, RECOMPUTE_GROUP)[1]
    codes.append(recompute.terminate(EXIT_BOUND_S))

    assert codes == [0, 0, 0], [p.log()[-2000:] for p in [*ingest, recompute]]
    undelivered, pending = group_state(sredis, keys.traces)
    assert pending == 0
    assert group_state(sredis, keys.dirty, RECOMPUTE_GROUP)[1] == 0
    assert sredis.xinfo_consumers(keys.traces, INGEST_GROUP) == []  # clean stops leave
    processed = sum(sum(c.values()) for c in truth.counted(sredis).values())
    assert processed + undelivered == sent  # everything is either counted or still queued
    assert all("event=stopped" in p.log() for p in [*ingest, recompute])
    report("graceful_shutdown", traces_sent=sent, counted=processed, left_queued=undelivered,
           pending_after=0, marks_held_at_stop=held, exit_codes=codes,
           ingest_exit_within_s=EXIT_BOUND_S, ingest_exit_s=round(ingest_s, 2))
