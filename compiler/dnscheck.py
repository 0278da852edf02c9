"""`mailpubc dns-check`: does the DNS send clients to what the policy publishes?

For each publication with a `hostname`:

- `A` (or `AAAA`, by the family of the address clients connect to: the
  external address, or a routed server's own): the hostname's records of
  that family are exactly those addresses of the publications that name it
  (two publications may share a hostname, one per family);
- `PTR`: that address's reverse record names the hostname;
- `MX`: each of its `mail_domains` has an MX naming the hostname.

A name that does not exist or has no such record fails its check. When the
DNS cannot answer at all (timeout, or every nameserver fails), nothing can
be judged: `Unreachable`.
"""

from __future__ import annotations

import ipaddress
from dataclasses import asdict
from typing import Optional

import dns.exception
import dns.name
import dns.resolver
import dns.reversename

from .model import Policy, Publish, family_of
from .records import record

RECORD = {"ip": "A", "ip6": "AAAA"}


class Unreachable(Exception):
    """The DNS gave no usable answer: no check can be judged."""


@record
class Check:
    publication: str
    record: str                # A, AAAA, PTR or MX
    name: str                  # the name queried
    expected: tuple[str, ...]  # A/AAAA: exactly these; PTR/MX: this name among those found
    found: tuple[str, ...]
    ok: bool

    def __str__(self) -> str:
        found = ", ".join(self.found) or "nothing"
        line = f"{self.publication}: {self.record} {self.name} is {found}"
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


def _query(ask: dns.resolver.Resolver, name: dns.name.Name, record: str) -> list:
    try:
        answer = ask.resolve(name, record, raise_on_no_answer=False, search=False)
    except dns.resolver.NXDOMAIN:
        return []
    except (dns.exception.Timeout, dns.resolver.NoNameservers) as exc:
        raise Unreachable(f"{record} {name}: {exc}") from exc
    return list(answer.rrset or ())


def _addresses(ask, hostname: dns.name.Name, record: str) -> tuple[str, ...]:
    return tuple(sorted({str(ipaddress.ip_address(r.address))
                         for r in _query(ask, hostname, record)}))


def _names(rdatas, attribute: str) -> tuple[str, ...]:
    return tuple(sorted({getattr(r, attribute).to_text(omit_final_dot=True) for r in rdatas}))


def run(policy: Policy, ask: dns.resolver.Resolver) -> list[Check]:
    """Every check, each once, in policy order; raises Unreachable."""
    named = [p for p in policy.publish if p.hostname]
    checks: dict[tuple, Check] = {}

    def add(publication: Publish, record: str, name, expected, found, ok) -> None:
        key = (record, name.canonicalize(), expected)     # DNS names ignore case
        checks.setdefault(key, Check(publication.name, record, name.to_text(True),
                                     expected, found, ok))

    for publication in named:
        host = dns.name.from_text(publication.hostname)
        address = publication.published_at()
        family = family_of(address)
        expected = tuple(sorted({str(p.published_at()) for p in named
                                 if dns.name.from_text(p.hostname) == host
                                 and family_of(p.published_at()) == family}))
        found = _addresses(ask, host, RECORD[family])
        add(publication, RECORD[family], host, expected, found, found == expected)
        reverse = dns.reversename.from_address(str(address))
        pointers = _query(ask, reverse, "PTR")
        add(publication, "PTR", reverse, (host.to_text(True),), _names(pointers, "target"),
            any(r.target == host for r in pointers))
        for domain in publication.mail_domains:
            zone = dns.name.from_text(domain)
            exchanges = _query(ask, zone, "MX")
            add(publication, "MX", zone, (host.to_text(True),), _names(exchanges, "exchange"),
                any(r.exchange == host for r in exchanges))
    return list(checks.values())
