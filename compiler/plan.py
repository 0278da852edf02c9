"""Plan stage: the policy model -> the ruleset as typed data.

Every decision about the ruleset is made here: which chains exist, which
rules each holds and in what order, what each rule matches, which family it
is emitted in, which named set it uses, what it translates to. Fixed rules
(conntrack, loopback, neighbour discovery, ICMP errors, the reject tail) are
plan data like every other rule. The generators (`generate/text.py`,
`generate/json.py`) only print a plan, and `explain`, `diff` and the tests
read the same plan.

A rule is its origin (the policy rule, service and position it comes from),
its matches and its statements. Matches hold numbers and intervals, never
formatted text.

The rule that matters most: a match is never left out to make a rule fit. A
rule that would have no addresses in a family is not emitted in that family
(semantics has already rejected rules empty in every family).
"""

from __future__ import annotations

from dataclasses import field, replace
from datetime import datetime, timezone
from typing import ClassVar, Optional, Union

from .addresses import Address, Interval, difference, host_mask, merge, parse_network, subtract
from .diagnostics import Position
from .model import AddressRef, Policy, Schedule, Service, family_of
from .records import record
from .schedule import ZoneNote, schedule_zone, utc_windows, zone_note
from .vocab import (ECHO, ECHO_PROTOCOL, ECHO_REQUEST, FAMILIES, ICMP_ERRORS, ICMP_PROTOCOLS,
                    ICMPV6_ERRORS, MLD, MLD_REPORTS, NEIGHBOUR_DISCOVERY, SET_SUFFIX, SSH,
                    PortRange)

# -- where a rule comes from ------------------------------------------------------

@record
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


# -- matches ----------------------------------------------------------------------

@record
class InterfaceMatch:
    kind: ClassVar[str] = "interface"
    direction: str              # "iif" or "oif"
    name: str
    by_index: bool = False      # `iif "lo"` (an index, for lo) instead of `iifname "eth0"`


@record
class AddressMatch:
    """Addresses as a rule matches them: a named set, or intervals written inline."""

    kind: ClassVar[str] = "address"
    family: str                 # "ip" or "ip6"
    field: str                  # "saddr" or "daddr"
    intervals: tuple[Interval, ...] = ()
    set_name: Optional[str] = None
    original: bool = False      # `ct original ip daddr`: the address before DNAT


@record
class PortMatch:
    kind: ClassVar[str] = "port"
    protocol: str               # "tcp" or "udp"
    low: int
    high: int
    original: bool = False      # `ct original proto-dst`: the port before DNAT


@record
class ProtocolMatch:
    kind: ClassVar[str] = "protocol"
    protocol: str               # `meta l4proto tcp`


@record
class IcmpTypeMatch:
    kind: ClassVar[str] = "icmp"
    protocol: str               # "icmp" or "icmpv6"
    types: tuple[str, ...]


@record
class HopLimitMatch:
    kind: ClassVar[str] = "hoplimit"
    value: int                  # `ip6 hoplimit 255`


@record
class ConntrackMatch:
    kind: ClassVar[str] = "conntrack"
    states: tuple[str, ...]     # `ct state established,related`


@record
class DayMatch:
    kind: ClassVar[str] = "day"
    days: tuple[int, ...]       # nft's day numbers, 0 = Sunday


@record
class HourMatch:
    kind: ClassVar[str] = "hour"
    first: int                  # first and last second of the day, inclusive
    last: int


@record
class ConntrackStatusMatch:
    kind: ClassVar[str] = "ctstatus"
    status: str                 # `ct status dnat`: the connection was destination-translated


@record
class UnmeteredMatch:
    """`ip6 saddr & ffff:ffff:ffff:ffff:: != @S`: true for a source the meter S
    holds no element for. Right after the rule that updates S, that is a
    source S had no room for: the kernel skips the verdict of a meter rule
    whose update fails, so without this a full meter would limit nobody new."""

    kind: ClassVar[str] = "unmetered"
    set_name: str
    family: str
    prefix: int                 # the meter's key: the source's network of this length


Match = Union[InterfaceMatch, AddressMatch, PortMatch, ProtocolMatch, IcmpTypeMatch,
              HopLimitMatch, ConntrackMatch, DayMatch, HourMatch, ConntrackStatusMatch,
              UnmeteredMatch]


# -- statements -------------------------------------------------------------------

@record
class Nat:
    kind: ClassVar[str] = "nat"
    type: str                   # "dnat" or "snat"
    family: str
    address: Address
    port: Optional[int] = None


@record
class Verdict:
    kind: ClassVar[str] = "verdict"
    verdict: str                        # accept, drop or reject
    reject_type: Optional[str] = None   # `reject with tcp reset`, `reject with icmpx type CODE`
    reject_code: Optional[str] = None


@record
class Jump:
    """A jump to a regular chain (hook None) of the same table."""

    kind: ClassVar[str] = "jump"
    target: str


@record
class RateMeter:
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


@record
class CountMeter:
    """`add @S { ip saddr ct count over N }`: true for a source (its network of
    `prefix` bits, as in RateMeter) that already has N connections counted in
    set S."""

    kind: ClassVar[str] = "count_meter"
    set_name: str
    family: str
    count: int
    prefix: int


@record
class RateLimit:
    """`limit rate N/unit burst B packets`: true for at most that many packets."""

    kind: ClassVar[str] = "limit"
    count: int
    unit: str
    burst: int


@record
class Log:
    """`log prefix "mailpub WORDS: "`, to nflog `group` when given."""

    kind: ClassVar[str] = "log"
    words: tuple[str, ...]      # the prefix's words after "mailpub": ("exchange",), ("drop", "input")
    group: Optional[int] = None


@record
class CounterRef:
    """`counter name "publish_exchange"`: the named counter of a policy rule."""

    kind: ClassVar[str] = "counter"
    name: str



@record
class Redirect:
    """`redirect to :PORT`: to the firewall itself (the incoming interface's
    primary address), on another port."""

    kind: ClassVar[str] = "redirect"
    port: int


@record
class Masquerade:
    """`masquerade`: source-translate to the outgoing interface's address."""

    kind: ClassVar[str] = "masquerade"


@record
class DispatchEntry:
    """One element of a Dispatch: a publication pair's key and its chain."""

    address: int
    protocol: str               # "tcp" or "udp"
    port: int
    target: str                 # a regular chain (hook None) of the same table


@record
class Dispatch:
    """`ip daddr . meta l4proto . th dport vmap { 198.51.100.10 . tcp . 25 :
    jump prerouting_1, ... }`: one lookup sends a packet to the regular chain
    of its publication pair; none found, the rule does nothing. `original`
    keys on `ct original ip daddr`, the address before DNAT."""

    kind: ClassVar[str] = "dispatch"
    family: str
    original: bool
    entries: tuple[DispatchEntry, ...]


Statement = Union[Nat, Verdict, Jump, Redirect, Masquerade, RateMeter, CountMeter, RateLimit,
                  Log, CounterRef, Dispatch]


# -- the ruleset --------------------------------------------------------------------

@record
class Rule:
    origin: Origin
    matches: tuple[Match, ...]
    statements: tuple[Statement, ...]


@record
class Elements:
    """How the text writes elements that include other address sets: the
    defines of the sets included (`$name`), then the addresses of its own that
    none of them holds. Each address is then written once in the file, however
    deep the policy nests its sets: nft cannot put a set inside a set, so the
    kernel gets them flattened either way."""

    includes: tuple[str, ...]           # Define names
    own: tuple[Interval, ...]


@record
class Define:
    """An address set two writers hold (`_Planner._defined`), written once as
    `define NAME = { ... }` and included elsewhere as `$NAME`."""

    name: str
    family: str
    elements: Elements


@record
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


@record
class Hook:
    """What makes a chain a base chain; regular chains (jump targets) have none."""

    type: str                   # "filter" or "nat"
    hook: str                   # prerouting, input, forward, output, postrouting
    priority: str               # dstnat, filter, srcnat
    policy: str                 # accept or drop: what nft takes as a chain policy


@record
class Chain:
    name: str
    hook: Optional[Hook]
    rules: tuple[Rule, ...]


@record
class Ruleset:
    table: str
    sets: tuple[NftSet, ...]
    chains: tuple[Chain, ...]
    zone: Optional[ZoneNote] = None     # the schedules' zone and offset, when a rule has one
    counters: tuple[str, ...] = ()      # named counters, one per policy rule with an accept
    defines: tuple[Define, ...] = ()    # each after the defines it includes


ACCEPT = Verdict("accept")
DROP = Verdict("drop")
# dynamic_block's sets: operators add addresses or networks, each for a while
DYNAMIC_FLAGS = ("interval", "timeout")
DEFAULT_BURST = 5                   # nft's own default for `limit rate`
METER_SIZE = 65535                  # sources a meter tracks at once
METER_TIMEOUT_MAX = 7 * 24 * 3600     # seconds: a source idle for a week starts afresh
UNIT_SECONDS = {"second": 1, "minute": 60, "hour": 3600}
COUNTED = ("publish", "outbound", "management")     # origins with a named counter
# Up to this many publication pairs a chain lists one rule per pair, easiest
# to read; beyond it, one map lookup keeps a new connection's walk constant.
DISPATCH_THRESHOLD = 16
# The chains that dispatch, and whether their key is the address before DNAT
# (forward's accepts match the translated address and the original one).
DISPATCHED = {"prerouting": False, "forward": True, "input": False}


def plan(policy: Policy, at: Optional[datetime] = None) -> Ruleset:
    """The ruleset; schedules take their zone's UTC offset at `at` (default now)."""
    return _Planner(policy, at or datetime.now(timezone.utc)).ruleset()


def fallback(policy: Policy) -> Ruleset:
    """What the boot loads when the saved ruleset is missing or damaged
    (`mailpubc boot-load`): management SSH and the fixed rules (replies,
    loopback, neighbour discovery), nothing else (`_Planner.fallback`)."""
    return _Planner(policy, datetime.now(timezone.utc)).fallback()


def lockdown(table: str) -> Ruleset:
    """What the boot loads when neither the saved ruleset nor the fallback
    can be trusted: no policy to go by, so the fixed rules only, every hook
    dropping the rest (management SSH too)."""
    return Ruleset(table, (), tuple(_Planner._filter_chain(name, "drop", [])
                                    for name in ("input", "forward", "output")))


def _closed(verdict: str) -> str:
    """A chain verdict that lets nothing in by itself: accept becomes drop."""
    return "drop" if verdict == "accept" else verdict


def _fixed(name: str, *matches: Match, verdict: Verdict = ACCEPT) -> Rule:
    return Rule(Origin("fixed", name), matches, (verdict,))


def _network(text: str) -> Interval:
    version, first, prefix = parse_network(text)
    return first, first | host_mask(version, prefix)


# The rules every ruleset has (docs/ruleset.md says why each is there).
NEIGHBOUR_RULE = _fixed("neighbour discovery", IcmpTypeMatch("icmpv6", NEIGHBOUR_DISCOVERY),
                        HopLimitMatch(255))
LINK_LOCAL = _network("fe80::/10")
# MLD keeps the firewall's multicast memberships (its solicited-node groups)
# alive on a snooping switch: link-local, hop limit 1; reports may also come
# from :: while an address is still tentative.
MLD_RULES = (_fixed("mld", IcmpTypeMatch("icmpv6", MLD),
                    AddressMatch("ip6", "saddr", (LINK_LOCAL,)), HopLimitMatch(1)),
             _fixed("mld", IcmpTypeMatch("icmpv6", MLD_REPORTS),
                    AddressMatch("ip6", "saddr", ((0, 0),)), HopLimitMatch(1)))
# Sources no host owns, which anti-spoofing never drops: the unspecified
# address of each family (DHCP, duplicate address detection) and link-local.
NO_ONES = {"ip": [(0, 0)], "ip6": [(0, 0), LINK_LOCAL]}
CONNTRACK_RULES = (_fixed("replies", ConntrackMatch(("established", "related"))),
                   _fixed("invalid", ConntrackMatch(("invalid",)), verdict=DROP))
ICMP_ERROR_RULES = (_fixed("icmp errors", IcmpTypeMatch("icmp", ICMP_ERRORS)),
                    _fixed("icmpv6 errors", IcmpTypeMatch("icmpv6", ICMPV6_ERRORS)))


def _reject_tail(chain: str) -> tuple[Rule, ...]:
    """What `reject` adds before the chain's drop policy: a TCP reset for TCP,
    ICMP administratively prohibited for the rest."""
    origin = Origin("policy", chain)
    return (Rule(origin, (ProtocolMatch("tcp"),), (Verdict("reject", "tcp reset"),)),
            Rule(origin, (), (Verdict("reject", "icmpx", "admin-prohibited"),)))


class _Planner:
    def __init__(self, policy: Policy, at: datetime):
        self.policy = policy
        self.firewall = policy.firewall
        self.used_sets: dict[str, NftSet] = {}
        self.address_sets = {address_set.name: address_set for address_set in policy.address_sets}
        self.set_origins: dict[str, str] = {}       # used nft set -> the address set it is
        self.held: dict[str, frozenset[str]] = {}   # address set -> it and the sets it names
        self.at = at
        self.zone = None
        if any(rule.schedule for rule in policy.outbound):
            self.zone = schedule_zone(policy.firewall.timezone)

    def ruleset(self) -> Ruleset:
        fw = self.firewall
        prerouting, forward_publish, input_publish = self._publishing()
        hairpin_dnat, hairpin_snat = self._hairpin()
        forward_out, output_out = self._outbound()
        forward_publish, input_publish, forward_out, output_out = (
            self._guarded(rules) for rules in (forward_publish, input_publish, forward_out, output_out))
        chains = (
            *self._antispoofing(),
            Chain("prerouting", Hook("nat", "prerouting", "dstnat", "accept"),
                  tuple(prerouting + hairpin_dnat)),
            self._filter_chain("input", fw.input_policy,
                               input_publish + self._management() + self._management_ping()),
            self._filter_chain("forward", fw.forward_policy, forward_publish + forward_out),
            self._filter_chain("output", fw.output_policy, output_out),
            Chain("postrouting", Hook("nat", "postrouting", "srcnat", "accept"),
                  tuple(self._snat() + hairpin_snat)),
        )
        return self._finished(chains, zone_note(*self.zone, self.at) if self.zone else None)

    def fallback(self) -> Ruleset:
        """The policy's table with nothing let in but management SSH: every
        publication, hairpin, outbound rule, translation and management ping
        left out. Input and forward drop even where the policy accepts (it
        rejects where the policy rejects); output keeps the policy's verdict,
        without its accepts. Blocks, anti-spoofing and drop logging stay."""
        fw = self.firewall
        chains = (*self._antispoofing(),
                  self._filter_chain("input", _closed(fw.input_policy), self._management()),
                  self._filter_chain("forward", _closed(fw.forward_policy), []),
                  self._filter_chain("output", fw.output_policy, []))
        return self._finished(chains, None)

    def _finished(self, chains: tuple[Chain, ...], note: Optional[ZoneNote]) -> Ruleset:
        """The chains with blocks, drop logging, counters and dispatch added,
        and the sets and counters they use."""
        chains = tuple(self._blocked(chain) for chain in chains)
        chains = tuple(self._drop_logged(chain) for chain in chains)
        chains = tuple(self._counted(chain) for chain in chains)
        chains = tuple(part for chain in chains for part in _dispatched(chain))
        sets, defines = self._written_sets()
        counters = tuple(sorted({s.name for chain in chains for rule in chain.rules
                                 for s in rule.statements if isinstance(s, CounterRef)}))
        return Ruleset(self.firewall.table, sets, chains, note, counters, defines)

    @staticmethod
    def _filter_chain(name: str, verdict: str, rules: list[Rule]) -> Chain:
        """Input and output (the firewall's own traffic) also take neighbour
        discovery, loopback and ICMP errors; forward only conntrack."""
        host = name != "forward"
        fixed = []
        if host:
            fixed.append(NEIGHBOUR_RULE)
            fixed.extend(MLD_RULES)
        fixed.extend(CONNTRACK_RULES)
        if host:
            direction = "iif" if name == "input" else "oif"
            fixed.append(_fixed("loopback", InterfaceMatch(direction, "lo", by_index=True)))
            fixed.extend(ICMP_ERROR_RULES)
        tail = _reject_tail(name) if verdict == "reject" else ()
        hook = Hook("filter", name, "filter", "accept" if verdict == "accept" else "drop")
        return Chain(name, hook, tuple(fixed) + tuple(rules) + tail)

    # -- forged sources ---------------------------------------------------------

    def _antispoofing(self) -> tuple[Chain, ...]:
        """With firewall.anti_spoofing, a packet that arrives on the external
        interface with a source in the internal networks is dropped at the
        raw priority: before connection tracking (it neither opens nor
        matches a connection) and before any translation (no publication or
        hairpin rewrites it into a source the servers trust). Link-local and
        unspecified sources are no one's: neighbour discovery, MLD and DHCP
        use them on every link."""
        fw = self.firewall
        if not fw.anti_spoofing or fw.internal_interface is None:
            return ()
        origin = Origin("antispoofing", "firewall.anti_spoofing",
                        position=fw.anti_spoofing_position)
        rules = tuple(
            Rule(origin, (InterfaceMatch("iif", fw.external_interface),
                          AddressMatch(family, "saddr", forged)), (DROP,))
            for family in FAMILIES
            if (forged := subtract(fw.internal_networks.family(family), NO_ONES[family])))
        if not rules:
            return ()
        return (Chain("antispoofing", Hook("filter", "prerouting", "raw", "accept"), rules),)

    # -- blocked sources ------------------------------------------------------

    def _blocked(self, chain: Chain) -> Chain:
        """Input and forward drop (reject, under a reject policy) blocked
        sources right after replies, invalid packets and loopback: before
        every accept of the policy and before ICMP errors."""
        if chain.name not in ("input", "forward"):
            return chain
        policy = getattr(self.firewall, f"{chain.name}_policy")
        verdict = Verdict("reject", "icmpx", "admin-prohibited") if policy == "reject" else DROP
        rules = [Rule(origin, (match,), (verdict,)) for origin, match in self._block_matches()]
        if not rules:
            return chain
        at = max(i for i, rule in enumerate(chain.rules) if rule.origin.kind == "fixed"
                 and rule.origin.name in ("replies", "invalid", "loopback")) + 1
        return replace(chain, rules=chain.rules[:at] + tuple(rules) + chain.rules[at:])

    def _block_matches(self) -> list[tuple[Origin, AddressMatch]]:
        """One set lookup per family for firewall.block (the named set itself
        when it is one set, else `_block_v4`/`_v6`, a name no address set can
        take), and one per family for the run-time sets of dynamic_block."""
        fw, found = self.firewall, []
        if fw.block is not None:
            origin = Origin("block", "firewall.block", position=fw.block.position)
            for family in FAMILIES:
                intervals = fw.block.addresses.family(family)
                if intervals:
                    if fw.block.set_name is None:
                        name = "_block" + SET_SUFFIX[family]
                        self.used_sets[name] = NftSet(name, family, intervals)
                    else:
                        name = self._named_set(fw.block.set_name, family, intervals)
                    found.append((origin, AddressMatch(family, "saddr", set_name=name)))
        if fw.dynamic_block is not None:
            origin = Origin("block", "firewall.dynamic_block", position=fw.dynamic_block_position)
            for family in FAMILIES:
                name = fw.dynamic_block + SET_SUFFIX[family]
                self.used_sets[name] = NftSet(name, family, (), DYNAMIC_FLAGS)
                found.append((origin, AddressMatch(family, "saddr", set_name=name)))
        return found

    # -- address matches ------------------------------------------------------

    def _match(self, ref: AddressRef, family: str, field_: str) -> Optional[AddressMatch]:
        """How a rule matches `ref` in `family`; None when it has no such addresses."""
        intervals = ref.addresses.family(family)
        if not intervals:
            return None
        if ref.set_name is not None:
            name = self._named_set(ref.set_name, family, intervals)
            return AddressMatch(family, field_, set_name=name)
        return AddressMatch(family, field_, intervals)

    # -- address sets and their defines -----------------------------------------

    def _named_set(self, set_name: str, family: str, intervals: tuple[Interval, ...]) -> str:
        """The nft set of address set `set_name` in `family`, which a rule uses."""
        name = set_name + SET_SUFFIX[family]
        self.used_sets[name] = NftSet(name, family, intervals)
        self.set_origins[name] = set_name
        return name

    def _written_sets(self) -> tuple[tuple[NftSet, ...], tuple[Define, ...]]:
        """The used sets, written through the defines of `_defined`; the defines
        in order, each after those it includes."""
        order = self._named_first()
        defined = self._defined(order)
        defines = tuple(Define(set_name + SET_SUFFIX[family], family,
                               self._elements(set_name, family, defined)
                               or Elements((), self._flat(set_name, family)))
                        for family in FAMILIES for set_name in order
                        if (set_name, family) in defined)
        sets = []
        for name in sorted(self.used_sets):
            nft_set, set_name = self.used_sets[name], self.set_origins.get(name)
            if set_name is not None:
                written = (Elements((name,), ()) if (set_name, nft_set.family) in defined
                           else self._elements(set_name, nft_set.family, defined))
                nft_set = replace(nft_set, written=written)
            sets.append(nft_set)
        return tuple(sets), defines

    def _defined(self, named_first: list[str]) -> set[tuple[str, str]]:
        """The address sets, per family, that the text would otherwise write
        more than once, so each gets a define. A set is written by the used
        set it is, and by each writer above it: a set that names it and has a
        define, or, through a set without one, whoever writes that set. Two
        writers or more: a define. Decided from the top down, as a set's
        define keeps the sets below it from its writers."""
        parents: dict[str, list[str]] = {}
        for address_set in self.address_sets.values():
            for named in address_set.includes:
                parents.setdefault(named, []).append(address_set.name)
        used = {(set_name, self.used_sets[name].family)
                for name, set_name in self.set_origins.items()}
        defined: set[tuple[str, str]] = set()
        for family in FAMILIES:
            writers: dict[str, set[str]] = {}
            for set_name in reversed(named_first):
                found = {set_name} if (set_name, family) in used else set()
                for parent in parents.get(set_name, ()):
                    found |= {parent} if (parent, family) in defined else writers[parent]
                writers[set_name] = found
                if len(found) > 1 and self._flat(set_name, family):
                    defined.add((set_name, family))
        return defined

    def _elements(self, set_name: str, family: str, defined: set) -> Optional[Elements]:
        """A set written as the defines nearest below it, and its addresses
        none of them holds; None when no set below it has a define."""
        nearest, seen, waiting = [], {set_name}, [set_name]
        while waiting:
            for named in self.address_sets[waiting.pop()].includes:
                if named in seen or not self._flat(named, family):
                    continue
                seen.add(named)
                (nearest if (named, family) in defined else waiting).append(named)
        nearest = sorted(name for name in nearest       # not those a nearer define holds
                         if not any(name != other and name in self._held(other)
                                    for other in nearest))
        if not nearest:
            return None
        held = [self._flat(name, family) for name in nearest]
        own = difference(self._flat(set_name, family),
                         held[0] if len(held) == 1 else merge(i for part in held for i in part))
        return Elements(tuple(name + SET_SUFFIX[family] for name in nearest), own)

    def _held(self, set_name: str) -> frozenset[str]:
        """The address set and every set it names, however deep."""
        if set_name not in self.held:
            seen, waiting = {set_name}, [set_name]
            while waiting:
                for named in self.address_sets[waiting.pop()].includes:
                    if named not in seen:
                        seen.add(named)
                        waiting.append(named)
            self.held[set_name] = frozenset(seen)
        return self.held[set_name]

    def _named_first(self) -> list[str]:
        """Every address set after the sets it names (a define must come after
        those it includes); by name otherwise, so that the output is stable."""
        order, placed = [], set()
        for start in sorted(self.address_sets):
            if start in placed:
                continue
            placed.add(start)
            path = [(start, iter(self.address_sets[start].includes))]
            while path:
                name, names = path[-1]
                named = next(names, None)
                if named is None:
                    path.pop()
                    order.append(name)
                elif named not in placed:
                    placed.add(named)
                    path.append((named, iter(self.address_sets[named].includes)))
        return order

    def _flat(self, set_name: str, family: str) -> tuple[Interval, ...]:
        return self.address_sets[set_name].addresses.family(family)

    @staticmethod
    def _single(address: Address, field_: str, original: bool = False) -> AddressMatch:
        value = int(address)
        return AddressMatch(family_of(address), field_, ((value, value),), original=original)

    # -- rules ------------------------------------------------------------------

    def _publishing(self) -> tuple[list[Rule], list[Rule], list[Rule]]:
        """DNAT + paired forward accept for internal servers; input accept for
        localhost, after a redirect when the server listens on another port; a
        forward filter alone for a routed server. Every rule matches
        allow_from's sources, so others are not translated."""
        fw = self.firewall
        prerouting, forward, input_ = [], [], []
        for rule in self.policy.publish:
            at = rule.server if rule.external_address is None else rule.external_address
            sources = self._allowed(rule.allow_from, family_of(at))
            for service, port in _ports(rule.services):
                origin = Origin("publish", rule.name, service.name, rule.position)
                if rule.external_address is None:
                    forward.append(self._routed_publication(rule.server, port, origin, sources))
                    continue
                external = self._single(rule.external_address, "daddr")
                dport, = _dports(port, (family_of(rule.external_address),))
                served = _served(service, dport)
                original = (self._single(rule.external_address, "daddr", original=True),
                            *_original_port(port))
                if rule.server is None and service.server_port is None:
                    input_.append(Rule(origin, (*sources, external, dport), (ACCEPT,)))
                    continue
                if rule.server is None:
                    prerouting.append(Rule(origin, (*sources, external, dport),
                                           (Redirect(service.server_port),)))
                    input_.append(Rule(origin, (*sources, served, *original), (ACCEPT,)))
                    continue
                family = family_of(rule.server)
                prerouting.append(Rule(
                    origin,
                    (InterfaceMatch("iif", fw.external_interface), *sources, external, dport),
                    (Nat("dnat", family, rule.server, service.server_port),)))
                forward.append(Rule(
                    origin,
                    (InterfaceMatch("oif", fw.internal_interface), *sources,
                     self._single(rule.server, "daddr"), served, *original),
                    (ACCEPT,)))
        return prerouting, forward, input_

    def _routed_publication(self, server: Address, port: PortRange, origin: Origin,
                            sources: tuple[AddressMatch, ...]) -> Rule:
        """A server in a routed network is reached at its own address: a
        forward filter from outside to it, without translation."""
        fw = self.firewall
        dport, = _dports(port, (family_of(server),))
        return Rule(origin, (InterfaceMatch("iif", fw.external_interface),
                             InterfaceMatch("oif", fw.internal_interface), *sources,
                             self._single(server, "daddr"), dport), (ACCEPT,))

    def _allowed(self, sources: AddressRef, family: str) -> tuple[AddressMatch, ...]:
        """allow_from as a source match in `family`; none for any (semantics
        has refused an allow_from with no address of the publication's family)."""
        if sources.any:
            return ()
        return (self._match(sources, family, "saddr"),)

    def _hairpin(self) -> tuple[list[Rule], list[Rule]]:
        """For hairpin publications, the DNAT of internal clients (from the
        internal interface, in the internal networks and allow_from) and, for
        those connections only, the source translation that brings the
        server's replies back through the firewall. Both match the incoming
        interface: a packet from outside with a forged internal source must
        never be translated into one from the firewall itself."""
        fw = self.firewall
        prerouting, postrouting, seen = [], [], set()
        for rule in self.policy.publish:
            if not rule.hairpin:
                continue
            family = family_of(rule.external_address)
            clients = fw.internal_networks
            if not rule.allow_from.any:
                clients = clients.intersection(rule.allow_from.addresses)
            internal = fw.internal_address(family)
            for service, port in _ports(rule.services):
                origin = Origin("hairpin", rule.name, service.name, rule.position)
                dport, = _dports(port, (family,))
                prerouting.append(Rule(
                    origin, (InterfaceMatch("iif", fw.internal_interface),
                             AddressMatch(family, "saddr", clients.family(family)),
                             self._single(rule.external_address, "daddr"), dport),
                    (Nat("dnat", family, rule.server, service.server_port),)))
                served = _served(service, dport)
                if (rule.server, served) in seen:
                    continue
                seen.add((rule.server, served))
                postrouting.append(Rule(
                    origin, (InterfaceMatch("iif", fw.internal_interface),
                             InterfaceMatch("oif", fw.internal_interface),
                             ConntrackStatusMatch("dnat"),
                             AddressMatch(family, "saddr", fw.internal_networks.family(family)),
                             self._single(rule.server, "daddr"), served),
                    (Masquerade() if internal is None else Nat("snat", family, internal),)))
        return prerouting, postrouting

    def _outbound(self) -> tuple[list[Rule], list[Rule]]:
        fw = self.firewall
        forward, output = [], []
        for rule in self.policy.outbound:
            times = self._time_matches(rule.schedule)
            # per family, the addresses of internal sources and of destinations
            # (None: any); a family that lacks either side gets no rule
            routed = []
            for family in FAMILIES:
                saddr = self._match(rule.sources, family, "saddr")
                if saddr is None:
                    continue
                daddr = (None if rule.destinations.any
                         else self._match(rule.destinations, family, "daddr"))
                if rule.destinations.any or daddr is not None:
                    routed.append((saddr, daddr))
            local = []
            if rule.sources.localhost:
                local = [None] if rule.destinations.any else [
                    daddr for family in FAMILIES
                    if (daddr := self._match(rule.destinations, family, "daddr")) is not None]
            for service, port in _ports(rule.services):
                origin = Origin("outbound", rule.name, service.name, rule.position)
                for saddr, daddr in routed:
                    addresses = (saddr,) if daddr is None else (saddr, daddr)
                    dport, = _dports(port, (saddr.family,))
                    for time in times:
                        forward.append(Rule(
                            origin, (InterfaceMatch("iif", fw.internal_interface),
                                     InterfaceMatch("oif", fw.external_interface),
                                     *addresses, dport, *time), (ACCEPT,)))
                for daddr in local:     # on any interface: `to` may be inside too
                    addresses = () if daddr is None else (daddr,)
                    for dport in _dports(port, FAMILIES if daddr is None else (daddr.family,)):
                        for time in times:
                            output.append(Rule(origin, (*addresses, dport, *time), (ACCEPT,)))
        return forward, output

    def _time_matches(self, schedule: Optional[Schedule]) -> list[tuple[Match, ...]]:
        """The time matches of one rule per UTC window of the schedule
        (schedule.py); one rule without time matches when there is none."""
        if schedule is None:
            return [()]
        return [tuple(([DayMatch(window.days)] if window.days else [])
                      + ([HourMatch(*window.hours)] if window.hours else []))
                for window in utc_windows(schedule, self.zone[0], self.at)]

    def _management(self) -> list[Rule]:
        sources = self.firewall.ssh_sources
        if sources is None:
            return []
        origin = Origin("management", "ssh", position=sources.position)
        port = self.firewall.ssh_port
        return [Rule(origin, (saddr, PortMatch(SSH.protocol, port, port)), (ACCEPT,))
                for family in FAMILIES
                if (saddr := self._match(sources, family, "saddr")) is not None]

    def _management_ping(self) -> list[Rule]:
        """Echo requests to the firewall itself, per family its sources have."""
        sources = self.firewall.ping_sources
        if sources is None:
            return []
        origin = Origin("management", "ping", position=sources.position)
        rules = []
        for family in FAMILIES:
            saddr = None if sources.any else self._match(sources, family, "saddr")
            if sources.any or saddr is not None:
                echo, = _dports(ECHO, (family,))
                rules.append(Rule(origin, (*([saddr] if saddr else []), echo), (ACCEPT,)))
        return rules

    # -- limits and logging --------------------------------------------------

    def _guarded(self, rules: list[Rule]) -> list[Rule]:
        """Each accept of a limited publication preceded by the rules that turn
        away a source over its limits; accepts of logged rules log first."""
        rules_by_name = {("publish", r.name): r for r in self.policy.publish}
        rules_by_name.update({("outbound", r.name): r for r in self.policy.outbound})
        guarded = []
        for rule in rules:
            source = rules_by_name.get((rule.origin.kind, rule.origin.name))
            limit = getattr(source, "limit", None)
            if limit is not None:
                guarded.extend(self._limit_rules(source, rule, limit))
            if source is not None and source.log:
                rule = Rule(rule.origin, rule.matches,
                            (Log((source.name,), self.firewall.log.group),) + rule.statements)
            guarded.append(rule)
        return guarded

    def _limit_rules(self, publication, accept: Rule, limit) -> list[Rule]:
        """New connections beyond the source's concurrent connections, or over
        its rate, meet the chain policy's verdict (drop, or reject) before the
        accept: one meter a service, family and kind, keyed on the source.

        The count comes first so that a connection it turns away spends none
        of the rate: the kernel's count may still hold a connection that has
        just closed, and the client's retried SYN should then get through."""
        fw = self.firewall
        family = next(m.family for m in accept.matches if isinstance(m, AddressMatch))
        prefix = limit.ipv4_prefix if family == "ip" else limit.ipv6_prefix
        protocol = next((m.protocol for m in accept.matches if isinstance(m, PortMatch)), None)
        chain_policy = fw.input_policy if publication.server is None else fw.forward_policy
        verdict = DROP if chain_policy != "reject" else (
            Verdict("reject", "tcp reset") if protocol == "tcp"
            else Verdict("reject", "icmpx", "admin-prohibited"))
        index = 1 + next(i for i, s in enumerate(publication.services)
                         if s.name == accept.origin.service)
        stem = f"{publication.name}_{index}_"
        version = "4" if family == "ip" else "6"
        matches = accept.matches + (ConntrackMatch(("new",)),)
        rules = []
        if limit.concurrent is not None:
            name = stem + "conn" + version
            self.used_sets[name] = NftSet(name, family, (), ("dynamic",), METER_SIZE)
            rules.append(Rule(accept.origin, matches, (
                CountMeter(name, family, limit.concurrent, prefix), verdict)))
            rules.append(self._meter_full(accept.origin, matches, name, family, prefix, verdict))
        if limit.new is not None:
            burst = limit.burst or DEFAULT_BURST
            refill = -(-burst // limit.new.count)       # units until a full burst is back
            name = stem + "new" + version
            timeout = min(UNIT_SECONDS[limit.new.unit] * max(1, refill), METER_TIMEOUT_MAX)
            self.used_sets[name] = NftSet(name, family, (), ("dynamic", "timeout"), METER_SIZE,
                                          timeout)
            rules.append(Rule(accept.origin, matches, (
                RateMeter(name, family, limit.new.count, limit.new.unit, burst, prefix), verdict)))
            rules.append(self._meter_full(accept.origin, matches, name, family, prefix, verdict))
        return rules

    @staticmethod
    def _meter_full(origin: Origin, matches: tuple, name: str, family: str, prefix: int,
                    verdict: Verdict) -> Rule:
        """The rule after a meter's: a source the meter had no room for meets
        the same verdict. A full meter (sources come and go by its timeout,
        or as their connections close) then turns new sources away rather
        than letting every new source through unlimited."""
        return Rule(origin, matches + (UnmeteredMatch(name, family, prefix),), (verdict,))

    def _drop_logged(self, chain: Chain) -> Chain:
        """With firewall.log.dropped, a filter chain whose policy drops (or
        rejects) logs, at a limited rate, what reaches its end: the last rule
        before the reject tail."""
        log = self.firewall.log
        if not log.dropped or chain.hook is None or chain.hook.type != "filter" \
                or chain.hook.policy != "drop":
            return chain
        tail = 2 if getattr(self.firewall, f"{chain.name}_policy") == "reject" else 0
        rule = Rule(Origin("log", chain.name), (), (
            RateLimit(log.rate.count, log.rate.unit, DEFAULT_BURST),
            Log(("drop", chain.name), log.group)))
        at = len(chain.rules) - tail
        return Chain(chain.name, chain.hook, chain.rules[:at] + (rule,) + chain.rules[at:])

    @staticmethod
    def _counted(chain: Chain) -> Chain:
        """Each accept of a policy rule counts in the rule's named counter,
        `KIND_NAME` (kinds and names are identifiers, and names are unique
        within a kind), for `mailpubc stats`."""
        if chain.hook is None or chain.hook.type != "filter":
            return chain
        return Chain(chain.name, chain.hook, tuple(
            Rule(rule.origin, rule.matches,
                 (CounterRef(f"{rule.origin.kind}_{rule.origin.name}"),) + rule.statements)
            if rule.origin.kind in COUNTED and ACCEPT in rule.statements else rule
            for rule in chain.rules))

    def _snat(self) -> list[Rule]:
        """Published servers leave as their published address; the rest of the
        internal networks as the first external address of their family."""
        fw = self.firewall
        rules, seen = [], set()
        for rule in self.policy.publish:
            if rule.server is None or rule.external_address is None or rule.server in seen:
                continue
            seen.add(rule.server)
            rules.append(Rule(
                Origin("snat", rule.name, position=rule.position),
                (InterfaceMatch("oif", fw.external_interface), self._single(rule.server, "saddr")),
                (Nat("snat", family_of(rule.server), rule.external_address),)))
        if fw.internal_interface is None:
            return rules
        for family in FAMILIES:
            external = fw.first_external(family)
            networks = subtract(fw.internal_networks.family(family),
                                fw.routed_networks.family(family))
            if external is None or not networks:
                continue
            rules.append(Rule(
                Origin("snat", "internal"),
                (InterfaceMatch("oif", fw.external_interface),
                 AddressMatch(family, "saddr", networks)),
                (Nat("snat", family, external),)))
        return rules


def _dispatched(chain: Chain) -> tuple[Chain, ...]:
    """A chain with more than DISPATCH_THRESHOLD publication pairs: the rules
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
    if len(targets) <= DISPATCH_THRESHOLD or (chain.name == "input"
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
    pairs = tuple(Chain(target, None, tuple(rule for rule, key_ in zip(chain.rules, keys)
                                            if key_ == key))
                  for key, target in targets.items())
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
    address = next((m for m in rule.matches if isinstance(m, AddressMatch)
                    and m.field == "daddr" and m.original == original), None)
    port = next((m for m in rule.matches if isinstance(m, PortMatch) and not m.original), None)
    if address is None or port is None or address.set_name or port.low != port.high \
            or len(address.intervals) != 1 or len(set(address.intervals[0])) != 1:
        return None
    return address.family, address.intervals[0][0], port.protocol, port.low


def _served(service: Service, dport: Match) -> Match:
    """What the server receives for a published port matched by `dport`: the
    same, or its server_port (resolve allows one only on a single tcp/udp port)."""
    if service.server_port is None:
        return dport
    return PortMatch(dport.protocol, service.server_port, service.server_port)


def _ports(services: tuple[Service, ...]):
    """(service, port) pairs in policy order, each port of a rule once, so a
    published port is translated and accepted by one rule: a port belongs to
    the first service that names it, and a later service keeps only the parts
    of its ranges no earlier one covers (smtp tcp/25, then tcp/20-30, gives
    25, then 20-24 and 26-30)."""
    covered: dict[str, list[tuple[int, int]]] = {"tcp": [], "udp": [], ECHO_PROTOCOL: []}
    for service in services:
        for port in service.ports:
            taken = covered[port.protocol]
            for low, high in subtract([(port.low, port.high)], taken):
                yield service, PortRange(port.protocol, low, high)
            taken.append((port.low, port.high))


def _dports(port: PortRange, families) -> list[Match]:
    """What a rule matches for one port of a service: the port, or for ping
    the echo request of each of `families`."""
    if port.protocol == ECHO_PROTOCOL:
        return [IcmpTypeMatch(ICMP_PROTOCOLS[family], (ECHO_REQUEST,)) for family in families]
    return [PortMatch(port.protocol, port.low, port.high)]


def _original_port(port: PortRange) -> tuple[Match, ...]:
    """The port before DNAT, which a forward accept pairs with its address
    (an echo request keeps its type: nothing to pair)."""
    if port.protocol == ECHO_PROTOCOL:
        return ()
    return (PortMatch(port.protocol, port.low, port.high, original=True),)
