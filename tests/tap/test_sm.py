"""
Tests for L{geniam.tap.sm}: C{twistd geniam-sm}'s options, its service
tree, the plugin and the thin C{tap/sm.tac}.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from twisted.application.internet import TimerService
from twisted.application.service import IService, IServiceCollection, IServiceMaker
from twisted.internet.testing import MemoryReactorClock
from twisted.persisted import sob
from twisted.plugin import getPlugins
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from geniam.trust.forwarding import CredentialForwarder
from geniam.tap.common import ThreadPoolService
from geniam.tap.failfast import StartupGuard
from geniam.tap.sm import Options, SliceManagerService, build, parse_aggregate, read_credentials
from tests.fixturepaths import REPO_ROOT

AM1 = "urn:publicid:IDN+island1.example+authority+am"
TAC = REPO_ROOT / "tap" / "sm.tac"


def parse(*argv: str) -> Options:
    options = Options()
    options.parseOptions(list(argv))
    return options


class OptionsTests(SynchronousTestCase):
    """Flags, the configuration file and their checks."""

    def test_repeatable_aggregates(self) -> None:
        """--aggregate repeats, as URL or URN=URL."""
        options = parse("--aggregate", "https://a.example:8001/", "--aggregate", f"{AM1}=https://b.example:8001/am/3.0")
        self.assertEqual(
            options["aggregates"], [(None, "https://a.example:8001/"), (AM1, "https://b.example:8001/am/3.0")]
        )
        self.assertEqual(options["port"], 8003)

    def test_defaults_and_durations(self) -> None:
        """Timeouts take units; the settings carry them to the slice manager."""
        options = parse("--aggregate", "https://a.example/", "--peer-timeout", "2m", "--deadline", "150",
                        "--cache-ttl", "1h", "--max-concurrency", "64", "--breaker-failures", "3")
        settings = options.settings()
        self.assertEqual((settings.peer_timeout, settings.deadline, settings.cache_ttl), (120.0, 150.0, 3600.0))
        self.assertEqual((settings.max_concurrency, settings.breaker_failures), (64, 3))
        self.assertIsNone(settings.stale_ttl)
        self.assertEqual(settings.call_id_window, 600.0)

    def test_commit_retry(self) -> None:
        """--commit-retry takes a duration (default 5 s) into the settings; zero, negative and malformed values are refused."""
        self.assertEqual(parse("--aggregate", "https://a.example/").settings().commit_retry, 5.0)
        self.assertEqual(parse("--aggregate", "https://a.example/", "--commit-retry", "2m").settings().commit_retry, 120.0)
        self.assertEqual(parse("--aggregate", "https://a.example/", "--commit-retry", "1.5").settings().commit_retry, 1.5)
        for bad in ("0", "-5s", "soon", ""):
            self.assertRaises(usage.UsageError, parse, "--aggregate", "https://a.example/", "--commit-retry", bad)

    def test_commit_retry_in_file(self) -> None:
        """commit-retry in the [sm] table is read like the flag, and a bad value there is refused too."""
        path = Path(self.mktemp())
        path.write_text('[sm]\naggregate = ["https://a.example/"]\ncommit-retry = "10s"\n')
        self.assertEqual(parse("--config", str(path)).settings().commit_retry, 10.0)
        path.write_text('[sm]\naggregate = ["https://a.example/"]\ncommit-retry = "never"\n')
        self.assertRaises(usage.UsageError, parse, "--config", str(path))

    def test_needs_an_aggregate(self) -> None:
        """A slice manager without aggregates is refused."""
        self.assertRaises(usage.UsageError, parse)

    def test_bad_aggregates(self) -> None:
        """Plain HTTP, malformed URNs and repeated URLs are refused."""
        self.assertRaises(usage.UsageError, parse, "--aggregate", "http://a.example/")
        self.assertRaises(usage.UsageError, parse, "--aggregate", "urn:publicid:IDN+bad=https://a.example/")
        self.assertRaises(usage.UsageError, parse, "--aggregate", "https://a.example/", "--aggregate", "https://a.example/")
        self.assertRaises(usage.UsageError, parse_aggregate, "not a url")

    def test_missing_credential_file(self) -> None:
        """--credential must name a file."""
        self.assertRaises(usage.UsageError, parse, "--aggregate", "https://a.example/", "--credential", "/nonexistent")

    def test_configuration_file(self) -> None:
        """The [sm] table sets aggregates and timeouts; flags given on the command line win."""
        path = Path(self.mktemp())
        path.write_text(
            'port = 9000\n[sm]\naggregate = ["https://a.example/", "' + AM1 + '=https://b.example/"]\n'
            'peer-timeout = "5s"\ndeadline = "10s"\n'
        )
        options = parse("--config", str(path), "--deadline", "20")
        self.assertEqual([url for _, url in options["aggregates"]], ["https://a.example/", "https://b.example/"])
        self.assertEqual((options["port"], options["peer-timeout"], options["deadline"]), (9000, 5.0, 20.0))

    def test_flags_replace_file_aggregates(self) -> None:
        """Aggregates on the command line replace those of the file."""
        path = Path(self.mktemp())
        path.write_text('[sm]\naggregate = ["https://a.example/"]\n')
        options = parse("--config", str(path), "--aggregate", "https://c.example/")
        self.assertEqual(options["aggregates"], [(None, "https://c.example/")])

    def test_read_credentials(self) -> None:
        """Credential files must hold a credential."""
        path = Path(self.mktemp())
        path.write_text("<not-a-credential/>")
        self.assertRaises(usage.UsageError, read_credentials, [str(path)])


class ServiceTreeTests(SynchronousTestCase):
    """makeService builds, and does no I/O until started."""

    def test_build(self) -> None:
        """A development slice manager: workers, a refresh timer, one peer per aggregate, its own credential."""
        data = self.mktemp()
        reactor = MemoryReactorClock()
        reactor.advance(time.time())
        options = parse("--data-dir", data, "--port", "0", "--aggregate", "https://a.example/",
                        "--aggregate", f"{AM1}=https://b.example:8001/")
        service = build(options, reactor)
        self.assertIsInstance(service, SliceManagerService)
        IService(service)
        children = list(IServiceCollection(service))
        self.assertEqual([type(c) for c in children], [ThreadPoolService, TimerService])
        self.assertEqual([r.url for r in service.manager.records], ["https://a.example/", "https://b.example:8001/"])
        self.assertEqual(service.manager.records[1].urn, AM1)
        self.assertEqual(service.policy.expected_urns, {"b.example:8001": AM1})
        self.assertTrue(os.path.isdir(os.path.join(data, "trust")))
        forwarder = service.forwarding
        self.assertIsInstance(forwarder, CredentialForwarder)
        self.assertEqual(len(forwarder.own_credentials), 1)
        context = service.contexts(service.trust.identity.gid, [])
        self.assertIs(context.forwarding, forwarder)
        self.assertIs(context.authorizer, service.verifier)
        self.assertEqual(reactor.tcpServers + reactor.sslServers, [])
        self.assertIsNone(service.port)

    def test_plugin(self) -> None:
        """twistd finds geniam-sm, pointing at this module."""
        import twisted.plugins

        makers = {m.tapname: m for m in getPlugins(IServiceMaker, twisted.plugins)}
        self.assertEqual(makers["geniam-sm"].module, "geniam.tap.sm")  # type: ignore[attr-defined]

    def test_tac(self) -> None:
        """tap/sm.tac builds the slice manager from the file GENIAM_SM_CONFIG names."""
        config = Path(self.mktemp())
        config.write_text(f'data-dir = "{self.mktemp()}"\n[sm]\naggregate = ["https://a.example/"]\n')
        self.patch(os, "environ", {**os.environ, "GENIAM_SM_CONFIG": str(config)})
        application = sob.loadValueFromFile(str(TAC), "application")
        services = list(IServiceCollection(application))
        self.assertEqual(len(services), 1)
        guard = services[0]
        assert isinstance(guard, StartupGuard)
        self.assertIsInstance(guard.service, SliceManagerService)

    def test_example_toml(self) -> None:
        """tap/sm.toml is a valid configuration, federating the aggregate tap/am.toml describes."""
        options = parse("--config", str(TAC.parent / "sm.toml"))
        self.assertEqual(options["aggregates"], [(None, "https://127.0.0.1:8001/")])
        self.assertEqual((options["port"], options["interface"]), (8003, "127.0.0.1"))
        self.assertEqual((options["peer-timeout"], options["deadline"], options["cache-ttl"]), (30.0, 60.0, 60.0))

    def test_tac_default_config(self) -> None:
        """Without GENIAM_SM_CONFIG, tap/sm.tac reads tap/sm.toml (from any working directory)."""
        environ = {k: v for k, v in os.environ.items() if k != "GENIAM_SM_CONFIG"}
        self.patch(os, "environ", environ)
        application = sob.loadValueFromFile(str(TAC), "application")
        [guard] = list(IServiceCollection(application))
        assert isinstance(guard, StartupGuard)
        service = guard.service
        assert isinstance(service, SliceManagerService)
        self.assertEqual([record.peer.url for record in service.manager.records], ["https://127.0.0.1:8001/"])
