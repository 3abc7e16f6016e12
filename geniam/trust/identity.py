# -*- test-case-name: tests.trust.test_certs -*-
"""
An identity we act as: a L{GID} and its private key.

Aggregates present one to TLS clients, tools and the Slice Manager present
one as TLS clients, authorities sign credentials with one.
"""

from __future__ import annotations

import os
import re
from typing import Union

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from geniam.errors import GeniCode
from geniam.trust.gid import GID, MAX_PEM_BYTES, TrustError

PrivateKey = Union[
    rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey
]
"""The private key types an L{Identity} may hold."""

_PEM_KEY = re.compile(
    rb"-----BEGIN ((?:RSA |EC |ENCRYPTED )?PRIVATE KEY)-----.*?-----END \1-----", re.DOTALL
)


def load_private_key(data: bytes | str, password: bytes | None = None) -> PrivateKey:
    """
    Load the first private key of a PEM text (which may also hold certificates).

    @raise TrustError: CREDENTIAL_INVALID if there is no usable private key.
    """
    if isinstance(data, str):
        data = data.encode("utf-8", "replace")
    match = _PEM_KEY.search(data)
    if match is None:
        raise TrustError("no PEM private key found", GeniCode.CREDENTIAL_INVALID)
    try:
        key = serialization.load_pem_private_key(match.group(0), password=password)
    except (ValueError, TypeError) as e:
        raise TrustError(f"malformed private key: {e}", GeniCode.CREDENTIAL_INVALID) from None
    if not isinstance(key, PrivateKey.__args__):  # type: ignore[attr-defined]
        raise TrustError(f"unsupported private key type {type(key).__name__}", GeniCode.CREDENTIAL_INVALID)
    return key  # type: ignore[return-value]


def _read(path: str | os.PathLike[str]) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(MAX_PEM_BYTES + 1)
    except OSError as e:
        raise TrustError(f"cannot read {os.fspath(path)!r}: {e}", GeniCode.ERROR) from None


class Identity:
    """
    A L{GID} together with the private key of its certificate.

    @ivar gid: the certificate (and its chain) we present.
    @ivar private_key: the matching private key.
    """

    __slots__ = ("gid", "private_key")

    gid: GID
    private_key: PrivateKey

    def __init__(self, gid: GID, private_key: PrivateKey) -> None:
        """
        @raise TrustError: CREDENTIAL_INVALID if the key does not match the certificate.
        """
        public = private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        if public != gid.public_key_der():
            raise TrustError(
                f"private key does not match {gid.describe()}", GeniCode.CREDENTIAL_INVALID
            )
        object.__setattr__(self, "gid", gid)
        object.__setattr__(self, "private_key", private_key)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Identity is immutable")

    @classmethod
    def from_pem(cls, cert_pem: bytes | str, key_pem: bytes | str, password: bytes | None = None) -> Identity:
        """
        Load an identity from certificate PEM (subject first, then its chain) and key PEM.

        @raise TrustError: CREDENTIAL_INVALID if either is malformed or they do not match.
        """
        return cls(GID.from_pem(cert_pem), load_private_key(key_pem, password))

    @classmethod
    def from_files(
        cls,
        cert_path: str | os.PathLike[str],
        key_path: str | os.PathLike[str] | None = None,
        password: bytes | None = None,
    ) -> Identity:
        """
        Load an identity from a certificate file and a key file.

        C{key_path} may be omitted (or equal C{cert_path}) when one file holds both.

        @raise TrustError: code ERROR if a file cannot be read, CREDENTIAL_INVALID if malformed.
        """
        cert_pem = _read(cert_path)
        key_pem = cert_pem if key_path is None else _read(key_path)
        return cls.from_pem(cert_pem, key_pem, password)

    @property
    def urn(self) -> str | None:
        """The URN of our certificate."""
        return self.gid.urn

    def certificate_pem(self, with_chain: bool = True) -> bytes:
        """Return our certificate PEM, followed by its chain if C{with_chain}."""
        return self.gid.to_pem(with_chain=with_chain)

    def private_key_pem(self) -> bytes:
        """Return the private key as unencrypted PKCS#8 PEM."""
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def __repr__(self) -> str:
        return f"<Identity {self.gid.urn or self.gid.subject}>"
