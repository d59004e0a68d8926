"""The single-node pipeline tests, run unchanged on the 3-primary cluster.

Their `redis` fixture is the cluster client here (tests/cluster/conftest.py), so ingest
takes its per-slot path and recompute stores per slot; what they assert (each sample
counted once, each bucket marked once per window, dead letters, held marks, split work,
recreated groups) must hold all the same.
"""

from __future__ import annotations

import pytest

from tests.pipeline.ingest.test_stage import (  # noqa: F401  (collected here too)
    test_a_list_recreated_mid_window_gets_its_ttl,
    test_a_mark_deleted_mid_window_is_set_again,
    test_a_stop_handles_the_batch_read_ahead_and_leaves_nothing_pending,
    test_flagged_events_are_recorded_once_among_normal_ones_and_capped_buckets,
    test_many_batches_of_one_window_mark_each_bucket_once,
    test_wrong_type_in_a_marked_bucket_fails_before_any_write,
)
from tests.pipeline.test_pipeline_redis import (  # noqa: F401
    test_a_lost_group_is_recreated,
    test_bad_entries_are_dead_lettered_with_reasons_and_never_block_the_batch,
    test_marks_of_the_open_window_are_held_until_it_closes,
    test_recompute_window_builds_the_baseline_and_flags_after,
    test_run_loop_consumes_and_stops_cleanly,
    test_samples_are_counted_once_trimmed_and_marked_dirty_once,
    test_two_recompute_agents_split_the_marks,
)

pytestmark = pytest.mark.redis
