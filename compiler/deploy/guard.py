"""What apply checks before it loads: the lockout guard (would the SSH
session's next login get in?) and the warnings about other tables that drop
what ours accepts.
"""

from __future__ import annotations

import ipaddress
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Iterable, Optional

from .. import nft
from ..addresses import Address, parse_port
from ..evaluate import Decision, endpoint, evaluate
from ..explain import describe
from ..listing import Listing
from ..state import State
from ..vocab import TABLE_FAMILY

if TYPE_CHECKING:
    from ..api import Result

# what a drop base chain of another family drops, and with it what our table accepts
DROPPED_WITH = {"arp": "ARP, and with it every IPv4 connection",
                "bridge": "the frames of its bridge's ports, and with them what",
                "netdev": "all of its device's traffic, and with it what"}


def ssh_guard(result: Result, ssh_connection: Optional[str],
              at: Optional[datetime] = None) -> Optional[str]:
    """Why loading the compiled policy would lock out the SSH client named in
    SSH_CONNECTION ("CLIENT_IP CLIENT_PORT SERVER_IP SERVER_PORT"), or None
    when it lets the client's next login in. The packet evaluator, which the
    end-to-end suite holds to the kernel, decides a new connection from the
    client to the address (one of this host's) and port it reached. The
    session itself survives only where conntrack tracked it before the load:
    elsewhere its next packet is a new connection too."""
    if not ssh_connection:
        return None
    try:
        client, _, server, port = ssh_connection.split()
        client, server, port = _unmapped(client), _unmapped(server), parse_port(port)
        if port is None or client.version != server.version:
            raise ValueError(ssh_connection)
    except ValueError:
        return f"cannot read SSH_CONNECTION {ssh_connection!r}; use --force to apply anyway"
    decision = evaluate(result.ruleset, client, server, "tcp", port,
                        at or datetime.now(timezone.utc), local=[server])
    return _locked_out(decision, client, endpoint(decision.packet.family, int(server), port))


def _locked_out(decision: Decision, client: Address, reached: str) -> Optional[str]:
    """Why `decision` keeps the client out of the sshd it reached, or None."""
    session = "this session survives only if conntrack already tracks it"
    port = reached.rpartition(":")[2]
    if decision.verdict != "accept":
        if decision.origin is not None and decision.origin.kind == "block":
            return (f"refusing to apply: {client}, the address this SSH session comes from, "
                    f"is in {decision.origin.name}, which drops its new connections, so your "
                    f"next login would be refused ({session}); use --force")
        return (f"refusing to apply: no rule lets in {client}, the address this SSH session "
                f"comes from (port {port}): {describe(decision.origin, decision.chain)} would "
                f"{decision.verdict} your next login ({session}); add it to "
                "firewall.management.ssh, or use --force")
    if decision.destination != reached:
        translation = next(step for step in decision.steps
                           if step.action.startswith(("dnat", "redirect")))
        return (f"refusing to apply: a new SSH connection from {client} to {reached} "
                f"would go to {decision.destination} ({describe(translation.origin)}), "
                "not to this host's sshd, so it would lock you out; use --force")
    return None


def _unmapped(text: str) -> Address:
    """An address of SSH_CONNECTION without its zone; an IPv4-mapped one is the
    IPv4 address its packets carry (a dual-stack sshd reports it so)."""
    address = ipaddress.ip_address(text.split("%")[0])
    return address.ipv4_mapped or address if address.version == 6 else address


def foreign_drop_chains(listing: Listing, table: str, replaced: Iterable[str] = ()) -> list[str]:
    """Warnings for base chains of other tables (not `table`, nor the tables
    apply `replaced`) with policy drop, of any family, type and hook: a packet
    must pass every base chain on its way, so each drops what our table
    accepts, and in the families of DROPPED_WITH more than that."""
    ours = {(TABLE_FAMILY, name) for name in (table, *replaced)}
    found = []
    for chain in listing.drop_chains():
        if (chain["family"], chain["table"]) in ours:
            continue
        devices = chain.get("dev") or []        # nft after 1.0.6: a name or a list
        devices = [devices] if isinstance(devices, str) else devices
        on = f" of device {', '.join(devices)}" if devices else ""
        found.append(f"table {chain['family']} {chain['table']} chain {chain['name']} "
                     f"drops on hook {chain['hook']}{on} (policy drop): it drops "
                     f"{DROPPED_WITH.get(chain['family'], 'what')} "
                     f"table {TABLE_FAMILY} {table} accepts")
    return found


def live_warnings(table: str, netns: Optional[str] = None) -> list[str]:
    """foreign_drop_chains of the live ruleset; the table apply recorded last
    is not foreign (a rename deletes it). Listed tersely: chains are all it
    reads, and a block list's elements took 2 s of `diff` to list again."""
    recorded = (State.of(netns).read("state") or {}).get("table")
    return foreign_drop_chains(Listing.of(nft.list_ruleset(netns, terse=True)), table,
                               [recorded] if recorded else [])
