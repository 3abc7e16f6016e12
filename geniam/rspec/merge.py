# -*- test-case-name: tests.rspec.test_merge -*-
"""
RSpec merging and splitting for the Slice Manager.

L{merge_advertisements} and L{merge_manifests} combine what each peer
aggregate returned into one document and record, per aggregate, how the
call went::

  <statistics call="ListResources">
    <aggregate name="https://am1.example:8001/am/3.0" elapsed="0.120" status="success"/>
    <aggregate name="urn:publicid:IDN+am2.example+authority+am" elapsed="30.000"
               status="timeout" code="8" exception="no answer in 30 s"/>
  </statistics>

C{<statistics>} is written in the GENI v3 namespace (it reads as a bare
C{<statistics>} under the document's default namespace). Any
C{<statistics>} already in an input, in that namespace or in none, is
dropped, so nested slice managers do not pile them up.

Splitting a request into one request per aggregate is
L{geniam.rspec.split}.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from lxml import etree

from geniam.errors import GeniError
from geniam.rspec.advertisement import GENERATED_BY
from geniam.rspec.compression import maybe_decompress
from geniam.rspec.namespaces import RSPEC_NS, XSI_NS, qname, rspec_tag
from geniam.rspec.parser import DEFAULT_LIMITS, ParseLimits, new_parser, parse_rspec, serialise, to_bytes
from geniam.rspec.request import LINK, NODE
from geniam.timeutil import format_time, parse_time

STATISTICS = rspec_tag("statistics")
AGGREGATE = rspec_tag("aggregate")
STATUSES = ("success", "error", "timeout")
"""The values of C{<aggregate status>}."""

_SCHEMA_LOCATION = qname(XSI_NS, "schemaLocation")
EXCEPTION_CHARS = 200
"""The longest C{<aggregate exception>} written."""
_RSPEC = rspec_tag("rspec")
_DECLARATION = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)
_COUNT_ELEMENTS = etree.XPath("count(//*)")
_PLAIN = re.compile(r"[A-Za-z0-9 +:._/@,;()=?#%!*\[\]~$|{}^`-]*")
_SMALLEST_ELEMENT = len(b"<a/>")
_NOT_XML = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


@dataclass(frozen=True)
class AggregateOutcome:
    """
    What one aggregate answered to a fanned-out call.

    @ivar name: the aggregate's URL or URN, as C{<aggregate name>}.
    @ivar elapsed: seconds the call took.
    @ivar status: C{success}, C{error} or C{timeout}.
    @ivar rspec: the RSpec it returned (plain or C{geni_compressed}), if any.
    @ivar code: the C{geni_code} of a failed call.
    @ivar exception: a short reason for a failed call.
    """

    name: str
    elapsed: float
    status: str = "success"
    rspec: str | bytes | None = None
    code: int | None = None
    exception: str | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")


def is_statistics(element: etree._Element) -> bool:
    """True for a C{<statistics>} element in the GENI v3 namespace or in none."""
    return element.tag in ("statistics", STATISTICS)


def strip_statistics(root: etree._Element) -> etree._Element:
    """Remove every C{<statistics>} element (GENI v3 namespace or none) from a tree, in place."""
    for element in [e for e in root.iter("statistics", STATISTICS) if e is not root]:
        parent = element.getparent()
        if parent is not None:
            parent.remove(element)
    return root


def add_statistics(root: etree._Element, call: str, outcomes: Iterable[AggregateOutcome]) -> etree._Element:
    """
    Append C{<statistics call>} with one C{<aggregate>} per outcome to C{root}.

    @return: the new C{<statistics>} element.
    """
    statistics = etree.SubElement(root, STATISTICS, call=call)
    for outcome in outcomes:
        entry = etree.SubElement(
            statistics,
            AGGREGATE,
            name=outcome.name,
            elapsed=f"{max(0.0, float(outcome.elapsed)):.3f}",
            status=outcome.status,
        )
        if outcome.code is not None:
            entry.set("code", str(int(outcome.code)))
        reason = statistics_reason(outcome.exception)
        if reason:
            entry.set("exception", reason)
    return statistics


def statistics_reason(exception: object) -> str:
    """
    An outcome's reason as C{<aggregate exception>} holds it: on one line,
    at most L{EXCEPTION_CHARS} characters, characters XML cannot hold
    replaced by U+FFFD.
    """
    if not exception:
        return ""
    return _NOT_XML.sub("\ufffd", " ".join(str(exception).split()))[:EXCEPTION_CHARS]


def statistics_text(call: str, reported: Sequence[AggregateOutcome]) -> str | None:
    """
    C{<statistics>} as L{add_statistics} writes it in a merged document,
    or C{None} when a value holds a character that would need escaping
    (that rarer case is left to L{add_statistics}).
    """
    values = [call]
    lines = []
    for outcome in reported:
        line = f'<aggregate name="{outcome.name}" elapsed="{max(0.0, float(outcome.elapsed)):.3f}" status="{outcome.status}"'
        values.append(outcome.name)
        if outcome.code is not None:
            line += f' code="{int(outcome.code)}"'
        reason = statistics_reason(outcome.exception)
        if reason:
            values.append(reason)
            line += f' exception="{reason}"'
        lines.append(line + "/>")
    if not all(_PLAIN.fullmatch(value) for value in values):
        return None
    if not lines:
        return f'<statistics call="{call}"/>'
    return f'<statistics call="{call}">\n    ' + "\n    ".join(lines) + "\n  </statistics>"


def new_root(kind: str, generated: float | None, nsmap: dict[str | None, str]) -> etree._Element:
    """The empty C{<rspec>} of a merged document: C{type}, C{generated} and C{generated_by}."""
    root = etree.Element(rspec_tag("rspec"), nsmap=nsmap)  # type: ignore[arg-type]
    root.set("type", kind)
    if generated is not None:
        root.set("generated", format_time(generated))
    root.set("generated_by", GENERATED_BY)
    return root


def merged_namespaces(declared: Iterable[Iterable[tuple[str | None, str]]]) -> dict[str | None, str]:
    """
    The namespace map of a merged document: the GENI v3 default and C{xsi},
    then each source's prefixes in order, unless the prefix or the
    namespace is taken already.

    @param declared: each source root's C{nsmap.items()}, in peer order.
    """
    nsmap: dict[str | None, str] = {None: RSPEC_NS, "xsi": XSI_NS}
    for items in declared:
        for prefix, namespace in items:
            if prefix is not None and prefix not in nsmap and namespace not in nsmap.values():
                nsmap[prefix] = namespace
    return nsmap


def schema_pairs(root: etree._Element) -> list[tuple[str, str]]:
    """The C{(namespace, location)} pairs of a root's C{xsi:schemaLocation}."""
    words = (root.get(_SCHEMA_LOCATION) or "").split()
    return list(zip(words[0::2], words[1::2]))


def earliest_expiry(root: etree._Element) -> float | None:
    """A root's C{expires}, POSIX seconds, or C{None} when it has none or an unreadable one."""
    value = root.get("expires")
    if value is None:
        return None
    try:
        return parse_time(value)
    except GeniError:
        return None


def _folded(value: str | None) -> str:
    return " ".join((value or "").split()).lower()


def merge_key(element: etree._Element, kind: str) -> tuple[str, ...] | None:
    """
    The identity of a node or link in a merge: its C{component_id} in an
    advertisement; in a manifest its C{client_id} together with its
    C{component_manager_id} and C{component_id}, so that islands using the
    same client IDs (C{island}) and switch IDs keep their own elements.
    """
    if element.tag not in (NODE, LINK):
        return None
    if kind == "advertisement":
        component = _folded(element.get("component_id"))
        return (element.tag, component) if component else None
    client_id = element.get("client_id")
    if not client_id:
        return None
    return (element.tag, client_id, _folded(element.get("component_manager_id")), _folded(element.get("component_id")))


@functools.lru_cache(maxsize=8)
def _deeper_than(depth: int) -> etree.XPath:
    """An XPath true when a document has an element nested deeper than C{depth}."""
    return etree.XPath("boolean(/" + "/".join(["*"] * (depth + 1)) + ")")


def parse_answer(
    data: str | bytes, kind: str, limits: ParseLimits, parser: etree.XMLParser
) -> tuple[etree._Element, bool]:
    """
    Parse a peer's RSpec as L{parse_rspec} does, with the tree checks done in C.

    A document that passes every check here is one L{parse_rspec} accepts,
    parsed with the same options into the same tree; anything else (a
    declaration, a syntax error, a bound reached, a wrong root) is handed
    to L{parse_rspec}, whose result or error is then the answer.

    @return: the root, and whether the document may hold C{<statistics>}.
    @raise GeniError: as L{parse_rspec}.
    """
    raw = to_bytes(data, limits, f"{kind} RSpec")
    if not raw.strip() or _DECLARATION.search(raw):
        return parse_rspec(data, kind, limits), True
    try:
        root = etree.fromstring(raw, parser)
    except (ValueError, etree.LxmlError):
        return parse_rspec(data, kind, limits), True
    docinfo = root.getroottree().docinfo
    # No document holds more elements than fit in its bytes: a small one need not be counted.
    count = len(raw) // _SMALLEST_ELEMENT
    if count > min(limits.max_depth, limits.max_elements):
        count = int(_COUNT_ELEMENTS(root))
    if (
        root.tag != _RSPEC
        or root.get("type") != kind
        or docinfo.doctype
        or docinfo.internalDTD is not None
        or docinfo.externalDTD is not None
        or count > limits.max_elements
        or (count > limits.max_depth and _deeper_than(limits.max_depth)(root))
        or next(root.iter(etree.Entity), None) is not None
    ):
        return parse_rspec(data, kind, limits), True
    return root, b"statistics" in raw


def other_key(element: etree._Element) -> tuple[object, ...]:
    """What top-level elements with the same canonical XML share: tag, attributes, child count and text."""
    return (element.tag, tuple(sorted(element.attrib.items())), len(element), element.text or "")


def _merge(
    kind: str,
    outcomes: Sequence[AggregateOutcome],
    call: str,
    generated: float | None,
    limits: ParseLimits,
) -> str:
    parsed: list[etree._Element] = []
    reported: list[AggregateOutcome] = []
    parser = new_parser()  # parsers are not shared between threads
    for outcome in outcomes:
        if outcome.status != "success" or outcome.rspec is None:
            reported.append(outcome)
            continue
        try:
            source, may_hold_statistics = parse_answer(maybe_decompress(outcome.rspec, limits), kind, limits, parser)
        except GeniError as e:
            reported.append(
                AggregateOutcome(outcome.name, outcome.elapsed, "error", None, int(e.code), f"bad {kind}: {e.output}")
            )
            continue
        reported.append(outcome)
        parsed.append(strip_statistics(source) if may_hold_statistics else source)
    root = new_root(kind, generated, merged_namespaces(source.nsmap.items() for source in parsed))
    # Nodes and links are kept once per key. Other elements are kept once per canonical XML (taken where
    # they stand in their source), computed only for those sharing tag, attributes, child count and text.
    entries: list[list[tuple[etree._Element, tuple[object, ...], bool]]] = []
    alike: Counter[tuple[object, ...]] = Counter()
    for source in parsed:
        children: list[tuple[etree._Element, tuple[object, ...], bool]] = []
        for child in source:
            key = merge_key(child, kind)
            if key is not None:
                children.append((child, key, True))
            else:
                other = other_key(child)
                alike[other] += 1
                children.append((child, other, False))
        entries.append(children)
    keyed: dict[tuple[object, ...], etree._Element] = {}
    seen_other: set[bytes] = set()
    schemas: dict[str, str] = {}
    expiries: list[float] = []
    manifest = kind == "manifest"
    for source, children in zip(parsed, entries):
        for namespace, location in schema_pairs(source):
            schemas.setdefault(namespace, location)
        expiry = earliest_expiry(source)
        if expiry is not None:
            expiries.append(expiry)
        # The parsed sources belong to this call alone, so elements are moved, not copied.
        for child, entry_key, is_keyed in children:
            if is_keyed:
                kept = keyed.get(entry_key)
                if kept is None:
                    keyed[entry_key] = child
                    root.append(child)
                elif manifest and kept.get("sliver_id") is None and child.get("sliver_id"):
                    kept.addprevious(child)
                    root.remove(kept)
                    keyed[entry_key] = child
                continue
            if alike[entry_key] > 1:
                fingerprint = etree.tostring(child, method="c14n")
                if fingerprint in seen_other:
                    continue
                seen_other.add(fingerprint)
            root.append(child)
    written = statistics_text(call, reported)
    statistics = finish_root(root, schemas, expiries, call, [] if written is not None else reported)
    text = serialise(root)
    if written is None:
        return text
    # The statistics are written as text, where lxml left them empty.
    before, found, after = text.rpartition(f'<statistics call="{call}"/>')
    if found:
        return before + written + after
    root.remove(statistics)
    add_statistics(root, call, reported)
    return serialise(root)


def finish_root(
    root: etree._Element,
    schemas: dict[str, str],
    expiries: Sequence[float],
    call: str,
    reported: Iterable[AggregateOutcome],
) -> etree._Element:
    """
    Give a merged document its C{xsi:schemaLocation}, the earliest
    C{expires} and its C{<statistics>}, after its other children.

    @return: the new C{<statistics>} element.
    """
    if schemas:
        root.set(_SCHEMA_LOCATION, " ".join(f"{ns} {loc}" for ns, loc in schemas.items()))
    if expiries:
        root.set("expires", format_time(min(expiries)))
    return add_statistics(root, call, reported)


def merge_advertisements(
    outcomes: Sequence[AggregateOutcome],
    call: str = "ListResources",
    generated: float | None = None,
    limits: ParseLimits = DEFAULT_LIMITS,
) -> str:
    """
    Merge the advertisements of several aggregates into one.

    Nodes and links are kept once per C{component_id} (the first wins);
    other top-level elements once per exact content. An outcome whose
    RSpec does not parse as a GENI v3 advertisement is reported as an
    C{error} in the statistics and contributes nothing.

    @param outcomes: one per aggregate called, in the order to report them.
    @param call: the method name for C{<statistics call>}.
    @param generated: the C{generated} time, POSIX seconds.
    @param limits: parser bounds for each input.
    @return: the merged advertisement XML.
    """
    return _merge("advertisement", outcomes, call, generated, limits)


def merge_manifests(
    outcomes: Sequence[AggregateOutcome],
    call: str = "Describe",
    generated: float | None = None,
    limits: ParseLimits = DEFAULT_LIMITS,
) -> str:
    """
    Merge the manifests of several aggregates into one.

    Nodes and links are kept once per C{(client_id,
    component_manager_id, component_id)}: two islands answering with the
    same client IDs and switch IDs each keep their elements. An annotated
    copy (with C{sliver_id}) replaces an unannotated one with the same
    key, since aggregates copy other aggregates' request elements
    unchanged into their manifests.
    Other top-level elements are kept once per exact content.

    @param outcomes: one per aggregate called.
    @param call: the method name for C{<statistics call>}.
    @param generated: the C{generated} time, POSIX seconds.
    @param limits: parser bounds for each input.
    @return: the merged manifest XML.
    """
    return _merge("manifest", outcomes, call, generated, limits)


def read_statistics(text: str | bytes, limits: ParseLimits = DEFAULT_LIMITS) -> list[dict[str, str]]:
    """
    Read the C{<statistics>} of a merged RSpec: one dict of attributes per
    C{<aggregate>}, each also holding the C{call}.

    @raise GeniError: BADARGS for a malformed document.
    """
    root = parse_rspec(text, None, limits)
    found = []
    for statistics in root.iterchildren("statistics", STATISTICS):
        for entry in statistics.iterchildren("aggregate", AGGREGATE):
            found.append(dict(entry.attrib, call=statistics.get("call", "")))
    return found
