"""
The status listener's flags on the aggregate and slice managers, in TOML
too, and that it is off unless asked for.
"""

from __future__ import annotations

from pathlib import Path

from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from geniam.tap.am import Options as AMOptions
from geniam.tap.sm import Options as SMOptions
from geniam.web.status import StatusListener


class StatusOptionsTests(SynchronousTestCase):
    """C{--status-port} and C{--status-interface}."""

    def test_off_by_default(self) -> None:
        """Without --status-port there is no status listener; it would bind to loopback."""
        options = AMOptions()
        options.parseOptions([])
        self.assertIsNone(options["status-port"])
        self.assertEqual(options["status-interface"], "127.0.0.1")

    def test_flags(self) -> None:
        """Both roles take the port (0 picks a free one) and the interface."""
        for options_type, extra in ((AMOptions, []), (SMOptions, ["--aggregate", "https://am.example:8001/"])):
            options = options_type()
            options.parseOptions(["--status-port", "0", "--status-interface", "0.0.0.0", *extra])
            self.assertEqual((options["status-port"], options["status-interface"]), (0, "0.0.0.0"))
            self.assertRaises(usage.UsageError, options_type().parseOptions, ["--status-port", "70000", *extra])

    def test_toml(self) -> None:
        """The flags may be set in the configuration file."""
        path = Path(self.mktemp())
        path.write_text('[am]\nstatus-port = 8080\nstatus_interface = "::1"\n')
        options = AMOptions()
        options.parseOptions(["--config", str(path)])
        self.assertEqual((options["status-port"], options["status-interface"]), (8080, "::1"))

    def test_url(self) -> None:
        """The listener names its URL, with IPv6 addresses in brackets."""
        self.assertEqual(StatusListener(None, 8080).url, "http://127.0.0.1:8080/")
        self.assertEqual(StatusListener(None, 8080, "::1").url, "http://[::1]:8080/")
