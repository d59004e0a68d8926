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
from tests.reliability.test_2_poison_entries import (  # noqa: F401, E402
    test_entry_delivered_too_often_is_dead_lettered_and_acked,
    test_poison_is_dead_lettered_and_good_entries_in_the_same_batch_count,
    test_processing_failure_dead_letters_only_the_culprit,
)
from tests.reliability.test_3_trim_keeps_unread import (  # noqa: F401, E402
    test_stalled_group_keeps_its_entries_and_is_reported,
    test_trim_never_passes_undelivered_entries,
)
from tests.reliability.test_5_graceful_shutdown import (  # noqa: F401, E402
    test_sigterm_under_load_leaves_nothing_pending,
)
from tests.reliability.test_8_input_bounds import (  # noqa: F401, E402
    test_endpoint_cap_bounds_cardinality_with_metric_and_log,
    test_names_over_the_limit_are_dead_lettered_with_the_limit,
    test_service_cap_bounds_cardinality_with_metric_and_log,
)
