# -*- test-case-name: tests.rspec.test_split,tests.rspec.test_merge -*-
"""
Splitting a request RSpec into one request per aggregate.

The slice manager sends each aggregate only what concerns it. Routing is
decided on one parsed tree; each routed element is then written once
(L{geniam.rspec.render}) and every part's text is joined from those
texts, which gives, character for character, what building each part as
a tree and serialising it gives (L{split_by_trees}, also the fallback
where lxml would invent a namespace prefix).
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from lxml import etree

from geniam.errors import GeniCode, GeniError
from geniam.rspec import island
from geniam.rspec.merge import is_statistics
from geniam.rspec.parser import DEFAULT_LIMITS, ParseLimits, parse_rspec, serialise
from geniam.rspec.render import NotExact, join_document, render_children, root_frame
from geniam.rspec.request import (
    INTERFACE,
    LINK,
    NODE,
    check_client_ids,
    describe_element,
    island_manager,
    link_interface_client_ids,
    link_managers,
    node_authority,
    node_manager,
)
from geniam.urn import URN, parse_urn

Parts = dict[str, list[etree._Element]]


@dataclass(frozen=True)
class _Aggregates:
    """The known aggregates' URNs, parsed once per list (the slice manager's list rarely changes)."""

    known: dict[str, str]
    by_authority: dict[str, list[str]]
    parsed: dict[str, URN]


@functools.lru_cache(maxsize=16)
def _aggregates(urns: tuple[str, ...]) -> _Aggregates:
    known: dict[str, str] = {}
    by_authority: dict[str, list[str]] = {}
    parsed_texts: dict[str, URN] = {}
    for urn in urns:
        parsed = parsed_texts.get(urn) or parsed_texts.setdefault(urn, parse_urn(urn))
        known.setdefault(parsed.key, urn)
        by_authority.setdefault(parsed.authority.lower(), []).append(urn)
    return _Aggregates(known, by_authority, parsed_texts)


def split_request(
    text: str | bytes,
    aggregates: Sequence[str],
    limits: ParseLimits = DEFAULT_LIMITS,
) -> dict[str, str]:
    """
    Split a request into one request per aggregate.

    Routing, by top-level element:

      - C{<node>}: to its C{component_manager_id}; without one, to the
        aggregate whose authority minted its C{component_id};
      - C{<link>}: to every aggregate its C{<component_manager>}s name and
        every aggregate owning a node its C{<interface_ref client_id>}s
        point at (a link spanning aggregates goes to each);
      - island elements: to their C{component_manager_id}; without one,
        to every aggregate that receives something else;
      - anything else (extensions) to every aggregate that receives
        something; C{<statistics>} to none.

    With a single known aggregate, elements naming none go to it.

    @param text: the request.
    @param aggregates: the known aggregates' URNs.
    @return: C{{aggregate URN as given: request XML}}, only for the
        aggregates the request concerns, in the order of C{aggregates}.
    @raise GeniError: BADARGS, listing them, for elements naming no known
        aggregate (or naming none when several are known), and for a
        request that concerns no aggregate; also as L{parse_rspec}.
    """
    root, parts = route_request(text, aggregates, limits)
    try:
        return _written_once(root, parts, _declared_on_root(text, root))
    except NotExact:
        return split_by_trees(root, parts)


def route_request(
    text: str | bytes,
    aggregates: Sequence[str],
    limits: ParseLimits = DEFAULT_LIMITS,
) -> tuple[etree._Element, Parts]:
    """
    Parse a request and decide where each of its top-level elements goes,
    as L{split_request} describes.

    @return: the parsed root and, per aggregate concerned (in the order of
        C{aggregates}), its elements in document order.
    @raise GeniError: as L{split_request}.
    """
    # Each URN text is parsed once: the aggregates' when first seen, and a node naming one of them by the same text reuses it.
    index = _aggregates(tuple(aggregates))
    known, by_authority, parsed_texts = index.known, index.by_authority, index.parsed
    if not known:
        raise GeniError(GeniCode.BADARGS, "no aggregate to send the request to")
    only = next(iter(known.values())) if len(known) == 1 else None
    root = parse_rspec(text, "request", limits)
    check_client_ids(root)

    unknown: list[str] = []
    targets: dict[etree._Element, list[str]] = {}
    interface_owner: dict[str, str] = {}
    keys: dict[str, str] = {urn: parsed_texts[urn].key for urn in known.values()}  # this call's own, extended by route()

    def route(element: etree._Element, urns: Iterable[str]) -> None:
        """Send C{element} to the aggregates C{urns} name, or record it as unroutable."""
        chosen: list[str] = []
        for urn in urns:
            key = keys.get(urn)
            if key is None:
                key = keys[urn] = parse_urn(urn).key
            aggregate = known.get(key)
            if aggregate is None:
                unknown.append(f"{describe_element(element)} (component manager {urn})")
                return
            if aggregate not in chosen:
                chosen.append(aggregate)
        if not chosen:
            if only is None:
                unknown.append(f"{describe_element(element)} (names no component manager)")
                return
            chosen = [only]
        targets[element] = chosen

    for node in root.iterchildren(NODE):
        named = node.get("component_manager_id")
        manager = parsed_texts.get(named.strip()) if named is not None else None
        if manager is None:
            manager = node_manager(node)
        if manager is not None:
            route(node, [str(manager)])
        else:
            authority = node_authority(node)
            candidates = by_authority.get(authority.lower(), []) if authority else []
            route(node, candidates[:1] if len(candidates) == 1 else [])
        for interface in node.iterchildren(INTERFACE):
            if interface.get("client_id") and node in targets:
                interface_owner[interface.get("client_id", "")] = targets[node][0]
    for link in root.iterchildren(LINK):
        urns = [str(m) for m in link_managers(link)]
        urns += [interface_owner[c] for c in link_interface_client_ids(link) if c in interface_owner]
        route(link, urns)
    for element in root:
        if island.is_island_element(element):
            island.check_request_element(element)
            scope = island_manager(element)
            if scope is not None:
                route(element, [str(scope)])
    if unknown:
        raise GeniError(
            GeniCode.BADARGS,
            "request elements name no known aggregate: "
            + "; ".join(unknown[:20])
            + (f" (and {len(unknown) - 20} more)" if len(unknown) > 20 else "")
            + f". Known aggregates: {', '.join(known.values())}",
        )
    concerned = {urn for chosen in targets.values() for urn in chosen}
    if not concerned:
        if only is None:
            raise GeniError(GeniCode.BADARGS, "the request names no aggregate (set component_manager_id)")
        concerned = {only}
    ordered = [a for a in known.values() if a in concerned]
    children: dict[str, list[etree._Element]] = {aggregate: [] for aggregate in ordered}
    everywhere = list(children.values())
    for child in root:
        if is_statistics(child):
            continue
        chosen = targets.get(child)
        if chosen is None:
            for kept in everywhere:
                kept.append(child)
        else:
            for aggregate in chosen:
                part_children = children.get(aggregate)
                if part_children is not None:
                    part_children.append(child)
    return root, children


def _declared_on_root(text: str | bytes, root: etree._Element) -> bool:
    """
    Whether every namespace declaration of the document C{root} was
    parsed from is on the root.

    Only then does moving an element under a root with the same
    declarations write it as copying it there does: lxml looks namespaces
    up by URI, and a moved element using a URI that an inner declaration
    binds to a second prefix can come out under that prefix, even where a
    deeper declaration has taken it for another URI. Counting C{xmlns} in
    the text errs only towards C{False} (text or attribute values holding
    it, encodings other than UTF-8).
    """
    found = text.count("xmlns") if isinstance(text, str) else bytes(text).count(b"xmlns")
    return found == len(root.nsmap)  # the root's own declarations: it has no parent


def _written_once(root: etree._Element, parts: Parts, movable: bool) -> dict[str, str]:
    """
    Each part's text, every element written once: moved out of C{root}
    when C{movable} (L{_declared_on_root}), else copied as the trees
    copy it.
    """
    if any((child.tail or "").strip() for child in root):
        raise NotExact()  # text between top-level elements: left to the trees
    nsmap = tuple(root.nsmap.items())
    head, end = root_frame(root.tag, dict(root.attrib), nsmap)
    routed = list(dict.fromkeys(child for children in parts.values() for child in children))
    written = routed if movable else [copy.deepcopy(child) for child in routed]
    try:
        rendered = render_children(written, root.tag, nsmap)
    except NotExact:
        for child in routed:
            child.tail = None  # as the trees will indent it
        raise
    texts = dict(zip(routed, rendered))
    return {aggregate: join_document(head, [texts[child] for child in children], end) for aggregate, children in parts.items()}


def split_by_trees(root: etree._Element, parts: Parts) -> dict[str, str]:
    """Each part built as a tree of copies of its elements and serialised."""
    attributes = dict(root.attrib)
    result: dict[str, str] = {}
    for aggregate, children in parts.items():
        part = etree.Element(root.tag, attrib=attributes, nsmap=root.nsmap)
        part.extend([copy.deepcopy(child) for child in children])
        result[aggregate] = serialise(part)
    return result
