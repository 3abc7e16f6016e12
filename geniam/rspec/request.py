# -*- test-case-name: tests.rspec.test_request -*-
"""
Request RSpecs for an island: reading them strictly and writing them.

Which elements belong to this aggregate
=======================================

  - a C{<node>} with a C{component_manager_id} belongs to that aggregate;
    without one, to the aggregate whose authority minted its
    C{component_id}; an unbound node without C{component_manager_id}
    belongs to the aggregate reading the request;
  - a C{<link>} belongs to every aggregate named by its
    C{<component_manager>} children or owning a node one of its
    C{<interface_ref client_id>}s points at; a link naming none belongs to
    the aggregate reading the request;
  - an island extension element belongs to the aggregate named by its
    C{component_manager_id}, or to every island aggregate without one.

Elements of other aggregates are not reserved here; L{parse_request}
reports them separately and the manifest copies them unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from geniam.errors import GeniCode, GeniError
from geniam.gatewayconfig import parse_controller, validate_vlan_map
from geniam.rspec import island
from geniam.rspec.namespaces import (
    ISLAND_NS,
    ISLAND_PREFIX,
    RSPEC_NS,
    RSPEC_SCHEMAS,
    XSI_NS,
    qname,
    rspec_tag,
)
from geniam.rspec.parser import DEFAULT_LIMITS, ParseLimits, parse_rspec, serialise
from geniam.urn import URN, parse_urn

NODE = rspec_tag("node")
LINK = rspec_tag("link")
INTERFACE = rspec_tag("interface")
INTERFACE_REF = rspec_tag("interface_ref")
COMPONENT_MANAGER = rspec_tag("component_manager")
SLIVER_TYPE = rspec_tag("sliver_type")

ISLAND_CLIENT_ID = "island"
"""The C{client_id} of the node L{build_request} writes for the island
(for several islands, the prefix of each node's C{client_id})."""

_LABEL_LIMIT = 200


@dataclass(frozen=True)
class IslandRequest:
    """
    What a request RSpec asks of one island aggregate.

    @ivar start: the slot's start in POSIX seconds, or C{None} if the
        request names no slot (then C{end} is C{None} too).
    @ivar end: the slot's end in POSIX seconds, or C{None}.
    @ivar controller: the OpenFlow controller C{host:port}, validated, or C{None}.
    @ivar vlan_map: the validated VLAN map C{{testbed VLAN: island VLAN}}.
    @ivar node_client_ids: the C{client_id}s of this aggregate's nodes.
    @ivar node_component_ids: the C{component_id}s of this aggregate's
        bound nodes (switch URNs).
    @ivar link_client_ids: the C{client_id}s of this aggregate's links.
    @ivar link_component_ids: the C{component_id}s of this aggregate's bound links.
    @ivar component_manager_ids: every aggregate URN the request names, in
        order of appearance.
    @ivar foreign_node_client_ids: the C{client_id}s of other aggregates' nodes.
    @ivar foreign_link_client_ids: the C{client_id}s of links that touch no
        node of this aggregate and do not name it.
    @ivar foreign_component_manager_ids: the aggregate URNs other than this one.
    """

    start: float | None = None
    end: float | None = None
    controller: str | None = None
    vlan_map: dict[str, str] = field(default_factory=dict)
    node_client_ids: tuple[str, ...] = ()
    node_component_ids: tuple[str, ...] = ()
    link_client_ids: tuple[str, ...] = ()
    link_component_ids: tuple[str, ...] = ()
    component_manager_ids: tuple[str, ...] = ()
    foreign_node_client_ids: tuple[str, ...] = ()
    foreign_link_client_ids: tuple[str, ...] = ()
    foreign_component_manager_ids: tuple[str, ...] = ()

    @property
    def slot(self) -> tuple[float, float] | None:
        """C{(start, end)}, or C{None} if the request names no slot."""
        if self.start is None or self.end is None:
            return None
        return (self.start, self.end)


def _attribute_urn(element: etree._Element, attribute: str, expected_type: str | None = None) -> URN | None:
    value = element.get(attribute)
    if value is None:
        return None
    try:
        return parse_urn(value.strip(), expected_type)
    except GeniError as e:
        raise GeniError(
            GeniCode.BADARGS, f"{etree.QName(element).localname} {attribute}: {e.output}"
        ) from None


def describe_element(element: etree._Element) -> str:
    """Name an element for error messages, e.g. C{node 'island'}."""
    name = etree.QName(element).localname
    for attribute in ("client_id", "component_id", "component_manager_id"):
        if element.get(attribute):
            return f"{name} {element.get(attribute)!r}"
    return name


def node_manager(node: etree._Element) -> URN | None:
    """
    The aggregate a C{<node>} names by C{component_manager_id}, if any.

    @raise GeniError: BADARGS for a malformed URN.
    """
    return _attribute_urn(node, "component_manager_id")


def node_authority(node: etree._Element) -> str | None:
    """
    The authority of a C{<node>}'s C{component_id}, if bound.

    @raise GeniError: BADARGS unless C{component_id} is a C{node} URN.
    """
    urn = _attribute_urn(node, "component_id", "node")
    return urn.authority if urn is not None else None


def link_managers(link: etree._Element) -> list[URN]:
    """
    The aggregates a C{<link>} names in its C{<component_manager>} children.

    @raise GeniError: BADARGS for a missing or malformed C{name}.
    """
    managers = []
    for child in link.iterchildren(COMPONENT_MANAGER):
        name = child.get("name")
        if name is None:
            raise GeniError(GeniCode.BADARGS, f"{describe_element(link)}: component_manager needs a name")
        try:
            managers.append(parse_urn(name.strip()))
        except GeniError as e:
            raise GeniError(GeniCode.BADARGS, f"{describe_element(link)} component_manager: {e.output}") from None
    return managers


def link_interface_client_ids(link: etree._Element) -> list[str]:
    """The C{client_id}s a C{<link>}'s C{<interface_ref>}s point at."""
    return [ref.get("client_id", "") for ref in link.iterchildren(INTERFACE_REF) if ref.get("client_id")]


def island_manager(element: etree._Element) -> URN | None:
    """
    The aggregate an island extension element is scoped to, if any.

    @raise GeniError: BADARGS for a malformed URN.
    """
    return _attribute_urn(element, "component_manager_id")


def check_client_ids(root: etree._Element) -> None:
    """
    Check a request's C{client_id}s: present on top-level nodes and links,
    non-empty, at most 256 characters, and unique in the document.

    @raise GeniError: BADARGS naming the first offending element.
    """
    seen: set[str] = set()
    for element in root.iter(NODE, LINK, INTERFACE):
        client_id = element.get("client_id")
        if client_id is None:
            if element.tag in (NODE, LINK) and element.getparent() is root:
                raise GeniError(GeniCode.BADARGS, f"request {describe_element(element)} has no client_id")
            continue
        if not client_id.strip() or len(client_id) > 256:
            raise GeniError(GeniCode.BADARGS, f"request has an empty or over-long client_id on {describe_element(element)}")
        if client_id in seen:
            raise GeniError(GeniCode.BADARGS, f"client_id {client_id!r} is used twice in the request")
        seen.add(client_id)


class _Collector:
    """Accumulates URNs in order without duplicates (by normalised key)."""

    def __init__(self) -> None:
        self.items: dict[str, str] = {}

    def add(self, urn: URN | None) -> None:
        """Record C{urn} unless it is C{None} or already recorded."""
        if urn is not None:
            self.items.setdefault(urn.key, str(urn))

    def values(self) -> tuple[str, ...]:
        """The recorded URNs, as first written."""
        return tuple(self.items.values())


@dataclass
class RequestElements:
    """
    A request's top-level elements sorted by the aggregate they belong to.

    The elements are those of the parsed tree, in document order.

    @ivar own_nodes: this aggregate's C{<node>}s.
    @ivar foreign_nodes: other aggregates' C{<node>}s.
    @ivar own_links: C{<link>}s that name or touch this aggregate.
    @ivar foreign_links: the other C{<link>}s.
    @ivar own_island: island elements for this aggregate (unscoped or scoped to it).
    @ivar foreign_island: island elements scoped to another aggregate.
    @ivar managers: every aggregate URN named, in order, without duplicates.
    """

    own_nodes: list[etree._Element] = field(default_factory=list)
    foreign_nodes: list[etree._Element] = field(default_factory=list)
    own_links: list[etree._Element] = field(default_factory=list)
    foreign_links: list[etree._Element] = field(default_factory=list)
    own_island: list[etree._Element] = field(default_factory=list)
    foreign_island: list[etree._Element] = field(default_factory=list)
    managers: tuple[str, ...] = ()


def classify_request(root: etree._Element, am_urn: str) -> RequestElements:
    """
    Sort a parsed request's elements between C{am_urn} and other aggregates.

    See the module docstring for the rules. Also checks C{client_id}s
    (present on top-level nodes and links, unique), URNs, and the shape
    of island elements (direct children of C{<rspec>}, known names and
    attributes).

    @param root: the C{<rspec type="request">} element (see L{parse_rspec}).
    @raise GeniError: BADARGS for the problems above, or for a node that
        names this aggregate but is bound to another authority's component.
    """
    am = parse_urn(am_urn)
    check_client_ids(root)
    result = RequestElements()
    managers = _Collector()
    interface_owner_is_us: dict[str, bool] = {}
    for node in root.iterchildren(NODE):
        manager = node_manager(node)
        authority = node_authority(node)
        managers.add(manager)
        if manager is not None:
            ours = manager.key == am.key
        elif authority is not None:
            ours = authority.lower() == am.authority.lower()
        else:
            ours = True
        if ours and authority is not None and authority.lower() != am.authority.lower():
            raise GeniError(
                GeniCode.BADARGS,
                f"{describe_element(node)} is bound to {node.get('component_id')!r}, not a component of {am_urn}",
            )
        (result.own_nodes if ours else result.foreign_nodes).append(node)
        for interface in node.iterchildren(INTERFACE):
            if interface.get("client_id"):
                interface_owner_is_us[interface.get("client_id", "")] = ours

    for link in root.iterchildren(LINK):
        named = link_managers(link)
        for urn in named:
            managers.add(urn)
        touches = [interface_owner_is_us[c] for c in link_interface_client_ids(link) if c in interface_owner_is_us]
        ours = any(urn.key == am.key for urn in named) or any(touches) or (not named and not touches)
        (result.own_links if ours else result.foreign_links).append(link)

    for element in root.iter():
        if not island.is_island_element(element):
            continue
        if element.getparent() is not root:
            raise GeniError(
                GeniCode.BADARGS, f"island:{island.local_name(element)} must be a direct child of <rspec>"
            )
        island.check_request_element(element)
        scope = island_manager(element)
        managers.add(scope)
        if scope is not None and scope.key != am.key:
            result.foreign_island.append(element)
        else:
            result.own_island.append(element)
    result.managers = managers.values()
    return result


def read_island_elements(elements: list[etree._Element]) -> tuple[tuple[float, float] | None, str | None, dict[str, str]]:
    """
    Read one aggregate's island elements into C{(slot, controller, VLAN map)}.

    @raise GeniError: BADARGS for a bad time, slot, controller or VLAN map,
        or a second C{slot} or C{controller}.
    """
    slot: tuple[float, float] | None = None
    controller: str | None = None
    vlans: dict[str, str] = {}
    for element in elements:
        if element.tag in island.CONTENT_ELEMENTS:
            continue
        if element.tag == island.SLOT:
            if slot is not None:
                raise GeniError(GeniCode.BADARGS, "the request names more than one island:slot for this aggregate")
            slot = island.read_slot(element)
        elif element.tag == island.CONTROLLER:
            if controller is not None:
                raise GeniError(
                    GeniCode.BADARGS, "the request names more than one island:controller for this aggregate"
                )
            controller = island.read_controller(element)
            parse_controller(controller)
        else:
            testbed, island_vlan = island.read_vlan(element)
            if testbed in vlans:
                raise GeniError(GeniCode.BADARGS, f"testbed VLAN {testbed!r} is mapped twice")
            vlans[testbed] = island_vlan
    vlan_map = validate_vlan_map(vlans)
    if len(vlan_map) != len(vlans):
        raise GeniError(GeniCode.BADARGS, "a testbed VLAN is mapped twice")
    return slot, controller, vlan_map


def parse_request(text: str | bytes, am_urn: str, limits: ParseLimits = DEFAULT_LIMITS) -> IslandRequest:
    """
    Read a request RSpec as the island aggregate C{am_urn} sees it.

    @param text: the request as received (not compressed).
    @param am_urn: this aggregate's URN.
    @param limits: parser bounds.
    @return: the slot, controller and VLAN map for this island, the
        requested nodes and links, and what belongs to other aggregates.
    @raise GeniError: BADARGS for a malformed or hostile document, a root
        other than a GENI v3 C{<rspec type="request">}, a bad time, slot,
        controller or VLAN map, duplicated island elements, or malformed
        URNs; TOOBIG for an over-size document.
    """
    am = parse_urn(am_urn)
    root = parse_rspec(text, "request", limits)
    elements = classify_request(root, am_urn)
    slot, controller, vlan_map = read_island_elements(elements.own_island)

    def ids(items: list[etree._Element], attribute: str) -> tuple[str, ...]:
        """The non-empty values of C{attribute} on C{items}."""
        values = (e.get(attribute, "") for e in items if e.get(attribute))
        return tuple(v if attribute == "client_id" else v.strip() for v in values)

    return IslandRequest(
        start=slot[0] if slot else None,
        end=slot[1] if slot else None,
        controller=controller,
        vlan_map=vlan_map,
        node_client_ids=ids(elements.own_nodes, "client_id"),
        node_component_ids=ids(elements.own_nodes, "component_id"),
        link_client_ids=ids(elements.own_links, "client_id"),
        link_component_ids=ids(elements.own_links, "component_id"),
        component_manager_ids=elements.managers,
        foreign_node_client_ids=ids(elements.foreign_nodes, "client_id"),
        foreign_link_client_ids=ids(elements.foreign_links, "client_id"),
        foreign_component_manager_ids=tuple(m for m in elements.managers if parse_urn(m).key != am.key),
    )


def island_client_ids(am_urns: Sequence[str]) -> list[str]:
    """
    The C{client_id}s of the island nodes of a request naming several
    aggregates: C{island-} and the last part of each aggregate's authority
    (C{island-am1} for C{urn:publicid:IDN+geniam:demo:am1+authority+am}),
    with C{-2}, C{-3}... added to a label already taken.

    @param am_urns: the aggregates' URNs, distinct.
    @return: one unique C{client_id} per URN, in order.
    @raise GeniError: BADARGS for a malformed URN.
    """
    taken: set[str] = set()
    result: list[str] = []
    for urn in am_urns:
        authority = parse_urn(urn).authority
        label = (authority.rsplit(":", 1)[-1] or authority)[:_LABEL_LIMIT]
        client_id = f"{ISLAND_CLIENT_ID}-{label}"
        suffix = 1
        while client_id in taken:
            suffix += 1
            client_id = f"{ISLAND_CLIENT_ID}-{label}-{suffix}"
        taken.add(client_id)
        result.append(client_id)
    return result


def _aggregates(am_urn: str | None, am_urns: Sequence[str] | None) -> list[str]:
    """The distinct aggregate URNs a request names, normalised; C{[]} for none."""
    if am_urn is not None and am_urns is not None:
        raise GeniError(GeniCode.BADARGS, "name the aggregates with am_urn or am_urns, not both")
    if isinstance(am_urns, str):
        raise GeniError(GeniCode.BADARGS, "am_urns is a list of aggregate URNs, not one URN")
    given = [am_urn] if am_urn is not None else list(am_urns or ())
    seen: dict[str, str] = {}
    for text in given:
        urn = parse_urn(text)
        if urn.key in seen:
            raise GeniError(GeniCode.BADARGS, f"aggregate {text} is named twice")
        seen[urn.key] = str(urn)
    return list(seen.values())


def build_request(
    start: float,
    end: float,
    controller: str | None = None,
    vlan_map: Mapping[Any, str] | None = None,
    am_urn: str | None = None,
    am_urns: Sequence[str] | None = None,
) -> str:
    """
    Write a request RSpec booking one or several islands for a time slot.

    Times are written in whole seconds (fractions are dropped). For one
    island the request holds one unbound island node
    (C{client_id="island"}) and the island extension elements; when an
    aggregate is named, both carry its C{component_manager_id}, so a slice
    manager can route the request.

    For several aggregates (C{am_urns}), each gets its own island node
    (C{client_id}s from L{island_client_ids}) followed by its own slot,
    controller and VLAN elements, all carrying its
    C{component_manager_id}; every island gets the same slot, controller
    and VLAN map. A slice manager sends each aggregate only its part.

    @param start: the slot's start, POSIX seconds.
    @param end: the slot's end, POSIX seconds.
    @param controller: the OpenFlow controller C{host:port}.
    @param vlan_map: C{{testbed VLAN: island VLAN or "0xffff"}}.
    @param am_urn: the island aggregate's URN.
    @param am_urns: the island aggregates' URNs, instead of C{am_urn}; a
        single URN writes the same request as C{am_urn}, an empty list the
        same as naming none.
    @return: the request XML.
    @raise GeniError: BADARGS for an empty or inverted slot, a bad
        controller, VLAN map or URN, an aggregate named twice, or both
        C{am_urn} and C{am_urns}.
    """
    if int(start) >= int(end):
        raise GeniError(GeniCode.BADARGS, "the slot must start at least one second before it ends")
    if controller is not None:
        parse_controller(controller)
    vlans = validate_vlan_map(dict(vlan_map or {}))
    aggregates = _aggregates(am_urn, am_urns)
    root = etree.Element(rspec_tag("rspec"), nsmap={None: RSPEC_NS, ISLAND_PREFIX: ISLAND_NS, "xsi": XSI_NS})
    root.set(qname(XSI_NS, "schemaLocation"), f"{RSPEC_NS} {RSPEC_SCHEMAS['request']}")
    root.set("type", "request")
    islands: list[tuple[str, str | None]]
    if len(aggregates) > 1:
        islands = list(zip(island_client_ids(aggregates), aggregates))
    else:
        islands = [(ISLAND_CLIENT_ID, aggregates[0] if aggregates else None)]
    for client_id, aggregate in islands:
        scope = {"component_manager_id": aggregate} if aggregate is not None else {}
        node = etree.SubElement(root, NODE, client_id=client_id, exclusive="true", **scope)
        etree.SubElement(node, SLIVER_TYPE, name="island")
        island.make_slot(root, start, end, **scope)
        if controller is not None:
            island.make_controller(root, controller, **scope)
        island.make_vlans(root, vlans, **scope)
    return serialise(root)
