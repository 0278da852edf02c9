"""The lab network a policy describes, and building it from namespaces.

The firewall namespace gets the policy's own interface names and external
addresses.  Outside hosts share one bridge with the firewall's external side
(every address there is a /32 or /128 with an on-link default route, as on
an ISP link) and reach the internal networks only through the firewall.
Inside hosts share a bridge per internal zone with the firewall's interface
on that zone, and use the firewall as their default gateway, as
docs/ruleset.md asks of a published server.

Hosts are derived from the compiled policy (``compiler.model.Policy``, the
compiler's own reading of it) unless a scenario names them itself:
``client`` and ``internet`` outside, one inside host per published server
(named after the publishing rule) and per outbound source (named after the
outbound rule; an existing host that lies in the source set is reused under
that name), and ``plain``, an inside host in no address set.
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass, field

from mailpubc.model import Addresses, Policy
from mailpubc.vocab import FAMILIES

from .netns import CommandError, Namespace

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Which server program answers which ports.
SERVER_PORTS = {
    "smtp": {("tcp", 25), ("tcp", 465), ("tcp", 587)},
    "dovecot": {("tcp", 110), ("tcp", 143), ("tcp", 993), ("tcp", 995)},
    "dns": {("udp", 53), ("tcp", 53)},
    "ssh": {("tcp", 22), ("tcp", 2222)},   # the default ssh_port and the scenarios' other one
}
CANARY_PORT = 9

# An MLD-snooping switch that is its own querier (it queries from its IPv6
# link-local address), with timers in centiseconds so short that a group
# nobody renews is forgotten within seconds: queries every second, answers
# within half a second, members forgotten 6 s after their last report (a
# margin of several missed rounds, for a loaded machine).
SNOOPING = ("mcast_snooping", "1", "mcast_query_interval", "100",
            "mcast_startup_query_interval", "100", "mcast_query_response_interval", "50",
            "mcast_membership_interval", "600")
# The querier is switched on only once those timers are set: the kernel
# starts it with a wait of one response interval, the interval as it is when
# the querier is switched on (set in the same command: the default 10 s).
# Until that wait is over the bridge floods instead of snooping (older
# kernels too), and flooding skips the firewall's ports (mcast_flood off).
QUERIER = ("mcast_querier", "1")
# How long the lab waits at most for each bridge to forward by membership.
SNOOPING_READY = 30.0
# How long a lab waits after loading the ruleset: longer than the membership
# interval plus one query round, so a membership the firewall did not renew is gone.
MEMBERSHIP_EXPIRY = 8.0

DEFAULT_OUTSIDE = {
    "client": ["192.0.2.100", "2001:db8:2::100"],
    "internet": ["203.0.113.53", "2001:db8:3::53"],
}


@dataclass
class Host:
    name: str
    side: str                     # "outside", "inside" or "firewall"
    addresses: list[Address]
    servers: list[str] = field(default_factory=list)
    aliases: list[str] = field(default_factory=list)
    ns: Namespace | None = None

    def address(self, family: int = 4) -> Address:
        for addr in self.addresses:
            if addr.version == family:
                return addr
        raise KeyError(f"host {self.name} has no IPv{family} address")


def networks(addresses: Addresses) -> list[Network]:
    """The model's merged intervals as the fewest networks (IPv4 first), the
    form ``ip`` and membership tests take."""
    return [ipaddress.ip_network(text) for family in FAMILIES for text in addresses.texts(family)]


def common(a: Addresses, b: Addresses) -> Addresses:
    """The addresses in both ``a`` and ``b``: the part of a rule's sources in the
    internal networks, where an inside host can stand in for the rule."""
    def overlap(family: str) -> list[tuple[int, int]]:
        return [(max(low, first), min(high, last))
                for low, high in a.family(family) for first, last in b.family(family)
                if max(low, first) <= min(high, last)]
    return Addresses.of(overlap("ip"), overlap("ip6"))


def first_host(net: Network) -> Address:
    return net.network_address + 1 if net.num_addresses > 2 else net.network_address


def gateway(net: Network) -> Address:
    """The firewall's own address in an internal network: its last usable one."""
    return net[-2] if net.num_addresses > 2 else net[-1]


class Topology:
    """The hosts of one scenario and the namespaces that realise them."""

    def __init__(self, policy: Policy, overrides: dict | None = None, snooping: bool = False):
        self.policy = policy
        self.snooping = snooping
        self.internal = networks(policy.firewall.internal_networks)
        self.hosts: dict[str, Host] = {}
        self.namespaces: list[Namespace] = []
        gateways = [gateway(net) for net in self.internal]
        # firewall.internal.address comes after the gateways: masquerade picks a
        # gateway (the primary address), SNAT the configured one
        own = [a for a in policy.firewall.internal_addresses if a not in gateways]
        self.firewall = self._add(Host("firewall", "firewall",
                                       [*policy.firewall.external_addresses, *gateways, *own],
                                       ["ssh"]))
        for name, spec in (overrides or {}).items():
            side, servers = spec.get("side", "inside"), list(spec.get("servers", []))
            if side not in ("inside", "outside") or set(servers) - set(SERVER_PORTS):
                raise ValueError(f"host {name}: side must be inside or outside and servers "
                                 f"among {sorted(SERVER_PORTS)}")
            self._add(Host(name, side, [ipaddress.ip_address(a) for a in spec["addresses"]],
                           servers))
        for name, addrs in DEFAULT_OUTSIDE.items():
            if name not in self.hosts:
                servers = ["smtp", "dns"] if name == "internet" else []
                self._add(Host(name, "outside", [ipaddress.ip_address(a) for a in addrs], servers))
        self._derive_inside()

    def _add(self, host: Host) -> Host:
        self.hosts[host.name] = host
        return host

    def owner(self, addr: Address) -> Host | None:
        return next((h for h in self.hosts.values() if addr in h.addresses), None)

    def _derive_inside(self) -> None:
        pol = self.policy
        for rule in pol.publish:
            services = {service.name for service in rule.services}
            wanted = ["smtp", "dovecot"] + (["dns"] if services & {"dns", "dns-zone-transfer"} else [])
            if rule.server is None:
                host = self.firewall
            elif self.owner(rule.server) is None and rule.name in self.hosts:
                host = self.hosts[rule.name]        # a dual-stack server: its other family
                host.addresses.append(rule.server)
            else:
                host = self.owner(rule.server) or self._add(Host(rule.name, "inside", [rule.server]))
            if host.name != rule.name and rule.name not in self.hosts:
                host.aliases.append(rule.name)
            host.servers += [s for s in wanted if s not in host.servers]
        for rule in pol.outbound:
            if rule.name in self.hosts:
                continue
            # "localhost" has no addresses, so it derives no host.
            nets = networks(common(rule.sources.addresses, pol.firewall.internal_networks))
            existing = next((h for h in self.hosts.values() if h.side == "inside"
                             and any(a in n for a in h.addresses for n in nets)), None)
            if existing:
                existing.aliases.append(rule.name)
            elif nets:
                first = {}
                for net in nets:
                    first.setdefault(net.version, first_host(net))
                self._add(Host(rule.name, "inside", list(first.values())))
        if "plain" not in self.hosts and self.internal:
            self._add(Host("plain", "inside", [self._unlisted(net) for net in self.internal]))

    def _listed(self) -> list[Network]:
        """Every network some address set, server or rule source names."""
        pol = self.policy
        nets = [net for named in pol.address_sets for net in networks(named.addresses)]
        nets += [ipaddress.ip_network(p.server) for p in pol.publish if p.server is not None]
        return nets + [net for r in pol.outbound for net in networks(r.sources.addresses)]

    def _unlisted(self, net: Network) -> Address:
        taken = [n for n in self._listed() if n.version == net.version]
        used = {a for h in self.hosts.values() for a in h.addresses}
        for offset in range(3, 200):
            addr = net[-offset]
            if addr not in used and not any(addr in n for n in taken):
                return addr
        raise ValueError(f"no address in {net} lies outside every address set")

    def host(self, name: str) -> Host:
        for host in self.hosts.values():
            if name == host.name or name in host.aliases:
                return host
        raise KeyError(f"no host named {name!r}; hosts: {self.names()}")

    def names(self) -> list[str]:
        return [n for h in self.hosts.values() for n in [h.name, *h.aliases]]

    def all_addresses(self) -> list[Address]:
        return [a for h in self.hosts.values() for a in h.addresses]

    # -- building ---------------------------------------------------------

    def build(self) -> None:
        """Create namespaces, links, addresses and routes for every host."""
        config = self.policy.firewall
        self._switch = self._namespace("sw")
        options = SNOOPING if self.snooping else ("mcast_snooping", "0")
        for bridge in ("wan", *self._zone_bridges()):
            self._switch.ip("link", "add", bridge, "type", "bridge", *options)
            if self.snooping:
                self._switch.ip("link", "set", bridge, "type", "bridge", *QUERIER)
            self._switch.ip("link", "set", bridge, "up")

        fw = self.firewall
        fw.ns = self._namespace("fw")
        fw.ns.sysctl("net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
        self._plug(fw.ns, config.external_interface, "wan", "fw-ext", members_only=True)
        for addr in config.external_addresses:
            fw.ns.ip("addr", "add", f"{addr}/{addr.max_prefixlen}", "dev",
                     config.external_interface, "nodad")
        for family in {a.version for a in config.external_addresses}:
            fw.ns.ip(f"-{family}", "route", "add", "default", "dev", config.external_interface)
        for zone, bridge in zip(config.zones, self._zone_bridges()):
            self._plug(fw.ns, zone.interface, bridge, f"fw-{bridge}", members_only=True)
            for net in networks(zone.networks):
                own = [a for a in zone.addresses if a in net and a != gateway(net)]
                for addr in [gateway(net), *own]:
                    fw.ns.ip("addr", "add", f"{addr}/{net.prefixlen}", "dev", zone.interface,
                             "nodad")

        for index, host in enumerate(h for h in self.hosts.values() if h is not fw):
            host.ns = self._namespace(f"h{index}")
            self._plug(host.ns, "eth0", self._bridge_of(host), f"p{index}")
            if host.side == "outside":
                self._outside_addresses(host)
            else:
                self._inside_addresses(host)
        if self.snooping:
            self._await_snooping()

    def _zone_bridges(self) -> list[str]:
        """The bridge of each zone, in policy order: "lan" for the first."""
        return ["lan" if i == 0 else f"zone{i}" for i in range(len(self.policy.firewall.zones))]

    def _bridge_of(self, host: Host) -> str:
        """An outside host's bridge is "wan", an inside host's its zone's."""
        if host.side == "outside":
            return "wan"
        zones = self.policy.firewall.zones
        at = next((i for i, zone in enumerate(zones) for a in host.addresses if zone.holds(a)),
                  None)
        if at is None:
            raise ValueError(f"inside host {host.name} is in no zone's networks")
        return self._zone_bridges()[at]

    def _await_snooping(self) -> None:
        """Wait until each bridge delivers a host's neighbour solicitation for a
        firewall address, which with ``mcast_flood off`` only the firewall's
        membership can do: a bridge that still floods would make the checks
        fail whatever the ruleset.  The caches are emptied after, so the checks
        solicit again."""
        external = self.policy.firewall.external_addresses
        sides = {"outside": external,
                 "inside": [a for a in self.firewall.addresses if a not in external]}
        for side, own in sides.items():
            target = next((a for a in own if a.version == 6), None)
            host = next((h for h in self.hosts.values() if h.side == side
                         and any(a.version == 6 for a in h.addresses)), None)
            if target is None or host is None:
                continue
            deadline = time.monotonic() + SNOOPING_READY
            while not self._solicited(host, target):
                if time.monotonic() > deadline:
                    raise CommandError(f"the {side} bridge did not deliver {host.name}'s "
                                       f"neighbour solicitation for {target} to the firewall "
                                       f"within {SNOOPING_READY}s")
            host.ns.ip("-6", "neigh", "flush", "all")
        self.firewall.ns.ip("-6", "neigh", "flush", "all")

    @staticmethod
    def _solicited(host: Host, target: Address) -> bool:
        """Whether ``host`` resolves ``target`` from an empty cache within its
        first solicitation's second (a ping needs the answer)."""
        host.ns.ip("-6", "neigh", "flush", "all")
        return host.ns.run("ping", "-6", "-n", "-c1", "-W1", str(target),
                           check=False).returncode == 0

    def _namespace(self, name: str) -> Namespace:
        ns = Namespace(name)
        self.namespaces.append(ns)
        return ns

    def destroy(self) -> None:
        for ns in reversed(self.namespaces):
            ns.delete()

    def _plug(self, ns: Namespace, ifname: str, bridge: str, port: str,
              members_only: bool = False) -> None:
        self._switch.ip("link", "add", port, "type", "veth", "peer", "name", ifname,
                        "netns", ns.name)
        self._switch.ip("link", "set", port, "master", bridge, "up")
        if self.snooping and members_only:
            # This port gets only the groups its host is a member of: without
            # this, a snooping bridge floods unknown groups and hides a lapse.
            self._switch.ip("link", "set", port, "type", "bridge_slave", "mcast_flood", "off")
        ns.ip("link", "set", ifname, "up")

    def _outside_addresses(self, host: Host) -> None:
        for addr in host.addresses:
            host.ns.ip("addr", "add", f"{addr}/{addr.max_prefixlen}", "dev", "eth0", "nodad")
        for family in {a.version for a in host.addresses}:
            host.ns.ip(f"-{family}", "route", "add", "default", "dev", "eth0")
            via = [a for a in self.policy.firewall.external_addresses if a.version == family]
            for net in (n for n in self.internal if n.version == family and via):
                host.ns.ip(f"-{family}", "route", "add", str(net), "via", str(via[0]),
                           "dev", "eth0", "onlink")

    def _inside_addresses(self, host: Host) -> None:
        for addr in host.addresses:
            net = next((n for n in self.internal if addr in n), None)
            if net is None:
                raise ValueError(f"inside host {host.name} address {addr} is in no internal network")
            host.ns.ip("addr", "add", f"{addr}/{net.prefixlen}", "dev", "eth0", "nodad")
            host.ns.ip(f"-{addr.version}", "route", "replace", "default", "via", str(gateway(net)))
