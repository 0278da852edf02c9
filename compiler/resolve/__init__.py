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

from typing import Optional

from .. import lists
from ..datafiles import nft_keywords
from ..diagnostics import Collector, Position, line_of
from ..loader import Document, Path
from ..model import (DROP_LOG_RATE, OPERATOR, AddressRef, Addresses, AddressSet, DynamicBlock,
                     Firewall, Limit, LogSettings, Outbound, Policy, Rate, Schedule, Service, Zone)
from ..vocab import SSH
from .addresses import ANY, LOCALHOST, AddressResolving
from .publish import PublishResolving
from .services import ServiceResolving
from .zones import ZoneResolving

DEFAULT_TABLE = "mailpub"


def resolve(document: Document) -> tuple[Optional[Policy], list]:
    """The model and the problems found; the model is None when there are problems."""
    resolver = _Resolver(document)
    policy = resolver.policy()
    if resolver.problems.diagnostics:
        return None, resolver.problems.diagnostics
    return policy, []


class _Resolver(AddressResolving, ServiceResolving, PublishResolving, ZoneResolving):
    """The resolver: one pass over the document, the problems collected."""

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
        self.zones: dict[str, Addresses] = {}   # each zone's networks, by name

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
        zones = self._zones()
        self._address_sets()
        self._services()
        self._schedules()
        firewall = self._firewall(zones)
        publish = tuple(part for i, rule in enumerate(self.data.get("publish") or ())
                        for part in self._publish(i, rule, firewall))
        outbound = tuple(self._outbound(i, rule)
                         for i, rule in enumerate(self.data.get("outbound") or ()))
        sets = tuple(AddressSet(name, self.sets.get(name, Addresses()),
                                used=name in self.named_sets,
                                includes=self.includes.get(name, ()),
                                position=self.doc.key_position(("address_sets", name)))
                     for name in sorted(self.data.get("address_sets") or {}))
        return Policy(self.doc.file, firewall, sets, publish, outbound,
                      shadowed_builtins=tuple(self.shadowed))

    def _firewall(self, zones: tuple[Zone, ...]) -> Firewall:
        spec = self.data["firewall"]
        table = spec.get("table", DEFAULT_TABLE)
        if table in nft_keywords():
            self.error(("firewall", "table"),
                       f"table name {table!r} is an nft keyword, which nft cannot take "
                       "as a table name; choose another")
        verdicts = spec.get("policy") or {}
        management = spec.get("management") or {}
        ssh = management.get("ssh")
        ping = management.get("ping")
        return Firewall(
            table=table,
            external_interface=spec["external"]["interface"],
            external_addresses=self._external_addresses(),
            zones=zones,
            internal_networks=self._addresses_of([zone.networks for zone in zones]),
            input_policy=verdicts.get("input", "drop"),
            forward_policy=verdicts.get("forward", "drop"),
            output_policy=verdicts.get("output", "accept"),
            ssh_sources=(self._addresses(("firewall", "management", "ssh"), ssh)
                         if ssh is not None else None),
            timezone=self._timezone(),
            **self._blocks(spec),
            log=self._log_settings(),
            routed_networks=self._addresses_of([zone.routed for zone in zones]),
            ssh_port=management.get("ssh_port", SSH.low),
            ping_sources=(self._addresses(("firewall", "management", "ping"), ping,
                                          allow_any=True)
                          if ping is not None else None),
            anti_spoofing=spec.get("anti_spoofing", True),
            anti_spoofing_position=self.at(("firewall", "anti_spoofing")),
        )

    def _blocks(self, spec: dict) -> dict:
        """firewall.block and firewall.dynamic_block, as Firewall's keywords."""
        found = {}
        if "block" in spec:
            found["block"] = self._addresses(("firewall", "block"), spec["block"])
        if spec.get("dynamic_block") is not None:
            found["dynamic_blocks"] = self._dynamic_blocks(spec["dynamic_block"])
        return found

    def _dynamic_blocks(self, value) -> tuple[DynamicBlock, ...]:
        """firewall.dynamic_block: a NAME, or a list of NAMEs and {name, feeder}."""
        top = ("firewall", "dynamic_block")
        entries = [(top, value)] if isinstance(value, str) else [
            (top + (i,), entry) for i, entry in enumerate(value)]
        found: dict[str, DynamicBlock] = {}
        for path, entry in entries:
            spec = {"name": entry} if isinstance(entry, str) else entry
            at = path + (("name",) if isinstance(entry, dict) else ())
            name = spec["name"]
            if name in (LOCALHOST, ANY):
                self.error(at, f"{name!r} is a reserved word and cannot name a dynamic_block")
            elif name in (self.data.get("address_sets") or {}):
                self.error(at, f"dynamic_block {name!r} is already the name of an address "
                               "set (they share one namespace): choose another")
            elif name in found:
                self.error(at, f"dynamic_block {name!r} is listed twice (first at "
                               f"{line_of(found[name].position)})")
            else:
                found[name] = DynamicBlock(name, spec.get("feeder", OPERATOR), self.at(path))
        return tuple(found.values())

    def _external_addresses(self) -> tuple:
        found: dict = {}        # a dict keeps the order and finds a repeat by hashing
        for i, text in enumerate(self.data["firewall"]["external"]["addresses"]):
            address = self._address(("firewall", "external", "addresses", i), text)
            if address in found:
                self.error(("firewall", "external", "addresses", i),
                           f"external address {text} is listed twice")
            else:
                found[address] = None
        return tuple(found)

    def _outbound(self, index: int, spec: dict) -> Outbound:
        path: Path = ("outbound", index)
        destinations = (self._addresses(path + ("to",), spec["to"], allow_any=True)
                        if "to" in spec else AddressRef(Addresses(), any=True))
        sources = self._addresses(path + ("from",), spec["from"], allow_localhost=True)
        if "user" in spec and (not sources.localhost or sources.addresses):
            self.key_error(path + ("user",), f"outbound rule {spec['name']!r}: user needs "
                                             "`from: localhost` alone: only the firewall's own "
                                             "connections have a local user")
        return Outbound(
            name=spec["name"],
            sources=sources,
            services=self._rule_services(path + ("services",), spec["services"]),
            destinations=destinations,
            schedule=self._schedule(path + ("schedule",), spec.get("schedule")),
            position=self.at(path + ("name",)),
            log=spec.get("log", False),
            user=spec.get("user"),
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
        """A publication's or one service's `limit`."""
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
            or DROP_LOG_RATE,
            group=spec.get("group"))


