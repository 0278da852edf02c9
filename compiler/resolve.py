"""Resolve stage: a schema-valid document -> the typed Policy model.

Names are looked up here (address sets, services, schedules) and values that
the schema can only see as strings are given their meaning (networks, ranges,
ports, hours). Everything that makes a name or value meaningless is reported
here, every problem at once; checks that need the whole resolved model
(conflicts, families, internal networks) live in `semantics`.

Each address set is flattened exactly once, in dependency order, however
many times it is used, and without recursion, so a long chain of sets
cannot exhaust the stack.
"""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache
from typing import Any, Optional

from . import addresses as syntax
from . import lists
from .addresses import Address, Interval, merge
from .datafiles import nft_keywords
from .diagnostics import Collector, Position, did_you_mean
from .loader import Document, Path
from .model import (AddressRef, Addresses, AddressSet, Firewall, Limit, LogSettings, Outbound,
                    Policy, PortRange, Publish, Rate, Schedule, Service, family_of)
from .vocab import BUILTIN_SERVICES, ECHO, LATER_BUILTINS, SSH, nft_day

MINUTES_PER_DAY = 24 * 60
LOCALHOST = "localhost"
ANY = "any"
ALWAYS = "always"
DEFAULT_TABLE = "mailpub"


def resolve(document: Document) -> tuple[Optional[Policy], list]:
    """The model and the problems found; the model is None when there are problems."""
    resolver = _Resolver(document)
    policy = resolver.policy()
    if resolver.problems.diagnostics:
        return None, resolver.problems.diagnostics
    return policy, []


class _Resolver:
    def __init__(self, document: Document):
        self.doc = document
        self.data: dict = document.data
        self.problems = Collector()
        self.sets: dict[str, Addresses] = {}
        self.services: dict[str, Service] = {}
        self.schedules: dict[str, Schedule] = {}
        self.named_sets: set[str] = set()     # address sets some rule or set refers to
        self.includes: dict[str, tuple[str, ...]] = {}   # the defined sets each address set names
        self.shadowed: list[tuple[str, Position]] = []

    def at(self, path: Path) -> Position:
        return self.doc.position(path)

    def error(self, path: Path | Position | lists.Place, message: str) -> None:
        """At the value at `path`, or at a position (in a list file, say)."""
        if isinstance(path, lists.Place):
            path = path.position()
        self.problems.error(path if isinstance(path, Position) else self.at(path), message)

    def key_error(self, path: Path, message: str) -> None:
        self.problems.error(self.doc.key_position(path), message)

    # -- the whole policy ---------------------------------------------------

    def policy(self) -> Policy:
        self._address_sets()
        self._services()
        self._schedules()
        firewall = self._firewall()
        publish = tuple(self._publish(i, rule, firewall.routed_networks)
                        for i, rule in enumerate(self.data.get("publish") or ()))
        outbound = tuple(self._outbound(i, rule)
                         for i, rule in enumerate(self.data.get("outbound") or ()))
        sets = tuple(AddressSet(name, self.sets.get(name, Addresses()),
                                used=name in self.named_sets,
                                includes=self.includes.get(name, ()),
                                position=self.doc.key_position(("address_sets", name)))
                     for name in sorted(self.data.get("address_sets") or {}))
        return Policy(self.doc.file, firewall, sets, publish, outbound,
                      shadowed_builtins=tuple(self.shadowed))

    # -- addresses ----------------------------------------------------------

    def _entry(self, path: Path, text: str) -> Optional[tuple[int, Interval]]:
        """One address, network or range as (version, interval); None after reporting."""
        parsed = syntax.parse_int(text)
        if parsed is not None:
            ipv4 = syntax.mapped_ipv4(*parsed)
            if ipv4 is not None:
                self._mapped(path, text, ipv4)
                return None
            return parsed[0], (parsed[1], parsed[1])
        network = syntax.parse_network(text)
        if network is not None:
            version, value, prefix = network
            mask = syntax.host_mask(version, prefix)
            if value & mask:
                base = syntax.int_text(version, value & ~mask)
                address = text.split("/")[0]
                self.error(path, f"{text} has host bits set: did you mean the network "
                                 f"{base}/{prefix} or the single address {address}?")
                return None
            ipv4 = syntax.mapped_ipv4(version, value) if prefix >= 96 else None
            if ipv4 is not None:
                self._mapped(path, text, f"{ipv4}/{prefix - 96}")
                return None
            return version, (value, value | mask)
        bounds = syntax.parse_range(text)
        if bounds is not None:
            version, first, last_version, last = bounds
            if version != last_version:
                self.error(path, f"range {text} mixes IPv4 and IPv6")
                return None
            if first > last:
                self.error(path, f"range {text} ends before it starts")
                return None
            ends = [syntax.mapped_ipv4(version, end) for end in (first, last)]
            if None not in ends:
                self._mapped(path, text, "-".join(ends))
                return None
            if ends != [None, None]:
                self.error(path, f"range {text} reaches into IPv4-mapped IPv6 addresses "
                                 "(::ffff:0:0/96), which never match IPv4 traffic: "
                                 "write IPv4 addresses as IPv4")
                return None
            return version, (first, last)
        self.error(path, f"{text!r} is not an address, network or range")
        return None

    def _mapped(self, path: Path, text: str, ipv4: str) -> None:
        """nft compares ::ffff:0:0/96 with IPv6 packets only, so the entry would
        silently never match the IPv4 hosts it names."""
        self.error(path, f"{text} is IPv4-mapped IPv6, which never matches IPv4 traffic: "
                         f"write {ipv4}")

    def _address(self, path: Path, text: str) -> Address:
        """A single address (server, external address), refused if IPv4-mapped."""
        address = syntax.parse_address(text)
        ipv4 = syntax.mapped_ipv4(address.version, int(address))
        if ipv4 is not None:
            self._mapped(path, text, ipv4)
        return address

    @staticmethod
    def _addresses_of(entries: list) -> Addresses:
        """Merge (version, interval) pairs and whole Addresses into one collection."""
        if len(entries) == 1 and isinstance(entries[0], Addresses):
            return entries[0]           # a set, merged once however many rules use it
        v4: list[Interval] = []
        v6: list[Interval] = []
        for entry in entries:
            if isinstance(entry, Addresses):
                v4.extend(entry.v4)
                v6.extend(entry.v6)
            elif entry is not None:
                (v4 if entry[0] == 4 else v6).append(entry[1])
        return Addresses.of(v4, v6)

    def _address_sets(self) -> None:
        """Flatten every set once, in dependency order; report undefined names and cycles."""
        raw: dict[str, list] = self.data.get("address_sets") or {}
        for name in raw:
            if name in (LOCALHOST, ANY):
                self.key_error(("address_sets", name),
                               f"{name!r} is a reserved word and cannot name an address set")
        uses: dict[str, list[str]] = {}
        naming: dict[str, set[int]] = {}    # the entries of each set that name a set
        for name, entries in raw.items():
            uses[name] = []
            if isinstance(entries, dict):    # {file: PATH}: a list file names no sets
                continue
            naming[name] = {i for i, entry in enumerate(entries) if self._is_name(entry)}
            for i in sorted(naming[name]):
                entry = entries[i]
                if entry in raw:
                    uses[name].append(entry)
                    self.named_sets.add(entry)
                else:
                    self._undefined_set(("address_sets", name, i), entry)
        self.includes = {name: tuple(dict.fromkeys(named)) for name, named in uses.items()}
        order, cyclic = _dependency_order(uses)
        for cycle in _cycles(uses, cyclic):
            self.key_error(("address_sets", cycle[0]),
                           "address sets refer to each other in a cycle: "
                           + " -> ".join(cycle + [cycle[0]]))
        for name in order:
            if isinstance(raw[name], dict):
                self.sets[name] = self._list_file(("address_sets", name, "file"),
                                                  raw[name]["file"])
                continue
            self.sets[name] = self._addresses_of([
                self.sets.get(entry, Addresses()) if i in naming[name]
                else self._entry(("address_sets", name, i), entry)
                for i, entry in enumerate(raw[name])])

    def _list_file(self, path: Path, written: str) -> Addresses:
        """An address set read from a list file (`lists`); its errors point
        into the file, an unreadable file's at the `file:` key."""
        file = lists.list_path(self.doc.folder, written)
        try:
            text = lists.read(file)
        except UnicodeDecodeError as exc:
            self.error(lists.decode_error_position(file, exc.object[:exc.start]),
                       f"list file is not valid UTF-8 (byte 0x{exc.object[exc.start]:02x})")
            return Addresses()
        except (OSError, ValueError) as exc:     # ValueError: too large, or a NUL in the path
            reason = exc.strerror if isinstance(exc, OSError) else exc
            self.key_error(path, f"cannot read list file {file!r}: {reason}")
            return Addresses()
        found, before = [], len(self.problems.diagnostics)
        try:
            for position, entry in lists.entries(file, text):
                if len(self.problems.diagnostics) - before == lists.MAX_LIST_ERRORS:
                    self.error(position, f"more errors in {file} are not shown")
                    break
                found.append(self._entry(position, entry))
        except lists.ListError as exc:
            self.error(exc.place, exc.message)
        return self._addresses_of(found)

    @staticmethod
    def _is_name(text: str) -> bool:
        return (syntax.NAME.fullmatch(text) is not None
                and syntax.parse_range(text) is None)

    def _undefined_set(self, path: Path, name: str) -> None:
        if name == LOCALHOST:
            self.error(path, "'localhost' is not an address: it can only stand alone "
                             "in a rule's `from` or `server`")
            return
        if name == ANY:
            self.error(path, "'any' can only stand alone as a rule's `to`")
            return
        self.error(path, f"undefined address set {name!r}"
                   + did_you_mean(name, self.data.get("address_sets") or {}))

    def _addresses(self, path: Path, value: Any, *, allow_localhost: bool = False,
                   allow_any: bool = False) -> AddressRef:
        """Resolve `from`, `to` or `ssh`: one entry or a list of them."""
        entries = [value] if isinstance(value, str) else list(value)
        entry_paths = [path] if isinstance(value, str) else [path + (i,) for i in range(len(entries))]
        if allow_any and ANY in entries:
            if len(entries) > 1:
                self.error(path, "'any' must stand alone")
            return AddressRef(Addresses(), any=True, position=self.at(path))
        found: list = []
        localhost = False
        for entry, entry_path in zip(entries, entry_paths):
            if entry == LOCALHOST and allow_localhost:
                localhost = True
            elif self._is_name(entry):
                self.named_sets.add(entry)
                if entry in self.sets:
                    found.append(self.sets[entry])
                elif entry not in (self.data.get("address_sets") or {}):
                    self._undefined_set(entry_path, entry)
            else:
                found.append(self._entry(entry_path, entry))
        set_name = entries[0] if len(entries) == 1 and entries[0] in self.sets else None
        return AddressRef(self._addresses_of(found), set_name=set_name, localhost=localhost,
                          position=self.at(path))

    # -- services and schedules ---------------------------------------------

    def _services(self) -> None:
        self.services = {name: Service(name, ports) for name, ports in BUILTIN_SERVICES.items()}
        for name, entries in (self.data.get("services") or {}).items():
            if name in LATER_BUILTINS:
                self.shadowed.append((name, self.doc.key_position(("services", name))))
            elif name in BUILTIN_SERVICES:
                self.key_error(("services", name),
                               f"service {name!r} is built in and cannot be redefined")
                continue
            ports = []
            for i, entry in enumerate(entries):
                port = self._port(("services", name, i), entry)
                if port is not None:
                    ports.append(port)
            self.services[name] = Service(name, _merge_ports(ports))

    def _port(self, path: Path, text: str) -> Optional[PortRange]:
        protocol, _, ports = text.partition("/")
        low, _, high = ports.partition("-")
        low_port, high_port = int(low), int(high or low)
        for port in (low_port, high_port):
            if not 1 <= port <= 65535:
                self.error(path, f"port {port} in {text!r} is outside 1-65535")
                return None
        if low_port > high_port:
            self.error(path, f"port range {text!r} ends before it starts")
            return None
        return PortRange(protocol, low_port, high_port)

    def _rule_services(self, path: Path, names: list[str]) -> tuple[Service, ...]:
        found = (self._service(path + (i,), name) for i, name in enumerate(names))
        return tuple(service for service in found if service is not None)

    def _service(self, path: Path, name: str) -> Optional[Service]:
        if name in self.services:
            return self.services[name]
        if "/" in name:     # a port written inline (the schema checked its shape)
            port = self._port(path, name)
            return None if port is None else Service(name, (port,))
        self.error(path, f"unknown service {name!r}" + did_you_mean(name, self.services))
        return None

    def _published_services(self, path: Path, entries: list) -> tuple[Service, ...]:
        """A publication's services, each with where it is named; an entry
        {service, server_port} is redirected to server_port (None when that is
        the service's own port, so that it means what the plain name means)."""
        found = []
        for i, entry in enumerate(entries):
            redirected = isinstance(entry, dict)
            name = entry["service"] if redirected else entry
            service = self._service(path + (i, "service") if redirected else path + (i,), name)
            if service is None:
                continue
            server_port = entry["server_port"] if redirected else None
            numbers = {port for p in service.ports for port in (p.low, p.high)}
            if server_port is not None and ECHO in service.ports:
                self.error(path + (i, "server_port"),
                           f"server_port needs a tcp or udp service, but {name!r} is ICMP echo")
                continue
            if server_port is not None and len(numbers) != 1:
                self.error(path + (i, "server_port"),
                           f"server_port needs a service with one port, but {name!r} has "
                           f"{', '.join(str(p) for p in service.ports)}")
                continue
            if server_port in numbers:
                server_port = None
            found.append(replace(service, server_port=server_port, position=self.at(path + (i,))))
        return tuple(found)

    def _schedules(self) -> None:
        for name, spec in (self.data.get("schedules") or {}).items():
            if name == ALWAYS:
                self.key_error(("schedules", name),
                               "'always' is built in (no restriction) and cannot be redefined")
                continue
            days = tuple(sorted(nft_day(day) for day in spec.get("days") or ()))
            hours = self._hours(("schedules", name, "hours"), spec["hours"]) if "hours" in spec else None
            self.schedules[name] = Schedule(name, days, hours)

    def _hours(self, path: Path, text: str) -> Optional[tuple[int, int]]:
        """"HH:MM-HH:MM" (schema-checked) as minutes; 24:00 only ends a window."""
        start, end = (int(hhmm[:2]) * 60 + int(hhmm[3:]) for hhmm in text.split("-"))
        if start == MINUTES_PER_DAY:
            self.error(path, f"hours window {text!r} starts at 24:00, the end of the day: "
                             "write 00:00")
        elif start == end:
            self.error(path, f"hours window {text!r} is empty: start and end are equal")
        else:
            return start, end
        return None

    def _schedule(self, path: Path, name: Optional[str]) -> Optional[Schedule]:
        if name is None or name == ALWAYS:
            return None
        if name not in self.schedules:
            if name not in (self.data.get("schedules") or {}):
                self.error(path, f"undefined schedule {name!r}"
                           + did_you_mean(name, list(self.schedules) + [ALWAYS]))
            return None
        return self.schedules[name]

    def _timezone(self) -> Optional[str]:
        name = self.data["firewall"].get("timezone")
        if name is None or name in _zone_names():
            return name
        self.error(("firewall", "timezone"),
                   f"unknown time zone {name!r}" + did_you_mean(name, _zone_names()))
        return None

    # -- firewall and rules ---------------------------------------------------

    def _firewall(self) -> Firewall:
        spec = self.data["firewall"]
        table = spec.get("table", DEFAULT_TABLE)
        if table in nft_keywords():
            self.error(("firewall", "table"),
                       f"table name {table!r} is an nft keyword, which nft cannot take "
                       "as a table name; choose another")
        internal = spec.get("internal") or {}
        verdicts = spec.get("policy") or {}
        management = spec.get("management") or {}
        ssh = management.get("ssh")
        ping = management.get("ping")
        return Firewall(
            table=table,
            external_interface=spec["external"]["interface"],
            external_addresses=self._external_addresses(),
            internal_interface=internal.get("interface"),
            internal_networks=self._addresses_of(self._internal_networks()),
            input_policy=verdicts.get("input", "drop"),
            forward_policy=verdicts.get("forward", "drop"),
            output_policy=verdicts.get("output", "accept"),
            ssh_sources=(self._addresses(("firewall", "management", "ssh"), ssh)
                         if ssh is not None else None),
            timezone=self._timezone(),
            internal_interface_position=self.at(("firewall", "internal", "interface")),
            **self._blocks(spec),
            log=self._log_settings(),
            routed_networks=self._addresses_of(self._routed_networks()),
            routed_position=self.at(("firewall", "internal", "routed")),
            ssh_port=management.get("ssh_port", SSH.low),
            ping_sources=(self._addresses(("firewall", "management", "ping"), ping,
                                          allow_any=True)
                          if ping is not None else None),
            internal_addresses=self._internal_addresses(),
            internal_addresses_position=self.at(("firewall", "internal", "address")),
            anti_spoofing=spec.get("anti_spoofing", True),
            anti_spoofing_position=self.at(("firewall", "anti_spoofing")),
        )

    def _blocks(self, spec: dict) -> dict:
        """firewall.block and firewall.dynamic_block, as Firewall's keywords."""
        found = {}
        if "block" in spec:
            found["block"] = self._addresses(("firewall", "block"), spec["block"])
        name = spec.get("dynamic_block")
        if name is not None:
            path = ("firewall", "dynamic_block")
            if name in (LOCALHOST, ANY):
                self.error(path, f"{name!r} is a reserved word and cannot name a dynamic_block")
            elif name in (self.data.get("address_sets") or {}):
                self.error(path, f"dynamic_block {name!r} is already the name of an address "
                                 "set (they share one namespace): choose another")
            found.update(dynamic_block=name, dynamic_block_position=self.at(path))
        return found

    def _external_addresses(self) -> tuple:
        found = []
        for i, text in enumerate(self.data["firewall"]["external"]["addresses"]):
            address = self._address(("firewall", "external", "addresses", i), text)
            if address in found:
                self.error(("firewall", "external", "addresses", i),
                           f"external address {text} is listed twice")
            else:
                found.append(address)
        return tuple(found)

    def _internal_addresses(self) -> tuple:
        """firewall.internal.address: one address or a list of them."""
        value = (self.data["firewall"].get("internal") or {}).get("address", [])
        path = ("firewall", "internal", "address")
        if isinstance(value, str):
            return (self._address(path, value),)
        return tuple(self._address(path + (i,), text) for i, text in enumerate(value))

    def _internal_networks(self) -> list:
        internal = self.data["firewall"].get("internal") or {}
        return [self._entry(("firewall", "internal", "networks", i), text)
                for i, text in enumerate(internal.get("networks") or ())]

    def _routed_networks(self) -> list:
        internal = self.data["firewall"].get("internal") or {}
        return [self._entry(("firewall", "internal", "routed", i), text)
                for i, text in enumerate(internal.get("routed") or ())]

    def _publish(self, index: int, spec: dict, routed: Addresses) -> Publish:
        path: Path = ("publish", index)
        server = None if spec["server"] == LOCALHOST else self._address(path + ("server",),
                                                                        spec["server"])
        external = spec.get("external_address")
        return Publish(
            name=spec["name"],
            server=server,
            external_address=(None if external is None
                              else self._address(path + ("external_address",), external)),
            services=self._published_services(path + ("services",), spec["services"]),
            position=self.at(path + ("name",)),
            server_position=self.at(path + ("server",)),
            external_position=self.at(path + ("external_address",)),
            hostname=spec.get("hostname"),
            mail_domains=self._mail_domains(path, spec),
            limit=self._limit(path + ("limit",), spec.get("limit")),
            log=spec.get("log", False),
            routed=server is not None and routed.contains(family_of(server),
                                                          (int(server), int(server))),
            allow_from=(self._addresses(path + ("allow_from",), spec["allow_from"], allow_any=True)
                        if "allow_from" in spec else AddressRef(Addresses(), any=True)),
            hairpin=spec.get("hairpin", False),
            hairpin_position=self.at(path + ("hairpin",)),
        )

    def _mail_domains(self, path: Path, spec: dict) -> tuple[str, ...]:
        """An MX can only be checked against a hostname."""
        if "mail_domains" in spec and "hostname" not in spec:
            self.key_error(path + ("mail_domains",), "mail_domains needs hostname: "
                                                     "the host their MX records must name")
        return tuple(spec.get("mail_domains", ()))

    def _outbound(self, index: int, spec: dict) -> Outbound:
        path: Path = ("outbound", index)
        destinations = (self._addresses(path + ("to",), spec["to"], allow_any=True)
                        if "to" in spec else AddressRef(Addresses(), any=True))
        return Outbound(
            name=spec["name"],
            sources=self._addresses(path + ("from",), spec["from"], allow_localhost=True),
            services=self._rule_services(path + ("services",), spec["services"]),
            destinations=destinations,
            schedule=self._schedule(path + ("schedule",), spec.get("schedule")),
            position=self.at(path + ("name",)),
            log=spec.get("log", False),
        )

    # -- limits and logging -------------------------------------------------

    def _rate(self, path: Path, text: str) -> Optional[Rate]:
        """"N/unit" (schema-checked); a rate of 0 would admit nothing."""
        count, _, unit = text.partition("/")
        if int(count) == 0:
            self.error(path, f"rate {text!r} admits nothing: use at least 1/{unit}")
            return None
        return Rate(int(count), unit)

    def _limit(self, path: Path, spec: Optional[dict]) -> Optional[Limit]:
        if spec is None:
            return None
        if "burst" in spec and "new" not in spec:
            self.key_error(path + ("burst",), "burst needs new: it is the number of quick new "
                                              "connections beyond the `new` rate")
        elif "new" not in spec and "concurrent" not in spec:
            self.error(path, "a limit needs new, concurrent or both")
        new = self._rate(path + ("new",), spec["new"]) if "new" in spec else None
        prefixes = {key: spec[key] for key in ("ipv4_prefix", "ipv6_prefix") if key in spec}
        return Limit(new, spec.get("burst"), spec.get("concurrent"), **prefixes)

    def _log_settings(self) -> LogSettings:
        spec = self.data["firewall"].get("log") or {}
        rate = spec.get("rate")
        return LogSettings(
            dropped=spec.get("dropped", False),
            rate=(self._rate(("firewall", "log", "rate"), rate) if rate else None)
            or LogSettings.rate,
            group=spec.get("group"))


@lru_cache(maxsize=1)
def _zone_names() -> list[str]:
    """The IANA zone names this host's tz database knows, sorted (for suggestions)."""
    from zoneinfo import available_timezones   # late: most policies name no time zone
    return sorted(available_timezones())


def _merge_ports(ports: list[PortRange]) -> tuple[PortRange, ...]:
    """A service's ports with overlapping and adjacent ranges of one protocol
    joined: a service is a set of ports, however it was written."""
    return tuple(PortRange(protocol, low, high) for protocol in ("tcp", "udp")
                 for low, high in merge((p.low, p.high) for p in ports if p.protocol == protocol))


def _dependency_order(uses: dict[str, list[str]]) -> tuple[list[str], list[str]]:
    """Kahn's algorithm: names in an order where each comes after what it uses,
    and the names that cannot be ordered because they sit on or behind a cycle."""
    waiting = {name: len(set(deps)) for name, deps in uses.items()}
    used_by: dict[str, list[str]] = {name: [] for name in uses}
    for name, deps in uses.items():
        for dep in set(deps):
            used_by[dep].append(name)
    ready = [name for name in uses if waiting[name] == 0]
    order = []
    while ready:
        name = ready.pop()
        order.append(name)
        for user in used_by[name]:
            waiting[user] -= 1
            if waiting[user] == 0:
                ready.append(user)
    done = set(order)
    return order, [name for name in uses if name not in done]


def _cycles(uses: dict[str, list[str]], unordered: list[str]) -> list[list[str]]:
    """Each cycle among the unordered names once, rotated to start at its
    first-declared set. Every unordered name leads into a cycle, so one walk
    from each not yet visited name finds every cycle in linear time."""
    rank = {name: i for i, name in enumerate(uses)}
    pending = set(unordered)
    visited: set[str] = set()
    cycles = []
    for start in unordered:
        path: dict[str, int] = {}
        name = start
        while name not in visited and name not in path:
            path[name] = len(path)
            name = next(dep for dep in uses[name] if dep in pending)
        if name in path:   # this walk closed a new cycle
            cycle = list(path)[path[name]:]
            at = cycle.index(min(cycle, key=rank.__getitem__))
            cycles.append(cycle[at:] + cycle[:at])
        visited.update(path)
    return cycles
