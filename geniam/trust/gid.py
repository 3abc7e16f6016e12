# -*- test-case-name: tests.trust.test_gid -*-
"""
GENI identity certificates (GIDs) and the roots they must chain to.

A L{GID} is an X.509 v3 certificate whose subjectAltName names a GENI URN
(C{URI:urn:publicid:IDN+...}), usually a UUID (C{URI:urn:uuid:...}) and
sometimes an e-mail address, together with the issuer certificates that
came with it in the same PEM (omni sends the user certificate followed by
its authority's).

L{TrustRoots} is the set of self-signed authority certificates an
aggregate trusts. L{TrustRoots.verify} builds a path from a GID to one of
them and applies the GENI rules: every signature verifies, every
certificate is inside its validity window, every issuer is a CA, and every
issuer with an authority URN has namespace authority over what it signed.
"""

from __future__ import annotations

import os
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from geniam.errors import GeniCode, GeniError
from geniam.timeutil import from_datetime
from geniam.trust.paths import (
    MAX_ISSUER_CHECKS,
    MAX_PATH_LENGTH,
    MAX_POOL,
    MAX_SAME_SUBJECT,
    Deadline,
    PathRejected,
    PathSearch,
    check_validity,
    screen_pool,
)
from geniam.trust.x509fields import basic_constraints as _basic_constraints
from geniam.trust.x509fields import check_parseable as _check_parseable
from geniam.trust.x509fields import describe as _describe
from geniam.trust.x509fields import fingerprint as _fingerprint
from geniam.trust.x509fields import public_key_der as _public_key_der
from geniam.trust.x509fields import san_values as _san_values
from geniam.trust.x509fields import subject_key_id as _subject_key_id
from geniam.urn import URN, parse_urn

__all__ = [
    "CACHE_SIZE",
    "GID",
    "MAX_CERTIFICATES",
    "MAX_ISSUER_CHECKS",
    "MAX_PATH_LENGTH",
    "MAX_PEM_BYTES",
    "MAX_POOL",
    "MAX_SAME_SUBJECT",
    "ROOT_SUFFIXES",
    "Deadline",
    "TrustError",
    "TrustRoots",
]

MAX_PEM_BYTES = 256 * 1024
"""The largest PEM text L{GID.from_pem} accepts."""

MAX_CERTIFICATES = 16
"""The most certificates one PEM text (subject plus chain) may hold."""

CACHE_SIZE = 2048
"""How many verified paths a L{TrustRoots} remembers."""

ROOT_SUFFIXES = (".pem", ".crt", ".cert")
"""The file name endings L{TrustRoots.from_directory} reads."""

_PEM_CERT = re.compile(
    rb"-----BEGIN (?:X509 |TRUSTED )?CERTIFICATE-----.*?-----END (?:X509 |TRUSTED )?CERTIFICATE-----",
    re.DOTALL,
)


class TrustError(GeniError):
    """
    An identity or signature that cannot be trusted.

    The default code is C{CREDENTIAL_SIGNER_UNTRUSTED}; expired certificates
    use C{CREDENTIAL_EXPIRED} and malformed ones C{CREDENTIAL_INVALID}.
    C{output} is a reason fit to show the caller.

    Both C{TrustError(reason, code)} and the L{GeniError} order
    C{TrustError(code, reason)} are accepted.
    """

    def __init__(
        self,
        reason: str | GeniCode,
        code: GeniCode | str = GeniCode.CREDENTIAL_SIGNER_UNTRUSTED,
        value: Any = None,
    ) -> None:
        if isinstance(reason, int) and isinstance(code, str):
            reason, code = code, reason
        if not isinstance(reason, str) or isinstance(code, str):
            raise TypeError("TrustError takes a reason string and a GeniCode")
        super().__init__(code, reason, value)

    def __repr__(self) -> str:
        return f"TrustError({self.code.name}, {self.output!r})"


def _load_certificates(data: bytes | str) -> list[x509.Certificate]:
    """
    Load every certificate of a PEM text.

    Lines may be indented (PEM embedded in XML often is).

    @raise TrustError: CREDENTIAL_INVALID if there is none or one is malformed.
    """
    if isinstance(data, str):
        data = data.encode("utf-8", "replace")
    if not isinstance(data, bytes):
        raise TrustError(f"expected PEM text, got {type(data).__name__}", GeniCode.CREDENTIAL_INVALID)
    if len(data) > MAX_PEM_BYTES:
        raise TrustError("certificate PEM too large", GeniCode.CREDENTIAL_INVALID)
    blocks = _PEM_CERT.findall(data)
    if not blocks:
        raise TrustError("no PEM certificate found", GeniCode.CREDENTIAL_INVALID)
    if len(blocks) > MAX_CERTIFICATES:
        raise TrustError(
            f"too many certificates in one PEM ({len(blocks)} > {MAX_CERTIFICATES})",
            GeniCode.CREDENTIAL_INVALID,
        )
    certs = []
    for index, block in enumerate(blocks):
        lines = [line.strip() for line in block.splitlines()]
        text = b"\n".join(line for line in lines if line) + b"\n"
        try:
            cert = x509.load_pem_x509_certificate(text)
            _check_parseable(cert)
        except (ValueError, TypeError, UnsupportedAlgorithm) as e:
            raise TrustError(
                f"malformed certificate #{index + 1} in PEM: {e}", GeniCode.CREDENTIAL_INVALID
            ) from None
        certs.append(cert)
    return certs


class GID:
    """
    An immutable GENI identity certificate plus the issuers that came with it.

    @ivar certificate: the subject's certificate.
    @ivar chain: issuer certificates that came with it, nearest first; may be empty.
    @ivar urn: the C{urn:publicid:IDN+...} URI of the subjectAltName, or C{None}.
    @ivar uuid: the UUID of the C{urn:uuid:...} URI (without that prefix), or C{None}.
    @ivar email: the first e-mail address of the subjectAltName, or C{None}.
    @ivar is_authority: whether basicConstraints says C{CA:TRUE}.
    @ivar subject_key_id: the subjectKeyIdentifier, or the RFC 5280 method 1
        key identifier (SHA-1 of the public key bits) when the extension is absent.
    @ivar fingerprint: SHA-256 of the certificate's DER encoding.
    """

    __slots__ = (
        "certificate",
        "chain",
        "urn",
        "uuid",
        "email",
        "is_authority",
        "subject_key_id",
        "fingerprint",
    )

    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    urn: str | None
    uuid: str | None
    email: str | None
    is_authority: bool
    subject_key_id: bytes
    fingerprint: bytes

    def __init__(self, certificate: x509.Certificate, chain: Iterable[x509.Certificate] = ()) -> None:
        """
        Wrap a certificate; prefer L{from_pem} or L{from_certificate}.

        @raise TrustError: CREDENTIAL_INVALID if the certificate is malformed.
        """
        chain = tuple(chain)
        try:
            for cert in (certificate, *chain):
                if not isinstance(cert, x509.Certificate):
                    raise TypeError(f"expected an x509.Certificate, got {type(cert).__name__}")
                _check_parseable(cert)
            urn, uuid, email = _san_values(certificate)
            constraints = _basic_constraints(certificate)
            ski = _subject_key_id(certificate)
        except (ValueError, UnsupportedAlgorithm) as e:
            raise TrustError(f"malformed certificate: {e}", GeniCode.CREDENTIAL_INVALID) from None
        setter = object.__setattr__
        setter(self, "certificate", certificate)
        setter(self, "chain", chain)
        setter(self, "urn", urn)
        setter(self, "uuid", uuid)
        setter(self, "email", email)
        setter(self, "is_authority", bool(constraints is not None and constraints.ca))
        setter(self, "subject_key_id", ski)
        setter(self, "fingerprint", _fingerprint(certificate))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("GID is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("GID is immutable")

    @classmethod
    def from_pem(cls, data: bytes | str) -> GID:
        """
        Load a GID from PEM text: the first certificate is the subject, the rest its chain.

        @raise TrustError: CREDENTIAL_INVALID if there is no certificate or one is malformed.
        """
        certs = _load_certificates(data)
        return cls(certs[0], certs[1:])

    @classmethod
    def from_der(cls, data: bytes, chain: Iterable[x509.Certificate] = ()) -> GID:
        """
        Load a GID from one DER certificate and an optional chain.

        @raise TrustError: CREDENTIAL_INVALID if the DER is malformed.
        """
        try:
            cert = x509.load_der_x509_certificate(bytes(data))
        except (ValueError, TypeError) as e:
            raise TrustError(f"malformed DER certificate: {e}", GeniCode.CREDENTIAL_INVALID) from None
        return cls(cert, chain)

    @classmethod
    def from_certificate(cls, cert: x509.Certificate, chain: Iterable[x509.Certificate] = ()) -> GID:
        """Wrap a parsed certificate and its chain."""
        return cls(cert, chain)

    def to_pem(self, with_chain: bool = True) -> bytes:
        """Return the certificate as PEM, followed by the chain if C{with_chain}."""
        certs = (self.certificate, *self.chain) if with_chain else (self.certificate,)
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)

    def to_der(self) -> bytes:
        """Return the subject certificate's DER encoding."""
        return self.certificate.public_bytes(serialization.Encoding.DER)

    def public_key_matches(self, other: GID) -> bool:
        """True if C{other} certifies the same public key as this GID."""
        if self.fingerprint == other.fingerprint:
            return True
        return _public_key_der(self.certificate) == _public_key_der(other.certificate)

    def public_key_der(self) -> bytes:
        """Return the subject's public key as DER SubjectPublicKeyInfo."""
        return _public_key_der(self.certificate)

    @property
    def parsed_urn(self) -> URN | None:
        """The subject URN parsed with L{geniam.urn.parse_urn}, or C{None} if absent or invalid."""
        if self.urn is None:
            return None
        try:
            return parse_urn(self.urn)
        except GeniError:
            return None

    @property
    def subject_key_id_hex(self) -> str:
        """L{subject_key_id} as lower-case hexadecimal (the ABAC key id form)."""
        return self.subject_key_id.hex()

    @property
    def subject(self) -> str:
        """The subject distinguished name (RFC 4514)."""
        return self.certificate.subject.rfc4514_string()

    @property
    def not_before(self) -> float:
        """Start of the validity window, POSIX seconds."""
        return from_datetime(self.certificate.not_valid_before_utc)

    @property
    def not_after(self) -> float:
        """End of the validity window, POSIX seconds."""
        return from_datetime(self.certificate.not_valid_after_utc)

    def describe(self) -> str:
        """A short human-readable name: the URN if present, else the subject."""
        return _describe(self.certificate)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, GID):
            return NotImplemented
        return self.fingerprint == other.fingerprint and [_fingerprint(c) for c in self.chain] == [
            _fingerprint(c) for c in other.chain
        ]

    def __hash__(self) -> int:
        return hash(self.fingerprint)

    def __repr__(self) -> str:
        return f"<GID {self.urn or self.subject} chain={len(self.chain)}>"


def _read_roots(path: str) -> list[x509.Certificate]:
    """
    Read the root certificates of one PEM file, however many it holds;
    a file with none (a private key, say) gives C{[]}.

    @raise TrustError: ERROR if it cannot be read or is over
        C{MAX_PEM_BYTES}; CREDENTIAL_INVALID if a certificate is malformed.
    """
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_PEM_BYTES + 1)
    except OSError as e:
        raise TrustError(f"cannot read trust root {path!r}: {e}", GeniCode.ERROR) from None
    if len(data) > MAX_PEM_BYTES:
        raise TrustError(f"trust root file {path!r} is over {MAX_PEM_BYTES} bytes", GeniCode.ERROR)
    try:
        return [cert for block in _PEM_CERT.findall(data) for cert in _load_certificates(block)]
    except TrustError as e:
        raise TrustError(f"trust root {path!r}: {e.output}", GeniCode.CREDENTIAL_INVALID) from None


class TrustRoots:
    """
    The certificates an aggregate trusts as roots of every identity path.

    Immutable; verified paths are cached per leaf and candidate chain
    (validity windows are checked again on every call).
    """

    def __init__(self, certificates: Iterable[x509.Certificate]) -> None:
        """
        @raise TrustError: if C{certificates} is empty or holds a malformed certificate.
        """
        unique: dict[bytes, x509.Certificate] = {}
        for cert in certificates:
            if not isinstance(cert, x509.Certificate):
                raise TypeError(f"expected an x509.Certificate, got {type(cert).__name__}")
            try:
                _check_parseable(cert)
            except (ValueError, UnsupportedAlgorithm) as e:
                raise TrustError(f"malformed trust root: {e}", GeniCode.CREDENTIAL_INVALID) from None
            unique.setdefault(_fingerprint(cert), cert)
        if not unique:
            raise TrustError("no trust root certificates given", GeniCode.ERROR)
        self._by_fingerprint = unique
        self.certificates: tuple[x509.Certificate, ...] = tuple(unique.values())
        self._by_subject: dict[bytes, list[x509.Certificate]] = {}
        for cert in self.certificates:
            self._by_subject.setdefault(cert.subject.public_bytes(), []).append(cert)
        self._cache: OrderedDict[tuple[bytes, ...], tuple[x509.Certificate, ...]] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def from_certificates(cls, certs: Iterable[x509.Certificate | GID]) -> TrustRoots:
        """Trust these certificates (L{GID}s contribute their subject certificate)."""
        return cls(c.certificate if isinstance(c, GID) else c for c in certs)

    @classmethod
    def from_directory(cls, path: str | os.PathLike[str]) -> TrustRoots:
        """
        Trust every certificate in the C{*.pem}, C{*.crt} and C{*.cert} files of a directory.

        A file may hold several certificates; files that hold none (a
        private key, say) are skipped.

        @raise TrustError: code ERROR if the directory cannot be read or
            yields no certificate; CREDENTIAL_INVALID if a certificate is malformed.
        """
        try:
            names = sorted(os.listdir(path))
        except OSError as e:
            raise TrustError(f"cannot read trust roots directory {os.fspath(path)!r}: {e}", GeniCode.ERROR) from None
        certs: list[x509.Certificate] = []
        for name in names:
            if not name.lower().endswith(ROOT_SUFFIXES):
                continue
            full = os.path.join(path, name)
            if os.path.isfile(full):
                certs.extend(_read_roots(full))
        if not certs:
            raise TrustError(f"no certificates in trust roots directory {os.fspath(path)!r}", GeniCode.ERROR)
        return cls(certs)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> TrustRoots:
        """
        Trust every certificate of one PEM file (one root or several, concatenated).

        @raise TrustError: code ERROR if the file cannot be read or holds no
            certificate; CREDENTIAL_INVALID if a certificate is malformed.
        """
        certs = _read_roots(os.fspath(path))
        if not certs:
            raise TrustError(f"no certificates in trust roots file {os.fspath(path)!r}", GeniCode.ERROR)
        return cls(certs)

    @classmethod
    def from_path(cls, path: str | os.PathLike[str]) -> TrustRoots:
        """
        Trust the certificates of a PEM file (L{from_file}) or of a
        directory's PEM files (L{from_directory}), whichever C{path} is.

        @raise TrustError: as those do.
        """
        return cls.from_directory(path) if os.path.isdir(path) else cls.from_file(path)

    def __len__(self) -> int:
        return len(self.certificates)

    def __contains__(self, item: object) -> bool:
        if isinstance(item, GID):
            item = item.certificate
        if not isinstance(item, x509.Certificate):
            return False
        return _fingerprint(item) in self._by_fingerprint

    def __repr__(self) -> str:
        return f"<TrustRoots {len(self.certificates)} root(s)>"

    def verify(
        self,
        gid: GID,
        at: float,
        intermediates: Sequence[x509.Certificate] = (),
        deadline: Deadline | None = None,
    ) -> tuple[x509.Certificate, ...]:
        """
        Build and check a path from C{gid} to one of these roots, with bounded work.

        Issuers are looked for in C{gid.chain}, C{intermediates} and the roots.
        Every signature must verify (RSA PKCS#1 v1.5 or PSS with the
        certificate's own hash, SHA-1 included; ECDSA; Ed25519), every
        certificate must be valid at C{at}, every issuer must be a CA whose
        path length allows the path, and every issuer with an authority URN
        must have namespace authority over its subject's URN.

        The chain is screened first (L{geniam.trust.paths.screen_pool}: no
        repeated issuer, at most L{MAX_SAME_SUBJECT} certificates of one
        name, at most L{MAX_POOL} in all) and the search tries at most
        L{MAX_ISSUER_CHECKS} issuers for paths of at most L{MAX_PATH_LENGTH}.

        @param at: the time to check validity windows against, POSIX seconds.
        @param deadline: checked before every issuer; abandoning it stops the search.
        @return: the path, leaf first, root last.
        @raise TrustError: naming the failing certificate and check
            (CREDENTIAL_EXPIRED for an expired certificate, CREDENTIAL_INVALID for
            one not yet valid, malformed or for a refused chain,
            CREDENTIAL_SIGNER_UNTRUSTED otherwise).
        @raise geniam.trust.paths.Abandoned: if C{deadline} was abandoned.
        """
        if not isinstance(gid, GID):
            raise TypeError(f"expected a GID, got {type(gid).__name__}")
        try:
            pool = screen_pool(gid.certificate, (*gid.chain, *intermediates), self._by_fingerprint)
        except PathRejected as e:
            raise TrustError(f"untrusted {gid.describe()}: {e.reason}", e.code) from None
        key = (gid.fingerprint, *sorted(_fingerprint(c) for c in pool))
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
        if cached is not None:
            try:
                for cert in cached:
                    check_validity(cert, at)
                return cached
            except PathRejected:
                pass
        search = PathSearch(self._by_subject, self._by_fingerprint, pool, at, deadline)
        try:
            path = search.build(gid.certificate)
        except PathRejected as e:
            raise TrustError(e.reason, e.code) from None
        with self._lock:
            self._cache[key] = path
            self._cache.move_to_end(key)
            while len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        return path
