# -*- test-case-name: tests.rspec.test_mergecache -*-
"""
RSpec merging from checked fragments, remembering each peer's last answer.

L{AnswerCache.merge} produces the same document, character for
character, as L{merge_advertisements} and L{merge_manifests}, for less
work when answers repeat:

  - each answer is checked once (L{AnswerCache.take}): parsed with the
    hardened parser (L{parse_answer}), its C{<statistics>} stripped, and
    cut into its top-level elements, each with its merge identity and
    its serialised text as it will stand in the merged document;
  - the last answer of each peer is kept with what its check found, and
    an answer equal to it (compared in full, not by a digest) is not
    parsed, checked or serialised again; anything else goes through the
    hardened parser, however good the peer's previous answer was;
  - the merge then keeps elements by identity, as the tree merge does,
    and joins their texts; when every answer is the same as in the
    previous merge of the kind, the joined body is reused and only the
    root's attributes and the C{<statistics>} are written.

The slice manager takes each answer as it arrives, while slower peers
are still being waited for, so little is left to do once the last one
is in; manifests, new at every Allocate, gain that overlap.

An element's text depends on the merged document's namespace map (the
prefixes the merge declares on its root): it is rendered for the map of
the previous merge and rendered again when the map turns out different.
Rendering the way the tree merge moves elements gives the same text,
except where lxml has to invent a prefix (C{ns0}...), whose number
depends on the whole document: an answer whose rendering holds one is
merged by L{merge_advertisements} or L{merge_manifests} themselves.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from lxml import etree

from geniam.errors import GeniError
from geniam.rspec.compression import maybe_decompress
from geniam.rspec.merge import (
    AggregateOutcome,
    earliest_expiry,
    finish_root,
    merge_advertisements,
    merge_key,
    merge_manifests,
    merged_namespaces,
    new_root,
    other_key,
    parse_answer,
    schema_pairs,
    statistics_text,
    strip_statistics,
)
from geniam.rspec.namespaces import rspec_tag
from geniam.rspec.parser import DEFAULT_LIMITS, ParseLimits, new_parser
from geniam.rspec.render import MARKER, NamespaceMap, NotExact, render_children

CACHEABLE_CHARS = 256 * 1024
"""Answers longer than this are checked at every merge and not kept."""

DEFAULT_MAX_ANSWERS = 4096
"""How many answers (one per peer and kind) an L{AnswerCache} keeps."""

KINDS = ("advertisement", "manifest")

_RSPEC = rspec_tag("rspec")



@dataclass(frozen=True)
class _Piece:
    """
    One top-level element of an answer, as the merge keeps it.

    @ivar key: its identity: L{merge_key} for nodes and links, else
        L{other_key} with its canonical XML.
    @ivar keyed: a node or link.
    @ivar has_sliver: it has a C{sliver_id} attribute.
    @ivar annotated: its C{sliver_id} is not empty.
    """

    key: tuple[object, ...]
    keyed: bool
    has_sliver: bool
    annotated: bool


@dataclass
class CheckedAnswer:
    """
    One answer as the hardened parser found it.

    @ivar data: the answer as received (plain or C{geni_compressed}).
    @ivar limits: the parser bounds it was checked with.
    @ivar error: why it was refused, or C{None}.
    @ivar namespaces: its root's namespace declarations.
    @ivar schemas: its root's C{xsi:schemaLocation} pairs.
    @ivar expiry: its root's C{expires}, POSIX seconds.
    @ivar pieces: its top-level elements (C{<statistics>} stripped).
    @ivar rendered: the namespace map last rendered for, and the text of each piece in it.
    @ivar source: the parsed tree, until its pieces are rendered.
    """

    data: str | bytes
    limits: ParseLimits
    error: GeniError | None = None
    namespaces: NamespaceMap = ()
    schemas: tuple[tuple[str, str], ...] = ()
    expiry: float | None = None
    pieces: tuple[_Piece, ...] = ()
    rendered: tuple[NamespaceMap, tuple[str, ...]] | None = field(default=None, repr=False)
    source: etree._Element | None = field(default=None, repr=False)


@dataclass(frozen=True)
class _Body:
    """The elements of the last merge of a kind, joined."""

    entries: tuple[CheckedAnswer, ...]
    nsmap: NamespaceMap
    text: str
    schemas: dict[str, str]
    expiries: tuple[float, ...]


class AnswerCache:
    """
    Each peer's last checked answer, and merges built from them.

    Safe to use from the reactor thread and worker threads at once.

    @ivar checks: answers parsed so far.
    @ivar reused: answers found equal to the peer's previous one.
    """

    def __init__(self, max_answers: int = DEFAULT_MAX_ANSWERS) -> None:
        self.max_answers = max_answers
        self.checks = 0
        self.reused = 0
        self._answers: OrderedDict[tuple[str, str], CheckedAnswer] = OrderedDict()
        self._lock = threading.Lock()
        self._local = threading.local()
        self._bodies: dict[str, _Body] = {}

    def __len__(self) -> int:
        return len(self._answers)

    def _parser(self) -> etree.XMLParser:
        parser: etree.XMLParser | None = getattr(self._local, "parser", None)
        if parser is None:
            parser = self._local.parser = new_parser()
        return parser

    def take(self, name: str, kind: str, data: str | bytes, limits: ParseLimits = DEFAULT_LIMITS) -> CheckedAnswer:
        """
        Check what peer C{name} answered (unless it answered the same
        before) and keep it as the peer's last answer of C{kind}.

        @param kind: C{advertisement} or C{manifest}.
        @return: the checked answer; a refused one carries its C{error}.
        """
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        slot = (name, kind)
        with self._lock:
            kept = self._answers.get(slot)
        if kept is not None and (kept.data is data or kept.data == data) and (kept.limits is limits or kept.limits == limits):
            self.reused += 1
            return kept
        answer = self._check(kind, data, limits)
        if len(data) <= CACHEABLE_CHARS:
            with self._lock:
                self._answers[slot] = answer
                self._answers.move_to_end(slot)
                while len(self._answers) > self.max_answers:
                    self._answers.popitem(last=False)
        return answer

    def _check(self, kind: str, data: str | bytes, limits: ParseLimits) -> CheckedAnswer:
        self.checks += 1
        try:
            source = self._parse(kind, data, limits)
        except GeniError as e:
            return CheckedAnswer(data, limits, e)
        manifest = kind == "manifest"
        pieces = []
        for child in source:
            key = merge_key(child, kind)
            if key is not None:
                sliver = child.get("sliver_id") if manifest else None
                pieces.append(_Piece(key, True, sliver is not None, bool(sliver)))
            else:
                pieces.append(_Piece((other_key(child), etree.tostring(child, method="c14n")), False, False, False))
        answer = CheckedAnswer(
            data,
            limits,
            None,
            tuple(source.nsmap.items()),
            tuple(schema_pairs(source)),
            earliest_expiry(source),
            tuple(pieces),
        )
        answer.source = source
        return answer

    def _parse(self, kind: str, data: str | bytes, limits: ParseLimits) -> etree._Element:
        """Parse and check an answer as the tree merge does, C{<statistics>} stripped."""
        source, may_hold_statistics = parse_answer(maybe_decompress(data, limits), kind, limits, self._parser())
        return strip_statistics(source) if may_hold_statistics else source

    def _render_all(self, kind: str, answers: Iterable[CheckedAnswer], nsmap: NamespaceMap) -> None:
        """Render, in one go, the pieces of the answers not rendered for C{nsmap} yet."""
        todo = [answer for answer in answers if answer.rendered is None or answer.rendered[0] != nsmap]
        if not todo:
            return
        children: list[etree._Element] = []
        for answer in todo:
            with self._lock:
                source, answer.source = answer.source, None
            if source is None:
                source = self._parse(kind, answer.data, answer.limits)
            found = list(source)
            if len(found) != len(answer.pieces):
                raise NotExact()
            children.extend(found)
        texts = render_children(children, _RSPEC, nsmap)
        start = 0
        for answer in todo:
            end = start + len(answer.pieces)
            answer.rendered = (nsmap, texts[start:end])
            start = end

    def merge(
        self,
        kind: str,
        outcomes: Sequence[AggregateOutcome],
        call: str,
        generated: float | None = None,
        limits: ParseLimits = DEFAULT_LIMITS,
    ) -> str:
        """
        The merged document, as L{merge_advertisements} (C{kind}
        C{advertisement}) or L{merge_manifests} (C{manifest}) make it.

        Answers already taken under the outcome's C{name} are not checked again.
        """
        reported: list[AggregateOutcome] = []
        used: list[CheckedAnswer] = []
        for outcome in outcomes:
            if outcome.status != "success" or outcome.rspec is None:
                reported.append(outcome)
                continue
            answer = self.take(outcome.name, kind, outcome.rspec, limits)
            if answer.error is not None:
                e = answer.error
                reported.append(
                    AggregateOutcome(outcome.name, outcome.elapsed, "error", None, int(e.code), f"bad {kind}: {e.output}")
                )
                continue
            reported.append(outcome)
            used.append(answer)
        try:
            return self._assemble(kind, used, call, generated, reported)
        except NotExact:
            whole = merge_advertisements if kind == "advertisement" else merge_manifests
            return whole(outcomes, call, generated, limits)

    def _assemble(
        self,
        kind: str,
        used: list[CheckedAnswer],
        call: str,
        generated: float | None,
        reported: Iterable[AggregateOutcome],
    ) -> str:
        nsmap = tuple(merged_namespaces(answer.namespaces for answer in used).items())
        entries = tuple(used)
        body = self._bodies.get(kind)
        if (
            body is None
            or body.nsmap != nsmap
            or len(body.entries) != len(entries)
            or any(a is not b for a, b in zip(body.entries, entries))
        ):
            body = self._body(kind, entries, nsmap)
            self._bodies[kind] = body
        root = new_root(kind, generated, dict(nsmap))
        reported = list(reported)
        written = statistics_text(call, reported)
        statistics = finish_root(root, body.schemas, body.expiries, call, [] if written is not None else reported)
        if written is not None:
            root.remove(statistics)
        else:
            statistics.tail = MARKER
        root.text = MARKER
        etree.indent(root, space="  ")
        parts = etree.tostring(root, encoding="unicode", pretty_print=True).split(MARKER)
        if written is not None:
            parts.insert(1, written)
        if len(parts) != 3:
            raise NotExact()
        head, written, closing = parts
        return f"{head}\n  {body.text}{written}\n{closing}"

    def _body(self, kind: str, entries: tuple[CheckedAnswer, ...], nsmap: NamespaceMap) -> _Body:
        """Keep elements by identity as the tree merge does; join their texts."""
        manifest = kind == "manifest"
        self._render_all(kind, entries, nsmap)
        kept: list[str] = []
        keyed: dict[tuple[object, ...], tuple[int, _Piece]] = {}
        seen_other: set[tuple[object, ...]] = set()
        schemas: dict[str, str] = {}
        expiries: list[float] = []
        for answer in entries:
            for namespace, location in answer.schemas:
                schemas.setdefault(namespace, location)
            if answer.expiry is not None:
                expiries.append(answer.expiry)
            assert answer.rendered is not None
            for piece, text in zip(answer.pieces, answer.rendered[1]):
                if piece.keyed:
                    found = keyed.get(piece.key)
                    if found is None:
                        keyed[piece.key] = (len(kept), piece)
                        kept.append(text)
                    elif manifest and not found[1].has_sliver and piece.annotated:
                        keyed[piece.key] = (found[0], piece)
                        kept[found[0]] = text
                    continue
                if piece.key in seen_other:
                    continue
                seen_other.add(piece.key)
                kept.append(text)
        text = "".join(f"{element}\n  " for element in kept)
        return _Body(entries, nsmap, text, schemas, tuple(expiries))
