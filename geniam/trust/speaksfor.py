# -*- test-case-name: tests.trust.test_speaksfor -*-
"""
Speaks-for: a tool acting for a user with the user's signed consent.

A tool calls with its own certificate, sets the option
C{geni_speaking_for} to the user's URN and adds a C{geni_abac} version 1
credential signed by the user stating the RT0 statement
C{U.speaks_for_U <- T}: the head is the user's key identifier with the
role C{speaks_for_<user keyid>}, the one tail is the tool's key
identifier. Key identifiers are the lower-case hexadecimal SHA-1 of the
certificate's public key bits (what the GENI tools compute).

When such a credential verifies, the user's certificate becomes the
caller for every further check; when none does, the tool stays the caller.
"""

from __future__ import annotations

from cryptography import x509
from lxml import etree

from geniam.errors import GeniCode, GeniError
from geniam.timeutil import format_time
from geniam.trust.credential import (
    ABAC_TYPE,
    GENI_ABAC,
    SignedCredential,
    new_document,
    serialize_document,
)
from geniam.trust.gid import GID, Deadline, TrustRoots
from geniam.trust.identity import Identity
from geniam.trust.xmldsig import XML_ID, SignatureError, sign
from geniam.urn import same_urn

ABAC_VERSION = "1.1"
"""The RT0 version written into speaks-for credentials."""

ROLE_PREFIX = "speaks_for_"
"""A speaks-for role is this prefix followed by the user's key identifier."""


def key_id(gid: GID) -> str:
    """
    Return the ABAC key identifier of a GID's certificate.

    This is the RFC 5280 method-1 identifier (SHA-1 of the public key
    bits) in lower-case hexadecimal, computed from the key itself.
    """
    key = gid.certificate.public_key()
    return x509.SubjectKeyIdentifier.from_public_key(key).digest.hex()  # type: ignore[arg-type]


def key_ids(gid: GID) -> frozenset[str]:
    """The identifiers a principal may be named by: L{key_id} and its subjectKeyIdentifier."""
    return frozenset({key_id(gid), gid.subject_key_id.hex()})


def _fail(code: GeniCode, reason: str) -> GeniError:
    return GeniError(code, f"speaks-for credential rejected: {reason}")


def verify_speaks_for(
    signed: SignedCredential,
    tool: GID,
    user_urn: str,
    roots: TrustRoots,
    at: float,
    deadline: Deadline | None = None,
) -> GID:
    """
    Check that C{signed} lets C{tool} speak for the user C{user_urn}.

    Checks: it is an undelegated ABAC credential, not expired at C{at};
    its signature verifies and the signer's certificate chains to
    C{roots}; the signer's URN is C{user_urn}; the statement's head is the
    signer's key with role C{speaks_for_<that key>}; there is exactly one
    tail and it is the tool's key; the tool's certificate chains to C{roots}.

    @param deadline: passed on to L{TrustRoots.verify}.
    @return: the user's GID (the signer), to use as the caller.
    @raise GeniError: CREDENTIAL_INVALID, CREDENTIAL_EXPIRED,
        CREDENTIAL_SIGNER_UNTRUSTED or CREDENTIAL_MISMATCH with the reason.
    """
    credential = signed.credential
    statement = credential.abac
    if signed.kind != GENI_ABAC or credential.type != ABAC_TYPE or statement is None:
        raise _fail(GeniCode.CREDENTIAL_INVALID, f"not an ABAC credential (type {credential.type[:40]!r})")
    if credential.parent is not None:
        raise _fail(GeniCode.CREDENTIAL_INVALID, "speaks-for credentials cannot be delegated")
    if credential.expires <= at:
        raise _fail(GeniCode.CREDENTIAL_EXPIRED, f"expired at {format_time(credential.expires)}")
    check = credential.signature
    try:
        check.verify()
    except SignatureError as e:
        raise _fail(GeniCode.CREDENTIAL_INVALID, e.output) from None
    user = GID.from_certificate(check.signer, check.certificates[1:])
    try:
        roots.verify(user, at, deadline=deadline)
    except GeniError as e:
        raise _fail(e.code, f"signer not trusted: {e.output}") from None
    if user.urn is None or not same_urn(user.urn, user_urn):
        raise _fail(
            GeniCode.CREDENTIAL_MISMATCH,
            f"signed by {user.urn or user.subject}, not by {user_urn[:120]} named in geni_speaking_for",
        )
    user_keys = key_ids(user)
    if statement.head.keyid not in user_keys:
        raise _fail(GeniCode.CREDENTIAL_MISMATCH, "the statement's head is not the signer's key")
    if statement.head.role is None or statement.head.role.lower() != ROLE_PREFIX + statement.head.keyid:
        raise _fail(
            GeniCode.CREDENTIAL_INVALID,
            f"role {str(statement.head.role)[:80]!r} is not {ROLE_PREFIX}<user keyid>",
        )
    if len(statement.tails) != 1:
        raise _fail(GeniCode.CREDENTIAL_INVALID, f"exactly one tail needed, found {len(statement.tails)}")
    tail = statement.tails[0]
    if tail.role is not None:
        raise _fail(GeniCode.CREDENTIAL_INVALID, "the tail must be a bare principal")
    if tail.keyid not in key_ids(tool):
        raise _fail(
            GeniCode.CREDENTIAL_MISMATCH,
            f"it names another tool (keyid {tail.keyid[:40]}), not the caller {tool.urn or tool.subject}",
        )
    try:
        roots.verify(tool, at, deadline=deadline)
    except GeniError as e:
        raise _fail(e.code, f"tool certificate not trusted: {e.output}") from None
    return user


def issue_speaks_for(user: Identity, tool: GID, expires: float, algorithm: str = "sha256") -> str:
    """
    Mint a C{geni_abac} speaks-for credential: C{user} lets C{tool} act for them.

    The layout is the one the GENI tools write (empty owner and target,
    C{<abac><rt0>} with head and one tail), signed by the user with their
    certificate chain in C{KeyInfo}.

    @param expires: POSIX seconds.
    @param algorithm: C{sha256} or C{sha1} (as the reference tools sign).
    @return: the XML document.
    """
    root = new_document()
    credential = etree.SubElement(root, "credential")
    credential.set(XML_ID, "ref0")
    user_key = key_id(user.gid)
    tool_key = key_id(tool)
    for name, text in (
        ("type", ABAC_TYPE),
        ("serial", None),
        ("owner_gid", None),
        ("owner_urn", None),
        ("target_gid", None),
        ("target_urn", None),
        ("uuid", None),
        ("expires", format_time(expires)),
    ):
        etree.SubElement(credential, name).text = text
    abac = etree.SubElement(credential, "abac")
    rt0 = etree.SubElement(abac, "rt0")
    etree.SubElement(rt0, "version").text = ABAC_VERSION
    head = etree.SubElement(rt0, "head")
    _principal(head, user_key, user.gid.urn)
    etree.SubElement(head, "role").text = ROLE_PREFIX + user_key
    tail = etree.SubElement(rt0, "tail")
    _principal(tail, tool_key, tool.urn)
    sign(root, credential, user.private_key, (user.gid.certificate, *user.gid.chain), algorithm)  # type: ignore[arg-type]
    return serialize_document(root)


def _principal(parent: etree._Element, keyid: str, mnemonic: str | None) -> None:
    principal = etree.SubElement(parent, "ABACprincipal")
    etree.SubElement(principal, "keyid").text = keyid
    if mnemonic:
        etree.SubElement(principal, "mnemonic").text = mnemonic
