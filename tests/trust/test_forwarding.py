"""
Tests for L{geniam.trust.forwarding}: which credentials the slice
manager forwards, with real signed credentials (delegation and
speaks-for), and that an aggregate's verifier accepts what it forwards.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from geniam.errors import GeniCode, GeniError
from geniam.trust.forwarding import DELEGATION, OWN, SPEAKS_FOR, CredentialForwarder, Forwarding
from geniam.trust.certs import make_identity
from geniam.trust.credential import as_struct
from geniam.trust.identity import Identity
from geniam.trust.mint import delegate_credential, slice_credential, user_credential
from geniam.trust.speaksfor import issue_speaks_for
from geniam.trust.verifier import CredentialVerifier
from tests.trust.test_credential_fixtures import AUTHORITY, DAY, NOW, SLICE_URN, YEAR, clock_at, world


@lru_cache(maxsize=None)
def slice_manager() -> Identity:
    """The slice manager's identity, issued by the example slice authority."""
    return make_identity(world().sa, f"urn:publicid:IDN+{AUTHORITY}+authority+sm", is_authority=True, now=NOW - DAY)


@lru_cache(maxsize=None)
def alice_slice() -> str:
    """alice's slice credential for exp1 (delegatable privileges)."""
    w = world()
    return slice_credential(w.sa, w.alice.gid, w.slice.gid, NOW + YEAR)


@lru_cache(maxsize=None)
def bob_slice() -> str:
    """bob's slice credential for exp1."""
    w = world()
    return slice_credential(w.sa, w.bob.gid, w.slice.gid, NOW + YEAR)


@lru_cache(maxsize=None)
def delegated(owner: str) -> str:
    """C{owner}'s slice credential delegated to the slice manager."""
    w = world()
    identity, parent = (w.alice, alice_slice()) if owner == "alice" else (w.bob, bob_slice())
    return delegate_credential(parent, identity, slice_manager().gid)


@lru_cache(maxsize=None)
def speaks_for(user: str) -> str:
    """C{user} lets the slice manager speak for them."""
    w = world()
    return issue_speaks_for(getattr(w, user), slice_manager().gid, NOW + YEAR)


def abac(xml: str) -> dict[str, Any]:
    return as_struct(xml, "geni_abac", "1")


class ForwardingCase(SynchronousTestCase):
    """
    A slice manager's real verifier and forwarding policy, with its own
    credential, on a clock at L{NOW}; alice calls, with her user
    credential at hand.
    """

    def setUp(self) -> None:
        self.world = world()
        self.clock = clock_at(NOW)
        self.verifier = CredentialVerifier(self.world.roots, self.clock)
        self.sm = slice_manager()
        self.own = [as_struct(user_credential(self.world.sa, self.sm.gid, NOW + YEAR))]
        self.forwarder = CredentialForwarder(self.verifier, self.sm.gid, self.own)
        self.alice = self.world.alice.gid
        self.alice_user = [as_struct(user_credential(self.world.sa, self.alice, NOW + YEAR))]


class CredentialForwarderTests(ForwardingCase):
    """Delegation or speaks-for, else a clear FORBIDDEN."""

    def decide(self, credentials: list[Any], method: str = "Allocate", slice_urn: str | None = SLICE_URN, options: dict[str, Any] | None = None, caller: Any = None) -> Deferred[Forwarding]:
        return Deferred.fromCoroutine(
            self.forwarder.for_slice(caller or self.alice, credentials, method, slice_urn, options or {})
        )

    def aggregate_accepts(self, forwarding: Forwarding, method: str = "Allocate") -> None:
        """An aggregate's verifier, seeing the slice manager as the caller, grants the forwarded call."""
        options = forwarding.options({})
        grant = self.successResultOf(
            self.verifier.authorize(self.sm.gid, list(forwarding.credentials), method, SLICE_URN, options)
        )
        self.assertEqual(grant.caller_urn, self.alice.urn if forwarding.mode == SPEAKS_FOR else self.sm.gid.urn)

    def test_delegation(self) -> None:
        """A slice credential alice delegated to the slice manager is forwarded as is."""
        credentials = [as_struct(delegated("alice"))]
        forwarding = self.successResultOf(self.decide(credentials))
        self.assertEqual((forwarding.mode, forwarding.slice_urn, forwarding.speaking_for), (DELEGATION, SLICE_URN, None))
        self.assertEqual(list(forwarding.credentials), credentials)
        self.aggregate_accepts(forwarding)

    def test_speaks_for(self) -> None:
        """alice's speaks-for credential and her slice credential are forwarded with geni_speaking_for."""
        credentials = [abac(speaks_for("alice")), as_struct(alice_slice())]
        forwarding = self.successResultOf(self.decide(credentials, "Provision"))
        self.assertEqual((forwarding.mode, forwarding.speaking_for), (SPEAKS_FOR, self.alice.urn))
        self.assertEqual(forwarding.options({"x": 1}), {"x": 1, "geni_speaking_for": self.alice.urn})
        self.aggregate_accepts(forwarding, "Provision")

    def test_speaks_for_option_naming_the_caller(self) -> None:
        """geni_speaking_for sent to the slice manager may name the caller."""
        credentials = [abac(speaks_for("alice")), as_struct(alice_slice())]
        forwarding = self.successResultOf(self.decide(credentials, options={"geni_speaking_for": self.alice.urn}))
        self.assertEqual(forwarding.mode, SPEAKS_FOR)

    def test_neither(self) -> None:
        """alice's own slice credential alone cannot be forwarded: FORBIDDEN naming both ways."""
        failure = self.failureResultOf(self.decide([as_struct(alice_slice())]), GeniError)
        self.assertEqual(failure.value.code, GeniCode.FORBIDDEN)
        self.assertIn("delegated to it", failure.value.output)
        self.assertIn("speaks-for", failure.value.output)
        self.assertIn(self.sm.gid.urn, failure.value.output)

    def test_no_credentials(self) -> None:
        """No credentials at all is FORBIDDEN."""
        failure = self.failureResultOf(self.decide([]), GeniError)
        self.assertEqual(failure.value.code, GeniCode.FORBIDDEN)

    def test_someone_elses_delegation(self) -> None:
        """A credential bob delegated to the slice manager does not let alice use it."""
        failure = self.failureResultOf(self.decide([as_struct(delegated("bob"))]), GeniError)
        self.assertEqual(failure.value.code, GeniCode.FORBIDDEN)
        self.assertIn(f"not delegated by {self.alice.urn}", failure.value.output)

    def test_someone_elses_speaks_for(self) -> None:
        """bob's speaks-for credential does not let alice act as bob."""
        credentials = [abac(speaks_for("bob")), as_struct(bob_slice())]
        failure = self.failureResultOf(self.decide(credentials), GeniError)
        self.assertEqual(failure.value.code, GeniCode.FORBIDDEN)

    def test_speaking_for_someone_else(self) -> None:
        """geni_speaking_for naming another user is refused."""
        credentials = [abac(speaks_for("alice")), as_struct(alice_slice())]
        failure = self.failureResultOf(
            self.decide(credentials, options={"geni_speaking_for": self.world.bob.gid.urn}), GeniError
        )
        self.assertIn("speaks only for its caller", failure.value.output)

    def test_wrong_slice(self) -> None:
        """A delegation for exp1 does not work for another slice."""
        other = f"urn:publicid:IDN+{AUTHORITY}+slice+exp2"
        failure = self.failureResultOf(self.decide([as_struct(delegated("alice"))], slice_urn=other), GeniError)
        self.assertEqual(failure.value.code, GeniCode.FORBIDDEN)

    def test_slivers_only(self) -> None:
        """For a call naming slivers, the slice is the one the credentials name."""
        forwarding = self.successResultOf(self.decide([as_struct(delegated("alice"))], "Status", None))
        self.assertEqual(forwarding.slice_urn, SLICE_URN)

    def test_slivers_only_without_slice_credential(self) -> None:
        """Sliver calls with no slice credential at all are FORBIDDEN with a reason."""
        user = as_struct(user_credential(self.world.sa, self.alice, NOW + YEAR))
        failure = self.failureResultOf(self.decide([user], "Status", None), GeniError)
        self.assertIn("none of the credentials is a slice credential", failure.value.output)

    def test_unverified_caller(self) -> None:
        """A caller without a verified certificate is FORBIDDEN."""
        failure = self.failureResultOf(self.decide([], caller=object()), GeniError)
        self.assertEqual(failure.value.code, GeniCode.FORBIDDEN)


class ResourcesForwardingTests(ForwardingCase):
    """ListResources: the caller's user credential here, the slice manager's own at the aggregates."""

    def test_own_credential_forwarded(self) -> None:
        """With alice's user credential, the slice manager's own credential is what the aggregates get."""
        forwarder = CredentialForwarder(self.verifier, self.sm.gid, self.own)
        forwarding = self.successResultOf(Deferred.fromCoroutine(forwarder.for_resources(self.alice, self.alice_user, {})))
        self.assertEqual((forwarding.mode, list(forwarding.credentials)), (OWN, self.own))

    def test_speaks_for_preferred(self) -> None:
        """With a speaks-for credential for the slice manager, the aggregates get alice's credentials and geni_speaking_for."""
        forwarder = CredentialForwarder(self.verifier, self.sm.gid, self.own)
        credentials = [abac(speaks_for("alice")), *self.alice_user]
        forwarding = self.successResultOf(Deferred.fromCoroutine(forwarder.for_resources(self.alice, credentials, {})))
        self.assertEqual((forwarding.mode, forwarding.speaking_for), (SPEAKS_FOR, self.alice.urn))
        grant = self.successResultOf(
            self.verifier.authorize(self.sm.gid, list(forwarding.credentials), "ListResources", None, forwarding.options({}))
        )
        self.assertEqual(grant.caller_urn, self.alice.urn)

    def test_someone_elses_speaks_for_is_ignored(self) -> None:
        """bob's speaks-for credential presented by alice is not used."""
        forwarder = CredentialForwarder(self.verifier, self.sm.gid, self.own)
        credentials = [abac(speaks_for("bob")), *self.alice_user]
        forwarding = self.successResultOf(Deferred.fromCoroutine(forwarder.for_resources(self.alice, credentials, {})))
        self.assertEqual(forwarding.mode, OWN)

    def test_caller_needs_a_user_credential(self) -> None:
        """Without a user credential of their own the caller is refused."""
        forwarder = CredentialForwarder(self.verifier, self.sm.gid, self.own)
        d = Deferred.fromCoroutine(forwarder.for_resources(self.alice, [], {}))
        self.assertEqual(self.failureResultOf(d, GeniError).value.code, GeniCode.FORBIDDEN)

    def test_no_own_credential(self) -> None:
        """A slice manager started without --credential says so."""
        forwarder = CredentialForwarder(self.verifier, self.sm.gid, ())
        d = Deferred.fromCoroutine(forwarder.for_resources(self.alice, self.alice_user, {}))
        failure = self.failureResultOf(d, GeniError)
        self.assertEqual(failure.value.code, GeniCode.FORBIDDEN)
        self.assertIn("--credential", failure.value.output)
