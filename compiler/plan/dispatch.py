"""Many publications: a chain with many publication pairs sends each new
connection to its pair's rules with one verdict-map lookup (docs/ruleset.md,
Many publications)."""

from __future__ import annotations

from typing import Optional

from .ir import AddressMatch, Chain, Dispatch, DispatchEntry, Origin, PortMatch, Rule

# Up to this many publication pairs a chain lists one rule per pair, easiest
# to read; beyond it, one map lookup keeps a new connection's walk constant.
DISPATCH_THRESHOLD = 16
# The chains that dispatch, and whether their key is the address before DNAT
# (forward's accepts match the translated address and the original one).
DISPATCHED = {"prerouting": False, "forward": True, "input": False}


def dispatched(chain: Chain, threshold: int = DISPATCH_THRESHOLD) -> tuple[Chain, ...]:
    """A chain with more than `threshold` publication pairs: the rules
    of each pair move to a regular chain of their own (`prerouting_1`, ...),
    in their order, and one Dispatch rule per family takes their place (the
    first one's). Moving them is exact: each matches one address, protocol
    and port, so a packet can match only its own pair's rules; every rule
    they move past is a publication of another address or port (semantics
    allows each external address and port once, and routed servers are never
    translated to) or matches another protocol; in input, unless a redirected
    connection's accept could take the port (`_redirected_onto`). A packet
    matching no rule in its pair's chain returns and goes on as before.
    Otherwise the chain as it is."""
    if chain.name not in DISPATCHED:
        return (chain,)
    original = DISPATCHED[chain.name]
    keys = [_dispatch_key(rule, original) for rule in chain.rules]
    targets = {key: None for key in keys if key is not None}
    if len(targets) <= threshold or (chain.name == "input"
                                     and _redirected_onto(chain.rules, keys)):
        return (chain,)
    targets = {key: f"{chain.name}_{number}" for number, key in enumerate(targets, 1)}
    dispatch = [Rule(Origin("dispatch", chain.name), (), (Dispatch(family, original, tuple(
        DispatchEntry(address, protocol, port, target)
        for (family_, address, protocol, port), target in targets.items() if family_ == family)),))
        for family in dict.fromkeys(key[0] for key in targets)]
    first = next(i for i, key in enumerate(keys) if key is not None)
    rules = chain.rules[:first] + tuple(dispatch) + tuple(
        rule for rule, key in zip(chain.rules[first:], keys[first:]) if key is None)
    grouped: dict[tuple, list[Rule]] = {key: [] for key in targets}
    for rule, key in zip(chain.rules, keys):
        if key is not None:
            grouped[key].append(rule)       # one pass: a pair's rules, in their order
    pairs = tuple(Chain(target, None, tuple(grouped[key])) for key, target in targets.items())
    return pairs + (Chain(chain.name, chain.hook, rules),)


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
    if address is None or port is None or address.set_name or port.low != port.high \
            or len(address.intervals) != 1 or len(set(address.intervals[0])) != 1:
        return None
    return address.family, address.intervals[0][0], port.protocol, port.low
