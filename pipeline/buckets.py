"""Buckets: hour of day (0-23) in an IANA zone and weekday/weekend, and the bucket ids.

This module is the one place that decides a trace's bucket: ingest (where a sample goes),
the check API, the CLI and the fallback levels all call `bucket_of` or `ZoneBuckets`.
Saturdays, Sundays and the calendar's holidays (pipeline/daytypes.py) are `weekend`.

A bucket id names (service, endpoint, hour, day type): `{checkout|POST /pay}:14:weekday`.
Names are percent-escaped for `% { } | :` and control characters, which keeps the
`{svc|ep}` part (the Redis Cluster hash tag of every key of the endpoint) unambiguous and
the id splittable.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from urllib.parse import unquote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pipeline.daytypes import EXTRA_NAME, NO_HOLIDAYS, WEEKEND_DAYS, Calendar
from pipeline.errors import ConfigError

DayType = Literal["weekday", "weekend"]
DAY_TYPES: tuple[DayType, ...] = ("weekday", "weekend")
NS_PER_S = 1_000_000_000

# Limits on names (characters, before escaping). Real service names are short; endpoint
# names carry a method and a route template. Longer ones are almost always raw URLs with
# IDs in them, which would explode the number of buckets, so they are rejected.
MAX_SERVICE_CHARS = 128
MAX_ENDPOINT_CHARS = 256
_ESCAPED = re.compile(r"[%{}|:\x00-\x1f\x7f]")
_BUCKET_ID = re.compile(r"^\{([^{}|]*)\|([^{}|]*)\}:(\d{1,2}):(weekday|weekend)$")


@dataclass(frozen=True, slots=True)
class TimeBucket:
    hour: int
    day_type: DayType
    # The holiday's name when a holiday made this day a weekend (not part of the id: a
    # holiday's samples go to the weekend bucket of their hour).
    holiday: str | None = None

    def label(self, tz_name: str) -> str:
        if self.holiday is None:
            return f"{self.hour:02d}:00 {self.day_type} {tz_name}"
        named = "" if self.holiday == EXTRA_NAME else f": {self.holiday}"
        return f"{self.hour:02d}:00 {self.day_type} (holiday{named}) {tz_name}"


def load_zone(name: str) -> ZoneInfo:
    """Resolve an IANA zone name, failing with an operator-readable message."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise ConfigError(
            f"unknown time zone {name!r}: use an IANA name such as 'Asia/Taipei' or 'UTC'"
        ) from e


def bucket_of(start_ns: int, zone: ZoneInfo, calendar: Calendar = NO_HOLIDAYS) -> TimeBucket:
    """The bucket a trace starting at `start_ns` (unix ns) falls in, DST-correct; a
    holiday of `calendar` (on the local date) is a weekend day."""
    local = datetime.fromtimestamp(start_ns // NS_PER_S, tz=zone)
    if local.weekday() in WEEKEND_DAYS:
        return TimeBucket(local.hour, "weekend")
    holiday = calendar.holiday(local.date())
    if holiday is not None:
        return TimeBucket(local.hour, "weekend", holiday)
    return TimeBucket(local.hour, "weekday")


# Cache granularity. Every UTC offset in use since the 1980s is a multiple of 15 minutes
# (India +5:30, Nepal +5:45, Lord Howe's 30-minute DST) and so is every transition, so a
# 15-minute slot lies in one local hour unless a transition falls inside it; those slots
# are detected and computed exactly every time.
SLOT_NS = 900 * NS_PER_S
# ~42 days of slots; traces arrive within minutes of "now", so a full cache is rare and
# simply starts over.
MAX_CACHED_SLOTS = 4096


class ZoneBuckets:
    """`bucket_of` for one zone and calendar with a cache per 15-minute UTC slot: the check
    path and ingest pay a dict lookup instead of a tz conversion (and a holiday lookup),
    and stay DST-correct. A local date starts at a local midnight, which a uniform slot
    never straddles, so a slot's holiday is its first instant's."""

    def __init__(self, zone: ZoneInfo, calendar: Calendar = NO_HOLIDAYS,
                 max_slots: int = MAX_CACHED_SLOTS) -> None:
        self.zone = zone
        self.calendar = calendar
        self._max_slots = max_slots
        self._slots: dict[int, TimeBucket | None] = {}

    def __call__(self, start_ns: int) -> TimeBucket:
        slot = start_ns // SLOT_NS
        hit = self._slots.get(slot, _UNKNOWN)
        if hit is _UNKNOWN:
            hit = self._fill(slot)
        return hit if hit is not None else bucket_of(start_ns, self.zone, self.calendar)

    def of_slot(self, slot: int) -> TimeBucket | None:
        """The bucket of every instant in `slot` (`start_ns // SLOT_NS`), or None when
        the slot straddles an offset change (then only `bucket_of` answers)."""
        hit = self._slots.get(slot, _UNKNOWN)
        return self._fill(slot) if hit is _UNKNOWN else hit

    def _fill(self, slot: int) -> TimeBucket | None:
        """The slot's one bucket, or None when the slot straddles an offset change."""
        if len(self._slots) >= self._max_slots:
            self._slots.clear()
        first_s = slot * (SLOT_NS // NS_PER_S)
        last_s = first_s + SLOT_NS // NS_PER_S - 1
        first = datetime.fromtimestamp(first_s, tz=self.zone)
        last = datetime.fromtimestamp(last_s, tz=self.zone)
        offset = first.utcoffset()
        uniform = (
            offset is not None and offset == last.utcoffset()
            and offset.total_seconds() % (SLOT_NS // NS_PER_S) == 0
        )
        bucket = bucket_of(first_s * NS_PER_S, self.zone, self.calendar) if uniform else None
        self._slots[slot] = bucket
        return bucket


_UNKNOWN = TimeBucket(-1, "weekday")


def parse_day_type(value: str) -> DayType:
    if value == "weekday":
        return "weekday"
    if value == "weekend":
        return "weekend"
    raise ValueError(f"dayType must be 'weekday' or 'weekend', not {value!r}")


def escape(name: str) -> str:
    """Percent-escape the characters that would break the hash tag or the id layout."""
    return _ESCAPED.sub(lambda m: f"%{ord(m.group()):02X}", name)


@dataclass(frozen=True, slots=True)
class BucketRef:
    """One baseline bucket: (service, endpoint, hour, day type)."""

    service: str
    endpoint: str
    bucket: TimeBucket

    @property
    def tag(self) -> str:
        return f"{{{escape(self.service)}|{escape(self.endpoint)}}}"

    @property
    def id(self) -> str:
        return f"{self.tag}:{self.bucket.hour}:{self.bucket.day_type}"

    @classmethod
    def parse(cls, bucket_id: str) -> BucketRef:
        m = _BUCKET_ID.fullmatch(bucket_id)
        if m is None or not 0 <= int(m.group(3)) <= 23:
            raise ValueError(f"not a bucket id: {bucket_id!r}")
        bucket = TimeBucket(int(m.group(3)), parse_day_type(m.group(4)))
        return cls(unquote(m.group(1)), unquote(m.group(2)), bucket)
