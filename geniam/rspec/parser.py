# -*- test-case-name: tests.rspec.test_parser -*-
"""
A hardened XML parser for RSpecs received from the network.

Every document is checked against L{ParseLimits} before and after lxml
sees it:

  - its size is checked before parsing (C{TOOBIG});
  - a C{DOCTYPE} or C{ENTITY} declaration is refused, both by a scan of
    the raw bytes and by inspecting the parsed tree (C{BADARGS}), so no
    entity is ever expanded (billion laughs) or fetched (external
    entities such as C{file:///etc/passwd});
  - lxml runs with C{resolve_entities=False}, C{no_network=True},
    C{load_dtd=False} and C{huge_tree=False}; comments and processing
    instructions are dropped;
  - the tree's depth (C{BADARGS}) and element count (C{TOOBIG}) are
    bounded.

Every failure raises L{GeniError}; nothing else escapes. The functions
are pure and build their parser per call, so they may run in worker
threads.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lxml import etree

from geniam.errors import GeniCode, GeniError
from geniam.rspec.namespaces import RSPEC_NS, RSPEC_TYPES, rspec_tag

_DECLARATION = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)
_XML_DECL = re.compile(r"^\s*<\?xml[^>]*\?>")
_MESSAGE_CHARS = 200


@dataclass(frozen=True)
class ParseLimits:
    """
    Bounds on a document received from the network.

    @ivar max_bytes: the largest document accepted, in bytes of UTF-8
        (also the largest output of L{geniam.rspec.compression.decompress_rspec}).
    @ivar max_depth: the deepest element nesting accepted (the root is depth 1).
    @ivar max_elements: the largest number of elements accepted.
    """

    max_bytes: int = 4 * 1024 * 1024
    max_depth: int = 64
    max_elements: int = 100_000

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_depth", "max_elements"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"ParseLimits.{name} must be a positive integer, got {value!r}")


DEFAULT_LIMITS = ParseLimits()
"""The limits used when a caller names none: 4 MiB, depth 64, 100 000 elements."""


def _shorten(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= _MESSAGE_CHARS else text[: _MESSAGE_CHARS - 3] + "..."


def new_parser() -> etree.XMLParser:
    """A parser with the RSpec options: no entities, DTDs, network, comments or blank text (one per thread)."""
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
        remove_blank_text=True,
        collect_ids=False,
    )


def to_bytes(data: str | bytes, limits: ParseLimits = DEFAULT_LIMITS, what: str = "RSpec") -> bytes:
    """
    Return C{data} as bytes, refusing documents over the size limit.

    A C{str} loses its XML declaration (its encoding would no longer be
    true) and is encoded as UTF-8.

    @raise GeniError: BADARGS if C{data} is neither C{str} nor C{bytes};
        TOOBIG if it is larger than C{limits.max_bytes}.
    """
    if isinstance(data, str):
        if len(data) > limits.max_bytes:
            raise GeniError(GeniCode.TOOBIG, f"{what} is larger than {limits.max_bytes} bytes")
        try:
            raw = _XML_DECL.sub("", data, count=1).encode("utf-8")
        except UnicodeEncodeError:
            raise GeniError(GeniCode.BADARGS, f"{what} is not valid Unicode text") from None
    elif isinstance(data, (bytes, bytearray, memoryview)):
        raw = bytes(data)
    else:
        raise GeniError(GeniCode.BADARGS, f"{what} must be an XML string, got {type(data).__name__}")
    if len(raw) > limits.max_bytes:
        raise GeniError(GeniCode.TOOBIG, f"{what} is larger than {limits.max_bytes} bytes")
    return raw


def _check_tree(root: etree._Element, limits: ParseLimits, what: str) -> None:
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise GeniError(GeniCode.BADARGS, f"{what} must not contain a DOCTYPE declaration")
    depth = 0
    count = 0
    for event, node in etree.iterwalk(root, events=("start", "end")):
        if event == "end":
            depth -= 1
            continue
        depth += 1
        count += 1
        if depth > limits.max_depth:
            raise GeniError(GeniCode.BADARGS, f"{what} is nested deeper than {limits.max_depth} elements")
        if count > limits.max_elements:
            raise GeniError(GeniCode.TOOBIG, f"{what} has more than {limits.max_elements} elements")
        for child in node:
            if isinstance(child, etree._Entity):
                raise GeniError(GeniCode.BADARGS, f"{what} must not contain entity references ({child.text})")


def parse_xml(data: str | bytes, limits: ParseLimits = DEFAULT_LIMITS, what: str = "RSpec") -> etree._Element:
    """
    Parse an untrusted XML document into its root element.

    @param data: the document, as received.
    @param limits: the bounds to enforce.
    @param what: how to name the document in error messages.
    @return: the root element of a tree that belongs to the caller alone.
    @raise GeniError: TOOBIG for an over-size document or one with too
        many elements; BADARGS for anything malformed or hostile (DOCTYPE,
        entity declarations or references, excessive depth).
    """
    raw = to_bytes(data, limits, what)
    if not raw.strip():
        raise GeniError(GeniCode.BADARGS, f"{what} is empty")
    if _DECLARATION.search(raw):
        raise GeniError(GeniCode.BADARGS, f"{what} must not contain DOCTYPE or ENTITY declarations")
    try:
        root = etree.fromstring(raw, new_parser())
    except etree.XMLSyntaxError as e:
        message = str(e)
        if "Excessive depth" in message:
            raise GeniError(GeniCode.BADARGS, f"{what} is nested deeper than {limits.max_depth} elements") from None
        raise GeniError(GeniCode.BADARGS, f"{what} is not well-formed XML: {_shorten(message)}") from None
    except (ValueError, etree.LxmlError) as e:
        raise GeniError(GeniCode.BADARGS, f"{what} could not be parsed: {_shorten(str(e))}") from None
    if root is None:
        raise GeniError(GeniCode.BADARGS, f"{what} has no root element")
    _check_tree(root, limits, what)
    return root


def parse_rspec(
    data: str | bytes,
    expected_type: str | None = None,
    limits: ParseLimits = DEFAULT_LIMITS,
) -> etree._Element:
    """
    Parse a GENI v3 RSpec and check its root element.

    @param expected_type: C{"advertisement"}, C{"request"} or C{"manifest"};
        C{None} accepts any of them.
    @return: the C{<rspec>} root element.
    @raise GeniError: as L{parse_xml}; BADARGS unless the root is
        C{<rspec>} in the GENI v3 namespace with the expected C{type}.
    """
    what = f"{expected_type} RSpec" if expected_type else "RSpec"
    root = parse_xml(data, limits, what)
    if root.tag != rspec_tag("rspec"):
        raise GeniError(
            GeniCode.BADARGS,
            f"{what}: root element must be <rspec> in namespace {RSPEC_NS}, got {_shorten(str(root.tag))}",
        )
    kind = root.get("type")
    if kind not in RSPEC_TYPES:
        raise GeniError(GeniCode.BADARGS, f"{what}: <rspec type> must be one of {', '.join(RSPEC_TYPES)}, got {kind!r}")
    if expected_type is not None and kind != expected_type:
        raise GeniError(GeniCode.BADARGS, f"expected an RSpec of type {expected_type!r}, got type {kind!r}")
    return root


def serialise(root: etree._Element) -> str:
    """Return an element tree as indented XML text without an XML declaration."""
    etree.indent(root, space="  ")
    return etree.tostring(root, encoding="unicode", pretty_print=True)
