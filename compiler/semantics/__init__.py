"""Validate stage, part two: checks that need the whole resolved model.

Each check reads the model and reports; none changes it. Together they make
sure that every rule the ruleset will contain means what the policy says:
no rule whose match became empty (which must never widen into "accept
anything"), no two publishing rules on one external address and port, no
server or source outside the internal networks, no family mixed up.
"""

from __future__ import annotations

from ..addresses import covers, interval_texts, subtract, within
from ..diagnostics import Collector, Diagnostic, line_of
from ..model import AddressRef, Addresses, Outbound, Policy, Service, family_of
from ..vocab import BUILTIN_SERVICES, FAMILIES, FAMILY_NAMES, SSH, VERSIONS, PortRange
from .publish import (allow_from_families, hairpin, hairpin_allow_from, publish_conflicts,
                      publish_translations, routed)
from .zones import check_zones


def check(policy: Policy) -> list[Diagnostic]:
    problems = Collector()
    for checker in (check_zones, _unique_rule_names, _published_addresses, _internal_side,
                    publish_conflicts, _outbound_matches, _management, _ssh_shadowed,
                    _outbound_inside, _block_empty, routed, _shadowed_builtins,
                    publish_translations, allow_from_families, hairpin, hairpin_allow_from,
                    _mail_without_dns, _server_cannot_send, _localhost_rule_without_effect,
                    _unknown_users, _unused_sets):
        checker(policy, problems)
    return problems.diagnostics



def _outside(intervals: tuple, networks: tuple) -> list:
    """The intervals not inside `networks`; at once when one network holds
    them all, the usual case, however many sources a set has."""
    if not intervals or covers(networks, (intervals[0][0], intervals[-1][1])):
        return []
    return [interval for interval in intervals if not covers(networks, interval)]


def _unique_rule_names(policy: Policy, problems: Collector) -> None:
    first = {}
    for rule in [r for r in policy.publish if r.part == 0] + list(policy.outbound):
        if rule.name in first:
            problems.error(rule.position, f"rule name {rule.name!r} is already used "
                                          f"({line_of(first[rule.name].position)})")
        else:
            first[rule.name] = rule


def _published_addresses(policy: Policy, problems: Collector) -> None:
    firewall = policy.firewall
    listed = ", ".join(str(a) for a in firewall.external_addresses)
    external = set(firewall.external_addresses)
    for rule in policy.publish:
        if rule.external_address is None:
            continue
        if rule.external_address not in external:
            problems.error(rule.external_position,
                           f"external address {rule.external_address} is not one of the "
                           f"firewall's external addresses ({listed})")


def _internal_side(policy: Policy, problems: Collector) -> None:
    """Servers and outbound sources must lie in the internal networks."""
    firewall = policy.firewall
    networks = firewall.internal_networks
    described = ", ".join(networks.texts("ip") + networks.texts("ip6"))
    for rule in policy.publish:
        if rule.server is None:
            continue
        if not firewall.zones:
            problems.error(rule.server_position,
                           f"server {rule.server} is internal, so firewall.internal "
                           "(interface and networks) is required")
        elif not networks.contains(family_of(rule.server), (int(rule.server), int(rule.server))):
            problems.error(rule.server_position,
                           f"server {rule.server} is not in the internal networks ({described})")
    for rule in policy.outbound:
        sources = rule.sources.addresses
        if not sources:
            continue
        if not firewall.zones:
            problems.error(rule.sources.position,
                           f"outbound rule {rule.name!r} has internal sources, so "
                           "firewall.internal (interface and networks) is required")
            continue
        outside = [text for family in FAMILIES for i in _outside(sources.family(family),
                                                                 networks.family(family))
                   for text in interval_texts(VERSIONS[family], i)]
        if outside:
            shown = ", ".join(outside[:3]) + (" ..." if len(outside) > 3 else "")
            problems.error(rule.sources.position,
                           f"sources of outbound rule {rule.name!r} are not in the internal "
                           f"networks ({described}): {shown}")
        for family in FAMILIES:
            if (firewall.first_external(family) is None and _reaches_outside(rule, networks, family)
                    and not within(sources.family(family), firewall.routed_networks.family(family))):
                problems.error(rule.sources.position,
                               f"outbound rule {rule.name!r} has {FAMILY_NAMES[family]} sources "
                               f"but the firewall has no {FAMILY_NAMES[family]} external "
                               "address to translate them to")


def _reaches_outside(rule: Outbound, networks, family: str) -> bool:
    """Does the rule let its sources out by the external interface (SNAT)?"""
    return rule.destinations.any or bool(
        subtract(rule.destinations.addresses.family(family), networks.family(family)))


def _usable_families(sources: AddressRef, destinations: AddressRef) -> list[str]:
    return [f for f in FAMILIES
            if sources.addresses.family(f) and (destinations.any or destinations.addresses.family(f))]


def _outbound_matches(policy: Policy, problems: Collector) -> None:
    """A rule whose addresses match nothing is an error, never a wider rule."""
    for rule in policy.outbound:
        if not rule.destinations.any and not rule.destinations.addresses:
            problems.error(rule.destinations.position,
                           f"outbound rule {rule.name!r}: `to` matches no address")
            continue
        if not rule.sources.localhost and not rule.sources.addresses:
            problems.error(rule.sources.position,
                           f"outbound rule {rule.name!r}: `from` matches no address")
            continue
        # `from: localhost` reaches any destination; internal sources only
        # those of their own family, and the plan leaves out the rest
        if (not rule.sources.localhost and rule.sources.addresses
                and not _usable_families(rule.sources, rule.destinations)):
            problems.error(rule.sources.position,
                           f"outbound rule {rule.name!r} matches nothing: its sources and "
                           "destinations have no address family in common")


def _management(policy: Policy, problems: Collector) -> None:
    ssh = policy.firewall.ssh_sources
    if ssh is not None and not ssh.addresses:
        problems.error(ssh.position, "management.ssh matches no address")
    ping = policy.firewall.ping_sources
    if ping is not None and not ping.any and not ping.addresses:
        problems.error(ping.position, "management.ping matches no address")


def _ssh_shadowed(policy: Policy, problems: Collector) -> None:
    """A publication of tcp/22 to an internal server DNATs the firewall's own
    SSH port on that address: management.ssh no longer reaches the firewall there."""
    ssh = policy.firewall.ssh_sources
    if ssh is None:
        return
    port_ = PortRange(SSH.protocol, policy.firewall.ssh_port, policy.firewall.ssh_port)
    for rule in policy.publish:
        if rule.server is None or rule.external_address is None:
            continue
        if any(port.overlaps(port_) for service in rule.services for port in service.ports):
            problems.warning(rule.position,
                             f"publish rule {rule.name!r} forwards {rule.external_address} "
                             f"{port_} to {rule.server}, so management.ssh "
                             f"({line_of(ssh.position)}) cannot reach the firewall's own SSH "
                             "on that address")


def _outbound_inside(policy: Policy, problems: Collector) -> None:
    """An outbound rule's destinations in the sources' own zone are never
    reached through the firewall; a `to` that lies wholly there is a mistake."""
    firewall = policy.firewall
    for rule in policy.outbound:
        targets = rule.destinations
        if not rule.sources.addresses or targets.any or not targets.addresses:
            continue
        zones = [zone.networks for zone in firewall.zones
                 if zone.networks.intersection(rule.sources.addresses)]
        own = Addresses.of(*([i for networks in zones for i in networks.family(family)]
                             for family in FAMILIES))
        if all(own.contains(family, interval)
               for family in FAMILIES for interval in targets.addresses.family(family)):
            where = ("the internal networks" if len(firewall.zones) == 1
                     else "the zone of its sources")
            problems.warning(targets.position,
                             f"outbound rule {rule.name!r}: every address in `to` is inside "
                             f"{where}, so that traffic never crosses the firewall and the "
                             "rule never matches")


SMTP_PORTS = BUILTIN_SERVICES["smtp"]
DNS_PORTS = BUILTIN_SERVICES["dns"]


def _allows(services: tuple[Service, ...], wanted) -> bool:
    """Does one of `services` cover one of the `wanted` port ranges?"""
    return any(port.protocol == want.protocol and port.low <= want.low and want.high <= port.high
               for service in services for port in service.ports for want in wanted)


def _mail_without_dns(policy: Policy, problems: Collector) -> None:
    """The seed wizard's warning: a mail server that may send to any host must
    look up MX records; with no DNS going out it can send nowhere, unless it
    asks an internal DNS server that has another way out. The firewall's own
    queries pass while output is accept."""
    if any(_allows(rule.services, DNS_PORTS) for rule in policy.outbound):
        return
    own_output_open = policy.firewall.output_policy == "accept"
    for rule in policy.outbound:
        if not (rule.destinations.any and _allows(rule.services, SMTP_PORTS)):
            continue
        if own_output_open and not rule.sources.addresses:
            continue
        problems.warning(rule.position,
                         f"outbound rule {rule.name!r} sends mail to any host, but no outbound "
                         "rule allows DNS (udp/53, tcp/53): mail cannot be sent unless the SMTP "
                         "server uses a DNS server that can reach the internet another way")


def _sends_mail(rule: Outbound, server) -> bool:
    family = family_of(server)
    value = int(server)
    return (_allows(rule.services, SMTP_PORTS)
            and any(low <= value <= high for low, high in rule.sources.addresses.family(family)))


def _server_cannot_send(policy: Policy, problems: Collector) -> None:
    """A published SMTP server receives mail; with no outbound SMTP rule from
    it, the replies and mail it sends out are dropped. Once a publication:
    the addresses of a dual-stack server that cannot send, together."""
    silent: dict[str, list] = {}
    for rule in policy.publish:
        if rule.server is None or not _allows(rule.services, SMTP_PORTS):
            continue
        if not any(_sends_mail(out, rule.server) for out in policy.outbound):
            silent.setdefault(rule.name, []).append(rule)
    for name, parts in silent.items():
        servers = " and ".join(str(rule.server) for rule in parts)
        problems.warning(parts[0].position,
                         f"publish rule {name!r} publishes SMTP on {servers}, but no outbound "
                         f"rule lets {'that server' if len(parts) == 1 else 'them'} send SMTP "
                         "(tcp/25): it can receive mail but not send any")


def _localhost_rule_without_effect(policy: Policy, problems: Collector) -> None:
    """With output accept the firewall may already open any connection, so a
    rule from localhost adds nothing: probably output was meant to be drop."""
    if policy.firewall.output_policy != "accept":
        return
    for rule in policy.outbound:
        if rule.sources.localhost:
            problems.warning(rule.sources.position,
                             f"outbound rule {rule.name!r}: `localhost` has no effect while "
                             "firewall.policy.output is accept (the firewall's own traffic "
                             "is already allowed)")


def unknown_users(policy: Policy) -> list[Outbound]:
    """The outbound rules whose `user` is a name this host does not know."""
    import pwd
    unknown = []
    for rule in policy.outbound:
        if isinstance(rule.user, str):
            try:
                pwd.getpwnam(rule.user)
            except KeyError:
                unknown.append(rule)
    return unknown


def _unknown_users(policy: Policy, problems: Collector) -> None:
    """nft resolves a user name when it loads the ruleset, on the loading
    host, and refuses the whole load for a name it cannot find: said here
    when this host lacks it (the ruleset may be meant for another)."""
    for rule in unknown_users(policy):
        problems.warning(rule.position,
                         f"outbound rule {rule.name!r}: user {rule.user!r} does not exist on "
                         "this host; nft resolves the name when it loads the ruleset and "
                         "refuses a ruleset naming an unknown user, so load it only where the "
                         "user exists (--no-nft-check here), or give the uid")


def _unused_sets(policy: Policy, problems: Collector) -> None:
    for address_set in policy.address_sets:
        if not address_set.used:
            problems.warning(address_set.position,
                             f"address set {address_set.name!r} is not used by any rule or set")


def _block_empty(policy: Policy, problems: Collector) -> None:
    """A block that blocks nothing (an empty list file, say: a download that
    failed) compiles, but is probably not what was meant."""
    block = policy.firewall.block
    if block is not None and not block.addresses:
        problems.warning(block.position, "firewall.block matches no address: nothing is blocked")


def _shadowed_builtins(policy: Policy, problems: Collector) -> None:
    """A service defined before its name was built in keeps the policy's meaning."""
    for name, position in policy.shadowed_builtins:
        problems.warning(position, f"service {name!r} is also built in; this policy's own "
                                   f"definition is used, not the built-in {name!r}")


