"""
Tests for C{geniam call}: argument mapping, rendering, and a real call
from a child process to an aggregate manager on loopback.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.utils import getProcessOutputAndValue
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase, TestCase

from geniam.cli.call import Options, call_parameters, main, render
from geniam.loopback import LoopbackFederation
from tests.domains import copied_domain
from tests.test_am_loopback import make_domain

URN = "urn:publicid:IDN+example+slice+exp1"


def parsed(*argv: str) -> Options:
    options = Options()
    options.parseOptions(["--certificate", "c", "--private-key", "k", "--trust-roots", "r", *argv])
    return options


class ParameterTests(SynchronousTestCase):
    """The command line becomes the method's XML-RPC parameters."""

    def test_methods(self) -> None:
        """Each method gets its own argument shape, with GENI v3 added where required."""
        self.assertEqual(call_parameters(parsed("https://x/", "GetVersion"), "", 0), [{}])
        status = call_parameters(parsed("https://x/", "Status", URN), "", 0)
        self.assertEqual(status, [[URN], [], {}])
        describe = call_parameters(parsed("https://x/", "Describe", URN), "", 0)
        self.assertEqual(describe[2]["geni_rspec_version"], {"type": "GENI", "version": "3"})
        renew = call_parameters(parsed("https://x/", "Renew", URN, "now+1h"), "", 1000.0)
        self.assertEqual(renew[0], [URN])
        self.assertEqual(renew[2], "1970-01-01T01:16:40Z")
        poa = call_parameters(parsed("https://x/", "PerformOperationalAction", "geni_start", URN), "", 0)
        self.assertEqual((poa[0], poa[2]), ([URN], "geni_start"))

    def test_transaction_methods(self) -> None:
        """Begin and Update take the slice, the RSpec file and the caller's key as users; Commit and Abort the slice."""
        rspec, key = self.mktemp(), self.mktemp()
        Path(rspec).write_text("<rspec/>")
        Path(key).write_text("ssh-ed25519 AAAA me\n")
        begin = call_parameters(parsed("https://x/", "BeginTransaction", URN, rspec, "--ssh-key", key), "urn:me", 0)
        self.assertEqual(begin, [URN, [], "<rspec/>", [{"urn": "urn:me", "keys": ["ssh-ed25519 AAAA me"]}], {}])
        update = call_parameters(parsed("https://x/", "UpdateTransaction", URN, rspec), "", 0)
        self.assertEqual(update, [URN, [], "<rspec/>", [], {}])
        for method in ("CommitTransaction", "AbortTransaction"):
            self.assertEqual(call_parameters(parsed("https://x/", method, URN), "", 0), [URN, [], {}])

    def test_options_and_credentials(self) -> None:
        """--option values are JSON when they parse; --credential files are wrapped as v3 structs."""
        path = self.mktemp()
        Path(path).write_text("<signed-credential/>")
        options = parsed("https://x/", "Delete", URN, "--option", "geni_best_effort=true", "--option", "note=hello",
                         "--credential", path)
        params = call_parameters(options, "", 0)
        self.assertEqual(params[2], {"geni_best_effort": True, "note": "hello"})
        self.assertEqual(params[1][0]["geni_value"], "<signed-credential/>")

    def test_usage_errors(self) -> None:
        """Unknown methods, missing arguments and missing identity are usage errors (exit 2)."""
        with self.assertRaises(usage.UsageError):
            parsed("https://x/", "Frobnicate")
        with self.assertRaises(usage.UsageError):
            call_parameters(parsed("https://x/", "Allocate", URN), "", 0)
        self.assertEqual(main(["https://x/", "GetVersion"]), 2)

    def test_render(self) -> None:
        """Errors show their code and output; values are laid out as indented text."""
        text = render({"code": {"geni_code": 12}, "output": "no such sliver", "value": ""})
        self.assertIn("geni_code: 12  (no such sliver)", text)
        text = render({"code": {"geni_code": 0}, "value": {"geni_slivers": [{"geni_sliver_urn": "u"}]}})
        self.assertIn("geni_sliver_urn: u", text)


class CommandTests(TestCase):
    """C{geniam call} in a child process against a running aggregate."""

    async def test_get_version_and_list_resources(self) -> None:
        """GetVersion and ListResources succeed (exit 0); a wrong slice credential gives exit 1."""
        folder = copied_domain(self, "am", make_domain)
        clock = Clock()
        clock.advance(time.time())
        fed = LoopbackFederation(folder, reactor, clock, aggregate_names=("am1",), user_names=("alice", "bob"))
        await fed.start()
        self.addCleanup(lambda: Deferred.fromCoroutine(fed.stop()))
        domain = fed.domain
        usercred = folder / "alice-usercred.xml"
        usercred.write_text(fed.user_credential("alice"))
        base = [
            "--certificate", str(domain.cert_path("users", "alice")),
            "--private-key", str(domain.key_path("users", "alice")),
            "--trust-roots", str(domain.roots_dir),
        ]
        env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))

        async def geniam(*args: str) -> tuple[bytes, bytes, int]:
            return await getProcessOutputAndValue(sys.executable, ["-m", "geniam", "call", *args], env=env)

        out, err, code = await geniam(fed.url("am1"), "GetVersion", *base)
        self.assertEqual(code, 0, err)
        self.assertIn(b"geni_api: 3", out)
        out, err, code = await geniam(fed.url("am1"), "ListResources", "--credential", str(usercred), *base)
        self.assertEqual(code, 0, err)
        self.assertIn(b"<rspec", out)
        out, err, code = await geniam(fed.url("am1"), "Status", fed.slice_urn("exp1"), "--credential", str(usercred), *base)
        self.assertEqual(code, 1)
        self.assertIn(b"geni_code: ", out)
