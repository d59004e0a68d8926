"""Holidays are weekend days: the calendar, the bucket of such a day, and its settings."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import pytest

from pipeline.buckets import SLOT_NS, TimeBucket, ZoneBuckets, bucket_of, load_zone
from pipeline.daytypes import Calendar
from pipeline.errors import ConfigError
from services.config import Settings

TAIPEI = load_zone("Asia/Taipei")
NS = 1_000_000_000
CALENDAR = Calendar.of("TW", ["2026-12-24"])


def at(y: int, m: int, d: int, h: int) -> int:
    """Unix ns of a Taipei wall-clock time."""
    return int(datetime(y, m, d, h, tzinfo=TAIPEI).timestamp()) * NS


def test_a_country_holiday_and_an_extra_date_are_named() -> None:
    assert CALENDAR.holiday(date(2026, 1, 1)) == "Founding Day of the Republic of China"  # Thu
    assert CALENDAR.holiday(date(2026, 12, 24)) == "holiday"  # TLA_HOLIDAYS_EXTRA
    assert CALENDAR.holiday(date(2026, 12, 23)) is None
    assert Calendar().holiday(date(2026, 1, 1)) is None


def test_a_holidays_hours_go_to_the_weekend_buckets() -> None:
    new_year = bucket_of(at(2026, 1, 1, 14), TAIPEI, CALENDAR)
    assert new_year == TimeBucket(14, "weekend", "Founding Day of the Republic of China")
    assert new_year.label("Asia/Taipei") == (
        "14:00 weekend (holiday: Founding Day of the Republic of China) Asia/Taipei")
    eve = bucket_of(at(2026, 12, 24, 9), TAIPEI, CALENDAR)
    assert (eve.day_type, eve.label("UTC")) == ("weekend", "09:00 weekend (holiday) UTC")
    # the day before, and without the calendar, they are ordinary weekdays
    assert bucket_of(at(2025, 12, 31, 23), TAIPEI, CALENDAR) == TimeBucket(23, "weekday")
    assert bucket_of(at(2026, 1, 1, 14), TAIPEI) == TimeBucket(14, "weekday")
    # a Saturday stays a plain weekend day
    assert bucket_of(at(2026, 1, 3, 10), TAIPEI, CALENDAR) == TimeBucket(10, "weekend")


def test_the_cached_slots_agree_with_bucket_of_across_a_holidays_midnights() -> None:
    slots = ZoneBuckets(TAIPEI, CALENDAR)
    start = at(2025, 12, 31, 20)
    for t in range(start, start + 10 * 3600 * NS, SLOT_NS // 3):
        assert slots(t) == bucket_of(t, TAIPEI, CALENDAR), t


def test_settings_take_a_country_and_dates_from_yaml_or_the_environment(tmp_path: Path) -> None:
    env = Settings.load(env={"TLA_HOLIDAYS_COUNTRY": "tw",
                             "TLA_HOLIDAYS_EXTRA": "2026-12-24, 2026-12-31"})
    assert env.holidays.extra == ("2026-12-24", "2026-12-31")
    assert env.calendar().holiday(date(2026, 12, 31)) == "holiday"
    config = tmp_path / "c.yaml"
    config.write_text("holidays:\n  country: US\n  extra: [2026-12-24]\n")
    yaml_ = Settings.load(config, env={})
    assert yaml_.holidays.extra == ("2026-12-24",)
    assert yaml_.calendar().holiday(date(2026, 7, 4)) is not None  # US Independence Day
    assert Settings.load(env={}).calendar().empty


@pytest.mark.parametrize(("env", "message"), [
    ({"TLA_HOLIDAYS_COUNTRY": "XX"}, "TLA_HOLIDAYS_COUNTRY 'XX' is not a country"),
    ({"TLA_HOLIDAYS_EXTRA": "2026-12-24,24/12/2026"}, "'24/12/2026' is not a date"),
    ({"TLA_RULE_FALLBACK": "maybe"}, "TLA_RULE_FALLBACK must be on or off"),
])
def test_bad_holiday_settings_say_what_to_write(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.load(env=env)


def test_fallback_is_on_by_default_and_off_turns_it_off() -> None:
    assert Settings.load(env={}).rule_params().fallback is True
    assert Settings.load(env={"TLA_RULE_FALLBACK": "off"}).rule_params().fallback is False
