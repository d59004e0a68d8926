"""Time buckets: hour of day (0-23) in an IANA zone and weekday/weekend, from a unix-ns start."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pipeline.errors import ConfigError

DayType = Literal["weekday", "weekend"]
DAY_TYPES: tuple[DayType, ...] = ("weekday", "weekend")
NS_PER_S = 1_000_000_000
# Saturday and Sunday, as datetime.weekday() numbers them.
WEEKEND_DAYS = frozenset({5, 6})


@dataclass(frozen=True, slots=True)
class TimeBucket:
    hour: int
    day_type: DayType

    def label(self, tz_name: str) -> str:
        return f"{self.hour:02d}:00 {self.day_type} {tz_name}"


def load_zone(name: str) -> ZoneInfo:
    """Resolve an IANA zone name, failing with an operator-readable message."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise ConfigError(
            f"unknown time zone {name!r}: use an IANA name such as 'Asia/Taipei' or 'UTC'"
        ) from e


def bucket_of(start_ns: int, zone: ZoneInfo) -> TimeBucket:
    """The bucket a trace starting at `start_ns` (unix ns) falls in, DST-correct."""
    local = datetime.fromtimestamp(start_ns // NS_PER_S, tz=zone)
    day_type: DayType = "weekend" if local.weekday() in WEEKEND_DAYS else "weekday"
    return TimeBucket(local.hour, day_type)


def parse_day_type(value: str) -> DayType:
    if value == "weekday":
        return "weekday"
    if value == "weekend":
        return "weekend"
    raise ValueError(f"dayType must be 'weekday' or 'weekend', not {value!r}")
