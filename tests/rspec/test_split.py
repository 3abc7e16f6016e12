# -*- test-case-name: tests.rspec.test_split -*-
"""
Tests for L{geniam.rspec.split}.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from geniam.errors import GeniCode, GeniError
from geniam.rspec import split
from geniam.rspec.manifest import build_manifest
from geniam.rspec.namespaces import RSPEC_NS
from geniam.rspec.parser import parse_rspec
from geniam.rspec.render import NotExact, render_children
from geniam.rspec.request import build_request, parse_request
from geniam.rspec.split import route_request, split_by_trees, split_request
from tests.rspec.test_fixtures import (
    AM,
    DPID1,
    END,
    OTHER_AM,
    START,
    THIRD_AM,
    island,
    request_document,
    xml,
)

G = f"{{{RSPEC_NS}}}"


class SplitRequestTests(SynchronousTestCase):
    """split_request."""

    def test_by_component_manager(self) -> None:
        """Each aggregate gets its own nodes, the links touching it, and its island elements."""
        body = f"""
            <node client_id="a" component_manager_id="{AM}"><interface client_id="a:1"/></node>
            <node client_id="b" component_manager_id="{OTHER_AM}"><interface client_id="b:1"/></node>
            <node client_id="c" component_id="urn:publicid:IDN+third.example+node+pc1"/>
            <link client_id="ab"><interface_ref client_id="a:1"/><interface_ref client_id="b:1"/></link>
            <link client_id="named"><component_manager name="{THIRD_AM}"/></link>
            <island:slot start="2027-01-15T08:00:00Z" end="2027-01-15T09:00:00Z" component_manager_id="{AM}"/>
            <island:slot start="2027-01-16T08:00:00Z" end="2027-01-16T09:00:00Z" component_manager_id="{OTHER_AM}"/>
            <island:controller address="192.0.2.1:6633"/>
            <ext:thing xmlns:ext="http://example.com/ext"/>
            <statistics call="Allocate"/>
        """
        parts = split_request(request_document(body), [AM, OTHER_AM, THIRD_AM, "urn:publicid:IDN+idle.example+authority+am"])
        self.assertEqual(list(parts), [AM, OTHER_AM, THIRD_AM])

        def names(text: str) -> list[str | None]:
            """The client_ids of a request's nodes and links."""
            root = parse_rspec(text, "request")
            return [e.get("client_id") for e in root.iterchildren(f"{G}node", f"{G}link")]

        self.assertEqual(names(parts[AM]), ["a", "ab"])
        self.assertEqual(names(parts[OTHER_AM]), ["b", "ab"])
        self.assertEqual(names(parts[THIRD_AM]), ["c", "named"])
        for text in parts.values():
            self.assertNotIn("statistics", text)
            self.assertIn("http://example.com/ext", text)
            self.assertIn("192.0.2.1:6633", text)
        self.assertEqual(parse_request(parts[AM], AM).slot, (START, START + 3600))
        self.assertEqual(parse_request(parts[OTHER_AM], OTHER_AM).slot, (START + 86400, START + 86400 + 3600))
        self.assertIsNone(parse_request(parts[THIRD_AM], THIRD_AM).slot)

    def test_unknown_aggregates_listed(self) -> None:
        """Elements naming no known aggregate are BADARGS, each listed."""
        body = (
            '<node client_id="lost" component_manager_id="urn:publicid:IDN+nowhere.example+authority+am"/>'
            '<node client_id="anonymous"/>'
            '<link client_id="orphan"><component_manager name="urn:publicid:IDN+void.example+authority+am"/></link>'
            '<island:vlan testbed="1" island="2" component_manager_id="urn:publicid:IDN+gone.example+authority+am"/>'
        )
        error = self.assertRaises(GeniError, split_request, request_document(body), [AM, OTHER_AM])
        self.assertEqual(error.code, GeniCode.BADARGS)
        for fragment in ("lost", "anonymous", "orphan", "gone.example", AM):
            self.assertIn(fragment, error.output)

    def test_single_aggregate_takes_unnamed(self) -> None:
        """With one known aggregate, a request naming none goes to it whole."""
        text = build_request(START, END)
        parts = split_request(text, [AM])
        self.assertEqual(list(parts), [AM])
        self.assertEqual(parse_request(parts[AM], AM).slot, (START, END))

    def test_unnamed_with_several_aggregates(self) -> None:
        """With several aggregates, an unnamed request is BADARGS asking for component_manager_id."""
        error = self.assertRaises(GeniError, split_request, build_request(START, END), [AM, OTHER_AM])
        self.assertIn("names no component manager", error.output)
        error = self.assertRaises(GeniError, split_request, request_document(""), [AM, OTHER_AM])
        self.assertIn("component_manager_id", error.output)

    def test_routes_by_component_authority(self) -> None:
        """A bound node without component_manager_id goes to the aggregate of its authority."""
        body = f'<node client_id="sw" component_id="urn:publicid:IDN+other.example+node+{DPID1}"/>'
        self.assertEqual(list(split_request(request_document(body), [AM, OTHER_AM])), [OTHER_AM])

    def test_case_insensitive_and_as_given(self) -> None:
        """Aggregates match case-insensitively and keys are the URNs as given."""
        body = f'<node client_id="a" component_manager_id="{AM.upper().replace("URN:PUBLICID:IDN", "urn:publicid:IDN").replace("+AUTHORITY+AM", "+authority+am")}"/>'
        self.assertEqual(list(split_request(request_document(body), [AM, OTHER_AM])), [AM])

    def test_no_aggregates(self) -> None:
        """Splitting for no aggregate is BADARGS."""
        self.assertRaises(GeniError, split_request, build_request(START, END), [])

    def test_not_a_request(self) -> None:
        """Only requests are split."""
        error = self.assertRaises(GeniError, split_request, build_manifest(island(), [], START), [AM])
        self.assertEqual(error.code, GeniCode.BADARGS)

    @given(st.lists(st.sampled_from([AM, OTHER_AM, THIRD_AM]), min_size=1, max_size=6))
    def test_split_partitions_nodes(self, managers: list[str]) -> None:
        """Property: every node goes to exactly the aggregate it names."""
        body = "".join(f'<node client_id="n{i}" component_manager_id="{m}"/>' for i, m in enumerate(managers))
        parts = split_request(request_document(body), [AM, OTHER_AM, THIRD_AM])
        self.assertEqual(set(parts), set(managers))
        for manager, text in parts.items():
            got = [n.get("client_id") for n in xml(text).findall(f"{G}node")]
            self.assertEqual(got, [f"n{i}" for i, m in enumerate(managers) if m == manager])


# Top-level elements of all the kinds the split routes, with namespaces declared where they stand.
_ELEMENTS = st.sampled_from(
    [
        f'<node client_id="{{n}}" component_manager_id="{AM}"><interface client_id="{{n}}:1"/></node>',
        f'<node client_id="{{n}}" component_manager_id="{OTHER_AM}"><sliver_type name="raw-pc">t</sliver_type></node>',
        '<node client_id="{n}" component_id="urn:publicid:IDN+third.example+node+pc{n}"/>',
        f'<link client_id="{{n}}"><component_manager name="{AM}"/><component_manager name="{THIRD_AM}"/></link>',
        f'<island:slot start="2027-01-15T08:00:00Z" end="2027-01-15T09:00:00Z" component_manager_id="{OTHER_AM}"/>',
        '<island:controller address="192.0.2.1:6633"/>',
        '<ext:thing xmlns:ext="http://example.com/ext" ext:level="{n}"><ext:deep>&lt;x&gt; &amp; "y"</ext:deep></ext:thing>',
        '<other xmlns="http://example.com/default"><inner a="{n}"/></other>',
        f'<node client_id="{{n}}" component_manager_id="{AM}"><x xmlns:p="{RSPEC_NS}" p:a="{{n}}"><y xmlns:p="http://example.com/p"/></x></node>',
        "<statistics/>",
    ]
)


class WrittenOnceTests(SynchronousTestCase):
    """The parts are joined from texts written once, exactly as their trees serialise."""

    def both(self, text: str, aggregates: list[str]) -> tuple[dict[str, str], dict[str, str]]:
        """The split as made, and each part built as a tree, from separate parses."""
        root, parts = route_request(text, aggregates)
        return split_request(text, aggregates), split_by_trees(root, parts)

    @given(st.lists(_ELEMENTS, min_size=1, max_size=12))
    def test_same_as_trees(self, templates: list[str]) -> None:
        """Property: for any mix of elements, every part is character for character its tree's serialisation."""
        body = f'<node client_id="first" component_manager_id="{THIRD_AM}"/>'
        body += "".join(template.format(n=i) for i, template in enumerate(templates))
        made, trees = self.both(request_document(body), [AM, OTHER_AM, THIRD_AM])
        self.assertEqual(made, trees)
        self.assertTrue(all(parse_rspec(text, "request") is not None for text in made.values()))

    def test_namespace_bound_again_below_the_root(self) -> None:
        """
        A namespace given a second prefix inside an element, that prefix
        bound again deeper: every element keeps its namespace, character
        for character as the trees write it.
        """
        body = (
            f'<node client_id="a" component_manager_id="{AM}">'
            f'<x xmlns:p="{RSPEC_NS}" p:a="1"><y xmlns:p="http://example.com/p"/></x></node>'
        )
        made, trees = self.both(request_document(body), [AM, OTHER_AM])
        self.assertEqual(made, trees)
        self.assertIsNotNone(parse_rspec(made[AM], "request").find(f"{G}node/{G}x/{G}y"))

    def test_text_between_elements(self) -> None:
        """Text standing between top-level elements is kept, as the trees keep it."""
        body = f'<node client_id="a" component_manager_id="{AM}"/>words<node client_id="b" component_manager_id="{AM}"/>'
        made, trees = self.both(request_document(body), [AM, OTHER_AM])
        self.assertEqual(made, trees)
        self.assertIn("words", made[AM])

    def test_trees_when_not_exact(self) -> None:
        """When the texts cannot be exact (lxml would invent a prefix), the parts are built as trees, whole."""
        body = f'<node client_id="a" component_manager_id="{AM}"/><node client_id="b" component_manager_id="{OTHER_AM}"/>'
        expected = self.both(request_document(body), [AM, OTHER_AM])[1]

        def moved_then_refused(children: list[Any], tag: str, nsmap: Any) -> tuple[str, ...]:
            render_children(children, tag, nsmap)  # the elements are moved and marked, as a late refusal leaves them
            raise NotExact()

        self.patch(split, "render_children", moved_then_refused)
        self.assertEqual(split_request(request_document(body), [AM, OTHER_AM]), expected)
