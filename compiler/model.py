"""The typed, immutable model of a resolved policy.

Address sets are flattened and collapsed per family, services are protocol and
port ranges, schedules are days and hours. Positions travel with the model for
later diagnostics but take no part in equality (`compare=False`), so two
policies that mean the same thing compare equal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from .addresses import Address, Interval, covers, interval_texts, intersect, merge
from .diagnostics import Position
from .vocab import SSH, VERSIONS, PortRange


@dataclass(frozen=True, slots=True)
class Addresses:
    """A flattened address collection: merged intervals of integers per family."""

    v4: tuple[Interval, ...] = ()
    v6: tuple[Interval, ...] = ()

    @staticmethod
    def of(v4=(), v6=()) -> "Addresses":
        return Addresses(merge(v4), merge(v6))

    def family(self, family: str) -> tuple[Interval, ...]:
        return self.v4 if family == "ip" else self.v6

    def __bool__(self) -> bool:
        return bool(self.v4 or self.v6)

    def contains(self, family: str, interval: Interval) -> bool:
        return covers(self.family(family), interval)

    def texts(self, family: str) -> tuple[str, ...]:
        version = VERSIONS[family]
        return tuple(text for i in self.family(family) for text in interval_texts(version, i))

    def intersection(self, other: "Addresses") -> "Addresses":
        return Addresses(intersect(self.v4, other.v4), intersect(self.v6, other.v6))


def family_of(address: Address) -> str:
    return "ip" if address.version == 4 else "ip6"


@dataclass(frozen=True, slots=True)
class AddressRef:
    """What a rule names as its sources or destinations.

    `set_name` is set when the whole value is one address set, so that the
    ruleset can use the named set instead of repeating its elements.
    """

    addresses: Addresses
    set_name: Optional[str] = None
    localhost: bool = False
    any: bool = False
    position: Optional[Position] = field(default=None, compare=False)
    zones: tuple[str, ...] = ()         # the zone names among its entries (firewall.internal)


@dataclass(frozen=True, slots=True)
class Service:
    """A service as a rule names it. In a publication it also carries the
    options that apply to it: its own (a services entry's mapping form) or
    else the publication's, so the plan reads one place."""

    name: str
    ports: tuple[PortRange, ...]
    server_port: Optional[int] = None    # publish only: the port the server listens on
    position: Optional[Position] = field(default=None, compare=False)  # where a rule names it
    allow_from: Optional[AddressRef] = None     # publish only: who may connect
    limit: Optional[Limit] = None                # publish only
    log: bool = False                            # publish only


@dataclass(frozen=True, slots=True)
class Schedule:
    """Local days and hours, in the firewall's time zone (`Firewall.timezone`).

    A window whose end is not after its start crosses midnight and belongs
    to the day it starts on."""

    name: str
    days: tuple[int, ...] = ()                 # 0 = Sunday .. 6 = Saturday, ascending; () = every day
    hours: Optional[tuple[int, int]] = None    # [start, end) in minutes; end 1440 = 24:00


@dataclass(frozen=True, slots=True)
class AddressSet:
    name: str
    addresses: Addresses                # flattened: its own entries and the sets it names
    used: bool = True                   # named by a rule or by another set
    includes: tuple[str, ...] = ()      # the address sets it names, in policy order, once each
    position: Optional[Position] = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Rate:
    """A rate as the policy writes it: `count` per `unit` (second, minute, hour)."""

    count: int
    unit: str


@dataclass(frozen=True, slots=True)
class Limit:
    """Per source address, for each published service (`publish[].limit`)."""

    new: Optional[Rate] = None          # new connections per unit
    burst: Optional[int] = None         # quick new connections beyond the rate
    concurrent: Optional[int] = None    # simultaneous connections
    ipv4_prefix: int = 32               # sources in one such network share one limit
    ipv6_prefix: int = 64               # (an IPv6 host gets a /64, often more)


DROP_LOG_RATE = Rate(10, "minute")      # firewall.log.rate's default


@dataclass(frozen=True, slots=True)
class LogSettings:
    """`firewall.log`: logging of what the chain policies drop, and the
    nflog group every log statement uses."""

    dropped: bool = False
    rate: Rate = DROP_LOG_RATE
    group: Optional[int] = None


@dataclass(frozen=True, slots=True)
class Publish:
    """One family of a publication: a dual-stack publication (`server` and
    `external_address` lists) is one Publish per family, in the order of
    FAMILIES, `part` counting them, so every later stage sees one server
    and one external address."""

    name: str
    server: Optional[Address]            # None: the firewall host itself ("localhost")
    external_address: Optional[Address]  # None: a routed server, published by filtering alone
    services: tuple[Service, ...]
    position: Optional[Position] = field(default=None, compare=False)
    server_position: Optional[Position] = field(default=None, compare=False)
    external_position: Optional[Position] = field(default=None, compare=False)
    hostname: Optional[str] = None       # for dns-check: its A/AAAA is published_at()
    mail_domains: tuple[str, ...] = ()   # for dns-check: their MX names hostname
    limit: Optional[Limit] = None
    log: bool = False
    routed: bool = False                 # the server lies in firewall.internal.routed
    allow_from: AddressRef = AddressRef(Addresses(), any=True)
    hairpin: tuple[str, ...] = ()        # the zones whose clients may use the external address
    hairpin_position: Optional[Position] = field(default=None, compare=False)
    zone: Optional[str] = None           # the internal zone whose networks hold the server
    block: Optional[AddressRef] = None   # sources refused for this publication only
    part: int = 0                        # 1: the second family of a dual-stack publication
    family: str = "ip"                   # of its server and external address

    def published_at(self) -> Optional[Address]:
        """Where clients connect: the external address, or a routed server's own."""
        return self.server if self.external_address is None else self.external_address


@dataclass(frozen=True, slots=True)
class Outbound:
    name: str
    sources: AddressRef
    services: tuple[Service, ...]
    destinations: AddressRef
    schedule: Optional[Schedule]
    position: Optional[Position] = field(default=None, compare=False)
    log: bool = False
    user: Optional[int | str] = None     # only this local user's sockets (from: localhost)


@dataclass(frozen=True, slots=True)
class Zone:
    """An internal zone (`firewall.internal`; its mapping form is the one
    zone named "internal"): an interface and the networks behind it."""

    name: str
    interface: str
    networks: Addresses
    routed: Addresses = Addresses()          # not translated (no SNAT), published without DNAT
    addresses: tuple[Address, ...] = ()      # the firewall's own, at most one a family
    listed: bool = False                     # written in the list form, by name
    position: Optional[Position] = field(default=None, compare=False)
    interface_position: Optional[Position] = field(default=None, compare=False)
    networks_position: Optional[Position] = field(default=None, compare=False)
    routed_position: Optional[Position] = field(default=None, compare=False)
    address_position: Optional[Position] = field(default=None, compare=False)

    def address(self, family: str) -> Optional[Address]:
        """The hairpin SNAT source in `family`; None: masquerade."""
        return next((a for a in self.addresses if family_of(a) == family), None)

    def holds(self, address: Address) -> bool:
        return self.networks.contains(family_of(address), (int(address), int(address)))


# a dynamic_block's feeders: operators (fail2ban, nft by hand), the default,
# and CrowdSec's firewall bouncer
OPERATOR, CROWDSEC = "operator", "crowdsec"


@dataclass(frozen=True, slots=True)
class DynamicBlock:
    """One entry of firewall.dynamic_block: run-time sets NAME_v4 and NAME_v6,
    filled by `feeder` (the sets' flags follow from it: `plan.DYNAMIC_FLAGS`)."""
    name: str
    feeder: str = OPERATOR
    position: Optional[Position] = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Firewall:
    table: str
    external_interface: str
    external_addresses: tuple[Address, ...]
    zones: tuple[Zone, ...]
    internal_networks: Addresses         # every zone's networks together
    input_policy: str
    forward_policy: str
    output_policy: str
    ssh_sources: Optional[AddressRef]
    timezone: Optional[str] = None       # IANA name of the schedules' zone; None: the compiling host's
    block: Optional[AddressRef] = None   # firewall.block: sources dropped before every accept
    dynamic_blocks: tuple[DynamicBlock, ...] = ()   # firewall.dynamic_block, in policy order
    log: LogSettings = LogSettings()
    routed_networks: Addresses = Addresses()     # every zone's routed networks together
    ssh_port: int = SSH.low
    ping_sources: Optional[AddressRef] = None    # who may ping the firewall itself
    anti_spoofing: bool = True          # drop packets from outside with an internal source
    anti_spoofing_position: Optional[Position] = field(default=None, compare=False)

    @property
    def internal_addresses(self) -> tuple[Address, ...]:
        return tuple(a for zone in self.zones for a in zone.addresses)

    def zone_named(self, name: Optional[str]) -> Optional[Zone]:
        return next((zone for zone in self.zones if zone.name == name), None)

    def zone_of(self, family: str, interval: Interval) -> Optional[Zone]:
        """The zone whose networks hold all of `interval` (zones do not overlap)."""
        return next((zone for zone in self.zones if zone.networks.contains(family, interval)),
                    None)

    def first_external(self, family: str) -> Optional[Address]:
        return next((a for a in self.external_addresses if family_of(a) == family), None)


@dataclass(frozen=True, slots=True)
class Policy:
    source: str = field(compare=False)
    firewall: Firewall
    address_sets: tuple[AddressSet, ...]
    publish: tuple[Publish, ...]
    outbound: tuple[Outbound, ...]
    # user-defined services named like a later built-in (`ping`, `https`...), which win
    shadowed_builtins: tuple[tuple[str, Position], ...] = field(default=(), compare=False)
