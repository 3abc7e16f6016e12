# -*- test-case-name: tests.managers.test_tickets,tests.loopback.test_cm -*-
"""
Signed documents an aggregate issues about its own resources: ProtoGENI
I{tickets} (a promise of a slot to one slice, valid until its redeem-by
time) and I{sliver credentials} (proof that the holder may act on one
sliver).

Both are credential-format documents (C{signed-credential}, one
C{credential} with C{xml:id} C{ref0}, an enveloped XML-DSig signature
C{Sig_ref0} carrying the aggregate's certificate chain), so that
C{xmlsec1 --verify --node-id Sig_ref0 --trusted-pem ROOT} accepts them as
it accepts any GENI credential. The aggregate is both owner and target of
a ticket (it promises its own resources); the slice, the holder and the
terms are named in the C{<ticket>} element.

A ticket's document depends only on its terms: RSA PKCS#1 v1.5 signatures
are deterministic, so signing the same terms again gives the same bytes.
That is how the aggregate hands out a copy of a valid ticket (Resolve)
without storing documents.

Reading checks everything the aggregate relies on: the layout, the
digest, the signature, that the signer is this aggregate, and the
redeem-by time; anything else is refused with a FORBIDDEN-family code
and the reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.serialization import Encoding
from lxml import etree

from geniam.errors import GeniCode, GeniError
from geniam.timeutil import format_time, parse_time
from geniam.trust.credential import new_document, parse_document, serialize_document
from geniam.trust.gid import GID
from geniam.trust.identity import Identity
from geniam.trust.xmldsig import SIGNATURES_TAG, XML_ID, check_signature, index_ids, sign
from geniam.urn import parse_urn

TICKET_TYPE = "ticket"
"""The C{<type>} of a ticket document."""

SLIVER_TYPE = "sliver"
"""The C{<type>} of a sliver credential."""

MAX_DOCUMENT_BYTES = 256 * 1024
"""The largest ticket or sliver credential read."""

REFERENCE = "ref0"


@dataclass(frozen=True)
class TicketTerms:
    """
    What a ticket promises.

    @ivar ticket_urn: the ticket's own URN (C{...+ticket+<name>}).
    @ivar slice_urn: the slice it is for.
    @ivar holder_urn: the user it was issued to.
    @ivar sliver_urn: the sliver it becomes when redeemed.
    @ivar start: the slot's start, POSIX seconds.
    @ivar end: the slot's end, POSIX seconds.
    @ivar redeem_before: when it lapses, POSIX seconds (whole seconds).
    @ivar controller: the OpenFlow controller C{host:port}, or None.
    @ivar vlan_map: C{{testbed VLAN: island VLAN}}.
    """

    ticket_urn: str
    slice_urn: str
    holder_urn: str
    sliver_urn: str
    start: float
    end: float
    redeem_before: float
    controller: str | None = None
    vlan_map: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SliverGrant:
    """What a verified sliver credential says: C{holder_urn} may act on C{sliver_urn} of C{slice_urn} until C{expires}."""

    holder_urn: str
    slice_urn: str
    sliver_urn: str
    expires: float


def _refused(code: GeniCode, what: str, reason: str) -> GeniError:
    return GeniError(code, f"{what} refused: {reason}")


def _add(parent: etree._Element, name: str, text: str | None = None) -> etree._Element:
    child = etree.SubElement(parent, name)
    child.text = text
    return child


def _envelope(issuer: Identity, kind: str, serial: str, expires: float) -> tuple[etree._Element, etree._Element]:
    """A document whose owner and target are the issuer, up to C{<expires>}."""
    root = new_document()
    credential = etree.SubElement(root, "credential")
    credential.set(XML_ID, REFERENCE)
    pem = issuer.gid.to_pem(with_chain=True).decode("ascii")
    _add(credential, "type", kind)
    _add(credential, "serial", serial)
    _add(credential, "owner_gid", pem)
    _add(credential, "owner_urn", issuer.gid.urn)
    _add(credential, "target_gid", pem)
    _add(credential, "target_urn", issuer.gid.urn)
    _add(credential, "uuid", serial)
    _add(credential, "expires", format_time(expires))
    return root, credential


def _signed(issuer: Identity, root: etree._Element, credential: etree._Element) -> str:
    sign(root, credential, issuer.private_key, [issuer.gid.certificate, *issuer.gid.chain])  # type: ignore[arg-type]
    return serialize_document(root)


def sign_ticket(issuer: Identity, terms: TicketTerms) -> str:
    """
    Sign a ticket for C{terms} with the aggregate's identity; the same
    terms always give the same document.
    """
    name = parse_urn(terms.ticket_urn, "ticket").name
    root, credential = _envelope(issuer, TICKET_TYPE, name, terms.redeem_before)
    ticket = _add(credential, "ticket")
    _add(ticket, "can_delegate", "0")
    _add(ticket, "ticket_urn", terms.ticket_urn)
    _add(ticket, "slice_urn", terms.slice_urn)
    _add(ticket, "holder_urn", terms.holder_urn)
    _add(ticket, "sliver_urn", terms.sliver_urn)
    _add(ticket, "redeem_before", format_time(terms.redeem_before))
    slot = _add(ticket, "slot")
    slot.set("start", format_time(terms.start))
    slot.set("end", format_time(terms.end))
    if terms.controller:
        _add(ticket, "controller", terms.controller)
    vlans = _add(ticket, "vlans")
    for testbed in sorted(terms.vlan_map, key=lambda v: (len(v), v)):
        vlan = _add(vlans, "vlan")
        vlan.set("testbed", testbed)
        vlan.set("island", terms.vlan_map[testbed])
    return _signed(issuer, root, credential)


def sign_sliver_credential(issuer: Identity, grant: SliverGrant) -> str:
    """Sign a sliver credential: C{grant.holder_urn} may act on the sliver until C{grant.expires}."""
    name = parse_urn(grant.sliver_urn, "sliver").name
    root, credential = _envelope(issuer, SLIVER_TYPE, name, grant.expires)
    sliver = _add(credential, "sliver")
    _add(sliver, "sliver_urn", grant.sliver_urn)
    _add(sliver, "slice_urn", grant.slice_urn)
    _add(sliver, "holder_urn", grant.holder_urn)
    return _signed(issuer, root, credential)


def _same_certificate(signer: object, issuer: GID) -> bool:
    try:
        return bool(signer.public_bytes(Encoding.DER) == issuer.certificate.public_bytes(Encoding.DER))  # type: ignore[attr-defined]
    except (AttributeError, ValueError):
        return False


def _verified_body(document: object, issuer: GID, kind: str, what: str) -> tuple[etree._Element, float]:
    """
    Check the layout, digest, signature and signer of an aggregate-signed
    document of C{kind}; return its body element and its expiry.
    """
    if not isinstance(document, (str, bytes)):
        raise _refused(GeniCode.BADARGS, what, "it must be the signed document as a string")
    data = document.encode("utf-8") if isinstance(document, str) else document
    if len(data) > MAX_DOCUMENT_BYTES:
        raise _refused(GeniCode.FORBIDDEN, what, f"the document is larger than {MAX_DOCUMENT_BYTES} bytes")
    try:
        root = parse_document(data, MAX_DOCUMENT_BYTES)
    except GeniError as e:
        raise _refused(GeniCode.FORBIDDEN, what, e.output) from None
    children = [c for c in root if isinstance(c.tag, str)]
    credentials = [c for c in children if c.tag == "credential"]
    if root.tag != "signed-credential" or len(credentials) != 1 or any(
        c.tag not in ("credential", SIGNATURES_TAG) for c in children
    ):
        raise _refused(GeniCode.FORBIDDEN, what, "not a signed credential document with one credential")
    credential = credentials[0]
    if credential.findtext("type") != kind:
        raise _refused(GeniCode.FORBIDDEN, what, f"the document is not a {kind}")
    try:
        check = check_signature(root, credential, index_ids(root))
        check.verify()
    except GeniError as e:
        raise _refused(GeniCode.FORBIDDEN, what, e.output) from None
    signatures = root.find(SIGNATURES_TAG)
    if signatures is None or len([s for s in signatures if isinstance(s.tag, str)]) != 1:
        raise _refused(GeniCode.FORBIDDEN, what, "it must carry exactly one signature")
    if not _same_certificate(check.signer, issuer):
        raise _refused(GeniCode.FORBIDDEN, what, f"it was not signed by this aggregate ({issuer.urn})")
    body = credential.find(kind)
    if body is None:
        raise _refused(GeniCode.FORBIDDEN, what, f"no <{kind}> terms")
    try:
        expires = parse_time(credential.findtext("expires") or "")
    except GeniError:
        raise _refused(GeniCode.FORBIDDEN, what, "<expires> is not a date-time") from None
    return body, expires


def _text(body: etree._Element, name: str, what: str) -> str:
    value = body.findtext(name)
    if not value:
        raise _refused(GeniCode.FORBIDDEN, what, f"no <{name}>")
    return value


def read_ticket(document: object, issuer: GID, now: float) -> TicketTerms:
    """
    Verify a ticket this aggregate signed and return its terms.

    @param issuer: this aggregate's certificate.
    @param now: the current time; the ticket must not have lapsed.
    @raise GeniError: BADARGS if C{document} is not a string, FORBIDDEN
        for anything malformed, altered, signed by another or not a
        ticket, EXPIRED once its redeem-by time has come.
    """
    what = "the ticket"
    body, expires = _verified_body(document, issuer, TICKET_TYPE, what)
    slot = body.find("slot")
    try:
        redeem_before = parse_time(_text(body, "redeem_before", what))
        if slot is None:
            raise _refused(GeniCode.FORBIDDEN, what, "no <slot>")
        start, end = parse_time(slot.get("start", "")), parse_time(slot.get("end", ""))
    except GeniError as e:
        if e.code is GeniCode.FORBIDDEN:
            raise
        raise _refused(GeniCode.FORBIDDEN, what, "a time in it is not a date-time") from None
    vlans = body.find("vlans")
    vlan_map = {v.get("testbed", ""): v.get("island", "") for v in vlans.iter("vlan")} if vlans is not None else {}
    terms = TicketTerms(
        ticket_urn=_text(body, "ticket_urn", what),
        slice_urn=_text(body, "slice_urn", what),
        holder_urn=_text(body, "holder_urn", what),
        sliver_urn=_text(body, "sliver_urn", what),
        start=start,
        end=end,
        redeem_before=min(redeem_before, expires),
        controller=body.findtext("controller") or None,
        vlan_map=vlan_map,
    )
    if now >= terms.redeem_before:
        raise GeniError(GeniCode.EXPIRED, f"ticket {terms.ticket_urn} lapsed at {format_time(terms.redeem_before)}")
    return terms


def read_sliver_credential(document: object, issuer: GID, now: float) -> SliverGrant:
    """
    Verify a sliver credential this aggregate signed and return its grant.

    @raise GeniError: as L{read_ticket}; CREDENTIAL_EXPIRED once it has expired.
    """
    what = "the sliver credential"
    body, expires = _verified_body(document, issuer, SLIVER_TYPE, what)
    grant = SliverGrant(
        holder_urn=_text(body, "holder_urn", what),
        slice_urn=_text(body, "slice_urn", what),
        sliver_urn=_text(body, "sliver_urn", what),
        expires=expires,
    )
    if now >= expires:
        raise GeniError(GeniCode.CREDENTIAL_EXPIRED, f"the sliver credential for {grant.sliver_urn} expired at {format_time(expires)}")
    return grant


def looks_like(document: object, kind: str) -> bool:
    """Cheaply tell whether a presented credential string claims to be a document of C{kind}."""
    return isinstance(document, str) and f"<type>{kind}</type>" in document[:20000]
