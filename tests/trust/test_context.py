"""
Tests for L{geniam.trust.context}: the per-call context the edge hands the
managers, over a real L{CredentialVerifier} and a real
L{CredentialForwarder} with signed credentials.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed
from zope.interface.verify import verifyObject

from geniam.errors import GeniCode, GeniError
from geniam.interfaces import IAuthorizer, IForwardingPolicy
from geniam.trust.context import CallContext, context_maker
from geniam.trust.credential import as_struct
from geniam.trust.forwarding import DELEGATION, OWN, Forwarding
from tests.trust.test_credential_fixtures import SLICE_URN
from tests.trust.test_forwarding import ForwardingCase, alice_slice, delegated

OTHER_SLICE = SLICE_URN.replace("+slice+", "+slice+other")


class ContextCase(ForwardingCase):
    """alice calls a slice manager whose verifier and forwarding policy are real."""

    def setUp(self) -> None:
        super().setUp()
        self.policy = self.forwarder
        self.make = context_maker(self.verifier, self.policy)


class AuthorizeTests(ContextCase):
    """L{CallContext.authorize} asks the authorizer about the call's peer and credentials."""

    def test_grant_for_the_slice(self) -> None:
        """alice's own slice credential grants her Status on its slice; the grant names her and rests on it."""
        context = self.make(self.alice, [as_struct(alice_slice())])
        grant = self.successResultOf(context.authorize("Status", SLICE_URN, {}))
        self.assertEqual(grant.caller_urn, self.alice.urn)
        self.assertEqual([v.target_urn for v in grant.credentials], [SLICE_URN])

    def test_refusal_is_the_verifiers(self) -> None:
        """The same credential for another slice is refused with the verifier's code and reason."""
        context = self.make(self.alice, [as_struct(alice_slice())])
        error = self.failureResultOf(context.authorize("Status", OTHER_SLICE, {}), GeniError).value
        self.assertEqual(error.code, GeniCode.CREDENTIAL_MISMATCH)
        self.assertIn(f"not {OTHER_SLICE}", error.output)

    def test_no_credentials(self) -> None:
        """A context built with no credentials (a method taking none) is refused for a slice call: FORBIDDEN."""
        error = self.failureResultOf(self.make(self.alice, []).authorize("Status", SLICE_URN, {}), GeniError).value
        self.assertEqual(error.code, GeniCode.FORBIDDEN)
        self.assertIn("no credentials were presented", error.output)

    def test_peer_is_the_caller(self) -> None:
        """The context's peer, not the credential's owner, is the caller checked: bob cannot use alice's credential."""
        context = self.make(self.world.bob.gid, [as_struct(alice_slice())])
        error = self.failureResultOf(context.authorize("Status", SLICE_URN, {}), GeniError).value
        self.assertEqual(error.code, GeniCode.CREDENTIAL_MISMATCH)


class ForwardingTests(ContextCase):
    """The forwarding questions go to the context's policy with the call's peer and credentials."""

    def test_slice_delegation(self) -> None:
        """A credential alice delegated to the slice manager is forwarded as a delegation, unchanged."""
        credentials = [as_struct(delegated("alice"))]
        forwarding = self.successResultOf(self.make(self.alice, credentials).forwarding_for_slice("Allocate", SLICE_URN, {}))
        self.assertEqual((forwarding.mode, forwarding.slice_urn), (DELEGATION, SLICE_URN))
        self.assertEqual(list(forwarding.credentials), credentials)

    def test_delegation_by_someone_else(self) -> None:
        """bob cannot forward the credential alice delegated: FORBIDDEN naming why."""
        context = self.make(self.world.bob.gid, [as_struct(delegated("alice"))])
        error = self.failureResultOf(context.forwarding_for_slice("Allocate", SLICE_URN, {}), GeniError).value
        self.assertEqual(error.code, GeniCode.FORBIDDEN)
        self.assertIn("was not delegated by", error.output)

    def test_slice_from_the_credentials(self) -> None:
        """Without a slice (a call naming slivers) the slice is taken from the credentials."""
        context = self.make(self.alice, [as_struct(delegated("alice"))])
        forwarding = self.successResultOf(context.forwarding_for_slice("Status", None, {}))
        self.assertEqual(forwarding.slice_urn, SLICE_URN)

    def test_resources_with_own_credential(self) -> None:
        """ListResources checks alice's user credential, then forwards the slice manager's own credential."""
        forwarding = self.successResultOf(self.make(self.alice, self.alice_user).forwarding_for_resources({}))
        self.assertEqual((forwarding.mode, list(forwarding.credentials)), (OWN, self.own))
        error = self.failureResultOf(self.make(self.alice, []).forwarding_for_resources({}), GeniError).value
        self.assertEqual(error.code, GeniCode.FORBIDDEN)

    def test_no_policy(self) -> None:
        """A context without a forwarding policy (an aggregate's) fails the question, as a Deferred, with SERVERERROR."""
        context = CallContext(self.alice, [], self.verifier)
        for asked in (context.forwarding_for_resources({}), context.forwarding_for_slice("Status", SLICE_URN, {})):
            self.assertEqual(self.failureResultOf(asked, GeniError).value.code, GeniCode.SERVERERROR)

    def test_policy_answering_a_deferred(self) -> None:
        """A policy answering with a Deferred (not a coroutine) is waited for; what it was asked is the call's."""
        asked: list[tuple[Any, ...]] = []

        class Recording:
            def for_resources(self, peer: Any, credentials: Any, options: Any) -> Deferred[Forwarding]:
                asked.append((peer, credentials, options))
                return succeed(Forwarding(("x",), OWN))

            def for_slice(self, *args: Any) -> Deferred[Forwarding]:
                raise AssertionError("not asked")

        context = CallContext(self.alice, ["c"], self.verifier, Recording())  # type: ignore[arg-type]
        forwarding = self.successResultOf(context.forwarding_for_resources({"o": 1}))
        self.assertEqual(forwarding.credentials, ("x",))
        self.assertEqual(asked, [(self.alice, ["c"], {"o": 1})])


class MakerTests(ContextCase):
    """L{context_maker} is the edge's factory."""

    def test_carries_the_roles_deciders(self) -> None:
        """Each context made carries the peer and credentials given, the authorizer and the policy."""
        context = self.make(self.alice, ["c"])
        self.assertEqual((context.peer, list(context.credentials)), (self.alice, ["c"]))
        self.assertIs(context.authorizer, self.verifier)
        self.assertIs(context.forwarding, self.policy)
        self.assertIsNone(context_maker(self.verifier)(self.alice, []).forwarding)

    def test_deciders_provide_the_seams(self) -> None:
        """The verifier and the forwarder provide the interfaces the context relies on."""
        self.assertTrue(verifyObject(IAuthorizer, self.verifier))
        self.assertTrue(verifyObject(IForwardingPolicy, self.policy))
