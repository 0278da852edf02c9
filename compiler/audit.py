"""`mailpubc audit`: the policy against the mail servers' own configuration,
which is where mail publishing breaks: a published port nobody listens on,
a listener nobody published, a hairpin SNAT address inside Postfix's
`mynetworks` (an open relay to every client of that zone), postscreen and
rate limits that see one client under hairpin SNAT, IPv6 published to a
Postfix that speaks IPv4 only.

Postfix is read with its own `postconf -c DIR` (master.cf services and
main.cf settings, defaults included), Dovecot with `doveconf -c FILE` (its
protocols and every login service's inet listeners, defaults included); for
publications on the firewall host itself, the sockets listening there
(`ss`). Nothing here parses a configuration file's syntax; the files are
read only to point a finding at its line."""

from __future__ import annotations

import ipaddress
import re
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .model import Policy, Publish

TIMEOUT = 30
POSTFIX_PORTS = {25, 465, 587}               # what a published Postfix usually serves
DOVECOT_PORTS = {110, 143, 993, 995, 4190, 587}
LOGIN_SERVICES = {"imap-login": "imap", "pop3-login": "pop3", "submission-login": "submission",
                  "managesieve-login": "sieve"}


class AuditError(Exception):
    """A configuration that cannot be read (exit 2)."""


@dataclass(frozen=True, slots=True)
class Finding:
    level: str                   # ok, warning or error
    publication: Optional[str]   # the policy rule, None for a listener nobody published
    message: str
    where: Optional[str] = None  # FILE:LINE of the configuration, where known

    def __str__(self) -> str:
        subject = f"{self.publication}: " if self.publication else ""
        place = f" ({self.where})" if self.where else ""
        return f"{self.level:<7} {subject}{self.message}{place}"

    def as_json(self) -> dict:
        return {"level": self.level, "publication": self.publication,
                "message": self.message, "where": self.where}


@dataclass(frozen=True, slots=True)
class Listener:
    program: str                 # postfix, dovecot or socket
    name: str                    # master.cf service, Dovecot listener, or the socket
    port: int
    where: Optional[str]
    postscreen: bool = False
    loopback: bool = False       # bound to a loopback address: not reachable from outside


def _run(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise AuditError(f"cannot run {argv[0]}: {exc}") from exc
    if done.returncode != 0:
        raise AuditError(f"{' '.join(argv)}: {done.stderr.strip() or 'failed'}")
    return done.stdout


def _line(file: Path, pattern: str) -> Optional[str]:
    """FILE:LINE of the first line matching `pattern`, for pointing at it."""
    try:
        for number, text in enumerate(file.read_text().splitlines(), 1):
            if re.match(pattern, text):
                return f"{file}:{number}"
    except OSError:
        return None
    return None


def postfix(directory: str) -> tuple[list[Listener], dict[str, str]]:
    """master.cf's inet services as listeners, and the main.cf settings the
    checks need (postconf -h: the value in effect, defaults included)."""
    folder = Path(directory)
    listeners = []
    for line in _run(["postconf", "-c", directory, "-M"]).splitlines():
        fields = line.split()
        if len(fields) < 8 or fields[1] != "inet":
            continue
        host, _, service = fields[0].rpartition(":")
        where = _line(folder / "master.cf", re.escape(fields[0]) + r"\s")
        listeners.append(Listener("postfix", fields[0], _port(service, where), where,
                                  postscreen=fields[7] == "postscreen",
                                  loopback=_is_loopback(host)))
    names = ("inet_interfaces", "inet_protocols", "mynetworks",
             "smtpd_client_connection_rate_limit", "smtpd_client_connection_count_limit")
    values = _run(["postconf", "-c", directory, "-h", *names]).splitlines()
    return listeners, dict(zip(names, values))


def _port(service: str, where: Optional[str]) -> int:
    if service.isdigit():
        return int(service)
    try:
        return socket.getservbyname(service, "tcp")
    except OSError as exc:
        raise AuditError(f"master.cf service {service!r} is no port this host knows"
                         + (f" ({where})" if where else "")) from exc


def _is_loopback(host: str) -> bool:
    try:
        return bool(host) and ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


def dovecot(file: str) -> list[Listener]:
    """The inet listeners of the login services of Dovecot's enabled
    protocols (`doveconf -c FILE`, defaults included; port 0 is off)."""
    protocols = set(_run(["doveconf", "-c", file, "-h", "protocols"]).split())
    listeners, service, listener = [], None, None
    for line in _run(["doveconf", "-c", file]).splitlines():
        if (match := re.match(r"^service (\S+) \{", line)):
            service = match.group(1)
        elif (match := re.match(r"^  inet_listener (\S+) \{", line)):
            listener = match.group(1)
        elif (match := re.match(r"^    port = (\d+)$", line)) and listener:
            port = int(match.group(1))
            if port and LOGIN_SERVICES.get(service) in protocols:
                where = _line(Path(file), rf"\s*inet_listener {re.escape(listener)}\b")
                listeners.append(Listener("dovecot", f"{service}/{listener}", port, where))
        elif line == "}":
            service, listener = None, None
    return listeners


def sockets(netns: Optional[str]) -> list[Listener]:
    """The TCP sockets listening on this host (or in `netns`), for the
    publications on the firewall itself."""
    argv = ["ss", "-Hltn"] if netns is None else ["ip", "netns", "exec", netns, "ss", "-Hltn"]
    found = []
    for line in _run(argv).splitlines():
        local = line.split()[3]
        host, _, port = local.rpartition(":")
        found.append(Listener("socket", local, int(port), None,
                              loopback=_is_loopback(host.split("%")[0])))
    return found


def run(policy: Policy, postfix_dir: Optional[str] = None, dovecot_file: Optional[str] = None,
        netns: Optional[str] = None) -> list[Finding]:
    """Every finding, publications first (policy order), then listeners."""
    listeners, settings = (postfix(postfix_dir) if postfix_dir else ([], {}))
    if dovecot_file:
        listeners += dovecot(dovecot_file)
    own = sockets(netns) if any(p.server is None for p in policy.publish) else []
    expected = ((POSTFIX_PORTS if postfix_dir else set())
                | (DOVECOT_PORTS if dovecot_file else set()))
    findings = []
    for rule, name, port in _published_ports(policy):
        findings.append(_served(rule, name, port, own if rule.server is None else listeners,
                                expected))
        if settings and any(l.program == "postfix" and l.port == port for l in listeners):
            findings += _postfix_sees(policy, rule, name, port, listeners, settings, postfix_dir)
    unique = dict.fromkeys(f for f in findings if f is not None)   # a zone's relay once
    return list(unique) + _unpublished(policy, listeners)


def _published_ports(policy: Policy):
    """(publication, service, port the server listens on) of each TCP port."""
    for rule in policy.publish:
        for service in rule.services:
            for port in service.ports:
                if port.protocol == "tcp" and port.low == port.high:
                    yield rule, service.name, service.server_port or port.low


def _served(rule: Publish, name: str, port: int, listeners: list[Listener],
            expected: set[int]) -> Optional[Finding]:
    """ok, or an error: nothing listens where a publication sends clients
    (a port the given configurations' program serves, or on the firewall)."""
    subject = f"{rule.name}"
    what = f"{name} (IPv{4 if rule.family == 'ip' else 6}) on port {port}"
    mine = [l for l in listeners if l.port == port and not l.loopback]
    if mine:
        return Finding("ok", subject, f"{what}: {mine[0].program} {mine[0].name} listens",
                       mine[0].where)
    elsewhere = [l for l in listeners if l.name.rpartition("/")[2] == name and not l.loopback]
    if elsewhere:
        return Finding("error", subject, f"{what}: {elsewhere[0].program} {elsewhere[0].name} "
                       f"listens on {elsewhere[0].port} instead (server_port: "
                       f"{elsewhere[0].port}?)", elsewhere[0].where)
    if rule.server is None or port in expected:
        return Finding("error", subject, f"{what} is published, but nothing listens there")
    return None


def _unpublished(policy: Policy, listeners: list[Listener]) -> list[Finding]:
    served = {service.server_port or port.low for rule in policy.publish
              for service in rule.services for port in service.ports}
    return [Finding("warning", None, f"{l.program} {l.name} listens on port {l.port}, which "
                    "no publication names: unreachable from outside, or meant to be "
                    "published", l.where)
            for l in listeners if l.program != "socket" and not l.loopback
            and l.port not in served]


def _postfix_sees(policy: Policy, rule: Publish, name: str, port: int,
                  listeners: list[Listener], settings: dict, directory: str) -> list[Finding]:
    """What Postfix sees of this publication's clients: IPv6 at all, and
    under hairpin SNAT within the server's zone the firewall's address."""
    main = Path(directory) / "main.cf"
    found = []
    protocols = settings["inet_protocols"].replace(",", " ").split()
    if rule.family == "ip6" and "all" not in protocols and "ipv6" not in protocols:
        found.append(Finding("error", rule.name, f"{name} is published over IPv6, but "
                             f"inet_protocols = {settings['inet_protocols']}",
                             _line(main, r"\s*inet_protocols\s*=")))
    zone = policy.firewall.zone_named(rule.zone)
    if zone is None or zone.name not in rule.hairpin or rule.external_address is None:
        return found
    source = zone.address(rule.family)
    described = (f"hairpin SNAT address {source}" if source else
                 f"the firewall's address on zone {zone.name} (masqueraded hairpin)")
    trusted = _mynetworks(settings["mynetworks"])
    networks = [ipaddress.ip_network(t) for t in zone.networks.texts(rule.family)]
    if (source is not None and any(ipaddress.ip_address(str(source)) in n for n in trusted)
            or source is None and any(z.version == n.version and z.subnet_of(n)
                                      for z in networks for n in trusted)):
        found.append(Finding("error", rule.name, f"{described} is inside mynetworks: every "
                             f"hairpin client of zone {zone.name} may relay through it "
                             "(an open relay to them)", _line(main, r"\s*mynetworks\s*=")))
    listener = next(l for l in listeners if l.program == "postfix" and l.port == port)
    if listener.postscreen:
        found.append(Finding("warning", rule.name, f"postscreen on port {port} sees every "
                             f"hairpin client of zone {zone.name} as {described}",
                             listener.where))
    if settings["smtpd_client_connection_rate_limit"] not in ("0", ""):
        found.append(Finding("warning", rule.name, "smtpd_client_connection_rate_limit "
                             f"counts every hairpin client of zone {zone.name} as one "
                             f"({described})",
                             _line(main, r"\s*smtpd_client_connection_rate_limit\s*=")))
    return found


def _mynetworks(value: str) -> list:
    """mynetworks' literal networks ([::1]/128 too); lookup tables are skipped."""
    found = []
    for token in value.replace(",", " ").split():
        try:
            found.append(ipaddress.ip_network(token.replace("[", "").replace("]", ""),
                                              strict=False))
        except ValueError:
            continue
    return found
