"""`mailpubc explain`: which rule decides a new connection, read from the plan.

Not a second reading of the policy: the packet evaluator (`evaluate`) walks
one packet through the plan's chains as the kernel walks it, so explain and
the ruleset cannot disagree about what a rule means. This module asks the
question (parsing `--from` and `--to`) and words the answer. From
`localhost`, the kernel's routing picks the source, which the policy cannot
tell (`source` None), except towards loopback (127.0.0.1, ::1).
"""

from __future__ import annotations

import pwd
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Iterable, Optional, Union

from .addresses import Address, parse_address, parse_port, split_endpoint
from .columns import aligned
from .evaluate import Evaluator, Step
from .model import Policy, family_of
from .plan import Origin, Ruleset, plan
from .schedule import schedule_zone
from .vocab import FAMILY_NAMES

if TYPE_CHECKING:
    from .api import Result

LOCALHOST = "localhost"
PROTOCOLS = ("tcp", "udp", "icmp")
ROUTED_SOURCE = "chosen by the firewall's routing"           # the text of source None
# the times a plan can take: the zone note looks a year ahead (schedule.zone_note)
EARLIEST = datetime.min.replace(tzinfo=timezone.utc) + timedelta(days=1)
LATEST = datetime.max.replace(tzinfo=timezone.utc) - timedelta(days=367)


class QueryError(ValueError):
    """The question is malformed: a bad address, port or protocol (usage, exit 2)."""


@dataclass(frozen=True, slots=True)
class Explanation:
    source: str                 # as asked
    destination: str            # as asked, ADDR:PORT ([ADDR]:PORT for IPv6) or ADDR for ping
    protocol: str               # tcp, udp or icmp
    side: str                   # firewall, outside, or the internal zone's name
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
            "zone": None if self.side in ("firewall", "outside") else self.side,
        }

    def text(self) -> str:
        where = {"firewall": "from the firewall itself",
                 "internal": f"from the internal side (iif {self.interface})",
                 "outside": f"from outside (iif {self.interface})"}.get(
                     self.side, f"from zone {self.side} (iif {self.interface})")
        when = f", at {self.at}" if self.at else ""
        what = "ping (icmp echo-request)" if self.protocol == "icmp" else \
            f"{self.protocol} connection"
        lines = [f"new {what} {self.source} -> {self.destination}, {where}{when}"]
        lines += ["  " + line for line in aligned(
            (step.chain, step.action, describe(step.origin)) for step in self.steps)]
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
    try:
        address, port = split_endpoint(text)
    except ValueError:
        address, port = text, None
    if port is None and ":" in address and not text.startswith("["):
        raise QueryError(f"destination {text!r}: write an IPv6 address as [ADDR]:PORT")
    number = None if port is None else parse_port(port)
    if number is None:
        raise QueryError(f"destination {text!r}: expected ADDR:PORT with a port 1-65535 "
                         "([ADDR]:PORT for IPv6), or ADDR/icmp")
    return _address(address, "destination"), number


# -- the answer ---------------------------------------------------------------------

def explain(subject: Union[Policy, Result], source: str, destination: str,
            protocol: str = "tcp", at: Optional[datetime] = None,
            user: Optional[str] = None) -> Explanation:
    """Which rule decides a new connection from `source` (an address or
    `localhost`) to `destination` (`ADDR:PORT`, `[ADDR]:PORT`, or `ADDR` for
    icmp) over `protocol`, at `at` (default now; a naive time is in the
    policy's zone), for `localhost` opened by local `user` (a name or uid;
    None: a user no outbound rule's `user` names). A compiled result's own plan answers, unless its
    schedules make the plan depend on the time: then the plan at `at`.
    Raises QueryError for a malformed question and PolicyError for an
    invalid policy."""
    ruleset = subject.or_raise().ruleset if not isinstance(subject, Policy) else None
    policy = subject if isinstance(subject, Policy) else subject.policy
    if at is None:
        at = datetime.now(timezone.utc)
    elif at.tzinfo is None:
        at = at.replace(tzinfo=schedule_zone(policy.firewall.timezone)[0])
    if not EARLIEST <= at <= LATEST:       # compared in UTC; converting it could overflow
        raise QueryError(f"time {at.isoformat(' ', 'minutes')} out of range: from "
                         f"{EARLIEST.date()} to {LATEST.date()} (UTC)")
    if ruleset is None or ruleset.zone is not None:
        ruleset = plan(policy, at)
    return Explainer(ruleset, at).explain(source, destination, protocol, user)


def _uid(user: Optional[str]) -> Optional[int]:
    """A user name (looked up on this host) or uid as a uid."""
    if user is None or user.isdigit():
        return None if user is None else int(user)
    try:
        return pwd.getpwnam(user).pw_uid
    except KeyError:
        raise QueryError(f"user {user!r} does not exist on this host: give its uid") from None


class Explainer:
    """One plan, asked many questions (the end-to-end suite asks per port).
    `local`: addresses the host holds that the policy does not name."""

    def __init__(self, ruleset: Ruleset, at: datetime, local: Iterable[Address] = ()):
        self.ruleset = ruleset
        self.at = at
        self.evaluator = Evaluator(ruleset, local)

    def explain(self, source: str, destination: str, protocol: str,
                user: Optional[str] = None) -> Explanation:
        if protocol not in PROTOCOLS:
            raise QueryError(f"unknown protocol {protocol!r}: use tcp, udp or icmp")
        daddr, dport = parse_destination(destination, protocol)
        family = family_of(daddr)
        saddr = None if source == LOCALHOST else _address(source, "source")
        if saddr is not None and family_of(saddr) != family:
            raise QueryError(f"source {source} is not {FAMILY_NAMES[family]}, "
                             f"as the destination {destination} is")
        if user is not None and saddr is not None:
            raise QueryError("--user asks about the firewall's own connections: "
                             "use it with --from localhost")
        decision = self.evaluator.decide(saddr, daddr, protocol, dport, self.at, _uid(user))
        at = None
        if self.ruleset.zone is not None:
            zone = schedule_zone(self.ruleset.layout.timezone)[0]
            at = self.at.astimezone(zone).strftime("%Y-%m-%d %H:%M ") + self.ruleset.zone.name
        return Explanation(source, destination, protocol, decision.side, decision.iif,
                           decision.verdict, decision.chain, decision.origin, decision.steps,
                           decision.destination, decision.source, at, decision.walked)
