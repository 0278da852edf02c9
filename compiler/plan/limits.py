"""`limit` and `log` of publications and outbound rules: the rules before
each accept that turn away a source over its limits, and the accept's log."""

from __future__ import annotations

from typing import Optional

from ..model import Policy
from .fixed import DROP, REJECT_OTHERS
from .matching import address_match
from .ir import (AddressMatch, ConntrackMatch, CountMeter, Log, Origin, PortMatch, RateMeter,
                 Rule, UnmeteredMatch, Verdict)

DEFAULT_BURST = 5                   # nft's own default for `limit rate`


def guarded(rules, policy: Policy, chain_verdict: Optional[str]) -> list[Rule]:
    """Each accept of a publication preceded by the rules that refuse the
    publication's `block` and turn away a source over its service's limits,
    with the verdict of the chain's policy (`chain_verdict`: accept, drop or
    reject); accepts of logged services and rules log first."""
    rules_by_name = {("publish", r.name): r for r in policy.publish}
    rules_by_name.update({("outbound", r.name): r for r in policy.outbound})
    found = []
    for rule in rules:
        source = rules_by_name.get((rule.origin.kind, rule.origin.name))
        if source is None:
            found.append(rule)
            continue
        service = next((s for s in source.services if s.name == rule.origin.service), None)
        options = service if rule.origin.kind == "publish" and service is not None else source
        block = getattr(source, "block", None)
        if block is not None:
            found.extend(_blocked(block, rule, chain_verdict))
        if getattr(options, "limit", None) is not None:
            found.extend(_limit_rules(source, rule, options.limit, chain_verdict))
        if options.log:
            rule = Rule(rule.origin, rule.matches,
                        (Log((source.name,), policy.firewall.log.group),) + rule.statements)
        found.append(rule)
    return found


def _blocked(block, accept: Rule, chain_verdict: str) -> list[Rule]:
    """A publication's `block`: its sources meet the chain policy's verdict
    before the accept (none in a family where the block has no address)."""
    family = next(m.family for m in accept.matches if isinstance(m, AddressMatch))
    sources = address_match(block, family, "saddr")
    if sources is None:
        return []
    return [Rule(accept.origin, (sources,) + accept.matches,
                 (_over_limit(chain_verdict, accept),))]


def _limit_rules(publication, accept: Rule, limit, chain_verdict: str) -> list[Rule]:
    """New connections beyond the source's concurrent connections, or over
    its rate, meet the chain policy's verdict (drop, or reject) before the
    accept: one meter a service, family and kind, keyed on the source.

    The count comes first so that a connection it turns away spends none
    of the rate: the kernel's count may still hold a connection that has
    just closed, and the client's retried SYN should then get through."""
    family = next(m.family for m in accept.matches if isinstance(m, AddressMatch))
    prefix = limit.ipv4_prefix if family == "ip" else limit.ipv6_prefix
    verdict = _over_limit(chain_verdict, accept)
    index = 1 + next(i for i, s in enumerate(publication.services)
                     if s.name == accept.origin.service)
    stem = f"{publication.name}_{index}_"
    version = "4" if family == "ip" else "6"
    matches = accept.matches + (ConntrackMatch(("new",)),)
    rules = []
    if limit.concurrent is not None:
        name = stem + "conn" + version
        rules.append(Rule(accept.origin, matches, (
            CountMeter(name, family, limit.concurrent, prefix), verdict)))
        rules.append(_meter_full(accept.origin, matches, name, family, prefix, verdict))
    if limit.new is not None:
        name = stem + "new" + version
        meter = RateMeter(name, family, limit.new.count, limit.new.unit,
                          limit.burst or DEFAULT_BURST, prefix)
        rules.append(Rule(accept.origin, matches, (meter, verdict)))
        rules.append(_meter_full(accept.origin, matches, name, family, prefix, verdict))
    return rules


def _over_limit(chain_verdict: str, accept: Rule) -> Verdict:
    """The verdict of the chain the accept is in: drop, or reject's for its protocol."""
    if chain_verdict != "reject":
        return DROP
    protocol = next((m.protocol for m in accept.matches if isinstance(m, PortMatch)), None)
    return Verdict("reject", "tcp reset") if protocol == "tcp" else REJECT_OTHERS


def _meter_full(origin: Origin, matches: tuple, name: str, family: str, prefix: int,
                verdict: Verdict) -> Rule:
    """The rule after a meter's: a source the meter had no room for meets
    the same verdict. A full meter (sources come and go by its timeout,
    or as their connections close) then turns new sources away rather
    than letting every new source through unlimited."""
    return Rule(origin, matches + (UnmeteredMatch(name, family, prefix),), (verdict,))
