"""
Tests for C{geniam credential verify}: the report, the exit statuses and the flags.
"""

from __future__ import annotations

import io
import os

from twisted.trial.unittest import SynchronousTestCase

from geniam.cli import credential as cli
from geniam.cli.main import main as geniam_main
from tests.trust.test_credential_fixtures import FIXTURES, GCF_SLICE, NOW


def fixture(name: str) -> str:
    """The path of a gcf fixture file."""
    return FIXTURES.child(name).path


class VerifyCommandTests(SynchronousTestCase):
    """geniam credential verify, run on the reference fixtures."""

    def setUp(self) -> None:
        roots = self.mktemp()
        os.mkdir(roots)
        with open(os.path.join(roots, "ch-cert.pem"), "wb") as f:
            f.write(FIXTURES.child("ch-cert.pem").getContent())
        self.roots = roots

    def run_verify(self, *args: str, now: float = NOW) -> tuple[int, str, str]:
        """Run the command; return (status, stdout, stderr)."""
        out, err = io.StringIO(), io.StringIO()
        status = cli.main(["verify", *args], now=now, out=out, err=err)
        return status, out.getvalue(), err.getvalue()

    def test_valid_for_owner(self) -> None:
        """The delegated credential is valid for bob: exit 0, every check PASS."""
        status, out, _ = self.run_verify(
            "--trust-roots", self.roots, "--caller", fixture("bob-cert.pem"), "--target", GCF_SLICE,
            "--privilege", "control", fixture("bob-delegated-fixture-slicecred.xml"),
        )
        self.assertEqual(status, 0, out)
        lines = out.splitlines()
        checks = [line for line in lines if line.startswith(("PASS ", "FAIL "))]
        self.assertTrue(checks)
        self.assertTrue(all(line.startswith("PASS ") for line in checks))
        for name in ("signature ref1", "signature ref0", "delegation ref1 from ref0", "owner = caller", "target", "privilege"):
            self.assertTrue(any(line.startswith(f"PASS {name}:") for line in checks), name)
        self.assertTrue(lines[-1].startswith("VALID"))

    def test_invalid_for_someone_else(self) -> None:
        """The same credential for alice: exit 1, the owner check FAILs with the reason."""
        status, out, _ = self.run_verify(
            "--trust-roots", self.roots, "--caller", fixture("alice-cert.pem"), fixture("bob-delegated-fixture-slicecred.xml")
        )
        self.assertEqual(status, 1)
        self.assertIn("FAIL owner = caller: the credential belongs to urn:publicid:IDN+geni:gpo:gcf+user+bob", out)
        self.assertTrue(out.splitlines()[-1].startswith("INVALID: owner = caller"))

    def test_at_flag(self) -> None:
        """--at moves the verification time: after expiry the expiry check fails."""
        status, out, _ = self.run_verify(
            "--trust-roots", self.roots, "--caller", fixture("alice-cert.pem"), "--at", "2028-01-01T00:00:00Z",
            fixture("fixture-slicecred.xml"),
        )
        self.assertEqual(status, 1)
        self.assertIn("FAIL expiry ref0: expired at 2027-12-31T00:00:00Z", out)
        self.assertIn("at: 2028-01-01T00:00:00Z", out)

    def test_wrong_target_and_privilege(self) -> None:
        """A target or privilege the credential does not give fails."""
        status, out, _ = self.run_verify(
            "--trust-roots", self.roots, "--caller", fixture("alice-cert.pem"),
            "--target", "urn:publicid:IDN+geni:gpo:gcf+slice+other", "--privilege", "Allocate",
            fixture("alice-usercred.xml"),
        )
        self.assertEqual(status, 1)
        self.assertIn("FAIL target:", out)
        self.assertIn("FAIL privilege: refresh, resolve, info do not allow Allocate", out)

    def test_tampered(self) -> None:
        """An altered credential fails its signature check."""
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(open(fixture("alice-usercred.xml")).read().replace("<name>info</name>", "<name>*</name>"))
        status, out, _ = self.run_verify("--trust-roots", self.roots, "--caller", fixture("alice-cert.pem"), path)
        self.assertEqual(status, 1)
        self.assertIn("FAIL signature ref0:", out)
        self.assertIn("digest", out)

    def test_unparseable(self) -> None:
        """A file that is not a credential is invalid (exit 1), not a crash."""
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("<!DOCTYPE x [<!ENTITY a 'b'>]><x>&a;</x>")
        status, out, _ = self.run_verify("--trust-roots", self.roots, "--caller", fixture("alice-cert.pem"), path)
        self.assertEqual(status, 1)
        self.assertIn("FAIL parse:", out)

    def test_options_after_file(self) -> None:
        """Options may follow the credential file."""
        status, _, _ = self.run_verify(
            fixture("alice-usercred.xml"), "--trust-roots", self.roots, "--caller", fixture("alice-cert.pem")
        )
        self.assertEqual(status, 0)

    def test_usage_errors(self) -> None:
        """Missing flags, files or subcommand, bad times and unknown options exit 2."""
        cases = [
            ["--caller", fixture("alice-cert.pem"), fixture("alice-usercred.xml")],
            ["--trust-roots", self.roots, fixture("alice-usercred.xml")],
            ["--trust-roots", self.roots, "--caller", fixture("alice-cert.pem")],
            ["--trust-roots", self.roots, "--caller", fixture("alice-cert.pem"), "--at", "soon", fixture("alice-usercred.xml")],
            ["--trust-roots", self.roots, "--caller", fixture("alice-cert.pem"), "--frobnicate", fixture("alice-usercred.xml")],
            ["--trust-roots", self.roots, "--caller", fixture("alice-cert.pem"), "/nonexistent.xml"],
            ["--trust-roots", "/nonexistent", "--caller", fixture("alice-cert.pem"), fixture("alice-usercred.xml")],
            ["--trust-roots", self.roots, "--caller", fixture("alice-key.pem"), fixture("alice-usercred.xml")],
        ]
        for args in cases:
            status, _, err = self.run_verify(*args)
            self.assertEqual(status, 2, args)
            self.assertIn("geniam credential:", err)
        self.assertEqual(cli.main([], now=NOW, out=io.StringIO(), err=io.StringIO()), 2)

    def test_dispatcher(self) -> None:
        """The geniam command dispatches to this module."""
        self.patch(cli, "main", lambda argv: 7)
        self.assertEqual(geniam_main(["credential", "verify"]), 7)
