# -*- test-case-name: tests.trust.test_xmldsig -*-
"""
A narrow, strict XML-DSig for signed GENI credentials.

This is not a general XML signature library. It knows the one layout the
GENI tools (xmlsec1 driven by gcf, SFA and ProtoGENI) produce, and refuses
everything else::

    <signed-credential>
      <credential xml:id="ref0">...</credential>
      <signatures>
        <Signature xmlns="http://www.w3.org/2000/09/xmldsig#" xml:id="Sig_ref0">
          <SignedInfo>
            <CanonicalizationMethod Algorithm="...REC-xml-c14n-20010315"/>
            <SignatureMethod Algorithm="...xmldsig#rsa-sha1"/>
            <Reference URI="#ref0">
              <Transforms><Transform Algorithm="...#enveloped-signature"/></Transforms>
              <DigestMethod Algorithm="...xmldsig#sha1"/>
              <DigestValue>...</DigestValue>
            </Reference>
          </SignedInfo>
          <SignatureValue>...</SignatureValue>
          <KeyInfo><X509Data><X509Certificate>signer</X509Certificate>...</X509Data></KeyInfo>
        </Signature>
      </signatures>
    </signed-credential>

Verification starts from the credential element being checked, never from
the signature: the signature is looked up as C{Sig_<xml:id>} among the
children of the document's C{signatures}; its single reference must name
that C{xml:id}, the identifier must occur exactly once in the whole
document, and it must resolve to that very element. Moved, wrapped or
duplicated signed content therefore never verifies.

Canonicalisation is inclusive C14N 1.0, written here over the lxml tree
(lxml's own subtree canonicalisation drops inherited default namespaces),
including what xmlsec1 does for a document subset: the apex element
carries every in-scope namespace and the C{xml:*} attributes it inherits
(so the canonical C{SignedInfo} carries its C{Signature}'s C{xml:id}).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from lxml import etree

from geniam.errors import GeniCode, GeniError

DSIG_NS = "http://www.w3.org/2000/09/xmldsig#"
"""The XML-DSig namespace."""

XML_NS = "http://www.w3.org/XML/1998/namespace"
"""The namespace of the C{xml:} prefix."""

XML_ID = f"{{{XML_NS}}}id"
"""The Clark name of C{xml:id}."""

C14N = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"
"""Inclusive canonical XML 1.0, without comments."""

C14N_WITH_COMMENTS = C14N + "#WithComments"
"""Inclusive canonical XML 1.0, with comments."""

ENVELOPED_SIGNATURE = DSIG_NS + "enveloped-signature"
"""The enveloped-signature transform."""

DIGEST_SHA1 = DSIG_NS + "sha1"
"""SHA-1 digest (what the GENI tools use)."""

DIGEST_SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
"""SHA-256 digest."""

RSA_SHA1 = DSIG_NS + "rsa-sha1"
"""RSA PKCS#1 v1.5 with SHA-1 (what the GENI tools use)."""

RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
"""RSA PKCS#1 v1.5 with SHA-256."""

SIGNATURE_PREFIX = "Sig_"
"""A credential's signature has the C{xml:id} of this prefix and the credential's C{xml:id}."""

MIN_RSA_BITS = 1024
"""The smallest RSA key accepted for a signature."""

MAX_SIGNER_CERTIFICATES = 8
"""The most certificates one signature's C{X509Data} may carry."""

_DIGESTS: Mapping[str, type[hashes.HashAlgorithm]] = {DIGEST_SHA1: hashes.SHA1, DIGEST_SHA256: hashes.SHA256}
_SIGNATURES: Mapping[str, type[hashes.HashAlgorithm]] = {RSA_SHA1: hashes.SHA1, RSA_SHA256: hashes.SHA256}
_ALGORITHMS_BY_NAME: Mapping[str, tuple[str, str]] = {
    "sha1": (RSA_SHA1, DIGEST_SHA1),
    "sha256": (RSA_SHA256, DIGEST_SHA256),
}

_SIGNATURE = f"{{{DSIG_NS}}}Signature"
_SIGNED_INFO = f"{{{DSIG_NS}}}SignedInfo"
_CANONICALIZATION_METHOD = f"{{{DSIG_NS}}}CanonicalizationMethod"
_SIGNATURE_METHOD = f"{{{DSIG_NS}}}SignatureMethod"
_REFERENCE = f"{{{DSIG_NS}}}Reference"
_TRANSFORMS = f"{{{DSIG_NS}}}Transforms"
_TRANSFORM = f"{{{DSIG_NS}}}Transform"
_DIGEST_METHOD = f"{{{DSIG_NS}}}DigestMethod"
_DIGEST_VALUE = f"{{{DSIG_NS}}}DigestValue"
_SIGNATURE_VALUE = f"{{{DSIG_NS}}}SignatureValue"
_KEY_INFO = f"{{{DSIG_NS}}}KeyInfo"
_X509_DATA = f"{{{DSIG_NS}}}X509Data"
_X509_CERTIFICATE = f"{{{DSIG_NS}}}X509Certificate"
_KEY_INFO_CHILDREN = frozenset(
    {_X509_DATA, f"{{{DSIG_NS}}}KeyValue", f"{{{DSIG_NS}}}KeyName"}
)
_X509_DATA_CHILDREN = frozenset(
    {
        _X509_CERTIFICATE,
        f"{{{DSIG_NS}}}X509SubjectName",
        f"{{{DSIG_NS}}}X509IssuerSerial",
        f"{{{DSIG_NS}}}X509SKI",
    }
)

SIGNATURES_TAG = "signatures"
"""The element of a signed credential that holds every signature."""


class SignatureError(GeniError):
    """
    A signature that is malformed, misplaced or does not verify.

    Its code is C{CREDENTIAL_INVALID}.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(GeniCode.CREDENTIAL_INVALID, reason)


@dataclass(frozen=True)
class SignatureCheck:
    """
    What one credential's signature says, read and digested but not yet trusted.

    The reference has been resolved and its digest compared (see
    L{digest_matches}); L{verify} then checks the RSA signature over the
    canonical C{SignedInfo} with the first certificate's key. Whether that
    certificate deserves trust is for the caller to decide.

    @ivar signature_id: the signature's C{xml:id} (C{Sig_<reference_id>}).
    @ivar reference_id: the C{xml:id} of the signed credential element.
    @ivar signature_method: the C{SignatureMethod} algorithm URI.
    @ivar digest_method: the C{DigestMethod} algorithm URI.
    @ivar digest_matches: whether the reference digest equals the digest of
        the canonical credential element.
    @ivar signed_info: the canonical C{SignedInfo} octets that were signed.
    @ivar signature_value: the decoded C{SignatureValue}.
    @ivar certificates: the C{X509Certificate}s in document order; the
        first is the signer's, the rest its issuers.
    """

    signature_id: str
    reference_id: str
    signature_method: str
    digest_method: str
    digest_matches: bool
    signed_info: bytes = field(repr=False)
    signature_value: bytes = field(repr=False)
    certificates: tuple[x509.Certificate, ...] = field(repr=False)

    @property
    def signer(self) -> x509.Certificate:
        """The signer's certificate (the first of L{certificates})."""
        return self.certificates[0]

    def verify(self) -> None:
        """
        Check the digest and the RSA signature with the signer certificate's key.

        @raise SignatureError: if the signed content was altered or the
            signature does not verify with that key.
        """
        if not self.digest_matches:
            raise SignatureError(
                f"signature {self.signature_id}: digest of #{self.reference_id} does not match (content altered)"
            )
        try:
            key = self.signer.public_key()
        except (ValueError, TypeError, UnsupportedAlgorithm) as e:
            raise SignatureError(f"signature {self.signature_id}: unusable signer key ({e})") from None
        if not isinstance(key, rsa.RSAPublicKey):
            raise SignatureError(
                f"signature {self.signature_id}: signer key is {type(key).__name__}, not RSA"
            )
        if key.key_size < MIN_RSA_BITS:
            raise SignatureError(
                f"signature {self.signature_id}: signer RSA key too small ({key.key_size} bits)"
            )
        try:
            key.verify(self.signature_value, self.signed_info, padding.PKCS1v15(), _SIGNATURES[self.signature_method]())
        except (InvalidSignature, ValueError):
            raise SignatureError(
                f"signature {self.signature_id}: SignatureValue does not verify with the signer's key"
            ) from None


def index_ids(root: etree._Element) -> dict[str, etree._Element]:
    """
    Map every C{xml:id} of a document to its element.

    @raise SignatureError: if an identifier occurs more than once (a
        duplicate is how signed content gets swapped for unsigned content).
    """
    ids: dict[str, etree._Element] = {}
    for element in root.iter(tag=etree.Element):
        value = element.get(XML_ID)
        if value is None:
            continue
        if value in ids:
            raise SignatureError(f"duplicate xml:id {value[:64]!r} in the document")
        ids[value] = element
    return ids


# --- canonical XML 1.0 ----------------------------------------------------


_ATTRIBUTE_SPECIALS = frozenset('&<"\t\n\r')


def _escape_text(text: str) -> str:
    if "&" in text:
        text = text.replace("&", "&amp;")
    if "<" in text:
        text = text.replace("<", "&lt;")
    if ">" in text:
        text = text.replace(">", "&gt;")
    if "\r" in text:
        text = text.replace("\r", "&#xD;")
    return text


def _escape_attribute(value: str) -> str:
    if not _ATTRIBUTE_SPECIALS.intersection(value):
        return value
    return (
        value.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace('"', "&quot;")
        .replace("\t", "&#x9;")
        .replace("\n", "&#xA;")
        .replace("\r", "&#xD;")
    )


def _split(clark: str) -> tuple[str, str]:
    """Split a Clark name C{{uri}local} into (uri, local); no namespace gives ("", name)."""
    if clark[:1] == "{":
        uri, _, local = clark[1:].partition("}")
        return uri, local
    return "", clark


def _attribute_prefix(element: etree._Element, uri: str, local: str, nsmap: Mapping[str | None, str]) -> str:
    if uri == XML_NS:
        return "xml"
    prefixes = [p for p, u in nsmap.items() if u == uri and p is not None]
    if len(prefixes) == 1:
        return prefixes[0]
    name = element.xpath(
        "name(@*[namespace-uri()=$u and local-name()=$l])", u=uri, l=local
    )
    if isinstance(name, str) and ":" in name:
        return name.split(":", 1)[0]
    raise SignatureError(f"cannot determine the prefix of attribute {{{uri}}}{local}")


def _qualified(prefix: str | None, local: str) -> str:
    return f"{prefix}:{local}" if prefix else local


def _render(
    element: etree._Element,
    context: Mapping[str | None, str],
    extra_attributes: Mapping[str, str],
    with_comments: bool,
    exclude: etree._Element | None,
    out: list[str],
) -> None:
    nsmap = element.nsmap
    start: list[str] = []
    if nsmap != context:
        declarations: list[tuple[str, str]] = []
        for prefix, uri in nsmap.items():
            if context.get(prefix) != uri:
                declarations.append(("" if prefix is None else prefix, uri))
        if None not in nsmap and context.get(None):
            declarations.append(("", ""))
        declarations.sort()
        for prefix, uri in declarations:
            start.append(f' xmlns="{_escape_attribute(uri)}"' if not prefix else f' xmlns:{prefix}="{_escape_attribute(uri)}"')
    attrib = element.attrib
    if attrib or extra_attributes:
        attributes: list[tuple[str, str, str, str]] = []
        for key, value in attrib.items():
            uri, local = _split(key)
            name = f"{_attribute_prefix(element, uri, local, nsmap)}:{local}" if uri else local
            attributes.append((uri, local, name, value))
        for key, value in extra_attributes.items():
            uri, local = _split(key)
            attributes.append((uri, local, f"xml:{local}", value))
        attributes.sort()
        for _, _, name, value in attributes:
            start.append(f' {name}="{_escape_attribute(value)}"')
    raw = element.tag
    if raw[0] == "{":
        tag = _qualified(element.prefix, raw[raw.index("}") + 1 :])
    else:
        tag = raw
    out.append(f"<{tag}{''.join(start)}>")
    if element.text:
        out.append(_escape_text(element.text))
    # After this start tag exactly the element's in-scope namespaces are in
    # effect in the output (prefixes cannot be undeclared in XML 1.0).
    for child in element:
        if exclude is not None and id(child) == id(exclude):
            if child.tail:
                out.append(_escape_text(child.tail))
            continue
        if isinstance(child.tag, str):
            _render(child, nsmap, {}, with_comments, exclude, out)
        elif isinstance(child, etree._Comment):
            if with_comments:
                out.append(f"<!--{child.text or ''}-->")
        elif isinstance(child, etree._ProcessingInstruction):
            target = child.target
            data = child.text or ""
            out.append(f"<?{target} {data}?>" if data else f"<?{target}?>")
        else:
            raise SignatureError("entity references are not allowed in signed content")
        if child.tail:
            out.append(_escape_text(child.tail))
    out.append(f"</{tag}>")


def canonicalize(
    element: etree._Element,
    with_comments: bool = False,
    exclude: etree._Element | None = None,
) -> bytes:
    """
    Return the inclusive C14N 1.0 form of C{element} and its descendants.

    This is the canonical form of the document subset made of that
    subtree (what a same-document reference C{#id} selects): the apex
    carries every namespace in scope and the C{xml:*} attributes it
    inherits from its ancestors.

    @param with_comments: keep comments (C{#WithComments} variant).
    @param exclude: an element left out together with its subtree (the
        enveloped-signature transform).
    """
    inherited: dict[str, str] = {}
    ancestor = element.getparent()
    while ancestor is not None:
        for key, value in ancestor.attrib.items():
            if key.startswith(f"{{{XML_NS}}}") and key not in inherited and element.get(key) is None:
                inherited[key] = value
        ancestor = ancestor.getparent()
    out: list[str] = []
    _render(element, {}, inherited, with_comments, exclude, out)
    return "".join(out).encode("utf-8")


# --- verification ---------------------------------------------------------


def _children(element: etree._Element) -> list[etree._Element]:
    """Element children, skipping comments and processing instructions."""
    return [c for c in element if isinstance(c.tag, str)]


def _decode_base64(text: str | None, what: str) -> bytes:
    compact = "".join((text or "").split())
    if not compact:
        raise SignatureError(f"{what} is empty")
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError(f"{what} is not valid base64") from None


def _algorithm(element: etree._Element, allowed: Iterable[str], what: str) -> str:
    value = element.get("Algorithm")
    if value not in allowed:
        raise SignatureError(f"unsupported {what} {str(value)[:100]!r}")
    if _children(element):
        raise SignatureError(f"{what} must not have parameters")
    return value


def find_signatures_element(root: etree._Element) -> etree._Element | None:
    """
    Return the document's C{signatures} element, or C{None} if there is none.

    @raise SignatureError: if there are several.
    """
    found = [c for c in _children(root) if c.tag == SIGNATURES_TAG]
    if len(found) > 1:
        raise SignatureError("more than one <signatures> element")
    return found[0] if found else None


def find_signature(root: etree._Element, reference_id: str) -> etree._Element | None:
    """
    Return the C{Signature} whose C{xml:id} is C{Sig_<reference_id>}, or C{None}.

    Only the children of the root's C{signatures} element are searched.

    @raise SignatureError: if several carry that identifier.
    """
    container = find_signatures_element(root)
    if container is None:
        return None
    wanted = SIGNATURE_PREFIX + reference_id
    found = [c for c in _children(container) if c.tag == _SIGNATURE and c.get(XML_ID) == wanted]
    if len(found) > 1:
        raise SignatureError(f"more than one signature {wanted[:80]!r}")
    return found[0] if found else None


def check_signature(
    root: etree._Element,
    element: etree._Element,
    ids: Mapping[str, etree._Element] | None = None,
) -> SignatureCheck:
    """
    Read the signature of C{element} and compare its reference digest.

    @param root: the document element (C{signed-credential}).
    @param element: the credential element whose signature is wanted.
    @param ids: the document's L{index_ids}; computed if not given.
    @return: the check, with L{SignatureCheck.digest_matches} set; call
        L{SignatureCheck.verify} for the cryptographic signature.
    @raise SignatureError: if the signature is missing, misplaced,
        malformed, uses an unsupported algorithm or transform, or its
        reference does not resolve to exactly C{element}.
    """
    reference_id = element.get(XML_ID)
    if not reference_id:
        raise SignatureError("credential has no xml:id, so nothing can reference it")
    if ids is None:
        ids = index_ids(root)
    signature = find_signature(root, reference_id)
    if signature is None:
        raise SignatureError(f"no signature {SIGNATURE_PREFIX}{reference_id} for credential {reference_id!r}")
    where = f"signature {SIGNATURE_PREFIX}{reference_id}"
    children = _children(signature)
    if [c.tag for c in children[:2]] != [_SIGNED_INFO, _SIGNATURE_VALUE] or [
        c.tag for c in children[2:]
    ] != [_KEY_INFO]:
        raise SignatureError(f"{where}: expected SignedInfo, SignatureValue, KeyInfo")
    signed_info, signature_value, key_info = children
    info_children = _children(signed_info)
    if len(info_children) != 3 or [c.tag for c in info_children] != [
        _CANONICALIZATION_METHOD,
        _SIGNATURE_METHOD,
        _REFERENCE,
    ]:
        raise SignatureError(f"{where}: SignedInfo must hold CanonicalizationMethod, SignatureMethod and one Reference")
    c14n_element, method_element, reference = info_children
    c14n_method = _algorithm(c14n_element, (C14N, C14N_WITH_COMMENTS), "canonicalization method")
    signature_method = _algorithm(method_element, _SIGNATURES, "signature method")
    uri = reference.get("URI")
    if uri != "#" + reference_id:
        raise SignatureError(f"{where}: reference {str(uri)[:80]!r} is not #{reference_id}")
    target = ids.get(reference_id)
    if target is None or id(target) != id(element):
        raise SignatureError(f"{where}: #{reference_id} does not resolve to the credential being checked")
    ref_children = _children(reference)
    if ref_children and ref_children[0].tag == _TRANSFORMS:
        transforms, ref_children = ref_children[0], ref_children[1:]
    else:
        transforms = None
    if [c.tag for c in ref_children] != [_DIGEST_METHOD, _DIGEST_VALUE]:
        raise SignatureError(f"{where}: Reference must hold Transforms?, DigestMethod, DigestValue")
    digest_element, value_element = ref_children
    if transforms is not None:
        algorithms = []
        for transform in _children(transforms):
            if transform.tag != _TRANSFORM:
                raise SignatureError(f"{where}: unexpected element in Transforms")
            algorithms.append(_algorithm(transform, (ENVELOPED_SIGNATURE, C14N, C14N_WITH_COMMENTS), "transform"))
        if algorithms not in (
            [],
            [ENVELOPED_SIGNATURE],
            [ENVELOPED_SIGNATURE, C14N],
            [ENVELOPED_SIGNATURE, C14N_WITH_COMMENTS],
            [C14N],
            [C14N_WITH_COMMENTS],
        ):
            raise SignatureError(f"{where}: unsupported transform sequence")
    digest_method = _algorithm(digest_element, _DIGESTS, "digest method")
    expected_digest = _decode_base64(value_element.text, f"{where}: DigestValue")
    if _children(value_element) or _children(signature_value):
        raise SignatureError(f"{where}: DigestValue and SignatureValue must hold text only")
    signature_bytes = _decode_base64(signature_value.text, f"{where}: SignatureValue")
    certificates = _signer_certificates(key_info, where)
    if any(d.tag == _SIGNATURE for d in element.iter(tag=etree.Element)):
        raise SignatureError(f"{where}: a signature is nested inside credential {reference_id!r}")
    # A bare-name reference selects the subtree without comments; the
    # enveloped transform has nothing to remove since the signature lies
    # outside the credential (checked above).
    digest = hashes.Hash(_DIGESTS[digest_method]())
    digest.update(canonicalize(element, with_comments=False))
    matches = digest.finalize() == expected_digest
    canonical_info = canonicalize(signed_info, with_comments=c14n_method == C14N_WITH_COMMENTS)
    return SignatureCheck(
        signature_id=SIGNATURE_PREFIX + reference_id,
        reference_id=reference_id,
        signature_method=signature_method,
        digest_method=digest_method,
        digest_matches=matches,
        signed_info=canonical_info,
        signature_value=signature_bytes,
        certificates=certificates,
    )


def _signer_certificates(key_info: etree._Element, where: str) -> tuple[x509.Certificate, ...]:
    certificates: list[x509.Certificate] = []
    for child in _children(key_info):
        if child.tag not in _KEY_INFO_CHILDREN:
            raise SignatureError(f"{where}: unexpected {_split(child.tag)[1]!r} in KeyInfo")
        if child.tag != _X509_DATA:
            continue
        for item in _children(child):
            if item.tag not in _X509_DATA_CHILDREN:
                raise SignatureError(f"{where}: unexpected {_split(item.tag)[1]!r} in X509Data")
            if item.tag != _X509_CERTIFICATE:
                continue
            der = _decode_base64(item.text, f"{where}: X509Certificate")
            try:
                certificates.append(x509.load_der_x509_certificate(der))
            except (ValueError, UnsupportedAlgorithm) as e:
                raise SignatureError(f"{where}: malformed X509Certificate ({e})") from None
            if len(certificates) > MAX_SIGNER_CERTIFICATES:
                raise SignatureError(f"{where}: more than {MAX_SIGNER_CERTIFICATES} certificates in KeyInfo")
    if not certificates:
        raise SignatureError(f"{where}: KeyInfo carries no X509Certificate of the signer")
    return tuple(certificates)


# --- signing --------------------------------------------------------------


def _pretty_base64(data: bytes) -> str:
    text = base64.b64encode(data).decode("ascii")
    return "\n".join(text[i : i + 64] for i in range(0, len(text), 64))


def sign(
    root: etree._Element,
    element: etree._Element,
    private_key: rsa.RSAPrivateKey,
    certificates: Sequence[x509.Certificate],
    algorithm: str = "sha256",
) -> etree._Element:
    """
    Sign C{element} in place, in the layout the GENI tools write.

    A C{Signature} with C{xml:id} C{Sig_<id>} is appended to the root's
    C{signatures} element (created if missing), referencing C{#<id>} with
    the enveloped-signature transform, inclusive C14N 1.0, and carrying
    C{certificates} (signer first) in C{KeyInfo/X509Data}.

    The document must not change afterwards except by appending further
    signatures: the canonical forms depend on the element's ancestors.

    @param algorithm: C{"sha256"} (RSA-SHA256 and a SHA-256 digest) or
        C{"sha1"} (RSA-SHA1 and a SHA-1 digest, as the reference tools sign).
    @return: the new C{Signature} element.
    @raise GeniError: BADARGS for an unknown algorithm, a non-RSA key, an
        element without C{xml:id} or one that is already signed.
    """
    if algorithm not in _ALGORITHMS_BY_NAME:
        raise GeniError(GeniCode.BADARGS, f"unknown signature algorithm {algorithm!r} (use sha256 or sha1)")
    if not isinstance(private_key, rsa.RSAPrivateKey):
        raise GeniError(GeniCode.BADARGS, "credentials are signed with RSA keys only")
    if not certificates:
        raise GeniError(GeniCode.BADARGS, "the signer's certificate is required")
    reference_id = element.get(XML_ID)
    if not reference_id:
        raise GeniError(GeniCode.BADARGS, "the element to sign needs an xml:id")
    if find_signature(root, reference_id) is not None:
        raise GeniError(GeniCode.BADARGS, f"{reference_id!r} is already signed")
    signature_uri, digest_uri = _ALGORITHMS_BY_NAME[algorithm]
    container = find_signatures_element(root)
    if container is None:
        container = etree.SubElement(root, SIGNATURES_TAG)

    def sub(parent: etree._Element, name: str, text: str | None = None, tail: str | None = None, **attrs: str) -> etree._Element:
        child = etree.SubElement(parent, f"{{{DSIG_NS}}}{name}", attrs)
        child.text = text
        child.tail = tail
        return child

    signature = etree.SubElement(container, _SIGNATURE, nsmap={None: DSIG_NS})
    signature.set(XML_ID, SIGNATURE_PREFIX + reference_id)
    signature.text = "\n  "
    signed_info = sub(signature, "SignedInfo", "\n    ", "\n  ")
    sub(signed_info, "CanonicalizationMethod", None, "\n    ", Algorithm=C14N)
    sub(signed_info, "SignatureMethod", None, "\n    ", Algorithm=signature_uri)
    reference = sub(signed_info, "Reference", "\n      ", "\n  ", URI="#" + reference_id)
    transforms = sub(reference, "Transforms", "\n        ", "\n      ")
    sub(transforms, "Transform", None, "\n      ", Algorithm=ENVELOPED_SIGNATURE)
    sub(reference, "DigestMethod", None, "\n      ", Algorithm=digest_uri)
    digest_value = sub(reference, "DigestValue", None, "\n    ")
    signature_value = sub(signature, "SignatureValue", None, "\n  ")
    key_info = sub(signature, "KeyInfo", "\n    ", "\n")
    x509_data = sub(key_info, "X509Data", "\n      ", "\n  ")
    for index, cert in enumerate(certificates):
        last = index == len(certificates) - 1
        text = _pretty_base64(cert.public_bytes(Encoding.DER)) + "\n"
        sub(x509_data, "X509Certificate", text, "\n    " if last else "\n      ")

    digest = hashes.Hash(_DIGESTS[digest_uri]())
    digest.update(canonicalize(element))
    digest_value.text = base64.b64encode(digest.finalize()).decode("ascii")
    value = private_key.sign(canonicalize(signed_info), padding.PKCS1v15(), _SIGNATURES[signature_uri]())
    signature_value.text = _pretty_base64(value)
    return signature


def digest_document(data: bytes) -> bytes:
    """Return the SHA-256 of a document's bytes (the key of verification caches)."""
    return hashlib.sha256(data).digest()
