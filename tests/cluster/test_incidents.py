"""The detect stage on the 3-primary cluster, proven by the single-node tests themselves
(their `redis`, `sredis`, `spawn` and `truth` fixtures point at the cluster here): the
per-endpoint judgement in its slot, the publication to `<p>incidents` and the indexes in
other slots, the lease, and promise 10 (SIGKILLed detect counts every request once)."""

from __future__ import annotations

from tests.pipeline.incidents.test_stage import (  # noqa: F401  (collected here too)
    test_a_crash_between_judging_and_publishing_loses_and_repeats_no_change,
    test_a_detector_that_lost_its_lease_writes_nothing,
    test_a_replayed_week_finds_its_incident_with_real_start_and_end,
    test_a_standby_waits_for_the_lease,
    test_group_is_independent_of_ingest,
    test_late_traces_within_the_lateness_count_and_later_ones_do_not,
    test_normal_traffic_opens_nothing,
    test_redelivered_entries_count_once_and_state_survives_a_restart,
)
from tests.reliability.test_10_detect_crash_count_once import (  # noqa: F401
    test_sigkilled_detect_counts_every_request_once,
)
