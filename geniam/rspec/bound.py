# -*- test-case-name: tests.loopback.test_am_clients -*-
"""
Bound request RSpecs: requests naming the components an advertisement lists.

A request written by L{geniam.rspec.request.build_request} names the island
with one unbound node. Some clients want the request to name the
switches and links themselves, as GENI tools do for other aggregates:
L{read_advertisement} reads each island of an advertisement (plain or
merged by a slice manager), L{check_slot} refuses a slot its schedule
shows taken, and L{build_bound_request} writes one bound node per switch
(with its interfaces) and one link per link, followed by the island
extension's slot, controller and VLANs, every element naming its
aggregate.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from geniam.errors import GeniCode, GeniError
from geniam.gatewayconfig import parse_controller, validate_vlan_map
from geniam.rspec import island
from geniam.rspec.namespaces import ISLAND_NS, ISLAND_PREFIX, RSPEC_NS, RSPEC_SCHEMAS, XSI_NS, qname, rspec_tag
from geniam.rspec.parser import DEFAULT_LIMITS, ParseLimits, parse_rspec, serialise
from geniam.rspec.request import (
    COMPONENT_MANAGER,
    INTERFACE,
    INTERFACE_REF,
    LINK,
    NODE,
    SLIVER_TYPE,
    island_client_ids,
)
from geniam.timeutil import format_time
from geniam.urn import parse_urn


@dataclass
class AdvertisedIsland:
    """
    One island aggregate as its advertisement describes it.

    @ivar am_urn: the aggregate's URN.
    @ivar switches: C{(component_id, name, [(interface component_id, interface name)])} per switch.
    @ivar links: C{(component_id, name, [interface component_id])} per link.
    @ivar booked: the slots its schedule shows taken, C{(start, end)} POSIX seconds.
    """

    am_urn: str
    switches: list[tuple[str, str, list[tuple[str, str]]]] = field(default_factory=list)
    links: list[tuple[str, str, list[str]]] = field(default_factory=list)
    booked: list[tuple[float, float]] = field(default_factory=list)


def read_advertisement(text: str | bytes, limits: ParseLimits = DEFAULT_LIMITS) -> list[AdvertisedIsland]:
    """
    Read the island aggregates of an advertisement: the aggregates that
    publish an C{<island:schedule>}, with their switches and links.

    @raise GeniError: BADARGS for a malformed document or one naming no island.
    """
    root = parse_rspec(text, "advertisement", limits)
    islands: dict[str, AdvertisedIsland] = {}
    for schedule in root.iterchildren(island.SCHEDULE):
        urn = str(parse_urn((schedule.get("component_manager_id") or "").strip() or "missing"))
        islands.setdefault(parse_urn(urn).key, AdvertisedIsland(urn)).booked.extend(island.read_schedule(schedule))
    if not islands:
        raise GeniError(GeniCode.BADARGS, "the advertisement lists no island (no island:schedule)")
    for node in root.iterchildren(NODE):
        manager = islands.get(parse_urn(node.get("component_manager_id") or "missing").key)
        component = node.get("component_id")
        if manager is None or not component:
            continue
        interfaces = [
            (i.get("component_id", ""), i.get("component_name") or i.get("component_id", "").rsplit("+", 1)[-1])
            for i in node.iterchildren(INTERFACE)
            if i.get("component_id")
        ]
        manager.switches.append((component, node.get("component_name") or component.rsplit("+", 1)[-1], interfaces))
    for link in root.iterchildren(LINK):
        managers = [m.get("name", "") for m in link.iterchildren(COMPONENT_MANAGER)]
        owner = next((islands[parse_urn(m).key] for m in managers if m and parse_urn(m).key in islands), None)
        component = link.get("component_id")
        if owner is None or not component:
            continue
        ends = [r.get("component_id", "") for r in link.iterchildren(INTERFACE_REF) if r.get("component_id")]
        owner.links.append((component, link.get("component_name") or component.rsplit("+", 1)[-1], ends))
    return list(islands.values())


def check_slot(islands: Sequence[AdvertisedIsland], start: float, end: float) -> None:
    """
    Refuse a slot that overlaps a booked slot of any of C{islands}.

    @raise GeniError: UNAVAILABLE naming the island and the taken window.
    """
    for advertised in islands:
        for booked_start, booked_end in sorted(advertised.booked):
            if booked_start < end and start < booked_end:
                raise GeniError(
                    GeniCode.UNAVAILABLE,
                    f"{advertised.am_urn} is already booked from {format_time(booked_start)} to {format_time(booked_end)}",
                )


def build_bound_request(
    start: float,
    end: float,
    islands: Sequence[AdvertisedIsland],
    controller: str | None = None,
    vlan_map: Mapping[Any, str] | None = None,
) -> str:
    """
    Write a request naming every advertised switch and link of C{islands}.

    Node C{client_id}s are the switches' names (DPIDs), prefixed with the
    island's label (see L{island_client_ids}) when there are several
    islands; interfaces are C{<node>:<port>}.

    @raise GeniError: BADARGS for an empty or inverted slot, a bad
        controller or VLAN map, or no island.
    """
    if int(start) >= int(end):
        raise GeniError(GeniCode.BADARGS, "the slot must start at least one second before it ends")
    if not islands:
        raise GeniError(GeniCode.BADARGS, "no island to request")
    if controller is not None:
        parse_controller(controller)
    vlans = validate_vlan_map(dict(vlan_map or {}))
    root = etree.Element(rspec_tag("rspec"), nsmap={None: RSPEC_NS, ISLAND_PREFIX: ISLAND_NS, "xsi": XSI_NS})
    root.set(qname(XSI_NS, "schemaLocation"), f"{RSPEC_NS} {RSPEC_SCHEMAS['request']}")
    root.set("type", "request")
    labels = island_client_ids([i.am_urn for i in islands])
    for label, advertised in zip(labels, islands):
        prefix = f"{label}-" if len(islands) > 1 else ""
        scope = {"component_manager_id": advertised.am_urn}
        interface_ids: dict[str, str] = {}
        for component, name, interfaces in advertised.switches:
            node = etree.SubElement(
                root, NODE, client_id=f"{prefix}{name}", component_id=component, exclusive="true", **scope
            )
            etree.SubElement(node, SLIVER_TYPE, name="island")
            for interface, interface_name in interfaces:
                client_id = f"{prefix}{interface_name}"
                interface_ids[interface] = client_id
                etree.SubElement(node, INTERFACE, client_id=client_id, component_id=interface)
        for component, name, ends in advertised.links:
            element = etree.SubElement(root, LINK, client_id=f"{prefix}{name}", component_id=component)
            etree.SubElement(element, COMPONENT_MANAGER, name=advertised.am_urn)
            for interface in ends:
                ref = etree.SubElement(element, INTERFACE_REF, component_id=interface)
                if interface in interface_ids:
                    ref.set("client_id", interface_ids[interface])
        island.make_slot(root, start, end, **scope)
        if controller is not None:
            island.make_controller(root, controller, **scope)
        island.make_vlans(root, vlans, **scope)
    return serialise(root)
