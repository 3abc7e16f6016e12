# -*- test-case-name: tests.rspec.test_manifest -*-
"""
The island's GENI v3 manifest: the request, annotated with what was booked.

The manifest names exactly the nodes and links the request named, so a
client comparing the components of request and manifest finds the same.
For each booking it holds:

  - the request's own nodes (of this aggregate), each with the
    C{sliver_id} and C{component_manager_id}, a bound node keeping its
    C{component_id}; an unbound node (the island) gets C{<services>} with
    a C{<login>} to the gateway per user (when the gateway host is known)
    and the users' public keys in the
    C{http://www.geni.net/resources/rspec/ext/user/1} extension
    (C{<user:services_user login user_urn><user:public_key>}). Without a
    request, one such node, C{<node client_id="island">};
  - the request's own links, with C{sliver_id} and a C{<component_manager>};
  - what the island contains, in the island extension: one
    C{<island:switch>} per switch and one C{<island:link>} per link, with
    their C{component_id}s;
  - C{<island:slot>} (with C{allocation_status}, C{operational_status}
    and C{expires}), C{<island:controller>} and C{<island:vlan>}s, each
    with C{sliver_id} and C{component_manager_id}.

The request's elements for other aggregates and its unknown extensions are
copied unchanged; its island elements for this aggregate are replaced by
the annotated ones. Only the first booking is matched with the request;
further bookings (several slots of one slice) get an island node of their
own whose C{client_id} ends in C{@<sliver name>}. No booking gives an empty
manifest.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from geniam.errors import GeniCode, GeniError
from geniam.gatewayconfig import login_for, parse_controller, validate_login, validate_ssh_keys, validate_vlan_map
from geniam.rspec import island
from geniam.rspec.advertisement import GENERATED_BY
from geniam.rspec.namespaces import (
    ISLAND_NS,
    ISLAND_PREFIX,
    RSPEC_NS,
    RSPEC_SCHEMAS,
    USER_NS,
    USER_SCHEMA,
    XSI_NS,
    qname,
    rspec_tag,
)
from geniam.rspec.parser import DEFAULT_LIMITS, ParseLimits, parse_rspec, serialise
from geniam.rspec.request import (
    COMPONENT_MANAGER,
    ISLAND_CLIENT_ID,
    NODE,
    SLIVER_TYPE,
    classify_request,
    link_managers,
)
from geniam.rspec.resources import IslandResources
from geniam.timeutil import format_time, parse_time
from geniam.urn import parse_urn

SERVICES = rspec_tag("services")
LOGIN = rspec_tag("login")
HOST = rspec_tag("host")
SERVICES_USER = qname(USER_NS, "services_user")
PUBLIC_KEY = qname(USER_NS, "public_key")

_STATE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_]*$")


@dataclass(frozen=True)
class ManifestUser:
    """
    A login account shown in a manifest.

    @ivar urn: the user's URN.
    @ivar keys: the user's SSH public keys.
    @ivar login: the account name; by default the name part of C{urn}.
    """

    urn: str
    keys: tuple[str, ...] = ()
    login: str | None = None

    @property
    def account(self) -> str:
        """The account name shown as C{login}/C{username}."""
        if self.login:
            return self.login
        return login_for(parse_urn(self.urn).name)


@dataclass(frozen=True)
class ManifestBooking:
    """
    One booking of the island, as the manifest describes it.

    @ivar sliver_urn: the booking's sliver URN.
    @ivar start: the slot's start, POSIX seconds.
    @ivar end: the slot's end, POSIX seconds.
    @ivar controller: the OpenFlow controller C{host:port}, if known.
    @ivar vlan_map: the VLAN map C{{testbed VLAN: island VLAN}}.
    @ivar users: the login accounts and their keys.
    @ivar allocation_status: e.g. C{geni_allocated}, C{geni_provisioned}.
    @ivar operational_status: e.g. C{geni_pending_allocation}, C{geni_ready}.
    @ivar expires: when the current allocation state expires, if known.
    """

    sliver_urn: str
    start: float
    end: float
    controller: str | None = None
    vlan_map: Mapping[str, str] = field(default_factory=dict)
    users: tuple[ManifestUser, ...] = ()
    allocation_status: str = "geni_allocated"
    operational_status: str = "geni_pending_allocation"
    expires: float | None = None


def _get(source: object, *names: str, default: Any = None) -> Any:
    for name in names:
        if isinstance(source, Mapping):
            if name in source:
                return source[name]
        elif hasattr(source, name):
            return getattr(source, name)
    return default


def _time(value: object, what: str) -> float:
    if isinstance(value, str):
        return parse_time(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise GeniError(GeniCode.BADARGS, f"booking {what} must be POSIX seconds or RFC 3339, got {value!r}")


def as_user(source: object) -> ManifestUser:
    """
    Normalise a user given as L{ManifestUser}, a C{geni_users} struct
    C{{urn, keys}} (optionally C{login}) or an object with those attributes.

    @raise GeniError: BADARGS for a bad URN or key.
    """
    urn = _get(source, "urn")
    parse_urn(urn, "user")
    keys = validate_ssh_keys(list(_get(source, "keys", default=()) or ()))
    login = _get(source, "login")
    if login is not None:
        validate_login(login)
    else:
        login_for(parse_urn(urn, "user").name)
    return ManifestUser(urn, keys, login)


def as_booking(source: object) -> ManifestBooking:
    """
    Normalise and validate a booking given as L{ManifestBooking}, a dict or
    any object with the same field names.

    A dict may give the slot as C{slot=(start, end)}, times as POSIX
    seconds or RFC 3339, and the states as C{allocation_state} /
    C{operational_state}.

    @raise GeniError: BADARGS for anything malformed.
    """
    sliver_urn = _get(source, "sliver_urn")
    parse_urn(sliver_urn, "sliver")
    slot = _get(source, "slot")
    if slot is not None:
        start, end = _get(slot, "start", default=None), _get(slot, "end", default=None)
        if start is None and isinstance(slot, (tuple, list)) and len(slot) == 2:
            start, end = slot
    else:
        start, end = _get(source, "start"), _get(source, "end")
    start_s, end_s = _time(start, "start"), _time(end, "end")
    if not start_s < end_s:
        raise GeniError(GeniCode.BADARGS, f"booking {sliver_urn}: slot start is not before its end")
    controller = _get(source, "controller")
    if controller is not None:
        parse_controller(controller)
    vlan_map = validate_vlan_map(dict(_get(source, "vlan_map", default=None) or {}))
    users = tuple(as_user(u) for u in (_get(source, "users", default=()) or ()))
    allocation = _get(source, "allocation_status", "allocation_state", default="geni_allocated")
    operational = _get(source, "operational_status", "operational_state", default="geni_pending_allocation")
    for state in (allocation, operational):
        if not isinstance(state, str) or not _STATE.match(state):
            raise GeniError(GeniCode.BADARGS, f"booking {sliver_urn}: bad state name {state!r}")
    expires = _get(source, "expires")
    return ManifestBooking(
        sliver_urn=sliver_urn,
        start=start_s,
        end=end_s,
        controller=controller,
        vlan_map=vlan_map,
        users=users,
        allocation_status=allocation,
        operational_status=operational,
        expires=_time(expires, "expires") if expires is not None else None,
    )


def _fresh(base: str, used: set[str]) -> str:
    candidate, n = base, 1
    while candidate in used:
        n += 1
        candidate = f"{base}-{n}"
    used.add(candidate)
    return candidate


def _add_services(node: etree._Element, resources: IslandResources, booking: ManifestBooking) -> None:
    if not booking.users and resources.gateway_host is None:
        return
    services = node.find(SERVICES)
    if services is None:
        services = etree.SubElement(node, SERVICES)
    for user in booking.users:
        if resources.gateway_host is not None:
            etree.SubElement(
                services,
                LOGIN,
                authentication="ssh-keys",
                hostname=resources.gateway_host,
                port=str(resources.gateway_port),
                username=user.account,
            )
    for user in booking.users:
        entry = etree.SubElement(services, SERVICES_USER, login=user.account, user_urn=user.urn)
        for key in user.keys:
            etree.SubElement(entry, PUBLIC_KEY).text = key
    if resources.gateway_host is not None and node.find(HOST) is None:
        etree.SubElement(node, HOST, name=resources.gateway_host)


def _island_node(
    root: etree._Element, resources: IslandResources, booking: ManifestBooking, client_id: str
) -> None:
    node = etree.SubElement(
        root,
        NODE,
        client_id=client_id,
        component_manager_id=resources.am_urn,
        exclusive="true",
        sliver_id=booking.sliver_urn,
    )
    etree.SubElement(node, SLIVER_TYPE, name=resources.sliver_type)
    _add_services(node, resources, booking)


def _annotations(root: etree._Element, resources: IslandResources, booking: ManifestBooking) -> None:
    scope = {"component_manager_id": resources.am_urn, "sliver_id": booking.sliver_urn}
    state = {
        "allocation_status": booking.allocation_status,
        "operational_status": booking.operational_status,
    }
    if booking.expires is not None:
        state["expires"] = format_time(booking.expires)
    island.make_contents(
        root,
        [(resources.node_urn(dpid), dpid) for dpid in resources.switches],
        [resources.link_urn(link) for link in resources.links],
        **scope,
    )
    island.make_slot(root, booking.start, booking.end, **scope, **state)
    if booking.controller is not None:
        island.make_controller(root, booking.controller, **scope)
    island.make_vlans(root, booking.vlan_map, **scope)


def _is_statistics(element: etree._Element) -> bool:
    return isinstance(element.tag, str) and element.tag in ("statistics", rspec_tag("statistics"))


def _copy_request(
    root: etree._Element,
    request: str | bytes,
    resources: IslandResources,
    booking: ManifestBooking,
    limits: ParseLimits,
) -> None:
    """Copy the request into C{root}, annotating this aggregate's nodes and links."""
    request_root = parse_rspec(request, "request", limits)
    elements = classify_request(request_root, resources.am_urn)
    own_nodes = set(elements.own_nodes)
    own_links = set(elements.own_links)
    own_island = set(elements.own_island)
    copied_nodes: list[etree._Element] = []
    for child in request_root:
        if child in own_island or _is_statistics(child):
            continue
        element = copy.deepcopy(child)
        root.append(element)
        if child in own_nodes:
            element.set("sliver_id", booking.sliver_urn)
            element.set("component_manager_id", resources.am_urn)
            copied_nodes.append(element)
        elif child in own_links:
            element.set("sliver_id", booking.sliver_urn)
            if not any(parse_urn(resources.am_urn).key == m.key for m in link_managers(element)):
                manager = etree.Element(COMPONENT_MANAGER, name=resources.am_urn)
                element.insert(0, manager)
    unbound = [n for n in copied_nodes if not (n.get("component_id") or "").strip()]
    for node in unbound or copied_nodes[:1]:
        _add_services(node, resources, booking)


def build_manifest(
    resources: IslandResources,
    bookings: Iterable[ManifestBooking | Mapping[str, Any] | Any],
    now: float,
    request: str | bytes | None = None,
    limits: ParseLimits = DEFAULT_LIMITS,
) -> str:
    """
    Write the manifest of a slice's bookings at this island.

    @param resources: the island.
    @param bookings: the slice's bookings here, as L{ManifestBooking}s,
        dicts or objects with the same field names (see L{as_booking}).
    @param now: the current time (the C{generated} attribute).
    @param request: the request RSpec the first booking came from, if
        known; it is copied and annotated (see the module docstring).
    @param limits: parser bounds for C{request}.
    @return: the manifest XML; with no booking, an empty manifest.
    @raise GeniError: BADARGS for a malformed booking or request.
    """
    normalised = [as_booking(b) for b in bookings]
    root = etree.Element(
        rspec_tag("rspec"),
        nsmap={None: RSPEC_NS, ISLAND_PREFIX: ISLAND_NS, "user": USER_NS, "xsi": XSI_NS},
    )
    root.set(qname(XSI_NS, "schemaLocation"), f"{RSPEC_NS} {RSPEC_SCHEMAS['manifest']} {USER_NS} {USER_SCHEMA}")
    root.set("type", "manifest")
    root.set("generated", format_time(now))
    root.set("generated_by", GENERATED_BY)
    expiries = [b.expires for b in normalised if b.expires is not None]
    if expiries:
        root.set("expires", format_time(min(expiries)))
    if not normalised:
        return serialise(root)
    used: set[str] = set()
    for index, booking in enumerate(normalised):
        if index == 0 and request is not None:
            _copy_request(root, request, resources, booking, limits)
            used = {e.get("client_id", "") for e in root.iter() if e.get("client_id") is not None}
        else:
            suffix = "@" + parse_urn(booking.sliver_urn).name if index else ""
            _island_node(root, resources, booking, _fresh(f"{ISLAND_CLIENT_ID}{suffix}", used))
        _annotations(root, resources, booking)
    return serialise(root)


def booking_slivers(manifest: str | bytes, limits: ParseLimits = DEFAULT_LIMITS) -> list[dict[str, Any]]:
    """
    Read the island bookings back out of a manifest (for clients and tests).

    @return: one dict per C{<island:slot>}: C{sliver_urn}, C{start}, C{end},
        C{allocation_status}, C{operational_status}, C{component_manager_id},
        C{controller} (or C{None}) and C{vlan_map}.
    @raise GeniError: BADARGS for a malformed manifest.
    """
    root = parse_rspec(manifest, "manifest", limits)
    found: dict[str, dict[str, Any]] = {}
    for element in root.iterchildren(island.SLOT, island.CONTROLLER, island.VLAN):
        sliver = element.get("sliver_id", "")
        entry = found.setdefault(
            sliver, {"sliver_urn": sliver, "controller": None, "vlan_map": {}}
        )
        if element.tag == island.SLOT:
            entry["start"], entry["end"] = island.read_slot(element)
            for attribute in ("allocation_status", "operational_status", "component_manager_id"):
                entry[attribute] = element.get(attribute)
        elif element.tag == island.CONTROLLER:
            entry["controller"] = island.read_controller(element)
        else:
            testbed, island_vlan = island.read_vlan(element)
            entry["vlan_map"][testbed] = island_vlan
    return list(found.values())

