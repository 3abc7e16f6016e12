# -*- test-case-name: tests.rspec.test_render -*-
"""
Tests for L{geniam.rspec.render}.
"""

from __future__ import annotations

import copy

from lxml import etree
from twisted.trial.unittest import SynchronousTestCase

from geniam.rspec.parser import serialise
from geniam.rspec.render import NotExact, join_document, render_children, root_frame
from tests.rspec.test_fixtures import AM, request_document, xml


class RenderTests(SynchronousTestCase):
    """Elements written once, joined into documents."""

    def test_join_is_serialise(self) -> None:
        """Children written once and joined give what serialising the whole tree gives."""
        body = (
            f'<node client_id="a" component_manager_id="{AM}"><interface client_id="a:1"/><x:e xmlns:x="urn:x">t</x:e></node>'
            '<island:controller address="192.0.2.1:6633"/><link client_id="l"/>'
        )
        root = xml(request_document(body))
        expected = serialise(copy.deepcopy(root))
        nsmap = tuple(root.nsmap.items())
        head, end = root_frame(root.tag, dict(root.attrib), nsmap)
        self.assertEqual(join_document(head, render_children(list(root), root.tag, nsmap), end), expected)

    def test_empty_document(self) -> None:
        """A document without children is written as an empty element, as serialise writes it."""
        root = xml(request_document(""))
        head, end = root_frame(root.tag, dict(root.attrib), tuple(root.nsmap.items()))
        self.assertEqual(join_document(head, [], end), serialise(root))

    def test_invented_prefix_refused(self) -> None:
        """An element whose namespace has no prefix in the map would get one invented: NotExact."""
        element = etree.Element("{urn:g}node", {"{urn:q}flag": "1"})
        self.assertRaises(NotExact, render_children, [element], "{urn:g}rspec", ((None, "urn:g"),))
