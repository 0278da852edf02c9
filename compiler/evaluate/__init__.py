"""The packet evaluator: one new connection walked through a plan's chains as
the kernel walks it. `explain` asks it, and so does apply's lockout guard;
the end-to-end suite holds its answers to the kernel's.

Where the packet comes from decides its path:

- from the firewall itself (no source: the kernel's routing picks it, one
  of its addresses, or a loopback address): output, postrouting, and input
  when it is addressed to the firewall or to loopback (over `lo`);
- from the internal side (an address in the internal networks, iif
  internal) or from outside (iif external): prerouting (DNAT), routing, then
  input when the (translated) destination is the firewall's, else forward
  (oif internal when the destination is in the internal networks, else
  external) and postrouting (SNAT).

Each match kind is one predicate in MATCHES and each statement kind one
handler in STATEMENTS; a kind with neither is UnjudgedKind, never a guess.
The packet opens a connection (ct state new); limits are not hit, meters
not full, dynamic sets are empty. Where the firewall sits (its interfaces,
addresses and internal networks) is the plan's `Ruleset.layout`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Iterable, Optional

from ..addresses import Address
from ..model import family_of
from ..plan import Chain, Origin, Rule, Ruleset
from ..vocab import ECHO_REQUEST, ICMP_PROTOCOLS, PRIORITIES
from .kinds import STATEMENTS, handler, predicate
from .packet import (LOOPBACK_SOURCE, STOP, Packet, Step, UnjudgedKind,
                     endpoint, loopback)

__all__ = ["Decision", "Evaluator", "Packet", "Step", "UnjudgedKind", "endpoint", "evaluate"]


@dataclass(frozen=True, slots=True)
class Decision:
    """What the ruleset does to the connection: the verdict, the chain and
    rule that decided it, each chain's step, and the packet as it left."""

    side: str                   # firewall, internal or outside
    iif: Optional[str]          # the incoming interface (None from the firewall itself)
    verdict: str                # accept, drop or reject
    chain: str                  # the last filter chain, or the one that dropped
    origin: Optional[Origin]    # the deciding rule; None: the chain's policy
    steps: tuple[Step, ...]
    packet: Packet              # after every translation
    source: Optional[str]       # the source after NAT (`Walk.source_text`)
    walked: tuple[tuple[str, int], ...]     # (chain, rules the packet was tried against)

    @property
    def destination(self) -> str:
        return endpoint(self.packet.family, self.packet.daddr, self.packet.dport)


def evaluate(ruleset: Ruleset, source: Optional[Address], destination: Address,
             protocol: str, port: Optional[int], at: datetime,
             local: Iterable[Address] = ()) -> Decision:
    """What `ruleset` does to a new connection from `source` (None: the
    firewall itself) to `destination`:`port` over `protocol` (tcp, udp, or
    icmp for a ping) at `at`; `local`: addresses the host holds that the
    policy does not name."""
    return Evaluator(ruleset, local).decide(source, destination, protocol, port, at)


class Evaluator:
    """One plan, asked many questions (the end-to-end suite asks per port)."""

    def __init__(self, ruleset: Ruleset, local: Iterable[Address] = ()):
        self.ruleset = ruleset
        self.layout = ruleset.layout
        self.sets = {s.name: s for s in ruleset.sets}
        self.chains = {c.name: c for c in ruleset.chains}
        # the base chains of each hook in the kernel's order (lowest priority first)
        self.hooked: dict[str, list[Chain]] = {}
        for chain in sorted((c for c in ruleset.chains if c.hook),
                            key=lambda c: PRIORITIES[c.hook.priority]):
            self.hooked.setdefault(chain.hook.hook, []).append(chain)
        # each rule with its matches' predicates, looked up once: a sweep asks per port
        self.rules = {c.name: [(rule, [(predicate(m), m) for m in rule.matches])
                               for rule in c.rules] for c in ruleset.chains}
        for chain in ruleset.chains:
            for rule in chain.rules:
                for statement in rule.statements:
                    handler(statement)
        self.own = {(family_of(a), int(a)) for a in (*self.layout.addresses, *local)}

    def owns(self, family: str, address: int) -> bool:
        """One of the firewall's addresses, loopback ones included."""
        return (family, address) in self.own or loopback(family, address)

    def side(self, family: str, source: Optional[Address]) -> tuple[str, Optional[str]]:
        """(side, incoming interface) of a connection from `source`: the
        firewall, the zone whose networks hold it, or outside."""
        if source is None or self.owns(family, int(source)):
            return "firewall", None
        zone = self.layout.zone_of(family, int(source))
        if zone is not None:
            return zone.name, zone.interface
        return "outside", self.layout.external_interface

    def decide(self, source: Optional[Address], destination: Address, protocol: str,
               port: Optional[int], at: datetime, uid: Optional[int] = None) -> Decision:
        """`uid`: the user of the firewall's own connection (None: a user no
        `user` rule names)."""
        family = family_of(destination)
        side, iif = self.side(family, source)
        saddr = None if source is None else int(source)
        walk = _Walk(self, Packet(family, saddr, int(destination),
                                  ICMP_PROTOCOLS[family] if protocol == "icmp" else protocol, port,
                                  ECHO_REQUEST if protocol == "icmp" else None, iif, None,
                                  at.astimezone(timezone.utc), saddr, int(destination), port,
                                  uid if source is None else None))
        walk.run(side)
        return Decision(side, iif, walk.verdict, walk.decider_chain, walk.decider,
                        tuple(walk.steps), walk.packet, walk.source_text(),
                        tuple(walk.walked.items()))

    def route(self, packet: Packet) -> tuple[str, str]:
        """(next hook, outgoing interface) for the packet's destination."""
        if self.owns(packet.family, packet.daddr):
            return "input", "lo"
        zone = self.layout.zone_of(packet.family, packet.daddr)
        return "forward", self.layout.external_interface if zone is None else zone.interface


class _Walk:
    """One packet's way through the hooks, and what each chain did to it."""

    def __init__(self, evaluator: Evaluator, packet: Packet):
        self.evaluator = evaluator
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
            hook, oif = self.evaluator.route(self.packet)
            if self.packet.saddr is None and loopback(self.packet.family, self.packet.daddr):
                saddr = LOOPBACK_SOURCE[self.packet.family]     # lo's own address
                self.packet = replace(self.packet, saddr=saddr, original_saddr=saddr)
            self.packet = replace(self.packet, oif=oif)
            if self.hook("output") and self.hook("postrouting") and hook == "input":
                self.packet = replace(self.packet, iif="lo", oif=None)     # looped back
                self.hook("input")
            return
        if not self.hook("prerouting"):
            return
        hook, oif = self.evaluator.route(self.packet)
        if hook == "input":
            self.hook("input")
            return
        self.packet = replace(self.packet, oif=oif)
        if self.hook("forward"):
            self.hook("postrouting")

    def hook(self, name: str) -> bool:
        """Run the hook's base chains; False once one drops or rejects."""
        for chain in self.evaluator.hooked.get(name, ()):
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
        for rule, tests in self.evaluator.rules[chain.name]:
            self.walked[chain.name] = self.walked.get(chain.name, 0) + 1
            for judge, match in tests:
                if not judge(match, self):
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
        return endpoint(self.packet.family, self.packet.saddr, None)

    def ended(self, verdict: str, action: Optional[str] = None):
        """A verdict: the rule whose statements run ends the chain."""
        return verdict, self.rule_origin, action or verdict
