"""
Tests for L{geniam.cli.rspec}: C{geniam rspec request}.
"""

from __future__ import annotations

import io
import sys

from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from geniam.cli.main import main as geniam_main
from geniam.cli.rspec import main, parse_when
from geniam.rspec.request import build_request, parse_request
from geniam.rspec.split import split_request
from geniam.timeutil import format_time
from tests.rspec.test_fixtures import AM, END, OTHER_AM, START, THIRD_AM

NOW = START - 3600


class RequestCommandTests(SynchronousTestCase):
    """The command prints a request that parses, and refuses bad flags with status 2."""

    def setUp(self) -> None:
        """Capture standard output and error."""
        self.stdout = io.StringIO()
        self.stderr = io.StringIO()
        self.patch(sys, "stdout", self.stdout)
        self.patch(sys, "stderr", self.stderr)

    def run_command(self, *argv: str) -> int:
        """Run C{geniam rspec ARGV} at L{NOW}."""
        return main(list(argv), now=NOW)

    def test_full_request(self) -> None:
        """Every flag ends up in a request that parse_request reads back."""
        status = self.run_command(
            "request",
            "--start", format_time(START),
            "--end", format_time(END),
            "--controller", "ctl.example.org:6633",
            "--vlan", "10=0xffff",
            "--vlan", "30=20",
            "--aggregate", AM,
        )  # fmt: skip
        self.assertEqual(status, 0, self.stderr.getvalue())
        request = parse_request(self.stdout.getvalue(), AM)
        self.assertEqual(request.slot, (START, END))
        self.assertEqual(request.controller, "ctl.example.org:6633")
        self.assertEqual(request.vlan_map, {"10": "0xffff", "30": "20"})
        self.assertEqual(request.component_manager_ids, (AM,))
        self.assertEqual(self.stderr.getvalue(), "")

    def test_several_aggregates(self) -> None:
        """Repeated --aggregate books the same slot on each island, each with its own node and elements."""
        aggregates = (AM, OTHER_AM, THIRD_AM)
        status = self.run_command(
            "request",
            "--start", format_time(START),
            "--end", format_time(END),
            "--controller", "ctl.example.org:6633",
            "--vlan", "10=0xffff",
            "--aggregate", AM,
            "--aggregate", OTHER_AM,
            "--aggregate", THIRD_AM,
        )  # fmt: skip
        self.assertEqual(status, 0, self.stderr.getvalue())
        text = self.stdout.getvalue()
        client_ids = set()
        for urn in aggregates:
            request = parse_request(text, urn)
            self.assertEqual(request.slot, (START, END))
            self.assertEqual(request.controller, "ctl.example.org:6633")
            self.assertEqual(request.vlan_map, {"10": "0xffff"})
            self.assertEqual(request.component_manager_ids, aggregates)
            self.assertEqual(len(request.node_client_ids), 1)
            client_ids.add(request.node_client_ids[0])
        self.assertEqual(len(client_ids), 3)
        parts = split_request(text, list(aggregates))
        self.assertEqual(list(parts), list(aggregates))
        for urn, part in parts.items():
            request = parse_request(part, urn)
            self.assertEqual(request.slot, (START, END))
            self.assertEqual(request.vlan_map, {"10": "0xffff"})
            self.assertEqual(request.component_manager_ids, (urn,))
            self.assertEqual(request.foreign_node_client_ids, ())
            self.assertEqual(request.node_client_ids, parse_request(text, urn).node_client_ids)

    def test_single_aggregate_output(self) -> None:
        """One --aggregate prints exactly the single-island request."""
        status = self.run_command(
            "request", "--start", format_time(START), "--end", format_time(END), "--vlan", "10=20", "--aggregate", AM
        )
        self.assertEqual(status, 0, self.stderr.getvalue())
        self.assertEqual(self.stdout.getvalue(), build_request(START, END, vlan_map={"10": "20"}, am_urn=AM))
        self.assertEqual(parse_request(self.stdout.getvalue(), AM).node_client_ids, ("island",))

    def test_relative_times(self) -> None:
        """'now' and 'now+1h30m' are relative to the current time."""
        self.assertEqual(self.run_command("request", "--start", "now+1h", "--end", "now+1h30m"), 0)
        request = parse_request(self.stdout.getvalue(), AM)
        self.assertEqual(request.slot, (NOW + 3600, NOW + 5400))

    def test_through_geniam_command(self) -> None:
        """The top-level C{geniam} dispatcher reaches this command."""
        status = geniam_main(["rspec", "request", "--start", "now", "--end", "now+10m"])
        self.assertEqual(status, 0, self.stderr.getvalue())
        self.assertIn("<island:slot", self.stdout.getvalue())

    def assertUsageError(self, *argv: str, message: str) -> None:
        """Assert that C{argv} exits 2 with C{message} on stderr and nothing on stdout."""
        self.assertEqual(self.run_command(*argv), 2)
        self.assertIn(message, self.stderr.getvalue())
        self.assertIn("Usage: geniam rspec", self.stderr.getvalue())
        self.assertEqual(self.stdout.getvalue(), "")

    def test_missing_times(self) -> None:
        """--start and --end are required."""
        self.assertUsageError("request", "--end", "now+1h", message="--start is required")
        self.assertUsageError("request", "--start", "now", message="--end is required")

    def test_bad_time(self) -> None:
        """An unreadable time is refused."""
        self.assertUsageError("request", "--start", "tomorrow", "--end", "now+1h", message="bad time 'tomorrow'")

    def test_inverted_slot(self) -> None:
        """An end before the start is refused."""
        self.assertUsageError("request", "--start", "now+1h", "--end", "now", message="before --end")

    def test_bad_controller(self) -> None:
        """A controller without a port is refused."""
        self.assertUsageError(
            "request", "--start", "now", "--end", "now+1h", "--controller", "192.0.2.1", message="controller"
        )

    def test_bad_vlans(self) -> None:
        """Malformed, out-of-range or repeated VLANs are refused."""
        base = ("request", "--start", "now", "--end", "now+1h")
        self.assertUsageError(*base, "--vlan", "10", message="TESTBED=ISLAND")
        self.setUp()
        self.assertUsageError(*base, "--vlan", "10=4095", message="4095")
        self.setUp()
        self.assertUsageError(*base, "--vlan", "10=20", "--vlan", "10=30", message="twice")

    def test_bad_aggregate(self) -> None:
        """A malformed aggregate URN is refused."""
        self.assertUsageError("request", "--start", "now", "--end", "now+1h", "--aggregate", "am", message="URN")
        self.setUp()
        self.assertUsageError(
            "request", "--start", "now", "--end", "now+1h", "--aggregate", AM, "--aggregate", "am", message="URN"
        )

    def test_aggregate_twice(self) -> None:
        """The same aggregate given twice is refused."""
        self.assertUsageError(
            "request", "--start", "now", "--end", "now+1h", "--aggregate", AM, "--aggregate", AM, message="twice"
        )

    def test_unknown_flag(self) -> None:
        """An unknown flag is refused."""
        self.assertUsageError("request", "--start", "now", "--end", "now+1h", "--colour", "x", message="colour")

    def test_no_command(self) -> None:
        """Without a command the usage is printed and the status is 2."""
        self.assertUsageError(message="missing command")

    def test_unknown_command(self) -> None:
        """An unknown command is refused."""
        self.assertUsageError("advertise", message="advertise")

    def test_help(self) -> None:
        """--help lists the flags and exits 0."""
        self.assertEqual(self.run_command("request", "--help"), 0)
        for flag in ("--start", "--end", "--controller", "--vlan", "--aggregate"):
            self.assertIn(flag, self.stdout.getvalue())
        self.assertIn("Repeat --aggregate", self.stdout.getvalue())


class ParseWhenTests(SynchronousTestCase):
    """parse_when reads RFC 3339 and relative times."""

    def test_forms(self) -> None:
        """Each documented form gives the expected time."""
        self.assertEqual(parse_when("now", 100.0), 100.0)
        self.assertEqual(parse_when("now+10m", 100.0), 700.0)
        self.assertEqual(parse_when("NOW+1d2h3m4s", 0.0), 86400 + 7200 + 180 + 4)
        self.assertEqual(parse_when("now-30s", 100.0), 70.0)
        self.assertEqual(parse_when("2027-01-15T08:00:00Z", 0.0), START)
        self.assertEqual(parse_when("2027-01-15T09:00:00+01:00", 0.0), START)

    def test_refused(self) -> None:
        """Anything else is a usage error."""
        for text in ("now+", "now+10", "now+10y", "later", "now + 1h", ""):
            self.assertRaises(usage.UsageError, parse_when, text, 0.0)
