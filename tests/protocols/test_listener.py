"""
Tests for L{geniam.protocols.listener}: the connection budget in memory,
the listener options of both roles, and a real aggregate manager in a child process with a lowered descriptor
limit (C{ulimit -n}) under a flood of idle TLS connections.
"""

from __future__ import annotations

import os
import resource
import sys
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogLevel, capturedLogs
from twisted.python import usage
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from geniam.client import AMClient
from geniam.protocols.listener import DESCRIPTOR_RESERVE, ConnectionBudget, ListenerLimits, descriptor_budget
from geniam.tap import am as am_tap
from geniam.tap import sm as sm_tap
from geniam.tap.common import listener_limits
from geniam.trust.domain import TrustDomain
from tests.domains import copied_domain
from tests.loopback.test_am import make_domain
from tests.tap.test_agent import FixtureMixin
from tests.loopback.test_xmlrpc_limits import RawTLSClient
from tests.fixturepaths import REPO_ROOT

ROOT = REPO_ROOT


class ConnectionBudgetTests(SynchronousTestCase):
    """L{ConnectionBudget} admits within its bounds and logs each episode once."""

    def test_total_bound_logged_once(self) -> None:
        """
        Past the total, connections are refused; saturation is logged once,
        and its end once, when three quarters of the budget are left.
        """
        budget = ConnectionBudget(10)
        with capturedLogs() as events:
            admitted = [budget.admit(f"10.0.0.{n}") for n in range(10)]
            refused = [budget.admit("10.0.1.1") for _ in range(5)]
            budget.release("10.0.0.0")
            self.assertTrue(budget.admit("10.0.1.1"))
            self.assertFalse(budget.admit("10.0.1.2"))
            budget.release("10.0.0.1")
            budget.release("10.0.0.2")
            self.assertEqual(len(events), 1, "hovering at the budget is one episode")
            budget.release("10.0.0.3")
        self.assertEqual(admitted, [True] * 10)
        self.assertEqual(refused, [False] * 5)
        self.assertEqual(budget.total, 7)
        messages = [(e["log_level"], e["log_format"]) for e in events]
        self.assertEqual(len(messages), 2, messages)
        self.assertEqual(messages[0][0], LogLevel.warn)
        self.assertIn("refusing new connections", messages[0][1])
        self.assertIn("accepting new connections again", messages[1][1])
        self.assertEqual(events[1]["refused"], 6)

    def test_per_client_cap(self) -> None:
        """One address holds at most its cap; other addresses are unaffected; the cap is logged once."""
        budget = ConnectionBudget(None, max_per_client=2)
        with capturedLogs() as events:
            self.assertEqual([budget.admit("10.0.0.1") for _ in range(4)], [True, True, False, False])
            self.assertTrue(budget.admit("10.0.0.2"))
            budget.release("10.0.0.1")
            self.assertTrue(budget.admit("10.0.0.1"))
            self.assertFalse(budget.admit("10.0.0.1"))
        self.assertEqual(budget.open_from("10.0.0.1"), 2)
        self.assertEqual(len([e for e in events if "10.0.0.1" == e.get("host")]), 2)

    def test_no_cap(self) -> None:
        """A cap of 0 and no total admit everything."""
        budget = ConnectionBudget(None, 0)
        self.assertTrue(all(budget.admit("10.0.0.1") for _ in range(1000)))

    def test_descriptor_budget(self) -> None:
        """The budget is the soft descriptor limit less the reserve."""
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY:
            self.assertIsNone(descriptor_budget())
        else:
            self.assertEqual(descriptor_budget(10), max(soft - 10, soft // 4))


CHILD = """
import resource, sys
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_NOFILE, (limit, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
from twisted.internet import reactor
from twisted.logger import globalLogBeginner, textFileLogObserver
from geniam.tap.am import Options, build
globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)])
options = Options()
options.parseOptions(sys.argv[2:])
service = build(options, reactor)
service.startService()
reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
reactor.run()
"""
"""A real aggregate manager, started with a lowered descriptor limit."""

DESCRIPTOR_LIMIT = 100


class ChildOutput(ProcessProtocol):
    """Collect a child's output; hand out Deferreds for text to appear in it."""

    def __init__(self) -> None:
        self.output = ""
        self.ended: Deferred[None] = Deferred()
        self._waiters: list[tuple[str, Deferred[str]]] = []

    def wait_for(self, text: str) -> Deferred[str]:
        """Fire with the output so far once it contains C{text}."""
        d: Deferred[str] = Deferred()
        self._waiters.append((text, d))
        self._check()
        return d

    def outReceived(self, data: bytes) -> None:
        self.output += data.decode("utf-8", "replace")
        self._check()

    errReceived = outReceived

    def _check(self) -> None:
        ready = [(t, d) for t, d in self._waiters if t in self.output]
        self._waiters = [(t, d) for t, d in self._waiters if t not in self.output]
        for _, d in ready:
            d.callback(self.output)

    def processEnded(self, reason: Failure) -> None:
        self.ended.callback(None)
        for _, d in self._waiters:
            d.errback(AssertionError(f"the child ended; it wrote:\n{self.output}"))
        self._waiters = []


class DescriptorFloodTests(TestCase):
    """An aggregate manager with few descriptors under a flood of idle connections."""

    async def start_child(self) -> str:
        folder = Path(copied_domain(self, "am", make_domain)).resolve()
        self.domain = TrustDomain.open_or_create(folder / "trust", reactor=reactor)
        self.child = ChildOutput()
        env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        args = [sys.executable, "-u", "-c", CHILD, str(DESCRIPTOR_LIMIT)]
        args += ["--port", "0", "--data-dir", str(folder), "--request-timeout", "300s"]
        self.process: Any = reactor.spawnProcess(self.child, sys.executable, args, env=env)
        self.addCleanup(self.stop_child)
        output = await self.child.wait_for("serving AM API v3 at ")
        return output.split("serving AM API v3 at ", 1)[1].split()[0]

    async def stop_child(self) -> None:
        if not self.child.ended.called:
            self.process.signalProcess("TERM")
        await self.child.ended

    async def connect(self, port: int) -> RawTLSClient:
        from twisted.internet.endpoints import SSL4ClientEndpoint, connectProtocol

        from geniam.trust.tls import client_tls_options

        options = client_tls_options(self.domain.user("alice"), self.domain.roots(), clock=reactor)
        client = RawTLSClient()
        await connectProtocol(SSL4ClientEndpoint(reactor, "127.0.0.1", port, options), client)
        return client

    async def test_flood(self) -> None:
        """
        The flood fills the budget and no more: the client already
        connected is still answered, new ones are closed at once, and once
        the flood goes new clients are served; each is logged once.
        """
        url = await self.start_child()
        port = int(url.rsplit(":", 1)[1].strip("/"))
        budget = DESCRIPTOR_LIMIT - DESCRIPTOR_RESERVE
        existing = AMClient(reactor, url, self.domain.user("bob"), self.domain.roots())
        self.addCleanup(existing.close)
        self.assertEqual((await existing.get_version())["code"]["geni_code"], 0)

        flood: list[RawTLSClient] = []
        while True:
            client = await self.connect(port)
            if await client.outcome == "closed":
                break
            flood.append(client)
            self.assertLessEqual(len(flood), budget)
        self.assertEqual(len(flood), budget - 1)  # with the existing client, the budget is full
        for _ in range(5):
            refused = await self.connect(port)
            self.assertEqual(await refused.outcome, "closed")

        self.assertEqual((await existing.get_version())["code"]["geni_code"], 0)

        recovered = self.child.wait_for("accepting new connections again")
        for client in flood:
            client.transport.loseConnection()  # type: ignore[union-attr]
        for client in flood:
            await client.closed
        output = await recovered
        newcomer = AMClient(reactor, url, self.domain.user("alice"), self.domain.roots())
        self.addCleanup(newcomer.close)
        self.assertEqual((await newcomer.get_version())["code"]["geni_code"], 0)

        self.assertEqual(output.count("refusing new connections"), 1, output)
        self.assertEqual(output.count("accepting new connections again"), 1, output)
        self.assertIn("(6 refused meanwhile)", output)
        self.assertNotIn("Traceback", output)


class ListenerOptionsTests(SynchronousTestCase, FixtureMixin):
    """Both roles take the listener's bounds as flags and in their TOML table."""

    def setUp(self) -> None:
        self.make_dirs(self)

    def test_defaults(self) -> None:
        """By default: 10 s for headers, 500 bytes/s for bodies, 300 s idle, 64 connections per address."""
        options = am_tap.Options()
        options.parseOptions(["--data-dir", self.data])
        self.assertEqual(listener_limits(options), ListenerLimits(10.0, 500, 300.0, 64, DESCRIPTOR_RESERVE))

    def test_am_flags_reach_the_service(self) -> None:
        """The AM's flags become its listener's limits."""
        options = am_tap.Options()
        options.parseOptions(
            ["--data-dir", self.data, "--port", "0", *self.identity_flags(), "--request-timeout", "3s",
             "--min-body-rate", "2000", "--idle-timeout", "2m", "--max-connections-per-client", "0"]
        )
        service = am_tap.build(options, MemoryReactorClock())
        self.assertEqual(service.limits, ListenerLimits(3.0, 2000, 120.0, 0, DESCRIPTOR_RESERVE))

    def test_sm_config_table(self) -> None:
        """The SM reads them from its [sm] table (flags win) and reserves descriptors for its own calls."""
        config = os.path.join(self.roots, "sm.toml")
        with open(config, "w") as handle:
            handle.write('[sm]\nrequest-timeout = "4s"\nmin_body_rate = 800\nidle-timeout = "1m"\nmax-connections-per-client = 8\n')
        options = sm_tap.Options()
        options.parseOptions(
            ["--config", config, "--aggregate", "https://a.example/", "--max-connections-per-client", "16",
             "--max-concurrency", "100"]
        )
        self.assertEqual(
            listener_limits(options, DESCRIPTOR_RESERVE + 100), ListenerLimits(4.0, 800, 60.0, 16, DESCRIPTOR_RESERVE + 100)
        )

    def test_bad_values(self) -> None:
        """Zero or negative timeouts and rates, and negative caps, are usage errors."""
        for flag, value in (
            ("--request-timeout", "0"),
            ("--min-body-rate", "0"),
            ("--idle-timeout", "-1"),
            ("--max-connections-per-client", "-1"),
        ):
            with self.subTest(flag):
                self.assertRaises(usage.UsageError, am_tap.Options().parseOptions, ["--data-dir", self.data, flag, value])
