# -*- test-case-name: tests.trust.test_verifier -*-
"""
What credential verification concludes: the checks made and why they
passed or failed (L{Check}, L{VerificationReport}), a verified chain
(L{VerifiedCredential}), a verified speaks-for credential (L{SpeaksFor}),
the permission for one call (L{Grant}), and the bounded cache that
remembers verified chains until they lapse.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from geniam.errors import GeniCode, GeniError
from geniam.trust.credential import Credential, SignedCredential
from geniam.trust.gid import GID
from geniam.urn import parse_urn


@dataclass(frozen=True)
class Check:
    """
    One check made on a credential, for people reading why it passed or failed.

    @ivar name: what was checked (C{signature ref0}, C{owner = caller}, ...).
    @ivar passed: whether it passed.
    @ivar reason: what was found.
    @ivar code: the GENI code a failure maps to (C{None} when passed).
    """

    name: str
    passed: bool
    reason: str
    code: GeniCode | None = None

    def format(self) -> str:
        """One line: C{PASS name: reason} or C{FAIL name: reason}."""
        return f"{'PASS' if self.passed else 'FAIL'} {self.name}: {self.reason}"


def passed(name: str, reason: str) -> Check:
    """A check that passed."""
    return Check(name, True, reason)


def failed(name: str, reason: str, code: GeniCode) -> Check:
    """A check that failed, with the code its failure maps to."""
    return Check(name, False, reason, code)


@dataclass
class VerificationReport:
    """
    Every check made on one credential, in order.

    @ivar checks: the checks.
    @ivar credential: the parsed credential, or C{None} if it did not parse.
    """

    checks: list[Check] = field(default_factory=list)
    credential: SignedCredential | None = None

    @property
    def ok(self) -> bool:
        """True if there was at least one check and all passed."""
        return bool(self.checks) and all(c.passed for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        """The checks that failed."""
        return [c for c in self.checks if not c.passed]

    def error(self) -> GeniError | None:
        """The first failure as a L{GeniError}, or C{None} if all passed."""
        for check in self.checks:
            if not check.passed:
                return GeniError(check.code or GeniCode.CREDENTIAL_INVALID, f"{check.name}: {check.reason}")
        return None

    def format(self) -> str:
        """The checks, one per line."""
        return "\n".join(c.format() for c in self.checks)


@dataclass(frozen=True, eq=False)
class VerifiedCredential:
    """
    A credential chain that verified and is owned by a given caller.

    @ivar signed: the parsed document.
    @ivar owner: the owner of the presented level.
    @ivar target: the target of the chain.
    @ivar expires: the earliest expiry of any level, POSIX seconds.
    @ivar valid_until: when this verification stops holding: L{expires} or
        the end of any certificate involved, whichever comes first.
    @ivar privileges: the presented level's privilege names, lower-case.
    """

    signed: SignedCredential
    owner: GID
    target: GID
    expires: float
    valid_until: float
    privileges: frozenset[str]

    @property
    def credential(self) -> Credential:
        """The presented (outermost) level."""
        return self.signed.credential

    @property
    def target_urn(self) -> str:
        """The target's URN."""
        return self.signed.credential.target_urn or self.target.urn or ""


@dataclass(frozen=True, eq=False)
class SpeaksFor:
    """
    A verified speaks-for credential.

    @ivar user: the user the tool speaks for (the credential's signer).
    @ivar tool: the tool that presented it.
    @ivar signed: the parsed C{geni_abac} credential.
    @ivar valid_until: when the verification stops holding.
    """

    user: GID
    tool: GID
    signed: SignedCredential
    valid_until: float


@dataclass(frozen=True, eq=False)
class Grant:
    """
    Permission for one call.

    @ivar caller: the effective caller: the TLS client, or the user a tool speaks for.
    @ivar caller_urn: the effective caller's URN.
    @ivar credentials: the verified credentials that granted the call,
        the one lasting longest first (empty for methods needing none).
    @ivar expires: when the granting chain expires (the latest of the
        granting credentials' earliest expiries), POSIX seconds; cap any
        expiration granted in the call at this. Infinite when no
        credential was needed.
    @ivar privileges: the privileges of the granting credentials, lower-case.
    @ivar speaks_for: the speaks-for credential applied, or C{None}.
    """

    caller: GID
    caller_urn: str
    credentials: tuple[VerifiedCredential, ...]
    expires: float
    privileges: frozenset[str]
    speaks_for: SpeaksFor | None = None

    @property
    def tool(self) -> GID | None:
        """The tool that presented a speaks-for credential, or C{None}."""
        return self.speaks_for.tool if self.speaks_for is not None else None

    @property
    def user(self) -> GID | None:
        """
        The user behind the call: the effective caller if it is a user,
        else (a slice manager or tool calling with a credential delegated
        to it) the user at the root of a granting credential's chain;
        C{None} when no user stands behind it.
        """
        if _is_user(self.caller):
            return self.caller
        for verified in self.credentials:
            root_owner = verified.credential.root.owner_gid
            if root_owner is not None and _is_user(root_owner):
                return root_owner
        return None

    def delegated_by(self, gid: GID) -> bool:
        """Whether a granting credential was delegated, at some level of its chain, by the holder of C{gid}'s key."""
        for verified in self.credentials:
            for level in verified.credential.chain()[1:]:
                if level.owner_gid is not None and level.owner_gid.public_key_matches(gid):
                    return True
        return False


def _is_user(gid: GID) -> bool:
    return bool(gid.urn) and parse_urn(gid.urn).type == "user"


class VerdictCache:
    """A bounded LRU map whose entries lapse at their C{valid_until}."""

    def __init__(self, size: int) -> None:
        self._size = max(0, size)
        self._entries: OrderedDict[tuple[bytes, ...], Any] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple[bytes, ...], now: float) -> Any:
        """The entry for C{key} if it has not lapsed at C{now}, else C{None}."""
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
            return None
        if entry.valid_until <= now:
            del self._entries[key]
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry

    def put(self, key: tuple[bytes, ...], entry: Any) -> None:
        """Remember C{entry}, forgetting the least recently used beyond the size."""
        if self._size == 0:
            return
        self._entries[key] = entry
        self._entries.move_to_end(key)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        """Forget every entry."""
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
