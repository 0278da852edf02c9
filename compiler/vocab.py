"""The fixed vocabulary of policies and rulesets, each fact written once.

Families, week days, ports, the built-in services and the ICMP type lists of
the fixed rules are read from here by every stage, by the generators and by
the tests; nothing else spells them.
"""

from __future__ import annotations

from dataclasses import dataclass

TABLE_FAMILY = "inet"                        # the one family of the table mailpubc writes
FAMILIES = ("ip", "ip6")                     # nft's names: `ip saddr`, `ip6 saddr`
VERSIONS = {"ip": 4, "ip6": 6}
FAMILY_NAMES = {"ip": "IPv4", "ip6": "IPv6"}
SET_TYPES = {"ip": "ipv4_addr", "ip6": "ipv6_addr"}
SET_SUFFIX = {"ip": "_v4", "ip6": "_v6"}
# a counter's family (its name's last part, the metrics' label): nft's
# `meta nfproto` names; any: a rule that matches both families
FAMILY_LABELS = {"ip": "ipv4", "ip6": "ipv6", None: "any"}

WEEK = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")   # policy order, Monday first
# nft numbers days from Sunday (0) and lists them by these names
NFT_DAY_NAMES = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")


def nft_day(day: str) -> int:
    """nft's number of a policy day name: mon -> 1, sun -> 0."""
    return (WEEK.index(day) + 1) % 7


# base chain priorities by name, and the numbers libnftables JSON lists them as
PRIORITIES = {"raw": -300, "dstnat": -100, "filter": 0, "srcnat": 100}


@dataclass(frozen=True, slots=True, order=True)
class PortRange:
    protocol: str          # "tcp" or "udp"
    low: int
    high: int

    def overlaps(self, other: "PortRange") -> bool:
        return (self.protocol == other.protocol
                and self.low <= other.high and other.low <= self.high)

    def __str__(self) -> str:
        if self.protocol == ECHO_PROTOCOL:
            return "ping"
        ports = str(self.low) if self.low == self.high else f"{self.low}-{self.high}"
        return f"{self.protocol}/{ports}"


# `ping`: ICMP and ICMPv6 echo request, a "port" of its own protocol with no
# number, so that services, merging and conflicts treat it like a port
ECHO_PROTOCOL = "echo"
ECHO = PortRange(ECHO_PROTOCOL, 0, 0)
ICMP_PROTOCOLS = {"ip": "icmp", "ip6": "icmpv6"}
ICMP_FAMILIES = {protocol: family for family, protocol in ICMP_PROTOCOLS.items()}
ECHO_REQUEST = "echo-request"             # the type's name in both ICMP and ICMPv6

BUILTIN_SERVICES: dict[str, tuple[PortRange, ...]] = {
    "smtp": (PortRange("tcp", 25, 25),),
    "smtps": (PortRange("tcp", 465, 465),),
    "submission": (PortRange("tcp", 587, 587),),
    "pop3": (PortRange("tcp", 110, 110),),
    "pop3s": (PortRange("tcp", 995, 995),),
    "imap": (PortRange("tcp", 143, 143),),
    "imaps": (PortRange("tcp", 993, 993),),
    "dns": (PortRange("udp", 53, 53), PortRange("tcp", 53, 53)),
    "dns-zone-transfer": (PortRange("tcp", 53, 53),),
    "ping": (ECHO,),
    "managesieve": (PortRange("tcp", 4190, 4190),),
    "http": (PortRange("tcp", 80, 80),),
    "https": (PortRange("tcp", 443, 443),),
}
# built in after version 1 was published: a policy may still define its own
LATER_BUILTINS = ("ping", "managesieve", "http", "https")
SSH = PortRange("tcp", 22, 22)             # the default of firewall.management.ssh_port

# The fixed rules' ICMP types (docs/ruleset.md says why each is there).
NEIGHBOUR_DISCOVERY = ("nd-neighbor-solicit", "nd-neighbor-advert",
                       "nd-router-solicit", "nd-router-advert")
MLD = ("mld-listener-query", "mld-listener-report", "mld-listener-done", "mld2-listener-report")
MLD_REPORTS = ("mld-listener-report", "mld2-listener-report")   # may come from :: (see ruleset.md)
ICMP_ERRORS = ("destination-unreachable", "time-exceeded", "parameter-problem")
ICMPV6_ERRORS = ("destination-unreachable", "packet-too-big", "time-exceeded",
                 "parameter-problem")
