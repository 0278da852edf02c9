"""`mailpubc table`: the seed's published-services table, from the typed model.

One row per publication, service and port range of that service. Each
column has one function below that reads it from the model, so that a new
publishing key (redirected server ports, `allow_from`, limits, routed
publications) changes one line. The limits column is shown only when some
row has limits.
"""

from __future__ import annotations

import json
from typing import Optional

from .model import Policy, Publish, Service
from .vocab import PortRange

COLUMNS = ("rule", "service", "external address", "protocol", "port", "server",
           "server port", "allowed from")
LIMITS = "limits"


def _external_address(publication: Publish) -> str:
    return str(publication.external_address)


def _server(publication: Publish) -> str:
    return "localhost" if publication.server is None else str(publication.server)


def _port(port: PortRange) -> str:
    return str(port.low) if port.low == port.high else f"{port.low}-{port.high}"


def _server_port(publication: Publish, service: Service, port: PortRange) -> str:
    return _port(port)               # no redirection yet: the server listens where clients connect


def _allowed_from(publication: Publish) -> str:
    return "any"


def _limits(publication: Publish) -> Optional[str]:
    return None


def rows(policy: Policy) -> list[dict]:
    """The table as data: one dict a row, keyed by COLUMNS (and LIMITS when set)."""
    found = []
    for publication in policy.publish:
        for service in publication.services:
            for port in service.ports:
                row = dict(zip(COLUMNS, (
                    publication.name, service.name, _external_address(publication),
                    port.protocol, _port(port), _server(publication),
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
