"""
Tests for C{geniam authority}: a trust domain made end to end in a temporary
folder, its credentials checked with C{geniam credential verify} and the verifier.
"""

from __future__ import annotations

import io
import os

from twisted.trial.unittest import SynchronousTestCase

from geniam.cli import authority
from geniam.cli import credential as credential_cli
from geniam.cli.authority import parse_lifetime
from geniam.trust.credential import parse_credential
from geniam.trust.domain import TrustDomain
from geniam.trust.verifier import CredentialVerifier
from tests.trust.test_credential_fixtures import DAY, NOW, authorize, clock_at

AUTHORITY = "geni:cli"
SLICE = f"urn:publicid:IDN+{AUTHORITY}+slice+exp1"


def run(*args: str, now: float = NOW) -> tuple[int, str, str]:
    """Run C{geniam authority}; return (status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    status = authority.main(list(args), now=now, out=out, err=err)
    return status, out.getvalue(), err.getvalue()


def verify(directory: str, caller: str, credential: str, *extra: str, now: float = NOW) -> tuple[int, str]:
    """Run C{geniam credential verify} against the domain's roots; return (status, stdout)."""
    out, err = io.StringIO(), io.StringIO()
    status = credential_cli.main(
        ["verify", "--trust-roots", os.path.join(directory, "roots"), "--caller", caller, *extra, credential],
        now=now,
        out=out,
        err=err,
    )
    return status, out.getvalue() + err.getvalue()


class AuthorityCommandTests(SynchronousTestCase):
    """init, user, slice, delegate and speaks-for in one domain."""

    def setUp(self) -> None:
        self.directory = self.mktemp()
        status, out, err = run("init", self.directory, "--authority", AUTHORITY)
        self.assertEqual(status, 0, err)
        self.assertIn(f"urn:publicid:IDN+{AUTHORITY}+authority+sa", out)
        for name in ("alice", "bob"):
            self.assertEqual(run("user", self.directory, name, "--email", f"{name}@example.org")[0], 0)

    def path(self, *parts: str) -> str:
        """A path inside the domain."""
        return os.path.join(self.directory, *parts)

    def cert(self, user: str) -> str:
        """A user's certificate file."""
        return self.path("users", f"{user}-cert.pem")

    def test_init_layout(self) -> None:
        """init makes the domain folder with its CA as the only root."""
        self.assertEqual(os.listdir(self.path("roots")), ["ca-cert.pem"])
        self.assertEqual(TrustDomain.open(self.directory).authority, AUTHORITY)

    def test_user_credential(self) -> None:
        """user writes a certificate (with e-mail) and a user credential the verifier accepts."""
        domain = TrustDomain.open(self.directory)
        alice = domain.user("alice")
        self.assertEqual(alice.gid.email, "alice@example.org")
        status, out = verify(self.directory, self.cert("alice"), self.path("credentials", "alice-usercred.xml"))
        self.assertEqual(status, 0, out)
        status, out = verify(self.directory, self.cert("bob"), self.path("credentials", "alice-usercred.xml"))
        self.assertEqual(status, 1, out)

    def test_slice_and_delegation(self) -> None:
        """slice writes alice's credential; delegate passes it to bob; both verify for their owner only."""
        status, out, err = run("slice", self.directory, "exp1", "--owner", "alice", "--lifetime", "10d")
        self.assertEqual(status, 0, err)
        slice_credential = self.path("slices", "exp1-alice-cred.xml")
        self.assertIn(slice_credential, out)
        self.assertEqual(parse_credential(open(slice_credential).read()).credential.expires, NOW + 10 * DAY)
        status, out = verify(self.directory, self.cert("alice"), slice_credential, "--target", SLICE, "--privilege", "Allocate")
        self.assertEqual(status, 0, out)

        status, out, err = run(
            "delegate", self.directory, "--credential", slice_credential, "--from", "alice", "--to", "bob",
            "--privilege", "control", "--privilege", "info",
        )
        self.assertEqual(status, 0, err)
        delegated = self.path("credentials", "exp1-alice-cred-to-bob.xml")
        levels = parse_credential(open(delegated).read()).levels()
        self.assertEqual(len(levels), 2)
        self.assertEqual(levels[0].privilege_names, frozenset({"control", "info"}))
        status, out = verify(self.directory, self.cert("bob"), delegated, "--target", SLICE, "--privilege", "Allocate")
        self.assertEqual(status, 0, out)
        self.assertIn("PASS delegation ref1 from ref0", out)
        status, out = verify(self.directory, self.cert("alice"), delegated)
        self.assertEqual(status, 1)

        verifier = CredentialVerifier(TrustDomain.open(self.directory).roots(), clock_at())
        bob = TrustDomain.open(self.directory).user("bob").gid
        authorize(self, verifier, bob, [open(delegated).read()], "Provision", SLICE)

    def test_second_slice_credential_reuses_slice(self) -> None:
        """A second owner's credential for the same slice names the same slice certificate."""
        self.assertEqual(run("slice", self.directory, "exp1", "--owner", "alice")[0], 0)
        self.assertEqual(run("slice", self.directory, "exp1", "--owner", "bob", "--sha1")[0], 0)
        first = parse_credential(open(self.path("slices", "exp1-alice-cred.xml")).read()).credential
        second = parse_credential(open(self.path("slices", "exp1-bob-cred.xml")).read()).credential
        assert first.target_gid is not None and second.target_gid is not None
        self.assertEqual(first.target_gid.fingerprint, second.target_gid.fingerprint)
        self.assertIn("rsa-sha1", open(self.path("slices", "exp1-bob-cred.xml")).read())

    def test_delegate_to_certificate_file(self) -> None:
        """delegate --to accepts a certificate file from outside the domain's users."""
        run("slice", self.directory, "exp1", "--owner", "alice")
        domain = TrustDomain.open(self.directory)
        domain.add_tool("portal", now=NOW)
        out_file = os.path.join(self.directory, "to-portal.xml")
        status, _, err = run(
            "delegate", self.directory, "--credential", self.path("slices", "exp1-alice-cred.xml"), "--from", "alice",
            "--to", str(domain.cert_path("tools", "portal")), "--out", out_file,
        )
        self.assertEqual(status, 0, err)
        status, out = verify(self.directory, str(domain.cert_path("tools", "portal")), out_file)
        self.assertEqual(status, 0, out)

    def test_delegate_refusals(self) -> None:
        """Delegating someone else's credential or a privilege not held is refused (exit 1)."""
        run("slice", self.directory, "exp1", "--owner", "alice")
        credential = self.path("slices", "exp1-alice-cred.xml")
        status, _, err = run("delegate", self.directory, "--credential", credential, "--from", "bob", "--to", "alice")
        self.assertEqual(status, 1)
        self.assertIn("only the owner", err)
        status, _, err = run(
            "delegate", self.directory, "--credential", credential, "--from", "alice", "--to", "bob", "--privilege", "sa"
        )
        self.assertEqual(status, 1)
        self.assertIn("not delegatable", err)

    def test_speaks_for(self) -> None:
        """speaks-for writes a credential that lets the tool act as alice."""
        domain = TrustDomain.open(self.directory)
        tool = domain.add_tool("portal", now=NOW)
        tool_cert = str(domain.cert_path("tools", "portal"))
        status, out, err = run("speaks-for", self.directory, "--user", "alice", "--tool", tool_cert, "--lifetime", "2d")
        self.assertEqual(status, 0, err)
        written = self.path("credentials", "alice-speaksfor-portal.xml")
        self.assertIn(written, out)
        verifier = CredentialVerifier(domain.roots(), clock_at())
        grant = authorize(
            self,
            verifier,
            tool.gid,
            [open(written).read(), open(self.path("credentials", "alice-usercred.xml")).read()],
            "ListResources",
            None,
            {"geni_speaking_for": domain.user_urn("alice")},
        )
        self.assertEqual(grant.caller_urn, domain.user_urn("alice"))
        status, out = verify(self.directory, tool_cert, written)
        self.assertEqual(status, 0, out)
        self.assertIn("PASS speaks-for", out)

    def test_refusals(self) -> None:
        """Existing names, unknown users and missing domains are refused with exit 1."""
        self.assertEqual(run("user", self.directory, "alice")[0], 1)
        self.assertEqual(run("slice", self.directory, "exp1", "--owner", "nobody")[0], 1)
        self.assertEqual(run("user", self.mktemp(), "carol")[0], 1)
        self.assertEqual(run("init", self.directory)[0], 1)

    def test_usage_errors(self) -> None:
        """Missing arguments and flags, bad lifetimes and names exit 2."""
        for args in (
            [],
            ["frobnicate"],
            ["user", self.directory],
            ["slice", self.directory, "exp1"],
            ["slice", self.directory, "exp1", "--owner", "alice", "--lifetime", "forever"],
            ["delegate", self.directory, "--from", "alice", "--to", "bob"],
            ["speaks-for", self.directory, "--user", "alice"],
        ):
            status, _, err = run(*args)
            self.assertEqual(status, 2, args)
            self.assertIn("geniam authority:", err)

    def test_parse_lifetime(self) -> None:
        """Lifetimes are seconds or a number with a unit."""
        self.assertEqual(parse_lifetime("3600"), 3600)
        self.assertEqual(parse_lifetime("90m"), 5400)
        self.assertEqual(parse_lifetime("12h"), 43200)
        self.assertEqual(parse_lifetime("30d"), 30 * DAY)
        self.assertEqual(parse_lifetime("2w"), 14 * DAY)
