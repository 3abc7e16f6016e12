"""
The credentials minted by the GENI reference clearinghouse verify as they
are, for exactly the callers they were made for; and the shared trust
domain the other credential tests mint their credentials in.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from geniam.errors import GeniCode, GeniError
from geniam.timeutil import parse_time
from geniam.trust.certs import make_authority, make_identity
from geniam.trust.credential import as_struct
from geniam.trust.gid import GID, TrustRoots
from geniam.trust.identity import Identity
from geniam.trust.mint import make_slice
from geniam.trust.verifier import CredentialVerifier, Grant
from tests.fixturepaths import GCF

FIXTURES = FilePath(str(GCF))
NOW = parse_time("2026-11-22T12:00:00Z")
"""A time inside the validity window of every fixture (and of the minted domain)."""

DAY = 24 * 3600
YEAR = 365 * DAY
GCF_SLICE = "urn:publicid:IDN+geni:gpo:gcf+slice+fixture"
AUTHORITY = "geni:example"
SLICE_URN = f"urn:publicid:IDN+{AUTHORITY}+slice+exp1"
OTHER_SLICE_URN = f"urn:publicid:IDN+{AUTHORITY}+slice+exp2"


def fixture_text(name: str) -> str:
    """Return a gcf fixture file as text."""
    return FIXTURES.child(name).getContent().decode("utf-8")


def fixture_gid(name: str) -> GID:
    """Load C{<name>-cert.pem} of the gcf fixtures."""
    return GID.from_pem(FIXTURES.child(f"{name}-cert.pem").getContent())


def fixture_identity(name: str) -> Identity:
    """Load a gcf fixture identity (certificate chain and key)."""
    return Identity.from_files(FIXTURES.child(f"{name}-cert.pem").path, FIXTURES.child(f"{name}-key.pem").path)


def fixture_roots() -> TrustRoots:
    """The gcf clearinghouse certificate, the only root."""
    return TrustRoots.from_certificates([fixture_gid("ch")])


@dataclass(frozen=True)
class World:
    """
    A minted trust domain: one slice authority (the only root) and its people.

    @ivar sa: the slice authority C{geni:example}.
    @ivar impostor: a self-signed authority with the same name and URN but another key.
    @ivar alice: a user; owner of the slice.
    @ivar bob: a user alice delegates to.
    @ivar carol: a third user.
    @ivar tool: a tool (portal) that may speak for users.
    @ivar other_tool: another tool.
    @ivar slice: the slice C{exp1}'s identity, issued by C{sa}.
    @ivar other_slice: the slice C{exp2}.
    @ivar outsider: a slice authority for another namespace, issued by C{sa}.
    """

    sa: Identity
    impostor: Identity
    alice: Identity
    bob: Identity
    carol: Identity
    tool: Identity
    other_tool: Identity
    slice: Identity
    other_slice: Identity
    outsider: Identity

    @property
    def roots(self) -> TrustRoots:
        """Only C{sa} is trusted."""
        return TrustRoots.from_certificates([self.sa.gid])


@lru_cache(maxsize=None)
def world() -> World:
    """The shared trust domain (keys are costly; made once per test run)."""
    start = NOW - DAY
    sa = make_authority(AUTHORITY, now=start)
    impostor = make_authority(AUTHORITY, now=start)

    def user(name: str) -> Identity:
        return make_identity(sa, f"urn:publicid:IDN+{AUTHORITY}+user+{name}", now=start)

    return World(
        sa=sa,
        impostor=impostor,
        alice=user("alice"),
        bob=user("bob"),
        carol=user("carol"),
        tool=make_identity(sa, f"urn:publicid:IDN+{AUTHORITY}+tool+portal", now=start),
        other_tool=make_identity(sa, f"urn:publicid:IDN+{AUTHORITY}+tool+other", now=start),
        slice=make_slice(sa, SLICE_URN, start, NOW + YEAR),
        other_slice=make_slice(sa, OTHER_SLICE_URN, start, NOW + YEAR),
        outsider=make_identity(
            sa, f"urn:publicid:IDN+{AUTHORITY}:sub+authority+sa", is_authority=True, now=start
        ),
    )


def clock_at(when: float = NOW) -> Clock:
    """A clock reading C{when}."""
    clock = Clock()
    clock.advance(when)
    return clock


def authorize(
    case: SynchronousTestCase,
    verifier: CredentialVerifier,
    caller: GID,
    credentials: list[Any],
    method: str,
    target: str | None = None,
    options: dict[str, Any] | None = None,
) -> Grant:
    """Authorise synchronously and return the grant."""
    result: Grant = case.successResultOf(verifier.authorize(caller, credentials, method, target, options))
    return result


def refuse(
    case: SynchronousTestCase,
    verifier: CredentialVerifier,
    caller: GID,
    credentials: list[Any],
    method: str,
    target: str | None = None,
    options: dict[str, Any] | None = None,
) -> GeniError:
    """Authorise synchronously, expecting a refusal; return the error."""
    d: Deferred[Grant] = verifier.authorize(caller, credentials, method, target, options)
    failure: Failure = case.failureResultOf(d, GeniError)
    error: GeniError = failure.value
    return error


class ReferenceFixtureTests(SynchronousTestCase):
    """The gcf fixtures verify as given, with C{ch-cert.pem} as the only root."""

    def setUp(self) -> None:
        self.verifier = CredentialVerifier(fixture_roots(), clock_at())
        self.alice = fixture_gid("alice")
        self.bob = fixture_gid("bob")

    def test_alice_user_credential_for_alice(self) -> None:
        """alice's user credential lets alice list resources."""
        grant = authorize(self, self.verifier, self.alice, [as_struct(fixture_text("alice-usercred.xml"))], "ListResources")
        self.assertEqual(grant.caller_urn, "urn:publicid:IDN+geni:gpo:gcf+user+alice")
        self.assertEqual(grant.privileges, frozenset({"refresh", "resolve", "info"}))
        self.assertEqual(grant.expires, parse_time("2028-11-21T05:57:14Z"))

    def test_bob_user_credential_for_bob(self) -> None:
        """bob's user credential lets bob list resources."""
        grant = authorize(self, self.verifier, self.bob, [fixture_text("bob-usercred.xml")], "ListResources")
        self.assertEqual(grant.caller_urn, "urn:publicid:IDN+geni:gpo:gcf+user+bob")

    def test_alice_slice_credential_for_alice(self) -> None:
        """The slice credential lets its owner alice allocate in the fixture slice until its expiry."""
        grant = authorize(
            self, self.verifier, self.alice, [as_struct(fixture_text("fixture-slicecred.xml"))], "Allocate", GCF_SLICE
        )
        self.assertEqual(grant.expires, parse_time("2027-12-31T00:00:00Z"))
        self.assertEqual(len(grant.credentials), 1)
        self.assertEqual(grant.credentials[0].target_urn, GCF_SLICE)

    def test_delegated_credential_for_bob(self) -> None:
        """The credential alice delegated to bob lets bob act on the slice."""
        for method in ("Allocate", "Provision", "Describe", "Status", "Renew", "Delete", "Shutdown"):
            grant = authorize(
                self,
                self.verifier,
                self.bob,
                [as_struct(fixture_text("bob-delegated-fixture-slicecred.xml"))],
                method,
                GCF_SLICE,
            )
            self.assertEqual(grant.caller_urn, "urn:publicid:IDN+geni:gpo:gcf+user+bob")

    def test_delegated_credential_not_for_alice(self) -> None:
        """The delegated credential is bob's: alice presenting it is refused as a mismatch."""
        error = refuse(
            self, self.verifier, self.alice, [as_struct(fixture_text("bob-delegated-fixture-slicecred.xml"))],
            "Allocate", GCF_SLICE,
        )
        self.assertEqual(error.code, GeniCode.CREDENTIAL_MISMATCH)
        self.assertIn("belongs to urn:publicid:IDN+geni:gpo:gcf+user+bob", error.output)

    def test_none_for_someone_elses_certificate(self) -> None:
        """No fixture works for a caller holding another certificate, even one naming alice."""
        sa = make_authority("geni:gpo:gcf", now=NOW - DAY)
        fake_alice = make_identity(sa, "urn:publicid:IDN+geni:gpo:gcf+user+alice", now=NOW - DAY).gid
        for caller in (fixture_gid("am1"), fake_alice, fixture_gid("agent")):
            for name, method, target in (
                ("alice-usercred.xml", "ListResources", None),
                ("fixture-slicecred.xml", "Allocate", GCF_SLICE),
                ("bob-delegated-fixture-slicecred.xml", "Allocate", GCF_SLICE),
            ):
                error = refuse(self, self.verifier, caller, [fixture_text(name)], method, target)
                self.assertEqual(error.code, GeniCode.CREDENTIAL_MISMATCH, (name, caller))

    def test_fixture_reports_pass(self) -> None:
        """The synchronous report passes every check of each fixture for its owner."""
        for name, caller in (
            ("alice-usercred.xml", self.alice),
            ("fixture-slicecred.xml", self.alice),
            ("bob-delegated-fixture-slicecred.xml", self.bob),
        ):
            report = self.verifier.verify_credential(fixture_text(name), NOW, caller=caller)
            self.assertTrue(report.ok, report.format())
            self.assertIn("owner = caller", [c.name for c in report.checks])

    def test_delegated_report_names_each_level(self) -> None:
        """The report of the two-level chain checks both signatures and the delegation."""
        report = self.verifier.verify_credential(fixture_text("bob-delegated-fixture-slicecred.xml"), NOW, caller=self.bob)
        names = [c.name for c in report.checks]
        for expected in ("signature ref1", "signature ref0", "signer ref1", "delegation ref1 from ref0", "issuer ref0"):
            self.assertIn(expected, names)

    def test_only_root_matters(self) -> None:
        """With another root (a minted authority), the fixtures' signer is untrusted."""
        verifier = CredentialVerifier(world().roots, clock_at())
        error = refuse(self, verifier, self.alice, [fixture_text("fixture-slicecred.xml")], "Allocate", GCF_SLICE)
        self.assertEqual(error.code, GeniCode.CREDENTIAL_SIGNER_UNTRUSTED)

    def test_altered_copies_rejected(self) -> None:
        """Any edit of a fixture's signed content breaks its signature."""
        edits = [
            ("<name>info</name>", "<name>*</name>"),
            ("2027-12-31T00:00:00Z", "2029-12-31T00:00:00Z"),
            ("<serial>8</serial>", "<serial>9</serial>"),
            ("+slice+fixture</target_urn>", "+slice+fixture </target_urn>"),
        ]
        for old, new in edits:
            text = fixture_text("fixture-slicecred.xml")
            self.assertIn(old, text)
            error = refuse(self, self.verifier, self.alice, [text.replace(old, new, 1)], "Allocate", GCF_SLICE)
            self.assertEqual(error.code, GeniCode.CREDENTIAL_INVALID, (old, error.output))
            self.assertIn("digest", error.output)

    def test_expired_after_expiry(self) -> None:
        """Past its expiry the slice credential is refused as expired."""
        verifier = CredentialVerifier(fixture_roots(), clock_at(parse_time("2028-01-01T00:00:00Z")))
        error = refuse(self, verifier, self.alice, [fixture_text("fixture-slicecred.xml")], "Allocate", GCF_SLICE)
        self.assertEqual(error.code, GeniCode.CREDENTIAL_EXPIRED)
