"""
Tests for the twistd wiring of the gateway agent and of the aggregate
manager's link to it: plugin discovery, the C{--agent} flags, the service
trees, the order in which the AM starts and stops its agent client, and
the example C{.tac} and TOML files in C{tap/}.
"""

from __future__ import annotations

import os
import runpy
import shlex
import shutil
from pathlib import Path
from typing import Any

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IService, IServiceCollection, IServiceMaker, MultiService, Service
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.plugin import getPlugins
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase, TestCase

from geniam.agent.options import AgentOptions
from geniam.agent.service import BackendService, ConnectionsService
from geniam.agent.inprocess import InProcessGateway
from geniam.protocols.pbclient import PBGatewayAgent
from geniam.store.sqlite import SQLiteStore
from geniam.tap import agent as agent_tap
from geniam.tap import am as am_tap
from geniam.tap.am import AggregateService
from geniam.tap.common import ServerTrust
from geniam.tap.failfast import StartupGuard
from geniam.timeutil import parse_time
from geniam.trust.gid import TrustRoots
from geniam.trust.identity import Identity
from tests.fixturepaths import REPO_ROOT

ROOT = REPO_ROOT
FIXTURES = ROOT / "tests" / "fixtures" / "gcf"
NOW = parse_time("2026-11-22T12:00:00Z")
AGENT_URN = "urn:publicid:IDN+geni:gpo:gcf:agent+authority+am"
AM1_URN = "urn:publicid:IDN+geni:gpo:gcf:am1+authority+am"


def fixture(name: str) -> str:
    return str(FIXTURES / name)


class FixtureMixin:
    """Trust roots and a data folder for building services from the GENI fixtures."""

    def make_dirs(self, case: Any) -> None:
        self.roots = os.path.abspath(case.mktemp())
        os.makedirs(self.roots)
        shutil.copy(fixture("ch-cert.pem"), self.roots)
        self.data = os.path.abspath(case.mktemp())
        self.secret = os.path.join(self.roots, "secret")
        with open(self.secret, "w") as handle:
            handle.write("a shared secret of some length\n")

    def identity_flags(self, who: str = "am1") -> list[str]:
        return ["--trust-roots", self.roots, "--certificate", fixture(f"{who}-cert.pem"), "--private-key", fixture(f"{who}-key.pem")]


class PluginTests(SynchronousTestCase):
    """twistd finds both daemons."""

    def makers(self) -> dict[str, Any]:
        return {maker.tapname: maker for maker in getPlugins(IServiceMaker)}

    def test_found(self) -> None:
        """getPlugins(IServiceMaker) finds geniam-agent and geniam-am, pointing at their tap modules."""
        makers = self.makers()
        self.assertIn("geniam-am", makers)
        self.assertIn("geniam-agent", makers)
        self.assertIs(makers["geniam-agent"].options, AgentOptions)
        self.assertIs(makers["geniam-am"].options, am_tap.Options)
        self.assertIs(makers["geniam-agent"].makeService, agent_tap.makeService)

    def test_agent_tap(self) -> None:
        """geniam.tap.agent's Options is the agent's options class."""
        self.assertIs(agent_tap.Options, AgentOptions)


class AgentMakeServiceTests(SynchronousTestCase, FixtureMixin):
    """twistd geniam-agent builds the agent's tree on the global reactor."""

    def setUp(self) -> None:
        self.make_dirs(self)

    def test_tree(self) -> None:
        """makeService builds the back end, the connection closer and the TLS listener, without starting them."""
        options = agent_tap.Options()
        options.parseOptions(["--data-dir", self.data, "--port", "0", "--allow", AM1_URN, *self.identity_flags("agent")])
        guard = agent_tap.makeService(options)
        assert isinstance(guard, StartupGuard)
        service = guard.service
        assert isinstance(service, MultiService)
        self.assertEqual([type(c) for c in service], [BackendService, ConnectionsService, StreamServerEndpointService])
        self.assertFalse(service.running)


class AMOptionsTests(SynchronousTestCase, FixtureMixin):
    """The AM's flags for its gateway agent."""

    def setUp(self) -> None:
        self.make_dirs(self)

    def parse(self, *args: str) -> am_tap.Options:
        options = am_tap.Options()
        options.parseOptions(["--data-dir", self.data, *args])
        return options

    def test_defaults(self) -> None:
        """Without --agent the AM runs in simulated mode."""
        options = self.parse()
        self.assertEqual((options["agent"], options["agent-urn"], options["agent-secret-file"]), (None, None, None))
        self.assertEqual(options["agent-timeout"], 30.0)

    def test_agent_flags(self) -> None:
        """--agent, --agent-urn, --agent-secret-file and --agent-timeout are taken."""
        options = self.parse(
            "--agent", "gw.example.org:8002", "--agent-urn", AGENT_URN, "--agent-secret-file", self.secret, "--agent-timeout", "1m"
        )
        self.assertEqual(options["agent"], "gw.example.org:8002")
        self.assertEqual(options["agent-urn"], AGENT_URN)
        self.assertEqual(options["agent-secret-file"], self.secret)
        self.assertEqual(options["agent-timeout"], 60.0)

    def test_bad_flags(self) -> None:
        """A malformed address or URN, a missing secret file, or agent settings without --agent are usage errors."""
        cases = [
            (["--agent", "nohost"], "--agent"),
            (["--agent", "gw:99999"], "--agent"),
            (["--agent", "gw;rm -rf:1"], "--agent"),
            (["--agent", "gw:8002", "--agent-urn", "not a urn"], "--agent-urn"),
            (["--agent", "gw:8002", "--agent-secret-file", "/nonexistent/secret"], "no such file"),
            (["--agent-urn", AGENT_URN], "--agent-urn needs --agent"),
            (["--agent-secret-file", self.secret], "--agent-secret-file needs --agent"),
        ]
        for args, message in cases:
            error = self.assertRaises(usage.UsageError, self.parse, *args)
            self.assertIn(message, str(error), args)

    def test_config_table(self) -> None:
        """The agent settings may come from the [am] table of --config; flags win."""
        config = os.path.join(self.roots, "am.toml")
        with open(config, "w") as handle:
            handle.write(f'[am]\nagent = "10.1.2.3:8002"\nagent-urn = "{AGENT_URN}"\nagent-secret-file = "{self.secret}"\n')
        options = self.parse("--config", config)
        self.assertEqual((options["agent"], options["agent-urn"]), ("10.1.2.3:8002", AGENT_URN))
        options = self.parse("--config", config, "--agent", "10.9.9.9:1")
        self.assertEqual(options["agent"], "10.9.9.9:1")


class AMBuildTests(SynchronousTestCase, FixtureMixin):
    """What twistd geniam-am builds, with and without --agent."""

    def setUp(self) -> None:
        self.make_dirs(self)

    def build(self, *args: str) -> AggregateService:
        options = am_tap.Options()
        options.parseOptions(["--data-dir", self.data, "--port", "0", *self.identity_flags(), *args])
        return am_tap.build(options, MemoryReactorClock())

    def test_with_agent(self) -> None:
        """With --agent the AM's island manager drives a PB client, which is a child service of the AM."""
        service = self.build("--agent", "127.0.0.1:8002", "--agent-urn", AGENT_URN, "--agent-secret-file", self.secret)
        self.assertIsInstance(service.gateway, PBGatewayAgent)
        self.assertIs(list(service)[0], service.gateway)
        self.assertIs(service.resource_manager._gateway, service.gateway)

    def test_simulated_mode(self) -> None:
        """Without --agent the island manager drives an in-process simulated gateway, which is not a service."""
        service = self.build()
        self.assertIsInstance(service.gateway, InProcessGateway)
        self.assertFalse(any(isinstance(child, PBGatewayAgent) for child in service))

    def test_short_secret(self) -> None:
        """A secret file shorter than 16 bytes stops the AM from being built."""
        short = os.path.join(self.roots, "short")
        with open(short, "w") as handle:
            handle.write("tiny")
        error = self.assertRaises(usage.UsageError, self.build, "--agent", "127.0.0.1:8002", "--agent-secret-file", short)
        self.assertIn("shorter than 16 bytes", str(error))


class RecordingGateway(InProcessGateway, Service):
    """A simulated gateway that is also a service, recording its life and the island's calls."""

    def __init__(self, events: list[str]) -> None:
        InProcessGateway.__init__(self)
        self.events = events

    def startService(self) -> None:
        self.events.append("gateway started")
        Service.startService(self)

    def stopService(self) -> None:
        self.events.append("gateway stopped")
        Service.stopService(self)

    def state(self) -> Deferred[dict[str, Any]]:
        self.events.append("island asked the gateway")
        return InProcessGateway.state(self)


class RecordingStore(SQLiteStore):
    """An SQLite store recording when it stops."""

    events: list[str]

    def stop(self) -> Deferred[None]:
        self.events.append("store stopped")
        return SQLiteStore.stop(self)


class StartOrderTests(TestCase, FixtureMixin):
    """The AM starts its gateway client before the island's first check and stops it after the island."""

    async def test_order(self) -> None:
        """Gateway first, then the island's checks; on stop the island and the store go before the gateway."""
        self.make_dirs(self)
        clock = Clock()
        clock.advance(NOW)
        events: list[str] = []
        store = RecordingStore(os.path.join(self.data, "am.sqlite"), reactor=reactor)
        store.events = events
        os.makedirs(self.data)
        trust = ServerTrust(
            Identity.from_files(fixture("am1-cert.pem"), fixture("am1-key.pem")), TrustRoots.from_directory(self.roots), Path(self.roots)
        )
        gateway = RecordingGateway(events)
        service = AggregateService(reactor, trust, store, gateway, 0, "127.0.0.1", clock=clock)
        self.assertTrue(IService.providedBy(gateway))
        service.startService()
        await service.when_started()
        await service.resource_manager.sweep()
        await service.stopService()
        self.assertEqual(events[0], "gateway started")
        self.assertIn("island asked the gateway", events)
        self.assertEqual(events[-2:], ["store stopped", "gateway stopped"])


class ExampleFileTests(SynchronousTestCase, FixtureMixin):
    """The .tac files and example configurations in tap/ load."""

    def setUp(self) -> None:
        self.make_dirs(self)

    def test_am_toml(self) -> None:
        """tap/am.toml is a valid AM configuration naming an agent."""
        options = am_tap.Options()
        options.parseOptions(["--config", str(ROOT / "tap" / "am.toml")])
        self.assertEqual(options["agent"], "127.0.0.1:8002")
        self.assertEqual((options["port"], options["allocation-ttl"]), (8001, 48 * 3600.0))

    def test_agent_toml(self) -> None:
        """tap/agent.toml is a valid agent configuration on the port the AM example names."""
        options = AgentOptions()
        options.parseOptions(["--config", str(ROOT / "tap" / "agent.toml")])
        self.assertEqual((options.settings.port, options.settings.backend), (8002, "simulated"))

    def load_tac(self, name: str, variable: str, args: list[str]) -> Any:
        before = os.environ.get(variable)
        os.environ[variable] = shlex.join(args)

        def restore() -> None:
            if before is None:
                os.environ.pop(variable, None)
            else:
                os.environ[variable] = before

        self.addCleanup(restore)
        return runpy.run_path(str(ROOT / "tap" / name))["application"]

    def test_am_tac(self) -> None:
        """tap/am.tac builds the AM, here with the example configuration and the fixture identity."""
        application = self.load_tac(
            "am.tac", "GENIAM_AM_ARGS", ["--config", str(ROOT / "tap" / "am.toml"), "--data-dir", self.data, *self.identity_flags()]
        )
        [guard] = list(IServiceCollection(application))
        assert isinstance(guard, StartupGuard)
        service = guard.service
        self.assertIsInstance(service, AggregateService)
        self.assertIsInstance(service.gateway, PBGatewayAgent)

    def test_agent_tac(self) -> None:
        """tap/agent.tac builds the agent from GENIAM_AGENT_ARGS."""
        application = self.load_tac("agent.tac", "GENIAM_AGENT_ARGS", ["--data-dir", self.data, "--port", "0", "--allow", AM1_URN, *self.identity_flags("agent")])
        [guard] = list(IServiceCollection(application))
        assert isinstance(guard, StartupGuard)
        self.assertEqual([type(c) for c in guard.service], [BackendService, ConnectionsService, StreamServerEndpointService])
