"""
Tests for L{geniam.cli.admin}: the command line builds the operators'
calls it documents, and refuses malformed ones.
"""

from __future__ import annotations

from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from geniam.cli.admin import Options, admin_call, admin_url
from geniam.timeutil import format_time

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
