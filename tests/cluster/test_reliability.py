"""The reliability promises, proven on the 3-primary cluster by the single-node tests
themselves (their `sredis`, `spawn` and `truth` fixtures point at the cluster here):
SIGKILLed ingest consumers under load count every trace exactly once with every bucket
marked, and a recompute agent killed mid-window leaves no dirty bucket behind."""

from __future__ import annotations

from tests.reliability.test_1_crash_count_once import (  # noqa: F401  (collected here too)
    test_sigkilled_consumers_count_every_trace_exactly_once,
)
from tests.reliability.test_6_recompute_crash import (  # noqa: F401
    test_killed_agent_leaves_no_dirty_bucket_behind,
)
