# -*- test-case-name: tests.trust.test_certs -*-
"""
Minting GENI certificates for tests, demonstrations and small deployments.

The certificates follow the GENI v3 rules as the reference tools write
them: the URN and a UUID (and optionally an e-mail address) in the
subjectAltName, C{CA:TRUE} only for authorities, RSA 2048 keys and
SHA-256 signatures. Authorities are self-signed roots; issued identities
carry their issuer's certificates as their chain.
"""

from __future__ import annotations

import ipaddress
import uuid as uuid_module
from collections.abc import Sequence
from datetime import timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed448, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from geniam.errors import GeniCode, GeniError
from geniam.timeutil import to_datetime
from geniam.trust.gid import GID
from geniam.trust.identity import Identity, PrivateKey
from geniam.urn import parse_urn

DEFAULT_AUTHORITY_LIFETIME = 5 * 365 * 24 * 3600
"""Default lifetime of an authority certificate: five years, like C{gen-certs}."""

DEFAULT_LIFETIME = 365 * 24 * 3600
"""Default lifetime of an issued certificate: one year."""

CLOCK_SKEW = 300
"""Seconds by which a new certificate's validity starts before C{now}, for peers whose clocks lag."""

_MAX_COMMON_NAME = 64


def generate_key(key_size: int = 2048) -> rsa.RSAPrivateKey:
    """Generate an RSA private key (public exponent 65537)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=key_size)


def common_name_for(urn: str) -> str:
    """
    Return the readable subject CN the GENI tools derive from a URN.

    C{urn:publicid:IDN+geni:gpo:gcf+user+alice} gives C{geni//gpo//gcf.user.alice}
    (cut to the 64 characters X.509 allows).
    """
    parsed = parse_urn(urn)
    return f"{parsed.authority.replace(':', '//')}.{parsed.type}.{parsed.name}"[:_MAX_COMMON_NAME]


def issue_certificate(
    subject_key: PrivateKey,
    urn: str,
    *,
    now: float,
    issuer: Identity | None = None,
    is_authority: bool = False,
    lifetime_seconds: float = DEFAULT_LIFETIME,
    email: str | None = None,
    uuid: str | None = None,
    hash_algorithm: hashes.HashAlgorithm | None = None,
    path_length: int | None = None,
    dns_names: Sequence[str] = (),
) -> x509.Certificate:
    """
    Sign a GENI certificate for C{subject_key}.

    No policy is applied: any issuer may sign any URN, which lets tests
    build certificates that verification must refuse.

    @param issuer: the signing identity; C{None} makes a self-signed certificate.
    @param uuid: the UUID for the subjectAltName; a random one if C{None}.
    @param hash_algorithm: the signature hash; SHA-256 if C{None} (ignored for Ed25519/Ed448 issuers).
    @param path_length: the basicConstraints path length of an authority.
    @param dns_names: host names (or IP addresses) to add to the subjectAltName;
        GENI certificates usually name none.
    @raise GeniError: BADARGS if C{urn} is not a valid GENI URN.
    """
    common_name = common_name_for(urn)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    signing_key: PrivateKey = subject_key if issuer is None else issuer.private_key
    issuer_name = subject if issuer is None else issuer.gid.certificate.subject
    public_key = subject_key.public_key()
    names: list[x509.GeneralName] = [
        x509.UniformResourceIdentifier(urn),
        x509.UniformResourceIdentifier(f"urn:uuid:{uuid or uuid_module.uuid4()}"),
    ]
    if email:
        names.append(x509.RFC822Name(email))
    for host in dns_names:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    start = to_datetime(now - CLOCK_SKEW)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(to_datetime(now) + timedelta(seconds=lifetime_seconds))
        .add_extension(
            x509.BasicConstraints(ca=is_authority, path_length=path_length if is_authority else None),
            critical=True,
        )
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=isinstance(public_key, rsa.RSAPublicKey),
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=is_authority,
                crl_sign=is_authority,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier(
                key_identifier=issuer.gid.subject_key_id,
                authority_cert_issuer=None,
                authority_cert_serial_number=None,
            ),
            critical=False,
        )
    else:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(public_key),  # type: ignore[arg-type]
            critical=False,
        )
    algorithm: hashes.HashAlgorithm | None
    if isinstance(signing_key, (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)):
        algorithm = None
    else:
        algorithm = hash_algorithm if hash_algorithm is not None else hashes.SHA256()
    return builder.sign(signing_key, algorithm)  # type: ignore[arg-type]


def make_authority(
    authority: str,
    name: str = "sa",
    lifetime_seconds: float = DEFAULT_AUTHORITY_LIFETIME,
    *,
    now: float,
    key_size: int = 2048,
    private_key: PrivateKey | None = None,
    path_length: int | None = None,
) -> Identity:
    """
    Make a self-signed authority: C{CA:TRUE}, URN C{urn:publicid:IDN+<authority>+authority+<name>}.

    @param authority: the authority string, e.g. C{geni:gpo:gcf}.
    @param now: the start of the validity window, POSIX seconds.
    @param private_key: a key to reuse instead of generating one.
    @raise GeniError: BADARGS if the authority or name is not valid in a URN.
    """
    urn = f"urn:publicid:IDN+{authority}+authority+{name}"
    parse_urn(urn, expected_type="authority")
    key = private_key if private_key is not None else generate_key(key_size)
    cert = issue_certificate(
        key, urn, now=now, is_authority=True, lifetime_seconds=lifetime_seconds, path_length=path_length
    )
    return Identity(GID(cert), key)


def make_identity(
    issuer: Identity,
    urn: str,
    email: str | None = None,
    is_authority: bool = False,
    lifetime_seconds: float = DEFAULT_LIFETIME,
    *,
    now: float,
    key_size: int = 2048,
    private_key: PrivateKey | None = None,
    uuid: str | None = None,
    hash_algorithm: hashes.HashAlgorithm | None = None,
    dns_names: Sequence[str] = (),
) -> Identity:
    """
    Issue an identity (user, slice, aggregate, tool) signed by C{issuer}.

    An aggregate is C{is_authority=True} with a URN like
    C{urn:publicid:IDN+<authority>+authority+am}, as C{gen-certs --am} makes it.
    The new GID's chain is the issuer's certificate followed by the issuer's chain.

    @param now: the start of the validity window, POSIX seconds.
    @param private_key: a key to reuse instead of generating one.
    @param dns_names: host names or IP addresses for the subjectAltName (see L{issue_certificate}).
    @raise GeniError: BADARGS if C{urn} is not a valid GENI URN.
    """
    parse_urn(urn)
    if not isinstance(issuer, Identity):
        raise GeniError(GeniCode.BADARGS, "the issuer must be an Identity")
    key = private_key if private_key is not None else generate_key(key_size)
    cert = issue_certificate(
        key,
        urn,
        now=now,
        issuer=issuer,
        is_authority=is_authority,
        lifetime_seconds=lifetime_seconds,
        email=email,
        uuid=uuid,
        hash_algorithm=hash_algorithm,
        dns_names=dns_names,
    )
    return Identity(GID(cert, (issuer.gid.certificate, *issuer.gid.chain)), key)
