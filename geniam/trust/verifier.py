# -*- test-case-name: tests.trust.test_verifier -*-
"""
Deciding whether a call's credentials let this caller do this method.

L{CredentialVerifier.authorize} is what an aggregate asks for every call:
given the caller's certificate (from TLS), the C{credentials} list, the
method and its slice, it fires with a L{Grant} or fails with a
L{GeniError} that says which credential failed which check.

A credential chain is valid at a time C{t} when, for every level (the
presented credential and each parent):

    - its XML-DSig signature verifies (L{geniam.trust.xmldsig}) and the
      signer's certificate chains to the trust roots at C{t};
    - it has not expired at C{t}, and the owner and target certificates
      chain to the trust roots at C{t};
    - a delegated level keeps its parent's target, does not outlive it,
      holds only privileges its parent held as delegatable, and is signed
      by its parent's owner;
    - the root level is signed by an authority whose namespace covers the
      target (or by the authority that issued the target's certificate).

For a call, the presented credential's owner must be the caller (same
public key and URN), its target the call's slice (or, for methods needing
a user credential, the caller), and its privileges must allow the
method's operation (L{geniam.trust.privileges}). A valid C{geni_abac}
speaks-for credential together with the option C{geni_speaking_for}
makes the user the caller (L{geniam.trust.speaksfor}).

Checking stops at a level whose signature fails or whose signer is not
trusted: nothing that level carries (its owner and target certificates,
its parents) is looked at further.
The chain-level checks live in L{geniam.trust.chain}; this module adds the
call-level ones (owner, target, privileges, speaks-for) and the cache.

Verified chains are remembered per (document digest, caller) until their
earliest expiry, so a repeated call costs a hash and a dictionary lookup;
cold verification runs in the thread pool given to the verifier, at most
C{max_per_caller} pieces of work per caller at once
(L{geniam.trust.workload}). Every authorisation has a deadline (5 s by
default): when it passes the call is refused with TIMEDOUT and the work
still running for it stops at its next step.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IReactorThreads, IReactorTime
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from geniam.errors import GeniCode, GeniError
from geniam.interfaces import IAuthorizer
from geniam.trust.chain import check_chain, path_end, same_identity
from geniam.trust.credential import (
    GENI_ABAC,
    MAX_CREDENTIAL_BYTES,
    PresentedCredential,
    describe_privileges,
    parse_credential,
    parse_presented,
    unwrap_credentials,
)
from geniam.trust.gid import GID, Deadline, TrustRoots
from geniam.trust.privileges import DEFAULT_TABLE, NONE, SLICE, USER, MethodRule, PrivilegeTable
from geniam.trust.speaksfor import verify_speaks_for
from geniam.trust.verdicts import Check, Grant, SpeaksFor, VerdictCache, VerificationReport, VerifiedCredential
from geniam.trust.verdicts import failed as _fail
from geniam.trust.verdicts import passed as _pass
from geniam.trust.workload import VerificationRunner
from geniam.urn import parse_urn, same_urn

__all__ = [
    "DEFAULT_CACHE_SIZE",
    "DEFAULT_DEADLINE",
    "SPEAKING_FOR_OPTION",
    "Check",
    "CredentialVerifier",
    "Grant",
    "SpeaksFor",
    "VerificationReport",
    "VerifiedCredential",
]

DEFAULT_CACHE_SIZE = 4096
"""How many verified (credential, caller) pairs a verifier remembers."""

DEFAULT_DEADLINE = 5.0
"""Seconds one authorisation may take (queueing included) before it is refused."""

SPEAKING_FOR_OPTION = "geni_speaking_for"
"""The option naming the user a tool speaks for."""

_PROGRESS = {
    GeniCode.CREDENTIAL_INVALID: 0,
    GeniCode.CREDENTIAL_SIGNER_UNTRUSTED: 1,
    GeniCode.CREDENTIAL_EXPIRED: 2,
    GeniCode.CREDENTIAL_MISMATCH: 3,
    GeniCode.FORBIDDEN: 4,
}


@implementer(IAuthorizer)
class CredentialVerifier:
    """
    Verifies credentials against trust roots and authorises calls.

    @ivar roots: the trust roots.
    @ivar table: the method and privilege rules.
    """

    def __init__(
        self,
        roots: TrustRoots,
        clock: IReactorTime,
        threadpool: ThreadPool | None = None,
        reactor: IReactorThreads | None = None,
        cache_size: int = DEFAULT_CACHE_SIZE,
        table: PrivilegeTable = DEFAULT_TABLE,
        max_credentials: int = 32,
        max_bytes: int = MAX_CREDENTIAL_BYTES,
        deadline: float = DEFAULT_DEADLINE,
        max_per_caller: int | None = None,
    ) -> None:
        """
        @param clock: gives "now" for expiry checks and cache lifetimes, and
            times the deadline.
        @param threadpool: a bounded pool for cold verification; C{None}
            verifies inline (tests, command line).
        @param reactor: the reactor the pool reports back to; defaults to
            C{clock} when that provides threads.
        @param cache_size: how many verified credentials to remember (0: none).
        @param max_credentials: the most credentials one call may present.
        @param max_bytes: the largest credential document accepted.
        @param deadline: seconds one authorisation may take before it is
            refused with TIMEDOUT.
        @param max_per_caller: how many pieces of cold verification one
            caller may have in the pool at once; half its threads if C{None}.
        """
        if threadpool is not None and reactor is None:
            if not IReactorThreads.providedBy(clock):
                raise ValueError("a reactor is needed to use a thread pool")
            reactor = clock  # type: ignore[assignment]
        if not deadline > 0:
            raise ValueError("the verification deadline must be positive")
        self.roots = roots
        self.table = table
        self.deadline = deadline
        self._clock = clock
        self._runner = VerificationRunner(threadpool, reactor, max_per_caller)  # type: ignore[arg-type]
        self._max_credentials = max_credentials
        self._max_bytes = max_bytes
        self._cache = VerdictCache(cache_size)
        self._speaks_for_cache = VerdictCache(cache_size)

    # --- cache introspection -------------------------------------------

    @property
    def cache_hits(self) -> int:
        """How many credential lookups the cache answered."""
        return self._cache.hits + self._speaks_for_cache.hits

    @property
    def cache_misses(self) -> int:
        """How many credential lookups needed a cold verification."""
        return self._cache.misses + self._speaks_for_cache.misses

    @property
    def cache_size(self) -> int:
        """How many verified credentials are remembered now."""
        return len(self._cache) + len(self._speaks_for_cache)

    def clear_cache(self) -> None:
        """Forget every verified credential (after the trust roots change, say)."""
        self._cache.clear()
        self._speaks_for_cache.clear()

    def stop(self) -> None:
        """
        Stop verifying: work in flight stops at its next step and its callers
        are refused with SERVERBUSY, as are later calls. Call it before
        joining the thread pool on shutdown.
        """
        self._runner.stop()

    # --- authorisation -------------------------------------------------

    def authorize(
        self,
        caller: GID,
        credentials: Sequence[object],
        method: str,
        target_urn: str | None = None,
        options: Mapping[str, object] | None = None,
    ) -> Deferred[Grant]:
        """
        Decide whether C{caller} may call C{method} on C{target_urn}.

        @param caller: the TLS client's GID (its chain was checked by TLS).
        @param credentials: the call's C{credentials} argument: structs
            C{{geni_type, geni_version, geni_value}} or bare XML strings.
        @param method: the AM API method name (see L{PrivilegeTable}).
        @param target_urn: the slice URN of the call, for methods needing a
            slice credential.
        @param options: the call's options (C{geni_speaking_for} is used).
        @return: a Deferred firing with a L{Grant}, or failing with a
            L{GeniError}: FORBIDDEN, CREDENTIAL_INVALID, CREDENTIAL_EXPIRED,
            CREDENTIAL_MISMATCH or CREDENTIAL_SIGNER_UNTRUSTED (the most
            specific failure among the credentials, all of them named in
            the output), or BADARGS for malformed arguments.
        """
        try:
            deadline = self._runner.deadline()
        except GeniError as e:
            return fail(e)
        d = Deferred.fromCoroutine(self._authorize(caller, credentials, method, target_urn, options, deadline))
        if not d.called:
            # Answered from the cache (or inline) needs no timer.
            d.addTimeout(self.deadline, self._clock, onTimeoutCancel=self._timed_out)

        def done(result: object) -> object:
            self._runner.finished(deadline, "the verification deadline passed")
            return result

        return d.addBoth(done)  # type: ignore[return-value]

    def _timed_out(self, result: object, timeout: float) -> Failure:
        return Failure(
            GeniError(
                GeniCode.TIMEDOUT,
                f"credential verification took longer than {timeout:g} s and was refused",
            )
        )

    async def _authorize(
        self,
        caller: GID,
        credentials: Sequence[object],
        method: str,
        target_urn: str | None,
        options: Mapping[str, object] | None,
        deadline: Deadline,
    ) -> Grant:
        rule = self.table.rule(method) if isinstance(method, str) else None
        if rule is None:
            raise GeniError(GeniCode.FORBIDDEN, f"no authorisation rule for method {str(method)[:60]!r}")
        if not isinstance(caller, GID):
            raise GeniError(GeniCode.FORBIDDEN, "no verified client certificate")
        now = self._clock.seconds()
        if rule.credential == NONE:
            return Grant(caller, caller.urn or "", (), math.inf, frozenset())
        if rule.credential == SLICE:
            if not target_urn:
                raise GeniError(GeniCode.BADARGS, f"{method} needs a slice URN")
            if parse_urn(target_urn).type != "slice":
                raise GeniError(GeniCode.BADARGS, f"{method} needs a slice URN, not {target_urn[:120]}")
        options = options or {}
        if not isinstance(options, Mapping):
            raise GeniError(GeniCode.BADARGS, "options must be a struct")
        presented, notes = unwrap_credentials(credentials, self._max_credentials)
        effective = caller
        speaks_for = None
        speaking_for = options.get(SPEAKING_FOR_OPTION)
        if speaking_for is not None:
            if not isinstance(speaking_for, str) or not speaking_for.strip():
                raise GeniError(GeniCode.BADARGS, f"{SPEAKING_FOR_OPTION} must be a user URN")
            speaks_for, reasons = await self._speaks_for(caller, presented, speaking_for.strip(), now, deadline)
            if speaks_for is not None:
                effective = speaks_for.user
            else:
                notes.extend(reasons)
        candidates = [p for p in presented if p.kind != GENI_ABAC]
        outcomes = await self._verify_for(candidates, effective, now, caller, deadline)
        granted: list[VerifiedCredential] = []
        failures: list[GeniError] = []
        for presented_credential, outcome in outcomes:
            where = presented_credential.describe()
            if isinstance(outcome, str):
                notes.append(f"{where}: {outcome}")
                continue
            if isinstance(outcome, GeniError):
                failures.append(GeniError(outcome.code, f"{where}: {outcome.output}"))
                continue
            problem = self._call_check(outcome, rule, method, target_urn, effective)
            if problem is None:
                granted.append(outcome)
            else:
                failures.append(GeniError(problem.code or GeniCode.FORBIDDEN, f"{where}: {problem.reason}"))
        if not granted:
            if speaking_for is None:
                labelled = [p for p in presented if p.kind == GENI_ABAC]
                if labelled:
                    notes.extend(
                        await self._runner.run(caller.fingerprint, deadline, self._thd_explain_abac_labelled, labelled)
                    )
            raise self._refusal(method, target_urn, effective, failures, notes)
        granted.sort(key=lambda v: v.expires, reverse=True)
        privileges: frozenset[str] = frozenset().union(*(v.privileges for v in granted))
        return Grant(
            caller=effective,
            caller_urn=effective.urn or "",
            credentials=tuple(granted),
            expires=granted[0].expires,
            privileges=privileges,
            speaks_for=speaks_for,
        )

    def _refusal(
        self,
        method: str,
        target_urn: str | None,
        caller: GID,
        failures: list[GeniError],
        notes: list[str],
    ) -> GeniError:
        what = f"{method} on {target_urn}" if target_urn else method
        who = caller.urn or caller.subject
        if not failures:
            detail = "; ".join(notes) if notes else "no credentials were presented"
            return GeniError(GeniCode.FORBIDDEN, f"no credential lets {who} call {what}: {detail}")
        best = max(failures, key=lambda e: _PROGRESS.get(e.code, 0))
        reasons = "; ".join([e.output for e in failures] + notes)
        return GeniError(best.code, f"no credential lets {who} call {what}: {reasons}")

    def _call_check(
        self,
        verified: VerifiedCredential,
        rule: MethodRule,
        method: str,
        target_urn: str | None,
        caller: GID,
    ) -> Check | None:
        """The call-level checks on a chain already verified for this caller; None if all pass."""
        target = verified.target
        target_text = verified.target_urn
        try:
            target_type = parse_urn(target_text).type
        except GeniError:
            return _fail("target", f"target URN {target_text[:120]!r} is malformed", GeniCode.CREDENTIAL_INVALID)
        if rule.credential == USER:
            # A user credential, or an authority's credential about itself
            # (what a slice manager presents for the advertisement).
            if target_type not in ("user", "authority") or not same_identity(target, caller):
                return _fail(
                    "credential kind",
                    f"{method} needs a user credential of the caller, this one is about {target_text}",
                    GeniCode.CREDENTIAL_MISMATCH,
                )
        elif rule.credential == SLICE:
            if target_type != "slice":
                return _fail(
                    "credential kind",
                    f"{method} needs a slice credential, this one is a {target_type} credential for {target_text}",
                    GeniCode.CREDENTIAL_MISMATCH,
                )
            assert target_urn is not None
            if not same_urn(target_text, target_urn):
                return _fail(
                    "target",
                    f"the credential is for {target_text}, not {target_urn}",
                    GeniCode.CREDENTIAL_MISMATCH,
                )
        if rule.operation is not None and not self.table.grants(verified.privileges, rule.operation):
            held = describe_privileges(verified.credential.privileges)
            return _fail(
                "privilege",
                f"privileges {held} do not allow {rule.operation} ({method})",
                GeniCode.FORBIDDEN,
            )
        return None

    # --- verification with caching ------------------------------------

    async def _verify_for(
        self, presented: list[PresentedCredential], caller: GID, now: float, client: GID, deadline: Deadline
    ) -> list[tuple[PresentedCredential, VerifiedCredential | GeniError | str]]:
        results: dict[int, VerifiedCredential | GeniError | str] = {}
        misses: list[PresentedCredential] = []
        for item in presented:
            entry = self._cache.get((item.digest, caller.fingerprint), now)
            if entry is not None:
                results[item.index] = entry
            else:
                misses.append(item)
        if misses:
            fresh = await self._runner.run(client.fingerprint, deadline, self._thd_verify_many, misses, caller, now)
            for item, outcome in fresh:
                results[item.index] = outcome
                if isinstance(outcome, VerifiedCredential):
                    self._cache.put((item.digest, caller.fingerprint), outcome)
        return [(item, results[item.index]) for item in presented]

    def _thd_verify_many(
        self, deadline: Deadline, presented: list[PresentedCredential], caller: GID, now: float
    ) -> list[tuple[PresentedCredential, VerifiedCredential | GeniError | str]]:
        return [(item, self._thd_verify_one(deadline, item, caller, now)) for item in presented]

    def _thd_verify_one(
        self, deadline: Deadline, presented: PresentedCredential, caller: GID, now: float
    ) -> VerifiedCredential | GeniError | str:
        try:
            signed = parse_presented(presented, self._max_bytes)
        except GeniError as e:
            return e
        if signed.kind == GENI_ABAC:
            return f"ABAC credential used only with {SPEAKING_FOR_OPTION}"
        checks, verified = check_chain(self.roots, signed, now, deadline)
        if verified is None:
            error = VerificationReport(checks).error()
            assert error is not None
            return error
        owner_check = self._owner_check(verified.owner, caller)
        if not owner_check.passed:
            return GeniError(owner_check.code or GeniCode.CREDENTIAL_MISMATCH, owner_check.reason)
        return verified

    def _thd_explain_abac_labelled(self, deadline: Deadline, presented: list[PresentedCredential]) -> list[str]:
        """Say why credentials sent as C{geni_abac} without C{geni_speaking_for} were not used."""
        notes = []
        for item in presented:
            where = item.describe()
            try:
                signed = parse_credential(item.value, None, None, self._max_bytes)
            except GeniError as e:
                notes.append(f"{where}: sent as geni_abac and unreadable: {e.output}")
                continue
            if signed.kind == GENI_ABAC:
                notes.append(
                    f"{where}: a geni_abac speaks-for credential, used only with the option {SPEAKING_FOR_OPTION}, "
                    "which this call does not set"
                )
            else:
                notes.append(
                    f"{where}: sent as geni_abac, but it is a {signed.kind} privilege credential for "
                    f"{signed.credential.target_urn}; geni_abac credentials serve only speaks-for, so it was "
                    f"skipped (send it with geni_type {signed.kind})"
                )
        return notes

    async def _speaks_for(
        self, tool: GID, presented: list[PresentedCredential], user_urn: str, now: float, deadline: Deadline
    ) -> tuple[SpeaksFor | None, list[str]]:
        candidates = [p for p in presented if p.kind in (GENI_ABAC, None)]
        misses = []
        for item in candidates:
            entry = self._speaks_for_cache.get((item.digest, tool.fingerprint), now)
            if entry is not None and entry.user.urn is not None and same_urn(entry.user.urn, user_urn):
                return entry, []
            misses.append(item)
        if not misses:
            return None, [f"{SPEAKING_FOR_OPTION} given but no speaks-for credential presented"]
        found, reasons = await self._runner.run(
            tool.fingerprint, deadline, self._thd_speaks_for, misses, tool, user_urn, now
        )
        if found is not None:
            item, speaks_for = found
            self._speaks_for_cache.put((item.digest, tool.fingerprint), speaks_for)
            return speaks_for, []
        return None, reasons

    def _thd_speaks_for(
        self, deadline: Deadline, presented: list[PresentedCredential], tool: GID, user_urn: str, now: float
    ) -> tuple[tuple[PresentedCredential, SpeaksFor] | None, list[str]]:
        reasons = []
        seen = False
        for item in presented:
            try:
                signed = parse_presented(item, self._max_bytes)
                if signed.kind != GENI_ABAC:
                    continue
                seen = True
                user = verify_speaks_for(signed, tool, user_urn, self.roots, now, deadline)
                valid_until = min(
                    signed.credential.expires,
                    path_end(self.roots.verify(user, now, deadline=deadline)),
                    path_end(self.roots.verify(tool, now, deadline=deadline)),
                )
            except GeniError as e:
                reasons.append(f"{item.describe()}: {e.output}")
                continue
            return (item, SpeaksFor(user, tool, signed, valid_until)), reasons
        if not seen and not reasons:
            reasons.append(f"{SPEAKING_FOR_OPTION} given but no speaks-for credential presented")
        return None, reasons

    # --- the checks ----------------------------------------------------

    def _owner_check(self, owner: GID, caller: GID) -> Check:
        if not owner.public_key_matches(caller):
            return _fail(
                "owner = caller",
                f"the credential belongs to {owner.urn or owner.subject}; the caller's certificate "
                f"({caller.urn or caller.subject}) has another key",
                GeniCode.CREDENTIAL_MISMATCH,
            )
        if owner.urn is None or caller.urn is None or not same_urn(owner.urn, caller.urn):
            return _fail(
                "owner = caller",
                f"owner URN {owner.urn} differs from the caller's {caller.urn}",
                GeniCode.CREDENTIAL_MISMATCH,
            )
        return _pass("owner = caller", f"{owner.urn}, same public key as the caller's certificate")

    # --- reports -------------------------------------------------------

    def verify_credential(
        self,
        xml: str | bytes,
        at: float,
        caller: GID | None = None,
        target_urn: str | None = None,
        privilege: str | None = None,
    ) -> VerificationReport:
        """
        Verify one credential document synchronously and explain every check.

        @param at: the time to verify at, POSIX seconds.
        @param caller: if given, the credential's owner must be this
            certificate (for a speaks-for credential: the tool it names).
        @param target_urn: if given, the credential's target must be this URN.
        @param privilege: if given, the credential must allow it: a
            privilege name, an SFA operation or an AM API method.
        @return: the report; L{VerificationReport.ok} says whether all passed.
        """
        report = VerificationReport()
        try:
            signed = parse_credential(xml, max_bytes=self._max_bytes)
        except GeniError as e:
            report.checks.append(_fail("parse", e.output, e.code))
            return report
        report.credential = signed
        levels = signed.levels()
        report.checks.append(
            _pass(
                "parse",
                f"{signed.kind} credential, {len(levels)} level(s): " + " <- ".join(level.xml_id for level in levels),
            )
        )
        checks, verified = check_chain(self.roots, signed, at)
        report.checks.extend(checks)
        top = signed.credential
        if signed.kind == GENI_ABAC:
            if caller is not None:
                try:
                    signer_urn = GID.from_certificate(top.signature.signer).urn or ""
                    user = verify_speaks_for(signed, caller, signer_urn, self.roots, at)
                    report.checks.append(_pass("speaks-for", f"{caller.urn} may act for {user.urn}"))
                except GeniError as e:
                    report.checks.append(_fail("speaks-for", e.output, e.code))
            return report
        if caller is not None and top.owner_gid is not None:
            report.checks.append(self._owner_check(top.owner_gid, caller))
        if target_urn is not None:
            actual = top.target_urn or ""
            if actual and same_urn(actual, target_urn):
                report.checks.append(_pass("target", actual))
            else:
                report.checks.append(
                    _fail("target", f"the credential is for {actual}, not {target_urn}", GeniCode.CREDENTIAL_MISMATCH)
                )
        if privilege is not None:
            if self.table.allows(top.privilege_names, privilege):
                report.checks.append(
                    _pass("privilege", f"{describe_privileges(top.privileges)} allow {privilege}")
                )
            else:
                report.checks.append(
                    _fail(
                        "privilege",
                        f"{describe_privileges(top.privileges)} do not allow {privilege}",
                        GeniCode.FORBIDDEN,
                    )
                )
        return report
