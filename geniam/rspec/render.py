# -*- test-case-name: tests.rspec.test_render,tests.rspec.test_mergecache,tests.rspec.test_split -*-
"""
Writing top-level RSpec elements once, as they stand in a larger document.

Merging and splitting build documents that differ only in which
top-level elements they hold. Writing each element once, as it would
stand under a root with a given namespace map, and joining the texts
gives the same characters as building each document as a tree and
serialising it with L{geniam.rspec.parser.serialise}, for a fraction of
the work. Where lxml would have to invent a namespace prefix
(C{ns0}...), whose number depends on the whole document, L{NotExact} is
raised and the caller builds the tree.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence

from lxml import etree

MARKER = secrets.token_hex(16)
"""Separates rendered elements; random per process, so no document can hold it."""

_GENERATED_PREFIX = re.compile(r"xmlns:ns[0-9]")

NamespaceMap = tuple[tuple[str | None, str], ...]


class NotExact(Exception):
    """The rendering would not match the tree's serialisation; build the tree instead."""


def render_children(children: Sequence[etree._Element], tag: str, nsmap: NamespaceMap) -> tuple[str, ...]:
    """
    The text of each element as it stands, indented, under a C{tag} root
    with C{nsmap}. The elements are moved under such a root: they must
    belong to the caller.

    @raise NotExact: when lxml had to invent a prefix.
    """
    holder = etree.Element(tag, nsmap=dict(nsmap))  # type: ignore[arg-type]
    holder.text = MARKER
    for child in children:
        holder.append(child)
        child.tail = MARKER
    etree.indent(holder, space="  ")
    parts = etree.tostring(holder, encoding="unicode", pretty_print=True).split(MARKER)
    if len(parts) != len(children) + 2:
        raise NotExact()
    texts = tuple(parts[1:-1])
    if any(_GENERATED_PREFIX.search(text) for text in texts):
        raise NotExact()
    return texts


def root_frame(tag: str, attributes: dict[str, str], nsmap: NamespaceMap) -> tuple[str, str]:
    """
    The start and end tags of a C{tag} root with C{attributes} and
    C{nsmap}, as L{geniam.rspec.parser.serialise} writes them around children.
    """
    root = etree.Element(tag, attrib=attributes, nsmap=dict(nsmap))  # type: ignore[arg-type]
    root.text = MARKER
    head, end = etree.tostring(root, encoding="unicode").split(MARKER)
    return head, end


def join_document(head: str, texts: Sequence[str], end: str) -> str:
    """A document with C{texts} as the children between C{head} and C{end}, indented as L{serialise} does."""
    if not texts:
        return head[:-1] + "/>\n"
    return head + "".join(f"\n  {text}" for text in texts) + f"\n{end}\n"
