"""The JSON generator: a plan -> libnftables JSON (`nft -j -f FILE` loads it).

It prints the same plan as the text generator, object for object, so both
load to the same listing; each match and statement kind has one function in
the dispatch table below. Set elements and names pass the same checks as in
the text.
"""

from __future__ import annotations

from ..addresses import BITS, int_text, interval_blocks
from ..plan import Chain, NftSet, Rule, Ruleset
from ..vocab import NFT_DAY_NAMES, PRIORITIES, SET_TYPES, VERSIONS
from . import (comment, host_text, log_prefix, prefix_mask, safe_counter_name, safe_name,
               safe_string)

FAMILY = "inet"


def generate(ruleset: Ruleset) -> dict:
    table = {"family": FAMILY, "name": safe_name(ruleset.table)}
    commands: list[dict] = [
        {"metainfo": {"json_schema_version": 1}},
        {"add": {"table": dict(table)}},       # so that the delete below never fails
        {"delete": {"table": dict(table)}},
        {"add": {"table": dict(table)}},
    ]
    commands += [{"add": {"counter": {"family": FAMILY, "table": ruleset.table,
                                      "name": safe_counter_name(name)}}}
                 for name in ruleset.counters]
    commands += [{"add": {"set": _set(ruleset.table, s)}} for s in ruleset.sets]
    # every chain before any rule, so a jump may name a chain added after it
    commands += [{"add": {"chain": _chain(ruleset.table, chain)}} for chain in ruleset.chains]
    commands += [{"add": {"rule": _rule(ruleset.table, chain.name, rule)}}
                 for chain in ruleset.chains for rule in chain.rules]
    return {"nftables": commands}


def _set(table: str, nft_set: NftSet) -> dict:
    # nft 1.0.6's JSON has no "dynamic" flag; nft sets it itself on a set
    # that rules update, as the text's `flags dynamic` does
    flags = [flag for flag in nft_set.flags if flag != "dynamic"]
    body = {"family": FAMILY, "table": table, "name": safe_name(nft_set.name),
            "type": SET_TYPES[nft_set.family]}
    if flags:
        body["flags"] = flags
    if nft_set.size:
        body["size"] = nft_set.size
    if nft_set.timeout:
        body["timeout"] = nft_set.timeout
    if nft_set.written:
        body["auto-merge"] = True
    if nft_set.intervals:
        body["elem"] = (_merged_elements if nft_set.written else _elements)(nft_set.family,
                                                                            nft_set.intervals)
    return body


def _chain(table: str, chain: Chain) -> dict:
    body = {"family": FAMILY, "table": table, "name": safe_name(chain.name)}
    if chain.hook:
        body.update(type=chain.hook.type, hook=chain.hook.hook,
                    prio=PRIORITIES[chain.hook.priority], policy=chain.hook.policy)
    return body


def _rule(table: str, chain: str, rule: Rule) -> dict:
    expressions = [PRINTERS[part.kind](part) for part in rule.matches + rule.statements]
    return {"family": FAMILY, "table": table, "chain": chain,
            "expr": expressions, "comment": comment(rule.origin)}


def _elements(family: str, intervals) -> list:
    version = VERSIONS[family]
    return [_network(version, first, prefix)
            for interval in intervals for first, prefix in interval_blocks(version, interval)]


def _merged_elements(family: str, intervals) -> list:
    """One element an interval, a range where it is not one network: what
    nft's auto-merge leaves of a set the text writes through defines (nft
    1.0.6 reads no auto-merge from JSON)."""
    version = VERSIONS[family]
    elements = []
    for interval in intervals:
        blocks = interval_blocks(version, interval)
        elements.append(_network(version, *blocks[0]) if len(blocks) == 1 else
                        {"range": [int_text(version, interval[0]), int_text(version, interval[1])]})
    return elements


def _network(version: int, first: int, prefix: int):
    """A network as an element: a plain address for a single host."""
    if prefix == BITS[version]:
        return int_text(version, first)
    return {"prefix": {"addr": int_text(version, first), "len": prefix}}


def _match(left: dict, right, op: str = "==") -> dict:
    return {"match": {"op": op, "left": left, "right": right}}


def _one_or_set(values: list):
    return values[0] if len(values) == 1 else {"set": values}


def _interface(m) -> dict:
    key = m.direction if m.by_index else m.direction + "name"
    return _match({"meta": {"key": key}}, safe_string(m.name))


def _address(m) -> dict:
    if m.original:
        left = {"ct": {"key": f"{m.family} {m.field}", "dir": "original"}}
    else:
        left = {"payload": {"protocol": m.family, "field": m.field}}
    right = ("@" + safe_name(m.set_name) if m.set_name
             else _one_or_set(_elements(m.family, m.intervals)))
    return _match(left, right, "!=" if m.negated else "==")


def _port(m) -> dict:
    left = ({"ct": {"key": "proto-dst", "dir": "original"}} if m.original
            else {"payload": {"protocol": m.protocol, "field": "dport"}})
    return _match(left, m.low if m.low == m.high else {"range": [m.low, m.high]})


def _protocol(m) -> dict:
    return _match({"meta": {"key": "l4proto"}}, m.protocol)


def _icmp(m) -> dict:
    return _match({"payload": {"protocol": m.protocol, "field": "type"}}, _one_or_set(list(m.types)))


def _hoplimit(m) -> dict:
    return _match({"payload": {"protocol": "ip6", "field": "hoplimit"}}, m.value)


def _conntrack(m) -> dict:
    return _match({"ct": {"key": "state"}}, list(m.states), op="in")


def _day(m) -> dict:
    return _match({"meta": {"key": "day"}}, {"set": [NFT_DAY_NAMES[d] for d in m.days]})


def _hour(m) -> dict:
    return _match({"meta": {"key": "hour"}}, {"range": [m.first, m.last]})


def _nat(s) -> dict:
    body = {"family": s.family, "addr": str(s.address)}
    if s.port:
        body["port"] = s.port
    return {s.type: body}


def _verdict(s) -> dict:
    if s.verdict != "reject":
        return {s.verdict: None}
    body = {"type": s.reject_type}
    if s.reject_code:
        body["expr"] = s.reject_code
    return {"reject": body}


def _jump(s) -> dict:
    return {"jump": {"target": safe_name(s.target)}}


def _dispatch(s) -> dict:
    daddr = ({"ct": {"key": f"{s.family} daddr", "dir": "original"}} if s.original
             else {"payload": {"protocol": s.family, "field": "daddr"}})
    key = [daddr, {"meta": {"key": "l4proto"}}, {"payload": {"protocol": "th", "field": "dport"}}]
    return {"vmap": {"key": {"concat": key}, "data": {"set": [
        [{"concat": [host_text(s.family, e.address), e.protocol, e.port]},
         {"jump": {"target": safe_name(e.target)}}] for e in s.entries]}}}


def _nat_map(s) -> dict:
    key = [{"payload": {"protocol": s.family, "field": "daddr"}}, {"meta": {"key": "l4proto"}},
           {"payload": {"protocol": "th", "field": "dport"}}]
    return {"dnat": {"family": s.family, "addr": {"map": {"key": {"concat": key}, "data": {"set": [
        [{"concat": [host_text(s.family, e.address), e.protocol, e.port]}, str(e.server)]
        for e in s.entries]}}}}}


def _source_key(meter) -> dict:
    """A meter's key: the source address, or its network through a mask."""
    address = {"payload": {"protocol": meter.family, "field": "saddr"}}
    mask = prefix_mask(meter.family, meter.prefix)
    return address if mask is None else {"&": [address, mask]}


def _meter(op: str, s, statement: dict) -> dict:
    return {"set": {"op": op, "elem": _source_key(s), "set": "@" + safe_name(s.set_name),
                    "stmt": [statement]}}


def _unmetered(m) -> dict:
    return _match(_source_key(m), "@" + safe_name(m.set_name), op="!=")


def _rate_meter(s) -> dict:
    return _meter("update", s, {"limit": {"rate": s.count, "per": s.unit, "burst": s.burst,
                                          "inv": True}})


def _count_meter(s) -> dict:
    return _meter("add", s, {"ct count": {"val": s.count, "inv": True}})


def _limit(s) -> dict:
    return {"limit": {"rate": s.count, "per": s.unit, "burst": s.burst}}


def _counter(s) -> dict:
    return {"counter": safe_counter_name(s.name)}


def _log(s) -> dict:
    body = {"prefix": log_prefix(s)}
    if s.group is not None:
        body["group"] = s.group
    return {"log": body}


def _redirect(s) -> dict:
    return {"redirect": {"port": s.port}}


def _masquerade(s) -> dict:
    return {"masquerade": None}


def _skuid(m) -> dict:
    return _match({"meta": {"key": "skuid"}},
                  safe_string(m.user) if isinstance(m.user, str) else m.user)


def _ctstatus(m) -> dict:
    return _match({"ct": {"key": "status"}}, m.status, op="in")


PRINTERS = {"interface": _interface, "address": _address, "port": _port, "protocol": _protocol,
          "icmp": _icmp, "hoplimit": _hoplimit, "conntrack": _conntrack, "day": _day, "hour": _hour,
          "nat": _nat, "verdict": _verdict, "jump": _jump, "rate_meter": _rate_meter,
          "count_meter": _count_meter, "limit": _limit, "log": _log, "counter": _counter,
          "redirect": _redirect, "masquerade": _masquerade, "ctstatus": _ctstatus,
          "dispatch": _dispatch, "nat_map": _nat_map, "unmetered": _unmetered, "skuid": _skuid}
