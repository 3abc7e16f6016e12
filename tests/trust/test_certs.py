"""
Tests for L{geniam.trust.certs} (minting) and L{geniam.trust.identity} (certificate plus key).
"""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from geniam.errors import GeniCode, GeniError
from geniam.trust.certs import (
    CLOCK_SKEW,
    DEFAULT_AUTHORITY_LIFETIME,
    common_name_for,
    issue_certificate,
    make_authority,
    make_identity,
)
from geniam.trust.gid import GID, TrustError, TrustRoots
from geniam.trust.identity import Identity, load_private_key
from tests.trust.test_gid import ALICE_URN, FIXTURES, NOW, fixture_bytes, issue, shared_authority, shared_key

DAY = 24 * 3600


class MintingTests(SynchronousTestCase):
    """Authorities and identities come out as the GENI rules want them."""

    def shared_authority(self) -> None:
        """An authority is self-signed, CA:TRUE, named ...+authority+<name>, with UUID, SKI and AKI."""
        ca = make_authority("geni:gpo:gcf", "ma", now=NOW, private_key=shared_key(0))
        cert = ca.gid.certificate
        self.assertEqual(ca.urn, "urn:publicid:IDN+geni:gpo:gcf+authority+ma")
        self.assertTrue(ca.gid.is_authority)
        self.assertEqual(cert.subject, cert.issuer)
        self.assertIsNotNone(ca.gid.uuid)
        self.assertEqual(ca.gid.chain, ())
        ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
        aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
        self.assertEqual(ski, aki)
        self.assertEqual(cert.signature_hash_algorithm.name, "sha256")  # type: ignore[union-attr]
        self.assertEqual(ca.gid.not_before, NOW - CLOCK_SKEW)
        self.assertEqual(ca.gid.not_after, NOW + DEFAULT_AUTHORITY_LIFETIME)
        self.assertEqual(TrustRoots.from_certificates([ca.gid]).verify(ca.gid, NOW), (cert,))

    def test_generated_key(self) -> None:
        """Without a key given, a fresh RSA 2048 key is made."""
        ca = make_authority("geni:fresh", now=NOW)
        self.assertIsInstance(ca.private_key, rsa.RSAPrivateKey)
        self.assertEqual(ca.private_key.key_size, 2048)  # type: ignore[union-attr]
        self.assertFalse(ca.gid.public_key_matches(shared_authority().gid))

    def test_bad_authority(self) -> None:
        """An authority string that cannot be in a URN is BADARGS."""
        e = self.assertRaises(GeniError, make_authority, "bad authority", now=NOW, private_key=shared_key(0))
        self.assertEqual(e.code, GeniCode.BADARGS)
        self.assertRaises(GeniError, make_identity, shared_authority(), "not-a-urn", now=NOW, private_key=shared_key(1))

    def test_identity(self) -> None:
        """An issued user is CA:FALSE, carries email, UUID, AKI of the issuer and the issuer as chain."""
        ca = shared_authority()
        user = make_identity(
            ca, ALICE_URN, email="alice@example.org", now=NOW, private_key=shared_key(1),
            uuid="12345678-1234-4123-8123-123456789abc", lifetime_seconds=10 * DAY,
        )
        self.assertEqual(user.urn, ALICE_URN)
        self.assertEqual(user.gid.email, "alice@example.org")
        self.assertEqual(user.gid.uuid, "12345678-1234-4123-8123-123456789abc")
        self.assertFalse(user.gid.is_authority)
        self.assertEqual(user.gid.chain, (ca.gid.certificate,))
        aki = user.gid.certificate.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
        self.assertEqual(aki.key_identifier, ca.gid.subject_key_id)
        self.assertEqual(user.gid.certificate.issuer, ca.gid.certificate.subject)
        self.assertEqual(user.gid.not_after, NOW + 10 * DAY)

    def test_chain_grows(self) -> None:
        """An identity issued by a sub-authority carries the sub-authority and the root."""
        root = shared_authority("geni:gpo", key_index=5)
        sub = issue(root, "urn:publicid:IDN+geni:gpo:gcf+authority+sa", key_index=2, is_authority=True)
        user = issue(sub, ALICE_URN)
        self.assertEqual(user.gid.chain, (sub.gid.certificate, root.gid.certificate))
        self.assertEqual(GID.from_pem(user.certificate_pem()).chain, user.gid.chain)

    def test_aggregate(self) -> None:
        """An aggregate, as gen-certs --am makes it, is an authority with an ...+authority+am URN."""
        am = issue(shared_authority(), "urn:publicid:IDN+geni:gpo:gcf:am1+authority+am", is_authority=True)
        self.assertTrue(am.gid.is_authority)
        self.assertEqual(am.gid.parsed_urn.authority, "geni:gpo:gcf:am1")  # type: ignore[union-attr]

    def test_dns_names(self) -> None:
        """Host names and IP addresses go into the subjectAltName next to the URN."""
        am = issue(shared_authority(), "urn:publicid:IDN+geni:gpo:gcf:am1+authority+am", dns_names=["am.example.org", "::1"])
        san = am.gid.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        self.assertEqual(san.get_values_for_type(x509.DNSName), ["am.example.org"])
        self.assertEqual([str(ip) for ip in san.get_values_for_type(x509.IPAddress)], ["::1"])
        self.assertEqual(am.urn, "urn:publicid:IDN+geni:gpo:gcf:am1+authority+am")

    def test_common_name(self) -> None:
        """The subject CN is written the way the GENI tools write it, cut to 64 characters."""
        self.assertEqual(common_name_for(ALICE_URN), "geni//gpo//gcf.user.alice")
        self.assertEqual(common_name_for("urn:publicid:IDN+geni:gpo:gcf:am1+authority+am"), "geni//gpo//gcf//am1.authority.am")
        self.assertEqual(len(common_name_for("urn:publicid:IDN+" + "a" * 80 + "+user+x")), 64)

    def test_issue_without_policy(self) -> None:
        """issue_certificate signs whatever it is told (so that tests can forge), self-signed without issuer."""
        cert = issue_certificate(shared_key(3), "urn:publicid:IDN+geni:x+user+y", now=NOW, is_authority=True)
        self.assertEqual(cert.subject, cert.issuer)
        self.assertTrue(GID(cert).is_authority)


class IdentityTests(SynchronousTestCase):
    """Loading and using identities."""

    def test_fixture_files(self) -> None:
        """The gcf fixture certificate and key files load into an identity with the chain."""
        alice = Identity.from_files(FIXTURES.child("alice-cert.pem").path, FIXTURES.child("alice-key.pem").path)
        self.assertEqual(alice.urn, ALICE_URN)
        self.assertEqual(len(alice.gid.chain), 1)
        self.assertEqual(alice.certificate_pem(), alice.gid.to_pem())

    def test_key_mismatch(self) -> None:
        """A key that is not the certificate's is refused."""
        e = self.assertRaises(
            TrustError, Identity.from_pem, fixture_bytes("alice-cert.pem"), fixture_bytes("bob-key.pem")
        )
        self.assertEqual(e.code, GeniCode.CREDENTIAL_INVALID)

    def test_round_trip(self) -> None:
        """certificate_pem and private_key_pem load back into the same identity."""
        user = issue(shared_authority(), ALICE_URN)
        again = Identity.from_pem(user.certificate_pem(), user.private_key_pem())
        self.assertEqual(again.gid, user.gid)
        self.assertEqual(again.private_key_pem(), user.private_key_pem())
        self.assertIn(b"BEGIN PRIVATE KEY", user.private_key_pem())

    def test_one_file(self) -> None:
        """A single file holding key and certificates serves as both."""
        user = issue(shared_authority(), ALICE_URN)
        combined = FilePath(self.mktemp())
        combined.setContent(user.private_key_pem() + user.certificate_pem())
        loaded = Identity.from_files(combined.path)
        self.assertEqual(loaded.gid, user.gid)

    def test_key_formats(self) -> None:
        """Traditional RSA keys and encrypted keys (with the password) load."""
        key = shared_key(1)
        traditional = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )
        encrypted = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pw")
        )
        self.assertIn(b"BEGIN RSA PRIVATE KEY", traditional)
        self.assertEqual(load_private_key(traditional).private_numbers(), key.private_numbers())  # type: ignore[union-attr]
        self.assertEqual(load_private_key(encrypted, b"pw").private_numbers(), key.private_numbers())  # type: ignore[union-attr]
        self.assertRaises(TrustError, load_private_key, encrypted, b"wrong")
        self.assertRaises(TrustError, load_private_key, b"no key here")

    def test_missing_file(self) -> None:
        """A missing file is an ERROR naming it."""
        e = self.assertRaises(TrustError, Identity.from_files, "/nonexistent/cert.pem", "/nonexistent/key.pem")
        self.assertEqual(e.code, GeniCode.ERROR)
        self.assertIn("/nonexistent/cert.pem", e.output)

    def test_immutable(self) -> None:
        """An identity's parts cannot be swapped."""
        user = issue(shared_authority(), ALICE_URN)
        self.assertRaises(AttributeError, setattr, user, "private_key", shared_key(2))
