"""Which local dates are weekends: Saturdays, Sundays and holidays (`holidays.*`, TLA_HOLIDAYS_*).

A holiday behaves like a weekend: its hours go to the `weekend` buckets, and verdicts on
them say "holiday". Holidays come from the maintained `holidays` package for one country
(`TLA_HOLIDAYS_COUNTRY`, an ISO 3166 code such as `TW`) and from a list of extra dates
(`TLA_HOLIDAYS_EXTRA`: company days off, bridge days). The calendar is asked once per
15-minute slot (`pipeline.buckets.ZoneBuckets` caches it), never per event.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any

from pipeline.errors import ConfigError
from pipeline.settings import setting

# Saturday and Sunday, as datetime.weekday() numbers them.
WEEKEND_DAYS = frozenset({5, 6})
# What the verdict says of a date listed in TLA_HOLIDAYS_EXTRA.
EXTRA_NAME = "holiday"


@dataclass(frozen=True, slots=True)
class HolidaySettings:
    """`holidays.*` (TLA_HOLIDAYS_*): dates whose buckets are `weekend`."""

    country: str | None = setting(
        None, "ISO 3166 country code (e.g. `TW`, `US`, `DE`) whose public holidays are "
        "weekend days, from the `holidays` package", unset="no country holidays")
    extra: tuple[str, ...] = setting(
        (), "more dates that are weekend days, `YYYY-MM-DD` (YAML list, or comma-separated "
        "in the variable)")

    def calendar(self) -> Calendar:
        return Calendar.of(self.country, self.extra)


class Calendar:
    """`holiday(d)`: the name of the holiday on local date `d`, or None."""

    def __init__(self, country: Any = None, extra: Iterable[date] = ()) -> None:
        """`country`: a `holidays.HolidayBase` (years are expanded on demand)."""
        self._country = country
        self._extra = frozenset(extra)

    @classmethod
    def of(cls, country: str | None, extra: Iterable[str]) -> Calendar:
        """From the settings' values; ConfigError naming the bad one."""
        return cls(_country_holidays(country) if country else None, map(parse_date, extra))

    @property
    def empty(self) -> bool:
        return self._country is None and not self._extra

    def holiday(self, day: date) -> str | None:
        if day in self._extra:
            return EXTRA_NAME
        if self._country is None:
            return None
        name = self._country.get(day)
        return str(name) if name else None


NO_HOLIDAYS = Calendar()


def parse_date(text: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError as e:
        raise ConfigError(
            f"TLA_HOLIDAYS_EXTRA: {text!r} is not a date; write YYYY-MM-DD, e.g. 2026-12-24"
        ) from e


def _country_holidays(code: str) -> Any:
    import holidays  # imported only when a country is set: it loads ~500 countries' rules

    code = code.strip().upper()
    if code not in holidays.list_supported_countries():
        raise ConfigError(
            f"TLA_HOLIDAYS_COUNTRY {code!r} is not a country the `holidays` package knows; "
            "use an ISO 3166 alpha-2 code such as TW, US, DE or JP"
        )
    return holidays.country_holidays(code)
