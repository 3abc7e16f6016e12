"""
C{--log-format json}: the flag of every role, the JSON line of an event,
and how a role's top service gives twistd's application its observer.
"""

from __future__ import annotations

import json
from pathlib import Path

from twisted.application.service import Application, Service
from twisted.internet.task import Clock
from twisted.logger import ILogObserver, Logger, LogLevel
from twisted.python import usage
from twisted.scripts.twistd import ServerOptions as TwistdOptions
from twisted.trial.unittest import SynchronousTestCase

from geniam.agent.options import AgentOptions
from geniam.observe.logformat import event_as_json
from geniam.tap.am import Options as AMOptions
from geniam.tap.failfast import StartupGuard
from geniam.tap.sm import Options as SMOptions


class FlagTests(SynchronousTestCase):
    """Every role takes --log-format text|json, text by default."""

    def test_every_role(self) -> None:
        """The AM, the SM and the agent accept json and refuse anything else."""
        for options_type, extra in (
            (AMOptions, []),
            (SMOptions, ["--aggregate", "https://am.example:8001/"]),
            (AgentOptions, ["--allow", "urn:publicid:IDN+x+authority+am"]),
        ):
            options = options_type()
            options.parseOptions(extra)
            self.assertEqual(options["log-format"], "text")
            options = options_type()
            options.parseOptions(["--log-format", "json", *extra])
            self.assertEqual(options["log-format"], "json")
            self.assertRaises(usage.UsageError, options_type().parseOptions, ["--log-format", "xml", *extra])


class EventTests(SynchronousTestCase):
    """One event, one JSON object."""

    def test_fields(self) -> None:
        """The text, level, namespace and named fields are kept; other values become their text."""
        event = {
            "log_format": "{method} took {duration:.1f} s",
            "log_level": LogLevel.warn,
            "log_namespace": "geniam.calls",
            "log_time": 0.0,
            "method": "Allocate",
            "duration": 1.25,
            "sliver_urns": ("a", "b"),
            "odd": object(),
        }
        record = json.loads(event_as_json(event))
        self.assertEqual(record["message"], "Allocate took 1.2 s")
        self.assertEqual((record["level"], record["namespace"], record["time"]), ("warn", "geniam.calls", "1970-01-01T00:00:00+00:00"))
        self.assertEqual((record["method"], record["duration"], record["sliver_urns"]), ("Allocate", 1.25, ["a", "b"]))
        self.assertTrue(record["odd"].startswith("<object object"))


class TwistdTests(SynchronousTestCase):
    """The role's top service sets twistd's application log observer."""

    def guard_in(self, *args: str) -> Application:
        config = TwistdOptions()
        config.parseOptions(list(args))
        application = Application("geniam-am")
        StartupGuard(Service(), "geniam-am", Clock(), options=config.subOptions).setServiceParent(application)
        return application

    def test_json_to_logfile(self) -> None:
        """With --log-format json the application's observer writes JSON lines to twistd's --logfile."""
        path = Path(self.mktemp())
        application = self.guard_in("--logfile", str(path), "geniam-am", "--log-format", "json")
        observer = application.getComponent(ILogObserver)
        self.assertIsNotNone(observer)
        Logger(namespace="geniam.calls", observer=observer).info("{method} answered", method="GetVersion")
        observer._outFile.close()
        record = json.loads(path.read_text().strip())
        self.assertEqual((record["message"], record["method"]), ("GetVersion answered", "GetVersion"))

    def test_text_and_explicit_logger(self) -> None:
        """Text (the default) and twistd's own --logger leave twistd's choice alone."""
        self.assertIsNone(self.guard_in("-n", "geniam-am").getComponent(ILogObserver))
        explicit = self.guard_in("-n", "--logger", "twisted.logger.textFileLogObserver", "geniam-am", "--log-format", "json")
        self.assertIsNone(explicit.getComponent(ILogObserver))
