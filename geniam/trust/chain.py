# -*- test-case-name: tests.trust.test_verifier -*-
"""
The checks of one credential chain at a time C{t}, level by level: the
XML-DSig signature and its signer's path to the trust roots, the expiry,
the owner's and target's paths, each delegation against its parent, and
the root level's issuer (see L{geniam.trust.verifier} for the rules).
L{check_chain} returns every check it ran, each with its GENI code, and the
verified chain when all passed.
"""

from __future__ import annotations

from collections.abc import Iterable

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from geniam.errors import GeniCode
from geniam.timeutil import format_time, from_datetime
from geniam.trust.credential import PRIVILEGE_TYPE, Credential, SignedCredential, describe_privileges
from geniam.trust.gid import GID, Deadline, TrustError, TrustRoots
from geniam.trust.verdicts import Check, VerifiedCredential
from geniam.trust.verdicts import failed as _fail
from geniam.trust.verdicts import passed as _pass
from geniam.trust.xmldsig import DIGEST_SHA1, RSA_SHA1, SignatureError
from geniam.urn import same_urn

__all__ = ["check_chain", "path_end", "same_identity"]


def _algorithm_name(signature_method: str, digest_method: str) -> str:
    signing = "RSA-SHA1" if signature_method == RSA_SHA1 else "RSA-SHA256"
    digest = "SHA-1" if digest_method == DIGEST_SHA1 else "SHA-256"
    return f"{signing}, {digest} digest"


def path_end(path: Iterable[x509.Certificate]) -> float:
    """When a certificate path stops being valid: the earliest end of its certificates."""
    return min(from_datetime(c.not_valid_after_utc) for c in path)


def same_identity(a: GID, b: GID) -> bool:
    """Same public key and same URN (authority and name compared case-insensitively)."""
    return a.public_key_matches(b) and a.urn is not None and b.urn is not None and same_urn(a.urn, b.urn)


def _trust(
    roots: TrustRoots, name: str, gid: GID, at: float, checks: list[Check], deadline: Deadline | None
) -> float | None:
    """Check that C{gid} chains to the roots at C{at}; return when the path ends."""
    try:
        path = roots.verify(gid, at, deadline=deadline)
    except TrustError as e:
        checks.append(_fail(name, e.output, e.code))
        return None
    root = path[-1]
    checks.append(_pass(name, f"{gid.describe()} chains to trusted root {root.subject.rfc4514_string()}"))
    return path_end(path)

def check_chain(
    roots: TrustRoots, signed: SignedCredential, at: float, deadline: Deadline | None = None
) -> tuple[list[Check], VerifiedCredential | None]:
    """
    Run every chain-level check; return them and, if all passed, the verified chain.

    A level whose signature fails, or whose signer is unreadable or not
    trusted, ends the checks: what it carries is not looked at further.
    """
    checks: list[Check] = []
    levels = signed.levels()
    ends: list[float] = []
    signers: list[GID] = []
    for level in levels:
        if deadline is not None:
            deadline.check()
        tag = level.xml_id
        trusted = _signature_check(roots, level, at, checks, deadline)
        if trusted is None:
            return checks, None
        signers.append(trusted[0])
        ends.append(trusted[1])
        if level.expires > at:
            checks.append(_pass(f"expiry {tag}", f"expires {format_time(level.expires)}"))
        else:
            checks.append(
                _fail(
                    f"expiry {tag}",
                    f"expired at {format_time(level.expires)} (now {format_time(at)})",
                    GeniCode.CREDENTIAL_EXPIRED,
                )
            )
        ends.append(level.expires)
        for what, gid in (("owner", level.owner_gid), ("target", level.target_gid)):
            if gid is not None:
                end = _trust(roots, f"{what} certificate {tag}", gid, at, checks, deadline)
                if end is not None:
                    ends.append(end)
    for child, parent, signer in zip(levels, levels[1:], signers):
        checks.append(_delegation_check(child, parent, signer))
    root = levels[-1]
    if root.type == PRIVILEGE_TYPE:
        checks.append(_issuer_check(root, signers[-1]))
    top = signed.credential
    if not all(c.passed for c in checks) or top.owner_gid is None or top.target_gid is None:
        return checks, None
    verified = VerifiedCredential(
        signed=signed,
        owner=top.owner_gid,
        target=top.target_gid,
        expires=min(level.expires for level in levels),
        valid_until=min(ends),
        privileges=top.privilege_names,
    )
    return checks, verified

def _signature_check(
    roots: TrustRoots, level: Credential, at: float, checks: list[Check], deadline: Deadline | None
) -> tuple[GID, float] | None:
    """
    Check a level's signature, then its signer's certificate chain.

    @return: the trusted signer and when its path ends, or C{None} (the
        failure appended to C{checks}) if either check failed.
    """
    tag = level.xml_id
    signature = level.signature
    try:
        signature.verify()
    except SignatureError as e:
        checks.append(_fail(f"signature {tag}", e.output, GeniCode.CREDENTIAL_INVALID))
        return None
    try:
        signer = GID.from_certificate(signature.signer, signature.certificates[1:])
    except TrustError as e:
        checks.append(_fail(f"signer {tag}", e.output, GeniCode.CREDENTIAL_INVALID))
        return None
    checks.append(
        _pass(
            f"signature {tag}",
            f"{_algorithm_name(signature.signature_method, signature.digest_method)}, by {signer.subject}",
        )
    )
    end = _trust(roots, f"signer {tag}", signer, at, checks, deadline)
    return None if end is None else (signer, end)

def _delegation_check(child: Credential, parent: Credential, signer: GID | None) -> Check:
    name = f"delegation {child.xml_id} from {parent.xml_id}"
    if parent.type != PRIVILEGE_TYPE or child.type != PRIVILEGE_TYPE:
        return _fail(name, "only privilege credentials can be delegated", GeniCode.CREDENTIAL_INVALID)
    assert child.target_gid is not None and parent.target_gid is not None
    if child.target_gid.fingerprint != parent.target_gid.fingerprint:
        return _fail(
            name,
            f"target changed from {parent.target_urn} to {child.target_urn}",
            GeniCode.CREDENTIAL_INVALID,
        )
    wildcard = parent.privilege("*")
    for privilege in child.privileges:
        held = parent.privilege(privilege.name) or wildcard
        if held is None:
            return _fail(
                name,
                f"privilege {privilege.name!r} is not held by the parent ({describe_privileges(parent.privileges)})",
                GeniCode.CREDENTIAL_INVALID,
            )
        if not held.can_delegate:
            return _fail(
                name,
                f"the parent's privilege {held.name!r} is not delegatable",
                GeniCode.CREDENTIAL_INVALID,
            )
    if child.expires > parent.expires:
        return _fail(
            name,
            f"expires {format_time(child.expires)}, after its parent ({format_time(parent.expires)})",
            GeniCode.CREDENTIAL_INVALID,
        )
    assert parent.owner_gid is not None
    if signer is None or not same_identity(signer, parent.owner_gid):
        who = signer.urn or signer.subject if signer is not None else "an unreadable certificate"
        return _fail(
            name,
            f"signed by {who}, who is not the parent's owner {parent.owner_urn}",
            GeniCode.CREDENTIAL_SIGNER_UNTRUSTED,
        )
    return _pass(
        name,
        f"{parent.owner_urn} delegated {describe_privileges(child.privileges)} "
        f"(a delegatable subset) to {child.owner_urn}, same target, not outliving the parent",
    )

def _issuer_check(root: Credential, signer: GID | None) -> Check:
    name = f"issuer {root.xml_id}"
    target = root.target_gid
    assert target is not None
    if signer is None:
        return _fail(name, "the signer's certificate is unreadable", GeniCode.CREDENTIAL_INVALID)
    if not signer.is_authority:
        return _fail(
            name,
            f"signed by {signer.urn or signer.subject}, which is not an authority (CA:FALSE)",
            GeniCode.CREDENTIAL_SIGNER_UNTRUSTED,
        )
    signer_urn = signer.parsed_urn
    target_urn = target.parsed_urn
    if (
        signer_urn is not None
        and target_urn is not None
        and signer_urn.type == "authority"
        and target_urn.is_within(signer_urn.authority)
    ):
        return _pass(name, f"signed by {signer.urn}, whose namespace covers {target.urn}")
    try:
        target.certificate.verify_directly_issued_by(signer.certificate)
    except (ValueError, TypeError, InvalidSignature):
        return _fail(
            name,
            f"signed by {signer.urn or signer.subject}, which neither issued the target "
            f"{target.urn} nor has namespace authority over it",
            GeniCode.CREDENTIAL_SIGNER_UNTRUSTED,
        )
    return _pass(name, f"signed by {signer.urn or signer.subject}, which issued the target {target.urn}")
