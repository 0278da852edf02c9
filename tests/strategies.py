"""Hypothesis strategies for mailpub policies.

`policies()` draws VALID policies across the whole language (the contract in
docs/policy-language.md): nested address sets of both families with ranges,
built-in and custom services (and ports written inline), localhost, internal
and routed servers, several external addresses, outbound rules with
from/to/schedule, management.ssh, ssh_port and ping, every verdict, custom
table names, address sets from list files, firewall.block and
dynamic_block. Validity is kept by construction, not by
filtering, so a draw the compiler refuses is a compiler bug.

`mutants()` breaks valid policies (delete, duplicate, retype, rename or
corrupt a key or value; inject quotes, semicolons, braces, newlines,
non-ASCII; YAML 1.1 traps) and returns YAML text that may or may not still
be valid: the compiler must either compile it or say cleanly why not.
"""

from __future__ import annotations

import atexit
import copy
import dataclasses
import hashlib
import ipaddress
import json
import os
import random
import re
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass

import yaml
from hypothesis import assume, strategies as st

from mailpubc import api, plan
from mailpubc.addresses import mapped_ipv4
from mailpubc.datafiles import nft_keywords
from mailpubc.vocab import BUILTIN_SERVICES, ECHO, WEEK, PortRange
from mailpubc.schema import policy_schema

NAME = r"[A-Za-z][A-Za-z0-9_-]{0,31}"
INTERFACE = r"[A-Za-z0-9_.@+,=-]{1,15}"
VERDICTS = policy_schema()["$defs"]["verdict"]["enum"]
ZONE_NAMES = ("zone1", "zone2")     # the list form's zones, which address sets may not be named
RESERVED = {"localhost", "any", "always", *ZONE_NAMES} | set(BUILTIN_SERVICES)
FEEDERS = tuple(sorted(plan.DYNAMIC_FLAGS))     # who fills a dynamic_block
SECOND_ZONE = [ipaddress.ip_network("10.254.1.0/24"), ipaddress.ip_network("fd00:fe::/64")]
# Words nft uses elsewhere (libnftables' token strings) that it still takes as
# a table name: the edge of compiler/nft_keywords.txt.
TABLE_WORDS = ("filter", "nat", "mailpub", "Inet", "ACCEPT", "daddr", "dport", "saddr",
               "original", "reply", "state", "status", "to", "in", "out", "version",
               "name", "week", "second", "minute", "string", "zone", "echo", "proto-dst")
EXTERNAL_V4 = [ipaddress.ip_network(n) for n in ("198.51.100.0/24", "203.0.113.0/24")]
EXTERNAL_V6 = [ipaddress.ip_network("2001:db8:100::/64")]
# Injected into strings by mutants: what could end a quoted nft string, a
# statement or a block, or fool a pattern check.
HOSTILE = ['"', "'", ";", "{", "}", "\n", "\r", "\t", " ", "#", "\\", "ä", "\u202e",
           "\u0000", "\ufeff", "$(id)", " accept", "\n}", "*", "@", "/"]
# What a comment may hold: anything printable, and control characters.
COMMENT_TEXT = ([h for h in HOSTILE if h.isprintable() or h == "\t"]
                + ["é", "€", "\U0001f4e7", " publish:", " - x"]) * 4 + ["\x00", "\x1b"]
# Plain scalars that YAML 1.1 would read as something else.
TRAPS = ["0755", "010", "22:25", "1:30", "on", "off", "yes", "no", "y", "n", "~", "null",
         "true", "False", "1.0", "1e3", ".inf", "0x1F", "0o17", "+1", "-1", "0", "65536"]

names = st.from_regex(NAME, fullmatch=True)
# PyYAML writes "08" unquoted (no YAML 1.1 number), which the loader refuses
# as a number with a leading zero: such names are only valid quoted
interface_names = st.from_regex(INTERFACE, fullmatch=True).filter(
    lambda n: n not in (".", "..") and not n.startswith("@")
    and not (n.isdigit() and n.startswith("0") and len(n) > 1))
table_names = st.one_of(names, st.sampled_from(TABLE_WORDS)).filter(
    lambda n: n not in nft_keywords())


@contextmanager
def policy_file(text: str):
    """The policy in a temporary file, as the compiler reads it (hypothesis
    tests cannot use pytest's function-scoped tmp_path)."""
    with tempfile.TemporaryDirectory(prefix="mailpubc-test-") as folder:
        path = os.path.join(folder, "policy.yaml")
        with open(path, "w", encoding="utf-8") as stream:
            stream.write(text)
        yield path


@dataclass(frozen=True)
class Draw:
    """A drawn policy: its data and the YAML text a test writes to a file."""

    data: dict
    text: str


# -- addresses --------------------------------------------------------------

def _hosts(network) -> st.SearchStrategy:
    return st.integers(0, network.num_addresses - 1).map(lambda i: network.network_address + i)


def _subnets(network, low: int | None = None, high: int | None = None) -> st.SearchStrategy:
    """A strict network inside `network`, of prefix length `low`..`high`."""
    def at(prefix):
        step = 2 ** (network.max_prefixlen - prefix)
        return st.integers(0, 2 ** (prefix - network.prefixlen) - 1).map(
            lambda k: ipaddress.ip_network((int(network.network_address) + k * step, prefix)))
    low = network.prefixlen if low is None else low
    high = network.max_prefixlen if high is None else high
    return st.integers(low, high).flatmap(at)


@st.composite
def _entry_in(draw, network) -> tuple[str, list]:
    """One address-list entry inside `network`: address, CIDR or range; with its networks."""
    kind = draw(st.sampled_from(["address", "network", "range"]))
    if kind == "address":
        address = draw(_hosts(network))
        _assume_unmapped(address)
        text = address.exploded if address.version == 6 and draw(st.booleans()) else str(address)
        return text, [ipaddress.ip_network(address)]
    if kind == "network":
        subnet = draw(_subnets(network))
        _assume_unmapped(subnet.network_address)
        return str(subnet), [subnet]
    first, last = sorted([draw(_hosts(network)), draw(_hosts(network))])
    _assume_unmapped(first, last)
    return f"{first}-{last}", list(ipaddress.summarize_address_range(first, last))


def _assume_unmapped(*addresses) -> None:
    """A written IPv4-mapped IPv6 address (::ffff:0:0/96) is an error, not a
    valid policy: the ::/16 networks of anywhere_v6 can draw one."""
    assume(not any(mapped_ipv4(a.version, int(a)) for a in addresses))


anywhere_v4 = _subnets(ipaddress.ip_network("0.0.0.0/0"), 8, 32)
anywhere_v6 = _subnets(ipaddress.ip_network("::/0"), 16, 128)
# anywhere_v6 can draw ::/16 and the like, which ip_network reads as IPv4
GLOBAL_V6 = _subnets(ipaddress.ip_network("2000::/3"), 16, 128)


def _families(networks) -> set[int]:
    return {n.version for n in networks}


# -- the policy ---------------------------------------------------------------

# schedule zones with odd offsets, both ends of the day line, and DST
ZONES = ["UTC", "Asia/Kathmandu", "Pacific/Kiritimati", "Etc/GMT+12", "Europe/Berlin",
         "America/St_Johns"]


@st.composite
def _firewall(draw) -> dict:
    v4 = draw(st.lists(st.one_of(*(_hosts(n) for n in EXTERNAL_V4)), max_size=3, unique=True))
    v6 = draw(st.lists(_hosts(EXTERNAL_V6[0]), max_size=2, unique=True))
    if not v4 and not v6:
        v4 = [draw(_hosts(EXTERNAL_V4[0]))]
    external = draw(st.permutations(v4 + v6))
    interfaces = [draw(interface_names), draw(interface_names)]
    if interfaces[1] == interfaces[0]:
        interfaces[1] = interfaces[0][:14] + ("x" if interfaces[0][-1] != "x" else "y")
    firewall = {"external": {"interface": interfaces[0],
                             "addresses": [str(a) for a in external]}}
    if draw(st.booleans()):
        firewall["table"] = draw(table_names)
    if draw(st.booleans()):
        firewall["timezone"] = draw(st.sampled_from(ZONES))
    if draw(st.integers(0, 3)):   # mostly with an internal side
        families = draw(st.sampled_from([[4], [6], [4, 6]]))
        networks = []
        for family in families:
            outer = ipaddress.ip_network("10.0.0.0/8" if family == 4 else "fd00::/8")
            networks += draw(st.lists(_subnets(outer, *((8, 28) if family == 4 else (32, 120))),
                                      min_size=1, max_size=2))
        firewall["internal"] = {"interface": interfaces[1],
                                "networks": [str(n) for n in networks]}
        routed = draw(st.lists(st.sampled_from(networks), max_size=2, unique=True))
        if routed:
            firewall["internal"]["routed"] = [
                str(draw(_subnets(n, n.prefixlen, min(n.max_prefixlen, n.prefixlen + 8))))
                for n in routed]
        own = {}                 # the firewall's internal address: at most one a family
        for network in networks:
            if network.version not in own and draw(st.integers(0, 2)) == 0:
                own[network.version] = str(draw(_hosts(network)))
        if own:
            values = list(own.values())
            firewall["internal"]["address"] = (values[0] if len(values) == 1 and draw(st.booleans())
                                               else values)
        if draw(st.booleans()):     # the list form: this zone, and maybe a second one
            firewall["internal"] = [{"name": ZONE_NAMES[0], **firewall["internal"]}]
            second = [n for n in SECOND_ZONE if not any(n.overlaps(m) for m in networks)]
            interface = interfaces[1][:14] + ("z" if interfaces[1][-1] != "z" else "y")
            if second and interface != interfaces[0] and draw(st.booleans()):
                firewall["internal"].append({"name": ZONE_NAMES[1], "interface": interface,
                                             "networks": [str(n) for n in second]})
    verdicts = draw(st.dictionaries(st.sampled_from(["input", "forward", "output"]),
                                    st.sampled_from(VERDICTS)))
    if verdicts or draw(st.booleans()):
        firewall["policy"] = verdicts
    return firewall


def _zone_lists(firewall: dict, key: str) -> list[str]:
    """`key` (networks, routed) of every zone, the mapping form's or the list's."""
    zones = firewall.get("internal", [])
    return [text for zone in ([zones] if isinstance(zones, dict) else zones)
            for text in zone.get(key, [])]


@st.composite
def _address_sets(draw, internal: list) -> dict[str, tuple[list, list, bool]]:
    """Sets in dependency order: name -> (entries, flattened networks, internal?).
    Internal sets hold only addresses of the internal networks (and other
    internal sets), so that they can be an outbound rule's sources."""
    sets: dict[str, tuple[list, list, bool]] = {}
    for name in draw(st.lists(names.filter(lambda n: n not in RESERVED), max_size=6,
                              unique=True)):
        is_internal = bool(internal) and draw(st.booleans())
        pools = internal if is_internal else [anywhere_v4, anywhere_v6] + internal
        entries, networks = [], []
        for _ in range(draw(st.integers(0, 4))):
            usable = [n for n, s in sets.items() if s[2] or not is_internal]
            if usable and draw(st.integers(0, 3)) == 0:
                ref = draw(st.sampled_from(usable))
                entries.append(ref)
                networks += sets[ref][1]
                continue
            pool = draw(st.sampled_from(pools))
            network = draw(pool) if isinstance(pool, st.SearchStrategy) else pool
            text, found = draw(_entry_in(network))
            entries.append(text)
            networks += found
        sets[name] = (entries, networks, is_internal)
    return sets


# Where drawn list files are written: a draw's text names them by absolute
# path, so it compiles wherever a test writes the policy.
_LIST_DIR = None


def _list_file(text: str) -> str:
    """The path of a list file holding `text` (named by its content, written once)."""
    global _LIST_DIR
    if _LIST_DIR is None:
        _LIST_DIR = tempfile.mkdtemp(prefix="mailpubc-lists-")
        atexit.register(shutil.rmtree, _LIST_DIR, True)
    path = os.path.join(_LIST_DIR, hashlib.sha256(text.encode()).hexdigest()[:16] + ".txt")
    if not os.path.exists(path):
        with open(path, "w", encoding="utf-8") as stream:
            stream.write(text)
    return path


@st.composite
def _maybe_list_file(draw, spec: tuple, sets: dict) -> tuple:
    """Now and then a set without names of other sets as a list file, in the
    layouts blocklists are published in: `;` and `#` comments, whole-line or
    trailing, blank lines, CRLF."""
    entries, networks, is_internal = spec
    if any(entry in sets for entry in entries) or draw(st.integers(0, 3)):
        return spec
    lines = ["; Spamhaus DROP List", "#", ""]
    for entry in entries:
        comment = draw(st.sampled_from(["", " ; SBL1", "\t# x", "  "]))
        lines += [draw(st.sampled_from(["", " ", "\t"])) + entry + comment, ""][:draw(st.integers(1, 2))]
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    return {"file": _list_file(newline.join(lines) + newline)}, networks, is_internal


@st.composite
def _blocks(draw, sets: dict) -> dict:
    """firewall.block (set names and entries) and firewall.dynamic_block."""
    found = {}
    if draw(st.integers(0, 2)) == 0:
        entries = []
        for _ in range(draw(st.integers(1, 3))):
            if sets and draw(st.booleans()):
                entries.append(draw(st.sampled_from(sorted(sets))))
            else:
                pool = draw(st.sampled_from([anywhere_v4, anywhere_v6]))
                entries.append(draw(_entry_in(draw(pool)))[0])
        found["block"] = entries[0] if len(entries) == 1 and draw(st.booleans()) else entries
    dynamic = names.filter(lambda n: n not in RESERVED and n not in sets)
    if draw(st.integers(0, 2)) == 0:
        found["dynamic_block"] = draw(dynamic)
    elif draw(st.integers(0, 3)) == 0:     # the list form: names and {name, feeder}
        found["dynamic_block"] = [
            draw(st.sampled_from([name, {"name": name},
                                  {"name": name, "feeder": draw(st.sampled_from(FEEDERS))}]))
            for name in draw(st.lists(dynamic, min_size=1, max_size=3, unique=True))]
    return found


def _services(draw) -> dict[str, list[str]]:
    custom = {}
    for name in draw(st.lists(names.filter(lambda n: n not in RESERVED), max_size=3,
                              unique=True)):
        ports = []
        for _ in range(draw(st.integers(1, 3))):
            protocol = draw(st.sampled_from(["tcp", "udp"]))
            low = draw(st.integers(1, 65535))
            if draw(st.booleans()):
                width = draw(st.sampled_from([1, 10, 1000]))
                high = draw(st.integers(low, min(65535, low + width)))
                ports.append(f"{protocol}/{low}-{high}")
            else:
                ports.append(f"{protocol}/{low}")
        custom[name] = ports
    return custom


def _inline_port(draw) -> str:
    """A port written inline in a services list."""
    protocol = draw(st.sampled_from(["tcp", "udp"]))
    low = draw(st.integers(1, 65535))
    if draw(st.booleans()):
        return f"{protocol}/{low}"
    return f"{protocol}/{low}-{draw(st.integers(low, min(65535, low + 100)))}"


def _port_ranges(spec: list[str]) -> list[PortRange]:
    found = []
    for text in spec:
        protocol, _, ports = text.partition("/")
        low, _, high = ports.partition("-")
        found.append(PortRange(protocol, int(low), int(high or low)))
    return found


RATE_UNITS = ["second", "minute", "hour"]
rates = st.builds(lambda n, unit: f"{n}/{unit}", st.integers(1, 1000), st.sampled_from(RATE_UNITS))


@st.composite
def _publish_extras(draw) -> dict:
    """Optional `limit` (at least one of new and concurrent; burst only with
    new; the prefixes its sources are keyed on) and `log` of a publication."""
    extras = {}
    if draw(st.booleans()):
        limit = {}
        if draw(st.booleans()):
            limit["new"] = draw(rates)
            if draw(st.booleans()):
                limit["burst"] = draw(st.integers(1, 1000))
        if not limit or draw(st.booleans()):
            limit["concurrent"] = draw(st.integers(1, 1000))
        for key, bits in (("ipv4_prefix", 32), ("ipv6_prefix", 128)):
            if draw(st.booleans()):
                limit[key] = draw(st.integers(1, bits))
        extras["limit"] = limit
    if draw(st.booleans()):
        extras["log"] = draw(st.booleans())
    return extras


@st.composite
def _log_settings(draw) -> dict:
    """Optional `firewall.log`."""
    if draw(st.booleans()):
        return {}
    keys = draw(st.lists(st.sampled_from(["dropped", "rate", "group"]), unique=True))
    values = {"dropped": draw(st.booleans()), "rate": draw(rates),
              "group": draw(st.integers(0, 65535))}
    return {"log": {key: values[key] for key in keys}}


@st.composite
def _reach(draw, external, server: str, internal: list, sets: dict) -> dict:
    """allow_from and hairpin for one publication: allow_from holds an
    address of the publication's family (and, with hairpin, one inside)."""
    found, networks = {}, []
    family = [n for n in internal if n.version == external.version]
    pool = anywhere_v4 if external.version == 4 else GLOBAL_V6
    if draw(st.integers(0, 2)) == 0:
        entries = []
        if family and draw(st.booleans()):
            text, inside = draw(_entry_in(draw(st.sampled_from(family))))
            entries.append(text)
            networks += inside
        usable = [n for n, spec in sets.items() if external.version in _families(spec[1])]
        if usable and draw(st.booleans()):
            entries.append(draw(st.sampled_from(usable)))
            networks += sets[entries[-1]][1]
        if external.version not in _families(networks):
            entries.append(draw(_entry_in(draw(pool)))[0])
        found["allow_from"] = (entries[0] if len(entries) == 1 and draw(st.booleans())
                               else entries)
    elif draw(st.integers(0, 3)) == 0:
        found["allow_from"] = "any"
    inside = found.get("allow_from", "any") == "any" or any(
        network.overlaps(n) for n in family for network in networks)
    if server != "localhost" and inside and draw(st.booleans()):
        found["hairpin"] = True
    elif draw(st.integers(0, 5)) == 0:
        found["hairpin"] = False
    return found


@st.composite
def policies(draw) -> Draw:
    """A valid policy and its YAML text."""
    firewall = draw(_firewall())
    externals = [ipaddress.ip_address(a) for a in firewall["external"]["addresses"]]
    ext_families = {a.version for a in externals}
    internal = [ipaddress.ip_network(n) for n in _zone_lists(firewall, "networks")]
    sets = draw(_address_sets(internal))
    sets = {name: draw(_maybe_list_file(spec, sets)) for name, spec in sets.items()}
    custom = _services(draw)
    ports = {name: _port_ranges(spec) for name, spec in custom.items()}
    ports.update(BUILTIN_SERVICES)
    schedules = {}
    for name in draw(st.lists(names.filter(lambda n: n not in RESERVED), max_size=3,
                              unique=True)):
        spec = {}
        if draw(st.booleans()):
            spec["days"] = draw(st.lists(st.sampled_from(WEEK), min_size=1, unique=True))
        if not spec or draw(st.booleans()):
            start = draw(st.integers(0, 24 * 60 - 1))
            end = (start + draw(st.integers(1, 24 * 60 - 1))) % (24 * 60)
            if draw(st.integers(0, 7)) == 0:
                end = 24 * 60        # "24:00", the end of the day
            spec["hours"] = f"{start // 60:02d}:{start % 60:02d}-{end // 60:02d}:{end % 60:02d}"
        schedules[name] = spec
    drawn = draw(st.lists(names, max_size=8, unique=True))
    rule_names = iter(drawn + [n for n in (f"rule-{i}" for i in range(8)) if n not in drawn])

    publish, claimed = [], []
    routed = [ipaddress.ip_network(n) for n in _zone_lists(firewall, "routed")]
    for _ in range(draw(st.integers(0, 3))):
        if routed and draw(st.booleans()):
            server = draw(_hosts(draw(st.sampled_from(routed))))
            chosen = draw(st.lists(st.sampled_from(sorted(ports)), min_size=1, max_size=4,
                                   unique=True))
            if draw(st.booleans()):
                chosen.append(_inline_port(draw))
            publish.append({"name": next(rule_names), "server": str(server), "services": chosen})
            continue
        external = draw(st.sampled_from(externals))
        servers = [n for n in internal if n.version == external.version]
        server = "localhost"
        if servers and draw(st.booleans()):
            host = draw(_hosts(draw(st.sampled_from(servers))))
            if not any(host in n for n in routed):
                server = str(host)
        chosen, mine, translated = [], [], []
        services = draw(st.lists(st.sampled_from(sorted(ports)), min_size=1, max_size=5,
                                 unique=True))
        if draw(st.integers(0, 3)) == 0:
            services.append(_inline_port(draw))
        for service in services:
            service_ports = ports.get(service) or _port_ranges([service])
            new = [(external, port) for port in service_ports]
            # ports shared within one publication merge; across publications they conflict
            if any(address == other and port.overlaps(taken)
                   for address, port in new for other, taken in claimed):
                continue
            # a service with one port number may be redirected; services that
            # share a port must translate it alike
            numbers = {n for port in service_ports for n in (port.low, port.high)}
            redirectable = len(numbers) == 1 and ECHO not in service_ports
            server_port = (draw(st.integers(1, 65535))
                           if redirectable and draw(st.integers(0, 2)) == 0 else None)
            if server_port in numbers:
                server_port = None
            if any(port.overlaps(taken) and server_port != other
                   for port in service_ports for taken, other in translated):
                continue
            if server_port is None and draw(st.integers(0, 9)) == 0:   # the mapping form
                chosen.append({"service": service, "log": draw(st.booleans())})
            elif server_port is None and (not redirectable or draw(st.integers(0, 5))):
                chosen.append(service)
            else:           # its own port as server_port means the plain service
                chosen.append({"service": service, "server_port": server_port or min(numbers)})
            mine += new
            translated += [(port, server_port) for port in service_ports]
        if chosen:
            claimed += mine
            exploded = external.version == 6 and draw(st.booleans())   # same address, other text
            address = external.exploded if exploded else str(external)
            rule = {"name": next(rule_names), "server": server,
                    "external_address": address, "services": chosen}
            rule.update(draw(_publish_extras()))
            rule.update(draw(_reach(external, server, internal, sets)))
            publish.append(rule)

    outbound = []
    internal_sets = [n for n, s in sets.items() if s[2] and s[1]]
    any_sets = [n for n, s in sets.items() if s[1]]
    for _ in range(draw(st.integers(0, 3))):
        sources, source_nets = [], []
        if draw(st.booleans()) or not internal:
            sources.append("localhost")
        for _ in range(draw(st.integers(0 if sources else 1, 2)) if internal else 0):
            if internal_sets and draw(st.booleans()):
                name = draw(st.sampled_from(internal_sets))
                sources.append(name)
                source_nets += sets[name][1]
            else:
                text, found = draw(_entry_in(draw(st.sampled_from(internal))))
                sources.append(text)
                source_nets += found
        destinations, dest_nets = "any", []
        if draw(st.booleans()):
            destinations = []
            for _ in range(draw(st.integers(1, 2))):
                if any_sets and draw(st.booleans()):
                    name = draw(st.sampled_from(any_sets))
                    destinations.append(name)
                    dest_nets += sets[name][1]
                else:
                    pool = draw(st.sampled_from([anywhere_v4, anywhere_v6]))
                    text, found = draw(_entry_in(draw(pool)))
                    destinations.append(text)
                    dest_nets += found
        families = _families(source_nets)
        if not families <= ext_families:
            continue                 # no external address to translate them to
        if families and destinations != "any" and not families & _families(dest_nets):
            continue                 # sources and destinations share no family
        rule = {"name": next(rule_names),
                "from": sources[0] if len(sources) == 1 and draw(st.booleans()) else sources,
                "services": draw(st.lists(st.sampled_from(sorted(ports)), min_size=1,
                                          max_size=4, unique=True))}
        if draw(st.integers(0, 3)) == 0 and (port := _inline_port(draw)) not in rule["services"]:
            rule["services"].append(port)
        if destinations != "any" or draw(st.booleans()):
            rule["to"] = destinations
        if draw(st.booleans()):
            rule["schedule"] = draw(st.sampled_from(sorted(schedules) + ["always"]))
        if draw(st.booleans()):
            rule["log"] = draw(st.booleans())
        outbound.append(rule)

    ssh_pool = any_sets + [None]
    if draw(st.booleans()):
        ssh = []
        for _ in range(draw(st.integers(1, 3))):
            name = draw(st.sampled_from(ssh_pool))
            if name is None:
                pool = draw(st.sampled_from([anywhere_v4, anywhere_v6]))
                name = draw(_entry_in(draw(pool)))[0]
            ssh.append(name)
        firewall["management"] = {"ssh": ssh}
    firewall.update(draw(_log_settings()))
    if draw(st.booleans()):
        management = firewall.setdefault("management", {})
        if draw(st.booleans()):
            management["ssh_port"] = draw(st.integers(1, 65535))
        if draw(st.booleans()):
            pool = draw(st.sampled_from([anywhere_v4, anywhere_v6]))
            management["ping"] = draw(st.sampled_from(
                ["any", [draw(_entry_in(draw(pool)))[0]]] + ([[any_sets[0]]] if any_sets else [])))

    firewall.update(draw(_blocks(sets)))
    data = {"version": 1, "firewall": firewall}
    optional = {"address_sets": {n: s[0] for n, s in sets.items()}, "services": custom,
                "publish": publish, "outbound": outbound, "schedules": schedules}
    for key, value in optional.items():
        if value or draw(st.booleans()):
            data[key] = value
    data = _shuffled(data, draw(st.randoms(use_true_random=False)))
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=1 << 16,
                          default_flow_style=draw(st.sampled_from([False, None, True])))
    return Draw(data, text)


def _shuffled(node, rng: random.Random):
    """The same data with every mapping's keys in another order (meaning is unchanged)."""
    if isinstance(node, dict):
        items = list(node.items())
        rng.shuffle(items)
        return {k: _shuffled(v, rng) for k, v in items}
    if isinstance(node, list):
        return [_shuffled(v, rng) for v in node]
    return node


# -- mutants --------------------------------------------------------------------

class Raw(str):
    """A scalar written plain, exactly as given (for YAML 1.1 traps)."""


class Pairs(list):
    """A mapping as a list of (key, value) pairs, so that it can hold duplicate keys."""


def _tree(node):
    if isinstance(node, dict):
        return Pairs([k, _tree(v)] for k, v in node.items())
    if isinstance(node, list):
        return [_tree(v) for v in node]
    return node


_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_./-]*(:[A-Za-z0-9_./-]+)*")
_RESOLVED = re.compile(r"[-+]?[0-9]+|~|null|Null|NULL|true|True|TRUE|false|False|FALSE")


def _scalar(value, rng: random.Random) -> str:
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int):
        return str(value)
    if _PLAIN.fullmatch(value) and not _RESOLVED.fullmatch(value) and rng.random() < 0.7:
        return value
    return json.dumps(value, ensure_ascii=rng.random() < 0.5)


def emit(node, rng: random.Random, indent: int = 0) -> list[str]:
    """Block-style YAML lines for a tree of Pairs, lists and scalars."""
    pad = " " * indent
    if isinstance(node, Pairs):
        if not node:
            return [pad + "{}"]
        lines = []
        for key, value in node:
            head = pad + _scalar(key, rng) + ":"
            if isinstance(value, (Pairs, list)) and value:
                lines.append(head)
                lines += emit(value, rng, indent + 2)
            else:
                lines.append(head + " " + emit(value, rng)[0].strip())
        return lines
    if isinstance(node, list):
        if not node:
            return [pad + "[]"]
        lines = []
        for value in node:
            inner = emit(value, rng, indent + 2)
            lines.append(pad + "- " + inner[0][indent + 2:])
            lines += inner[1:]
        return lines
    return [pad + _scalar(node, rng)]


def _places(node, path=()):
    """Every (container, index) in a tree: where a mutation can act."""
    found = []
    if isinstance(node, (Pairs, list)):
        for i, item in enumerate(node):
            found.append((node, i, path))
            child = item[1] if isinstance(node, Pairs) else item
            found += _places(child, path + (i,))
    return found


def _typo(text: str, rng: random.Random) -> str:
    if not text:
        return "x"
    i = rng.randrange(len(text))
    choice = rng.randrange(4)
    if choice == 0:
        return text[:i] + text[i + 1:]
    if choice == 1:
        return text[:i] + rng.choice("abcdefghijklmnopqrstuvwxyz_-0") + text[i:]
    if choice == 2 and len(text) > 1:
        i = min(i, len(text) - 2)
        return text[:i] + text[i + 1] + text[i] + text[i + 2:]
    return text.upper() if text.islower() else text.lower()


def _inject(text: str, rng: random.Random) -> str:
    """A hostile piece at the end, the start or inside: the end is where a
    pattern anchored with `$` is weakest."""
    at = rng.choice([len(text), len(text), 0, rng.randrange(len(text) + 1)])
    piece = "\n" if rng.random() < 0.2 else rng.choice(HOSTILE)
    return text[:at] + piece + text[at:]


def _corrupt(value, rng: random.Random):
    """A nearby wrong value: the mistakes people make, and some nonsense."""
    if isinstance(value, str):
        options = [
            lambda v: _typo(v, rng),
            lambda v: _inject(v, rng),
            lambda v: v + "/" + str(rng.choice([0, 8, 24, 33, 64, 129])),
            lambda v: v.replace(".", "..", 1) if "." in v else v + ".256",
            lambda v: v + "-" + v,
            lambda v: v * rng.choice([2, 40]),
            lambda v: "",
            lambda v: rng.choice(["tcp/0", "udp/65536", "tcp/9-1", "sctp/1", "tcp/1-65535",
                                  "24:00-01:00", "08:00-08:00", "localhost", "any", "always",
                                  "inet", "filter", "smtp", "lo", "fe80::1%eth0",
                                  "::ffff:10.0.0.1", "0.0.0.0/0", "::/0", "10.0.0.1-10.0.0.0"]),
        ]
        return rng.choice(options)(value)
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return rng.choice([0, 2, -1, 10 ** 30, Raw("01"), str(value)])
    return rng.choice(["", None, 1])


_RETYPES = [lambda: None, lambda: 0, lambda: 1, lambda: True, lambda: "text", lambda: [],
            lambda: ["a"], lambda: Pairs(), lambda: Pairs([["a", 1]]), lambda: [[]],
            lambda: Raw("0755"), lambda: Raw("22:25"), lambda: Raw("on"), lambda: Raw("no")]


# Keys whose values the ruleset prints (as names, strings or addresses).
PRINTED = {"name", "table", "interface", "hours", "server", "external_address"}
_KINDS = ["inject"] * 3 + ["corrupt"] * 3 + ["trap", "delete", "duplicate", "retype", "rename"]


def mutate(tree, rng: random.Random) -> str:
    """Apply one mutation to `tree` in place; returns what was done (for reports).
    Mostly aimed at scalars, where a mistake gets past the YAML and the schema."""
    places = _places(tree)
    if not places:
        return "nothing to mutate"
    leaves = [p for p in places if isinstance(_value(p), (str, int))]
    named = [p for p in leaves if isinstance(p[0], Pairs) and p[0][p[1]][0] in PRINTED]
    pool = rng.choice([named, named, leaves, leaves, places])
    container, i, path = rng.choice(pool or places)
    is_map = isinstance(container, Pairs)
    key, value = (container[i][0], container[i][1]) if is_map else (None, container[i])
    kind = rng.choice(_KINDS)

    def put(new):
        if is_map:
            container[i][1] = new
        else:
            container[i] = new

    if kind == "delete":
        del container[i]
    elif kind == "duplicate":
        copy = [key, _tree_copy(value)] if is_map else _tree_copy(value)
        container.insert(rng.randrange(len(container) + 1), copy)
    elif kind == "retype":
        put(rng.choice(_RETYPES)())
    elif kind == "rename" and is_map:
        container[i][0] = _typo(str(key), rng)
    elif kind == "inject" and is_map and rng.random() < 0.3:
        container[i][0] = _inject(str(key), rng)
    elif kind == "inject" and isinstance(value, str):
        put(_inject(value, rng))
    elif kind in ("corrupt", "inject", "rename"):
        put(_corrupt(value, rng) if isinstance(value, (str, int)) else rng.choice(_RETYPES)())
    else:
        put(Raw(rng.choice(TRAPS)))
    return f"{kind} at {path + (i,)}"


def _value(place):
    container, i, _ = place
    return container[i][1] if isinstance(container, Pairs) else container[i]


def _comment(lines: list[str], rng: random.Random) -> str:
    """Put a YAML comment with hostile text on a line of its own or after a value."""
    text = "#" + "".join(rng.choice(COMMENT_TEXT) for _ in range(rng.randint(1, 4)))
    at = rng.randrange(len(lines) + 1)
    if at < len(lines) and rng.random() < 0.5:
        lines[at] += " " + text
    else:
        lines.insert(at, text)
    return f"comment at line {at + 1}"


def _tree_copy(node):
    if isinstance(node, Pairs):
        return Pairs([k, _tree_copy(v)] for k, v in node)
    if isinstance(node, list):
        return [_tree_copy(v) for v in node]
    return node


@dataclass(frozen=True)
class Mutant:
    text: str
    mutations: tuple[str, ...]


@st.composite
def mutants(draw) -> Mutant:
    """A valid policy with 1-3 mutations, as YAML text."""
    base = draw(policies())
    rng = draw(st.randoms(use_true_random=True))
    tree = _tree(base.data)
    done = [mutate(tree, rng) for _ in range(draw(st.sampled_from([1, 1, 1, 2, 3])))]
    lines = emit(tree, rng)
    if draw(st.integers(0, 3)) == 0:
        done.append(_comment(lines, rng))
    return Mutant("\n".join(lines) + "\n", tuple(done))


# -- broken shapes: data for tests/test_shape.py ----------------------------------

def _schema_keys(node) -> set[str]:
    """Every property name the schema defines: keys that are wrong in most places."""
    found = set()
    if isinstance(node, dict):
        found |= set(node.get("properties", {}))
        for value in node.values():
            found |= _schema_keys(value)
    elif isinstance(node, list):
        for value in node:
            found |= _schema_keys(value)
    return found


SCHEMA_KEYS = sorted(_schema_keys(policy_schema()))
# Values of every JSON type, near the schema's edges: bounds, empty and
# oversized strings, near-miss formats, duplicates, and what valid keys hold.
SHAPE_VALUES = [None, True, False, 0, 1, -1, 2, 65535, 65536, 1000000, 1000001, 1.0, 1.5,
                "", "x", "x" * 254, "mail.example.com", "-bad.example", "a..b", "example.",
                "192.0.2.256", "10.0.0.0/33", "198.51.100.7", "fd00::1", "10.1.0.0/24",
                "tcp/25", "tcp/1-2", "smtp", "smtp\n", "mon", "Mon", "drop", "Drop",
                "3/minute", "3/week", "08:00-18:00", "8:00-18:00", "localhost", "any",
                [], [None], [1], ["smtp", "smtp"], ["198.51.100.7", "fd00::1"],
                ["198.51.100.7", "198.51.100.8", "198.51.100.9"], ["example.com"],
                {}, {"a": 1}, {"file": ""}, {"file": "x.txt"}, {"new": "3/minute"},
                {"service": "smtp", "server_port": 2525}, {"service": "smtp"}, [[]], [{}]]


def _containers(node, found=None) -> list:
    """Every mapping and list in a tree of plain data."""
    found = [] if found is None else found
    if isinstance(node, (dict, list)):
        found.append(node)
        for value in (node.values() if isinstance(node, dict) else node):
            _containers(value, found)
    return found


def _break_shape(data: dict, rng: random.Random) -> str:
    """One change to `data` in place, aimed at the schema; returns what was done."""
    containers = [c for c in _containers(data) if c]
    container = rng.choice(containers)
    key = (rng.choice(list(container)) if isinstance(container, dict)
           else rng.randrange(len(container)))
    value = container[key]
    kind = rng.choice(["retype", "retype", "extra key", "rename", "format", "number", "empty",
                       "duplicate", "delete", "move"])
    if kind == "extra key":
        target = rng.choice([c for c in _containers(data) if isinstance(c, dict)])
        name = rng.choice([rng.choice(SCHEMA_KEYS), _typo(rng.choice(SCHEMA_KEYS), rng),
                           _inject("name", rng)])
        target[name] = copy.deepcopy(rng.choice(SHAPE_VALUES))
    elif kind == "rename" and isinstance(container, dict):
        container[rng.choice([_typo, _inject])(key, rng)] = container.pop(key)
    elif kind == "format" and isinstance(value, str):
        container[key] = _corrupt(value, rng)
    elif kind == "number" and isinstance(value, int):
        container[key] = rng.choice([value - 1, value + 1, -value, 0, float(value), value + 0.5])
    elif kind == "empty" and isinstance(value, (dict, list)):
        container[key] = type(value)()
    elif kind == "duplicate" and isinstance(value, list) and value:
        value.insert(rng.randrange(len(value) + 1), copy.deepcopy(rng.choice(value)))
    elif kind == "delete":
        del container[key]
    elif kind == "move":
        container[key] = copy.deepcopy(rng.choice(containers))
    else:
        kind = "retype"
        container[key] = copy.deepcopy(rng.choice(SHAPE_VALUES))
    return f"{kind} at {key!r}"


@dataclass(frozen=True)
class BrokenShape:
    data: dict
    changes: tuple[str, ...]


@st.composite
def broken_shapes(draw) -> BrokenShape:
    """A valid policy's data with 0-3 changes to its shape (plain data, as
    the loader yields it; it may still fit the schema)."""
    data = copy.deepcopy(draw(policies()).data)
    rng = draw(st.randoms())
    changes = tuple(_break_shape(data, rng) for _ in range(draw(st.integers(0, 3))))
    return BrokenShape(data, changes)


@st.composite
def nested_set_policies(draw) -> Draw:
    """Address sets nested in random shapes (chains, diamonds, a set named
    twice on two paths), with entries of both families crowded into a few
    addresses so that the sets overlap and touch, used one by one by outbound
    rules: the policies the ruleset writes through defines (docs/ruleset.md,
    Sets)."""
    count = draw(st.integers(2, 7))
    set_names = [f"s{i}" for i in range(count)]
    host = st.integers(0, 24)
    sets = {}
    for i, name in enumerate(set_names):
        entries = draw(st.lists(st.sampled_from(set_names[i + 1:]), max_size=3, unique=True)
                       if i + 1 < count else st.just([]))
        for low, width in draw(st.lists(st.tuples(host, st.integers(0, 3)), max_size=3,
                                        min_size=0 if entries else 1)):
            entries.append(f"10.1.0.{low}" if width == 0 else f"10.1.0.{low}-10.1.0.{low + width}")
        entries += [f"fd00:1::{low:x}" for low in draw(st.lists(host, max_size=2))]
        sets[name] = entries
    used = draw(st.lists(st.sampled_from(set_names), min_size=1, unique=True))
    data = {"version": 1,
            "firewall": {"external": {"interface": "eth0",
                                      "addresses": ["198.51.100.10", "2001:db8:100::10"]},
                         "internal": {"interface": "eth1",
                                      "networks": ["10.1.0.0/16", "fd00:1::/64"]}},
            "address_sets": sets,
            "outbound": [{"name": f"from-{name}", "from": name, "services": ["smtp"], "to": "any"}
                         for name in used]}
    return Draw(data, yaml.safe_dump(data, sort_keys=False))


def dispatched(text: str) -> api.Result:
    """`text` compiled with every publication pair dispatched (the plan's
    dispatch threshold at 0), so that random policies exercise the maps."""
    result = api.compile_text(text, "draw.yaml").or_raise()
    return dataclasses.replace(result, ruleset=plan.plan(result.policy, dispatch_threshold=0))
