"""
Tests for L{geniam.trust.speaksfor}: a tool acting for a user with a
C{geni_abac} speaks-for credential, minted and verified.
"""

from __future__ import annotations

from functools import lru_cache

from cryptography import x509
from twisted.trial.unittest import SynchronousTestCase

from geniam.errors import GeniCode, GeniError
from geniam.trust.certs import make_identity
from geniam.trust.credential import as_struct, parse_credential
from geniam.trust.mint import slice_credential
from geniam.trust.speaksfor import issue_speaks_for, key_id, verify_speaks_for
from geniam.trust.verifier import CredentialVerifier
from tests.trust.test_credential_fixtures import (
    DAY,
    NOW,
    SLICE_URN,
    YEAR,
    authorize,
    clock_at,
    fixture_gid,
    fixture_identity,
    fixture_roots,
    refuse,
    world,
)


@lru_cache(maxsize=None)
def alice_lets_tool() -> str:
    """alice lets the portal speak for her for a year."""
    w = world()
    return issue_speaks_for(w.alice, w.tool.gid, NOW + YEAR)


@lru_cache(maxsize=None)
def alice_slice() -> str:
    """alice's slice credential for exp1."""
    w = world()
    return slice_credential(w.sa, w.alice.gid, w.slice.gid, NOW + YEAR)


def speaking_for(urn: str | None) -> dict[str, str]:
    """The options of a speaks-for call."""
    return {"geni_speaking_for": urn} if urn else {}


class KeyIdTests(SynchronousTestCase):
    """Key identifiers are the SHA-1 of the public key bits, in hex."""

    def test_key_id(self) -> None:
        """key_id equals the RFC 5280 method-1 identifier of the key."""
        gid = fixture_gid("alice")
        expected = x509.SubjectKeyIdentifier.from_public_key(gid.certificate.public_key()).digest.hex()  # type: ignore[arg-type]
        self.assertEqual(key_id(gid), expected)
        self.assertEqual(len(key_id(gid)), 40)


class VerifySpeaksForTests(SynchronousTestCase):
    """verify_speaks_for checks each rule of the statement."""

    def verify(self, xml: str, tool: object = None, user_urn: str | None = None, at: float = NOW) -> object:
        """Verify C{xml} for the portal (or C{tool}) and alice (or C{user_urn})."""
        w = world()
        return verify_speaks_for(
            parse_credential(xml), tool or w.tool.gid, user_urn or w.alice.gid.urn, w.roots, at  # type: ignore[arg-type]
        )

    def assert_rejected(self, code: GeniCode, reason: str, xml: str, **kwargs: object) -> None:
        """Verification fails with C{code}, mentioning C{reason}."""
        error = self.assertRaises(GeniError, self.verify, xml, **kwargs)
        self.assertEqual(error.code, code, error.output)
        self.assertIn(reason, error.output)

    def test_valid(self) -> None:
        """A credential signed by alice naming the portal returns alice's GID."""
        user = self.verify(alice_lets_tool())
        self.assertEqual(user.urn, world().alice.gid.urn)  # type: ignore[attr-defined]

    def test_sha1(self) -> None:
        """RSA-SHA1 speaks-for credentials verify too."""
        w = world()
        self.verify(issue_speaks_for(w.alice, w.tool.gid, NOW + DAY, algorithm="sha1"))

    def test_signed_by_wrong_user(self) -> None:
        """bob's credential does not let the tool speak for alice."""
        w = world()
        xml = issue_speaks_for(w.bob, w.tool.gid, NOW + YEAR)
        self.assert_rejected(GeniCode.CREDENTIAL_MISMATCH, "not by urn:publicid:IDN+geni:example+user+alice", xml)

    def test_for_another_tool(self) -> None:
        """A credential naming another tool is not the caller's."""
        w = world()
        self.assert_rejected(GeniCode.CREDENTIAL_MISMATCH, "another tool", alice_lets_tool(), tool=w.other_tool.gid)

    def test_expired(self) -> None:
        """An expired speaks-for credential is refused."""
        self.assert_rejected(GeniCode.CREDENTIAL_EXPIRED, "expired", alice_lets_tool(), at=NOW + 2 * YEAR)

    def test_untrusted_user(self) -> None:
        """A user certificate that does not chain to the roots is refused."""
        w = world()
        eve = make_identity(w.impostor, w.alice.gid.urn or "", now=NOW - DAY)
        xml = issue_speaks_for(eve, w.tool.gid, NOW + YEAR)
        self.assert_rejected(GeniCode.CREDENTIAL_SIGNER_UNTRUSTED, "signer not trusted", xml)

    def test_untrusted_tool(self) -> None:
        """The tool's own certificate must chain to the roots."""
        w = world()
        rogue = make_identity(w.impostor, "urn:publicid:IDN+geni:example+tool+rogue", now=NOW - DAY)
        xml = issue_speaks_for(w.alice, rogue.gid, NOW + YEAR)
        self.assert_rejected(GeniCode.CREDENTIAL_SIGNER_UNTRUSTED, "tool certificate not trusted", xml, tool=rogue.gid)

    def test_altered(self) -> None:
        """Editing the statement (swapping in another tool's key) breaks the signature."""
        w = world()
        xml = alice_lets_tool().replace(key_id(w.tool.gid), key_id(w.other_tool.gid))
        self.assert_rejected(GeniCode.CREDENTIAL_INVALID, "digest", xml, tool=w.other_tool.gid)

    def test_wrong_role(self) -> None:
        """The head role must be speaks_for_<user keyid>, signed as such."""
        w = world()
        xml = issue_speaks_for(w.alice, w.tool.gid, NOW + YEAR)
        user_key = key_id(w.alice.gid)
        changed = xml.replace(f"<role>speaks_for_{user_key}</role>", f"<role>admin_{user_key}</role>")
        self.assertRaises(GeniError, self.verify, changed)

    def test_not_abac(self) -> None:
        """A privilege credential is no speaks-for credential."""
        self.assert_rejected(GeniCode.CREDENTIAL_INVALID, "not an ABAC credential", alice_slice())

    def test_two_tails(self) -> None:
        """A statement with two tails is refused (checked before the tool)."""
        from geniam.trust.credential import AbacStatement, SignedCredential
        import dataclasses

        w = world()
        signed = parse_credential(alice_lets_tool())
        statement = signed.credential.abac
        assert statement is not None
        doubled = dataclasses.replace(statement, tails=statement.tails * 2)
        credential = dataclasses.replace(signed.credential, abac=doubled)
        forged = SignedCredential(credential, signed.kind, signed.version, signed.digest, signed.document)
        self.assertIsInstance(doubled, AbacStatement)
        error = self.assertRaises(GeniError, verify_speaks_for, forged, w.tool.gid, w.alice.gid.urn, w.roots, NOW)
        self.assertIn("exactly one tail", error.output)


class AuthorizeSpeaksForTests(SynchronousTestCase):
    """authorize applies speaks-for: the user becomes the caller."""

    def setUp(self) -> None:
        self.verifier = CredentialVerifier(world().roots, clock_at())

    def test_tool_acts_for_user(self) -> None:
        """With alice's speaks-for credential the portal uses alice's slice credential as alice."""
        w = world()
        grant = authorize(
            self,
            self.verifier,
            w.tool.gid,
            [as_struct(alice_lets_tool(), "geni_abac"), as_struct(alice_slice())],
            "Allocate",
            SLICE_URN,
            speaking_for(w.alice.gid.urn),
        )
        self.assertEqual(grant.caller_urn, w.alice.gid.urn)
        self.assertIs(grant.tool, w.tool.gid)
        assert grant.speaks_for is not None
        self.assertEqual(grant.speaks_for.user.urn, w.alice.gid.urn)

    def test_bare_string_speaks_for(self) -> None:
        """A speaks-for credential sent as a bare string is recognised by its type."""
        w = world()
        grant = authorize(
            self, self.verifier, w.tool.gid, [alice_lets_tool(), alice_slice()], "Allocate", SLICE_URN,
            speaking_for(w.alice.gid.urn),
        )
        self.assertEqual(grant.caller_urn, w.alice.gid.urn)

    def test_cached(self) -> None:
        """The speaks-for credential is remembered like the others."""
        w = world()
        credentials = [as_struct(alice_lets_tool(), "geni_abac"), as_struct(alice_slice())]
        authorize(self, self.verifier, w.tool.gid, credentials, "Allocate", SLICE_URN, speaking_for(w.alice.gid.urn))
        authorize(self, self.verifier, w.tool.gid, credentials, "Allocate", SLICE_URN, speaking_for(w.alice.gid.urn))
        self.assertEqual(self.verifier.cache_hits, 2)

    def test_without_option_tool_is_caller(self) -> None:
        """Without geni_speaking_for the tool is the caller, and alice's slice credential is not its own."""
        w = world()
        error = refuse(
            self, self.verifier, w.tool.gid, [as_struct(alice_lets_tool(), "geni_abac"), alice_slice()], "Allocate", SLICE_URN
        )
        self.assertEqual(error.code, GeniCode.CREDENTIAL_MISMATCH)

    def test_wrong_user_tool_stays_caller(self) -> None:
        """A speaks-for credential by bob does not make the tool alice; the refusal says why."""
        w = world()
        error = refuse(
            self,
            self.verifier,
            w.tool.gid,
            [issue_speaks_for(w.bob, w.tool.gid, NOW + YEAR), alice_slice()],
            "Allocate",
            SLICE_URN,
            speaking_for(w.alice.gid.urn),
        )
        self.assertEqual(error.code, GeniCode.CREDENTIAL_MISMATCH)
        self.assertIn("speaks-for credential rejected", error.output)

    def test_other_tool_cannot_use_it(self) -> None:
        """Another tool presenting alice's speaks-for credential stays itself."""
        w = world()
        error = refuse(
            self, self.verifier, w.other_tool.gid, [alice_lets_tool(), alice_slice()], "Allocate", SLICE_URN,
            speaking_for(w.alice.gid.urn),
        )
        self.assertEqual(error.code, GeniCode.CREDENTIAL_MISMATCH)
        self.assertIn("another tool", error.output)

    def test_option_without_credential(self) -> None:
        """geni_speaking_for without a speaks-for credential leaves the tool as caller."""
        w = world()
        error = refuse(self, self.verifier, w.tool.gid, [alice_slice()], "Allocate", SLICE_URN, speaking_for(w.alice.gid.urn))
        self.assertIn("no speaks-for credential presented", error.output)

    def test_bad_option(self) -> None:
        """geni_speaking_for must be a URN string."""
        w = world()
        error = refuse(self, self.verifier, w.tool.gid, [alice_slice()], "Allocate", SLICE_URN, {"geni_speaking_for": 5})  # type: ignore[dict-item]
        self.assertEqual(error.code, GeniCode.BADARGS)

    def test_abac_alone_grants_nothing(self) -> None:
        """A speaks-for credential is no slice credential."""
        w = world()
        error = refuse(
            self, self.verifier, w.tool.gid, [alice_lets_tool()], "Allocate", SLICE_URN, speaking_for(w.alice.gid.urn)
        )
        self.assertEqual(error.code, GeniCode.FORBIDDEN)


class GcfSpeaksForTests(SynchronousTestCase):
    """Speaks-for minted with the reference fixture identities."""

    def test_agent_speaks_for_alice(self) -> None:
        """alice (gcf fixture) lets the gateway agent use her fixture slice credential."""
        from tests.trust.test_credential_fixtures import GCF_SLICE, fixture_text

        alice = fixture_identity("alice")
        agent = fixture_gid("agent")
        verifier = CredentialVerifier(fixture_roots(), clock_at())
        xml = issue_speaks_for(alice, agent, NOW + DAY, algorithm="sha1")
        grant = authorize(
            self, verifier, agent, [xml, fixture_text("fixture-slicecred.xml")], "Allocate", GCF_SLICE,
            speaking_for(alice.gid.urn),
        )
        self.assertEqual(grant.caller_urn, alice.gid.urn)
