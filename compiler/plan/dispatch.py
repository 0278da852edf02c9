"""Many publications: a chain with many publication pairs sends each new
connection to its address's rules with one verdict-map lookup, or translates
it with one DNAT-map lookup (docs/ruleset.md, Many publications)."""

from __future__ import annotations

from typing import Optional

from .ir import AddressMatch, Chain, InterfaceMatch, Nat, Origin, PortMatch, Rule
from .maps import Dispatch, DispatchEntry, NatMap, NatMapEntry

# Up to this many publication pairs a chain lists one rule per pair, easiest
# to read; beyond it, one map lookup keeps a new connection's walk constant.
DISPATCH_THRESHOLD = 16
# The chains that dispatch, and whether their key is the address before DNAT
# (forward's accepts match the translated address and the original one).
DISPATCHED = {"prerouting": False, "forward": True, "input": False}


def dispatched(chain: Chain, threshold: int = DISPATCH_THRESHOLD) -> tuple[Chain, ...]:
    """A chain with more than `threshold` publication pairs (address,
    protocol, port) looks a new connection's pair up in one Dispatch map a
    family, in place of the first pair's rule. The rules of each published
    address move to a regular chain of their own (`prerouting_1`, ...), in
    their order, without the address the map looked up (`_unkeyed`). Moving
    them is exact: each matches one address, protocol and port, so a packet
    can match only its own pair's rules; every rule they move past is a
    publication of another address or port (semantics allows each external
    address and port once, and routed servers are never translated to) or
    matches another protocol; in input, unless a redirected connection's
    accept could take the port (`_redirected_onto`). A packet matching no
    rule in its address's chain returns and goes on as before. A plain DNAT
    (`_plain_dnat`) needs no chain: it is a NatMap's element. Else, as is."""
    if chain.name not in DISPATCHED:
        return (chain,)
    original = DISPATCHED[chain.name]
    keys = [_dispatch_key(rule, original) for rule in chain.rules]
    grouped: dict[tuple, list[Rule]] = {key: [] for key in keys if key is not None}
    if len(grouped) <= threshold or (chain.name == "input"
                                     and _redirected_onto(chain.rules, keys)):
        return (chain,)
    for rule, key in zip(chain.rules, keys):
        if key is not None:
            grouped[key].append(rule)       # one pass: a pair's rules, in their order
    mapped = {key: rules[0] for key, rules in grouped.items()
              if chain.name == "prerouting" and _plain_dnat(rules, key[0])}
    names: dict[tuple, str] = {}            # (family, address) -> its chain, in policy order
    for key in grouped:
        if key not in mapped:
            names.setdefault(key[:2], f"{chain.name}_{len(names) + 1}")
    moved: dict[str, list[Rule]] = {name: [] for name in names.values()}
    for rule, key in zip(chain.rules, keys):
        if key is not None and key not in mapped:
            moved[names[key[:2]]].append(_unkeyed(rule, key, original))
    first = next(i for i, key in enumerate(keys) if key is not None)
    rules = chain.rules[:first] + _lookups(chain.name, original, grouped, names, mapped) + tuple(
        rule for rule, key in zip(chain.rules[first:], keys[first:]) if key is None)
    return tuple(Chain(name, None, tuple(rules_)) for name, rules_ in moved.items()) + (
        Chain(chain.name, chain.hook, rules),)


def _lookups(chain: str, original: bool, grouped: dict[tuple, list[Rule]],
             names: dict[tuple, str], mapped: dict[tuple, Rule]) -> tuple[Rule, ...]:
    """A family at a time, its Dispatch to the chains of its addresses, then
    its NatMap of the plain DNATs (one per incoming interface)."""
    origin = Origin("dispatch", chain)
    rules: list[Rule] = []
    for family in dict.fromkeys(key[0] for key in grouped):
        chained = [key for key in grouped if key[0] == family and key not in mapped]
        entries = tuple(DispatchEntry(address, protocol, port, names[family, address])
                        for _, address, protocol, port in chained)
        rules += [Rule(origin, (), (Dispatch(family, original, entries),))] if entries else []
        translated: dict[InterfaceMatch, list[NatMapEntry]] = {}
        for (family_, address, protocol, port), rule in mapped.items():
            if family_ == family:
                interface = next(m for m in rule.matches if type(m) is InterfaceMatch)
                translated.setdefault(interface, []).append(NatMapEntry(
                    address, protocol, port, rule.statements[0].address, rule.origin))
        rules += [Rule(origin, (interface,), (NatMap(family, tuple(entries_)),))
                  for interface, entries_ in translated.items()]
    return tuple(rules)


def _plain_dnat(rules: list[Rule], family: str) -> bool:
    """A pair whose only rule is a publication's DNAT from one interface,
    for every source, to a server of the key's family on the same port:
    what a NatMap element says, so it needs no chain."""
    if len(rules) != 1 or rules[0].origin.kind != "publish":
        return False
    rule = rules[0]
    nat = rule.statements[0] if len(rule.statements) == 1 else None
    return (type(nat) is Nat and nat.type == "dnat" and nat.family == family
            and nat.port is None and len(rule.matches) == 3
            and sum(type(m) is InterfaceMatch and m.direction == "iif"
                    for m in rule.matches) == 1)


def _unkeyed(rule: Rule, key: tuple, original: bool) -> Rule:
    """A rule moved to its address's chain, without the address the map
    looked up: only packets to that address get there. The port stays: it
    gives nft the protocol that `ct original proto-dst` needs."""
    family, address = key[0], key[1]
    return Rule(rule.origin, tuple(m for m in rule.matches if not (
        type(m) is AddressMatch and m.field == "daddr" and m.original == original
        and m.family == family and not m.negated and not m.set_name
        and m.intervals == ((address, address),))), rule.statements)


def _redirected_onto(rules: tuple[Rule, ...], keys: list) -> bool:
    """Whether an input accept of a redirected connection (bound to its
    original address) takes a port a keyed rule matches: the redirect leaves
    the connection on the incoming interface's primary address, which may be
    the keyed rule's, so moving that rule past the accept could change which
    of the two takes it. Input then stays one rule a pair."""
    ports = {(key[2], key[3]) for key in keys if key is not None}
    return any(isinstance(match, PortMatch) and not match.original
               and any(protocol == match.protocol and match.low <= port <= match.high
                       for protocol, port in ports)
               for rule, key in zip(rules, keys) if key is None
               and any(isinstance(m, AddressMatch) and m.original for m in rule.matches)
               for match in rule.matches)


def _dispatch_key(rule: Rule, original: bool) -> Optional[tuple[str, int, str, int]]:
    """(family, address, protocol, port) that every packet a publication's
    rule matches has as its (original) destination address and its port;
    None when the rule is no publication or matches a range or ping."""
    if rule.origin.kind not in ("publish", "hairpin"):
        return None
    address = port = None
    for match in rule.matches:      # one pass: every rule of the chain is asked
        if address is None and type(match) is AddressMatch and match.field == "daddr" \
                and match.original == original:
            address = match
        elif port is None and type(match) is PortMatch and not match.original:
            port = match
    if address is None or port is None or address.set_name or address.negated \
            or port.low != port.high \
            or len(address.intervals) != 1 or len(set(address.intervals[0])) != 1:
        return None
    return address.family, address.intervals[0][0], port.protocol, port.low
