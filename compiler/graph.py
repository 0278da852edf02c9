"""`mailpubc graph`: an SVG picture of the policy, laid out by Graphviz.

Left to right: the outside (the Internet, and outside sources and
destinations a rule names), the firewall (its external interface with its
addresses, the firewall host, each zone's interface), then each zone as a
cluster holding its networks and servers. Publications, hairpin, outbound
rules and management SSH and ping are edges along the interfaces they use,
each labelled with its rule; a dual-stack publication is one publication:
one edge naming each family's external address (or "routed"). Node names
are generated (`zone0`, `srv1`); user text appears only in labels, which
are HTML-like labels built from `html.escape`d pieces, so no name or
address can change the DOT structure or the SVG.
"""

from __future__ import annotations

import html
from typing import Optional

import graphviz

from .model import Addresses, AddressRef, Outbound, Policy, Publish, Zone
from .vocab import FAMILIES, FAMILY_NAMES

MAX_LISTED = 6     # addresses shown per node; the rest are counted
FONT = {"fontname": "Helvetica"}


def _label(title: str, *lines: str) -> str:
    """An HTML-like label: a bold title, then one escaped line each."""
    rows = [f"<B>{html.escape(title)}</B>"] + [html.escape(line) for line in lines]
    return "<" + "<BR/>".join(rows) + ">"


def _texts(addresses: Addresses) -> list[str]:
    texts = [text for family in FAMILIES for text in addresses.texts(family)]
    shown = texts[:MAX_LISTED]
    if len(texts) > MAX_LISTED:
        shown.append(f"... {len(texts) - MAX_LISTED} more")
    return shown


def _service_names(rule: Publish | Outbound) -> str:
    return ", ".join(service.name for service in rule.services)


class _Drawing:
    """The graph being drawn: its nodes by what they stand for, each plain
    edge once."""

    def __init__(self, policy: Policy):
        self.policy = policy
        self.firewall = policy.firewall
        self.graph = graphviz.Digraph(name=self.firewall.table,
                                      graph_attr={"rankdir": "LR", "compound": "true", **FONT},
                                      node_attr={"shape": "box", **FONT}, edge_attr=FONT)
        self.zone_nodes = {zone.name: (f"if{i}", f"zone{i}")
                           for i, zone in enumerate(self.firewall.zones)}
        self.servers: dict[str, str] = {}        # a server's addresses -> its node
        self.placed: dict[tuple, str] = {}       # (zone or None, addresses) -> its node
        self.clusters: dict[Optional[str], list[tuple[str, str]]] = {}   # zone -> (node, label)
        self.linked: set[frozenset[str]] = set()
        self.used: set[str] = set()              # the nodes some edge reaches

    def column(self, node: str) -> int:
        """Where a node stands, left to right: the outside, the external
        interface, the host and the zones' interfaces, inside the zones."""
        if node == "internet" or self.outside(node):
            return 0
        return {"ext": 1, "host": 2}.get(node, 2 if node.startswith("if") else 3)

    def outside(self, node: str) -> bool:
        return any(where is None and node == placed for (where, _), placed in self.placed.items())

    def edge(self, tail: str, head: str, **attrs) -> None:
        """An edge drawn left to right whichever way it points: one from
        right to left is laid out reversed and drawn with its arrow back."""
        self.used.update((tail, head))
        if self.column(tail) > self.column(head):
            tail, head = head, tail
            attrs["dir"] = "none" if attrs.get("dir") == "none" else "back"
        self.graph.edge(tail, head, **attrs)

    def link(self, one: str, other: str, **attrs) -> None:
        """A plain line (what stands behind an interface), once however many
        rules use it; the rules' edges carry the arrows."""
        if frozenset((one, other)) not in self.linked:
            self.linked.add(frozenset((one, other)))
            self.edge(one, other, dir="none", **attrs)

    def rule_edge(self, tail: str, head: str, title: str, *lines: str, **attrs) -> None:
        self.edge(tail, head, label=_label(title, *lines), **attrs)

    def zone_of(self, addresses: Addresses) -> Optional[Zone]:
        """The zone that holds all of `addresses`, if one does."""
        return next((zone for zone in self.firewall.zones
                     if all(zone.networks.contains(f, i) for f in FAMILIES
                            for i in addresses.family(f))), None)

    def place(self, addresses: Addresses, title: str) -> str:
        """The node of some addresses: a zone's networks node when they are
        all of it, a server's node, else a node of their own in their zone's
        cluster (or outside)."""
        zone = self.zone_of(addresses)
        if zone is not None and zone.networks == addresses:
            return self.zone_nodes[zone.name][1]
        key = tuple(_texts(addresses))
        if key in self.servers:
            return self.servers[key]
        where = None if zone is None else zone.name
        if (where, key) not in self.placed:
            node = f"addr{len(self.placed)}"
            self.placed[(where, key)] = node
            self.clusters.setdefault(where, []).append((node, _label(title, *key)))
        return self.placed[(where, key)]


def build(policy: Policy) -> graphviz.Digraph:
    """The picture as a Graphviz graph (render with `.pipe(format="svg")`)."""
    drawing = _Drawing(policy)
    _servers(drawing)
    _publications(drawing)
    _outbound(drawing)
    _management(drawing)
    _firewall(drawing)
    _clusters(drawing)
    return drawing.graph


def _by_name(policy: Policy) -> dict[str, list[Publish]]:
    """The publications, each with its families' parts together."""
    parts: dict[str, list[Publish]] = {}
    for rule in policy.publish:
        parts.setdefault(rule.name, []).append(rule)
    return parts


def _servers(drawing: _Drawing) -> None:
    """One node per published server (a dual-stack one: both addresses), in its zone."""
    for parts in _by_name(drawing.policy).values():
        if parts[0].server is None:
            continue
        addresses = Addresses.of(*([(int(p.server),) * 2 for p in parts if p.family == f]
                                   for f in FAMILIES))
        key = tuple(_texts(addresses))
        if key not in drawing.servers:
            drawing.servers[key] = f"srv{len(drawing.servers)}"
            drawing.clusters.setdefault(parts[0].zone, []).append(
                (drawing.servers[key], _label("server", *key)))


def _server_node(drawing: _Drawing, rule: Publish) -> str:
    return next(node for key, node in drawing.servers.items() if str(rule.server) in key)


def _publications(drawing: _Drawing) -> None:
    """Each publication, its families in one edge, from the Internet through
    the external interface to its zone's interface and server (or the
    firewall host); hairpin from each admitted zone to the external side."""
    drawing.link("internet", "ext")
    for name, parts in _by_name(drawing.policy).items():
        first = parts[0]
        ways = [f"via {p.external_address}" if p.external_address is not None
                else f"routed ({FAMILY_NAMES[p.family]})" for p in parts]
        if first.server is None:
            drawing.rule_edge("ext", "host", f"publish {name}", _service_names(first), *ways)
            continue
        interface, _ = drawing.zone_nodes[first.zone]
        drawing.rule_edge("ext", interface, f"publish {name}", _service_names(first), *ways)
        for part in parts:
            drawing.link(interface, _server_node(drawing, part))
        _hairpin(drawing, name, [p for p in parts if p.external_address is not None])


def _hairpin(drawing: _Drawing, name: str, parts: list[Publish]) -> None:
    """From each zone a publication admits to its external addresses, one
    edge a zone naming them all."""
    addresses = [f"to {p.external_address}" for p in parts]
    for zone in drawing.firewall.zones:
        if parts and zone.name in parts[0].hairpin:
            zone_interface, networks = drawing.zone_nodes[zone.name]
            drawing.link(networks, zone_interface)
            drawing.rule_edge(zone_interface, "ext", f"hairpin {name}", *addresses,
                              style="dashed")


def _outbound(drawing: _Drawing) -> None:
    """Each outbound rule from its sources through their zone's interface to
    the outside (the Internet, or the destinations it names) or to another
    zone's destinations; the firewall's own from the host."""
    for rule in drawing.policy.outbound:
        title = f"outbound {rule.name}"
        lines = [_service_names(rule)] + ([f"schedule {rule.schedule.name}"]
                                          if rule.schedule else [])
        if rule.user is not None:
            lines.append(f"user {rule.user}")
        for way in _entries(drawing, rule.sources):
            for head in _destinations(drawing, rule, way):
                drawing.rule_edge(way, head, title, *lines, style="dashed")


def _outside(fw, addresses: Addresses) -> Addresses:
    """The part of `addresses` in no internal network."""
    return Addresses.of(*([i for i in addresses.family(f)
                           if not fw.internal_networks.contains(f, i)] for f in FAMILIES))


def _entries(drawing: _Drawing, sources: AddressRef) -> list[str]:
    """Where connections from `sources` meet the firewall: the host for its
    own, each zone's interface for that zone's part, the external interface
    for the outside; each part's node joined to its interface."""
    found = ["host"] if sources.localhost else []
    if sources.any:
        drawing.link("internet", "ext")
        return found + ["ext"]
    for zone in drawing.firewall.zones:
        mine = zone.networks.intersection(sources.addresses)
        if mine:
            interface = drawing.zone_nodes[zone.name][0]
            drawing.link(drawing.place(mine, "from"), interface)
            found.append(interface)
    outside = _outside(drawing.firewall, sources.addresses)
    if outside:
        drawing.link(drawing.place(outside, "from"), "ext")
        found.append("ext")
    return found


def _destinations(drawing: _Drawing, rule: Outbound, way: str) -> list[str]:
    """Where a rule's edge from `way` ends: the external interface for the
    outside (`to` any: the Internet beyond it, else the addresses named
    there), another zone's interface for that zone's part (its node beyond
    it); a zone's own part never crosses the firewall."""
    to, fw = rule.destinations, drawing.firewall
    if to.any:
        drawing.link("ext", "internet")
        return ["ext"]
    heads = []
    for zone in fw.zones:
        part = zone.networks.intersection(to.addresses)
        interface = drawing.zone_nodes[zone.name][0]
        if part and interface != way:
            drawing.link(interface, drawing.place(part, "to"))
            heads.append(interface)
        elif part:      # the sources' own zone: drawn, though it never crosses the firewall
            heads.append(drawing.place(part, "to"))
    outside = _outside(fw, to.addresses)
    if outside:
        drawing.link("ext", drawing.place(outside, "to"))
        heads.append("ext")
    return heads


def _management(drawing: _Drawing) -> None:
    """Who may reach the firewall's own SSH and ping: into the host through
    the interfaces they come in by."""
    fw = drawing.firewall
    for ref, title in ((fw.ssh_sources, f"management ssh (tcp/{fw.ssh_port})"),
                       (fw.ping_sources, "management ping")):
        for way in _entries(drawing, ref) if ref is not None else []:
            drawing.rule_edge(way, "host", title, style="dotted")


def _firewall(drawing: _Drawing) -> None:
    """The firewall as a box: the external interface and its addresses, the
    host, each zone's interface; the outside beside it."""
    fw = drawing.firewall
    graph = drawing.graph
    graph.node("internet", _label("Internet"), shape="ellipse")
    with graph.subgraph(name="cluster_firewall") as box:
        box.attr(label=_label("firewall", f"table inet {fw.table}"))
        box.node("ext", _label(f"{fw.external_interface} (external)",
                               *(str(a) for a in fw.external_addresses)))
        if "host" in drawing.used:        # nothing unconnected: only when a rule reaches it
            box.node("host", _label("firewall host", "localhost"))
        for zone in fw.zones:
            box.node(drawing.zone_nodes[zone.name][0],
                     _label(f"{zone.interface} ({zone.name})"))
    drawing.link("internet", "ext")


def _clusters(drawing: _Drawing) -> None:
    """Each zone as a cluster of its networks, servers and named addresses,
    joined to its interface; the outside's named addresses beside the Internet."""
    graph = drawing.graph
    for zone in drawing.firewall.zones:
        interface, networks = drawing.zone_nodes[zone.name]
        with graph.subgraph(name=f"cluster_{networks}") as box:
            box.attr(label=_label(f"zone {zone.name}"))
            box.node(networks, _label("networks", *_texts(zone.networks)))
            for node, label in drawing.clusters.get(zone.name, []):
                box.node(node, label)
        drawing.link(interface, networks)
    for node, label in drawing.clusters.get(None, []):
        graph.node(node, label)


def render(policy: Policy, output_format: str = "svg") -> str:
    """The picture as SVG, as its DOT source (`dot`), or laid out as
    Graphviz's JSON (`json`: every node and edge with its label and place)."""
    graph = build(policy)
    return graph.source if output_format == "dot" else graph.pipe(format=output_format,
                                                                  encoding="utf-8")
