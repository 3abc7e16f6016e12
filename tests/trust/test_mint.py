"""
Tests for L{geniam.trust.mint}: everything minted verifies (round trips),
has the reference layout, and the delegation rules are enforced when minting.
"""

from __future__ import annotations

from lxml import etree
from twisted.trial.unittest import SynchronousTestCase

from geniam.errors import GeniCode, GeniError
from geniam.timeutil import format_time
from geniam.trust import xmldsig
from geniam.trust.credential import parse_credential
from geniam.trust.mint import (
    DEFAULT_SLICE_PRIVILEGES,
    DEFAULT_USER_PRIVILEGES,
    delegate_credential,
    issue_credential,
    make_slice,
    slice_credential,
    user_credential,
)
from geniam.trust.speaksfor import issue_speaks_for, key_id
from geniam.trust.verifier import CredentialVerifier
from tests.trust.test_credential_fixtures import (
    DAY,
    GCF_SLICE,
    NOW,
    SLICE_URN,
    YEAR,
    authorize,
    clock_at,
    fixture_gid,
    fixture_identity,
    fixture_roots,
    fixture_text,
    world,
)


def verifier() -> CredentialVerifier:
    """A verifier trusting the test SA."""
    return CredentialVerifier(world().roots, clock_at())


class RoundTripTests(SynchronousTestCase):
    """Our verifier accepts everything we mint."""

    def test_user_credential(self) -> None:
        """A user credential: owner = target = user, the default user privileges."""
        w = world()
        xml = user_credential(w.sa, w.bob.gid, NOW + YEAR)
        credential = parse_credential(xml).credential
        self.assertEqual(credential.owner_urn, w.bob.gid.urn)
        self.assertEqual(credential.target_urn, w.bob.gid.urn)
        self.assertEqual([(p.name, p.can_delegate) for p in credential.privileges], list(DEFAULT_USER_PRIVILEGES))
        authorize(self, verifier(), w.bob.gid, [xml], "ListResources")

    def test_slice_credential_with_new_slice(self) -> None:
        """Given a URN, a slice certificate issued by the SA is minted and embedded."""
        w = world()
        xml = slice_credential(w.sa, w.bob.gid, "urn:publicid:IDN+geni:example+slice+fresh", NOW + 30 * DAY, now=NOW)
        credential = parse_credential(xml).credential
        assert credential.target_gid is not None
        self.assertEqual(credential.target_gid.urn, "urn:publicid:IDN+geni:example+slice+fresh")
        self.assertEqual(credential.target_gid.certificate.issuer, w.sa.gid.certificate.subject)
        self.assertEqual([(p.name, p.can_delegate) for p in credential.privileges], list(DEFAULT_SLICE_PRIVILEGES))
        authorize(self, verifier(), w.bob.gid, [xml], "Allocate", "urn:publicid:IDN+geni:example+slice+fresh")

    def test_slice_credential_needs_now(self) -> None:
        """Minting a slice certificate needs the time; a non-slice URN is refused."""
        w = world()
        self.assertRaises(GeniError, slice_credential, w.sa, w.bob.gid, SLICE_URN, NOW + DAY)
        error = self.assertRaises(GeniError, make_slice, w.sa, w.bob.gid.urn, NOW, NOW + DAY)
        self.assertEqual(error.code, GeniCode.BADARGS)

    def test_issue_variants(self) -> None:
        """Versions 2 and 3, RSA-SHA256 and RSA-SHA1 all verify; the serial is kept."""
        w = world()
        for version in (2, 3):
            for algorithm in ("sha256", "sha1"):
                xml = issue_credential(
                    w.sa, w.alice.gid, w.slice.gid, [("control", False)], NOW + DAY, serial="42", version=version, algorithm=algorithm
                )
                self.assertEqual(parse_credential(xml).credential.serial, "42")
                authorize(self, verifier(), w.alice.gid, [xml], "Allocate", SLICE_URN)

    def test_issue_refuses_bad_arguments(self) -> None:
        """Unknown versions and repeated privileges are refused."""
        w = world()
        self.assertRaises(GeniError, issue_credential, w.sa, w.alice.gid, w.slice.gid, [("a", False)], NOW, version=4)
        self.assertRaises(GeniError, issue_credential, w.sa, w.alice.gid, w.slice.gid, [("a", False), ("A", True)], NOW)

    def test_expiry_to_the_second(self) -> None:
        """The expiry is written as RFC 3339 UTC, to the second."""
        w = world()
        xml = user_credential(w.sa, w.bob.gid, NOW + 0.75)
        self.assertIn(f"<expires>{format_time(NOW)}</expires>", xml)

    def test_delegation_defaults(self) -> None:
        """By default every delegatable privilege is passed on, not further delegatable, same expiry."""
        w = world()
        parent = slice_credential(w.sa, w.alice.gid, w.slice.gid, NOW + YEAR)
        child = parse_credential(delegate_credential(parent, w.alice, w.bob.gid)).credential
        self.assertEqual([p.name for p in child.privileges], [name for name, _ in DEFAULT_SLICE_PRIVILEGES])
        self.assertFalse(any(p.can_delegate for p in child.privileges))
        self.assertEqual(child.expires, NOW + YEAR)
        self.assertEqual([level.xml_id for level in child.chain()], ["ref1", "ref0"])

    def test_delegation_round_trip(self) -> None:
        """A delegated subset with a shorter expiry verifies for the new owner."""
        w = world()
        parent = slice_credential(w.sa, w.alice.gid, w.slice.gid, NOW + YEAR)
        child = delegate_credential(parent, w.alice, w.bob.gid, [("info", False), ("control", True)], NOW + DAY)
        grant = authorize(self, verifier(), w.bob.gid, [child], "Allocate", SLICE_URN)
        self.assertEqual(grant.expires, NOW + DAY)
        self.assertEqual(grant.privileges, frozenset({"info", "control"}))
        grandchild = delegate_credential(child, w.bob, w.carol.gid, [("control", False)])
        self.assertEqual(authorize(self, verifier(), w.carol.gid, [grandchild], "Renew", SLICE_URN).expires, NOW + DAY)

    def test_delegation_rules_enforced(self) -> None:
        """Minting refuses delegations the verifier would refuse."""
        w = world()
        parent = issue_credential(w.sa, w.alice.gid, w.slice.gid, [("control", True), ("info", False)], NOW + DAY)
        for kwargs, reason in (
            ({"delegator": w.carol}, "only the owner"),
            ({"privileges": [("embed", False)]}, "not delegatable"),
            ({"privileges": [("info", False)]}, "not delegatable"),
            ({"privileges": []}, "nothing to delegate"),
            ({"expires": NOW + 2 * DAY}, "outlive"),
        ):
            arguments = {"delegator": w.alice, "privileges": [("control", False)], "expires": None}
            arguments.update(kwargs)
            error = self.assertRaises(
                GeniError,
                delegate_credential,
                parent,
                arguments["delegator"],
                w.bob.gid,
                arguments["privileges"],
                arguments["expires"],
            )
            self.assertEqual(error.code, GeniCode.BADARGS)
            self.assertIn(reason, error.output)

    def test_delegating_abac_refused(self) -> None:
        """Only privilege credentials can be delegated."""
        w = world()
        error = self.assertRaises(
            GeniError, delegate_credential, issue_speaks_for(w.alice, w.tool.gid, NOW + DAY), w.alice, w.bob.gid
        )
        self.assertIn("only privilege credentials", error.output)

    def test_speaks_for_round_trip(self) -> None:
        """A minted speaks-for credential makes the tool act as the user."""
        w = world()
        xml = issue_speaks_for(w.carol, w.tool.gid, NOW + DAY)
        statement = parse_credential(xml).credential.abac
        assert statement is not None
        self.assertEqual(statement.head.keyid, key_id(w.carol.gid))
        self.assertEqual(statement.tails[0].keyid, key_id(w.tool.gid))
        credential = user_credential(w.sa, w.carol.gid, NOW + DAY)
        grant = authorize(
            self, verifier(), w.tool.gid, [xml, credential], "ListResources", None, {"geni_speaking_for": w.carol.gid.urn}
        )
        self.assertEqual(grant.caller_urn, w.carol.gid.urn)


class LayoutTests(SynchronousTestCase):
    """Minted documents follow the reference layout."""

    def test_reference_layout(self) -> None:
        """Root attributes, credential id, element order and the signature in <signatures>."""
        w = world()
        root = etree.fromstring(user_credential(w.sa, w.bob.gid, NOW + DAY).encode())
        self.assertEqual(root.tag, "signed-credential")
        self.assertIn("{http://www.w3.org/2001/XMLSchema-instance}noNamespaceSchemaLocation", root.attrib)
        credential = root[0]
        self.assertEqual(credential.get(xmldsig.XML_ID), "ref0")
        self.assertEqual(
            [child.tag for child in credential],
            ["type", "serial", "owner_gid", "owner_urn", "target_gid", "target_urn", "uuid", "expires", "privileges"],
        )
        self.assertEqual(root[1].tag, "signatures")
        signature = root[1][0]
        self.assertEqual(signature.get(xmldsig.XML_ID), "Sig_ref0")
        certificates = signature.findall(".//{%s}X509Certificate" % xmldsig.DSIG_NS)
        self.assertEqual(len(certificates), 1 + len(w.sa.gid.chain))

    def test_delegation_layout(self) -> None:
        """The parent goes in <parent>, its signature is copied, the delegator's chain is in KeyInfo."""
        w = world()
        parent = slice_credential(w.sa, w.alice.gid, w.slice.gid, NOW + DAY)
        root = etree.fromstring(delegate_credential(parent, w.alice, w.bob.gid).encode())
        self.assertEqual(root[0].find("parent/credential").get(xmldsig.XML_ID), "ref0")  # type: ignore[union-attr]
        ids = [s.get(xmldsig.XML_ID) for s in root.find("signatures")]  # type: ignore[union-attr]
        self.assertEqual(ids, ["Sig_ref0", "Sig_ref1"])
        delegator = root.find("signatures")[1]  # type: ignore[index]
        self.assertEqual(len(delegator.findall(".//{%s}X509Certificate" % xmldsig.DSIG_NS)), 2)


class ReferenceInteropTests(SynchronousTestCase):
    """Minting with the gcf identities reproduces what the reference tools signed."""

    def test_delegation_matches_reference(self) -> None:
        """alice delegating the fixture slice credential to bob (SHA-1) signs the same bytes as delegateSliceCred."""
        alice = fixture_identity("alice")
        bob = fixture_gid("bob")
        ours = delegate_credential(fixture_text("fixture-slicecred.xml"), alice, bob, algorithm="sha1")
        theirs = parse_credential(fixture_text("bob-delegated-fixture-slicecred.xml"))
        mine = parse_credential(ours)
        for a, b in zip(mine.levels(), theirs.levels()):
            self.assertEqual(a.xml_id, b.xml_id)
            self.assertEqual(a.signature.signed_info, b.signature.signed_info)
            self.assertEqual(a.signature.signature_value, b.signature.signature_value)
        verifier = CredentialVerifier(fixture_roots(), clock_at())
        authorize(self, verifier, bob, [ours], "Allocate", GCF_SLICE)

    def test_reserialised_reference_still_verifies(self) -> None:
        """Re-serialising a reference credential (as delegation does with the parent) keeps it valid."""
        from geniam.trust.credential import serialize_document

        root = etree.fromstring(fixture_text("fixture-slicecred.xml").encode())
        again = serialize_document(root)
        self.assertNotEqual(again, fixture_text("fixture-slicecred.xml"))
        verifier = CredentialVerifier(fixture_roots(), clock_at())
        authorize(self, verifier, fixture_gid("alice"), [again], "Allocate", GCF_SLICE)
