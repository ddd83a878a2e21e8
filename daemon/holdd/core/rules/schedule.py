"""Named schedules: `[schedule.NAME]` tables of rule files (core).

```toml
[schedule.office]
timezone = "Europe/Moscow"        # IANA name (zoneinfo; the tzdata package backs it)
days = ["mon-fri"]                # or "sat", "fri-mon" (wraps), "daily"; all days when absent
hours = ["09:00-13:00", "14:00-18:00"]   # end exclusive; "22:00-06:00" runs overnight;
                                         # the whole day when absent
except = ["2026-12-31", "2027-01-01..2027-01-08"]   # dates off, ranges inclusive
```

A moment is inside the schedule when, in the schedule's time zone, it falls in
one of the hour ranges of a listed day that is not an exception. A range
belongs to the day it starts on: with `days = ["fri"]` and `hours =
["22:00-06:00"]`, Saturday 03:00 is inside and Friday 03:00 is not; an
exception date removes the ranges that start on it. The moment is a unix
timestamp passed in (`now` of the engine); this module reads no clock.
"""

from __future__ import annotations

import datetime as dt
import difflib
from collections.abc import Sequence
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_LONG_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_ALL_DAYS = frozenset(range(7))


class ScheduleError(ValueError):
    """One bad value of a schedule: `index` is its position in the list, if any."""

    def __init__(self, key: str, what: str, index: int | None = None, hint: str | None = None):
        super().__init__(what)
        self.key = key
        self.index = index
        self.hint = hint


@dataclass(frozen=True, slots=True)
class Schedule:
    name: str
    timezone: str
    tz: dt.tzinfo = field(compare=False, repr=False)
    #: Weekdays (0 = Monday) on which the hour ranges start.
    days: frozenset[int] = _ALL_DAYS
    #: [start, end) in seconds after local midnight; end < start runs overnight.
    hours: tuple[tuple[int, int], ...] = ((0, 86_400),)
    #: Inclusive date ranges that are off.
    exceptions: tuple[tuple[dt.date, dt.date], ...] = ()

    def local(self, at: float) -> dt.datetime:
        return dt.datetime.fromtimestamp(at, self.tz)

    def contains(self, at: float) -> bool:
        local = self.local(at)
        today = local.date()
        second = local.hour * 3600 + local.minute * 60 + local.second + local.microsecond / 1e6
        for start, end in self.hours:
            if start < end:
                if start <= second < end and self._on(today):
                    return True
            else:
                # Overnight: the evening part belongs to today, the early
                # morning part to the range that started yesterday.
                if second >= start and self._on(today):
                    return True
                if second < end and self._on(today - dt.timedelta(days=1)):
                    return True
        return False

    def _on(self, day: dt.date) -> bool:
        if day.weekday() not in self.days:
            return False
        return not any(first <= day <= last for first, last in self.exceptions)

    def describe(self, at: float) -> str:
        """The moment as the schedule sees it, for traces: "sat 2026-11-28 10:00 Europe/Moscow"."""
        local = self.local(at)
        return f"{DAY_NAMES[local.weekday()]} {local:%Y-%m-%d %H:%M} {self.timezone}"


def build_schedule(
    name: str,
    timezone: str,
    days: Sequence[str],
    hours: Sequence[str],
    exceptions: Sequence[object],
) -> tuple[Schedule | None, list[ScheduleError]]:
    """A schedule from its written values, or every problem with them."""
    problems: list[ScheduleError] = []
    tz: dt.tzinfo | None = None
    try:
        tz = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        close = difflib.get_close_matches(timezone, available_timezones(), n=1)
        problems.append(
            ScheduleError(
                "timezone",
                f"unknown timezone {timezone!r}",
                hint=f"did you mean {close[0]!r}?"
                if close
                else "an IANA name such as 'Europe/Moscow' or 'Asia/Yekaterinburg'",
            )
        )
    weekdays: set[int] = set()
    for i, text in enumerate(days):
        try:
            weekdays |= parse_days(text)
        except ValueError as exc:
            problems.append(
                ScheduleError("days", str(exc), i, "mon, tue, ... sun, or a range like 'mon-fri'")
            )
    ranges: list[tuple[int, int]] = []
    for i, text in enumerate(hours):
        try:
            ranges.append(parse_hours(text))
        except ValueError as exc:
            problems.append(
                ScheduleError(
                    "hours", str(exc), i, "HH:MM-HH:MM, end exclusive, e.g. '09:00-18:00'"
                )
            )
    off: list[tuple[dt.date, dt.date]] = []
    for i, value in enumerate(exceptions):
        try:
            off.append(parse_exception(value))
        except ValueError as exc:
            problems.append(
                ScheduleError(
                    "except", str(exc), i, "a date '2026-12-31' or a range '2027-01-01..2027-01-08'"
                )
            )
    if problems or tz is None:
        return None, problems
    return (
        Schedule(
            name=name,
            timezone=timezone,
            tz=tz,
            days=frozenset(weekdays) if days else _ALL_DAYS,
            hours=tuple(ranges) if hours else ((0, 86_400),),
            exceptions=tuple(off),
        ),
        [],
    )


def _day(text: str) -> int:
    word = text.strip().casefold()
    if word in DAY_NAMES:
        return DAY_NAMES.index(word)
    if word in _LONG_NAMES:
        return _LONG_NAMES.index(word)
    raise ValueError(f"bad day {text.strip()!r}")


def parse_days(text: str) -> set[int]:
    """ "mon" -> {0}; "mon-fri" -> {0..4}; "fri-mon" wraps -> {4, 5, 6, 0}; "daily" -> all."""
    word = text.strip().casefold()
    if word in ("daily", "*", "mon-sun"):
        return set(_ALL_DAYS)
    if "-" in word:
        first_text, _, last_text = word.partition("-")
        try:
            first, last = _day(first_text), _day(last_text)
        except ValueError as exc:
            raise ValueError(f"{exc} in {text.strip()!r}") from None
        span = (last - first) % 7
        return {(first + k) % 7 for k in range(span + 1)}
    return {_day(word)}


def _clock(text: str, *, end: bool) -> int:
    hh, sep, mm = text.strip().partition(":")
    if not sep or not hh.isdigit() or not mm.isdigit() or len(mm) != 2 or len(hh) > 2:
        raise ValueError(f"bad time {text.strip()!r}")
    hour, minute = int(hh), int(mm)
    if end and hour == 24 and minute == 0:
        return 86_400
    if hour > 23 or minute > 59:
        raise ValueError(f"bad time {text.strip()!r}")
    return hour * 3600 + minute * 60


def parse_hours(text: str) -> tuple[int, int]:
    """ "09:00-18:00" -> (32400, 64800) seconds; "22:00-06:00" runs overnight."""
    start_text, sep, end_text = text.partition("-")
    if not sep:
        raise ValueError(f"bad hours {text!r}")
    try:
        start = _clock(start_text, end=False)
        end = _clock(end_text, end=True)
    except ValueError as exc:
        raise ValueError(f"bad hours {text!r}: {exc}") from None
    if start == end:
        raise ValueError(f"bad hours {text!r}: the range is empty")
    return start, end


def parse_exception(value: object) -> tuple[dt.date, dt.date]:
    """ "2026-12-31" or "2027-01-01..2027-01-08" (inclusive); a TOML date works too."""
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value, value
    if not isinstance(value, str):
        raise ValueError(f"bad date {value!r}")
    first_text, sep, last_text = value.partition("..")
    try:
        first = dt.date.fromisoformat(first_text.strip())
        last = dt.date.fromisoformat(last_text.strip()) if sep else first
    except ValueError:
        raise ValueError(f"bad date {value!r}") from None
    if last < first:
        raise ValueError(f"date range {value!r} ends before it starts")
    return first, last
