"""Every clock-dependent end-to-end scenario holds at any instant.

A scenario with time placeholders (e2e/scenario.py) expects what its
schedules, written around the time it runs, make of that time. Here each
is filled in for every hour of a week in each of its zones, its patched
policy compiled, and each of its expectations judged by explain
(e2e/explained.py) at that instant and SLACK later, the longest the lab
may take to run after filling them in. So a scenario that holds only on
some days or at some hours fails here at once, on any day, with no kernel.
"""

from datetime import datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import pytest
import yaml

from e2e.agreement import in_zone
from e2e.explained import ExplainedLab
from e2e.scenario import SCENARIOS, SLACK, describe, load, uses_clock, zones
from mailpubc.api import compile_text
from mailpubc.model import Policy
from mailpubc.plan import Ruleset, plan

WEEK_START = datetime(2026, 11, 30)     # a Monday, local time in each zone; any week would do
# The first and the last second of each hour, local time: the placeholders
# change cases at whole hours (DAYS_NOW at 23:30 too), so each of those
# changes is tried from both sides.
IN_EACH_HOUR = (timedelta(0), timedelta(minutes=59, seconds=59))
SAFE_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

CLOCK_SCENARIOS = [path for path in sorted(SCENARIOS.glob("*.yaml")) if uses_clock(path)]


@lru_cache(maxsize=None)
def compiled(policy_text: str) -> Policy:
    """The patched policy's model: most instants repeat one of another zone."""
    return compile_text(policy_text).or_raise().policy


PLANS: dict[tuple, tuple[Policy, Ruleset]] = {}


def planned(policy: dict, zone: str | None, at: datetime) -> tuple[Policy, Ruleset]:
    """The policy in the zone and its plan at `at`, made once per text and
    UTC offset: the plan depends on the instant only through the offset
    (schedule.utc_windows)."""
    text = yaml.dump(policy, Dumper=SAFE_DUMPER, sort_keys=False)
    key = (text, zone, at.utcoffset())
    if key not in PLANS:
        zoned = in_zone(compiled(text), zone)
        PLANS[key] = zoned, plan(zoned, at)
    return PLANS[key]


def instants(zone: str | None) -> list[datetime]:
    start = WEEK_START.replace(tzinfo=ZoneInfo(zone)) if zone else WEEK_START.astimezone()
    return [start + timedelta(hours=hour) + offset
            for hour in range(7 * 24) for offset in IN_EACH_HOUR]


def test_scenarios_depend_on_the_clock():
    assert CLOCK_SCENARIOS, f"no scenario in {SCENARIOS} has time placeholders"


@pytest.mark.parametrize("path,zone", [
    pytest.param(path, zone, id=f"{path.stem}-{zone}")
    for path in CLOCK_SCENARIOS for zone in zones(path)])
def test_holds_at_any_instant(path, zone):
    failures = []
    for filled_in in instants(zone):
        scenario = load(path, zone, filled_in)
        lab = ExplainedLab(scenario, *planned(scenario.policy, zone, filled_in))
        for at in (filled_in, filled_in + SLACK):
            failures += [f"filled in {filled_in:%a %H:%M:%S}, at {at:%a %H:%M:%S}: "
                         f"#{index} {describe(exp)}: {failure}"
                         for index, (exp, failure)
                         in enumerate(zip(scenario.expectations, lab.judge_all(at)))
                         if failure]
    assert not failures, f"{len(failures)} failures, the first:\n" + "\n".join(failures[:12])
