"""Schedules in the kernel's terms: local days and hours -> UTC weekly windows.

The kernel matches `meta hour` in UTC and `meta day` in its own time zone
(sys_tz), which is UTC on a systemd host. nft would convert "HH:MM" strings
from the time zone of whatever process loads the ruleset, and never converts
days, so a policy's local schedule is turned into UTC here, once, at compile
time: the result is the same whoever loads it. The UTC offset is the zone's
offset at one instant (compile time); when the zone changes its offset
(daylight saving time) the policy has to be compiled and loaded again, which
`zone_note` says when.

Pure data in, pure data out: no nft text here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Optional

from .addresses import merge
from .model import Schedule

DAY_SECONDS = 24 * 3600
WEEK_SECONDS = 7 * DAY_SECONDS


@dataclass(frozen=True, slots=True)
class Window:
    """One UTC window the kernel can match: `meta day` and `meta hour` together."""

    days: tuple[int, ...]                 # UTC week days, 0 = Sunday .. 6 = Saturday; () = every day
    hours: Optional[tuple[int, int]]      # (first, last) second of the UTC day, inclusive; None = whole day


@dataclass(frozen=True, slots=True)
class ZoneNote:
    """The zone schedules were compiled in, for the ruleset's header."""

    name: str
    offset: int                           # seconds east of UTC at compile time
    next_change: Optional[datetime]       # UTC instant the offset changes, within a year

    @property
    def offset_text(self) -> str:
        sign = "-" if self.offset < 0 else "+"
        minutes = abs(self.offset) // 60
        return f"UTC{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def utc_windows(schedule: Schedule, zone: tzinfo, at: datetime) -> tuple[Window, ...]:
    """The UTC windows that together match exactly `schedule` in `zone`, at
    the zone's UTC offset at `at`: whole days where they can be, days that
    share their hours grouped, in UTC week order."""
    offset = int(at.astimezone(zone).utcoffset().total_seconds())
    seconds = []        # inclusive spans of the UTC week in seconds, Sunday 00:00 = 0
    for day in schedule.days or range(7):
        start, end = _local_span(day, schedule.hours)
        start, end = start - offset, end - offset - 1
        shift = start % WEEK_SECONDS - start
        start, end = start + shift, end + shift
        if end < WEEK_SECONDS:
            seconds.append((start, end))
        else:       # wraps past Saturday midnight into Sunday
            seconds += [(start, WEEK_SECONDS - 1), (0, end - WEEK_SECONDS)]
    by_hours: dict[Optional[tuple[int, int]], list[int]] = {}
    for start, end in merge(seconds):
        while start <= end:         # cut at each UTC midnight
            day, first = divmod(start, DAY_SECONDS)
            last = min(end - day * DAY_SECONDS, DAY_SECONDS - 1)
            hours = None if (first, last) == (0, DAY_SECONDS - 1) else (first, last)
            by_hours.setdefault(hours, []).append(day)
            start = day * DAY_SECONDS + last + 1
    return tuple(Window(() if len(days) == 7 else tuple(days), hours)
                 for hours, days in by_hours.items())


def _local_span(day: int, hours: Optional[tuple[int, int]]) -> tuple[int, int]:
    """[start, end) of one day's window in seconds of the local week; a window
    that crosses midnight belongs to the day it starts on."""
    if hours is None:
        return day * DAY_SECONDS, (day + 1) * DAY_SECONDS
    start, end = hours
    return day * DAY_SECONDS + start * 60, (day + (end <= start)) * DAY_SECONDS + end * 60


def schedule_zone(name: Optional[str]) -> tuple[tzinfo, str]:
    """The zone of the schedules and its name: `firewall.timezone` when given,
    else the compiling process's zone (TZ, else /etc/localtime), else, when
    that is no zone name (a POSIX TZ string, a copied file), its fixed UTC
    offset now."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError   # late: most policies have no schedule
    if name is not None:
        return ZoneInfo(name), name
    key = os.environ.get("TZ")
    if key is None:
        target = os.path.realpath("/etc/localtime")
        key = target.partition("/zoneinfo/")[2] if "/zoneinfo/" in target else "localtime"
    key = key.removeprefix(":") or "UTC"         # an empty TZ is UTC to the C library
    try:
        return ZoneInfo(key), key
    except (ValueError, OSError, ZoneInfoNotFoundError):
        local = datetime.now().astimezone()
        return local.tzinfo, f"local time {local.tzname()}"


def zone_note(zone: tzinfo, display_name: str, at: datetime) -> ZoneNote:
    """The zone's offset at `at` and when, within a year, it next changes."""
    def offset(instant: datetime) -> int:
        return int(instant.astimezone(zone).utcoffset().total_seconds())

    now = offset(at)
    before = at.astimezone(timezone.utc)
    for _ in range(366):            # find the day, then the second, of the change
        after = before + timedelta(days=1)
        if offset(after) != now:
            while after - before > timedelta(seconds=1):
                middle = before + (after - before) / 2
                before, after = (middle, after) if offset(middle) == now else (before, middle)
            return ZoneNote(display_name, now, after.replace(microsecond=0))
        before = after
    return ZoneNote(display_name, now, None)
