"""Resolving `firewall.internal`: one zone (the mapping form, the zone named
"internal") or a list of named zones. Each zone's name then stands for its
networks wherever an address entry may (`AddressResolving`)."""

from __future__ import annotations

from ..loader import Path
from ..model import Zone

SINGLE_ZONE = "internal"     # the name of the mapping form's one zone


class ZoneResolving:
    """The zones part of the resolver (`resolve.Resolver`)."""

    def _zones(self) -> tuple[Zone, ...]:
        """Every zone, and their networks by name in `self.zones` (before the
        address sets, which may name them). The mapping form's zone is an
        address name only when no address set has that name: a policy
        written before zones keeps its meaning."""
        internal = self.data["firewall"].get("internal")
        if internal is None:
            return ()
        path: Path = ("firewall", "internal")
        if isinstance(internal, dict):
            zones = (self._zone(path, internal, SINGLE_ZONE),)
            if SINGLE_ZONE not in (self.data.get("address_sets") or {}):
                self.zones[SINGLE_ZONE] = zones[0].networks
            return zones
        zones = tuple(self._zone(path + (i,), spec, spec["name"])
                      for i, spec in enumerate(internal))
        sets = self.data.get("address_sets") or {}
        for i, zone in enumerate(zones):
            if zone.name in sets:
                self.error(path + (i, "name"), f"zone {zone.name!r} has the name of an address "
                                               "set (they share one namespace): choose another")
            self.zones.setdefault(zone.name, zone.networks)
        return zones

    def _zone(self, path: Path, spec: dict, name: str) -> Zone:
        def entries(key: str) -> list:
            return [self._entry(path + (key, i), text) for i, text in enumerate(spec.get(key) or ())]
        address = spec.get("address", [])
        addresses = ((self._address(path + ("address",), address),) if isinstance(address, str)
                     else tuple(self._address(path + ("address", i), text)
                                for i, text in enumerate(address)))
        return Zone(name, spec["interface"], self._addresses_of(entries("networks")),
                    self._addresses_of(entries("routed")), addresses, listed="name" in spec,
                    position=self.at(path + ("name",) if "name" in spec else path),
                    interface_position=self.at(path + ("interface",)),
                    networks_position=self.at(path + ("networks",)),
                    routed_position=self.at(path + ("routed",)),
                    address_position=self.at(path + ("address",)))
