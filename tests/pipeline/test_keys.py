"""Key schema: hash tags, escaping, bucket ids that round-trip."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.buckets import BucketRef, TimeBucket, escape
from pipeline.errors import ConfigError
from pipeline.keys import Keys


def test_layout_matches_design() -> None:
    keys = Keys("tla:")
    ref = BucketRef("checkout", "POST /pay", TimeBucket(14, "weekday"))
    assert ref.id == "{checkout|POST /pay}:14:weekday"
    assert keys.dur(ref.id) == "tla:dur:{checkout|POST /pay}:14:weekday"
    assert keys.base(ref.id) == "tla:base:{checkout|POST /pay}:14:weekday"
    assert keys.seen(ref.tag, "ab" * 16) == "tla:seen:{checkout|POST /pay}:" + "ab" * 16
    assert (keys.traces, keys.dead, keys.dirty) == ("tla:traces", "tla:traces:dead", "tla:dirty")


def test_escaping_covers_the_separators_and_control_characters() -> None:
    assert escape("a%b{c}d|e:f") == "a%25b%7Bc%7Dd%7Ce%3Af"
    assert escape("x\ny\tz\x7f") == "x%0Ay%09z%7F"
    assert escape("GET /ü/日本") == "GET /ü/日本"


def hash_tag(key: str) -> str:
    """What Redis Cluster hashes: the text between the first { and the next }."""
    start = key.index("{")
    return key[start + 1 : key.index("}", start + 1)]


names = st.text(min_size=1, max_size=40)


@given(names, names, st.integers(0, 23), st.sampled_from(["weekday", "weekend"]))
def test_bucket_ids_round_trip_and_share_one_tag(svc: str, ep: str, hour: int, day: str) -> None:
    ref = BucketRef(svc, ep, TimeBucket(hour, day))  # type: ignore[arg-type]
    assert BucketRef.parse(ref.id) == ref
    keys = Keys("p:")
    tags = {hash_tag(k) for k in (keys.dur(ref.id), keys.base(ref.id), keys.mark(ref.id),
                                  keys.seen(ref.tag, "0" * 32))}
    assert tags == {ref.tag[1:-1]}


def test_distinct_names_never_collide() -> None:
    a = BucketRef("a|b", "c", TimeBucket(1, "weekday"))
    b = BucketRef("a", "b|c", TimeBucket(1, "weekday"))
    assert a.id != b.id


@pytest.mark.parametrize("bad", ["", "{a|b}:24:weekday", "{a|b}:1:weekday\n", "{a|b}:1:holiday", "{a}:1:weekday",
                                 "{a|b|c}:1:weekday"])
def test_bad_bucket_ids_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        BucketRef.parse(bad)


def test_prefix_with_braces_is_refused() -> None:
    with pytest.raises(ConfigError, match="hash tag"):
        Keys("{tla}:")
