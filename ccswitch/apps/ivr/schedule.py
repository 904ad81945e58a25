"""Opening hours: is a schedule open, closed or on holiday at a given moment?"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from ccswitch.config import ScheduleConfig, parse_days


def _minutes(hhmm: str) -> int:
    h, m = hhmm.strip().split(":")
    return int(h) * 60 + int(m)


def schedule_state(cfg: ScheduleConfig, when: datetime) -> str:
    """'open', 'closed' or 'holiday' for an aware datetime `when`."""
    local = when.astimezone(ZoneInfo(cfg.timezone))
    day = local.strftime("%Y-%m-%d")
    md = local.strftime("%m-%d")
    for h in cfg.holidays:
        h = h.strip()
        if h in (day, md):
            return "holiday"
    minute = local.hour * 60 + local.minute
    weekday = local.weekday()
    for days, ranges in cfg.hours.items():
        wd = parse_days(days)
        if wd is None:
            continue
        for r in ranges:
            a, b = r.split("-")
            lo, hi = _minutes(a), _minutes(b)
            if weekday in wd and (lo <= minute < hi or hi < lo <= minute):
                return "open"
            # an overnight range ("fri 22:00-02:00") runs into the next morning; without
            # this it would never be open at all
            if hi < lo and minute < hi and (weekday - 1) % 7 in wd:
                return "open"
    return "closed"
