"""
Tests for L{geniam.trust.gid}: parsing GIDs and verifying them against trust roots.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from hypothesis import given
from hypothesis import strategies as st
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from geniam.errors import GeniCode, GeniError
from geniam.timeutil import parse_time
from geniam.trust.certs import generate_key, make_authority, make_identity
from geniam.trust.gid import GID, TrustError, TrustRoots
from geniam.trust.identity import Identity
from tests.fixturepaths import GCF

FIXTURES = FilePath(str(GCF))
NOW = parse_time("2026-11-22T12:00:00Z")
"""A time inside the validity window of every fixture."""

DAY = 24 * 3600
ALICE_URN = "urn:publicid:IDN+geni:gpo:gcf+user+alice"


def fixture_bytes(name: str) -> bytes:
    """Return the contents of a file of the gcf fixtures."""
    return FIXTURES.child(name).getContent()


def fixture_gid(name: str) -> GID:
    """Load C{<name>-cert.pem} (or C{ch-cert.pem}) of the gcf fixtures."""
    return GID.from_pem(fixture_bytes(f"{name}-cert.pem"))


def fixture_identity(name: str) -> Identity:
    """Load a gcf fixture identity (certificate with chain, and key)."""
    return Identity.from_files(FIXTURES.child(f"{name}-cert.pem").path, FIXTURES.child(f"{name}-key.pem").path)


def fixture_roots() -> TrustRoots:
    """The gcf clearinghouse certificate as the only root."""
    return TrustRoots.from_certificates([fixture_gid("ch")])


@lru_cache(maxsize=None)
def shared_key(index: int) -> rsa.RSAPrivateKey:
    """A 2048-bit RSA key shared by every test of the process that asks for C{index}."""
    return generate_key()



@lru_cache(maxsize=None)
def shared_authority(authority: str = "geni:gpo:gcf", key_index: int = 0, now: float = NOW) -> Identity:
    """A cached self-signed authority over C{authority}."""
    return make_authority(authority, now=now, private_key=shared_key(key_index))



def issue(issuer: Identity, urn: str, key_index: int = 1, **kwargs: Any) -> Identity:
    """Issue an identity with a shared key, valid from L{NOW} unless told otherwise."""
    kwargs.setdefault("now", NOW)
    return make_identity(issuer, urn, private_key=shared_key(key_index), **kwargs)


_SHA256_RSA = bytes.fromhex("2a864886f70d01010b")
_SHA1_RSA = bytes.fromhex("2a864886f70d010105")


def resign_sha1(cert: x509.Certificate, issuer: Identity) -> x509.Certificate:
    """
    Return C{cert} signed again by C{issuer} with RSA-SHA1.

    The certificate builder refuses SHA-1, so the two algorithm identifiers
    are rewritten in place (both OIDs have the same length) and the
    signature is replaced.
    """
    der, tbs = cert.public_bytes(serialization.Encoding.DER), cert.tbs_certificate_bytes
    new_tbs = tbs.replace(_SHA256_RSA, _SHA1_RSA)
    key = issuer.private_key
    assert isinstance(key, rsa.RSAPrivateKey)
    signature = key.sign(new_tbs, padding.PKCS1v15(), hashes.SHA1())
    assert len(signature) == len(cert.signature)
    new_der = der.replace(tbs, new_tbs).replace(_SHA256_RSA, _SHA1_RSA)[: -len(signature)] + signature
    return x509.load_der_x509_certificate(new_der)


class TrustErrorTests(SynchronousTestCase):
    """L{TrustError} is a L{GeniError} with a trust-related default code."""

    def test_default_code(self) -> None:
        """Without a code, a TrustError reports CREDENTIAL_SIGNER_UNTRUSTED and the reason."""
        e = TrustError("not trusted")
        self.assertIsInstance(e, GeniError)
        self.assertEqual(e.code, GeniCode.CREDENTIAL_SIGNER_UNTRUSTED)
        self.assertEqual(e.output, "not trusted")
        self.assertEqual(e.as_struct()["code"]["geni_code"], 23)

    def test_either_argument_order(self) -> None:
        """The GeniError argument order (code, reason) gives the same error."""
        a = TrustError("expired", GeniCode.CREDENTIAL_EXPIRED)
        b = TrustError(GeniCode.CREDENTIAL_EXPIRED, "expired")
        self.assertEqual((a.code, a.output), (b.code, b.output))
        self.assertEqual((a.code, a.output), (GeniCode.CREDENTIAL_EXPIRED, "expired"))


class GIDParsingTests(SynchronousTestCase):
    """L{GID.from_pem} reads the certificates the GENI tools write."""

    def test_user_fixture(self) -> None:
        """alice's PEM gives her URN, UUID, a CA:FALSE certificate and the CA as chain."""
        gid = fixture_gid("alice")
        self.assertEqual(gid.urn, ALICE_URN)
        self.assertEqual(gid.uuid, "47df717a-0293-4ff0-9c86-79ce6ed7e44e")
        self.assertIsNone(gid.email)
        self.assertFalse(gid.is_authority)
        self.assertEqual(len(gid.chain), 1)
        self.assertEqual(gid.chain[0], fixture_gid("ch").certificate)
        self.assertEqual(gid.parsed_urn.name, "alice")  # type: ignore[union-attr]

    def test_aggregate_fixture(self) -> None:
        """An aggregate certificate is an authority with an authority+am URN."""
        gid = fixture_gid("am1")
        self.assertEqual(gid.urn, "urn:publicid:IDN+geni:gpo:gcf:am1+authority+am")
        self.assertTrue(gid.is_authority)

    def test_string_and_indented_pem(self) -> None:
        """PEM given as text, or with indented lines as inside XML, parses the same."""
        pem = fixture_bytes("alice-cert.pem")
        indented = b"\n".join(b"    " + line for line in pem.splitlines())
        self.assertEqual(GID.from_pem(pem.decode("ascii")), fixture_gid("alice"))
        self.assertEqual(GID.from_pem(indented), fixture_gid("alice"))

    def test_garbage(self) -> None:
        """Non-PEM input, an empty certificate block or a mangled one are CREDENTIAL_INVALID."""
        pem = fixture_bytes("ch-cert.pem")
        mangled = pem.replace(pem.splitlines()[3], b"A" * 64)
        for data in (
            b"hello",
            "",
            b"-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n",
            mangled,
        ):
            e = self.assertRaises(TrustError, GID.from_pem, data)
            self.assertEqual(e.code, GeniCode.CREDENTIAL_INVALID)

    def test_too_many_certificates(self) -> None:
        """A PEM with an absurd number of certificates is refused."""
        e = self.assertRaises(TrustError, GID.from_pem, fixture_bytes("ch-cert.pem") * 40)
        self.assertEqual(e.code, GeniCode.CREDENTIAL_INVALID)
        self.assertIn("too many", e.output)

    def test_wrong_type(self) -> None:
        """Something that is not text is a CREDENTIAL_INVALID error, not a crash."""
        e = self.assertRaises(TrustError, GID.from_pem, 42)
        self.assertEqual(e.code, GeniCode.CREDENTIAL_INVALID)

    @given(st.binary(max_size=300))
    def test_arbitrary_bytes(self, data: bytes) -> None:
        """Arbitrary bytes, with or without PEM armour, either parse or raise TrustError."""
        for text in (data, b"-----BEGIN CERTIFICATE-----\n" + data + b"\n-----END CERTIFICATE-----\n"):
            try:
                GID.from_pem(text)
            except TrustError as e:
                self.assertEqual(e.code, GeniCode.CREDENTIAL_INVALID)

    def test_to_pem_round_trip(self) -> None:
        """to_pem gives back the certificate and, unless told not to, the chain."""
        gid = fixture_gid("alice")
        self.assertEqual(GID.from_pem(gid.to_pem()), gid)
        bare = GID.from_pem(gid.to_pem(with_chain=False))
        self.assertEqual(bare.chain, ())
        self.assertEqual(bare.fingerprint, gid.fingerprint)
        self.assertNotEqual(bare, gid)

    def test_from_certificate_and_der(self) -> None:
        """from_certificate and from_der wrap parsed certificates and DER."""
        gid = fixture_gid("alice")
        self.assertEqual(GID.from_certificate(gid.certificate, gid.chain), gid)
        self.assertEqual(GID.from_der(gid.to_der(), gid.chain), gid)
        self.assertRaises(TrustError, GID.from_der, b"\x30\x03junk")

    def test_fingerprint(self) -> None:
        """The fingerprint is the SHA-256 of the DER certificate."""
        gid = fixture_gid("bob")
        self.assertEqual(gid.fingerprint, hashlib.sha256(gid.to_der()).digest())

    def test_subject_key_id_without_extension(self) -> None:
        """Without a subjectKeyIdentifier the key id is SHA-1 of the public key bits (RFC 5280 method 1)."""
        gid = fixture_gid("alice")
        self.assertRaises(
            x509.ExtensionNotFound,
            gid.certificate.extensions.get_extension_for_class,
            x509.SubjectKeyIdentifier,
        )
        pkcs1 = gid.certificate.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.PKCS1
        )
        self.assertEqual(gid.subject_key_id, hashlib.sha1(pkcs1).digest())
        self.assertEqual(gid.subject_key_id_hex, hashlib.sha1(pkcs1).hexdigest())

    def test_subject_key_id_from_extension(self) -> None:
        """With a subjectKeyIdentifier extension its value is the key id."""
        ski = x509.SubjectKeyIdentifier(b"\x01" * 20)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(x509.Name([]))
            .public_key(shared_key(0).public_key())
            .serial_number(1)
            .not_valid_before(fixture_gid("ch").certificate.not_valid_before_utc)
            .not_valid_after(fixture_gid("ch").certificate.not_valid_after_utc)
            .add_extension(ski, critical=False)
            .sign(shared_key(0), hashes.SHA256())
        )
        self.assertEqual(GID(cert).subject_key_id, b"\x01" * 20)

    def test_email(self) -> None:
        """An e-mail address in the subjectAltName is reported."""
        carol = issue(shared_authority(), "urn:publicid:IDN+geni:gpo:gcf+user+carol", email="carol@example.org")
        self.assertEqual(carol.gid.email, "carol@example.org")

    def test_public_key_matches(self) -> None:
        """Two GIDs match when they certify the same key, whatever their chains."""
        alice = fixture_gid("alice")
        self.assertTrue(alice.public_key_matches(GID.from_pem(alice.to_pem(with_chain=False))))
        self.assertFalse(alice.public_key_matches(fixture_gid("bob")))

    def test_immutable(self) -> None:
        """A GID's attributes cannot be reassigned."""
        gid = fixture_gid("alice")
        self.assertRaises(AttributeError, setattr, gid, "urn", "urn:publicid:IDN+x+user+y")
        self.assertEqual(gid.urn, ALICE_URN)

    def test_validity_window(self) -> None:
        """not_before and not_after are the certificate's window in POSIX seconds."""
        gid = fixture_gid("alice")
        self.assertEqual(gid.not_before, parse_time("2026-11-22T05:32:50Z"))
        self.assertEqual(gid.not_after, parse_time("2031-11-21T05:32:50Z"))


class TrustRootsLoadingTests(SynchronousTestCase):
    """Loading trust roots from certificates and directories."""

    def test_directory(self) -> None:
        """Every certificate of every .pem/.crt/.cert file is a root; other files are ignored."""
        path = FilePath(self.mktemp())
        path.makedirs()
        path.child("ch-cert.pem").setContent(fixture_bytes("ch-cert.pem"))
        other = shared_authority("geni:other")
        third = shared_authority("geni:third", key_index=2)
        path.child("two.crt").setContent(other.gid.to_pem() + third.gid.to_pem())
        path.child("ignored.txt").setContent(shared_authority("geni:fourth", key_index=3).gid.to_pem())
        path.child("key.pem").setContent(fixture_bytes("alice-key.pem"))
        roots = TrustRoots.from_directory(path.path)
        self.assertEqual(len(roots), 3)
        self.assertIn(fixture_gid("ch"), roots)
        self.assertIn(other.gid, roots)
        self.assertIn(third.gid.certificate, roots)
        self.assertNotIn(shared_authority("geni:fourth", key_index=3).gid, roots)

    def test_empty_or_missing_directory(self) -> None:
        """A directory without certificates, or none at all, is a configuration error."""
        path = FilePath(self.mktemp())
        path.makedirs()
        e = self.assertRaises(TrustError, TrustRoots.from_directory, path.path)
        self.assertEqual(e.code, GeniCode.ERROR)
        e = self.assertRaises(TrustError, TrustRoots.from_directory, path.child("nope").path)
        self.assertEqual(e.code, GeniCode.ERROR)

    def test_malformed_root(self) -> None:
        """A malformed certificate in the roots directory is reported with its file name."""
        path = FilePath(self.mktemp())
        path.makedirs()
        path.child("bad.pem").setContent(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
        e = self.assertRaises(TrustError, TrustRoots.from_directory, path.path)
        self.assertIn("bad.pem", e.output)

    def test_duplicates(self) -> None:
        """The same certificate given twice is one root."""
        ch = fixture_gid("ch")
        self.assertEqual(len(TrustRoots.from_certificates([ch, ch.certificate])), 1)


class FixtureVerificationTests(SynchronousTestCase):
    """The gcf fixtures verify against the gcf clearinghouse root."""

    def test_all_fixtures(self) -> None:
        """Users, aggregates and the agent chain to the clearinghouse at the pinned time."""
        roots = fixture_roots()
        ch = fixture_gid("ch").certificate
        for name in ("alice", "bob", "am1", "am2", "agent"):
            gid = fixture_gid(name)
            self.assertEqual(roots.verify(gid, NOW), (gid.certificate, ch), name)

    def test_chain_not_needed_when_issuer_is_root(self) -> None:
        """A bare user certificate verifies: its issuer is a root."""
        gid = GID.from_pem(fixture_gid("alice").to_pem(with_chain=False))
        self.assertEqual(len(fixture_roots().verify(gid, NOW)), 2)

    def test_root_itself(self) -> None:
        """A root verifies as a path of one certificate."""
        ch = fixture_gid("ch")
        self.assertEqual(fixture_roots().verify(ch, NOW), (ch.certificate,))

    def test_expired(self) -> None:
        """After the validity window the leaf is reported as expired."""
        e = self.assertRaises(TrustError, fixture_roots().verify, fixture_gid("alice"), parse_time("2032-01-01T00:00:00Z"))
        self.assertEqual(e.code, GeniCode.CREDENTIAL_EXPIRED)
        self.assertIn(ALICE_URN, e.output)
        self.assertIn("expired", e.output)

    def test_not_yet_valid(self) -> None:
        """Before the validity window the leaf is reported as not yet valid."""
        e = self.assertRaises(TrustError, fixture_roots().verify, fixture_gid("alice"), parse_time("2026-11-01T00:00:00Z"))
        self.assertEqual(e.code, GeniCode.CREDENTIAL_INVALID)
        self.assertIn("not valid before", e.output)

    def test_altered_certificate(self) -> None:
        """A copy of alice's certificate with one signature byte changed is refused."""
        der = bytearray(fixture_gid("alice").to_der())
        der[-1] ^= 0x01
        forged = GID.from_der(bytes(der))
        e = self.assertRaises(TrustError, fixture_roots().verify, forged, NOW)
        self.assertEqual(e.code, GeniCode.CREDENTIAL_SIGNER_UNTRUSTED)
        self.assertIn("signature does not verify", e.output)

    def test_wrong_root(self) -> None:
        """Against roots that did not issue it, alice's certificate is refused."""
        roots = TrustRoots.from_certificates([shared_authority("geni:other").gid])
        e = self.assertRaises(TrustError, roots.verify, fixture_gid("alice"), NOW)
        self.assertEqual(e.code, GeniCode.CREDENTIAL_SIGNER_UNTRUSTED)
        self.assertIn("self-signed but not a trusted root", e.output)

    def test_root_unknown_and_missing(self) -> None:
        """Without its issuer in the roots or the chain, a certificate has no path."""
        roots = TrustRoots.from_certificates([shared_authority("geni:other").gid])
        bare = GID.from_pem(fixture_gid("alice").to_pem(with_chain=False))
        e = self.assertRaises(TrustError, roots.verify, bare, NOW)
        self.assertIn("no trusted issuer found", e.output)


class MintedVerificationTests(SynchronousTestCase):
    """The GENI path rules, checked on certificates minted for each case."""

    def test_impostor_root(self) -> None:
        """A self-signed certificate with the clearinghouse's very subject name is not trusted."""
        impostor = shared_authority("geni:gpo:gcf", key_index=4)
        self.assertEqual(impostor.gid.certificate.subject, fixture_gid("ch").certificate.subject)
        e = self.assertRaises(TrustError, fixture_roots().verify, impostor.gid, NOW)
        self.assertEqual(e.code, GeniCode.CREDENTIAL_SIGNER_UNTRUSTED)
        self.assertIn("signature does not verify", e.output)
        self.assertIn("self-signed but not a trusted root", e.output)

    def test_user_of_impostor(self) -> None:
        """A user certificate issued by the impostor, chain included, is refused."""
        impostor = shared_authority("geni:gpo:gcf", key_index=4)
        mallory = issue(impostor, ALICE_URN)
        e = self.assertRaises(TrustError, fixture_roots().verify, mallory.gid, NOW)
        self.assertEqual(e.code, GeniCode.CREDENTIAL_SIGNER_UNTRUSTED)
        self.assertIn("signature does not verify", e.output)
        self.assertIn("self-signed but not a trusted root", e.output)

    def test_minted_round_trip(self) -> None:
        """A minted user verifies against its authority, with or without the chain."""
        ca = shared_authority()
        user = issue(ca, "urn:publicid:IDN+geni:gpo:gcf+user+carol")
        roots = TrustRoots.from_certificates([ca.gid])
        self.assertEqual(roots.verify(user.gid, NOW), (user.gid.certificate, ca.gid.certificate))
        self.assertEqual(len(roots.verify(GID.from_pem(user.gid.to_pem()), NOW)), 2)

    def test_non_ca_issuer(self) -> None:
        """A certificate signed by a user (CA:FALSE) is refused even under the right namespace."""
        ca = shared_authority()
        alice = issue(ca, ALICE_URN)
        mallory = issue(alice, "urn:publicid:IDN+geni:gpo:gcf+user+mallory", key_index=2)
        self.assertEqual(len(mallory.gid.chain), 2)
        e = self.assertRaises(TrustError, TrustRoots.from_certificates([ca.gid]).verify, mallory.gid, NOW)
        self.assertEqual(e.code, GeniCode.CREDENTIAL_SIGNER_UNTRUSTED)
        self.assertIn("is not a CA", e.output)
        self.assertIn(ALICE_URN, e.output)

    def test_namespace_violation(self) -> None:
        """A trusted authority for geni:other cannot issue geni:gpo:gcf users, only its own."""
        other = shared_authority("geni:other")
        roots = TrustRoots.from_certificates([other.gid])
        eve = issue(other, "urn:publicid:IDN+geni:gpo:gcf+user+eve")
        e = self.assertRaises(TrustError, roots.verify, eve.gid, NOW)
        self.assertEqual(e.code, GeniCode.CREDENTIAL_SIGNER_UNTRUSTED)
        self.assertIn("no namespace authority", e.output)
        own = issue(other, "urn:publicid:IDN+geni:other+user+eve")
        self.assertEqual(len(roots.verify(own.gid, NOW)), 2)

    def test_namespace_prefix_is_whole_components(self) -> None:
        """geni:gpo vouches for geni:gpo:gcf; geni:gpo:gc does not (prefixes go by component)."""
        parent = shared_authority("geni:gpo", key_index=5)
        sub = issue(parent, "urn:publicid:IDN+geni:gpo:gcf+user+carol")
        self.assertEqual(len(TrustRoots.from_certificates([parent.gid]).verify(sub.gid, NOW)), 2)
        near = shared_authority("geni:gpo:gc", key_index=5)
        wrong = issue(near, "urn:publicid:IDN+geni:gpo:gcf+user+carol")
        e = self.assertRaises(TrustError, TrustRoots.from_certificates([near.gid]).verify, wrong.gid, NOW)
        self.assertIn("no namespace authority", e.output)

    def test_case_insensitive_namespace(self) -> None:
        """Authority strings compare case-insensitively."""
        ca = shared_authority("GENI:GPO:GCF", key_index=6)
        user = issue(ca, "urn:publicid:IDN+geni:gpo:gcf+user+carol")
        self.assertEqual(len(TrustRoots.from_certificates([ca.gid]).verify(user.gid, NOW)), 2)

    def test_intermediate_authority(self) -> None:
        """root -> sub-authority -> user verifies with the sub-authority in the chain or given apart."""
        root = shared_authority("geni:gpo", key_index=5)
        sub = issue(root, "urn:publicid:IDN+geni:gpo:gcf+authority+sa", key_index=2, is_authority=True)
        user = issue(sub, "urn:publicid:IDN+geni:gpo:gcf+user+carol")
        roots = TrustRoots.from_certificates([root.gid])
        path = roots.verify(user.gid, NOW)
        self.assertEqual(path, (user.gid.certificate, sub.gid.certificate, root.gid.certificate))
        bare = GID(user.gid.certificate)
        self.assertEqual(roots.verify(bare, NOW, intermediates=[sub.gid.certificate]), path)
        e = self.assertRaises(TrustError, roots.verify, bare, NOW)
        self.assertIn("no trusted issuer found", e.output)

    def test_intermediate_outside_namespace(self) -> None:
        """A sub-authority outside its issuer's namespace breaks the path even if it signs its own names."""
        root = shared_authority("geni:gpo", key_index=5)
        sub = issue(root, "urn:publicid:IDN+geni:other+authority+sa", key_index=2, is_authority=True)
        user = issue(sub, "urn:publicid:IDN+geni:other+user+carol")
        e = self.assertRaises(TrustError, TrustRoots.from_certificates([root.gid]).verify, user.gid, NOW)
        self.assertIn("no namespace authority over urn:publicid:IDN+geni:other+authority+sa", e.output)

    def test_ca_issuer_that_is_not_an_authority(self) -> None:
        """An issuer whose URN is not of type authority is refused even if CA:TRUE."""
        root = shared_authority()
        odd = issue(root, "urn:publicid:IDN+geni:gpo:gcf+user+odd", key_index=2, is_authority=True)
        user = issue(odd, "urn:publicid:IDN+geni:gpo:gcf+user+carol")
        e = self.assertRaises(TrustError, TrustRoots.from_certificates([root.gid]).verify, user.gid, NOW)
        self.assertIn("is not an authority", e.output)

    def test_path_length_constraint(self) -> None:
        """A root limited to path length 0 may not have intermediate CAs below it."""
        root = make_authority("geni:gpo", now=NOW, private_key=shared_key(5), path_length=0)
        sub = issue(root, "urn:publicid:IDN+geni:gpo:gcf+authority+sa", key_index=2, is_authority=True)
        user = issue(sub, "urn:publicid:IDN+geni:gpo:gcf+user+carol")
        roots = TrustRoots.from_certificates([root.gid])
        self.assertEqual(len(roots.verify(sub.gid, NOW)), 2)
        e = self.assertRaises(TrustError, roots.verify, user.gid, NOW)
        self.assertIn("path length", e.output)

    def test_expired_issuer(self) -> None:
        """An expired authority invalidates what it issued, and the reason names it."""
        start = NOW - 40 * DAY
        ca = make_authority("geni:gpo:gcf", lifetime_seconds=30 * DAY, now=start, private_key=shared_key(0))
        user = issue(ca, "urn:publicid:IDN+geni:gpo:gcf+user+carol", now=start, lifetime_seconds=365 * DAY)
        sub_ca = issue(ca, "urn:publicid:IDN+geni:gpo:gcf:x+authority+sa", key_index=2, now=start,
                       is_authority=True, lifetime_seconds=365 * DAY)
        roots = TrustRoots.from_certificates([ca.gid])
        e = self.assertRaises(TrustError, roots.verify, user.gid, NOW)
        self.assertEqual(e.code, GeniCode.CREDENTIAL_EXPIRED)
        self.assertIn("urn:publicid:IDN+geni:gpo:gcf+authority+sa", e.output)
        self.assertEqual(len(roots.verify(user.gid, start + DAY)), 2)
        e = self.assertRaises(TrustError, roots.verify, sub_ca.gid, NOW)
        self.assertEqual(e.code, GeniCode.CREDENTIAL_EXPIRED)

    def test_sha1_signature(self) -> None:
        """Certificates signed with RSA-SHA1, as older GENI tools made them, verify."""
        ca = shared_authority()
        user = issue(ca, "urn:publicid:IDN+geni:gpo:gcf+user+old")
        old = resign_sha1(user.gid.certificate, ca)
        self.assertEqual(old.signature_hash_algorithm.name, "sha1")  # type: ignore[union-attr]
        roots = TrustRoots.from_certificates([ca.gid])
        self.assertEqual(roots.verify(GID(old), NOW), (old, ca.gid.certificate))
        forged = resign_sha1(user.gid.certificate, shared_authority("geni:gpo:gcf", key_index=4))
        e = self.assertRaises(TrustError, roots.verify, GID(forged), NOW)
        self.assertIn("signature does not verify", e.output)

    def test_ecdsa_and_ed25519(self) -> None:
        """Authorities with ECDSA or Ed25519 keys are supported."""
        for key in (ec.generate_private_key(ec.SECP256R1()), ed25519.Ed25519PrivateKey.generate()):
            ca = make_authority("geni:gpo:gcf", now=NOW, private_key=key)
            user = issue(ca, "urn:publicid:IDN+geni:gpo:gcf+user+carol")
            self.assertEqual(len(TrustRoots.from_certificates([ca.gid]).verify(user.gid, NOW)), 2)
            forged = issue(shared_authority(), "urn:publicid:IDN+geni:gpo:gcf+user+carol")
            self.assertRaises(TrustError, TrustRoots.from_certificates([ca.gid]).verify, forged.gid, NOW)

    def test_cache_rechecks_validity(self) -> None:
        """A cached path is still checked against the time of each call."""
        roots = fixture_roots()
        alice = fixture_gid("alice")
        first = roots.verify(alice, NOW)
        self.assertIs(roots.verify(alice, NOW + 1), first)
        e = self.assertRaises(TrustError, roots.verify, alice, parse_time("2035-01-01T00:00:00Z"))
        self.assertEqual(e.code, GeniCode.CREDENTIAL_EXPIRED)

    def test_cache_is_per_chain(self) -> None:
        """A path cached with one chain does not vouch for the same leaf with a different chain."""
        root = shared_authority("geni:gpo", key_index=5)
        sub = issue(root, "urn:publicid:IDN+geni:gpo:gcf+authority+sa", key_index=2, is_authority=True)
        user = issue(sub, "urn:publicid:IDN+geni:gpo:gcf+user+carol")
        roots = TrustRoots.from_certificates([root.gid])
        roots.verify(user.gid, NOW)
        self.assertRaises(TrustError, roots.verify, GID(user.gid.certificate), NOW)

    def test_too_many_intermediates(self) -> None:
        """An absurd number of candidate issuers is refused before any path search."""
        certs = [issue(shared_authority(), f"urn:publicid:IDN+geni:gpo:gcf+user+u{i}").gid.certificate for i in range(70)]
        e = self.assertRaises(TrustError, fixture_roots().verify, fixture_gid("alice"), NOW, certs)
        self.assertEqual(e.code, GeniCode.CREDENTIAL_INVALID)

    def test_user_without_urn(self) -> None:
        """A certificate issued without any URN still chains (namespace checks need a URN)."""
        ca = shared_authority()
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "plain")]))
            .issuer_name(ca.gid.certificate.subject)
            .public_key(shared_key(1).public_key())
            .serial_number(7)
            .not_valid_before(ca.gid.certificate.not_valid_before_utc)
            .not_valid_after(ca.gid.certificate.not_valid_after_utc)
            .sign(ca.private_key, hashes.SHA256())  # type: ignore[arg-type]
        )
        gid = GID(cert)
        self.assertIsNone(gid.urn)
        self.assertEqual(len(TrustRoots.from_certificates([ca.gid]).verify(gid, NOW)), 2)
