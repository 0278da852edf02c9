"""Dispatch changes how a publication's rules are found, never what they decide.

With the plan's dispatch threshold at 0 every prerouting and forward chain with a
publication pair dispatches, so random valid policies exercise it: explain
gives the same answer with and without dispatch for a connection to each
published port (and the port after it) from outside, from allow_from and
from inside. On the kernel (tests/test_properties.py), the dispatched
ruleset lists alike from its text and its JSON, and is fail-closed.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone

from hypothesis import HealthCheck, given, settings

from mailpubc import plan as plan_module
from mailpubc.addresses import int_text
from mailpubc.api import compile_text
from mailpubc.explain import Explainer
from mailpubc.model import family_of
from mailpubc.vocab import ECHO_PROTOCOL, VERSIONS
from strategies import dispatched, policies

SLOW_DRAWS = [HealthCheck.too_slow, HealthCheck.data_too_large]
OUTSIDE = {"ip": "203.0.113.7", "ip6": "2001:db8:3::7"}


def _queries(policy):
    """(source, destination, protocol) for every published port of every
    publication, the port after it, and ping, from each kind of source."""
    fw = policy.firewall
    for rule in policy.publish:
        at = rule.server if rule.external_address is None else rule.external_address
        family = family_of(at)
        sources = [OUTSIDE[family]]
        allowed = () if rule.allow_from.any else rule.allow_from.addresses.family(family)
        for intervals in (allowed, fw.internal_networks.family(family)):
            if intervals:
                sources.append(int_text(VERSIONS[family], intervals[0][1]))
        address = f"[{at}]" if family == "ip6" else str(at)
        for service in rule.services:
            for port in service.ports:
                if port.protocol == ECHO_PROTOCOL:
                    targets = [(str(at), "icmp")]
                else:
                    targets = [(f"{address}:{number}", port.protocol)
                               for number in {port.low, port.high, min(port.high + 1, 65535)}]
                for source in sources:
                    for destination, protocol in targets:
                        yield source, destination, protocol


def _answer(explainer: Explainer, base: set, query) -> dict:
    """explain's JSON, with the chains a dispatch jumped to left out."""
    answer = explainer.explain(*query).to_json()
    return dict(answer, chains=[c for c in answer["chains"] if c in base])


@settings(suppress_health_check=SLOW_DRAWS)
@given(policies())
def test_dispatch_changes_no_answer(draw):
    compiled = compile_text(draw.text, "draw.yaml").or_raise()
    at = datetime.now(timezone.utc)
    plain = plan_module.plan(compiled.policy, at)
    ruleset = plan_module.plan(compiled.policy, at, dispatch_threshold=0)
    dispatched = replace(compiled, ruleset=ruleset)
    base = {chain.name for chain in plain.chains}
    with_dispatch = Explainer(ruleset, at)
    without = Explainer(plain, at)
    for query in _queries(dispatched.policy):
        assert _answer(with_dispatch, base, query) == _answer(without, base, query), query


def test_dispatch_happens_at_threshold_zero():
    """So that the properties above test dispatch, not the plain chains: a
    plain DNAT through the map, one with sources through its address's chain."""
    text = ("version: 1\nfirewall:\n  external: {interface: eth0, addresses: [198.51.100.10]}\n"
            "  internal: {interface: eth1, networks: [10.1.0.0/24]}\npublish:\n"
            "  - {name: mx, server: 10.1.0.25, external_address: 198.51.100.10, "
            "services: [smtp]}\n")
    chains = {chain.name: chain for chain in dispatched(text).ruleset.chains}
    assert "forward_1" in chains
    assert [s.kind for rule in chains["prerouting"].rules for s in rule.statements
            if s.kind in ("dispatch", "nat_map")] == ["nat_map"]
    limited = text.replace("services: [smtp]}", "services: [smtp], allow_from: [192.0.2.0/24]}")
    assert "prerouting_1" in {chain.name for chain in dispatched(limited).ruleset.chains}


def _local(redirect_to: int) -> str:
    """17 pairs on the firewall itself, and smtp-alt redirected to `redirect_to`."""
    ports = ", ".join(f"p{port}" for port in range(2001, 2018))
    services = "\n".join(f"  p{port}: [tcp/{port}]" for port in range(2001, 2018))
    return ("version: 1\nfirewall:\n  external: {interface: eth0, addresses: [198.51.100.10]}\n"
            f"services:\n  smtp-alt: [tcp/2525]\n{services}\npublish:\n"
            "  - {name: mail, server: localhost, external_address: 198.51.100.10, services: "
            f"[{ports}, {{service: smtp-alt, server_port: {redirect_to}}}]}}\n")


def test_input_stays_plain_where_a_redirect_lands_on_a_dispatched_port():
    """The redirected connection arrives on the incoming interface's primary
    address, maybe 198.51.100.10:2001, where the accept of p2001 and the
    redirect's accept would both take it: their order must stay."""
    landing = {c.name for c in compile_text(_local(2001), "p.yaml").or_raise().ruleset.chains}
    apart = {c.name for c in compile_text(_local(2526), "p.yaml").or_raise().ruleset.chains}
    assert "input_1" not in landing
    assert "input_1" in apart
