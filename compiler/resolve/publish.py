"""Resolving `publish`: a publication's options once, then one Publish per
family of its server and external address (a dual-stack publication is
two), each placed in the zone that holds its server."""

from __future__ import annotations

from dataclasses import replace
from ..addresses import Address
from ..diagnostics import Position, did_you_mean
from ..loader import Path
from ..model import AddressRef, Addresses, Firewall, Publish, family_of
from ..vocab import FAMILIES, FAMILY_NAMES
from .addresses import LOCALHOST

# (the address, where it is written) of each family of `server` or `external_address`
ByFamily = dict[str, tuple[Address, Position]]


class PublishResolving:
    """The publish part of the resolver (`resolve.Resolver`)."""

    def _publish(self, index: int, spec: dict, firewall: Firewall) -> list[Publish]:
        path: Path = ("publish", index)
        localhost = spec["server"] == LOCALHOST
        servers = {} if localhost else self._by_family(path + ("server",), spec["server"])
        externals = self._by_family(path + ("external_address",), spec.get("external_address"))
        allow_from = (self._addresses(path + ("allow_from",), spec["allow_from"], allow_any=True)
                      if "allow_from" in spec else AddressRef(Addresses(), any=True))
        limit = self._limit(path + ("limit",), spec.get("limit"))
        log = spec.get("log", False)
        shared = Publish(
            name=spec["name"], server=None, external_address=None,
            services=self._published_services(path + ("services",), spec["services"],
                                              allow_from, limit, log),
            position=self.at(path + ("name",)),
            server_position=self.at(path + ("server",)),
            external_position=self.at(path + ("external_address",)),
            hostname=spec.get("hostname"), mail_domains=self._mail_domains(path, spec),
            limit=limit, log=log, allow_from=allow_from,
            hairpin=self._hairpin(path + ("hairpin",), spec.get("hairpin", False), firewall),
            hairpin_position=self.at(path + ("hairpin",)),
            block=(self._addresses(path + ("block",), spec["block"]) if "block" in spec
                   else None))
        families = [f for f in FAMILIES if f in servers or f in externals] or ["ip"]
        return [self._part(shared, part, family, servers, externals, firewall, localhost)
                for part, family in enumerate(families)]

    def _part(self, shared: Publish, part: int, family: str, servers: ByFamily,
              externals: ByFamily, firewall: Firewall, localhost: bool) -> Publish:
        """The publication in one family; a family with an external address
        but no server is an error (a missing external address is semantics':
        a routed server needs none)."""
        external, external_at = externals.get(family, (None, shared.external_position))
        server, server_at = servers.get(family, (None, shared.server_position))
        if server is None and not localhost:
            self.error(external_at, f"external address {external} is "
                                    f"{FAMILY_NAMES[family]}, but publish rule "
                                    f"{shared.name!r} has no {FAMILY_NAMES[family]} server "
                                    "to translate it to: add one to `server`")
        zone = None if server is None else firewall.zone_of(family, (int(server), int(server)))
        return replace(shared, server=server, external_address=external, part=part,
                       family=family, server_position=server_at, external_position=external_at,
                       zone=None if zone is None else zone.name,
                       routed=zone is not None and zone.routed.contains(
                           family, (int(server), int(server))))

    def _by_family(self, path: Path, value) -> ByFamily:
        """One address or a list of at most one a family."""
        if value is None:
            return {}
        written = [(value, path)] if isinstance(value, str) else [
            (text, path + (i,)) for i, text in enumerate(value)]
        found: ByFamily = {}
        for text, where in written:
            address = self._address(where, text)
            family = family_of(address)
            if family in found:
                self.error(where, f"{path[-1]} lists two {FAMILY_NAMES[family]} addresses "
                                  f"({found[family][0]} and {address}): give at most one "
                                  "a family")
            else:
                found[family] = (address, self.at(where))
        return found

    def _hairpin(self, path: Path, value, firewall: Firewall) -> tuple[str, ...]:
        """true: every zone; a list: the zones named."""
        names = [zone.name for zone in firewall.zones]
        if value is True:
            return tuple(names)
        if value is False:
            return ()
        for i, name in enumerate(value):
            if name not in names:
                self.error(path + (i,), f"hairpin names zone {name!r}, which firewall.internal "
                                        "does not define" + did_you_mean(name, names))
        return tuple(name for name in value if name in names)

    def _mail_domains(self, path: Path, spec: dict) -> tuple[str, ...]:
        """An MX can only be checked against a hostname."""
        if "mail_domains" in spec and "hostname" not in spec:
            self.key_error(path + ("mail_domains",), "mail_domains needs hostname: "
                                                     "the host their MX records must name")
        return tuple(spec.get("mail_domains", ()))

