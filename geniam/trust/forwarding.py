# -*- test-case-name: tests.trust.test_forwarding -*-
"""
Which credentials the slice manager sends its aggregates, and why they work.

The slice manager calls its aggregates over TLS with I{its own}
certificate, so an aggregate sees the slice manager as the caller. A
user's own slice credential names the user as its owner and fails the
aggregate's owner check. The user must therefore give the slice manager
one of:

  1. B{a delegation}: their slice credential delegated to the slice
     manager (owner: the slice manager's certificate), e.g. with
     C{geniam credential delegate}. The slice manager forwards it as is.
     It must have been delegated by the caller: a credential someone
     else delegated to the slice manager is not usable by the caller.

  2. B{speaks-for}: a C{geni_abac} speaks-for credential, signed by the
     user, saying the slice manager speaks for them, together with the
     user's own slice credential. The slice manager forwards both with
     the option C{geni_speaking_for} set to the user's URN. A caller may
     send C{geni_speaking_for} to the slice manager; it must then name
     the caller.

When neither is there, the call fails with FORBIDDEN, naming both ways.

Calls about no slice (ListResources) need the caller's own user
credential at the slice manager; the aggregates are then called with the
slice manager's own credential (C{--credential FILE}: a user credential
whose owner and target are the slice manager), since the merged
advertisement is shared by every user; a speaks-for credential the
caller gave for the slice manager is used instead when present.

L{CredentialForwarder} is the slice manager's L{IForwardingPolicy}: it
decides with the slice manager's own authorizer (its
L{CredentialVerifier}), so refusals are given before any aggregate is
called and carry the verifier's reasons. The slice manager reaches it
only through the call's L{geniam.trust.context.CallContext}.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from zope.interface import implementer

from geniam.errors import GeniCode, GeniError
from geniam.trust.credential import GENI_ABAC, parse_presented, unwrap_credentials
from geniam.trust.gid import GID
from geniam.interfaces import IAuthorizer, IForwardingPolicy
from geniam.trust.verifier import SPEAKING_FOR_OPTION
from geniam.urn import parse_urn, same_urn

DELEGATION = "delegation"
SPEAKS_FOR = "speaks-for"
OWN = "own"

MAX_SLICE_CANDIDATES = 8
"""The most slices named by the credentials that are tried when a call names only slivers."""


@dataclass(frozen=True)
class Forwarding:
    """
    How to call the aggregates for one call.

    @ivar credentials: the credentials to send.
    @ivar mode: L{DELEGATION}, L{SPEAKS_FOR} or L{OWN}.
    @ivar slice_urn: the slice the call is about, if any.
    @ivar speaking_for: the user URN to send as C{geni_speaking_for}, if any.
    """

    credentials: tuple[Any, ...]
    mode: str
    slice_urn: str | None = None
    speaking_for: str | None = None

    def options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """The options to send: a copy of C{options} with C{geni_speaking_for} set or removed."""
        forwarded = dict(options)
        forwarded.pop(SPEAKING_FOR_OPTION, None)
        if self.speaking_for is not None:
            forwarded[SPEAKING_FOR_OPTION] = self.speaking_for
        return forwarded


def _caller_urn(caller: Any) -> str:
    return str(getattr(caller, "urn", None) or getattr(caller, "subject", None) or "the caller")


@implementer(IForwardingPolicy)
class CredentialForwarder:
    """
    The slice manager's forwarding policy, decided with its own authorizer
    (the L{IAuthorizer} seam: its L{CredentialVerifier}).

    @ivar gid: the slice manager's certificate (the caller the aggregates see).
    @ivar own_credentials: the slice manager's own credentials (for ListResources).
    """

    def __init__(self, authorizer: IAuthorizer, gid: GID, own_credentials: Sequence[Any] = ()) -> None:
        self._authorizer = authorizer
        self.gid = gid
        self.own_credentials = tuple(own_credentials)

    async def for_resources(self, caller: Any, credentials: Sequence[Any], options: Mapping[str, Any]) -> Forwarding:
        """
        See L{IForwardingPolicy.for_resources}. A speaks-for credential the caller
        gave the slice manager is used when present (with the caller's
        user credential); otherwise the slice manager's own credentials.
        """
        await self._authorizer.authorize(caller, credentials, "ListResources", None, options)
        if isinstance(caller, GID) and caller.urn:
            presented, _ = unwrap_credentials(credentials)
            if any(self._is_abac(p) for p in presented):
                try:
                    grant = await self._authorizer.authorize(
                        self.gid, credentials, "ListResources", None, {SPEAKING_FOR_OPTION: caller.urn}
                    )
                except GeniError:
                    pass
                else:
                    if grant.speaks_for is not None and grant.speaks_for.user.public_key_matches(caller):
                        return Forwarding(tuple(credentials), SPEAKS_FOR, None, caller.urn)
        if not self.own_credentials:
            raise GeniError(
                GeniCode.FORBIDDEN,
                f"this slice manager ({self.gid.urn}) has no credential of its own to list its aggregates' "
                "resources with (its operator starts it with --credential FILE); you may instead give it a "
                "speaks-for credential (geni_abac) naming it, with your user credential",
            )
        return Forwarding(self.own_credentials, OWN)

    async def for_slice(
        self,
        caller: Any,
        credentials: Sequence[Any],
        method: str,
        slice_urn: str | None,
        options: Mapping[str, Any],
    ) -> Forwarding:
        """See L{IForwardingPolicy.for_slice}."""
        if not isinstance(caller, GID):
            raise GeniError(GeniCode.FORBIDDEN, "no verified client certificate")
        presented, _ = unwrap_credentials(credentials)
        speaking_for = options.get(SPEAKING_FOR_OPTION)
        if speaking_for is not None:
            if not isinstance(speaking_for, str) or not caller.urn or not same_urn(speaking_for, caller.urn):
                raise GeniError(
                    GeniCode.FORBIDDEN,
                    f"{SPEAKING_FOR_OPTION} names {str(speaking_for)[:120]}, but this slice manager speaks only "
                    f"for its caller, {_caller_urn(caller)}",
                )
        has_abac = any(self._is_abac(p) for p in presented)
        slices = [str(parse_urn(slice_urn, "slice"))] if slice_urn is not None else self._slices_named(presented)
        if not slices:
            raise GeniError(
                GeniCode.FORBIDDEN,
                f"{method}: none of the credentials is a slice credential, so the slice of these slivers is unknown",
            )
        reasons: list[str] = []
        for candidate in slices:
            try:
                grant = await self._authorizer.authorize(self.gid, credentials, method, candidate, {})
            except GeniError as e:
                reasons.append(f"as a delegation: {e.output}")
            else:
                if grant.delegated_by(caller):
                    return Forwarding(tuple(credentials), DELEGATION, candidate)
                reasons.append(f"as a delegation: the credential delegated to this slice manager was not delegated by {_caller_urn(caller)}")
            if has_abac or speaking_for is not None:
                try:
                    grant = await self._authorizer.authorize(
                        self.gid, credentials, method, candidate, {SPEAKING_FOR_OPTION: caller.urn}
                    )
                except GeniError as e:
                    reasons.append(f"as speaks-for: {e.output}")
                else:
                    if grant.speaks_for is not None and grant.speaks_for.user.public_key_matches(caller):
                        return Forwarding(tuple(credentials), SPEAKS_FOR, candidate, caller.urn)
                    reasons.append("as speaks-for: the speaks-for credential was not signed by the caller")
        what = f"{method} on {slices[0]}" if len(slices) == 1 else method
        raise GeniError(
            GeniCode.FORBIDDEN,
            f"this slice manager calls its aggregates with its own certificate ({self.gid.urn}), so for {what} "
            "it needs either your slice credential delegated to it (owner: the slice manager), or a speaks-for "
            f"credential (geni_abac) you signed for it together with your slice credential. Neither works here: "
            + "; ".join(dict.fromkeys(reasons)),
        )

    @staticmethod
    def _is_abac(presented: Any) -> bool:
        if presented.kind == GENI_ABAC:
            return True
        if presented.kind is None:
            try:
                return parse_presented(presented).kind == GENI_ABAC
            except GeniError:
                return False
        return False

    @staticmethod
    def _slices_named(presented: Sequence[Any]) -> list[str]:
        """The slice URNs the presented credentials are about (unverified: only which slices to try)."""
        found: dict[str, str] = {}
        for item in presented:
            try:
                signed = parse_presented(item)
            except GeniError:
                continue
            target = signed.credential.target_urn
            if not target:
                continue
            try:
                parsed = parse_urn(target)
            except GeniError:
                continue
            if parsed.type == "slice":
                found.setdefault(parsed.key, str(parsed))
        return list(found.values())[:MAX_SLICE_CANDIDATES]
