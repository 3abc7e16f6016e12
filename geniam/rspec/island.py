# -*- test-case-name: tests.rspec.test_request -*-
"""
The geniam island RSpec extension, namespace C{urn:geniam:rspec:ext:island:1}.

An island aggregate books its whole island (OpenFlow switches behind a
gateway) exclusively for a time slot. The GENI v3 core cannot say "when",
"which controller" or "which VLANs", so this extension does. Its elements
are direct children of C{<rspec>}, conventionally with the prefix
C{island}::

  <rspec type="request" xmlns="http://www.geni.net/resources/rspec/3"
         xmlns:island="urn:geniam:rspec:ext:island:1">
    <node client_id="island" exclusive="true"
          component_manager_id="urn:publicid:IDN+island.example+authority+am">
      <sliver_type name="island"/>
    </node>
    <island:slot start="2026-05-01T10:00:00Z" end="2026-05-01T12:00:00Z"/>
    <island:controller address="192.0.2.10:6633"/>
    <island:vlan testbed="10" island="0xffff"/>
    <island:vlan testbed="30" island="20"/>
  </rspec>

Elements
========

C{slot} (request, manifest; at most one per aggregate in a request)
    C{start}, C{end}: RFC 3339 date-times with a zone, C{start < end}.
    The island is booked from C{start} (inclusive) to C{end} (exclusive).

C{controller} (request, manifest; at most one per aggregate in a request)
    C{address}: the experimenter's OpenFlow controller, C{host:port}
    (C{[v6addr]:port} for IPv6). The gateway proxies the switches'
    control channel to it.

C{vlan} (request, manifest; repeated)
    C{testbed}: a VLAN id 1-4094 on the testbed (OFELIA) side.
    C{island}: the VLAN id 1-4094 it becomes inside the island, or
    C{0xffff} for untagged (at most one C{vlan} may say so). Two
    C{testbed} values may not map to the same C{island} value.

C{switch}, C{link} (manifest only; ignored in a request)
    What one booking holds: one C{switch} per switch of the island and
    one C{link} per link, each with its C{component_id} (the URN the
    advertisement gives it), C{sliver_id} and C{component_manager_id}.
    The manifest's C{<node>}s and C{<link>}s are the request's own, so a
    client comparing the components of request and manifest finds the
    same; the island's contents are listed here instead.

C{schedule} (advertisement only)
    Children C{booked} with C{start} and C{end}: the slots already taken,
    current and future, in order. A schedule never names slices. Then
    children C{maintenance} with C{start}, C{end} and C{reason}: the
    operator's maintenance windows, which nobody can book.

Common attributes
=================

C{component_manager_id} (optional, on C{slot}, C{controller}, C{vlan},
C{schedule})
    Scopes the element to one aggregate, so that one request can book
    several islands through a slice manager. An element without it
    applies to every island aggregate that receives the document.

In a manifest, C{slot}, C{controller} and C{vlan} always carry
C{component_manager_id} and C{sliver_id} (the booking they describe);
C{slot} also carries C{allocation_status}, C{operational_status} and,
when known, C{expires} (RFC 3339). A request may carry these manifest
attributes (a manifest sent back as a request); they are ignored there.

Schema (informative)
====================

::

  <xs:schema targetNamespace="urn:geniam:rspec:ext:island:1"
             xmlns:xs="http://www.w3.org/2001/XMLSchema"
             elementFormDefault="qualified">
    <xs:simpleType name="vlanId">
      <xs:restriction base="xs:unsignedShort">
        <xs:minInclusive value="1"/><xs:maxInclusive value="4094"/>
      </xs:restriction>
    </xs:simpleType>
    <xs:simpleType name="islandVlan">
      <xs:union memberTypes="vlanId">
        <xs:simpleType>
          <xs:restriction base="xs:string"><xs:enumeration value="0xffff"/></xs:restriction>
        </xs:simpleType>
      </xs:union>
    </xs:simpleType>
    <xs:attributeGroup name="scope">
      <xs:attribute name="component_manager_id" type="xs:string"/>
      <xs:attribute name="sliver_id" type="xs:string"/>
    </xs:attributeGroup>
    <xs:element name="slot">
      <xs:complexType>
        <xs:attribute name="start" type="xs:dateTime" use="required"/>
        <xs:attribute name="end" type="xs:dateTime" use="required"/>
        <xs:attributeGroup ref="scope"/>
        <xs:attribute name="allocation_status" type="xs:string"/>
        <xs:attribute name="operational_status" type="xs:string"/>
        <xs:attribute name="expires" type="xs:dateTime"/>
      </xs:complexType>
    </xs:element>
    <xs:element name="controller">
      <xs:complexType>
        <xs:attribute name="address" type="xs:string" use="required"/>
        <xs:attributeGroup ref="scope"/>
      </xs:complexType>
    </xs:element>
    <xs:element name="vlan">
      <xs:complexType>
        <xs:attribute name="testbed" type="vlanId" use="required"/>
        <xs:attribute name="island" type="islandVlan" use="required"/>
        <xs:attributeGroup ref="scope"/>
      </xs:complexType>
    </xs:element>
    <xs:element name="schedule">
      <xs:complexType>
        <xs:sequence>
          <xs:element name="booked" minOccurs="0" maxOccurs="unbounded">
            <xs:complexType>
              <xs:attribute name="start" type="xs:dateTime" use="required"/>
              <xs:attribute name="end" type="xs:dateTime" use="required"/>
            </xs:complexType>
          </xs:element>
          <xs:element name="maintenance" minOccurs="0" maxOccurs="unbounded">
            <xs:complexType>
              <xs:attribute name="start" type="xs:dateTime" use="required"/>
              <xs:attribute name="end" type="xs:dateTime" use="required"/>
              <xs:attribute name="reason" type="xs:string" use="required"/>
            </xs:complexType>
          </xs:element>
        </xs:sequence>
        <xs:attribute name="component_manager_id" type="xs:string"/>
      </xs:complexType>
    </xs:element>
  </xs:schema>
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from lxml import etree

from geniam.errors import GeniCode, GeniError
from geniam.rspec.namespaces import ISLAND_NS, island_tag
from geniam.timeutil import format_time, parse_time

SLOT = island_tag("slot")
CONTROLLER = island_tag("controller")
VLAN = island_tag("vlan")
SCHEDULE = island_tag("schedule")
SWITCH = island_tag("switch")
LINK = island_tag("link")
BOOKED = island_tag("booked")
MAINTENANCE = island_tag("maintenance")

REQUEST_ELEMENTS = frozenset({SLOT, CONTROLLER, VLAN})
"""The island elements a request may hold that mean something there."""

CONTENT_ELEMENTS = frozenset({SWITCH, LINK})
"""The manifest's list of what a booking holds: accepted in a request (a manifest sent back) and ignored."""

MANIFEST_ATTRIBUTES = frozenset({"sliver_id", "allocation_status", "operational_status", "expires"})
"""Attributes added in manifests and ignored in requests."""

_ALLOWED_ATTRIBUTES = {
    SLOT: frozenset({"start", "end", "component_manager_id"}) | MANIFEST_ATTRIBUTES,
    CONTROLLER: frozenset({"address", "component_manager_id"}) | MANIFEST_ATTRIBUTES,
    VLAN: frozenset({"testbed", "island", "component_manager_id"}) | MANIFEST_ATTRIBUTES,
    SWITCH: frozenset({"component_id", "component_name", "component_manager_id", "sliver_id"}),
    LINK: frozenset({"component_id", "component_manager_id", "sliver_id"}),
}


def is_island_element(element: etree._Element) -> bool:
    """True if C{element} is in the island extension namespace."""
    tag = element.tag
    return isinstance(tag, str) and tag.startswith("{" + ISLAND_NS + "}")


def local_name(element: etree._Element) -> str:
    """Return an element's name without its namespace."""
    return etree.QName(element).localname


def check_request_element(element: etree._Element) -> None:
    """
    Check that an island element may appear in a request.

    @raise GeniError: BADARGS for C{schedule}, unknown island elements,
        unknown attributes, or child elements.
    """
    name = local_name(element)
    allowed = _ALLOWED_ATTRIBUTES.get(element.tag)
    if allowed is None:
        raise GeniError(GeniCode.BADARGS, f"island:{name} is not allowed in a request (known: slot, controller, vlan)")
    unknown = sorted(set(element.attrib) - allowed)
    if unknown:
        raise GeniError(GeniCode.BADARGS, f"island:{name} has unknown attribute(s): {', '.join(unknown)}")
    if len(element):
        raise GeniError(GeniCode.BADARGS, f"island:{name} must be empty")


def _required(element: etree._Element, attribute: str) -> str:
    value = element.get(attribute)
    if value is None or not value.strip():
        raise GeniError(GeniCode.BADARGS, f"island:{local_name(element)} needs a {attribute!r} attribute")
    return value.strip()


def read_slot(element: etree._Element) -> tuple[float, float]:
    """
    Read C{<island:slot start end>} as POSIX seconds.

    @raise GeniError: BADARGS for a missing or malformed time, or C{start >= end}.
    """
    start_text, end_text = _required(element, "start"), _required(element, "end")
    try:
        start = parse_time(start_text)
        end = parse_time(end_text)
    except GeniError as e:
        raise GeniError(GeniCode.BADARGS, f"island:slot: {e.output}") from None
    if not start < end:
        raise GeniError(GeniCode.BADARGS, f"island:slot: start {start_text!r} is not before end {end_text!r}")
    return start, end


def read_controller(element: etree._Element) -> str:
    """Read C{<island:controller address>}; the address is returned as written (stripped)."""
    return _required(element, "address")


def read_vlan(element: etree._Element) -> tuple[str, str]:
    """Read C{<island:vlan testbed island>} as its two unvalidated strings."""
    return _required(element, "testbed"), _required(element, "island")


def make_slot(parent: etree._Element, start: float, end: float, **attributes: str) -> etree._Element:
    """Append C{<island:slot>} to C{parent}; extra attributes follow C{start}, C{end}."""
    element = etree.SubElement(parent, SLOT, start=format_time(start), end=format_time(end))
    for key, value in attributes.items():
        element.set(key, value)
    return element


def make_controller(parent: etree._Element, address: str, **attributes: str) -> etree._Element:
    """Append C{<island:controller address>} to C{parent}."""
    element = etree.SubElement(parent, CONTROLLER, address=address)
    for key, value in attributes.items():
        element.set(key, value)
    return element


def sorted_vlans(vlan_map: Mapping[str, str]) -> list[tuple[str, str]]:
    """Return a validated VLAN map's items in numeric order of the testbed VLAN."""
    return sorted(vlan_map.items(), key=lambda item: int(item[0]))


def make_vlans(parent: etree._Element, vlan_map: Mapping[str, str], **attributes: str) -> list[etree._Element]:
    """Append one C{<island:vlan testbed island>} per map entry, in numeric order."""
    elements = []
    for testbed, island in sorted_vlans(vlan_map):
        element = etree.SubElement(parent, VLAN, testbed=testbed, island=island)
        for key, value in attributes.items():
            element.set(key, value)
        elements.append(element)
    return elements


def make_contents(
    parent: etree._Element, switches: Iterable[tuple[str, str]], links: Iterable[str], **attributes: str
) -> None:
    """
    Append one C{<island:switch component_id component_name>} per
    C{(switch URN, DPID)} and one C{<island:link component_id>} per link
    URN to C{parent}, each with C{attributes}.
    """
    for urn, dpid in switches:
        etree.SubElement(parent, SWITCH, component_id=urn, component_name=dpid, **attributes)
    for urn in links:
        etree.SubElement(parent, LINK, component_id=urn, **attributes)


def make_schedule(
    parent: etree._Element,
    booked: Iterable[tuple[float, float]],
    maintenance: Iterable[tuple[float, float, str]] = (),
    **attributes: str,
) -> etree._Element:
    """
    Append C{<island:schedule>} with one C{<island:booked>} per slot, then
    one C{<island:maintenance>} per C{(start, end, reason)} window, each sorted by start.
    """
    schedule = etree.SubElement(parent, SCHEDULE)
    for key, value in attributes.items():
        schedule.set(key, value)
    for start, end in sorted(booked):
        etree.SubElement(schedule, BOOKED, start=format_time(start), end=format_time(end))
    for start, end, reason in sorted(maintenance):
        etree.SubElement(schedule, MAINTENANCE, start=format_time(start), end=format_time(end), reason=reason)
    return schedule


def read_schedule(element: etree._Element) -> list[tuple[float, float]]:
    """
    Read C{<island:schedule>} back into C{(start, end)} pairs.

    @raise GeniError: BADARGS for malformed C{booked} children.
    """
    slots = []
    for child in element:
        if child.tag == MAINTENANCE:
            continue  # see read_maintenance
        if child.tag != BOOKED:
            raise GeniError(GeniCode.BADARGS, "island:schedule holds only island:booked and island:maintenance elements")
        try:
            slots.append((parse_time(_required(child, "start")), parse_time(_required(child, "end"))))
        except GeniError as e:
            raise GeniError(GeniCode.BADARGS, f"island:booked: {e.output}") from None
    return slots


def read_maintenance(element: etree._Element) -> list[tuple[float, float, str]]:
    """
    Read the C{<island:maintenance>} windows of C{<island:schedule>} as C{(start, end, reason)}.

    @raise GeniError: BADARGS for malformed C{maintenance} children.
    """
    windows = []
    for child in element.iterchildren(MAINTENANCE):
        try:
            windows.append((parse_time(_required(child, "start")), parse_time(_required(child, "end")), _required(child, "reason")))
        except GeniError as e:
            raise GeniError(GeniCode.BADARGS, f"island:maintenance: {e.output}") from None
    return windows
