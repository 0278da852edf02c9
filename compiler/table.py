"""`mailpubc table`: the seed's published-services table, from the typed model.

One row per publication, family, service and port range of that service
(a dual-stack publication has a row per family), with the zone that holds
the server and the service's own allow_from and limits. Each
column has one function below that reads it from the model. The limits
column is shown only when some row has limits. The JSON form gives the
same rows as typed values (`typed_row`), not the text's display strings.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Iterator, Optional

from .columns import aligned
from .model import Policy, Publish, Service
from .vocab import ECHO_PROTOCOL, ECHO_REQUEST, FAMILIES, PortRange

COLUMNS = ("rule", "service", "external address", "protocol", "port", "server", "zone",
           "server port", "allowed from")
LIMITS = "limits"


def _external_address(publication: Publish) -> str:
    if publication.external_address is None:
        return "(routed: its own)"
    return str(publication.external_address)


def _server(publication: Publish) -> str:
    return "localhost" if publication.server is None else str(publication.server)


def _protocol(port: PortRange) -> str:
    return "icmp" if port.protocol == ECHO_PROTOCOL else port.protocol


def _port(port: PortRange) -> str:
    if port.protocol == ECHO_PROTOCOL:
        return ECHO_REQUEST
    return str(port.low) if port.low == port.high else f"{port.low}-{port.high}"


def _server_port(publication: Publish, service: Service, port: PortRange) -> str:
    return _port(port) if service.server_port is None else str(service.server_port)


def _zone(publication: Publish) -> str:
    return "(firewall)" if publication.server is None else publication.zone


def _allowed_from(service: Service) -> str:
    sources = service.allow_from
    if sources.any:
        return "any"
    if sources.set_name:
        return sources.set_name
    return ", ".join(text for family in FAMILIES for text in sources.addresses.texts(family))


def _limits(service: Service) -> Optional[str]:
    limit = service.limit
    if limit is None:
        return None
    parts = []
    if limit.new is not None:
        parts.append(f"new {limit.new.count}/{limit.new.unit}"
                     + (f" burst {limit.burst}" if limit.burst else ""))
    if limit.concurrent is not None:
        parts.append(f"concurrent {limit.concurrent}")
    return ", ".join(parts)


def _entries(policy: Policy) -> Iterator[tuple[Publish, Service, PortRange]]:
    """Each row's publication, service and port range, in policy order."""
    for publication in policy.publish:
        for service in publication.services:
            for port in service.ports:
                yield publication, service, port


def rows(policy: Policy) -> list[dict]:
    """The table as display strings: one dict a row, keyed by COLUMNS (and
    LIMITS when set)."""
    found = []
    for publication, service, port in _entries(policy):
        row = dict(zip(COLUMNS, (
            publication.name, service.name, _external_address(publication),
            _protocol(port), _port(port), _server(publication), _zone(publication),
            _server_port(publication, service, port), _allowed_from(service))))
        limits = _limits(service)
        if limits is not None:
            row[LIMITS] = limits
        found.append(row)
    return found


def typed_row(publication: Publish, service: Service, port: PortRange) -> dict:
    """A row as typed values (README, Reports: `table --format json`): ports
    are integers, a range is `port`..`port_end`, ICMP has no port but an
    `icmp_type`, a routed publication's external_address is null, and
    allowed_from is null for any source, else the addresses it allows;
    zone is the server's (null for the firewall itself)."""
    echo = port.protocol == ECHO_PROTOCOL
    server_low, server_high = ((port.low, port.high) if service.server_port is None
                               else (service.server_port, service.server_port))
    sources = service.allow_from
    external = publication.external_address
    return {
        "rule": publication.name,
        "service": service.name,
        "external_address": None if external is None else str(external),
        "protocol": _protocol(port),
        "port": None if echo else port.low,
        "port_end": None if echo else port.high,
        "icmp_type": ECHO_REQUEST if echo else None,
        "server": _server(publication),
        "zone": publication.zone,
        "server_port": None if echo else server_low,
        "server_port_end": None if echo else server_high,
        "allowed_from": None if sources.any else [
            text for family in FAMILIES for text in sources.addresses.texts(family)],
        "allowed_from_set": sources.set_name,
        "limits": None if service.limit is None else asdict(service.limit),
    }


def render(policy: Policy, output_format: str) -> str:
    """The table as `text` (aligned columns), `markdown` or `json` (typed rows)."""
    if output_format == "json":
        typed = [typed_row(*entry) for entry in _entries(policy)]
        return json.dumps({"publications": typed}, indent=2) + "\n"
    table = rows(policy)
    columns = COLUMNS + ((LIMITS,) if any(LIMITS in row for row in table) else ())
    cells = [[row.get(column, "") for column in columns] for row in table]
    if output_format == "markdown":
        lines = [columns, ["---"] * len(columns)] + cells
        return "".join("| " + " | ".join(line) + " |\n" for line in lines)
    return "".join(line + "\n" for line in aligned([columns] + cells))
