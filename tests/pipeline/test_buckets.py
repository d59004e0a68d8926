"""Hour-of-day and day-type buckets, DST included."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from pipeline.buckets import TimeBucket, bucket_of, load_zone, parse_day_type
from pipeline.errors import ConfigError


def ns(dt: datetime) -> int:
    return int(dt.timestamp()) * 1_000_000_000


def test_taipei_is_utc_plus_8_and_knows_weekends() -> None:
    zone = load_zone("Asia/Taipei")
    # 2026-11-27 is a Friday; 18:30 UTC is 02:30 Saturday in Taipei.
    assert bucket_of(ns(datetime(2026, 11, 27, 18, 30, tzinfo=timezone.utc)), zone) == TimeBucket(2, "weekend")
    assert bucket_of(ns(datetime(2026, 11, 27, 6, 0, tzinfo=timezone.utc)), zone) == TimeBucket(14, "weekday")
    # Sunday 23:59 local is weekend, Monday 00:00 local is weekday.
    assert bucket_of(ns(datetime(2026, 11, 29, 15, 59, tzinfo=timezone.utc)), zone) == TimeBucket(23, "weekend")
    assert bucket_of(ns(datetime(2026, 11, 29, 16, 0, tzinfo=timezone.utc)), zone) == TimeBucket(0, "weekday")


def test_dst_transitions_follow_the_zone() -> None:
    ny = load_zone("America/New_York")
    # 2026-03-08 07:30 UTC is 03:30 EDT (clocks jumped from 02:00 to 03:00).
    assert bucket_of(ns(datetime(2026, 3, 8, 7, 30, tzinfo=timezone.utc)), ny).hour == 3
    # One hour earlier, 06:30 UTC, is 01:30 EST.
    assert bucket_of(ns(datetime(2026, 3, 8, 6, 30, tzinfo=timezone.utc)), ny).hour == 1
    # 2026-11-01: 05:30 and 06:30 UTC are both 01:xx local (the hour repeats).
    assert bucket_of(ns(datetime(2026, 11, 1, 5, 30, tzinfo=timezone.utc)), ny).hour == 1
    assert bucket_of(ns(datetime(2026, 11, 1, 6, 30, tzinfo=timezone.utc)), ny).hour == 1


def test_sub_second_precision_does_not_matter() -> None:
    zone = load_zone("UTC")
    base = ns(datetime(2026, 1, 5, 9, 59, 59, tzinfo=timezone.utc))
    assert bucket_of(base + 999_999_999, zone) == TimeBucket(9, "weekday")
    assert bucket_of(base + 1_000_000_000, zone) == TimeBucket(10, "weekday")


def test_unknown_zone_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="IANA"):
        load_zone("Mars/Olympus")


def test_day_type_parsing() -> None:
    assert parse_day_type("weekend") == "weekend"
    with pytest.raises(ValueError):
        parse_day_type("holiday")


def test_label_reads_like_a_person_writes() -> None:
    assert TimeBucket(9, "weekday").label("Asia/Taipei") == "09:00 weekday Asia/Taipei"
