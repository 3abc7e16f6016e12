"""
Tests for L{geniam.agent.service}: login policy, realm, the back end's
life cycle and the service tree L{make_agent_service} builds.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.application.internet import StreamServerEndpointService
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import IRealm
from twisted.internet.defer import Deferred, DeferredLock
from twisted.internet.testing import MemoryReactorClock
from twisted.python import usage
from twisted.spread import pb
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from geniam.agent.backend import StateFile, StateFileError
from geniam.agent.backends.command import CommandBackend
from geniam.agent.backends.simulated import SimulatedBackend
from geniam.agent.options import AgentOptions
from geniam.agent.service import (
    AgentChecker,
    BackendService,
    ConnectionsService,
    GatewayRealm,
    build_backend,
    read_secret,
)
from geniam.agent.backend import BlockingRunner
from geniam.tap.agent import make_agent_service
from geniam.protocols.pb import login_response
from geniam.agent.perspective import AgentCredentials, GatewayPerspective
from tests.protocols.test_pb import AGENT, ALICE, AM1, SECRET, AgentHarness
from tests.fixturepaths import GCF

FIXTURES = os.environ.get("GENIAM_FIXTURES", str(GCF))


class CheckerTests(SynchronousTestCase):
    """The login policy."""

    def check(self, checker: AgentChecker, urn: str | None, response: str | None = None) -> Any:
        return checker.requestAvatarId(AgentCredentials(urn, b"n" * 32, response))

    def test_interface(self) -> None:
        """The checker is a twisted.cred checker for the agent's credentials."""
        self.assertTrue(verifyObject(ICredentialsChecker, AgentChecker((AM1,))))

    def test_only_the_allowed(self) -> None:
        """
        Only the listed URNs log in: not another aggregate, not a
        sub-authority under an allowed one, not the agent's own, and with
        an empty list nobody.
        """
        checker = AgentChecker((AM1,), own_urn=AGENT)
        self.assertEqual(self.successResultOf(self.check(checker, AM1)), AM1.encode())
        sub = AM1.replace("gcf:am1+", "gcf:am1:sub+")
        for urn in (ALICE, AGENT, None, "not a urn", sub, AM1.replace("am1", "am2"), "urn:publicid:IDN+geni:gpo:gcf+authority+sa"):
            self.failureResultOf(self.check(checker, urn), UnauthorizedLogin)
        self.failureResultOf(self.check(AgentChecker(()), AM1), UnauthorizedLogin)

    def test_secret_and_certificate(self) -> None:
        """With a secret both the certificate and the answer must be right."""
        checker = AgentChecker((AM1,), secret=SECRET)
        good = login_response(SECRET, b"n" * 32)
        self.successResultOf(self.check(checker, AM1, good))
        self.failureResultOf(self.check(checker, AM1, None), UnauthorizedLogin)
        self.failureResultOf(self.check(checker, ALICE, good), UnauthorizedLogin)

    def test_avatar(self) -> None:
        """The realm gives PB perspectives named after the peer, and nothing else."""
        realm = GatewayRealm(SimulatedBackend(StateFile(self.mktemp())), DeferredLock())
        self.assertTrue(verifyObject(IRealm, realm))
        interface, avatar, logout = realm.requestAvatar(AM1.encode(), None, pb.IPerspective)
        self.assertIs(interface, pb.IPerspective)
        self.assertIsInstance(avatar, GatewayPerspective)
        self.assertEqual(avatar.peer, AM1)
        logout()
        self.assertRaises(ValueError, realm.requestAvatar, AM1, None, IRealm)


class BackendServiceTests(SynchronousTestCase):
    """Starting and stopping the back end."""

    def test_malformed_state_refuses_start(self) -> None:
        """A malformed state file makes start-up fail with a message naming it."""
        path = os.path.join(self.mktemp(), "state.json")
        os.makedirs(os.path.dirname(path))
        with open(path, "w") as handle:
            handle.write("{")
        service = BackendService(SimulatedBackend(StateFile(path)), DeferredLock())
        error = self.assertRaises(StateFileError, service.startService)
        self.assertIn(path, str(error))
        self.assertFalse(service.running)

    def test_stop_waits_for_calls(self) -> None:
        """Stopping waits for the call in flight before stopping the back end."""
        lock = DeferredLock()
        backend = SimulatedBackend(StateFile(os.path.join(self.mktemp(), "s.json")))
        stopped: list[bool] = []
        backend.stop = lambda: (stopped.append(True), Deferred.fromCoroutine(_nothing()))[1]  # type: ignore[method-assign]
        service = BackendService(backend, lock)
        service.startService()
        self.successResultOf(lock.acquire())
        d = service.stopService()
        self.assertEqual(stopped, [])
        self.assertNoResult(d)
        lock.release()
        self.successResultOf(d)
        self.assertEqual(stopped, [True])

    def test_build_backend(self) -> None:
        """--backend chooses the back end class."""
        data = self.mktemp()
        options = AgentOptions()
        options.parseOptions(["--data-dir", data])
        self.assertIsInstance(build_backend(options.settings, MemoryReactorClock(), BlockingRunner()), SimulatedBackend)
        options = AgentOptions()
        options.parseOptions(["--data-dir", data, "--backend", "command"])
        self.assertIsInstance(build_backend(options.settings, MemoryReactorClock(), BlockingRunner()), CommandBackend)


async def _nothing() -> None:
    return None


class ServiceTreeTests(SynchronousTestCase):
    """What make_agent_service builds."""

    def setUp(self) -> None:
        if not os.path.exists(os.path.join(FIXTURES, "ch-cert.pem")):
            raise self.skipTest(f"no GENI fixtures in {FIXTURES}")
        self.roots = os.path.abspath(self.mktemp())
        os.makedirs(self.roots)
        with open(os.path.join(FIXTURES, "ch-cert.pem"), "rb") as src, open(os.path.join(self.roots, "ch.pem"), "wb") as dst:
            dst.write(src.read())
        self.data = os.path.abspath(self.mktemp())

    def options(self, *extra: str) -> AgentOptions:
        options = AgentOptions()
        options.parseOptions(["--data-dir", self.data, "--port", "7443", "--interface", "127.0.0.2", *extra])
        return options

    def fixture_options(self, *extra: str) -> AgentOptions:
        return self.options(
            "--allow", AM1,
            "--trust-roots", self.roots,
            "--certificate", os.path.join(FIXTURES, "agent-cert.pem"),
            "--private-key", os.path.join(FIXTURES, "agent-key.pem"),
            *extra,
        )

    def test_tree(self) -> None:
        """The tree is back end, connection closer, then the TLS listener on the chosen port and interface."""
        reactor = MemoryReactorClock()
        service = make_agent_service(self.fixture_options(), reactor)
        children = list(service)
        self.assertEqual([type(c) for c in children], [BackendService, ConnectionsService, StreamServerEndpointService])
        service.startService()
        self.assertEqual(len(reactor.sslServers), 1)
        port, factory, context, _, interface = reactor.sslServers[0]
        self.assertEqual((port, interface), (7443, "127.0.0.2"))
        self.assertFalse(factory.unsafeTracebacks)
        self.successResultOf(service.stopService())

    def test_development_trust_domain(self) -> None:
        """Without a certificate the agent makes and uses a development trust domain in its data directory."""
        reactor = MemoryReactorClock()
        reactor.advance(1_795_000_000)
        make_agent_service(self.options(), reactor)
        self.assertTrue(os.path.isdir(os.path.join(self.data, "trust")))

    def test_secret_file(self) -> None:
        """A secret file shorter than 16 bytes is refused; a good one is accepted."""
        short = os.path.join(self.roots, "short")
        with open(short, "w") as handle:
            handle.write("tiny\n")
        error = self.assertRaises(usage.UsageError, make_agent_service, self.fixture_options("--secret-file", short), MemoryReactorClock())
        self.assertIn("shorter than 16 bytes", str(error))
        good = os.path.join(self.roots, "good")
        with open(good, "w") as handle:
            handle.write("  sixteen bytes or more \n")
        self.assertEqual(read_secret(good), b"sixteen bytes or more")

    def test_allow_required(self) -> None:
        """
        With its own certificate the agent refuses to start without --allow,
        in one line naming the flag; with the development trust domain it
        serves that domain's aggregate manager by itself.
        """
        error = self.assertRaises(
            usage.UsageError,
            self.options,
            "--trust-roots", self.roots,
            "--certificate", os.path.join(FIXTURES, "agent-cert.pem"),
            "--private-key", os.path.join(FIXTURES, "agent-key.pem"),
        )
        self.assertIn("needs --allow URN", str(error))
        self.assertNotIn("\n", str(error))
        service = make_agent_service(self.options("--port", "0"), MemoryReactorClock())
        self.assertFalse(service.running)

    def test_unusable_certificate(self) -> None:
        """A certificate that cannot be loaded is a usage error, not a traceback."""
        bad = os.path.join(self.roots, "bad.pem")
        with open(bad, "w") as handle:
            handle.write("not a certificate")
        options = self.options("--allow", AM1, "--trust-roots", self.roots, "--certificate", bad, "--private-key", bad)
        error = self.assertRaises(usage.UsageError, make_agent_service, options, MemoryReactorClock())
        self.assertIn("cannot load the agent's TLS identity", str(error))


class ConnectionsTests(SynchronousTestCase):
    """Closing the agent's connections when it stops."""

    def test_stop_drops_connections(self) -> None:
        """Stopping the connections service drops every open connection and waits for them."""
        harness = AgentHarness(self)
        session = harness.session(self)
        closer = ConnectionsService(harness.factory)
        closer.startService()
        d = closer.stopService()
        harness.flush()
        self.successResultOf(d)
        self.assertFalse(session.connected)
