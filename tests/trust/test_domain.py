"""
Tests for L{geniam.trust.domain}: the development trust domain folder.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from geniam.errors import GeniCode, GeniError
from geniam.trust.certs import CLOCK_SKEW
from geniam.trust.domain import TrustDomain
from geniam.trust.gid import TrustRoots
from geniam.trust.tls import client_tls_options, server_tls_options
from tests.trust.test_gid import NOW
from tests.trust.test_tls import in_memory


def mode(path: Path) -> int:
    """The permission bits of a file."""
    return stat.S_IMODE(path.stat().st_mode)


class TrustDomainTests(SynchronousTestCase):
    """Creating, opening and filling a trust domain."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.folder = Path(self.mktemp())
        self.domain = TrustDomain.create(self.folder, "geniam:test", reactor=self.clock)

    def test_layout(self) -> None:
        """A new domain has its CA, a roots folder with only the CA certificate, and empty places for the rest."""
        ca = self.domain.ca
        self.assertEqual(ca.urn, "urn:publicid:IDN+geniam:test+authority+sa")
        self.assertEqual(self.domain.ca_urn, ca.urn)
        self.assertTrue(ca.gid.is_authority)
        self.assertEqual(sorted(p.name for p in self.domain.roots_dir.iterdir()), ["ca-cert.pem"])
        self.assertEqual(mode(self.folder / "ca" / "ca-key.pem"), 0o600)
        roots = TrustRoots.from_directory(self.domain.roots_dir)
        self.assertEqual(roots.certificates, (ca.gid.certificate,))
        self.assertEqual(self.domain.roots().certificates, roots.certificates)
        self.assertTrue(self.domain.credentials_dir.is_dir())
        self.assertTrue(self.domain.slices_dir.is_dir())
        metadata = json.loads((self.folder / "domain.json").read_text())
        self.assertEqual(metadata["authority"], "geniam:test")

    def test_validity_from_reactor(self) -> None:
        """Without an explicit time, certificates start at the reactor's time (less the clock skew allowance)."""
        self.assertEqual(self.domain.ca.gid.not_before, NOW - CLOCK_SKEW)
        self.clock.advance(3600)
        self.assertEqual(self.domain.add_user("alice").gid.not_before, NOW + 3600 - CLOCK_SKEW)
        self.assertEqual(self.domain.add_user("bob", now=NOW + 60).gid.not_before, NOW + 60 - CLOCK_SKEW)

    def test_refuses_non_empty_folder(self) -> None:
        """Creating a domain where one (or anything) exists is refused and changes nothing."""
        before = (self.folder / "ca" / "ca-key.pem").read_bytes()
        e = self.assertRaises(GeniError, TrustDomain.create, self.folder, reactor=self.clock)
        self.assertEqual(e.code, GeniCode.ALREADYEXISTS)
        self.assertEqual((self.folder / "ca" / "ca-key.pem").read_bytes(), before)

    def test_default_authority_and_empty_folder(self) -> None:
        """An existing empty folder is fine, and the default authority is geniam:dev."""
        folder = Path(self.mktemp())
        folder.mkdir()
        domain = TrustDomain.create(folder, now=NOW)
        self.assertEqual(domain.ca.urn, "urn:publicid:IDN+geniam:dev+authority+sa")

    def test_open(self) -> None:
        """Opening the folder again gives the same CA and authority."""
        again = TrustDomain.open(self.folder, reactor=self.clock)
        self.assertEqual(again.authority, "geniam:test")
        self.assertEqual(again.ca.gid, self.domain.ca.gid)
        self.assertEqual(again.ca.private_key_pem(), self.domain.ca.private_key_pem())

    def test_open_missing_or_damaged(self) -> None:
        """Opening a folder without a domain, or with a damaged description, is a clear error."""
        e = self.assertRaises(GeniError, TrustDomain.open, self.mktemp())
        self.assertEqual(e.code, GeniCode.SEARCHFAILED)
        (self.folder / "domain.json").write_text("{not json")
        e = self.assertRaises(GeniError, TrustDomain.open, self.folder)
        self.assertEqual(e.code, GeniCode.ERROR)
        (self.folder / "domain.json").write_text('{"format": "something else"}')
        self.assertRaises(GeniError, TrustDomain.open, self.folder)

    def test_open_or_create(self) -> None:
        """open_or_create makes a domain once and opens it afterwards."""
        folder = Path(self.mktemp())
        first = TrustDomain.open_or_create(folder, "geniam:auto", reactor=self.clock)
        second = TrustDomain.open_or_create(folder, "geniam:ignored", reactor=self.clock)
        self.assertEqual(second.authority, "geniam:auto")
        self.assertEqual(second.ca.gid, first.ca.gid)

    def test_add_user(self) -> None:
        """A user gets a CA-issued certificate with the CA as chain, saved with a private key file."""
        alice = self.domain.add_user("alice", email="alice@example.org")
        self.assertEqual(alice.urn, "urn:publicid:IDN+geniam:test+user+alice")
        self.assertEqual(alice.gid.email, "alice@example.org")
        self.assertFalse(alice.gid.is_authority)
        self.assertEqual(alice.gid.chain, (self.domain.ca.gid.certificate,))
        self.assertEqual(len(self.domain.roots().verify(alice.gid, NOW)), 2)
        self.assertEqual(mode(self.domain.key_path("users", "alice")), 0o600)
        self.assertEqual(self.domain.users(), ["alice"])

    def test_lookup(self) -> None:
        """Lookups read the saved files, in a reopened domain too, and repeat without change."""
        alice = self.domain.add_user("alice")
        self.assertIs(self.domain.user("alice"), alice)
        again = TrustDomain.open(self.folder)
        loaded = again.user("alice")
        self.assertEqual(loaded.gid, alice.gid)
        self.assertEqual(loaded.private_key_pem(), alice.private_key_pem())
        self.assertIs(again.user("alice"), loaded)

    def test_refuses_overwrite(self) -> None:
        """Adding an existing user is refused and keeps the old certificate."""
        alice = self.domain.add_user("alice")
        e = self.assertRaises(GeniError, self.domain.add_user, "alice")
        self.assertEqual(e.code, GeniCode.ALREADYEXISTS)
        self.assertEqual(TrustDomain.open(self.folder).user("alice").gid, alice.gid)

    def test_ensure(self) -> None:
        """ensure_user and ensure_aggregate issue once and then look up."""
        first = self.domain.ensure_user("carol")
        self.assertEqual(TrustDomain.open(self.folder).ensure_user("carol").gid, first.gid)
        am = self.domain.ensure_aggregate("am1")
        self.assertEqual(TrustDomain.open(self.folder).ensure_aggregate("am1").gid, am.gid)

    def test_missing(self) -> None:
        """Looking up an identity that was never issued is SEARCHFAILED."""
        for lookup in (self.domain.user, self.domain.aggregate, self.domain.tool):
            e = self.assertRaises(GeniError, lookup, "nobody")
            self.assertEqual(e.code, GeniCode.SEARCHFAILED)

    def test_add_aggregate(self) -> None:
        """An aggregate is an authority named <authority>:<name>+authority+am and chains to the CA."""
        am = self.domain.add_aggregate("am1")
        self.assertEqual(am.urn, "urn:publicid:IDN+geniam:test:am1+authority+am")
        self.assertTrue(am.gid.is_authority)
        self.assertEqual(len(self.domain.roots().verify(am.gid, NOW)), 2)
        self.assertEqual(self.domain.aggregate("am1").gid, am.gid)
        self.assertEqual(self.domain.aggregates(), ["am1"])

    def test_add_tool(self) -> None:
        """A tool is named <authority>+tool+<name>."""
        tool = self.domain.add_tool("portal")
        self.assertEqual(tool.urn, "urn:publicid:IDN+geniam:test+tool+portal")
        self.assertEqual(self.domain.tool("portal").gid, tool.gid)
        self.assertEqual(self.domain.tools(), ["portal"])

    def test_bad_names(self) -> None:
        """Names that are not valid in a URN, or that would escape the folder, are BADARGS."""
        for name in ("../evil", "a/b", "", "toolongname", "9lives", "a b"):
            e = self.assertRaises(GeniError, self.domain.add_user, name)
            self.assertEqual(e.code, GeniCode.BADARGS, name)
        for name in ("../am", "am:1", "am+1"):
            self.assertRaises(GeniError, self.domain.add_aggregate, name)
        self.assertRaises(GeniError, self.domain.user, "../ca/ca")
        self.assertEqual(list((self.folder / "users").iterdir()), [])

    def test_tls_between_domain_identities(self) -> None:
        """A domain's aggregate serves a domain user over mutual TLS with the domain's roots."""
        am = self.domain.add_aggregate("am1")
        alice = self.domain.add_user("alice")
        roots = self.domain.roots()
        server = server_tls_options(am, roots, self.clock)
        client = client_tls_options(alice, roots, expected_urn=am.urn, clock=self.clock)
        _, client_protocol, *_ = in_memory(server, client, self.clock)
        self.assertEqual(client_protocol.data, alice.urn.encode())  # type: ignore[union-attr]
