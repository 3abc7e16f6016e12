# -*- test-case-name: tests.rspec.test_advertisement -*-
"""
The island's GENI v3 advertisement RSpec.

The advertisement lists:

  - one C{<node>} per switch: C{component_id} (the switch URN),
    C{component_manager_id} (the aggregate URN), C{component_name} (the
    DPID), C{exclusive="true"}, C{<hardware_type>}, C{<sliver_type>}, one
    C{<interface>} per port used by a link, and C{<available now>}:
    C{false} while a booking holds the island;
  - one C{<link>} per island link with its C{<component_manager>} and two
    C{<interface_ref>}s;
  - the operational-state extension (C{opstate:rspec_opstate}): slivers
    start C{geni_notready}; C{geni_start} and C{geni_restart} lead to
    C{geni_ready}, C{geni_stop} back to C{geni_notready};
    C{geni_update_users} keeps C{geni_ready};
  - C{<island:schedule>}: the booked slots that have not ended, which
    never name a slice.

With C{available_only} (the C{geni_available} option) the advertisement
shows only what is free now: while the island is booked its switches and
links are left out altogether (the island is booked as a whole, so none is
free); the schedule is still included so a client can see when it frees.
"""

from __future__ import annotations

from collections.abc import Iterable

from lxml import etree

from geniam.rspec.island import make_schedule
from geniam.rspec.namespaces import (
    ISLAND_NS,
    ISLAND_PREFIX,
    OPSTATE_NS,
    OPSTATE_SCHEMA,
    RSPEC_NS,
    RSPEC_SCHEMAS,
    XSI_NS,
    qname,
    rspec_tag,
)
from geniam.rspec.parser import serialise
from geniam.rspec.resources import IslandResources
from geniam.timeutil import format_time

GENERATED_BY = "geniam"
"""The C{generated_by} attribute of documents geniam writes."""

OPSTATE_START = "geni_notready"
"""The operational state a provisioned island sliver starts in."""

OPSTATE_TRANSITIONS: tuple[tuple[str, str, tuple[tuple[str, str, str], ...]], ...] = (
    (
        "geni_notready",
        "The island is booked but the gateway does not yet forward to your controller.",
        (("geni_start", "geni_ready", "Configure the gateway: keys, controller proxy and VLAN map."),),
    ),
    (
        "geni_ready",
        "The gateway forwards the switches' control channel to your controller; you can log in.",
        (
            ("geni_stop", "geni_notready", "Remove your configuration from the gateway."),
            ("geni_restart", "geni_ready", "Apply your configuration to the gateway again."),
            ("geni_update_users", "geni_ready", "Install the login keys given in geni_users."),
        ),
    ),
)
"""C{(state, description, ((action, next state, description), ...))} for the opstate extension."""


def _opstate(parent: etree._Element, resources: IslandResources) -> None:
    block = etree.SubElement(
        parent,
        qname(OPSTATE_NS, "rspec_opstate"),
        aggregate_manager_id=resources.am_urn,
        start=OPSTATE_START,
    )
    etree.SubElement(block, qname(OPSTATE_NS, "sliver_type"), name=resources.sliver_type)
    for state, description, actions in OPSTATE_TRANSITIONS:
        state_element = etree.SubElement(block, qname(OPSTATE_NS, "state"), name=state)
        for action, following, action_description in actions:
            action_element = etree.SubElement(
                state_element, qname(OPSTATE_NS, "action"), name=action, next=following
            )
            etree.SubElement(action_element, qname(OPSTATE_NS, "description")).text = action_description
        etree.SubElement(state_element, qname(OPSTATE_NS, "description")).text = description


def _node(parent: etree._Element, resources: IslandResources, dpid: str, available: bool) -> None:
    node = etree.SubElement(
        parent,
        rspec_tag("node"),
        component_id=resources.node_urn(dpid),
        component_manager_id=resources.am_urn,
        component_name=dpid,
        exclusive="true",
    )
    etree.SubElement(node, rspec_tag("hardware_type"), name=resources.hardware_type)
    etree.SubElement(node, rspec_tag("sliver_type"), name=resources.sliver_type)
    for port in resources.ports(dpid):
        etree.SubElement(
            node,
            rspec_tag("interface"),
            component_id=resources.interface_urn(dpid, port),
            component_name=f"{dpid}:{port}",
            role="experimental",
        )
    etree.SubElement(node, rspec_tag("available"), now="true" if available else "false")


def _links(parent: etree._Element, resources: IslandResources) -> None:
    for link in resources.links:
        element = etree.SubElement(
            parent, rspec_tag("link"), component_id=resources.link_urn(link), component_name=str(link)
        )
        etree.SubElement(element, rspec_tag("component_manager"), name=resources.am_urn)
        for dpid, port in link.ends:
            etree.SubElement(element, rspec_tag("interface_ref"), component_id=resources.interface_urn(dpid, port))


def is_busy(booked: Iterable[tuple[float, float]], now: float) -> bool:
    """True if one of the C{(start, end)} slots holds the island at C{now}."""
    return any(start <= now < end for start, end in booked)


def build_advertisement(
    resources: IslandResources,
    booked: Iterable[tuple[float, float]],
    now: float,
    available_only: bool = False,
    expires: float | None = None,
    maintenance: Iterable[tuple[float, float, str]] = (),
) -> str:
    """
    Write the island's advertisement.

    @param resources: the island.
    @param booked: the C{(start, end)} POSIX-second slots of every booking
        (allocated or provisioned); no slice names, so none can leak.
    @param now: the current time (the reactor's C{seconds()}).
    @param available_only: the C{geni_available} option: leave out switches
        and links while the island is booked.
    @param expires: the C{expires} attribute, if any.
    @param maintenance: the operator's C{(start, end, reason)} maintenance
        windows, listed in the schedule unless over.
    @return: the advertisement XML.
    """
    slots = sorted((float(start), float(end)) for start, end in booked)
    busy = is_busy(slots, now)
    root = etree.Element(
        rspec_tag("rspec"),
        nsmap={None: RSPEC_NS, ISLAND_PREFIX: ISLAND_NS, "opstate": OPSTATE_NS, "xsi": XSI_NS},
    )
    root.set(
        qname(XSI_NS, "schemaLocation"),
        f"{RSPEC_NS} {RSPEC_SCHEMAS['advertisement']} {OPSTATE_NS} {OPSTATE_SCHEMA}",
    )
    root.set("type", "advertisement")
    root.set("generated", format_time(now))
    root.set("generated_by", GENERATED_BY)
    if expires is not None:
        root.set("expires", format_time(expires))
    if not (available_only and busy):
        for dpid in resources.switches:
            _node(root, resources, dpid, available=not busy)
        _links(root, resources)
    _opstate(root, resources)
    make_schedule(
        root,
        [(start, end) for start, end in slots if end > now],
        [(start, end, reason) for start, end, reason in maintenance if end > now],
        component_manager_id=resources.am_urn,
    )
    return serialise(root)
