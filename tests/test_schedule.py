"""Schedules in UTC: `mailpubc.schedule` against a table of pinned cases
(tests/schedules/cases.yaml) and, for random schedules, zones and instants,
against the fail-closed checker's minute-by-minute reading of a schedule."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from failclosed import DAY_MINUTES, WEEK_MINUTES, _local_minute_allowed
from mailpubc.model import Schedule
from mailpubc.vocab import nft_day
from mailpubc.schedule import Window, schedule_zone, utc_windows, zone_note
from strategies import ZONES

CASES = yaml.safe_load((Path(__file__).parent / "schedules" / "cases.yaml").read_text())


def _minutes(hhmm: str) -> int:
    return int(hhmm[:2]) * 60 + int(hhmm[3:])


def _window(spec: dict) -> Window:
    """A case's UTC window: half-open "HH:MM-HH:MM" to inclusive seconds."""
    hours = None
    if "hours" in spec:
        start, end = (_minutes(t) for t in spec["hours"].split("-"))
        hours = (start * 60, end * 60 - 1)
    return Window(tuple(nft_day(d) for d in spec.get("days", ())), hours)


def _schedule(spec: dict) -> Schedule:
    hours = spec.get("hours")
    return Schedule("s", tuple(sorted(nft_day(d) for d in spec.get("days", ()))),
                    tuple(_minutes(t) for t in hours.split("-")) if hours else None)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_utc_windows(case):
    at = datetime.fromisoformat(case["at"])
    windows = utc_windows(_schedule(case["schedule"]), ZoneInfo(case["zone"]), at)
    assert windows == tuple(_window(w) for w in case["windows"])


@settings(max_examples=200)
@given(days=st.sets(st.integers(0, 6)), start=st.integers(0, DAY_MINUTES - 1),
       end=st.integers(0, DAY_MINUTES), hours=st.booleans(), zone=st.sampled_from(ZONES),
       at=st.datetimes(datetime(2020, 1, 1), datetime(2035, 1, 1), timezones=st.just(timezone.utc)))
def test_windows_cover_exactly_the_schedule(days, start, end, hours, zone, at):
    if hours and start == end or not (days or hours):
        return
    schedule = Schedule("s", tuple(sorted(days)), (start, end) if hours else None)
    windows = utc_windows(schedule, ZoneInfo(zone), at)
    offset = int(at.astimezone(ZoneInfo(zone)).utcoffset().total_seconds()) // 60
    covered = {day * DAY_MINUTES + second // 60
               for w in windows for day in (w.days or range(7))
               for second in range(*(((w.hours[0], w.hours[1] + 1)) if w.hours
                                     else (0, DAY_MINUTES * 60)), 60)}
    expected = {m for m in range(WEEK_MINUTES)
                if _local_minute_allowed(schedule, (m + offset) % WEEK_MINUTES)}
    assert covered == expected
    assert len({w.hours for w in windows}) == len(windows)   # days sharing hours are grouped


def test_zone_note_names_the_next_change():
    winter = datetime(2026, 1, 15, 12, tzinfo=timezone.utc)
    note = zone_note(ZoneInfo("Europe/Berlin"), "Europe/Berlin", winter)
    assert (note.offset, note.offset_text) == (3600, "UTC+01:00")
    assert note.next_change == datetime(2026, 3, 29, 1, tzinfo=timezone.utc)
    fixed = zone_note(ZoneInfo("Etc/GMT+12"), "Etc/GMT+12", winter)
    assert (fixed.offset_text, fixed.next_change) == ("UTC-12:00", None)
    assert zone_note(ZoneInfo("Asia/Kathmandu"), "k", winter).offset_text == "UTC+05:45"


@pytest.fixture
def process_tz(monkeypatch):
    """Set the compiling process's TZ for one test, and put it back."""
    def set_tz(value):
        monkeypatch.setenv("TZ", value)
        time.tzset()
    yield set_tz
    monkeypatch.undo()
    time.tzset()


def test_the_default_zone_is_the_processs(process_tz):
    assert schedule_zone("Asia/Tokyo")[1] == "Asia/Tokyo"
    process_tz("Pacific/Kiritimati")
    zone, name = schedule_zone(None)
    assert name == "Pacific/Kiritimati" and zone == ZoneInfo("Pacific/Kiritimati")
    process_tz(":Asia/Kathmandu")
    assert schedule_zone(None)[1] == "Asia/Kathmandu"
    process_tz("ABC-9")         # a POSIX TZ string, no zone name: its fixed offset
    zone, name = schedule_zone(None)
    assert zone.utcoffset(None) == timedelta(hours=9) and name == "local time ABC"
