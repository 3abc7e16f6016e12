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

from geniam.cli.call import Options, call_parameters, cm_arguments, cm_url, main, render
from geniam.loopback import LoopbackFederation
from geniam.rspec.request import build_request
from tests.domains import copied_domain
from tests.loopback.test_am import make_domain
from tests.fixturepaths import REPO_ROOT

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

    def test_transaction_identifiers(self) -> None:
        """--option geniam_transaction stays a string even when it reads as a JSON number; geniam_transactions is a struct."""
        for identifier in ("1234e5", "42"):
            params = call_parameters(parsed("https://x/", "CommitTransaction", URN, "--option", f"geniam_transaction={identifier}"), "", 0)
            self.assertEqual(params, [URN, [], {"geniam_transaction": identifier}])
        params = call_parameters(parsed("https://x/", "AbortTransaction", URN, "--option", 'geniam_transactions={"urn:am": "1e3"}'), "", 0)
        self.assertEqual(params[2], {"geniam_transactions": {"urn:am": "1e3"}})
        self.assertEqual(call_parameters(parsed("https://x/", "Delete", URN, "--option", "call_id=7"), "", 0)[2], {"call_id": "7"})

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

    def test_cm_arguments(self) -> None:
        """--cm builds one struct of named arguments: JSON values, @FILE contents, times, credentials and keys."""
        rspec, key, cred = self.mktemp(), self.mktemp(), self.mktemp()
        Path(rspec).write_text("<rspec/>")
        Path(key).write_text("ssh-ed25519 AAAA me\n")
        Path(cred).write_text("<signed-credential/>")
        options = parsed("--cm", "https://x:5001/", "GetTicket", f"slice_urn={URN}", f"rspec=@{rspec}", "n=3",
                         "--credential", cred, "--ssh-key", key)
        self.assertEqual(
            cm_arguments(options, 0),
            {"slice_urn": URN, "rspec": "<rspec/>", "n": 3, "credentials": ["<signed-credential/>"],
             "keys": [{"type": "ssh", "key": "ssh-ed25519 AAAA me"}]},
        )
        renew = cm_arguments(parsed("--cm", "https://x/", "RenewSlice", "expiration=now+1h"), 1000.0)
        self.assertEqual(renew, {"expiration": "1970-01-01T01:16:40Z"})
        self.assertEqual(cm_url("https://x:5001/"), "https://x:5001/protogeni/xmlrpc/cm/2.0")
        self.assertEqual(cm_url("https://x:5001/protogeni/xmlrpc/cm"), "https://x:5001/protogeni/xmlrpc/cm")
        with self.assertRaises(usage.UsageError):
            parsed("--cm", "https://x/", "Allocate")  # an AM API method, not a CM one
        with self.assertRaises(usage.UsageError):
            parsed("https://x/", "GetTicket")  # a CM method without --cm
        with self.assertRaises(usage.UsageError):
            cm_arguments(parsed("--cm", "https://x/", "Resolve", URN), 0)

    def test_render(self) -> None:
        """Errors show their code and output; values are laid out as indented text."""
        text = render({"code": {"geni_code": 12}, "output": "no such sliver", "value": ""})
        self.assertIn("geni_code: 12  (no such sliver)", text)
        text = render({"code": {"geni_code": 0}, "value": {"geni_slivers": [{"geni_sliver_urn": "u"}]}})
        self.assertIn("geni_sliver_urn: u", text)
        text = render({"code": 7, "value": "", "output": "the slice already has a sliver here"})
        self.assertIn("geni_code: 7  (the slice already has a sliver here)", text)


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
        env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))

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

        # The component manager API: a ticket, its state, and a refusal with its code (exit 1).
        slicecred, rspec = folder / "alice-exp1.xml", folder / "request.xml"
        slicecred.write_text(fed.slice_credential("exp1", "alice"))
        start = time.time() + 3600
        rspec.write_text(build_request(start, start + 3600))
        slice_args = [f"slice_urn={fed.slice_urn('exp1')}", "--credential", str(slicecred), *base]
        out, err, code = await geniam("--cm", fed.url("am1"), "GetTicket", f"rspec=@{rspec}", *slice_args)
        self.assertEqual(code, 0, err)
        self.assertIn(b"geni_code: 0", out)
        self.assertIn(b"<type>ticket</type>", out)
        out, err, code = await geniam("--cm", fed.url("am1"), "Resolve", f"urn={fed.slice_urn('exp1')}", "--json",
                                      "--credential", str(slicecred), *base)
        self.assertEqual(code, 0, err)
        self.assertIn(b'"ticket_urn": "urn:publicid:IDN+', out)
        out, err, code = await geniam("--cm", fed.url("am1"), "GetTicket", f"rspec=@{rspec}", *slice_args)
        self.assertEqual(code, 1)
        self.assertIn(b"geni_code: 7  (GetTicket: the slice already holds a valid ticket here", out)
