"""Plan stage: the policy model -> the ruleset as typed data.

Every decision about the ruleset is made here: which chains exist, which
rules each holds and in what order, what each rule matches, which family it
is emitted in, which named set it uses, what it translates to. Fixed rules
(conntrack, loopback, neighbour discovery, ICMP errors, the reject tail) are
plan data like every other rule. The generators (`generate/text.py`,
`generate/json.py`) only print a plan, and `explain`, `diff` and the tests
read the same plan.

A rule is its origin (the policy rule, service and position it comes from),
its matches and its statements. Matches hold numbers and intervals, never
formatted text.

The rule that matters most: a match is never left out to make a rule fit. A
rule that would have no addresses in a family is not emitted in that family
(semantics has already rejected rules empty in every family).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Optional

from ..model import Firewall, Policy
from ..schedule import schedule_zone, zone_note
from . import fixed, management, outbound, publish
from .chains import Draft, filter_draft, nat_draft
from .dispatch import DISPATCH_THRESHOLD, DISPATCHED
from .fixed import ACCEPT, DROP, LINK_LOCAL, NO_ONES
from .ir import (KINDS, AddressMatch, Chain, ConntrackMatch, ConntrackStatusMatch, CounterRef,
                 CountMeter, DayMatch, Define, Elements, Hook, HopLimitMatch, HourMatch,
                 IcmpTypeMatch, InterfaceMatch, Jump, Layout, Log, Masquerade, Match, Nat, NftSet,
                 Origin, PortMatch, ProtocolMatch, RateLimit, RateMeter, Redirect, Rule, Ruleset,
                 SocketUserMatch, Statement, UnmeteredMatch, Verdict)
from .limits import DEFAULT_BURST
from .maps import Dispatch, DispatchEntry, NatMap, NatMapEntry
from .passes import COUNTED, PASSES, Context
from .sets import DYNAMIC_FLAGS, METER_SIZE, METER_TIMEOUT_MAX, UNIT_SECONDS, declared

__all__ = [
    "ACCEPT", "COUNTED", "DEFAULT_BURST", "DISPATCHED", "DISPATCH_THRESHOLD", "DROP",
    "DYNAMIC_FLAGS", "KINDS", "LINK_LOCAL", "METER_SIZE", "METER_TIMEOUT_MAX", "NO_ONES",
    "PASSES", "UNIT_SECONDS", "AddressMatch", "Chain", "ConntrackMatch",
    "ConntrackStatusMatch", "CountMeter", "CounterRef", "DayMatch", "Define", "Dispatch",
    "DispatchEntry", "Elements", "Hook", "HopLimitMatch", "HourMatch", "IcmpTypeMatch",
    "InterfaceMatch", "Jump", "Layout", "Log", "Masquerade", "Match", "Nat", "NatMap",
    "NatMapEntry", "NftSet", "Origin", "PortMatch", "ProtocolMatch", "RateLimit", "RateMeter",
    "Redirect", "Rule", "Ruleset", "SocketUserMatch", "Statement", "UnmeteredMatch", "Verdict",
    "fallback", "lockdown", "plan"]


def plan(policy: Policy, at: Optional[datetime] = None,
         dispatch_threshold: int = DISPATCH_THRESHOLD) -> Ruleset:
    """The ruleset; schedules take their zone's UTC offset at `at` (default
    now); beyond `dispatch_threshold` publication pairs a chain dispatches."""
    at = at or datetime.now(timezone.utc)
    fw = policy.firewall
    zone = schedule_zone(fw.timezone) if any(r.schedule for r in policy.outbound) else None
    published = publish.publishing(policy)
    hairpin_dnat, hairpin_snat = publish.hairpin(policy)
    forward_out, output_out = outbound.outbound(policy, zone[0] if zone else None, at)
    drafts = (
        *map(Draft.of, fixed.antispoofing(fw)),
        nat_draft("prerouting", "dstnat", published.prerouting + hairpin_dnat),
        filter_draft("input", fw.input_policy,
                     published.input + management.ssh(fw) + management.ping(fw)),
        filter_draft("forward", fw.forward_policy, published.forward + forward_out),
        filter_draft("output", fw.output_policy, output_out),
        nat_draft("postrouting", "srcnat", outbound.snat(policy) + hairpin_snat),
    )
    return _finished(policy, drafts, Context(policy, dispatch_threshold),
                     zone_note(*zone, at) if zone else None)


def fallback(policy: Policy) -> Ruleset:
    """What the boot loads when the saved ruleset is missing or damaged
    (`mailpubc boot-load`): the policy's table with nothing let in but
    management SSH. Input and forward drop even where the policy accepts
    (it rejects where the policy rejects); output keeps the policy's
    verdict, without its accepts. Blocks, anti-spoofing and drop logging stay."""
    fw = policy.firewall
    drafts = (*map(Draft.of, fixed.antispoofing(fw)),
              filter_draft("input", _closed(fw.input_policy), management.ssh(fw)),
              filter_draft("forward", _closed(fw.forward_policy), []),
              filter_draft("output", fw.output_policy, []))
    return _finished(policy, drafts, Context(policy), None)


def lockdown(table: str) -> Ruleset:
    """What the boot loads when neither the saved ruleset nor the fallback
    can be trusted: no policy to go by, so the fixed rules only, every hook
    dropping the rest (management SSH too)."""
    return Ruleset(table, (), tuple(filter_draft(name, "drop", []).chain()
                                    for name in ("input", "forward", "output")))


def _finished(policy: Policy, drafts: tuple[Draft, ...], context: Context,
              note) -> Ruleset:
    """The drafts through every pass, then the sets and counters the chains use."""
    for step in PASSES:
        drafts = step(drafts, context)
    chains = tuple(draft.chain() for draft in drafts)
    sets, defines = declared(policy, chains)
    counters = tuple(sorted({s.name for chain in chains for rule in chain.rules
                             for s in rule.statements if isinstance(s, CounterRef)}))
    return Ruleset(policy.firewall.table, sets, chains, note, counters, defines,
                   _layout(policy.firewall))


def _layout(fw: Firewall) -> Layout:
    return Layout(fw.external_interface, fw.zones,
                  (*fw.external_addresses, *fw.internal_addresses), fw.timezone)


def _closed(verdict: str) -> str:
    """A chain verdict that lets nothing in by itself: accept becomes drop."""
    return "drop" if verdict == "accept" else verdict
