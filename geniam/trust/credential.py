# -*- test-case-name: tests.trust.test_credential -*-
"""
Signed GENI credentials: hardened parsing into a plain model.

A credential (C{geni_sfa} versions 2 and 3 share the XML; C{geni_abac}
version 1 carries speaks-for statements) arrives in a call's
C{credentials} list either as a struct C{{geni_type, geni_version,
geni_value}} or as a bare XML string. L{unwrap_credentials} sorts them
into what we can use and what we skip (unknown types, which never
authorise anything); L{parse_credential} turns one document into a
L{SignedCredential}: the L{Credential} chain (each level with its parent)
and each level's L{SignatureCheck}, read and digested but not yet trusted.
Trust decisions live in L{geniam.trust.verifier}.

The parser resolves no entities, reads no DTD and touches no network;
documents with a C{DOCTYPE}, over L{MAX_CREDENTIAL_BYTES}, or nested deeper
than L{MAX_CHAIN_DEPTH} delegations are refused before they cost anything.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from geniam.errors import GeniCode, GeniError
from geniam.timeutil import parse_time
from geniam.trust.gid import GID, TrustError
from geniam.trust.xmldsig import SIGNATURES_TAG, XML_ID, SignatureCheck, check_signature, index_ids
from geniam.urn import same_urn

MAX_CREDENTIAL_BYTES = 512 * 1024
"""The largest credential document accepted (a three-level chain is about 25 KiB)."""

MAX_CHAIN_DEPTH = 8
"""The most credentials one delegation chain may hold."""

MAX_PRIVILEGES = 64
"""The most privileges one credential may list."""

GID_CACHE_SIZE = 1024
"""How many parsed owner and target certificates are remembered across documents."""

GENI_SFA = "geni_sfa"
"""The C{geni_type} of privilege credentials."""

GENI_ABAC = "geni_abac"
"""The C{geni_type} of ABAC (speaks-for) credentials."""

GENI_UNKNOWN = "geni_unknown"
"""The C{geni_type} omni gives any credential with more than one C{<type>}
element (every delegated credential): its real type is read from the document."""

SUPPORTED_VERSIONS: Mapping[str, frozenset[str]] = {
    GENI_SFA: frozenset({"2", "3"}),
    GENI_ABAC: frozenset({"1"}),
}
"""The C{geni_version}s understood for each C{geni_type}."""

PRIVILEGE_TYPE = "privilege"
"""The C{<type>} of a C{geni_sfa} credential."""

ABAC_TYPE = "abac"
"""The C{<type>} of a C{geni_abac} credential."""

_TYPE_FOR_KIND = {GENI_SFA: PRIVILEGE_TYPE, GENI_ABAC: ABAC_TYPE}
_KIND_FOR_TYPE = {PRIVILEGE_TYPE: GENI_SFA, ABAC_TYPE: GENI_ABAC}
_SINGLE_CHILDREN = frozenset(
    {
        "type",
        "serial",
        "owner_gid",
        "owner_urn",
        "target_gid",
        "target_urn",
        "uuid",
        "expires",
        "privileges",
        "parent",
        "abac",
        "extensions",
    }
)
_FORBIDDEN_MARKUP = (b"<!DOCTYPE", b"<!ENTITY", b"<!doctype", b"<!entity")


def _invalid(reason: str) -> GeniError:
    return GeniError(GeniCode.CREDENTIAL_INVALID, reason)


@dataclass(frozen=True)
class Privilege:
    """
    One right a credential grants.

    @ivar name: the privilege name as written (e.g. C{control}, C{*}).
    @ivar can_delegate: whether the owner may pass it on.
    """

    name: str
    can_delegate: bool


@dataclass(frozen=True)
class AbacPrincipal:
    """
    An ABAC principal: a key identifier and an optional role.

    @ivar keyid: lower-case hexadecimal SHA-1 of the principal's public key.
    @ivar mnemonic: a human-readable name (usually the URN), not trusted.
    @ivar role: the role name, or C{None} for a bare principal.
    """

    keyid: str
    mnemonic: str | None
    role: str | None


@dataclass(frozen=True)
class AbacStatement:
    """
    An ABAC RT0 statement C{head <- tail...} (speaks-for has exactly one tail).

    @ivar version: the RT0 version text (C{1.1}).
    @ivar head: the principal and role defined.
    @ivar tails: the principals (or roles) that get the head role.
    """

    version: str
    head: AbacPrincipal
    tails: tuple[AbacPrincipal, ...]


@dataclass(frozen=True, eq=False)
class Credential:
    """
    One level of a credential chain, as the document states it.

    Nothing here is trusted until a verifier has checked it.

    @ivar xml_id: the element's C{xml:id}.
    @ivar type: the C{<type>} text, lower-cased (C{privilege} or C{abac}).
    @ivar serial: the issuer's serial string.
    @ivar owner_gid: who the credential is for (C{None} in ABAC credentials).
    @ivar owner_urn: the owner's URN (from C{owner_urn}, else the owner GID).
    @ivar target_gid: what the credential is about (C{None} in ABAC credentials).
    @ivar target_urn: the target's URN (from C{target_urn}, else the target GID).
    @ivar expires: POSIX seconds; a zone-less time is UTC.
    @ivar privileges: the privileges in document order.
    @ivar parent: the credential this one was delegated from, or C{None}.
    @ivar signature: this level's signature, read and digested.
    @ivar abac: the RT0 statement of an ABAC credential, else C{None}.
    """

    xml_id: str
    type: str
    serial: str
    owner_gid: GID | None
    owner_urn: str | None
    target_gid: GID | None
    target_urn: str | None
    expires: float
    privileges: tuple[Privilege, ...]
    parent: Credential | None
    signature: SignatureCheck
    abac: AbacStatement | None = None

    def chain(self) -> tuple[Credential, ...]:
        """This credential followed by its parent, grandparent and so on."""
        levels = []
        level: Credential | None = self
        while level is not None:
            levels.append(level)
            level = level.parent
        return tuple(levels)

    @property
    def root(self) -> Credential:
        """The credential at the top of the delegation chain (the one an authority signed)."""
        return self.chain()[-1]

    @property
    def privilege_names(self) -> frozenset[str]:
        """The names of the privileges, lower-cased."""
        return frozenset(p.name.lower() for p in self.privileges)

    def privilege(self, name: str) -> Privilege | None:
        """Return the privilege called C{name} (case-insensitive), or C{None}."""
        wanted = name.lower()
        for privilege in self.privileges:
            if privilege.name.lower() == wanted:
                return privilege
        return None

    def __repr__(self) -> str:
        return f"<Credential {self.xml_id} {self.type} {self.owner_urn} -> {self.target_urn}>"


@dataclass(frozen=True, eq=False)
class SignedCredential:
    """
    A parsed credential document.

    @ivar credential: the outermost credential (its parents hang below it).
    @ivar kind: C{geni_sfa} or C{geni_abac}.
    @ivar version: the C{geni_version} it was presented with (C{3} for bare strings).
    @ivar digest: SHA-256 of the document bytes.
    @ivar document: the document bytes as presented.
    """

    credential: Credential
    kind: str
    version: str
    digest: bytes
    document: bytes = field(repr=False)

    def levels(self) -> tuple[Credential, ...]:
        """The chain, outermost (presented) credential first, root last."""
        return self.credential.chain()


@dataclass(frozen=True)
class PresentedCredential:
    """
    One entry of a call's C{credentials} list that we know how to read.

    @ivar kind: C{geni_sfa}, C{geni_abac}, or C{None} for a bare string
        (the kind then follows from the document's C{<type>}).
    @ivar version: the C{geni_version} given, or C{None}.
    @ivar value: the credential document.
    @ivar index: the position in the call's list, for messages.
    @ivar digest: SHA-256 of the document (the key of verification caches).
    """

    kind: str | None
    version: str | None
    value: bytes = field(repr=False)
    index: int
    digest: bytes = field(default=b"", repr=False)

    def __post_init__(self) -> None:
        if not self.digest:
            object.__setattr__(self, "digest", hashlib.sha256(self.value).digest())

    def describe(self) -> str:
        """How to name this entry in a message."""
        return f"credential #{self.index + 1}"


def _encode(text: str, what: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise _invalid(f"{what} is not valid Unicode text") from None


def _as_bytes(value: object, what: str) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return _encode(value, what)
    data = getattr(value, "data", None)
    if isinstance(data, bytes):
        return data
    raise _invalid(f"{what} must be an XML string, not {type(value).__name__}")


def unwrap_credentials(
    credentials: object, max_count: int = 32
) -> tuple[list[PresentedCredential], list[str]]:
    """
    Sort a call's C{credentials} argument into readable entries and skipped ones.

    Structs need C{geni_type} (case-insensitive) and C{geni_value}; bare
    strings are taken as they are, and so is a struct labelled
    C{geni_unknown} (whatever its version): the document's C{<type>}
    decides. Other unknown types and versions are skipped: they never
    authorise anything.

    @return: the readable entries and a description of each skipped one.
    @raise GeniError: BADARGS if C{credentials} is not a list or is too
        long; CREDENTIAL_INVALID if a struct is malformed.
    """
    if not isinstance(credentials, (list, tuple)):
        raise GeniError(GeniCode.BADARGS, f"credentials must be a list, not {type(credentials).__name__}")
    if len(credentials) > max_count:
        raise GeniError(GeniCode.BADARGS, f"too many credentials ({len(credentials)} > {max_count})")
    usable: list[PresentedCredential] = []
    skipped: list[str] = []
    for index, item in enumerate(credentials):
        where = f"credential #{index + 1}"
        if isinstance(item, dict):
            geni_type = item.get("geni_type")
            if not isinstance(geni_type, str):
                raise _invalid(f"{where}: geni_type missing or not a string")
            named = geni_type.strip().lower()
            version = item.get("geni_version")
            version_text = str(version).strip() if isinstance(version, (str, int)) else None
            kind: str | None = named
            if named == GENI_UNKNOWN:
                kind, version_text = None, None
            elif named not in SUPPORTED_VERSIONS:
                skipped.append(f"{where}: unknown geni_type {geni_type[:40]!r}")
                continue
            elif version_text is None:
                raise _invalid(f"{where}: geni_version missing or not a string")
            elif version_text not in SUPPORTED_VERSIONS[named]:
                skipped.append(f"{where}: unsupported {named} version {version_text[:16]!r}")
                continue
            if "geni_value" not in item:
                raise _invalid(f"{where}: geni_value missing")
            usable.append(PresentedCredential(kind, version_text, _as_bytes(item["geni_value"], where), index))
        elif isinstance(item, (str, bytes)):
            usable.append(PresentedCredential(None, None, _as_bytes(item, where), index))
        else:
            raise _invalid(f"{where}: expected a struct or a string, got {type(item).__name__}")
    return usable, skipped


def _make_parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        collect_ids=False,
        strip_cdata=True,
        remove_comments=False,
        remove_pis=False,
    )


def parse_document(data: bytes | str, max_bytes: int = MAX_CREDENTIAL_BYTES) -> etree._Element:
    """
    Parse XML with the hardened settings credentials get.

    @raise GeniError: CREDENTIAL_INVALID if the document is too large, not
        UTF-8 compatible, declares a DOCTYPE or entities, or is not well formed.
    """
    if isinstance(data, str):
        data = _encode(data, "credential")
    if not isinstance(data, bytes):
        raise _invalid(f"a credential must be XML text, not {type(data).__name__}")
    if len(data) > max_bytes:
        raise _invalid(f"credential too large ({len(data)} bytes; the limit is {max_bytes})")
    if not data.strip():
        raise _invalid("credential is empty")
    if b"\x00" in data:
        raise _invalid("credential is not UTF-8 encoded XML (NUL bytes)")
    for marker in _FORBIDDEN_MARKUP:
        if marker in data:
            raise _invalid("credential declares a DOCTYPE or entities, which are not allowed")
    try:
        root = etree.fromstring(data, _make_parser())
    except etree.XMLSyntaxError as e:
        raise _invalid(f"credential is not well-formed XML: {str(e)[:200]}") from None
    except (ValueError, etree.LxmlError) as e:
        raise _invalid(f"credential cannot be parsed: {str(e)[:200]}") from None
    tree = root.getroottree()
    if tree.docinfo.doctype or tree.docinfo.internalDTD is not None:
        raise _invalid("credential declares a DOCTYPE, which is not allowed")
    return root


def _elements(parent: etree._Element) -> Iterator[etree._Element]:
    for child in parent:
        if isinstance(child.tag, str):
            yield child


def _text(element: etree._Element | None) -> str:
    """The element's text content; child elements are refused."""
    if element is None:
        return ""
    if any(True for _ in _elements(element)):
        raise _invalid(f"<{element.tag}> must hold text only")
    return "".join(element.itertext()).strip()


@functools.lru_cache(maxsize=GID_CACHE_SIZE)
def _gid_from_pem(text: str) -> GID:
    """Parse a PEM certificate chain; remembered, since the same few certificates recur in every credential."""
    return GID.from_pem(text)


def _gid(element: etree._Element | None, what: str, level: str) -> GID | None:
    text = _text(element)
    if not text:
        return None
    try:
        return _gid_from_pem(text)
    except TrustError as e:
        raise _invalid(f"{level}: {what}: {e.output}") from None


def _boolean(text: str, level: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0", ""):
        return False
    raise _invalid(f"{level}: can_delegate must be true, false, 1 or 0, not {text[:20]!r}")


def _privileges(element: etree._Element | None, level: str) -> tuple[Privilege, ...]:
    if element is None:
        return ()
    found: list[Privilege] = []
    seen: set[str] = set()
    for child in _elements(element):
        if child.tag != "privilege":
            raise _invalid(f"{level}: unexpected <{child.tag}> in <privileges>")
        parts: dict[str, etree._Element] = {}
        for part in _elements(child):
            if part.tag in parts:
                raise _invalid(f"{level}: privilege with two <{part.tag}> elements")
            parts[part.tag] = part
        name = _text(parts.get("name"))
        if not name:
            raise _invalid(f"{level}: privilege without a name")
        if name.lower() in seen:
            raise _invalid(f"{level}: privilege {name[:40]!r} listed twice")
        seen.add(name.lower())
        found.append(Privilege(name, _boolean(_text(parts.get("can_delegate")), level)))
        if len(found) > MAX_PRIVILEGES:
            raise _invalid(f"{level}: more than {MAX_PRIVILEGES} privileges")
    return tuple(found)


def _principal(element: etree._Element, level: str) -> AbacPrincipal:
    principal = None
    role = None
    for child in _elements(element):
        if child.tag == "ABACprincipal" and principal is None:
            principal = child
        elif child.tag == "role" and role is None:
            role = _text(child)
        elif child.tag in ("linking_role",):
            raise _invalid(f"{level}: linked ABAC roles are not supported")
        else:
            raise _invalid(f"{level}: unexpected <{child.tag}> in ABAC <{element.tag}>")
    if principal is None:
        raise _invalid(f"{level}: ABAC <{element.tag}> without an ABACprincipal")
    keyid = mnemonic = None
    for child in _elements(principal):
        if child.tag == "keyid" and keyid is None:
            keyid = _text(child).lower()
        elif child.tag == "mnemonic" and mnemonic is None:
            mnemonic = _text(child) or None
        else:
            raise _invalid(f"{level}: unexpected <{child.tag}> in ABACprincipal")
    if not keyid:
        raise _invalid(f"{level}: ABACprincipal without a keyid")
    return AbacPrincipal(keyid, mnemonic, role or None)


def _abac(element: etree._Element | None, level: str) -> AbacStatement:
    if element is None:
        raise _invalid(f"{level}: ABAC credential without an <abac> statement")
    statements = list(_elements(element))
    if len(statements) != 1 or statements[0].tag != "rt0":
        raise _invalid(f"{level}: <abac> must hold exactly one <rt0>")
    version = None
    head = None
    tails: list[AbacPrincipal] = []
    for child in _elements(statements[0]):
        if child.tag == "version" and version is None:
            version = _text(child)
        elif child.tag == "head" and head is None:
            head = _principal(child, level)
        elif child.tag == "tail":
            tails.append(_principal(child, level))
        else:
            raise _invalid(f"{level}: unexpected <{child.tag}> in <rt0>")
    if head is None:
        raise _invalid(f"{level}: ABAC statement without a head")
    return AbacStatement(version or "", head, tuple(tails))


def _check_urn(gid: GID | None, urn_text: str, what: str, level: str) -> str | None:
    if gid is None:
        return urn_text or None
    if not urn_text:
        return gid.urn
    if gid.urn is None or not same_urn(gid.urn, urn_text):
        raise _invalid(f"{level}: {what}_urn {urn_text[:100]!r} does not match the {what} certificate ({gid.urn})")
    return urn_text


def _parse_level(
    root: etree._Element,
    element: etree._Element,
    ids: Mapping[str, etree._Element],
    depth: int,
) -> Credential:
    if depth >= MAX_CHAIN_DEPTH:
        raise _invalid(f"delegation chain longer than {MAX_CHAIN_DEPTH}")
    xml_id = element.get(XML_ID)
    if not xml_id:
        raise _invalid(f"credential at depth {depth} has no xml:id")
    level = f"credential {xml_id[:40]!r}"
    parts: dict[str, etree._Element] = {}
    for child in _elements(element):
        if child.tag in _SINGLE_CHILDREN:
            if child.tag in parts:
                raise _invalid(f"{level}: more than one <{child.tag}>")
            parts[child.tag] = child
    kind = _text(parts.get("type")).lower()
    if not kind:
        raise _invalid(f"{level}: no <type>")
    expires_text = _text(parts.get("expires"))
    if not expires_text:
        raise _invalid(f"{level}: no <expires>")
    try:
        expires = parse_time(expires_text)
    except GeniError:
        raise _invalid(f"{level}: <expires> is not a date-time: {expires_text[:40]!r}") from None
    owner_gid = _gid(parts.get("owner_gid"), "owner_gid", level)
    target_gid = _gid(parts.get("target_gid"), "target_gid", level)
    abac = None
    if kind == ABAC_TYPE:
        abac = _abac(parts.get("abac"), level)
    else:
        if owner_gid is None:
            raise _invalid(f"{level}: no owner_gid")
        if target_gid is None:
            raise _invalid(f"{level}: no target_gid")
    owner_urn = _check_urn(owner_gid, _text(parts.get("owner_urn")), "owner", level)
    target_urn = _check_urn(target_gid, _text(parts.get("target_urn")), "target", level)
    parent = None
    if "parent" in parts:
        inner = list(_elements(parts["parent"]))
        if len(inner) != 1 or inner[0].tag != "credential":
            raise _invalid(f"{level}: <parent> must hold exactly one <credential>")
        parent = _parse_level(root, inner[0], ids, depth + 1)
    signature = check_signature(root, element, ids)
    return Credential(
        xml_id=xml_id,
        type=kind,
        serial=_text(parts.get("serial")),
        owner_gid=owner_gid,
        owner_urn=owner_urn,
        target_gid=target_gid,
        target_urn=target_urn,
        expires=expires,
        privileges=_privileges(parts.get("privileges"), level),
        parent=parent,
        signature=signature,
        abac=abac,
    )


def parse_credential(
    data: bytes | str,
    kind: str | None = None,
    version: str | None = None,
    max_bytes: int = MAX_CREDENTIAL_BYTES,
) -> SignedCredential:
    """
    Parse a signed credential document into its model.

    Every level's signature is located, its layout checked and its
    reference digest computed (see L{SignatureCheck}); the cryptographic
    signature and trust are left to the verifier.

    @param kind: the C{geni_type} it was presented as (C{None} for a bare
        string: the document's C{<type>} decides).
    @param version: the C{geni_version} it was presented with.
    @raise GeniError: CREDENTIAL_INVALID for anything malformed: bad XML,
        a DOCTYPE, a missing or duplicate element or C{xml:id}, a malformed
        certificate, a signature that does not reference its credential,
        or a document whose type contradicts C{kind}.
    """
    if isinstance(data, str):
        data = _encode(data, "credential")
    root = parse_document(data, max_bytes)
    if root.tag != "signed-credential":
        raise _invalid(f"expected a <signed-credential> document, got <{str(root.tag)[:40]}>")
    credentials = []
    for child in _elements(root):
        if child.tag == "credential":
            credentials.append(child)
        elif child.tag != SIGNATURES_TAG:
            raise _invalid(f"unexpected <{str(child.tag)[:40]}> in <signed-credential>")
    if len(credentials) != 1:
        raise _invalid(f"a signed credential holds exactly one <credential>, found {len(credentials)}")
    ids = index_ids(root)
    credential = _parse_level(root, credentials[0], ids, 0)
    _check_signatures_used(root, credential)
    document_kind = _KIND_FOR_TYPE.get(credential.type)
    if kind is not None and _TYPE_FOR_KIND.get(kind) != credential.type:
        raise _invalid(f"presented as {kind} but the credential is of type {credential.type[:40]!r}")
    if document_kind is None:
        raise _invalid(f"unsupported credential type {credential.type[:40]!r}")
    if version is None:
        version = "1" if document_kind == GENI_ABAC else "3"
    return SignedCredential(credential, document_kind, version, hashlib.sha256(data).digest(), data)


def _check_signatures_used(root: etree._Element, credential: Credential) -> None:
    """Refuse signatures that belong to no level of the chain."""
    wanted = {level.signature.signature_id for level in credential.chain()}
    container = next((c for c in _elements(root) if c.tag == SIGNATURES_TAG), None)
    if container is None:
        return
    for child in _elements(container):
        identifier = child.get(XML_ID)
        if identifier not in wanted:
            raise _invalid(f"<signatures> holds {str(identifier)[:60]!r}, which signs no level of this credential")


def parse_presented(presented: PresentedCredential, max_bytes: int = MAX_CREDENTIAL_BYTES) -> SignedCredential:
    """Parse one entry of a call's credential list (see L{parse_credential})."""
    return parse_credential(presented.value, presented.kind, presented.version, max_bytes)


def describe_privileges(privileges: Iterable[Privilege]) -> str:
    """Format privileges as C{name, name*} where C{*} marks delegatable ones."""
    return ", ".join(f"{p.name}{'*' if p.can_delegate else ''}" for p in privileges) or "(none)"


def as_struct(xml: str, kind: str = GENI_SFA, version: str | None = None) -> dict[str, Any]:
    """Wrap a credential document in the AM API v3 struct C{{geni_type, geni_version, geni_value}}."""
    if version is None:
        version = "1" if kind == GENI_ABAC else "3"
    return {"geni_type": kind, "geni_version": version, "geni_value": xml}


XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
"""The XML Schema instance namespace the credential root declares."""

SCHEMA_LOCATION = "http://www.geni.net/resources/credential/2/credential.xsd"
"""The credential schema named by new documents."""

POLICY_SCHEMA_LOCATION = (
    "http://www.protogeni.net/resources/credential/ext/policy/1 "
    "http://www.protogeni.net/resources/credential/ext/policy/1/policy.xsd"
)
"""The policy extension schema named by new documents."""


def new_document(template: etree._Element | None = None) -> etree._Element:
    """
    Return an empty C{signed-credential} root for a new credential.

    @param template: the root of the document a delegated credential comes
        from; its namespace declarations and attributes are copied, since
        the parent's signatures cover the namespaces it inherits.
    """
    if template is None:
        root = etree.Element("signed-credential", nsmap={"xsi": XSI_NS})
        root.set(f"{{{XSI_NS}}}noNamespaceSchemaLocation", SCHEMA_LOCATION)
        root.set(f"{{{XSI_NS}}}schemaLocation", POLICY_SCHEMA_LOCATION)
        return root
    root = etree.Element("signed-credential", nsmap=dict(template.nsmap))
    for key, value in template.attrib.items():
        root.set(key, value)
    return root


def serialize_document(root: etree._Element) -> str:
    """Serialise a credential document with an XML declaration, as text."""
    data: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    return data.decode("utf-8")
