# -*- test-case-name: tests.trust.test_gid -*-
"""
Reading the fields of X.509 certificates that GENI trust decisions use:
the subjectAltName URN, UUID and e-mail address, basic constraints, key
identifiers, fingerprints, and a readable name for reasons.
"""

from __future__ import annotations

import hashlib

from cryptography import x509
from cryptography.hazmat.primitives import serialization


def describe(cert: x509.Certificate) -> str:
    """Name a certificate in a reason: its URN if it has one, else its subject."""
    urn = san_values(cert)[0]
    subject = cert.subject.rfc4514_string() or "(empty subject)"
    if urn is not None:
        return f"certificate {urn} ({subject})"
    return f"certificate {subject}"


def san_values(cert: x509.Certificate) -> tuple[str | None, str | None, str | None]:
    """
    Return (URN, UUID, e-mail) from a certificate's subjectAltName.

    @raise ValueError: if the extension is malformed.
    """
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None, None, None
    urn = uuid = email = None
    for uri in san.get_values_for_type(x509.UniformResourceIdentifier):
        lowered = uri.lower()
        if lowered.startswith("urn:publicid:") and urn is None:
            urn = uri
        elif lowered.startswith("urn:uuid:") and uuid is None:
            uuid = uri[len("urn:uuid:"):]
    emails = san.get_values_for_type(x509.RFC822Name)
    if emails:
        email = emails[0]
    return urn, uuid, email


def basic_constraints(cert: x509.Certificate) -> x509.BasicConstraints | None:
    """The basicConstraints extension's value, or C{None} if absent."""
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return None


def subject_key_id(cert: x509.Certificate) -> bytes:
    """The subjectKeyIdentifier, or the RFC 5280 method 1 key identifier when absent."""
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        return x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest  # type: ignore[arg-type]


def authority_key_id(cert: x509.Certificate) -> bytes | None:
    """The key identifier of the authorityKeyIdentifier extension, or C{None}."""
    try:
        aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    except x509.ExtensionNotFound:
        return None
    return aki.key_identifier


def fingerprint(cert: x509.Certificate) -> bytes:
    """SHA-256 of the certificate's DER encoding."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).digest()


def public_key_der(cert: x509.Certificate) -> bytes:
    """The certificate's public key as DER SubjectPublicKeyInfo."""
    return cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def check_parseable(cert: x509.Certificate) -> None:
    """Touch the lazily parsed parts so that malformed ones fail now."""
    cert.extensions  # noqa: B018
    cert.subject.rfc4514_string()
    cert.issuer.rfc4514_string()
    cert.not_valid_before_utc
    cert.not_valid_after_utc
    cert.public_key()
    san_values(cert)
