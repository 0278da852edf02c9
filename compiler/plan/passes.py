"""The passes over the drafted chains, in order, as sqlglot lists its
optimizer rules: each takes the drafts and what it needs of the policy, and
fills or rewrites its own segment; `dispatched` then splits chains with many
publication pairs."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

from ..model import Policy
from ..vocab import FAMILIES, ICMP_FAMILIES, SET_SUFFIX
from . import dispatch
from .chains import Draft
from .fixed import ACCEPT, DROP, REJECT_OTHERS
from .ir import (AddressMatch, CounterRef, HopLimitMatch, IcmpTypeMatch, Log, Origin, RateLimit,
                 Rule, UnmeteredMatch)
from .limits import DEFAULT_BURST, guarded as limits_guarded

COUNTED = ("publish", "outbound", "management")     # origins with a named counter
BLOCKED = ("input", "forward")                      # the chains that drop blocked sources


@dataclass(frozen=True, slots=True)
class Context:
    """What the passes read: the policy, and the dispatch threshold."""
    policy: Policy
    dispatch_threshold: int = dispatch.DISPATCH_THRESHOLD


def blocked(drafts: tuple[Draft, ...], context: Context) -> tuple[Draft, ...]:
    """Input and forward drop (reject, under a reject policy) blocked
    sources right after replies, invalid packets and loopback: before
    every accept of the policy and before ICMP errors."""
    matches = block_matches(context.policy)
    return tuple(replace(draft, block=tuple(
        Rule(origin, (match,), (REJECT_OTHERS if draft.verdict == "reject" else DROP,))
        for origin, match in matches)) if draft.name in BLOCKED else draft
        for draft in drafts)


def block_matches(policy: Policy) -> list[tuple[Origin, AddressMatch]]:
    """One set lookup per family for firewall.block (the named set itself
    when it is one set, else `_block_v4`/`_v6`, a name no address set can
    take), and one per family for the run-time sets of each dynamic_block."""
    fw, found = policy.firewall, []
    if fw.block is not None:
        origin = Origin("block", "firewall.block", position=fw.block.position)
        stem = "_block" if fw.block.set_name is None else fw.block.set_name
        found += [(origin, AddressMatch(family, "saddr", set_name=stem + SET_SUFFIX[family]))
                  for family in FAMILIES if fw.block.addresses.family(family)]
    for dynamic in fw.dynamic_blocks:
        origin = Origin("block", "firewall.dynamic_block", position=dynamic.position)
        found += [(origin, AddressMatch(family, "saddr", set_name=dynamic.name + SET_SUFFIX[family]))
                  for family in FAMILIES]
    return found


def guarded(drafts: tuple[Draft, ...], context: Context) -> tuple[Draft, ...]:
    """Limits and logs of the policy's rules, before their accepts (`limits`):
    a source over its limits meets the chain's own policy (`Draft.verdict`)."""
    return tuple(draft.with_rules(limits_guarded(draft.rules, context.policy, draft.verdict))
                 if draft.filters else draft for draft in drafts)


def drop_logged(drafts: tuple[Draft, ...], context: Context) -> tuple[Draft, ...]:
    """With firewall.log.dropped, a filter chain whose policy drops (or
    rejects) logs, at a limited rate, what reaches its end: the last rule
    before the reject tail."""
    log = context.policy.firewall.log
    if not log.dropped:
        return drafts
    return tuple(replace(draft, drop_log=(Rule(Origin("log", draft.name), (), (
        RateLimit(log.rate.count, log.rate.unit, DEFAULT_BURST),
        Log(("drop", draft.name), log.group))),))
        if draft.filters and draft.hook.policy == "drop" else draft for draft in drafts)


def counted(drafts: tuple[Draft, ...], context: Context) -> tuple[Draft, ...]:
    """Each accept of a policy rule counts in the named counter of its
    service and family (`Origin.counter_name`), for `mailpubc stats`."""
    return tuple(draft.with_rules(
        _counting(rule) if rule.origin.kind in COUNTED and ACCEPT in rule.statements else rule
        for rule in draft.rules) if draft.filters else draft for draft in drafts)


def _counting(rule: Rule) -> Rule:
    family = _family(rule)
    return Rule(rule.origin, rule.matches,
                (CounterRef(rule.origin.counter_name(family), family),) + rule.statements)


def _family(rule: Rule) -> Optional[str]:
    """The one family a rule's matches confine it to; None: both."""
    for match in rule.matches:
        if isinstance(match, (AddressMatch, UnmeteredMatch)):
            return match.family
        if isinstance(match, IcmpTypeMatch):
            return ICMP_FAMILIES[match.protocol]
        if isinstance(match, HopLimitMatch):
            return "ip6"
    return None


def dispatched(drafts: tuple[Draft, ...], context: Context) -> tuple[Draft, ...]:
    """Chains with many publication pairs split (`dispatch.dispatched`)."""
    return tuple(Draft.of(part) for draft in drafts
                 for part in dispatch.dispatched(draft.chain(), context.dispatch_threshold))


PASSES = (blocked, guarded, drop_logged, counted, dispatched)
