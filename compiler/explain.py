"""`mailpubc explain`: which rule decides a new connection, read from the plan.

Not a second reading of the policy: the policy is planned (`plan.plan`) and
one packet is walked through the plan's chains as the kernel walks it, so
explain and the ruleset cannot disagree about what a rule means. Where the
packet comes from decides its path:

- from the firewall itself (`localhost`, one of its addresses, or a
  loopback address): output, postrouting, and input when it is addressed to
  the firewall or to loopback (over `lo`). From `localhost`, the kernel's
  routing picks the source, which the policy cannot tell (`source` None),
  except towards loopback (127.0.0.1, ::1);
- from the internal side (an address in `internal.networks`, iif internal)
  or from outside (iif external): prerouting (DNAT), routing, then input
  when the (translated) destination is the firewall's, else forward (oif
  internal when the destination is in `internal.networks`, else external)
  and postrouting (SNAT).

Each match kind is one predicate in MATCHES and each statement kind one
handler in STATEMENTS; a kind with neither is an ExplainError, never a guess.
The packet opens a connection (ct state new); limits are not hit, meters
not full, dynamic sets are empty, and the time is the one asked for.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterable, Optional, Union

from .addresses import Address, int_text, parse_address, parse_port
from .api import Result
from .model import Policy, family_of
from .plan import Chain, Jump, Origin, Rule, Ruleset, plan
from .records import record
from .schedule import schedule_zone
from .vocab import FAMILY_NAMES, PRIORITIES, VERSIONS, WEEK, nft_day

LOCALHOST = "localhost"
PROTOCOLS = ("tcp", "udp", "icmp")
ICMP = {"ip": "icmp", "ip6": "icmpv6"}      # ping's protocol (meta l4proto) per family
ECHO_REQUEST = "echo-request"               # the type of a ping in both ICMP and ICMPv6
HOP_LIMIT = 64                              # a host's new connection; neighbour discovery uses 255
STOP = "stop"                               # a statement that ends its rule (a limit not hit)
LOOPBACK = {"ip": (0x7F000000, 0x7FFFFFFF), "ip6": (1, 1)}     # 127.0.0.0/8, ::1
LOOPBACK_SOURCE = {"ip": 0x7F000001, "ip6": 1}                # 127.0.0.1, ::1
ROUTED_SOURCE = "chosen by the firewall's routing"           # the text of source None
# the times a plan can take: the zone note looks a year ahead (schedule.zone_note)
EARLIEST = datetime.min.replace(tzinfo=timezone.utc) + timedelta(days=1)
LATEST = datetime.max.replace(tzinfo=timezone.utc) - timedelta(days=367)


class QueryError(ValueError):
    """The question is malformed: a bad address, port or protocol (usage, exit 2)."""


class ExplainError(RuntimeError):
    """The plan holds a match or statement kind this evaluator cannot judge."""


@record
class Packet:
    """The first packet of the connection, as the chain walked so far sees it."""

    family: str
    saddr: Optional[int]        # None: the firewall's routing picks it; the policy cannot tell
    daddr: int
    protocol: str               # meta l4proto: tcp, udp, icmp, icmpv6
    dport: Optional[int]        # None for ICMP
    icmp_type: Optional[str]
    iif: Optional[str]
    oif: Optional[str]
    time: datetime              # UTC
    original_saddr: Optional[int]            # before NAT: `ct original ...`
    original_daddr: int
    original_dport: Optional[int]


@record
class Step:
    """What one chain did: the rule that ended it (None: the chain's policy)."""

    chain: str
    origin: Optional[Origin]
    action: str                 # accept, drop, reject, "dnat to ADDR:PORT", "snat to ADDR"


@record
class Explanation:
    source: str                 # as asked
    destination: str            # as asked, ADDR:PORT ([ADDR]:PORT for IPv6) or ADDR for ping
    protocol: str               # tcp, udp or icmp
    side: str                   # firewall, internal or outside
    interface: Optional[str]    # the incoming interface (None from the firewall itself)
    verdict: str                # accept, drop or reject
    chain: str                  # the chain that decided: the last filter chain, or the one that dropped
    origin: Optional[Origin]    # the deciding rule; None: the chain's policy
    steps: tuple[Step, ...]
    translated_destination: str
    translated_source: Optional[str]    # None: the firewall's routing picks it
    at: Optional[str] = None    # the time asked about, when schedules make it matter
    walked: tuple[tuple[str, int], ...] = ()    # (chain, rules the packet was tried against)

    @property
    def chains(self) -> tuple[str, ...]:
        return tuple(step.chain for step in self.steps)

    def to_json(self) -> dict:
        """The contract's fields, and `kind`: the deciding rule's origin kind."""
        origin = self.origin
        return {
            "verdict": self.verdict,
            "rule": rule_name(origin),
            "service": origin.service if origin else None,
            "position": str(origin.position) if origin and origin.position else None,
            "chains": list(self.chains),
            "destination": self.translated_destination,
            "source": self.translated_source,
            "kind": "policy" if rule_name(origin) is None else origin.kind,
        }

    def text(self) -> str:
        where = {"firewall": "from the firewall itself",
                 "internal": f"from the internal side (iif {self.interface})",
                 "outside": f"from outside (iif {self.interface})"}[self.side]
        when = f", at {self.at}" if self.at else ""
        what = "ping (icmp echo-request)" if self.protocol == "icmp" else \
            f"{self.protocol} connection"
        lines = [f"new {what} {self.source} -> {self.destination}, {where}{when}"]
        width = max(len(step.chain) for step in self.steps)
        action_width = max(len(step.action) for step in self.steps)
        for step in self.steps:
            lines.append(f"  {step.chain:<{width}}  {step.action:<{action_width}}  "
                         f"{describe(step.origin)}")
        lines.append(f"verdict: {self.verdict}, by {describe(self.origin, self.chain)}")
        lines.append(f"destination: {self.translated_destination}")
        lines.append(f"source: {self.translated_source or ROUTED_SOURCE}")
        return "\n".join(lines) + "\n"


def rule_name(origin: Optional[Origin]) -> Optional[str]:
    """How the JSON names a rule (`Origin.policy_name`); None for no rule."""
    return None if origin is None else origin.policy_name


def describe(origin: Optional[Origin], chain: Optional[str] = None) -> str:
    name = rule_name(origin)
    if name is None:
        return f"the {chain} chain's policy" if chain else "no rule: the chain's policy"
    text = f"{origin.kind} rule {name}" if origin.kind != "management" else name
    if origin.service:
        text += f", service {origin.service}"
    return text + (f" ({origin.position})" if origin.position else "")


# -- the question -------------------------------------------------------------------

def parse_target(text: str) -> tuple[str, str]:
    """`ADDR:PORT[/PROTO]` or `ADDR/icmp` -> (destination, protocol)."""
    destination, slash, protocol = text.rpartition("/")
    if not slash:
        return text, "tcp"
    if protocol not in PROTOCOLS:
        raise QueryError(f"unknown protocol {protocol!r} in {text!r}: use tcp, udp or icmp")
    return destination, protocol


def _address(text: str, what: str) -> Address:
    address = parse_address(text)
    if address is None:
        raise QueryError(f"{what}: {text!r} is not an IPv4 or IPv6 address")
    return address


def parse_destination(text: str, protocol: str) -> tuple[Address, Optional[int]]:
    """(address, port) of `ADDR:PORT`, `[ADDR]:PORT`, or of `ADDR` for ICMP."""
    if protocol == "icmp":
        return _address(text.removeprefix("[").removesuffix("]"), "destination"), None
    if text.startswith("["):
        address, bracket, port = text[1:].partition("]:")
    else:
        address, bracket, port = text.rpartition(":")
        if ":" in address:
            raise QueryError(f"destination {text!r}: write an IPv6 address as [ADDR]:PORT")
    number = parse_port(port)
    if not bracket or number is None:
        raise QueryError(f"destination {text!r}: expected ADDR:PORT with a port 1-65535 "
                         "([ADDR]:PORT for IPv6), or ADDR/icmp")
    return _address(address, "destination"), number


def _loopback(family: str, address: int) -> bool:
    low, high = LOOPBACK[family]
    return low <= address <= high


def _endpoint(family: str, address: int, port: Optional[int]) -> str:
    text = int_text(VERSIONS[family], address)
    if port is None:
        return text
    return f"[{text}]:{port}" if family == "ip6" else f"{text}:{port}"


# -- the walk -----------------------------------------------------------------------

def explain(subject: Union[Policy, Result], source: str, destination: str,
            protocol: str = "tcp", at: Optional[datetime] = None) -> Explanation:
    """Which rule decides a new connection from `source` (an address or
    `localhost`) to `destination` (`ADDR:PORT`, `[ADDR]:PORT`, or `ADDR` for
    icmp) over `protocol`, at `at` (default now; a naive time is in the
    policy's zone). Raises QueryError for a malformed question and
    PolicyError for an invalid policy."""
    policy = subject.or_raise().policy if isinstance(subject, Result) else subject
    if at is None:
        at = datetime.now(timezone.utc)
    elif at.tzinfo is None:
        at = at.replace(tzinfo=schedule_zone(policy.firewall.timezone)[0])
    if not EARLIEST <= at <= LATEST:       # compared in UTC; converting it could overflow
        raise QueryError(f"time {at.isoformat(' ', 'minutes')} out of range: from "
                         f"{EARLIEST.date()} to {LATEST.date()} (UTC)")
    return Explainer(policy, plan(policy, at), at).explain(source, destination, protocol)


class Explainer:
    """One plan, asked many questions (the end-to-end suite asks per port).
    `local`: addresses the host holds that the policy does not name (the
    lockout guard knows the one an SSH session reached)."""

    def __init__(self, policy: Policy, ruleset: Ruleset, at: datetime,
                 local: Iterable[Address] = ()):
        fw = policy.firewall
        self.firewall = fw
        self.ruleset = ruleset
        self.at = at
        self.sets = {s.name: s for s in ruleset.sets}
        self.chains = {c.name: c for c in ruleset.chains}
        # the base chains of each hook in the kernel's order (lowest priority first)
        self.hooked: dict[str, list[Chain]] = {}
        for chain in sorted((c for c in ruleset.chains if c.hook),
                            key=lambda c: PRIORITIES[c.hook.priority]):
            self.hooked.setdefault(chain.hook.hook, []).append(chain)
        # each rule with its matches' predicates, looked up once: a sweep asks per port
        self.rules = {c.name: [(rule, [(_predicate(m), m) for m in rule.matches])
                               for rule in c.rules] for c in ruleset.chains}
        for chain in ruleset.chains:
            for rule in chain.rules:
                for statement in rule.statements:
                    _handler(statement)
        # the firewall's own addresses; internal ones come with firewall.internal.address
        self.own = {(family_of(a), int(a))
                    for a in (*fw.external_addresses, *fw.internal_addresses, *local)}

    def owns(self, family: str, address: int) -> bool:
        """One of the firewall's addresses, loopback ones included."""
        return (family, address) in self.own or _loopback(family, address)

    def explain(self, source: str, destination: str, protocol: str) -> Explanation:
        if protocol not in PROTOCOLS:
            raise QueryError(f"unknown protocol {protocol!r}: use tcp, udp or icmp")
        daddr, dport = parse_destination(destination, protocol)
        family = family_of(daddr)
        saddr = None if source == LOCALHOST else _address(source, "source")
        if saddr is not None and family_of(saddr) != family:
            raise QueryError(f"source {source} is not {FAMILY_NAMES[family]}, "
                             f"as the destination {destination} is")
        fw = self.firewall
        if saddr is None or self.owns(family, int(saddr)):
            side, iif = "firewall", None
        elif fw.internal_networks.contains(family, (int(saddr), int(saddr))):
            side, iif = "internal", fw.internal_interface
        else:
            side, iif = "outside", fw.external_interface
        source_int = None if saddr is None else int(saddr)
        walk = _Walk(self, Packet(family, source_int, int(daddr),
                                  ICMP[family] if protocol == "icmp" else protocol, dport,
                                  ECHO_REQUEST if protocol == "icmp" else None, iif, None,
                                  self.at.astimezone(timezone.utc),
                                  source_int, int(daddr), dport))
        walk.run(side)
        last = walk.packet
        at = None
        if self.ruleset.zone is not None:
            at = (self.at.astimezone(schedule_zone(fw.timezone)[0]).strftime("%Y-%m-%d %H:%M ")
                  + self.ruleset.zone.name)
        return Explanation(source, destination, protocol, side, iif, walk.verdict,
                           walk.decider_chain, walk.decider, tuple(walk.steps),
                           _endpoint(family, last.daddr, last.dport), walk.source_text(), at,
                           tuple(walk.walked.items()))

    def route(self, packet: Packet) -> tuple[str, str]:
        """(next hook, outgoing interface) for the packet's destination."""
        if self.owns(packet.family, packet.daddr):
            return "input", "lo"
        inside = self.firewall.internal_networks.contains(packet.family,
                                                          (packet.daddr, packet.daddr))
        return "forward", self.firewall.internal_interface if inside else \
            self.firewall.external_interface


class _Walk:
    """One packet's way through the hooks, and what each chain did to it."""

    def __init__(self, explainer: Explainer, packet: Packet):
        self.explainer = explainer
        self.packet = packet
        self.steps: list[Step] = []
        self.verdict = "accept"
        self.decider: Optional[Origin] = None
        self.decider_chain = ""
        self.rule_origin: Optional[Origin] = None   # the rule whose statements run
        self.jumped: list[str] = []                 # regular chains the current chain jumped to
        self.masqueraded = False                    # source: the outgoing interface's address
        self.walked: dict[str, int] = {}            # rules tried per chain (bench/publications.py)

    def run(self, side: str) -> None:
        if side == "firewall":
            hook, oif = self.explainer.route(self.packet)
            if self.packet.saddr is None and _loopback(self.packet.family, self.packet.daddr):
                saddr = LOOPBACK_SOURCE[self.packet.family]     # lo's own address
                self.packet = replace(self.packet, saddr=saddr, original_saddr=saddr)
            self.packet = replace(self.packet, oif=oif)
            if self.hook("output") and self.hook("postrouting") and hook == "input":
                self.packet = replace(self.packet, iif="lo", oif=None)     # looped back
                self.hook("input")
            return
        if not self.hook("prerouting"):
            return
        hook, oif = self.explainer.route(self.packet)
        if hook == "input":
            self.hook("input")
            return
        self.packet = replace(self.packet, oif=oif)
        if self.hook("forward"):
            self.hook("postrouting")

    def hook(self, name: str) -> bool:
        """Run the hook's base chains; False once one drops or rejects."""
        for chain in self.explainer.hooked.get(name, ()):
            self.jumped = []
            verdict, origin, action = self.chain(chain)
            if chain.hook.type == "filter" or verdict != "accept":
                self.verdict, self.decider, self.decider_chain = verdict, origin, chain.name
            self.steps.append(Step(chain.name, origin, action))
            self.steps += [Step(name, origin, action) for name in self.jumped]
            if verdict != "accept":
                return False
        return True

    def chain(self, chain: Chain) -> tuple[str, Optional[Origin], str]:
        """(verdict, deciding rule, action) of one base chain."""
        decided = self.rules(chain)
        if decided is None:
            return chain.hook.policy, None, chain.hook.policy
        return decided

    def rules(self, chain: Chain) -> Optional[tuple[str, Optional[Origin], str]]:
        """The first rule that ends the chain, or None when the packet falls through."""
        for rule, tests in self.explainer.rules[chain.name]:
            self.walked[chain.name] = self.walked.get(chain.name, 0) + 1
            for predicate, match in tests:
                if not predicate(match, self):
                    break
            else:
                self.rule_origin = rule.origin
                decided = self.statements(rule)
                if decided is not None:
                    return decided
        return None

    def statements(self, rule: Rule) -> Optional[tuple[str, Optional[Origin], str]]:
        """The rule's statements in order, until one ends the rule or the chain."""
        for statement in rule.statements:
            outcome = STATEMENTS[statement.kind](statement, self)
            if outcome == STOP:
                return None
            if isinstance(outcome, tuple):
                return outcome
        return None

    def source_text(self) -> Optional[str]:
        """The source after NAT: an address, "masquerade", or None when the
        firewall's routing picks it."""
        if self.masqueraded:
            return "masquerade"
        if self.packet.saddr is None:
            return None
        return _endpoint(self.packet.family, self.packet.saddr, None)

    def ended(self, verdict: str, action: Optional[str] = None):
        """A verdict: the rule whose statements run ends the chain."""
        return verdict, self.rule_origin, action or verdict


# -- matches: one predicate per kind (match, walk) -> bool ----------------------------

def _predicate(match) -> Callable:
    predicate = MATCHES.get(match.kind)
    if predicate is None:
        raise ExplainError(f"explain cannot judge match kind {match.kind!r}: add a "
                           "predicate to mailpubc.explain.MATCHES")
    return predicate


def _interface(match, walk: _Walk) -> bool:
    packet = walk.packet
    return (packet.iif if match.direction == "iif" else packet.oif) == match.name


def _address_match(match, walk: _Walk) -> bool:
    packet = walk.packet
    if packet.family != match.family:
        return False
    if match.field == "saddr":
        value = packet.original_saddr if match.original else packet.saddr
    else:
        value = packet.original_daddr if match.original else packet.daddr
    if value is None:
        return False
    intervals = walk.explainer.sets[match.set_name].intervals if match.set_name else \
        match.intervals
    return any(low <= value <= high for low, high in intervals)


def _port(match, walk: _Walk) -> bool:
    packet = walk.packet
    port = packet.original_dport if match.original else packet.dport
    return packet.protocol == match.protocol and port is not None and \
        match.low <= port <= match.high


def _protocol(match, walk: _Walk) -> bool:
    return walk.packet.protocol == match.protocol


def _icmp(match, walk: _Walk) -> bool:
    return walk.packet.protocol == match.protocol and walk.packet.icmp_type in match.types


def _hoplimit(match, walk: _Walk) -> bool:
    return walk.packet.family == "ip6" and match.value == HOP_LIMIT


def _conntrack(match, walk: _Walk) -> bool:
    return "new" in match.states


def _day(match, walk: _Walk) -> bool:
    return nft_day(WEEK[walk.packet.time.weekday()]) in match.days


def _hour(match, walk: _Walk) -> bool:
    time = walk.packet.time
    return match.first <= time.hour * 3600 + time.minute * 60 + time.second <= match.last


def _ctstatus(match, walk: _Walk) -> bool:
    """`ct status dnat`: the connection's destination was translated."""
    packet = walk.packet
    return match.status == "dnat" and (packet.daddr, packet.dport) != (
        packet.original_daddr, packet.original_dport)


def _unmetered(match, walk: _Walk) -> bool:
    """A source a meter had no room for: explain takes meters as not full."""
    return False


MATCHES: dict[str, Callable] = {
    "ctstatus": _ctstatus, "unmetered": _unmetered,
    "interface": _interface, "address": _address_match, "port": _port,
    "protocol": _protocol, "icmp": _icmp, "hoplimit": _hoplimit, "conntrack": _conntrack,
    "day": _day, "hour": _hour,
}


def _handler(statement) -> Callable:
    handler = STATEMENTS.get(statement.kind)
    if handler is None:
        raise ExplainError(f"explain cannot judge statement kind {statement.kind!r}: add a "
                           "handler to mailpubc.explain.STATEMENTS")
    return handler


# -- statements: one handler per kind (statement, walk) -> None (go on), STOP
#    (the rule ends, the chain goes on) or (verdict, origin, action) (the chain ends)

def _verdict(statement, walk: _Walk):
    return walk.ended(statement.verdict)


def _nat(statement, walk: _Walk):
    packet = walk.packet
    address = int(statement.address)
    if statement.type == "dnat":
        port = statement.port if statement.port is not None else packet.dport
        walk.packet = replace(packet, daddr=address, dport=port)
        return walk.ended("accept", f"dnat to {_endpoint(packet.family, address, port)}")
    walk.packet = replace(packet, saddr=address)
    return walk.ended("accept", f"snat to {_endpoint(packet.family, address, None)}")


def _redirect(statement, walk: _Walk):
    """To the firewall itself on another port; a localhost publication's
    address is already one of the firewall's, so only the port changes."""
    packet = walk.packet
    walk.packet = replace(packet, dport=statement.port)
    return walk.ended("accept", f"redirect to {_endpoint(packet.family, packet.daddr, statement.port)}")


def _masquerade(statement, walk: _Walk):
    walk.masqueraded = True
    return walk.ended("accept", "masquerade")


def _jump(statement, walk: _Walk):
    """The target chain's rules; when none ends it, the jumping rule goes on
    (and the chain, which decided nothing, is no step of its own)."""
    origin, at = walk.rule_origin, len(walk.jumped)
    decided = walk.rules(walk.explainer.chains[statement.target])
    if decided is not None:
        walk.jumped.insert(at, statement.target)
    walk.rule_origin = origin
    return decided


def _dispatch(statement, walk: _Walk):
    """The verdict map: a jump to the chain its element names for the
    packet's (original) destination address, protocol and port; no element,
    the rule does nothing."""
    packet = walk.packet
    daddr = packet.original_daddr if statement.original else packet.daddr
    key = (daddr, packet.protocol, packet.dport)
    target = next((e.target for e in statement.entries
                   if (e.address, e.protocol, e.port) == key), None)
    if packet.family != statement.family or target is None:
        return None
    return _jump(Jump(target), walk)


def _goes_on(statement, walk: _Walk):
    """Counters and logs record the packet and let the rule go on."""
    return None


def _not_hit(statement, walk: _Walk):
    """A meter or rate limit: explain assumes no limit is hit, so the rule ends."""
    return STOP


STATEMENTS: dict[str, Callable] = {
    "verdict": _verdict, "nat": _nat, "jump": _jump, "dispatch": _dispatch, "redirect": _redirect,
    "masquerade": _masquerade,
    "counter": _goes_on, "log": _goes_on,
    "rate_meter": _not_hit, "count_meter": _not_hit, "limit": _not_hit,
}
