"""
The gateway agent and its clients over real TLS on 127.0.0.1, with the
GENI fixture certificates (C{tests/fixtures/gcf}, or the directory
in C{GENIAM_FIXTURES}). Certificate validity is judged at a pinned time.
"""

from __future__ import annotations

import io
import os
import shutil
from typing import Any

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from geniam.agent.options import AgentOptions
from geniam.tap.agent import make_agent_service
from geniam.cli.agent import StateOptions, run_state
from geniam.errors import GeniCode, GeniError
from geniam.protocols.pb import open_session
from geniam.protocols.pbclient import PBGatewayAgent, agent_peer_check, make_gateway_agent, make_gateway_agent_endpoint
from geniam.timeutil import parse_time
from geniam.trust.identity import Identity
from tests.agent.test_backend import KEY_A
from tests.fixturepaths import GCF

FIXTURES = os.environ.get("GENIAM_FIXTURES", str(GCF))
NOW = parse_time("2026-11-22T12:00:00Z")
AGENT_URN = "urn:publicid:IDN+geni:gpo:gcf:agent+authority+am"
AM1_URN = "urn:publicid:IDN+geni:gpo:gcf:am1+authority+am"
AM2_URN = "urn:publicid:IDN+geni:gpo:gcf:am2+authority+am"


def fixture(name: str) -> str:
    return os.path.join(FIXTURES, name)


def pinned() -> Clock:
    clock = Clock()
    clock.advance(NOW)
    return clock


class LoopbackTests(TestCase):
    """A real agent service and real TLS clients."""

    def setUp(self) -> Deferred[None] | None:
        if not os.path.exists(fixture("ch-cert.pem")):
            raise self.skipTest(f"no GENI fixtures in {FIXTURES}")
        from geniam.trust.gid import TrustRoots
        from geniam.trust.identity import Identity

        self.clock = pinned()
        self.roots_dir = os.path.abspath(self.mktemp())
        os.makedirs(self.roots_dir)
        shutil.copy(fixture("ch-cert.pem"), self.roots_dir)
        self.roots = TrustRoots.from_directory(self.roots_dir)
        self.am1 = Identity.from_files(fixture("am1-cert.pem"), fixture("am1-key.pem"))
        self.alice = Identity.from_files(fixture("alice-cert.pem"), fixture("alice-key.pem"))
        self.data_dir = os.path.abspath(self.mktemp())
        self.secret_file = os.path.abspath(self.mktemp())
        with open(self.secret_file, "w") as handle:
            handle.write("a shared secret of some length\n")
        return None

    async def start_agent(self, *extra: str, port: int = 0) -> int:
        """Start the agent service on 127.0.0.1 (serving am1 unless C{extra} names others); return its port."""
        if "--allow" not in extra:
            extra = ("--allow", AM1_URN, *extra)
        options = AgentOptions()
        options.parseOptions(
            [
                "--port", str(port),
                "--interface", "127.0.0.1",
                "--data-dir", self.data_dir,
                "--trust-roots", self.roots_dir,
                "--certificate", fixture("agent-cert.pem"),
                "--private-key", fixture("agent-key.pem"),
                "--controller-network", "192.168.0.0/16",
                "--controller-network", "10.0.0.0/8",
                *extra,
            ]
        )
        service = make_agent_service(options, reactor, clock=self.clock)
        service.startService()
        self.service = service
        self.addCleanup(self.stop_agent, service)
        listener = [s for s in service if isinstance(s, StreamServerEndpointService)][0]
        listening = await listener._waitingForPort
        return int(listening.getHost().port)

    async def stop_agent(self, service: MultiService) -> None:
        if service.running:
            await service.stopService()

    async def session(self, port: int, identity: Any, secret: bytes | None = None, expected_urn: str | None = None) -> Any:
        endpoint = make_gateway_agent_endpoint(reactor, f"127.0.0.1:{port}", identity, self.roots, expected_urn, self.clock, 10)
        session = await open_session(
            endpoint, self.clock, secret=secret, check_peer=agent_peer_check(self.roots, self.clock, expected_urn), login_timeout=10, call_timeout=10
        )
        self.addCleanup(session.close)
        return session

    async def test_am_manages_gateway(self) -> None:
        """The AM's certificate logs in over mutual TLS and every method works."""
        port = await self.start_agent()
        session = await self.session(port, self.am1, expected_urn=AGENT_URN)
        self.assertEqual(session.agent_urn, AGENT_URN)
        self.assertEqual(len(await session.get_switches()), 4)
        self.assertEqual(len(await session.get_links()), 5)
        await session.set_user_auth([KEY_A])
        await session.set_tcp_proxy("192.168.100.1:6633")
        await session.set_ovs({"10": "0xffff", "30": "20"})
        self.assertEqual(
            await session.state(),
            {"users": [KEY_A], "proxy": "192.168.100.1:6633", "vlans": {"10": "0xffff", "30": "20"}},
        )
        await session.rem_user_auth([KEY_A])
        await session.rem_tcp_proxy()
        await session.rem_ovs()
        await session.reset()
        self.assertEqual(await session.state(), {"users": [], "proxy": "", "vlans": {}})

    async def test_user_refused(self) -> None:
        """alice's certificate (a user, same CA) is refused with a clear message."""
        port = await self.start_agent()
        error = await self.assertFailure(Deferred.fromCoroutine(self.session(port, self.alice)), GeniError)
        self.assertEqual(error.code, GeniCode.REFUSED)
        self.assertIn("urn:publicid:IDN+geni:gpo:gcf+user+alice is not allowed to manage this gateway", error.output)

    async def test_wrong_secret_refused(self) -> None:
        """With a secret file, the AM must know the secret."""
        port = await self.start_agent("--secret-file", self.secret_file)
        error = await self.assertFailure(Deferred.fromCoroutine(self.session(port, self.am1, secret=b"not the right secret")), GeniError)
        self.assertIn("wrong or missing shared secret", error.output)
        session = await self.session(port, self.am1, secret=b"a shared secret of some length")
        self.assertEqual((await session.state())["proxy"], "")

    async def test_allow_list(self) -> None:
        """--allow restricts logins to the listed AMs."""
        port = await self.start_agent("--allow", AM2_URN)
        error = await self.assertFailure(Deferred.fromCoroutine(self.session(port, self.am1)), GeniError)
        self.assertIn("is not allowed to manage this gateway", error.output)

    async def test_second_aggregate_refused(self) -> None:
        """
        An agent serving am1 refuses am2 over TLS, and a sub-authority
        certificate that am1's key minted (am1 is a CA) unless that
        sub-authority is named with --allow too.
        """
        from geniam.trust.certs import make_identity

        sub_urn = AM1_URN.replace("gcf:am1+", "gcf:am1:sub+")
        sub = make_identity(self.am1, sub_urn, is_authority=True, now=NOW - 60)
        am2 = Identity.from_files(fixture("am2-cert.pem"), fixture("am2-key.pem"))
        port = await self.start_agent()
        session = await self.session(port, self.am1)
        self.assertEqual((await session.state())["proxy"], "")
        for identity, urn in ((am2, AM2_URN), (sub, sub_urn)):
            error = await self.assertFailure(Deferred.fromCoroutine(self.session(port, identity)), GeniError)
            self.assertEqual(error.code, GeniCode.REFUSED)
            self.assertIn(f"{urn} is not allowed to manage this gateway", error.output)
        self.data_dir = os.path.abspath(self.mktemp())
        port = await self.start_agent("--allow", AM1_URN, "--allow", sub_urn)
        session = await self.session(port, sub)
        self.assertEqual((await session.state())["proxy"], "")

    async def test_wrong_agent_refused_by_client(self) -> None:
        """The AM refuses an agent whose certificate is not the expected URN."""
        port = await self.start_agent()
        error = await self.assertFailure(Deferred.fromCoroutine(self.session(port, self.am1, expected_urn=AM2_URN)), GeniError)
        self.assertEqual(error.code, GeniCode.RPCERROR)
        self.assertIn(AM2_URN, error.output)

    async def test_reconnect_after_agent_restart(self) -> None:
        """The AM's client reconnects when the agent restarts on the same port and finds its state."""
        port = await self.start_agent()
        agent = make_gateway_agent(reactor, f"127.0.0.1:{port}", self.am1, self.roots, expected_urn=AGENT_URN, retry_policy=lambda n: 0.05, clock=self.clock)
        events: list[bool] = []
        agent.add_connection_observer(events.append)
        agent.startService()
        self.addCleanup(agent.stopService)
        await agent.when_connected()
        await agent.set_tcp_proxy("10.1.1.1:6633")
        lost: Deferred[None] = Deferred()
        agent.add_connection_observer(lambda up: None if up or lost.called else lost.callback(None))
        await self.service.stopService()
        await lost
        error = await self.assertFailure(agent.state(), GeniError)
        self.assertTrue(error.output.startswith("gateway agent unreachable"))
        await self.start_agent(port=port)
        await agent.when_connected()
        self.assertEqual((await agent.state())["proxy"], "10.1.1.1:6633")
        self.assertEqual(events, [True, False, True])
        self.assertIsInstance(agent, PBGatewayAgent)

    async def test_cli_state(self) -> None:
        """geniam agent state prints the applied configuration."""
        port = await self.start_agent()
        session = await self.session(port, self.am1)
        await session.set_user_auth([KEY_A])
        await session.set_ovs({"30": "20", "10": "0xffff"})
        options = StateOptions()
        options.parseOptions(
            [
                "--agent", f"127.0.0.1:{port}",
                "--trust-roots", self.roots_dir,
                "--certificate", fixture("am1-cert.pem"),
                "--private-key", fixture("am1-key.pem"),
            ]
        )
        out, err = io.StringIO(), io.StringIO()
        self.assertEqual(await run_state(reactor, options, out, err, self.clock), 0)
        self.assertEqual(
            out.getvalue(),
            f"Gateway agent 127.0.0.1:{port} ({AGENT_URN})\n"
            "Users: 1 SSH key:\n"
            f"  {KEY_A}\n"
            "Proxy: none\n"
            "VLAN map (testbed -> island):\n"
            "    10 -> untagged\n"
            "    30 -> 20\n",
        )

    async def test_cli_refused_and_unreachable(self) -> None:
        """geniam agent state exits 1 with a clear message when refused or unreachable."""
        port = await self.start_agent()
        base = ["--trust-roots", self.roots_dir, "--timeout", "5"]
        options = StateOptions()
        options.parseOptions([*base, "--agent", f"127.0.0.1:{port}", "--certificate", fixture("alice-cert.pem"), "--private-key", fixture("alice-key.pem")])
        out, err = io.StringIO(), io.StringIO()
        self.assertEqual(await run_state(reactor, options, out, err, self.clock), 1)
        self.assertIn("refused the login", err.getvalue())
        await self.service.stopService()
        options = StateOptions()
        options.parseOptions([*base, "--agent", f"127.0.0.1:{port}", "--certificate", fixture("am1-cert.pem"), "--private-key", fixture("am1-key.pem")])
        err = io.StringIO()
        self.assertEqual(await run_state(reactor, options, io.StringIO(), err, self.clock), 1)
        self.assertIn(f"geniam agent state: 127.0.0.1:{port}: gateway agent unreachable", err.getvalue())
