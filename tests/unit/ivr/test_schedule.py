"""schedule_state: weekly hours, day ranges, holidays and time zones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from ccswitch.apps.ivr.schedule import schedule_state
from ccswitch.config import ScheduleConfig

# 2024-03-01 is a Friday; 03-04 a Monday


def at(day: int, hh: int, mm: int = 0, month: int = 3, year: int = 2024,
       tz: timezone = UTC) -> datetime:
    return datetime(year, month, day, hh, mm, tzinfo=tz)


OFFICE = ScheduleConfig(hours={"mon-fri": ["09:00-12:30", "13:30-17:00"], "sat": ["10:00-12:00"]})


@pytest.mark.parametrize(("when", "state"), [
    (at(4, 8, 59), "closed"),
    (at(4, 9, 0), "open"),  # the start minute is open
    (at(4, 12, 29), "open"),
    (at(4, 12, 30), "closed"),  # the end minute is closed
    (at(4, 13, 0), "closed"),  # the lunch break
    (at(4, 13, 30), "open"),
    (at(1, 16, 59), "open"),  # Friday
    (at(1, 17, 0), "closed"),
    (at(2, 11, 0), "open"),  # Saturday
    (at(2, 14, 0), "closed"),
    (at(3, 11, 0), "closed"),  # Sunday: not listed
])
def test_weekly_hours(when: datetime, state: str) -> None:
    assert schedule_state(OFFICE, when) == state


def test_seconds_do_not_matter() -> None:
    assert schedule_state(OFFICE, at(4, 8, 59) + timedelta(seconds=59.9)) == "closed"
    assert schedule_state(OFFICE, at(4, 16, 59) + timedelta(seconds=59.9)) == "open"


@pytest.mark.parametrize(("day", "state"), [
    (1, "open"),  # fri
    (2, "open"),  # sat
    (3, "open"),  # sun
    (4, "open"),  # mon
    (5, "closed"),  # tue
    (6, "closed"),  # wed
    (7, "closed"),  # thu
])
def test_day_range_wrapping_around_the_week(day: int, state: str) -> None:
    cfg = ScheduleConfig(hours={"fri-mon": ["08:00-20:00"]})
    assert schedule_state(cfg, at(day, 12)) == state


@pytest.mark.parametrize(("day", "state"), [(2, "open"), (3, "open"), (4, "closed"),
                                            (6, "open"), (7, "closed")])
def test_day_lists_and_mixed_lists(day: int, state: str) -> None:
    cfg = ScheduleConfig(hours={"sat,sun": ["10:00-11:00"], "Wed": ["10:00-11:00"]})
    assert schedule_state(cfg, at(day, 10, 30)) == state


def test_list_of_ranges_and_singles() -> None:
    cfg = ScheduleConfig(hours={"mon, wed-thu": ["09:00-10:00"]})
    assert [schedule_state(cfg, at(d, 9, 30)) for d in (4, 5, 6, 7, 8)] == \
        ["open", "closed", "open", "open", "closed"]


def test_until_midnight_with_24_00() -> None:
    cfg = ScheduleConfig(hours={"mon": ["18:00-24:00"], "tue": ["00:00-24:00"]})
    assert schedule_state(cfg, at(4, 17, 59)) == "closed"
    assert schedule_state(cfg, at(4, 23, 59)) == "open"
    assert schedule_state(cfg, at(5, 0, 0)) == "open"
    assert schedule_state(cfg, at(5, 23, 59)) == "open"
    assert schedule_state(cfg, at(6, 0, 0)) == "closed"


def test_overnight_range_runs_into_the_next_day() -> None:
    # "fri 22:00-02:00" is Friday night: open until 2 am on Saturday morning
    cfg = ScheduleConfig(hours={"fri": ["22:00-02:00"]})
    assert schedule_state(cfg, at(1, 21, 59)) == "closed"
    assert schedule_state(cfg, at(1, 22, 0)) == "open"
    assert schedule_state(cfg, at(1, 23, 59)) == "open"
    assert schedule_state(cfg, at(2, 1, 59)) == "open"  # Saturday morning
    assert schedule_state(cfg, at(2, 2, 0)) == "closed"
    assert schedule_state(cfg, at(1, 1, 0)) == "closed"  # Friday morning: Thursday's night
    assert schedule_state(cfg, at(2, 23, 0)) == "closed"  # Saturday night


def test_overnight_range_on_sunday_wraps_to_monday() -> None:
    cfg = ScheduleConfig(hours={"sun": ["20:00-06:00"]})
    assert schedule_state(cfg, at(4, 5, 0)) == "open"  # Monday 05:00
    assert schedule_state(cfg, at(5, 5, 0)) == "closed"  # Tuesday 05:00


def test_no_hours_is_always_closed() -> None:
    assert schedule_state(ScheduleConfig(), at(4, 12)) == "closed"


def test_holidays_full_date_and_yearly() -> None:
    cfg = ScheduleConfig(hours={"mon-sun": ["00:00-24:00"]},
                         holidays=["2024-03-04", " 12-25 ", "01-01"])
    assert schedule_state(cfg, at(4, 12)) == "holiday"
    assert schedule_state(cfg, at(4, 12, year=2025)) == "open"  # dated: that year only
    assert schedule_state(cfg, at(25, 3, month=12)) == "holiday"
    assert schedule_state(cfg, at(25, 3, month=12, year=2031)) == "holiday"  # yearly
    assert schedule_state(cfg, at(1, 0, 0, month=1)) == "holiday"
    assert schedule_state(cfg, at(26, 12, month=12)) == "open"


def test_holiday_wins_over_closed_hours() -> None:
    cfg = ScheduleConfig(hours={"mon-fri": ["09:00-17:00"]}, holidays=["03-02"])
    assert schedule_state(cfg, at(2, 3)) == "holiday"  # a Saturday at 3 am


def test_time_zone_decides_open_or_closed() -> None:
    ny = ScheduleConfig(timezone="America/New_York", hours={"mon-fri": ["09:00-17:00"]})
    tokyo = ScheduleConfig(timezone="Asia/Tokyo", hours={"mon-fri": ["09:00-17:00"]})
    moment = at(4, 15)  # Monday 15:00 UTC = 10:00 in New York, Tuesday 00:00 in Tokyo
    assert schedule_state(ny, moment) == "open"
    assert schedule_state(tokyo, moment) == "closed"
    assert schedule_state(tokyo, at(4, 1)) == "open"  # Monday 10:00 in Tokyo
    assert schedule_state(ny, at(4, 1)) == "closed"  # Sunday 20:00 in New York


def test_time_zone_decides_the_holiday_date() -> None:
    cfg = ScheduleConfig(timezone="Pacific/Auckland", hours={"mon-sun": ["00:00-24:00"]},
                         holidays=["12-25"])
    # 12:00 UTC on 24 December is already the 25th in Auckland
    assert schedule_state(cfg, at(24, 12, month=12)) == "holiday"
    utc = ScheduleConfig(hours=cfg.hours, holidays=cfg.holidays)
    assert schedule_state(utc, at(24, 12, month=12)) == "open"


def test_daylight_saving_time_is_followed() -> None:
    cfg = ScheduleConfig(timezone="Europe/Paris", hours={"mon-fri": ["09:00-10:00"]})
    # Paris is UTC+1 in winter and UTC+2 in summer
    assert schedule_state(cfg, at(15, 8, 30, month=1)) == "open"  # 09:30 CET
    assert schedule_state(cfg, at(15, 8, 30, month=7)) == "closed"  # 10:30 CEST
    assert schedule_state(cfg, at(15, 7, 30, month=7)) == "open"  # 09:30 CEST


def test_input_time_zone_is_irrelevant_only_the_instant_counts() -> None:
    cfg = ScheduleConfig(timezone="UTC", hours={"mon": ["09:00-10:00"]})
    plus5 = timezone(timedelta(hours=5))
    assert schedule_state(cfg, at(4, 14, 30, tz=plus5)) == "open"  # 09:30 UTC
    assert schedule_state(cfg, at(4, 9, 30, tz=plus5)) == "closed"  # 04:30 UTC
