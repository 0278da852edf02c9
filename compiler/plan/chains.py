"""A chain while the passes work on it: its rules in ordered segments, so a
pass fills or rewrites its own segment and never searches a finished chain."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

from . import fixed
from .ir import Chain, Hook, Rule


@dataclass(frozen=True, slots=True)
class Draft:
    """`verdict` is a filter chain's policy as the policy says it (accept,
    drop or reject), None for the others; the segments print in this order."""
    name: str
    hook: Optional[Hook]
    verdict: Optional[str] = None
    head: tuple[Rule, ...] = ()         # fixed: ND, MLD, conntrack, loopback
    block: tuple[Rule, ...] = ()        # firewall.block, firewall.dynamic_block
    icmp: tuple[Rule, ...] = ()         # fixed: ICMP errors
    rules: tuple[Rule, ...] = ()        # the policy's rules
    drop_log: tuple[Rule, ...] = ()     # firewall.log.dropped
    tail: tuple[Rule, ...] = ()         # the reject tail

    @classmethod
    def of(cls, chain: Chain) -> Draft:
        return cls(chain.name, chain.hook, rules=chain.rules)

    @property
    def filters(self) -> bool:
        return self.hook is not None and self.hook.type == "filter"

    def chain(self) -> Chain:
        return Chain(self.name, self.hook, self.head + self.block + self.icmp + self.rules
                     + self.drop_log + self.tail)

    def with_rules(self, rules) -> Draft:
        return replace(self, rules=tuple(rules))


def filter_draft(name: str, verdict: str, rules: list[Rule]) -> Draft:
    """Input, forward or output under `verdict`: accept, or drop (reject
    adds its tail before the drop)."""
    hook = Hook("filter", name, "filter", "accept" if verdict == "accept" else "drop")
    return Draft(name, hook, verdict, head=fixed.head(name), icmp=fixed.icmp_errors(name),
                 rules=tuple(rules),
                 tail=fixed.reject_tail(name) if verdict == "reject" else ())


def nat_draft(hook: str, priority: str, rules: list[Rule]) -> Draft:
    return Draft(hook, Hook("nat", hook, priority, "accept"), rules=tuple(rules))
