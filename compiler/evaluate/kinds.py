"""The evaluator's judgement of each plan kind: one predicate per match kind
(MATCHES) and one handler per statement kind (STATEMENTS); tests/test_kinds.py
holds both to `plan.KINDS`."""

from __future__ import annotations

import pwd
from dataclasses import replace
from typing import Callable

from ..plan import Jump, Nat
from ..vocab import WEEK, nft_day
from .packet import HOP_LIMIT, STOP, UnjudgedKind, endpoint

# -- matches: one predicate per kind (match, walk) -> bool ----------------------------

def predicate(match) -> Callable:
    return _judgement(MATCHES, match, "match", "a predicate to mailpubc.evaluate.kinds.MATCHES")


def handler(statement) -> Callable:
    return _judgement(STATEMENTS, statement, "statement",
                      "a handler to mailpubc.evaluate.kinds.STATEMENTS")


def _judgement(table: dict, part, what: str, fix: str) -> Callable:
    """The table's function for `part`'s kind; UnjudgedKind saying what to add."""
    judge = table.get(part.kind)
    if judge is None:
        raise UnjudgedKind(f"the evaluator cannot judge {what} kind {part.kind!r}: add {fix}")
    return judge


def _interface(match, walk) -> bool:
    packet = walk.packet
    return (packet.iif if match.direction == "iif" else packet.oif) == match.name


def _address_match(match, walk) -> bool:
    packet = walk.packet
    if packet.family != match.family:
        return False
    if match.field == "saddr":
        value = packet.original_saddr if match.original else packet.saddr
    else:
        value = packet.original_daddr if match.original else packet.daddr
    if value is None:
        return False
    intervals = walk.evaluator.sets[match.set_name].intervals if match.set_name else \
        match.intervals
    return any(low <= value <= high for low, high in intervals) != match.negated


def _port(match, walk) -> bool:
    packet = walk.packet
    port = packet.original_dport if match.original else packet.dport
    return packet.protocol == match.protocol and port is not None and \
        match.low <= port <= match.high


def _protocol(match, walk) -> bool:
    return walk.packet.protocol == match.protocol


def _icmp(match, walk) -> bool:
    return walk.packet.protocol == match.protocol and walk.packet.icmp_type in match.types


def _hoplimit(match, walk) -> bool:
    return walk.packet.family == "ip6" and match.value == HOP_LIMIT


def _conntrack(match, walk) -> bool:
    return "new" in match.states


def _day(match, walk) -> bool:
    return nft_day(WEEK[walk.packet.time.weekday()]) in match.days


def _hour(match, walk) -> bool:
    time = walk.packet.time
    return match.first <= time.hour * 3600 + time.minute * 60 + time.second <= match.last


def _ctstatus(match, walk) -> bool:
    """`ct status dnat`: the connection's destination was translated."""
    packet = walk.packet
    return match.status == "dnat" and (packet.daddr, packet.dport) != (
        packet.original_daddr, packet.original_dport)


def _skuid(match, walk) -> bool:
    """The firewall's own connection of that user: a name is looked up on
    this host, as nft does when it loads the ruleset."""
    uid = match.user
    if isinstance(uid, str):
        try:
            uid = pwd.getpwnam(uid).pw_uid
        except KeyError:
            raise UnjudgedKind(f"user {match.user!r} does not exist on this host, so neither "
                               "nft nor explain can tell its uid") from None
    return walk.packet.uid == uid


def _unmetered(match, walk) -> bool:
    """A source a meter had no room for: explain takes meters as not full."""
    return False


MATCHES: dict[str, Callable] = {
    "ctstatus": _ctstatus, "unmetered": _unmetered, "skuid": _skuid,
    "interface": _interface, "address": _address_match, "port": _port,
    "protocol": _protocol, "icmp": _icmp, "hoplimit": _hoplimit, "conntrack": _conntrack,
    "day": _day, "hour": _hour,
}


# -- statements: one handler per kind (statement, walk) -> None (go on), STOP
#    (the rule ends, the chain goes on) or (verdict, origin, action) (the chain ends)

def _verdict(statement, walk):
    return walk.ended(statement.verdict)


def _nat(statement, walk):
    packet = walk.packet
    address = int(statement.address)
    if statement.type == "dnat":
        port = statement.port if statement.port is not None else packet.dport
        walk.packet = replace(packet, daddr=address, dport=port)
        return walk.ended("accept", f"dnat to {endpoint(packet.family, address, port)}")
    walk.packet = replace(packet, saddr=address)
    return walk.ended("accept", f"snat to {endpoint(packet.family, address, None)}")


def _redirect(statement, walk):
    """To the firewall itself on another port; a localhost publication's
    address is already one of the firewall's, so only the port changes."""
    packet = walk.packet
    walk.packet = replace(packet, dport=statement.port)
    return walk.ended("accept", f"redirect to {endpoint(packet.family, packet.daddr, statement.port)}")


def _masquerade(statement, walk):
    walk.masqueraded = True
    return walk.ended("accept", "masquerade")


def _jump(statement, walk):
    """The target chain's rules; when none ends it, the jumping rule goes on
    (and the chain, which decided nothing, is no step of its own)."""
    origin, at = walk.rule_origin, len(walk.jumped)
    decided = walk.rules(walk.evaluator.chains[statement.target])
    if decided is not None:
        walk.jumped.insert(at, statement.target)
    walk.rule_origin = origin
    return decided


def _dispatch(statement, walk):
    """The verdict map: a jump to the chain its element names for the
    packet's (original) destination address, protocol and port; no element,
    the rule does nothing."""
    packet = walk.packet
    daddr = packet.original_daddr if statement.original else packet.daddr
    key = (daddr, packet.protocol, packet.dport)
    target = next((e.target for e in statement.entries
                   if (e.address, e.protocol, e.port) == key), None)
    if packet.family != statement.family or target is None:
        return None
    return _jump(Jump(target), walk)


def _nat_map(statement, walk):
    """The DNAT its element names for the packet's destination address,
    protocol and port, as the publication's own rule would; no element, the
    rule does nothing."""
    packet = walk.packet
    key = (packet.daddr, packet.protocol, packet.dport)
    entry = next((e for e in statement.entries if (e.address, e.protocol, e.port) == key), None)
    if packet.family != statement.family or entry is None:
        return STOP
    walk.rule_origin = entry.origin
    return _nat(Nat("dnat", statement.family, entry.server), walk)


def _goes_on(statement, walk):
    """Counters and logs record the packet and let the rule go on."""
    return None


def _not_hit(statement, walk):
    """A meter or rate limit: explain assumes no limit is hit, so the rule ends."""
    return STOP


STATEMENTS: dict[str, Callable] = {
    "verdict": _verdict, "nat": _nat, "jump": _jump, "dispatch": _dispatch, "nat_map": _nat_map,
    "redirect": _redirect, "masquerade": _masquerade,
    "counter": _goes_on, "log": _goes_on,
    "rate_meter": _not_hit, "count_meter": _not_hit, "limit": _not_hit,
}
