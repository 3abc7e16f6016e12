"""
What geniam signs, checked by C{xmlsec1} exactly as the GENI reference
tools call it: C{xmlsec1 --verify --node-id Sig_<ref> --trusted-pem ROOT
FILE} for every signature of a privilege credential's chain (the output
must start with C{OK}), and C{--pubkey-cert-pem USER_CERT} for the
user's signature on a speaks-for credential.

Skipped where the binary is missing (Debian package C{xmlsec1}).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from geniam.trust.domain import TrustDomain
from geniam.trust.identity import Identity
from geniam.trust.mint import delegate_credential, slice_credential, user_credential
from geniam.trust.speaksfor import issue_speaks_for
from tests.fixturepaths import GCF

XMLSEC1 = shutil.which("xmlsec1")
SKIP = None if XMLSEC1 else "xmlsec1 is not installed (Debian package xmlsec1)"
DAY = 86400.0
SIGNATURE_ID = re.compile(r'<Signature [^>]*xml:id="([^"]+)"')


class XmlSec1Tests(SynchronousTestCase):
    """Credentials geniam mints verify with xmlsec1; altered copies do not."""

    skip = SKIP

    def setUp(self) -> None:
        self.folder = Path(self.mktemp())
        self.now = time.time()
        self.domain = TrustDomain.create(self.folder / "dev", authority="example:lab", now=self.now - 60, key_size=1024)
        self.alice = self.domain.add_user("alice", now=self.now - 60)
        self.bob = self.domain.add_user("bob", now=self.now - 60)
        self.root = str(self.domain.roots_dir / "ca-cert.pem")

    def write(self, name: str, text: str) -> str:
        path = self.folder / name
        path.write_text(text)
        return str(path)

    def xmlsec1(self, *arguments: str) -> tuple[int, str]:
        assert XMLSEC1 is not None
        done = subprocess.run([XMLSEC1, "--verify", *arguments], capture_output=True, text=True, timeout=60)
        return done.returncode, done.stderr + done.stdout

    def assertReferenceToolsAccept(self, path: str, root: str | None = None) -> None:
        """Every signature verifies as the reference tools check it: the output starts with OK."""
        ids = SIGNATURE_ID.findall(Path(path).read_text())
        self.assertTrue(ids, "no signature found")
        for signature_id in ids:
            status, output = self.xmlsec1("--node-id", signature_id, "--trusted-pem", root or self.root, path)
            self.assertEqual(status, 0, output)
            self.assertTrue(output.strip().startswith("OK"), output)

    def test_development_authority_credentials(self) -> None:
        """User and slice credentials of the development authority, SHA-256 (default) and SHA-1."""
        for algorithm in ("sha256", "sha1"):
            user = user_credential(self.domain.ca, self.alice.gid, self.now + DAY, algorithm=algorithm)
            self.assertReferenceToolsAccept(self.write(f"user-{algorithm}.xml", user))
            sliver = slice_credential(
                self.domain.ca, self.alice.gid, "urn:publicid:IDN+example:lab+slice+exp1", self.now + DAY,
                now=self.now - 60, algorithm=algorithm,
            )
            self.assertReferenceToolsAccept(self.write(f"slice-{algorithm}.xml", sliver))

    def test_delegations(self) -> None:
        """A delegation (two signatures, one per level) and a delegation of it (three)."""
        carol = self.domain.add_user("carol", now=self.now - 60)
        parent = slice_credential(
            self.domain.ca, self.alice.gid, "urn:publicid:IDN+example:lab+slice+exp1", self.now + DAY,
            now=self.now - 60, privileges=[("control", True), ("info", True)],
        )
        to_bob = delegate_credential(parent, self.alice, self.bob.gid, [("control", True), ("info", True)])
        path = self.write("to-bob.xml", to_bob)
        self.assertEqual(len(SIGNATURE_ID.findall(to_bob)), 2)
        self.assertReferenceToolsAccept(path)
        to_carol = delegate_credential(to_bob, self.bob, carol.gid, algorithm="sha1")
        self.assertEqual(len(SIGNATURE_ID.findall(to_carol)), 3)
        self.assertReferenceToolsAccept(self.write("to-carol.xml", to_carol))

    def test_delegation_of_a_reference_credential(self) -> None:
        """geniam's delegation of a credential the reference clearinghouse minted verifies against its root."""
        alice = Identity.from_files(GCF / "alice-cert.pem", GCF / "alice-key.pem")
        bob = Identity.from_files(GCF / "bob-cert.pem", GCF / "bob-key.pem")
        delegated = delegate_credential((GCF / "fixture-slicecred.xml").read_text(), alice, bob.gid, enforce=False)
        self.assertReferenceToolsAccept(self.write("gcf-to-bob.xml", delegated), str(GCF / "ch-cert.pem"))

    def test_speaks_for(self) -> None:
        """The user's signature on a speaks-for credential verifies with the user's certificate and with the root."""
        for algorithm in ("sha256", "sha1"):
            path = self.write(f"speaks-for-{algorithm}.xml", issue_speaks_for(self.alice, self.bob.gid, self.now + DAY, algorithm))
            [signature_id] = SIGNATURE_ID.findall(Path(path).read_text())
            user_cert = str(self.domain.cert_path("users", "alice"))
            status, output = self.xmlsec1("--node-id", signature_id, "--pubkey-cert-pem", user_cert, path)
            self.assertEqual(status, 0, output)
            self.assertIn("\nOK\n", "\n" + output)
            self.assertReferenceToolsAccept(path)

    def test_altered_copies_fail(self) -> None:
        """The same checks refuse a changed privilege and a signature made by an outsider's key."""
        user = user_credential(self.domain.ca, self.alice.gid, self.now + DAY)
        path = self.write("altered.xml", user.replace("<name>refresh</name>", "<name>admin</name>", 1))
        self.assertNotEqual(Path(path).read_text(), user)
        status, output = self.xmlsec1("--node-id", "Sig_ref0", "--trusted-pem", self.root, path)
        self.assertNotEqual(status, 0)
        self.assertFalse(output.strip().startswith("OK"))
        other = TrustDomain.create(self.folder / "other", authority="other:lab", now=self.now - 60, key_size=1024)
        foreign = self.write("foreign.xml", user_credential(other.ca, self.alice.gid, self.now + DAY))
        status, output = self.xmlsec1("--node-id", "Sig_ref0", "--trusted-pem", self.root, foreign)
        self.assertNotEqual(status, 0, output)
