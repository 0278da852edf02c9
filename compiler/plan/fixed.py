"""The rules every ruleset has (docs/ruleset.md says why each is there), the
reject tail, and the anti-spoofing chain of `firewall.anti_spoofing`."""

from __future__ import annotations

from ..addresses import Interval, host_mask, merge, parse_network, subtract
from ..model import Firewall
from ..vocab import FAMILIES, ICMP_ERRORS, ICMPV6_ERRORS, MLD, MLD_REPORTS, NEIGHBOUR_DISCOVERY
from .ir import (AddressMatch, Chain, ConntrackMatch, Hook, HopLimitMatch, IcmpTypeMatch,
                 InterfaceMatch, Match, Origin, ProtocolMatch, Rule, Verdict)

ACCEPT = Verdict("accept")
DROP = Verdict("drop")
REJECT_OTHERS = Verdict("reject", "icmpx", "admin-prohibited")


def _fixed(name: str, *matches: Match, verdict: Verdict = ACCEPT) -> Rule:
    return Rule(Origin("fixed", name), matches, (verdict,))


def _network(text: str) -> Interval:
    version, first, prefix = parse_network(text)
    return first, first | host_mask(version, prefix)


NEIGHBOUR_RULE = _fixed("neighbour discovery", IcmpTypeMatch("icmpv6", NEIGHBOUR_DISCOVERY),
                        HopLimitMatch(255))
LINK_LOCAL = _network("fe80::/10")
# MLD keeps the firewall's multicast memberships (its solicited-node groups)
# alive on a snooping switch: link-local, hop limit 1; reports may also come
# from :: while an address is still tentative.
MLD_RULES = (_fixed("mld", IcmpTypeMatch("icmpv6", MLD),
                    AddressMatch("ip6", "saddr", (LINK_LOCAL,)), HopLimitMatch(1)),
             _fixed("mld", IcmpTypeMatch("icmpv6", MLD_REPORTS),
                    AddressMatch("ip6", "saddr", ((0, 0),)), HopLimitMatch(1)))
# Sources no host owns, which anti-spoofing never drops: the unspecified
# address of each family (DHCP, duplicate address detection) and link-local.
NO_ONES = {"ip": [(0, 0)], "ip6": [(0, 0), LINK_LOCAL]}
CONNTRACK_RULES = (_fixed("replies", ConntrackMatch(("established", "related"))),
                   _fixed("invalid", ConntrackMatch(("invalid",)), verdict=DROP))
ICMP_ERROR_RULES = (_fixed("icmp errors", IcmpTypeMatch("icmp", ICMP_ERRORS)),
                    _fixed("icmpv6 errors", IcmpTypeMatch("icmpv6", ICMPV6_ERRORS)))


def head(chain: str) -> tuple[Rule, ...]:
    """The fixed rules before a filter chain's blocks: input and output (the
    firewall's own traffic) take neighbour discovery, MLD, conntrack and
    loopback; forward conntrack only."""
    if chain == "forward":
        return CONNTRACK_RULES
    direction = "iif" if chain == "input" else "oif"
    return (NEIGHBOUR_RULE, *MLD_RULES, *CONNTRACK_RULES,
            _fixed("loopback", InterfaceMatch(direction, "lo", by_index=True)))


def icmp_errors(chain: str) -> tuple[Rule, ...]:
    """ICMP errors, after the blocks: input and output only."""
    return () if chain == "forward" else ICMP_ERROR_RULES


def reject_tail(chain: str) -> tuple[Rule, ...]:
    """What `reject` adds before the chain's drop policy: a TCP reset for TCP,
    ICMP administratively prohibited for the rest."""
    origin = Origin("policy", chain)
    return (Rule(origin, (ProtocolMatch("tcp"),), (Verdict("reject", "tcp reset"),)),
            Rule(origin, (), (REJECT_OTHERS,)))


def antispoofing(fw: Firewall) -> tuple[Chain, ...]:
    """With firewall.anti_spoofing, a packet that arrives on the external
    interface with a source in a zone's networks, or on a zone's interface
    with a source outside that zone's networks, is dropped at the raw
    priority: before connection tracking (it neither opens nor matches a
    connection) and before any translation (no publication or hairpin
    rewrites it into a source the servers trust). Link-local and
    unspecified sources are no one's: neighbour discovery, MLD and DHCP
    use them on every link."""
    if not fw.anti_spoofing or not fw.zones:
        return ()
    origin = Origin("antispoofing", "firewall.anti_spoofing", position=fw.anti_spoofing_position)
    rules = tuple(
        Rule(origin, (InterfaceMatch("iif", fw.external_interface),
                      AddressMatch(family, "saddr", forged)), (DROP,))
        for family in FAMILIES
        if (forged := subtract(fw.internal_networks.family(family), NO_ONES[family])))
    rules += tuple(
        Rule(origin, (InterfaceMatch("iif", zone.interface),
                      AddressMatch(family, "saddr", merge([*zone.networks.family(family),
                                                           *NO_ONES[family]]), negated=True)),
             (DROP,))
        for zone in fw.zones for family in FAMILIES)
    return (Chain("antispoofing", Hook("filter", "prerouting", "raw", "accept"), rules),)
