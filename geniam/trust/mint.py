# -*- test-case-name: tests.trust.test_mint -*-
"""
Minting signed GENI credentials: user and slice credentials, delegations
and speaks-for credentials.

The documents have the layout the GENI reference tools write (gcf's
C{signed-credential} with the C{xsi} schema attributes, C{xml:id}
C{ref<n>}, one enveloped XML-DSig signature per level in C{<signatures>},
the signer's certificate chain in C{KeyInfo}), so that both our verifier
and xmlsec1-based tools accept them. Signatures are RSA-SHA256 unless
C{algorithm="sha1"} asks for what the reference tools use.
"""

from __future__ import annotations

import copy
import secrets
from collections.abc import Iterable

from lxml import etree

from geniam.errors import GeniCode, GeniError
from geniam.timeutil import format_time
from geniam.trust.certs import make_identity
from geniam.trust.credential import (
    GENI_SFA,
    PRIVILEGE_TYPE,
    Privilege,
    new_document,
    parse_credential,
    parse_document,
    serialize_document,
)
from geniam.trust.gid import GID
from geniam.trust.identity import Identity
from geniam.trust.speaksfor import issue_speaks_for
from geniam.trust.xmldsig import SIGNATURES_TAG, XML_ID, find_signatures_element, sign
from geniam.urn import parse_urn

__all__ = [
    "DEFAULT_SLICE_PRIVILEGES",
    "DEFAULT_USER_PRIVILEGES",
    "delegate_credential",
    "issue_credential",
    "issue_speaks_for",
    "slice_credential",
    "user_credential",
]

DEFAULT_USER_PRIVILEGES: tuple[tuple[str, bool], ...] = (("refresh", False), ("resolve", False), ("info", False))
"""The privileges of a user credential, as the reference clearinghouse grants them."""

DEFAULT_SLICE_PRIVILEGES: tuple[tuple[str, bool], ...] = (
    ("refresh", True),
    ("embed", True),
    ("bind", True),
    ("control", True),
    ("info", True),
)
"""The privileges of a slice credential, all delegatable, as the reference slice authority grants them."""


def _privileges(privileges: Iterable[tuple[str, bool] | Privilege]) -> list[Privilege]:
    result: list[Privilege] = []
    seen: set[str] = set()
    for item in privileges:
        privilege = item if isinstance(item, Privilege) else Privilege(str(item[0]), bool(item[1]))
        if not privilege.name or privilege.name.lower() in seen:
            raise GeniError(GeniCode.BADARGS, f"empty or repeated privilege {privilege.name!r}")
        seen.add(privilege.name.lower())
        result.append(privilege)
    return result


def _pem(gid: GID) -> str:
    return gid.to_pem(with_chain=True).decode("ascii")


def _fill(
    credential: etree._Element,
    owner: GID,
    target: GID,
    privileges: list[Privilege],
    expires: float,
    serial: str,
    with_urns: bool,
) -> None:
    """Write the body of a privilege credential in the reference element order."""

    def add(name: str, text: str | None) -> etree._Element:
        child = etree.SubElement(credential, name)
        child.text = text
        return child

    add("type", PRIVILEGE_TYPE)
    add("serial", serial)
    add("owner_gid", _pem(owner))
    if with_urns and owner.urn:
        add("owner_urn", owner.urn)
    add("target_gid", _pem(target))
    if with_urns and target.urn:
        add("target_urn", target.urn)
    add("uuid", None)
    add("expires", format_time(expires))
    container = add("privileges", None)
    for privilege in privileges:
        element = etree.SubElement(container, "privilege")
        etree.SubElement(element, "name").text = privilege.name
        etree.SubElement(element, "can_delegate").text = "true" if privilege.can_delegate else "false"


def _signing_chain(identity: Identity) -> list:  # type: ignore[type-arg]
    return [identity.gid.certificate, *identity.gid.chain]


def issue_credential(
    issuer: Identity,
    owner: GID,
    target: GID,
    privileges: Iterable[tuple[str, bool]],
    expires: float,
    serial: str | None = None,
    version: int = 3,
    algorithm: str = "sha256",
) -> str:
    """
    Mint a C{geni_sfa} privilege credential signed by C{issuer}.

    No policy is applied (any issuer may sign anything), so tests can
    build credentials the verifier must refuse; the usual issuer is the
    authority over C{target}'s namespace.

    @param privileges: C{(name, can_delegate)} pairs.
    @param expires: POSIX seconds (written to the second, in UTC).
    @param serial: the issuer's serial string; a random number if C{None}.
    @param version: 3, or 2 to leave out C{owner_urn} and C{target_urn}
        as early SFA credentials did (the XML is otherwise the same).
    @param algorithm: C{sha256} or C{sha1}.
    @return: the XML document.
    @raise GeniError: BADARGS for an unknown version or algorithm, a
        repeated privilege or a non-RSA issuer key.
    """
    if version not in (2, 3):
        raise GeniError(GeniCode.BADARGS, f"geni_sfa version must be 2 or 3, not {version!r}")
    root = new_document()
    credential = etree.SubElement(root, "credential")
    credential.set(XML_ID, "ref0")
    _fill(
        credential,
        owner,
        target,
        _privileges(privileges),
        expires,
        str(secrets.randbits(63)) if serial is None else serial,
        version == 3,
    )
    sign(root, credential, issuer.private_key, _signing_chain(issuer), algorithm)  # type: ignore[arg-type]
    return serialize_document(root)


def user_credential(
    authority: Identity,
    user: GID,
    expires: float,
    privileges: Iterable[tuple[str, bool]] = DEFAULT_USER_PRIVILEGES,
    algorithm: str = "sha256",
) -> str:
    """Mint a user credential (owner and target both C{user}) signed by C{authority}."""
    return issue_credential(authority, user, user, privileges, expires, algorithm=algorithm)


def make_slice(authority: Identity, slice_urn: str, now: float, expires: float) -> Identity:
    """
    Mint the slice's own identity, issued by the slice authority.

    @param now: the start of its validity, POSIX seconds.
    @param expires: the end of its validity, POSIX seconds.
    @raise GeniError: BADARGS if C{slice_urn} is not a slice URN.
    """
    parse_urn(slice_urn, expected_type="slice")
    return make_identity(authority, slice_urn, lifetime_seconds=max(expires - now, 1.0), now=now)


def slice_credential(
    authority: Identity,
    owner: GID,
    slice: GID | str,
    expires: float,
    *,
    now: float | None = None,
    privileges: Iterable[tuple[str, bool]] = DEFAULT_SLICE_PRIVILEGES,
    algorithm: str = "sha256",
) -> str:
    """
    Mint a slice credential for C{owner}, signed by the slice authority.

    @param slice: the slice's GID, or its URN: a slice GID is then minted
        with L{make_slice}, valid from C{now} until C{expires}.
    @param now: required when C{slice} is a URN.
    @raise GeniError: BADARGS if C{slice} is a URN and C{now} is missing,
        or the URN is not a slice URN.
    """
    if isinstance(slice, str):
        if now is None:
            raise GeniError(GeniCode.BADARGS, "minting a slice certificate needs the current time")
        slice = make_slice(authority, slice, now, expires).gid
    return issue_credential(authority, owner, slice, privileges, expires, algorithm=algorithm)


def _fresh_id(levels: int, taken: set[str]) -> str:
    number = levels
    while f"ref{number}" in taken:
        number += 1
    return f"ref{number}"


def delegate_credential(
    parent_xml: str | bytes,
    delegator: Identity,
    new_owner: GID,
    privileges: Iterable[tuple[str, bool]] | None = None,
    expires: float | None = None,
    algorithm: str = "sha256",
    enforce: bool = True,
) -> str:
    """
    Delegate a privilege credential: C{delegator} (the parent's owner) passes it to C{new_owner}.

    The new credential embeds the parent in C{<parent>}, copies the
    parent's signatures and adds the delegator's.

    @param privileges: C{(name, can_delegate)} pairs, a subset of the
        parent's delegatable privileges; C{None} passes on every
        delegatable privilege, not delegatable further.
    @param expires: POSIX seconds, at most the parent's; C{None} keeps the parent's.
    @param enforce: check the delegation rules (owner, subset,
        delegatable, expiry); tests turn this off to build invalid chains.
    @raise GeniError: BADARGS if a rule is broken or the parent is malformed.
    """
    parsed = parse_credential(parent_xml)
    parent = parsed.credential
    if parsed.kind != GENI_SFA or parent.owner_gid is None or parent.target_gid is None:
        raise GeniError(GeniCode.BADARGS, "only privilege credentials can be delegated")
    if privileges is None:
        chosen = [Privilege(p.name, False) for p in parent.privileges if p.can_delegate]
    else:
        chosen = _privileges(privileges)
    if expires is None:
        expires = parent.expires
    if enforce:
        if not delegator.gid.public_key_matches(parent.owner_gid):
            raise GeniError(
                GeniCode.BADARGS,
                f"only the owner ({parent.owner_urn}) can delegate this credential, not {delegator.gid.urn}",
            )
        for privilege in chosen:
            held = parent.privilege(privilege.name)
            if held is None or not held.can_delegate:
                raise GeniError(GeniCode.BADARGS, f"privilege {privilege.name!r} is not delegatable here")
        if not chosen:
            raise GeniError(GeniCode.BADARGS, "nothing to delegate: the credential has no delegatable privilege")
        if expires > parent.expires:
            raise GeniError(GeniCode.BADARGS, "a delegation cannot outlive its parent credential")
    old_root = parse_document(parsed.document)
    old_credential = next(c for c in old_root if c.tag == "credential")
    taken = {element.get(XML_ID) for element in old_root.iter(tag=etree.Element)} - {None}
    root = new_document(old_root)
    credential = etree.SubElement(root, "credential")
    credential.set(XML_ID, _fresh_id(len(parsed.levels()), taken))  # type: ignore[arg-type]
    _fill(credential, new_owner, parent.target_gid, chosen, expires, parent.serial or "0", True)
    etree.SubElement(credential, "parent").append(copy.deepcopy(old_credential))
    old_signatures = find_signatures_element(old_root)
    signatures = etree.SubElement(root, SIGNATURES_TAG)
    if old_signatures is not None:
        for signature in old_signatures:
            if isinstance(signature.tag, str):
                signatures.append(copy.deepcopy(signature))
    sign(root, credential, delegator.private_key, _signing_chain(delegator), algorithm)  # type: ignore[arg-type]
    return serialize_document(root)
