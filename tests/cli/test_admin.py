"""
Tests for L{geniam.cli.admin}: the command line builds the operators'
calls it documents, and refuses malformed ones; and the real command, in a
child process, operates a real aggregate manager over TLS on loopback.
"""

from __future__ import annotations

import json
import os
import sys

from twisted.internet.utils import getProcessOutputAndValue
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from geniam.cli.admin import Options, admin_call, admin_url
from geniam.timeutil import format_time
from tests.fixturepaths import REPO_ROOT
from tests.loopback.test_am import HOUR
from tests.loopback.test_operators import OperatorHarness

NOW = 1_800_000_000.0
IDENTITY = ["--certificate", "c.pem", "--private-key", "k.pem", "--trust-roots", "roots"]


def parsed(*argv: str) -> Options:
    options = Options()
    options.parseOptions([*argv, *IDENTITY])
    return options


class AdminCommandTests(SynchronousTestCase):
    """Each action becomes one operators' call."""

    def test_calls(self) -> None:
        url = "https://am.example:8001/"
        cases = [
            (["bookings", "--from", "now", "--to", "now+2h"], ("ListBookings", [{"start": format_time(NOW), "end": format_time(NOW + 7200)}])),
            (["cancel", "urn:publicid:IDN+a+sliver+1", "--reason", "fire"], ("CancelBooking", ["urn:publicid:IDN+a+sliver+1", "fire"])),
            (
                ["maintenance", "now+1h", "now+3h", "--reason", "switch", "--cancel-overlapping"],
                ("AddMaintenance", [format_time(NOW + 3600), format_time(NOW + 3 * 3600), "switch", {"cancel_overlapping": True}]),
            ),
            (["reopen", "m-1"], ("RemoveMaintenance", ["m-1"])),
            (["policy"], ("GetPolicy", [])),
            (["policy", "user-quota=4h", "max_advance=0"], ("SetPolicy", [{"user_quota": 14400.0, "max_advance": 0.0}])),
            (["audit"], ("ListAudit", [{}])),
        ]
        for argv, expected in cases:
            self.assertEqual(admin_call(parsed(url, *argv), NOW), expected, argv)

    def test_refused(self) -> None:
        """Missing reasons, unknown actions and bad durations are usage errors."""
        self.assertRaises(usage.UsageError, admin_call, parsed("https://x/", "cancel", "urn:x"), NOW)
        self.assertRaises(usage.UsageError, admin_call, parsed("https://x/", "policy", "user_quota=lots"), NOW)
        self.assertRaises(usage.UsageError, parsed, "https://x/", "explode")

    def test_url(self) -> None:
        for url in ("https://h:8001/", "https://h:8001", "https://h:8001/am/3.0", "https://h:8001/admin"):
            self.assertEqual(admin_url(url), "https://h:8001/admin")


class AdminProcessTests(OperatorHarness):
    """C{python -m geniam admin} in a child process against a running AM whose operator is bob."""

    async def geniam_admin(self, user: str, *args: str) -> tuple[str, str, int]:
        """Run C{geniam admin URL ARGS} as C{user}; its stdout, stderr and exit status."""
        domain = self.fed.domain
        identity = [
            "--certificate", str(domain.cert_path("users", user)),
            "--private-key", str(domain.key_path("users", user)),
            "--trust-roots", str(domain.roots_dir),
        ]  # fmt: skip
        env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
        out, err, code = await getProcessOutputAndValue(
            sys.executable, ["-m", "geniam", "admin", self.service.url, *args, *identity], env=env
        )
        return out.decode(), err.decode(), code

    async def test_operator_and_non_operator(self) -> None:
        """bob lists bookings, adds a window and sees it listed; alice is refused with a message and a non-zero status."""
        await self.start()
        sliver = await self.running_booking(start_in=HOUR, length=HOUR)
        out, err, code = await self.geniam_admin("bob", "bookings", "--json")
        self.assertEqual(code, 0, err)
        listing = json.loads(out)["value"]
        self.assertEqual([b["sliver_urn"] for b in listing["bookings"]], [sliver])
        self.assertEqual(listing["maintenance"], [])
        out, err, code = await self.geniam_admin("bob", "maintenance", "now+90m", "now+4h", "--reason", "new switch")
        self.assertEqual(code, 0, err)
        self.assertIn("new switch", out)
        self.assertIn(sliver, out)  # the booking the window overlaps, left in place
        out, err, code = await self.geniam_admin("bob", "bookings", "--json")
        self.assertEqual(code, 0, err)
        (window,) = json.loads(out)["value"]["maintenance"]
        self.assertEqual(window["reason"], "new switch")
        self.assertEqual(len(await self.service.store.list_live(self.window())), 1)
        out, err, code = await self.geniam_admin("bob", "bookings")
        self.assertEqual(code, 0, err)
        self.assertIn(sliver, out)
        self.assertIn("new switch", out)

        for argv in (["bookings"], ["maintenance", "now+5h", "now+6h", "--reason", "mine now"]):
            out, err, code = await self.geniam_admin("alice", *argv)
            self.assertEqual(code, 1, out + err)  # the AM refused (2 is for usage and connection errors)
            self.assertIn(f'geni_code: 3  ("{self.fed.domain.user_urn("alice")}" is not an operator of this aggregate)', out)
        self.assertEqual(len(await self.service.store.list_maintenance(self.window())), 1)
        (entry,) = await self.service.store.list_audit()
        self.assertEqual((entry.operator, entry.action), (self.fed.domain.user_urn("bob"), "maintenance-add"))
