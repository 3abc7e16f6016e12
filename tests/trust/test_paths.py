"""
Tests for L{geniam.trust.paths}: the certificate path search does bounded
work whatever the chain holds, and says why it refused one.
"""

from __future__ import annotations

from functools import lru_cache

from twisted.trial.unittest import SynchronousTestCase

from geniam.errors import GeniCode
from geniam.trust.certs import generate_key, issue_certificate, make_identity
from geniam.trust.gid import GID, TrustError
from geniam.trust.identity import Identity
from geniam.trust.paths import (
    MAX_SAME_SUBJECT,
    Abandoned,
    Deadline,
    PathRejected,
    PathSearch,
    screen_pool,
)
from tests.hostile_chains import HOSTILE_AUTHORITY, flood
from tests.trust.test_credential_fixtures import AUTHORITY, DAY, NOW, world

REPEATED = "repeated issuers are refused"


@lru_cache(maxsize=None)
def three_levels() -> Identity:
    """A user issued by a sub-authority issued by the root: a legitimate 3-certificate path."""
    w = world()
    return make_identity(w.outsider, f"urn:publicid:IDN+{AUTHORITY}:sub+user+dora", now=NOW - DAY)


class FloodTests(SynchronousTestCase):
    """A leaf with N self-issued CA certificates of one name and key is refused at once."""

    def test_floods_refused_before_searching(self) -> None:
        """Every flood size up to a full PEM is refused as repeated issuers, naming the repeated name."""
        roots = world().roots
        for count in (2, 4, 8, 15):
            hostile = flood(count, NOW - DAY)
            with self.assertRaises(TrustError) as cm:
                roots.verify(hostile.gid, NOW)
            self.assertEqual(cm.exception.code, GeniCode.CREDENTIAL_INVALID, count)
            self.assertIn(REPEATED, cm.exception.output)
            self.assertIn("evil.example.authority.ca", cm.exception.output)

    def test_one_flood_certificate_is_an_ordinary_untrusted_chain(self) -> None:
        """With a single certificate of that name the chain is searched, and found untrusted."""
        hostile = flood(1, NOW - DAY)
        with self.assertRaises(TrustError) as cm:
            world().roots.verify(hostile.gid, NOW)
        self.assertEqual(cm.exception.code, GeniCode.CREDENTIAL_SIGNER_UNTRUSTED)
        self.assertIn("self-signed but not a trusted root", cm.exception.output)

    def test_many_keys_under_one_name_refused(self) -> None:
        """More than MAX_SAME_SUBJECT certificates of one name are refused even with distinct keys."""
        certs = [
            issue_certificate(generate_key(1024), HOSTILE_AUTHORITY, now=NOW - DAY, is_authority=True)
            for _ in range(MAX_SAME_SUBJECT + 1)
        ]
        leaf = world().alice.gid.certificate
        with self.assertRaises(PathRejected) as cm:
            screen_pool(leaf, certs, {})
        self.assertEqual(cm.exception.code, GeniCode.CREDENTIAL_INVALID)
        self.assertIn(f"more than {MAX_SAME_SUBJECT} certificates named", cm.exception.reason)
        self.assertEqual(len(screen_pool(leaf, certs[:MAX_SAME_SUBJECT], {})), MAX_SAME_SUBJECT)


class ScreeningTests(SynchronousTestCase):
    """What screening leaves out, and what it keeps."""

    def test_root_copies_and_leaf_left_out(self) -> None:
        """A copy of a root, a re-issued root with the same key, and the leaf itself are not candidates."""
        w = world()
        reissued = issue_certificate(
            w.sa.private_key, f"urn:publicid:IDN+{AUTHORITY}+authority+sa", now=NOW, is_authority=True
        )
        roots = {w.sa.gid.fingerprint: w.sa.gid.certificate}
        leaf = w.alice.gid.certificate
        kept = screen_pool(leaf, [w.sa.gid.certificate, reissued, leaf, w.outsider.gid.certificate], roots)
        self.assertEqual(kept, [w.outsider.gid.certificate])

    def test_legitimate_chain_with_root_copy_verifies(self) -> None:
        """A three-level path verifies, the root's copy and a re-issued root in the chain notwithstanding."""
        w = world()
        dora = three_levels()
        reissued = issue_certificate(
            w.sa.private_key, f"urn:publicid:IDN+{AUTHORITY}+authority+sa", now=NOW, is_authority=True
        )
        gid = GID(dora.gid.certificate, (*dora.gid.chain, reissued))
        path = w.roots.verify(gid, NOW)
        self.assertEqual(path, (dora.gid.certificate, w.outsider.gid.certificate, w.sa.gid.certificate))


class SearchBoundsTests(SynchronousTestCase):
    """The search stops at its budget and at its deadline."""

    def search(self, budget: int = 64, deadline: Deadline | None = None) -> PathSearch:
        w = world()
        return PathSearch(
            {w.sa.gid.certificate.subject.public_bytes(): [w.sa.gid.certificate]},
            [w.sa.gid.fingerprint],
            [w.outsider.gid.certificate],
            NOW,
            deadline,
            budget,
        )

    def test_budget_refuses(self) -> None:
        """A path needing two issuer checks is found with a budget of two and refused with one."""
        leaf = three_levels().gid.certificate
        self.assertEqual(len(self.search(budget=2).build(leaf)), 3)
        with self.assertRaises(PathRejected) as cm:
            self.search(budget=1).build(leaf)
        self.assertIn("within 1 issuer checks", cm.exception.reason)

    def test_abandoned_deadline_stops_the_search(self) -> None:
        """Once abandoned, the deadline stops the search before its first issuer check."""
        deadline = Deadline()
        deadline.abandon("the caller gave up")
        with self.assertRaises(Abandoned) as cm:
            self.search(deadline=deadline).build(three_levels().gid.certificate)
        self.assertEqual(str(cm.exception), "the caller gave up")

    def test_abandoned_deadline_stops_trust_roots(self) -> None:
        """TrustRoots.verify passes the deadline on."""
        deadline = Deadline()
        deadline.abandon("shutting down")
        self.assertRaises(Abandoned, world().roots.verify, three_levels().gid, NOW, deadline=deadline)
