"""`mailpubc table`: the seed's published-services table, from the typed model.

One row per publication, service and port range of that service. Each
column has one function below that reads it from the model. The limits
column is shown only when some row has limits.
"""

from __future__ import annotations

import json
from typing import Optional

from .model import Policy, Publish, Service
from .vocab import ECHO_PROTOCOL, ECHO_REQUEST, FAMILIES, PortRange

COLUMNS = ("rule", "service", "external address", "protocol", "port", "server",
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


def _allowed_from(publication: Publish) -> str:
    sources = publication.allow_from
    if sources.any:
        return "any"
    if sources.set_name:
        return sources.set_name
    return ", ".join(text for family in FAMILIES for text in sources.addresses.texts(family))


def _limits(publication: Publish) -> Optional[str]:
    limit = publication.limit
    if limit is None:
        return None
    parts = []
    if limit.new is not None:
        parts.append(f"new {limit.new.count}/{limit.new.unit}"
                     + (f" burst {limit.burst}" if limit.burst else ""))
    if limit.concurrent is not None:
        parts.append(f"concurrent {limit.concurrent}")
    return ", ".join(parts)


def rows(policy: Policy) -> list[dict]:
    """The table as data: one dict a row, keyed by COLUMNS (and LIMITS when set)."""
    found = []
    for publication in policy.publish:
        for service in publication.services:
            for port in service.ports:
                row = dict(zip(COLUMNS, (
                    publication.name, service.name, _external_address(publication),
                    _protocol(port), _port(port), _server(publication),
                    _server_port(publication, service, port), _allowed_from(publication))))
                limits = _limits(publication)
                if limits is not None:
                    row[LIMITS] = limits
                found.append(row)
    return found


def render(policy: Policy, output_format: str) -> str:
    """The table as `text` (aligned columns), `markdown` or `json` (keys with
    `_` for spaces: external_address, server_port, allowed_from)."""
    table = rows(policy)
    if output_format == "json":
        keyed = [{key.replace(" ", "_"): value for key, value in row.items()} for row in table]
        return json.dumps({"publications": keyed}, indent=2) + "\n"
    columns = COLUMNS + ((LIMITS,) if any(LIMITS in row for row in table) else ())
    cells = [[row.get(column, "") for column in columns] for row in table]
    if output_format == "markdown":
        lines = [columns, ["---"] * len(columns)] + cells
        return "".join("| " + " | ".join(line) + " |\n" for line in lines)
    widths = [max(len(line[i]) for line in [columns] + cells) for i in range(len(columns))]
    return "".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip()
                   + "\n" for line in [columns] + cells)
