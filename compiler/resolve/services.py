"""Resolving services (built-in and the policy's, their ports merged) and
schedules (days, hours, the time zone)."""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache
from typing import Optional

from ..addresses import merge
from ..diagnostics import did_you_mean
from ..loader import Path
from ..model import PortRange, Schedule, Service
from ..vocab import BUILTIN_SERVICES, ECHO, LATER_BUILTINS, nft_day

MINUTES_PER_DAY = 24 * 60
ALWAYS = "always"


class ServiceResolving:
    """The services and schedules part of the resolver (`resolve.Resolver`)."""

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
        self.error(path, f"unknown service {name!r}" + (
            did_you_mean(name, self.services)
            or ": write its port inline (tcp/443, udp/1194, tcp/8000-8010) or define it "
               "under `services:`"))
        return None

    def _published_services(self, path: Path, entries: list, allow_from, limit,
                            log: bool) -> tuple[Service, ...]:
        """A publication's services, each with where it is named and its
        options: an entry's own (the mapping form) or else the publication's
        (`allow_from`, `limit`, `log`). A server_port equal to the service's
        own port is None, so that it means what the plain name means."""
        found = []
        for i, entry in enumerate(entries):
            own = entry if isinstance(entry, dict) else {}
            name = own.get("service", entry)
            service = self._service(path + (i, "service") if own else path + (i,), name)
            if service is None or not self._server_port_fits(path + (i,), service, own):
                continue
            server_port = own.get("server_port")
            if server_port in {port for p in service.ports for port in (p.low, p.high)}:
                server_port = None
            found.append(replace(
                service, server_port=server_port, position=self.at(path + (i,)),
                allow_from=(self._addresses(path + (i, "allow_from"), own["allow_from"],
                                            allow_any=True)
                            if "allow_from" in own else allow_from),
                limit=self._limit(path + (i, "limit"), own["limit"]) if "limit" in own else limit,
                log=own.get("log", log)))
        return tuple(found)

    def _server_port_fits(self, path: Path, service: Service, own: dict) -> bool:
        """server_port only for a tcp or udp service with one port."""
        if "server_port" not in own:
            return True
        if ECHO in service.ports:
            self.error(path + ("server_port",), f"server_port needs a tcp or udp service, "
                                                f"but {service.name!r} is ICMP echo")
            return False
        if len({port for p in service.ports for port in (p.low, p.high)}) != 1:
            self.error(path + ("server_port",),
                       f"server_port needs a service with one port, but {service.name!r} has "
                       f"{', '.join(str(p) for p in service.ports)}")
            return False
        return True

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
