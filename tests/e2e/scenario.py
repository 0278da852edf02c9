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

A dynamic-block check connects, adds the source to the run-time set
``SET_v4`` (``_v6``) in the firewall (``nft add element``), expects the
connection refused or dropped, deletes the element and connects again. Its
source host should serve no other expectation: they run in parallel.

A patched policy is written elsewhere, so its list files (``{file: PATH}``)
are named by absolute path, from the original policy's folder.

``from``/``to``/``target`` name a host (see topology.py for the derived
names) or give an address; ``family: 6`` picks a host's IPv6 address.

Before parsing, ``${NAME}`` placeholders are replaced, so a schedule can be
written around the time the test runs, in the scenario's zone (else this
process's): HOURS_NOW (a window containing now), HOURS_LATER (a window that
does not), HOURS_NOW_WRAPPING and HOURS_LATER_WRAPPING (the same, written as
windows that cross midnight, e.g. "09:00-08:00" at ten o'clock), TODAY and
OTHER_DAY (mon..sun), UTC_NOT_TODAY (the UTC day when it is not the local
one, else a day that is neither), and HOURS_WRAP_NOW with WRAP_DAY and
WRAP_OTHER_DAY: a window that crosses midnight and contains now when it
starts on WRAP_DAY, not when it starts on WRAP_OTHER_DAY (before 22:00, now
is in the part after midnight of a window that started yesterday).
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional
from zoneinfo import ZoneInfo

import yaml

from mailpubc.vocab import WEEK

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = Path(__file__).resolve().parent / "scenarios"

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
    """Schedule placeholders for ``now``, a local time with its zone.

    HOURS_LATER never crosses midnight and HOURS_NOW does only after 22:59;
    the WRAPPING windows do (except within two hours of midnight).
    """
    minute = now.hour * 60 + now.minute
    today, utc_day = now.weekday(), now.astimezone(timezone.utc).weekday()

    def hhmm(m: int) -> str:
        m %= 24 * 60
        return f"{m // 60:02d}:{m % 60:02d}"

    later = (minute + 120, minute + 180) if minute + 180 < 24 * 60 else (minute - 180, minute - 120)
    if minute + 120 < 24 * 60:      # after midnight of a window that started yesterday
        wrap, wrap_day, wrap_other = (minute + 120, minute + 60), today - 1, today
    else:                           # before midnight of one that started today
        wrap, wrap_day, wrap_other = (minute - 60, minute - 120), today, today - 1
    return {
        "HOURS_NOW": f"{hhmm(max(0, minute - 60))}-{hhmm(minute + 60)}",
        "HOURS_LATER": f"{hhmm(later[0])}-{hhmm(later[1])}",
        "HOURS_NOW_WRAPPING": f"{hhmm(minute - 60)}-{hhmm(minute - 120)}",
        "HOURS_LATER_WRAPPING": f"{hhmm(minute + 60)}-{hhmm(minute - 60)}",
        "TODAY": WEEK[today],
        "OTHER_DAY": WEEK[(today + 1) % 7],
        "UTC_NOT_TODAY": WEEK[utc_day if utc_day != today else (today + 3) % 7],
        "HOURS_WRAP_NOW": f"{hhmm(wrap[0])}-{hhmm(wrap[1])}",
        "WRAP_DAY": WEEK[wrap_day % 7],
        "WRAP_OTHER_DAY": WEEK[wrap_other % 7],
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


def load(path: Path, zone: Optional[str] = None) -> Scenario:
    """The scenario, its placeholders filled in for now in `zone` (None: local time)."""
    now = datetime.now(ZoneInfo(zone)) if zone else datetime.now().astimezone()
    text = string.Template(path.read_text()).substitute(time_vars(now))
    data = yaml.safe_load(text) or {}
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
        policy = yaml.safe_load(policy_file.read_text())
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
    return f"{src} sweeps {exp['target']}{family} tcp/{exp.get('ports', '1-65535')}"


def load_all(directory: Path = SCENARIOS) -> list[Scenario]:
    """Every scenario, once per zone of its `timezones` (once without)."""
    return [load(path, zone) for path in sorted(directory.glob("*.yaml"))
            for zone in yaml.safe_load(path.read_text()).get("timezones") or [None]]
