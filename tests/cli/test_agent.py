"""
Tests for C{geniam agent} (L{geniam.cli.agent}) that need no agent; the
runs against a real agent are in L{tests.loopback.test_pb}.
"""

from __future__ import annotations

import io
import os
import sys

from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from geniam.cli import agent as cli
from geniam.cli.main import SUBCOMMANDS
from tests.agent.test_backend import KEY_A, KEY_B


class FormatTests(SynchronousTestCase):
    """The text operators read."""

    def test_full_state(self) -> None:
        """Keys, proxy and VLAN map (sorted numerically, 0xffff shown as untagged) are listed."""
        text = cli.format_state(
            {"users": [KEY_A, KEY_B], "proxy": "10.0.0.1:6633", "vlans": {"100": "20", "9": "0xffff"}},
            "gw:8002",
            "urn:publicid:IDN+x+authority+am",
        )
        self.assertEqual(
            text,
            "Gateway agent gw:8002 (urn:publicid:IDN+x+authority+am)\n"
            "Users: 2 SSH keys:\n"
            f"  {KEY_A}\n"
            f"  {KEY_B}\n"
            "Proxy: controller port forwarded to 10.0.0.1:6633\n"
            "VLAN map (testbed -> island):\n"
            "     9 -> untagged\n"
            "   100 -> 20",
        )

    def test_empty_state(self) -> None:
        """An empty gateway says so."""
        self.assertEqual(
            cli.format_state({"users": [], "proxy": "", "vlans": {}}, "gw:8002"),
            "Gateway agent gw:8002\nUsers: 0 SSH keys\nProxy: none\nVLAN map: none",
        )


class UsageTests(SynchronousTestCase):
    """Bad command lines."""

    def setUp(self) -> None:
        self.err = io.StringIO()
        self.patch(sys, "stderr", self.err)

    def test_registered(self) -> None:
        """geniam agent dispatches to this module."""
        self.assertEqual(SUBCOMMANDS["agent"][0], "geniam.cli.agent")

    def test_missing_options(self) -> None:
        """Missing options exit 2 and name what is missing."""
        self.assertEqual(cli.main(["state", "--agent", "gw:8002"]), 2)
        self.assertIn("missing --trust-roots, --certificate, --private-key", self.err.getvalue())

    def test_bad_address(self) -> None:
        """An --agent that is not HOST:PORT exits 2."""
        self.assertEqual(cli.main(["state", "--agent", "gw", "--trust-roots", "r", "--certificate", "c", "--private-key", "k"]), 2)
        self.assertIn("--agent: agent address 'gw': expected 'host:port'", self.err.getvalue())

    def test_missing_command(self) -> None:
        """No subcommand exits 2."""
        self.assertEqual(cli.main([]), 2)
        self.assertIn("missing a command", self.err.getvalue())

    def test_unreadable_identity(self) -> None:
        """Unreadable certificate files exit 2 with a message, before any connection."""
        options = cli.StateOptions()
        missing = os.path.join(self.mktemp(), "nothing.pem")
        options.parseOptions(["--agent", "gw:8002", "--trust-roots", "/nonexistent", "--certificate", missing, "--private-key", missing])
        out, err = io.StringIO(), io.StringIO()
        reactor = MemoryReactorClock()
        status = self.successResultOf(Deferred.fromCoroutine(cli.run_state(reactor, options, out, err)))
        self.assertEqual(status, 2)
        self.assertIn("geniam agent state: cannot read", err.getvalue())
        self.assertEqual(reactor.tcpClients, [])
