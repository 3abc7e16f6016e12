"""
An authority's credential about itself (what a slice manager presents for
ListResources) counts as the caller's own credential, and only for itself.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from geniam.errors import GeniCode
from geniam.trust.certs import make_identity
from geniam.trust.mint import issue_credential
from geniam.trust.verifier import CredentialVerifier
from tests.trust.test_credential_fixtures import AUTHORITY, DAY, NOW, authorize, clock_at, refuse, world

SM_URN = f"urn:publicid:IDN+{AUTHORITY}:sm+authority+sm"


class AuthoritySelfCredentialTests(SynchronousTestCase):
    """ListResources with an authority's self credential."""

    def setUp(self) -> None:
        self.world = world()
        self.sm = make_identity(self.world.sa, SM_URN, is_authority=True, now=NOW - DAY)
        self.verifier = CredentialVerifier(self.world.roots, clock_at(), cache_size=0)
        self.own = issue_credential(self.world.sa, self.sm.gid, self.sm.gid, [("refresh", False)], NOW + DAY)

    def test_accepted_for_itself(self) -> None:
        """Owner = target = the calling authority: ListResources is allowed."""
        grant = authorize(self, self.verifier, self.sm.gid, [self.own], "ListResources")
        self.assertEqual(grant.caller_urn, SM_URN)

    def test_not_for_someone_else(self) -> None:
        """Another caller presenting it is refused."""
        error = refuse(self, self.verifier, self.world.alice.gid, [self.own], "ListResources")
        self.assertNotEqual(error.code, GeniCode.SUCCESS)

    def test_not_about_another_authority(self) -> None:
        """An authority's credential about a different authority does not count."""
        other = issue_credential(
            self.world.sa, self.sm.gid, self.world.outsider.gid, [("refresh", False)], NOW + DAY
        )
        error = refuse(self, self.verifier, self.sm.gid, [other], "ListResources")
        self.assertEqual(error.code, GeniCode.CREDENTIAL_MISMATCH)

    def test_not_a_slice_credential(self) -> None:
        """It never stands in for a slice credential."""
        refuse(self, self.verifier, self.sm.gid, [self.own], "Allocate", "urn:publicid:IDN+geni:example+slice+exp1")
