"""The plan's data: a ruleset as typed records, which the generators print
and explain, shadow and stats read. Matches and statements hold numbers and
intervals, never formatted text.

Each match and statement class names its `kind` once; subclassing `Match`
or `Statement` registers it in `KINDS`, and tests/test_kinds.py requires
every registered kind to have a text macro, a JSON printer, an evaluator
and a shadow decision.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Optional

from ..addresses import Address, Interval
from ..diagnostics import Position
from ..model import Zone
from ..schedule import ZoneNote
from ..vocab import FAMILY_LABELS

KINDS: dict[str, type] = {}     # kind -> its Match or Statement class


class _Kind:
    """A plan part with a kind: registered by subclassing."""
    __slots__ = ()
    kind: ClassVar[str]

    def __init_subclass__(cls, **options):
        super().__init_subclass__(**options)
        if "kind" in cls.__dict__:
            KINDS[cls.kind] = cls


class Match(_Kind):
    """What a rule matches (printed in the order the rule holds them)."""
    __slots__ = ()


class Statement(_Kind):
    """What a rule does to a packet it matches."""
    __slots__ = ()


# -- where a rule comes from ------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Origin:
    """Why a rule exists: `kind` is publish, outbound, management, snat, block,
    antispoofing, fixed (the rules every ruleset has) or policy (a chain's
    reject tail); `name` is the policy rule's name (or what the fixed rule
    does, the chain, or the key path of an unnamed one: firewall.block,
    firewall.dynamic_block, firewall.anti_spoofing)."""

    kind: str
    name: str
    service: Optional[str] = None
    position: Optional[Position] = field(default=None, compare=False)

    @property
    def policy_name(self) -> Optional[str]:
        """How the policy names the rule: its own name, the key path of one
        that has none (firewall.management.ssh), a fixed rule's purpose
        (`loopback`), None for a chain's policy."""
        if self.kind == "policy":
            return None
        if self.kind == "management":
            return f"firewall.management.{self.name}"
        return self.name

    @property
    def comment_words(self) -> tuple[str, ...]:
        """The words of the rule's comment after "mailpub", so a listing can be
        read back against the policy: ("publish", "exchange", "smtp")."""
        if self.kind == "fixed":
            return (self.name,)
        if self.kind == "policy":
            return ("policy", self.name, "reject")
        return (self.kind, self.name) + ((self.service,) if self.service else ())

    def counter_name(self, family: Optional[str]) -> str:
        """The named counter of a rule's accepts of one service and family:
        publish_exchange.smtp.ipv4, management_ssh.ipv6 (no service), `any`
        for both families. Names and services hold no dot: no clashes."""
        parts = (f"{self.kind}_{self.name}", self.service, FAMILY_LABELS[family])
        return ".".join(part for part in parts if part)


# -- matches ----------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class InterfaceMatch(Match):
    kind: ClassVar[str] = "interface"
    direction: str              # "iif" or "oif"
    name: str
    by_index: bool = False      # `iif "lo"` (an index, for lo) instead of `iifname "eth0"`


@dataclass(frozen=True, slots=True)
class AddressMatch(Match):
    """Addresses as a rule matches them: a named set, or intervals written inline."""

    kind: ClassVar[str] = "address"
    family: str                 # "ip" or "ip6"
    field: str                  # "saddr" or "daddr"
    intervals: tuple[Interval, ...] = ()
    set_name: Optional[str] = None
    original: bool = False      # `ct original ip daddr`: the address before DNAT
    negated: bool = False       # `ip saddr != {...}`: an address outside them


@dataclass(frozen=True, slots=True)
class PortMatch(Match):
    kind: ClassVar[str] = "port"
    protocol: str               # "tcp" or "udp"
    low: int
    high: int
    original: bool = False      # `ct original proto-dst`: the port before DNAT


@dataclass(frozen=True, slots=True)
class ProtocolMatch(Match):
    kind: ClassVar[str] = "protocol"
    protocol: str               # `meta l4proto tcp`


@dataclass(frozen=True, slots=True)
class IcmpTypeMatch(Match):
    kind: ClassVar[str] = "icmp"
    protocol: str               # "icmp" or "icmpv6"
    types: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class HopLimitMatch(Match):
    kind: ClassVar[str] = "hoplimit"
    value: int                  # `ip6 hoplimit 255`


@dataclass(frozen=True, slots=True)
class ConntrackMatch(Match):
    kind: ClassVar[str] = "conntrack"
    states: tuple[str, ...]     # `ct state established,related`


@dataclass(frozen=True, slots=True)
class DayMatch(Match):
    kind: ClassVar[str] = "day"
    days: tuple[int, ...]       # nft's day numbers, 0 = Sunday


@dataclass(frozen=True, slots=True)
class HourMatch(Match):
    kind: ClassVar[str] = "hour"
    first: int                  # first and last second of the day, inclusive
    last: int


@dataclass(frozen=True, slots=True)
class ConntrackStatusMatch(Match):
    kind: ClassVar[str] = "ctstatus"
    status: str                 # `ct status dnat`: the connection was destination-translated


@dataclass(frozen=True, slots=True)
class UnmeteredMatch(Match):
    """`ip6 saddr & ffff:ffff:ffff:ffff:: != @S`: true for a source the meter S
    holds no element for. Right after the rule that updates S, that is a
    source S had no room for: the kernel skips the verdict of a meter rule
    whose update fails, so without this a full meter would limit nobody new."""

    kind: ClassVar[str] = "unmetered"
    set_name: str
    family: str
    prefix: int                 # the meter's key: the source's network of this length


@dataclass(frozen=True, slots=True)
class SocketUserMatch(Match):
    """`meta skuid postfix`: the firewall's own connections of one local
    user; a name is resolved by nft when the ruleset is loaded."""

    kind: ClassVar[str] = "skuid"
    user: int | str


# -- statements -------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Nat(Statement):
    kind: ClassVar[str] = "nat"
    type: str                   # "dnat" or "snat"
    family: str
    address: Address
    port: Optional[int] = None


@dataclass(frozen=True, slots=True)
class Verdict(Statement):
    kind: ClassVar[str] = "verdict"
    verdict: str                        # accept, drop or reject
    reject_type: Optional[str] = None   # `reject with tcp reset`, `reject with icmpx type CODE`
    reject_code: Optional[str] = None


@dataclass(frozen=True, slots=True)
class Jump(Statement):
    """A jump to a regular chain (hook None) of the same table."""

    kind: ClassVar[str] = "jump"
    target: str


@dataclass(frozen=True, slots=True)
class RateMeter(Statement):
    """`update @S { ip saddr limit rate over N/unit burst B packets }`: true for
    a source over its own rate, each source with its own bucket in set S. A
    source is its network of `prefix` bits (`ip6 saddr & ffff:ffff:ffff:ffff::`
    for 64), the whole address when `prefix` is the family's length."""

    kind: ClassVar[str] = "rate_meter"
    set_name: str
    family: str
    count: int
    unit: str                   # second, minute, hour
    burst: int
    prefix: int


@dataclass(frozen=True, slots=True)
class CountMeter(Statement):
    """`add @S { ip saddr ct count over N }`: true for a source (its network of
    `prefix` bits, as in RateMeter) that already has N connections counted in
    set S."""

    kind: ClassVar[str] = "count_meter"
    set_name: str
    family: str
    count: int
    prefix: int


@dataclass(frozen=True, slots=True)
class RateLimit(Statement):
    """`limit rate N/unit burst B packets`: true for at most that many packets."""

    kind: ClassVar[str] = "limit"
    count: int
    unit: str
    burst: int


@dataclass(frozen=True, slots=True)
class Log(Statement):
    """`log prefix "mailpub WORDS: "`, to nflog `group` when given."""

    kind: ClassVar[str] = "log"
    words: tuple[str, ...]      # the prefix's words after "mailpub": ("exchange",), ("drop", "input")
    group: Optional[int] = None


@dataclass(frozen=True, slots=True)
class CounterRef(Statement):
    """`counter name "publish_exchange.smtp.ipv4"`: the named counter of one
    service of a policy rule in one family (`Origin.counter_name`)."""

    kind: ClassVar[str] = "counter"
    name: str
    family: Optional[str] = None    # "ip", "ip6"; None: the rule matches both


@dataclass(frozen=True, slots=True)
class Redirect(Statement):
    """`redirect to :PORT`: to the firewall itself (the incoming interface's
    primary address), on another port."""

    kind: ClassVar[str] = "redirect"
    port: int


@dataclass(frozen=True, slots=True)
class Masquerade(Statement):
    """`masquerade`: source-translate to the outgoing interface's address."""

    kind: ClassVar[str] = "masquerade"


# -- the ruleset --------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Rule:
    origin: Origin
    matches: tuple[Match, ...]
    statements: tuple[Statement, ...]


@dataclass(frozen=True, slots=True)
class Elements:
    """How the text writes elements that include other address sets: the
    defines of the sets included (`$name`), then the addresses of its own that
    none of them holds. Each address is then written once in the file, however
    deep the policy nests its sets: nft cannot put a set inside a set, so the
    kernel gets them flattened either way."""

    includes: tuple[str, ...]           # Define names
    own: tuple[Interval, ...]


@dataclass(frozen=True, slots=True)
class Define:
    """An address set two writers hold (`sets.SetLayout.defined`), written once as
    `define NAME = { ... }` and included elsewhere as `$NAME`."""

    name: str
    family: str
    elements: Elements


@dataclass(frozen=True, slots=True)
class NftSet:
    """A named set. `intervals` is what it holds, merged (the JSON's elements
    and what explain and the warnings look up). A set written through
    defines (`written`) carries nft's `auto-merge`, so that included sets
    may overlap or touch: the kernel then holds the same merged intervals."""

    name: str
    family: str
    intervals: tuple[Interval, ...]
    flags: tuple[str, ...] = ("interval",)
    size: Optional[int] = None          # dynamic sets (meters): most sources tracked at once
    timeout: Optional[int] = None       # seconds an idle source stays in a meter
    written: Optional[Elements] = None  # through defines; None: `intervals` as they are


@dataclass(frozen=True, slots=True)
class Hook:
    """What makes a chain a base chain; regular chains (jump targets) have none."""

    type: str                   # "filter" or "nat"
    hook: str                   # prerouting, input, forward, output, postrouting
    priority: str               # dstnat, filter, srcnat
    policy: str                 # accept or drop: what nft takes as a chain policy


@dataclass(frozen=True, slots=True)
class Chain:
    name: str
    hook: Optional[Hook]
    rules: tuple[Rule, ...]


@dataclass(frozen=True, slots=True)
class Layout:
    """Where the firewall sits, as the packet evaluator needs it: its
    interfaces, its own addresses, the networks behind it, the schedules' zone."""

    external_interface: str
    zones: tuple[Zone, ...]             # the internal zones: interface and networks each
    addresses: tuple[Address, ...]      # the firewall's own, external and internal
    timezone: Optional[str]             # IANA name; None: the compiling host's

    def zone_of(self, family: str, address: int) -> Optional[Zone]:
        """The zone whose networks hold `address`; None: outside."""
        return next((zone for zone in self.zones
                     if zone.networks.contains(family, (address, address))), None)


@dataclass(frozen=True, slots=True)
class Ruleset:
    table: str
    sets: tuple[NftSet, ...]
    chains: tuple[Chain, ...]
    zone: Optional[ZoneNote] = None     # the schedules' zone and offset, when a rule has one
    counters: tuple[str, ...] = ()      # named counters, a policy rule's per service and family
    defines: tuple[Define, ...] = ()    # each after the defines it includes
    layout: Optional[Layout] = field(default=None, compare=False)   # None: the lockdown's
