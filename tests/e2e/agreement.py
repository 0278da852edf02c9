"""`mailpubc explain` against the kernel: every probe of the lab, asked again.

Each connection a probe makes (a TCP handshake, a DNS query over UDP or
TCP, every port of a sweep) is put to `explain` with the same source,
destination, protocol and time, and explain's verdict must match what the
probe saw. The kernel's side is what the client observes: a connection got
through when its handshake or query was answered. A connection explain
accepts can only be seen getting through when something listens where it
ends (after DNAT): every TCP port of a lab host but the firewall (the
catch-all canary), and the ports of the servers a host runs; so the
expected observation is "explain accepts it and something listens there".
Where the lab also sees a translation (the address an SMTP or DNS server
saw the client as, the server that received a message), explain's source
and destination must match it too.

A scenario's zone (`timezones:`) is given to the plan as the policy's
zone, as the lab's compiler got it through TZ; the time is the lab's clock
when the probe was sent. The same questions (`ask`) stand in for the
kernel in e2e/explained.py.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field, replace
from datetime import datetime

from mailpubc.explain import LOCALHOST, Explainer, Explanation, parse_destination
from mailpubc.model import Policy
from mailpubc.plan import plan

from .topology import SERVER_PORTS


@dataclass
class Probe:
    """One probe as the lab sent it: from which host, the request, what it saw."""

    source: str
    request: dict
    result: dict
    at: datetime
    run_time_elements: bool = False     # sent while a dynamic_block set held elements


@dataclass
class Tally:
    """What one expectation's probes came to."""

    agreed: int = 0
    unobservable: int = 0       # explain accepts, but nothing listens there: seen as closed
    unjudged: int = 0           # the probe broke before making the connection's outcome known
    disagreements: list[str] = field(default_factory=list)


def check(lab, probes: list[Probe]) -> Tally:
    """explain's answer on each connection of `probes`, held to what they saw."""
    tally = Tally()
    policy = in_zone(lab.policy, lab.scenario.timezone)
    for probe in probes:
        explainer = Explainer(plan(policy, probe.at), probe.at)
        kind = probe.request["kind"]
        if kind not in CONNECTIONS:
            tally.disagreements.append(f"no explain query for probe kind {kind!r}: add one "
                                       "to e2e.agreement.CONNECTIONS")
            continue
        connections = CONNECTIONS[kind](probe.request, probe.result)
        if probe.run_time_elements:     # explain assumes the run-time sets empty
            connections = [(protocol, port, None) for protocol, port, _ in connections]
        for index, (protocol, port, through) in enumerate(connections):
            if through is None:
                tally.unjudged += 1
                continue
            answer, listens, expected = ask(lab, explainer, probe.source, probe.request["host"],
                                            protocol, port)
            if expected != through:
                seen = "got through" if through else "did not get through"
                problem = (f"the kernel: it {seen}; explain: {answer.verdict} by "
                           f"{answer.to_json()['rule'] or answer.chain + ' policy'}"
                           f"{'' if listens else ', nothing listens there'}")
            else:
                problem = _translation(lab, probe, answer, index == 0) if through else None
            if problem:
                tally.disagreements.append(
                    f"probe from {probe.source} ({answer.source}) to {answer.destination}/"
                    f"{protocol}: {problem}; explain's chains {list(answer.chains)}")
            else:
                tally.agreed += 1
                tally.unobservable += answer.verdict == "accept" and not listens
    return tally


def in_zone(policy: Policy, zone: str | None) -> Policy:
    """The policy as the lab compiles it: schedules in the scenario's zone
    (TZ for the compiler) unless the policy names its own."""
    if zone and policy.firewall.timezone is None:
        return replace(policy, firewall=replace(policy.firewall, timezone=zone))
    return policy


def ask(lab, explainer: Explainer, source: str, host: str, protocol: str,
        port: int) -> tuple[Explanation, bool, bool]:
    """explain's answer on one connection from the lab host `source` to the
    address `host`, whether something listens where it ends, and so whether
    it gets through."""
    answer = explainer.explain(_source(lab, source, host), _target(host, port), protocol)
    listens = _listens(lab, answer.translated_destination, protocol)
    return answer, listens, answer.verdict == "accept" and listens


def _source(lab, name: str, host: str) -> str:
    source = lab.topology.host(name)
    if source.side == "firewall":
        return LOCALHOST
    return str(source.address(ipaddress.ip_address(host).version))


def _target(host: str, port: int) -> str:
    address = ipaddress.ip_address(host)
    return f"[{address}]:{port}" if address.version == 6 else f"{address}:{port}"


def _listens(lab, destination: str, protocol: str) -> bool:
    parsed, port = parse_destination(destination, protocol)
    address = ipaddress.ip_address(str(parsed))
    # explain takes loopback as the firewall's: only its own connections go there
    host = lab.topology.firewall if address.is_loopback else lab.topology.owner(address)
    if host is None:
        return False
    if host.side != "firewall" and protocol == "tcp":
        return True         # the catch-all: every TCP port meets a listener
    return any((protocol, port) in SERVER_PORTS[server] for server in host.servers)


def _translation(lab, probe: Probe, answer, first: bool) -> str | None:
    """Where the lab saw the connection's addresses, do they match explain's?
    (A delivery's first connection is the one that carried the message.)"""
    seen = probe.result.get("addresses")          # whoami: as the DNS server saw us
    if seen is not None:
        if len(seen) != 1:
            return f"the DNS server saw {seen}, explain says one source"
        problem = _seen_as(lab, seen[0], answer.translated_source)
        return problem and f"the DNS server {problem}"
    if probe.request["kind"] == "deliver" and first and probe.result.get("subject"):
        received = lab.smtp_record(probe.result["subject"])
        if received is None:
            return None
        server, record = received
        address = parse_destination(answer.translated_destination, "tcp")[0]
        if lab.topology.owner(ipaddress.ip_address(str(address))) is not server:
            return f"the message reached {server.name}, explain says {answer.translated_destination}"
        problem = _seen_as(lab, record["peer"], answer.translated_source)
        return problem and f"the server {problem}"
    return None


def _seen_as(lab, peer: str, source: str | None) -> str | None:
    """Does the address a server saw match explain's source? Masquerade, and
    the firewall's routing (None), take one of the firewall's own addresses."""
    if source in ("masquerade", None):
        if lab.topology.owner(ipaddress.ip_address(peer)) is lab.topology.firewall:
            return None
        said = "masquerade" if source else "the firewall's routing picks it"
        return f"saw {peer}, explain says {said} (a firewall address)"
    if ipaddress.ip_address(peer) != ipaddress.ip_address(source):
        return f"saw {peer}, explain says source {source}"
    return None


# -- the connections each probe kind makes: (protocol, port, got through or None) -------

def _through(state: str) -> bool:
    """A connection got through unless the probe found it closed (an answer
    that then failed, "broken", came from past the firewall)."""
    return state != "closed"


def _dns(request: dict, result: dict):
    transports = result.get("transports", {})
    return [(t, request["port"], _through(transports[t]) if t in transports else None)
            for t in ("udp", "tcp")]


def _reach(request: dict, result: dict):
    if request["service"] == "dns":
        return _dns(request, result)
    return [("tcp", request["port"], _through(result["status"]))]


def _deliver(request: dict, result: dict):
    """SMTP, then each reader, which run only when the message was sent."""
    if result["status"] == "closed":
        return [("tcp", request["port"], False)]
    readers = True if result["status"] == "open" else None
    return [("tcp", request["port"], True)] + [
        ("tcp", reader["port"], readers) for reader in request.get("read_with", [])]


def _whoami(request: dict, result: dict):
    return _dns(request, result)


def _sweep(request: dict, result: dict):
    found = set(result.get("open", ()))
    judged = result["status"] == "open"
    return [("tcp", port, (port in found) if judged else None)
            for port in range(request["first"], request["last"] + 1)]


def _connections(request: dict, result: dict):
    """Only the first of a series is judged: explain assumes no limit is hit,
    and the later ones are there to hit one."""
    statuses = result.get("results", [])
    return [("tcp", request["port"], _through(status.split(" ")[0]) if i == 0 else None)
            for i, status in enumerate(statuses)]


def _flood(request: dict, result: dict):
    """Datagrams nobody answers: what got through is not seen by the sender
    (the datagrams check's own listener judges it; its forged sources are
    beyond explain's question, which places a packet by its source)."""
    return [("udp", request["port"], None)]


CONNECTIONS = {"reach": _reach, "deliver": _deliver, "whoami": _whoami, "sweep": _sweep,
               "connections": _connections, "flood": _flood, "datagrams": _flood}
