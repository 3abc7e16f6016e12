"""
Adversarial certificate chains and the credentials that carry them, made
fresh for each test run (nothing hostile is committed as data).

The flood: N self-issued CA certificates that share one subject name and
one key, so that each appears to have signed every other (and the leaf
they come with). A path search that tries every issuer has N! paths to
walk; the tests and C{bench/bench_hostile_chains.py} check that it is
refused at once instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from cryptography import x509

from geniam.trust.certs import generate_key, issue_certificate
from geniam.trust.gid import GID
from geniam.trust.identity import Identity
from geniam.trust.mint import delegate_credential

HOSTILE_AUTHORITY = "urn:publicid:IDN+evil.example+authority+ca"
"""The URN every flood certificate carries (an authority, so namespace checks pass)."""

HOSTILE_USER = "urn:publicid:IDN+evil.example+user+mallory"
"""The URN of the leaf the flood appears to have issued."""


@lru_cache(maxsize=None)
def _flood_key() -> object:
    return generate_key()


@lru_cache(maxsize=None)
def _leaf_key() -> object:
    return generate_key()


@dataclass(frozen=True)
class Flood:
    """
    A leaf and the self-issued CA certificates that appear to have issued it.

    @ivar leaf: the leaf's identity; its chain is the flood.
    @ivar certificates: the flood, N certificates with one name and one key.
    """

    leaf: Identity
    certificates: tuple[x509.Certificate, ...]

    @property
    def gid(self) -> GID:
        """The leaf with the whole flood as its chain."""
        return self.leaf.gid


def flood(count: int, now: float) -> Flood:
    """
    Make a leaf (C{HOSTILE_USER}) and C{count} self-issued CA certificates
    named C{HOSTILE_AUTHORITY}, all with one key, valid around C{now}.
    """
    key = _flood_key()
    authorities = tuple(
        issue_certificate(key, HOSTILE_AUTHORITY, now=now, is_authority=True) for _ in range(count)  # type: ignore[arg-type]
    )
    signer = Identity(GID(authorities[0]), key)  # type: ignore[arg-type]
    leaf_key = _leaf_key()
    leaf = issue_certificate(leaf_key, HOSTILE_USER, now=now, issuer=signer)  # type: ignore[arg-type]
    return Flood(Identity(GID(leaf, authorities), leaf_key), authorities)  # type: ignore[arg-type]


def owner_flood_credential(parent: str, delegator: Identity, count: int, now: float) -> str:
    """
    Delegate C{parent} (owned by C{delegator}) to a flooded owner: the new
    level is validly signed, its C{owner_gid} holds the leaf and C{count}
    flood certificates.
    """
    return delegate_credential(parent, delegator, flood(count, now).gid)


def _replace_first(document: str, tag: str, text: str) -> str:
    start = document.index(f"<{tag}>") + len(tag) + 2
    end = document.index(f"</{tag}>", start)
    return document[:start] + text + document[end:]


def tampered_owner_credential(credential: str, count: int, now: float) -> str:
    """
    Replace the outermost owner (C{owner_gid} and C{owner_urn}) of
    C{credential} by a flooded one without signing again: the level's
    signature no longer verifies.
    """
    pem = flood(count, now).gid.to_pem().decode("ascii")
    return _replace_first(_replace_first(credential, "owner_gid", pem), "owner_urn", HOSTILE_USER)


def keyinfo_flood_credential(parent: str, delegator: Identity, levels: int, count: int, now: float) -> str:
    """
    Delegate C{parent} C{levels} times: first to the flood's leaf, then
    from it to itself, every new level signed by the leaf with the leaf
    and C{count} flood certificates in its KeyInfo (at most 7: a KeyInfo
    holds 8 certificates). The owners name the bare leaf, so only the
    KeyInfo route carries the flood.
    """
    hostile = flood(count, now)
    bare = GID(hostile.leaf.gid.certificate)
    document = delegate_credential(parent, delegator, bare)
    for _ in range(levels - 1):
        document = delegate_credential(document, hostile.leaf, bare, enforce=False)
    return document
