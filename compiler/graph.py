"""`mailpubc graph`: an SVG picture of the policy, laid out by Graphviz.

The firewall (its interfaces, external addresses and internal networks),
each publication from its external address to its server, and each outbound
rule from its sources to its destinations. Node names are generated
(`ext0`, `pub1`); user text appears only in labels, which are HTML-like
labels built from `html.escape`d pieces, so no name or address can change
the DOT structure or the SVG.
"""

from __future__ import annotations

import html

import graphviz

from .model import AddressRef, Outbound, Policy, Publish
from .vocab import FAMILIES

MAX_LISTED = 6     # addresses shown per node; the rest are counted


def _label(title: str, *lines: str) -> str:
    """An HTML-like label: a bold title, then one escaped line each."""
    rows = [f"<B>{html.escape(title)}</B>"] + [html.escape(line) for line in lines]
    return "<" + "<BR/>".join(rows) + ">"


def _address_lines(ref: AddressRef) -> list[str]:
    if ref.any:
        return ["any"]
    texts = [text for family in FAMILIES for text in ref.addresses.texts(family)]
    shown = texts[:MAX_LISTED]
    if len(texts) > MAX_LISTED:
        shown.append(f"... {len(texts) - MAX_LISTED} more")
    lines = (["localhost (the firewall)"] if ref.localhost else []) + shown
    return ([f"set {ref.set_name}"] if ref.set_name else []) + lines


def _service_names(rule: Publish | Outbound) -> str:
    return ", ".join(service.name for service in rule.services)


def build(policy: Policy) -> graphviz.Digraph:
    """The picture as a Graphviz graph (render with `.pipe(format="svg")`)."""
    firewall = policy.firewall
    font = {"fontname": "Helvetica"}
    graph = graphviz.Digraph(name=firewall.table, graph_attr={"rankdir": "LR", **font},
                             node_attr={"shape": "box", **font}, edge_attr=font)
    graph.node("internet", _label("Internet"), shape="ellipse")
    external = {address: f"ext{i}" for i, address in enumerate(firewall.external_addresses)}
    _firewall(graph, firewall, external)
    for node in external.values():
        graph.edge("internet", node)
    _publications(graph, policy, external)
    _outbound(graph, policy)
    return graph


def _firewall(graph: graphviz.Digraph, firewall, external: dict) -> None:
    """The firewall as a box: the host, its external addresses, the internal side."""
    with graph.subgraph(name="cluster_firewall") as box:
        box.attr(label=_label("firewall", f"table inet {firewall.table}"))
        box.node("host", _label("firewall host", "localhost"))
        for address, node in external.items():
            box.node(node, _label(str(address), f"on {firewall.external_interface}"))
        for i, zone in enumerate(firewall.zones):
            networks = [text for family in FAMILIES for text in zone.networks.texts(family)]
            box.node(f"zone{i}", _label(f"{zone.name} {zone.interface}", *networks))


def _publications(graph: graphviz.Digraph, policy: Policy, external: dict) -> None:
    """Each publication from its external address (or routed) to its server."""
    servers: dict[str, str] = {}
    for i, publication in enumerate(policy.publish):
        node = f"pub{i}"
        graph.node(node, _label(f"publish {publication.name}", _service_names(publication)),
                   style="rounded")
        if publication.external_address is None:     # routed: reached at its own address
            graph.edge("internet", node, label="routed")
        else:
            graph.edge(external[publication.external_address], node)
        if publication.server is None:
            graph.edge(node, "host")
            continue
        server = str(publication.server)
        if server not in servers:
            servers[server] = f"server{len(servers)}"
            graph.node(servers[server], _label("server", server))
        graph.edge(node, servers[server])


def _outbound(graph: graphviz.Digraph, policy: Policy) -> None:
    """Each outbound rule between its sources and its destinations."""
    for i, rule in enumerate(policy.outbound):
        node = f"out{i}"
        schedule = [f"schedule {rule.schedule.name}"] if rule.schedule else []
        graph.node(node, _label(f"outbound {rule.name}", _service_names(rule), *schedule),
                   style="rounded,dashed")
        graph.node(f"{node}from", _label("from", *_address_lines(rule.sources)))
        graph.node(f"{node}to", _label("to", *_address_lines(rule.destinations)))
        graph.edge(f"{node}from", node)
        graph.edge(node, f"{node}to")


def render(policy: Policy, output_format: str = "svg") -> str:
    """The picture as SVG, as its DOT source (`dot`), or laid out as
    Graphviz's JSON (`json`: every node and edge with its label and place)."""
    graph = build(policy)
    return graph.source if output_format == "dot" else graph.pipe(format=output_format,
                                                                  encoding="utf-8")
