"""Named schedules: days, hours (end exclusive, overnight), exceptions, zones."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from holdd.core.rules.schedule import Schedule, build_schedule, parse_days, parse_hours


def schedule(
    days: list[str] | None = None,
    hours: list[str] | None = None,
    exceptions: list[object] | None = None,
    tz: str = "Europe/Moscow",
) -> Schedule:
    built, problems = build_schedule("s", tz, days or [], hours or [], exceptions or [])
    assert built is not None, [str(p) for p in problems]
    return built


def at(text: str, tz: str = "Europe/Moscow") -> float:
    return dt.datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(tz)).timestamp()


def test_days_and_hours_end_exclusive() -> None:
    office = schedule(["mon-fri"], ["09:00-13:00", "14:00-18:00"])
    assert office.contains(at("2026-11-26 09:00"))  # Thursday
    assert office.contains(at("2026-11-26 12:59:59"))
    assert not office.contains(at("2026-11-26 13:00"))
    assert not office.contains(at("2026-11-26 08:59:59"))
    assert not office.contains(at("2026-11-26 18:00"))
    assert not office.contains(at("2026-11-28 10:00"))  # Saturday


def test_overnight_hours_belong_to_the_day_they_start() -> None:
    friday_night = schedule(["fri"], ["22:00-06:00"])
    assert friday_night.contains(at("2026-11-27 23:00"))  # Friday evening
    assert friday_night.contains(at("2026-11-28 05:59"))  # Saturday morning
    assert not friday_night.contains(at("2026-11-28 06:00"))
    assert not friday_night.contains(at("2026-11-27 03:00"))  # Friday morning: Thursday's night
    assert not friday_night.contains(at("2026-11-28 23:00"))


def test_exceptions_remove_whole_days_including_their_night() -> None:
    s = schedule([], ["22:00-06:00"], ["2026-12-31", "2027-01-01..2027-01-02", dt.date(2027, 1, 5)])
    assert s.contains(at("2026-12-30 23:00"))
    assert s.contains(at("2026-12-31 03:00"))  # the night of the 30th
    assert not s.contains(at("2026-12-31 23:00"))
    assert not s.contains(at("2027-01-01 03:00"))  # the night of the 31st
    assert not s.contains(at("2027-01-02 23:00"))
    assert s.contains(at("2027-01-03 23:00"))
    assert not s.contains(at("2027-01-05 22:30"))


def test_day_ranges_wrap_and_every_day_by_default() -> None:
    assert parse_days("fri-mon") == {4, 5, 6, 0}
    assert parse_days("Sat") == {5}
    assert parse_days("daily") == set(range(7))
    assert schedule(hours=["00:00-24:00"]).contains(at("2026-11-29 23:59:59"))
    assert schedule().contains(at("2026-11-29 12:00"))


def test_the_schedule_zone_decides_not_the_host() -> None:
    berlin = schedule(hours=["09:00-10:00"], tz="Europe/Berlin")
    # 09:30 in Berlin is 07:30 UTC in summer (CEST) and 08:30 UTC in winter (CET).
    assert berlin.contains(dt.datetime(2026, 7, 1, 7, 30, tzinfo=dt.UTC).timestamp())
    assert not berlin.contains(dt.datetime(2026, 7, 1, 8, 30, tzinfo=dt.UTC).timestamp())
    assert berlin.contains(dt.datetime(2026, 1, 15, 8, 30, tzinfo=dt.UTC).timestamp())
    assert berlin.describe(at("2026-11-26 11:30")) == "thu 2026-11-26 09:30 Europe/Berlin"


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("days", ["mon-fry"], "bad day 'fry' in 'mon-fry'"),
        ("days", ["holiday"], "bad day 'holiday'"),
        ("hours", ["9-18"], "bad hours '9-18'"),
        ("hours", ["09:00"], "bad hours '09:00'"),
        ("hours", ["10:00-10:00"], "the range is empty"),
        ("hours", ["24:00-06:00"], "bad time '24:00'"),
        ("except", ["31.12.2026"], "bad date '31.12.2026'"),
        ("except", ["2027-01-08..2027-01-01"], "ends before it starts"),
    ],
)
def test_bad_values_are_named_with_their_index(key: str, value: list[str], words: str) -> None:
    args: dict[str, list[str]] = {"days": [], "hours": [], "exceptions": []}
    args["exceptions" if key == "except" else key] = ["mon", *value] if key == "days" else value
    built, problems = build_schedule(
        "s",
        "Europe/Moscow",
        args["days"],
        args["hours"],
        args["exceptions"],
    )
    assert built is None
    assert [(p.key, p.index) for p in problems] == [(key, 1 if key == "days" else 0)]
    assert words in str(problems[0])


def test_an_unknown_zone_suggests_a_close_one() -> None:
    built, problems = build_schedule("s", "Asia/Yekaterinbur", [], [], [])
    assert built is None and problems[0].hint == "did you mean 'Asia/Yekaterinburg'?"
    assert parse_hours("22:00-06:00") == (79200, 21600)
