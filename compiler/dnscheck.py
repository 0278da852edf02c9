"""`mailpubc dns-check`: does the DNS send clients to what the policy publishes?

For each publication with a `hostname`:

- `A` (or `AAAA`, by the family of the address clients connect to: the
  external address, or a routed server's own): the hostname's records of
  that family are exactly those addresses of the publications that name it
  (two publications may share a hostname, one per family);
- `PTR`: that address's reverse record names the hostname;
- `MX`: each of its `mail_domains` has an MX naming the hostname.

A name that does not exist (NXDOMAIN), that a DNAME would make too long
(YXDOMAIN), or that has no such record fails its check, and says which.
When the DNS cannot answer at all (timeout, every nameserver fails, or any
other failure of the lookup), nothing can be judged: `Unreachable`, said
once, whatever dnspython tried.
"""

from __future__ import annotations

import ipaddress
from dataclasses import asdict, dataclass
from typing import Optional

import dns.exception
import dns.name
import dns.resolver
import dns.reversename

from .model import Policy, Publish, family_of

RECORD = {"ip": "A", "ip6": "AAAA"}
# what an answer that names no records at all says, by its rcode
UNRESOLVED = {"NXDOMAIN": "does not exist (NXDOMAIN)",
              "YXDOMAIN": "cannot be resolved: a DNAME makes it too long (YXDOMAIN)"}
ANSWERED = {dns.resolver.NXDOMAIN: "NXDOMAIN", dns.resolver.YXDOMAIN: "YXDOMAIN"}


class Unreachable(Exception):
    """The DNS gave no usable answer: no check can be judged."""


@dataclass(frozen=True, slots=True)
class Check:
    publication: str
    record: str                # A, AAAA, PTR or MX
    name: str                  # the name queried
    expected: tuple[str, ...]  # A/AAAA: exactly these; PTR/MX: this name among those found
    found: tuple[str, ...]
    ok: bool
    rcode: Optional[str] = None     # NXDOMAIN or YXDOMAIN: the name has no records at all

    def __str__(self) -> str:
        if self.found:
            shown = f"is {', '.join(self.found)}"
        elif self.rcode is not None:
            shown = UNRESOLVED[self.rcode]
        else:
            shown = f"has no {self.record} record"
        line = f"{self.publication}: {self.record} {self.name} {shown}"
        return f"ok    {line}" if self.ok else f"FAIL  {line}; expected {', '.join(self.expected)}"

    def as_json(self) -> dict:
        return asdict(self)


def resolver(nameserver: Optional[tuple[str, int]], timeout: float) -> dns.resolver.Resolver:
    """The system's resolver, or one asking only `nameserver` (address, port)."""
    if nameserver is None:
        found = dns.resolver.Resolver()
    else:
        found = dns.resolver.Resolver(configure=False)
        found.nameservers = [nameserver[0]]
        found.port = nameserver[1]
    found.lifetime = timeout
    return found


def _query(ask: dns.resolver.Resolver, name: dns.name.Name,
           record: str) -> tuple[list, Optional[str]]:
    """The name's records of that type, and the rcode (a key of UNRESOLVED)
    when the DNS says the name has none at all. dnspython's own texts name
    each try of each server, so the same timeout three times over:
    Unreachable says what failed once."""
    asked = f"{record} {name.to_text(omit_final_dot=True)}"
    try:
        answer = ask.resolve(name, record, raise_on_no_answer=False, search=False)
    except tuple(ANSWERED) as exc:
        return [], ANSWERED[type(exc)]
    except dns.exception.Timeout as exc:
        servers = ", ".join(map(str, ask.nameservers))
        raise Unreachable(f"{asked}: no answer within {ask.lifetime:g} s "
                          f"from {servers} (port {ask.port})") from exc
    except dns.resolver.NoNameservers as exc:
        answers = dict.fromkeys(str(error[3]) for error in exc.kwargs.get("errors") or ())
        raise Unreachable(f"{asked}: no nameserver could answer: "
                          + "; ".join(answers)) from exc
    except dns.exception.DNSException as exc:
        raise Unreachable(f"{asked}: {exc}") from exc
    return list(answer.rrset or ()), None


def _addresses(rdatas: list) -> tuple[str, ...]:
    return tuple(sorted({str(ipaddress.ip_address(r.address)) for r in rdatas}))


def _names(rdatas, attribute: str) -> tuple[str, ...]:
    return tuple(sorted({getattr(r, attribute).to_text(omit_final_dot=True) for r in rdatas}))


def run(policy: Policy, ask: dns.resolver.Resolver) -> list[Check]:
    """Every check, each once, in policy order; raises Unreachable."""
    named = [p for p in policy.publish if p.hostname]
    checks: dict[tuple, Check] = {}

    def add(publication: Publish, record: str, name, expected, rcode, found, ok) -> None:
        key = (record, name.canonicalize(), expected)     # DNS names ignore case
        checks.setdefault(key, Check(publication.name, record, name.to_text(True),
                                     expected, found, ok, rcode))

    for publication in named:
        host = dns.name.from_text(publication.hostname)
        address = publication.published_at()
        family = family_of(address)
        expected = tuple(sorted({str(p.published_at()) for p in named
                                 if dns.name.from_text(p.hostname) == host
                                 and family_of(p.published_at()) == family}))
        answer, rcode = _query(ask, host, RECORD[family])
        found = _addresses(answer)
        add(publication, RECORD[family], host, expected, rcode, found, found == expected)
        reverse = dns.reversename.from_address(str(address))
        answer, rcode = _query(ask, reverse, "PTR")
        add(publication, "PTR", reverse, (host.to_text(True),), rcode,
            _names(answer, "target"), any(r.target == host for r in answer))
        for domain in publication.mail_domains:
            zone = dns.name.from_text(domain)
            answer, rcode = _query(ask, zone, "MX")
            add(publication, "MX", zone, (host.to_text(True),), rcode,
                _names(answer, "exchange"), any(r.exchange == host for r in answer))
    return list(checks.values())
