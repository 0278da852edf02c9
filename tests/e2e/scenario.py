"""Scenario fixtures: a policy, optional host overrides, and expectations.

A scenario is ``scenarios/NAME.yaml``::

    policy: golden/scenario1/policy.yaml   # path from the repository root,
                                           # or the policy itself (a mapping)
    policy_patch: {...}                    # optional, merged into the policy
                                           # (a null removes a key)
    timezones: [UTC, Asia/Tokyo]           # optional: run the scenario once per
                                           # zone, compiling and loading with TZ
                                           # set to it
    hosts:                                 # optional, added to/replacing the
      smarthost: {side: outside, addresses: [203.0.113.25], servers: [smtp]}
    mld_snooping: true                     # optional: both bridges snoop MLD
                                           # with a querier (topology.SNOOPING)
    expect:
      - {from: client, to: 198.51.100.10, service: imap, expect: open}
      - {from: client, to: exchange, port: 22, expect: closed}
      - {kind: smtp-deliver, from: client, to: 198.51.100.10, service: submission,
         read_with: [imap, pop3s], expect_peer: client, expect_server: exchange}
      - {kind: snat-source, from: exchange, to: internet, service: smtp,
         expect_source: 198.51.100.10}
      - {kind: portsweep, from: client, target: 198.51.100.10,
         expect_open: [25, 110, 143]}
      - {kind: connections, from: client, to: 198.51.100.10, service: smtp,
         expect: [open, open, open, closed], then_from: client2}
                                           # one after another (hold: true keeps
                                           # each open; rotate: true opens each
                                           # from the host's next address of the
                                           # family), then one from then_from
      - {kind: log, from: client, to: 198.51.100.10, service: smtp, group: 5,
         expect_prefix: "mailpub exchange: "}
                                           # nflog group 5 in the firewall gets an
                                           # entry with the prefix from `from`;
                                           # with flood: N (UDP datagrams to port)
                                           # 1 to at_most entries
      - {kind: dynamic-block, from: banned, to: 198.51.100.10, service: smtp,
         set: banned}
      - {kind: ping, from: client, to: 198.51.100.10, expect: open}   # an echo reply
      - {kind: datagrams, from: client, source: 10.1.0.77, to: 198.51.100.10,
         port: 5353, at: mail, expect: dropped}   # or received (expect_peer: HOST)

A dynamic-block check connects, adds the source to the run-time set
``SET_v4`` (``_v6``) in the firewall (``nft add element``), expects the
connection refused or dropped, deletes the element and connects again. Its
source host should serve no other expectation: they run in parallel.

A datagrams check listens for UDP on ``port`` at host ``at`` while ``from``
sends a few datagrams to ``to``; with ``source``, from that address, put on
``from`` for the check: a forged source from another network. ``expect:
dropped`` wants nothing received; ``received`` wants datagrams, all from
``expect_peer`` (default: ``from``'s own address).

A patched policy is written elsewhere, so its list files (``{file: PATH}``)
are named by absolute path, from the original policy's folder.

``from``/``to``/``target`` name a host (see topology.py for the derived
names) or give an address; ``family: 6`` picks a host's IPv6 address.

Before parsing, ``${NAME}`` placeholders are replaced, so a schedule can be
written around the time the scenario is loaded, in its zone (else this
process's). Each stays right for SLACK after that, and the lab loads the
scenario again when it starts. tests/test_scenario_clock.py tries every
scenario that uses them at every hour of a week.

- HOURS_NOW: a window containing now; HOURS_LATER: one that does not.
- TODAY and OTHER_DAY (tomorrow), mon..sun; DAYS_NOW: TODAY, and within
  SLACK of midnight tomorrow too, for a days-only schedule open now
  (``days: [$DAYS_NOW]``); UTC_NOT_TODAY: the UTC day when it is not one
  of DAYS_NOW, else a day that is neither.
- Windows across midnight, each with the day it starts on (the same hours
  from another day may well contain now, or not): HOURS_NOW_WRAPPING from
  NOW_WRAPPING_DAY contains now (after 02:00 in its part before midnight,
  from today; until then after midnight, from yesterday);
  HOURS_LATER_WRAPPING from LATER_WRAPPING_DAY does not (it starts later
  today, or after 22:00 tomorrow evening); HOURS_WRAP_NOW contains now
  when it starts on WRAP_DAY, not when it starts on WRAP_OTHER_DAY (before
  22:00, now is in the part after midnight of a window that started
  yesterday).
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Optional
from zoneinfo import ZoneInfo

import yaml

from mailpubc.vocab import WEEK

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = Path(__file__).resolve().parent / "scenarios"
DAY = 24 * 60                   # minutes
# How long the placeholders stay right after they are filled in: longer than
# a lab takes to run (Labs fills them in again when a scenario's lab starts).
SLACK = timedelta(minutes=30)
# libyaml where PyYAML has it: tests/test_scenario_clock.py loads a scenario
# some thousand times
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

KINDS = {
    "reach": ({"from", "to", "expect"}, {"service", "port", "family"}),
    "smtp-deliver": ({"from", "to"}, {"service", "read_with", "expect_peer",
                                       "expect_server", "family"}),
    "snat-source": ({"from", "to", "service", "expect_source"}, {"family"}),
    "portsweep": ({"from", "target", "expect_open"}, {"ports", "family"}),
    "dynamic-block": ({"from", "to", "set"}, {"service", "port", "family"}),
    "connections": ({"from", "to", "expect"},
                    {"service", "port", "family", "hold", "then_from", "rotate"}),
    "log": ({"from", "to", "group", "expect_prefix"},
            {"service", "port", "family", "flood", "at_most"}),
    "ping": ({"from", "to", "expect"}, {"family"}),
    "datagrams": ({"from", "to", "port", "at", "expect"}, {"source", "family", "expect_peer"}),
}


class ScenarioError(ValueError):
    """A scenario fixture is malformed."""


@dataclass
class Scenario:
    name: str
    path: Path
    policy_file: Path | None     # the golden policy, when used unpatched
    policy: dict
    hosts: dict
    expectations: list[dict]
    timezone: Optional[str] = None   # TZ for compiling and loading; None: this process's
    mld_snooping: bool = False


def time_vars(now: datetime) -> dict[str, str]:
    """Schedule placeholders for ``now``, a local time with its zone, each
    right from ``now`` until SLACK later.

    HOURS_LATER never crosses midnight and HOURS_NOW does only after 22:59;
    the WRAPPING windows and HOURS_WRAP_NOW always do (each has a part
    after midnight, so none can start at 00:00 and contain it).
    """
    minute = now.hour * 60 + now.minute
    today = now.weekday()
    then = (now.astimezone(timezone.utc) + SLACK).astimezone(now.tzinfo).weekday()
    days_now = [today] if then == today else [today, then]
    utc_day = now.astimezone(timezone.utc).weekday()

    def hours(first: int, last: int) -> str:
        return "-".join(f"{m % DAY // 60:02d}:{m % 60:02d}" for m in (first, last))

    def day(offset: int) -> str:
        return WEEK[(today + offset) % 7]

    if minute + 180 < DAY:
        later = hours(minute + 120, minute + 180)
    else:
        later = hours(minute - 180, minute - 120)
    # Windows across midnight, each with the day (from today) it starts on.
    if minute > 120:                # now before midnight of a window that started today
        now_wrapping, now_wrapping_day = hours(minute - 60, minute - 120), 0
    else:                           # after midnight of one that started yesterday
        now_wrapping, now_wrapping_day = hours(minute + 120, minute + 60), -1
    if minute + 120 < DAY:          # after midnight of a window that started yesterday
        wrap, wrap_day, wrap_other = hours(minute + 120, minute + 60), -1, 0
        later_wrapping, later_wrapping_day = wrap, 0
    else:                           # before midnight of one that started today
        wrap, wrap_day, wrap_other = hours(minute - 60, minute - 120), 0, -1
        later_wrapping, later_wrapping_day = hours(minute - 120, minute - 180), 1
    return {
        "HOURS_NOW": hours(max(0, minute - 60), minute + 60),
        "HOURS_LATER": later,
        "HOURS_NOW_WRAPPING": now_wrapping,
        "NOW_WRAPPING_DAY": day(now_wrapping_day),
        "HOURS_LATER_WRAPPING": later_wrapping,
        "LATER_WRAPPING_DAY": day(later_wrapping_day),
        "TODAY": day(0),
        "DAYS_NOW": ", ".join(WEEK[d] for d in days_now),
        "OTHER_DAY": day(1),
        "UTC_NOT_TODAY": WEEK[utc_day] if utc_day not in days_now else day(3),
        "HOURS_WRAP_NOW": wrap,
        "WRAP_DAY": day(wrap_day),
        "WRAP_OTHER_DAY": day(wrap_other),
    }


def _merge(base: dict, patch: dict) -> dict:
    merged = dict(base)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _lists_from(policy: dict, folder: Path) -> dict:
    """The policy with each list file's path made absolute from `folder`."""
    sets = {name: {"file": str(folder / spec["file"])} if isinstance(spec, dict) else spec
            for name, spec in (policy.get("address_sets") or {}).items()}
    return dict(policy, address_sets=sets) if sets else policy


def load(path: Path, zone: Optional[str] = None, at: Optional[datetime] = None) -> Scenario:
    """The scenario, its placeholders filled in for `at` (default now) in
    `zone` (None: local time)."""
    now = (at or datetime.now(timezone.utc)).astimezone(ZoneInfo(zone) if zone else None)
    text = string.Template(path.read_text()).substitute(time_vars(now))
    data = yaml.load(text, Loader=SAFE_LOADER) or {}
    where = path.name
    unknown = set(data) - {"policy", "policy_patch", "hosts", "mld_snooping", "expect", "timezones"}
    if unknown or "policy" not in data or not data.get("expect"):
        raise ScenarioError(f"{where}: needs 'policy' and 'expect'; unknown keys {sorted(unknown)}")
    policy_file = None
    policy = data["policy"]
    if isinstance(policy, str):
        policy_file = REPO / policy
        if not policy_file.is_file():
            raise ScenarioError(f"{where}: policy file {policy} does not exist")
        policy = yaml.load(policy_file.read_text(), Loader=SAFE_LOADER)
    if data.get("policy_patch"):
        policy = _merge(policy, data["policy_patch"])
        if policy_file is not None:
            policy = _lists_from(policy, policy_file.parent)
        policy_file = None
    for name, spec in (data.get("hosts") or {}).items():
        keys = set(spec or {})
        if "addresses" not in keys or keys - {"side", "addresses", "servers"}:
            raise ScenarioError(f"{where}: host {name} needs 'addresses', may have "
                                f"'side' and 'servers'; got {sorted(keys)}")
    expectations = [_checked(e, f"{where}: expectation #{i}") for i, e in enumerate(data["expect"])]
    if not isinstance(data.get("mld_snooping", False), bool):
        raise ScenarioError(f"{where}: mld_snooping must be true or false")
    name = f"{path.stem}-{zone.replace('/', '_')}" if zone else path.stem
    return Scenario(name, path, policy_file, policy, data.get("hosts") or {}, expectations, zone,
                    data.get("mld_snooping", False))


def _checked(exp: dict, where: str) -> dict:
    kind = exp.get("kind", "reach")
    if kind not in KINDS:
        raise ScenarioError(f"{where}: unknown kind {kind!r}; kinds: {sorted(KINDS)}")
    required, optional = KINDS[kind]
    keys = set(exp) - {"kind"}
    if not required <= keys or keys - required - optional:
        raise ScenarioError(f"{where}: {kind} needs {sorted(required)}, may have "
                            f"{sorted(optional)}; got {sorted(keys)}")
    if (kind in ("reach", "dynamic-block", "connections", "log")
            and ("service" in exp) == ("port" in exp)):
        raise ScenarioError(f"{where}: {kind} needs exactly one of service, port")
    if kind == "connections" and not set(exp["expect"]) <= {"open", "closed"}:
        raise ScenarioError(f"{where}: expect must be a list of open and closed")
    if kind in ("reach", "ping") and exp["expect"] not in ("open", "closed"):
        raise ScenarioError(f"{where}: expect must be open or closed")
    return dict(exp, kind=kind)


def describe(exp: dict) -> str:
    """A short, unique-enough name for an expectation (test ids, messages)."""
    kind, src = exp["kind"], exp["from"]
    family = f" v{exp['family']}" if "family" in exp else ""
    if kind == "reach":
        what = exp.get("service") or f"port {exp['port']}"
        return f"{src} -> {exp['to']}{family} {what} {exp['expect']}"
    if kind == "smtp-deliver":
        readers = "+".join(exp.get("read_with", [])) or "nothing"
        return f"{src} delivers to {exp['to']}{family} via {exp.get('service', 'smtp')}, reads via {readers}"
    if kind == "dynamic-block":
        what = exp.get("service") or f"port {exp['port']}"
        return f"{src} -> {exp['to']}{family} {what} blocked while in {exp['set']}"
    if kind == "ping":
        return f"{src} pings {exp['to']}{family} {exp['expect']}"
    if kind == "snat-source":
        return f"{src} -> {exp['to']}{family} {exp['service']} seen from {exp['expect_source']}"
    if kind == "connections":
        held = " held" if exp.get("hold") else ""
        return f"{src} -> {exp['to']}{family} {exp.get('service') or exp.get('port')}{held} {'-'.join(exp['expect'])}"
    if kind == "log":
        what = f"flood {exp['flood']}" if "flood" in exp else exp.get("service") or exp.get("port")
        return f"{src} -> {exp['to']}{family} {what} logged {exp['expect_prefix'].strip()}"
    if kind == "datagrams":
        forged = f" forged as {exp['source']}" if "source" in exp else ""
        return f"{src}{forged} -> {exp['to']}{family} udp/{exp['port']} {exp['expect']} at {exp['at']}"
    return f"{src} sweeps {exp['target']}{family} tcp/{exp.get('ports', '1-65535')}"


def zones(path: Path) -> list[Optional[str]]:
    """The zones a scenario runs in: its `timezones`, else [None] (local time)."""
    return yaml.safe_load(path.read_text()).get("timezones") or [None]


def uses_clock(path: Path) -> bool:
    """Whether the scenario has time placeholders, so that what it expects
    depends on when it runs."""
    used = string.Template(path.read_text()).get_identifiers()
    return bool(set(used) & set(time_vars(datetime.now(timezone.utc))))


def load_all(directory: Path = SCENARIOS) -> list[Scenario]:
    """Every scenario, once per zone of its `timezones` (once without)."""
    return [load(path, zone) for path in sorted(directory.glob("*.yaml")) for zone in zones(path)]
