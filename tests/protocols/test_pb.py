"""
Tests for L{geniam.protocols.pb} and the agent's PB root, in memory
(C{twisted.test.iosim}, no TLS: the verified peer URN is given by a fake).
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet.defer import Deferred, DeferredLock, fail
from twisted.internet.task import Clock
from twisted.spread import pb
from twisted.test import iosim
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyClass, verifyObject

from geniam.agent.backend import StateFile
from geniam.gateway.config import GatewayConfig
from geniam.gateway.inventory import DEFAULT_INVENTORY
from geniam.gateway.verbs import STATE
from geniam.interfaces import IGatewayBackend
from geniam.agent.backends.simulated import SimulatedBackend
from geniam.agent.service import AgentChecker, make_agent_factory
from geniam.errors import GeniCode, GeniError
from geniam.gatewayconfig import MAX_KEYS, MAX_VLANS, ControllerPolicy
from geniam.interfaces import IGatewayAgent
from geniam.protocols.pb import (
    REMOTE_METHODS,
    AgentBadArgs,
    AgentLoginRefused,
    GatewaySession,
    _GatewayCalls,
    login_response,
    login_session,
    translate_failure,
)
from geniam.protocols.pbclient import PBGatewayAgent
from geniam.agent.perspective import AgentCredentials
from tests.agent.test_backend import KEY_A, KEY_B

AM1 = "urn:publicid:IDN+geni:gpo:gcf:am1+authority+am"
AM2 = "urn:publicid:IDN+geni:gpo:gcf:am2+authority+am"
AGENT = "urn:publicid:IDN+geni:gpo:gcf:agent+authority+am"
ALICE = "urn:publicid:IDN+geni:gpo:gcf+user+alice"
SECRET = b"correct horse battery staple"

HOSTILE_CONTROLLERS = [
    "1.2.3.4:6633; rm -rf /",
    "$(reboot):6633",
    "`id`:1",
    "host:99999",
    "host:0",
    "-oProxyCommand=evil:22",
    "a b:6633",
    "10.0.0.1:6633\n",
    "[fe80::1% ;$(id) `x` -oProxyCommand=x\n]:6633",
    "evil\n:6633",
    "10.0.0.1\x00:6633",
    "[fe80::1%eth0\x00]:6633",
    "",
    6633,
    None,
    ["10.0.0.1:6633"],
]
HOSTILE_VLANS: list[Any] = [
    {"5000": "10"},
    {"0": "10"},
    {"10": "4095"},
    {"10": "-1"},
    {"10": "0x10"},
    {"10;x": "20"},
    {"10": "0xffff", "20": "0xffff"},
    {"10": "30", "20": "30"},
    {"10": "30", "010": "31"},
    {" 10": "30"},
    {str(n): str(n) for n in range(1, MAX_VLANS + 2)},
    ["10", "20"],
    "10:20",
]
HOSTILE_KEYS: list[Any] = [
    [KEY_A + "\nssh-rsa AAAAB3 evil"],
    ["command=\"/bin/sh\" " + KEY_A],
    ["ssh-ed25519 AAAA\x00"],
    ["not a key"],
    KEY_A,
    [KEY_A] * (MAX_KEYS + 1),
    [KEY_A.replace(" ", "\x00", 1)],
    [42],
]


PRIVATE_NETWORKS = ControllerPolicy.allowing(["10.0.0.0/8", "192.168.0.0/16", "192.0.2.0/24"])
"""The test agents allow controllers in these networks, as an operator may."""


class AgentHarness:
    """
    An agent (simulated back end, real checker and portal) and in-memory
    connections to it; the peer each connection claims is C{peer_urn}.
    """

    def __init__(self, test: SynchronousTestCase, backend: Any = None, secret: bytes | None = None, allow: tuple[str, ...] = ()) -> None:
        allow = allow or (AM1,)
        self.clock = Clock()
        self.state_path = os.path.join(test.mktemp(), "state.json")
        self.backend = backend or SimulatedBackend(StateFile(self.state_path))
        test.successResultOf(self.backend.start())
        self.peer_urn: str | None = AM1
        checker = AgentChecker(allow, own_urn=AGENT, secret=secret)
        self.factory = make_agent_factory(self.backend, DeferredLock(), checker, lambda transport: self.peer_urn, AGENT, PRIVATE_NETWORKS)
        self.pumps: list[iosim.IOPump] = []

    def connect(self) -> tuple[pb.Broker, pb.Broker, iosim.IOPump]:
        """Open a connection; return the client broker, the server broker and the pump."""
        client, server, pump = iosim.connectedServerAndClient(
            lambda: self.factory.buildProtocol(None),
            lambda: pb.PBClientFactory().buildProtocol(None),
            clock=self.clock,
        )
        self.pumps.append(pump)
        return client, server, pump

    def flush(self) -> None:
        """Move all pending data on every connection."""
        for _ in range(5):
            for pump in self.pumps:
                pump.flush()

    def run(self, d: Deferred[Any]) -> Deferred[Any]:
        """Pump until C{d} has a result, and return it."""
        self.flush()
        return d

    def session(self, test: SynchronousTestCase, secret: bytes | None = None, call_timeout: float = 30.0) -> GatewaySession:
        """A logged-in session."""
        client, _, _ = self.connect()
        d = Deferred.fromCoroutine(login_session(client, self.clock, secret=secret, call_timeout=call_timeout))
        return test.successResultOf(self.run(d))  # type: ignore[no-any-return]

    def refused(self, test: SynchronousTestCase, secret: bytes | None = None) -> GeniError:
        """Log in expecting a refusal; return the error and check the connection was dropped."""
        client, _, _ = self.connect()
        d = Deferred.fromCoroutine(login_session(client, self.clock, secret=secret))
        error = test.failureResultOf(self.run(d), GeniError).value
        test.assertTrue(client.disconnected)
        return error  # type: ignore[no-any-return]

    def perspective(self, test: SynchronousTestCase) -> pb.RemoteReference:
        """The raw perspective reference of a logged-in session (no client-side checks)."""
        return self.session(test)._perspective


class LoginTests(SynchronousTestCase):
    """Who may log in."""

    def test_am_logs_in(self) -> None:
        """An aggregate certificate logs in and learns the agent's URN."""
        harness = AgentHarness(self)
        session = harness.session(self)
        self.assertEqual(session.agent_urn, AGENT)
        self.assertEqual(session.protocol, 1)
        self.assertTrue(session.connected)

    def test_user_refused(self) -> None:
        """A user's certificate (alice) is refused with a clear REFUSED error."""
        harness = AgentHarness(self)
        harness.peer_urn = ALICE
        error = harness.refused(self)
        self.assertEqual(error.code, GeniCode.REFUSED)
        self.assertIn(f"{ALICE} is not allowed to manage this gateway", error.output)

    def test_no_certificate_refused(self) -> None:
        """A peer without a verified certificate is refused."""
        harness = AgentHarness(self)
        harness.peer_urn = None
        self.assertIn("requires a verified TLS client certificate", harness.refused(self).output)

    def test_unverifiable_peer_refused(self) -> None:
        """If reading the peer identity fails, the login is refused rather than crashing."""
        harness = AgentHarness(self)
        checker = AgentChecker((AM1,))

        def broken(transport: Any) -> str:
            raise ValueError("bad chain")

        harness.factory = make_agent_factory(harness.backend, DeferredLock(), checker, broken, AGENT)
        self.assertEqual(harness.refused(self).code, GeniCode.REFUSED)

    def test_own_certificate_refused(self) -> None:
        """The agent's own certificate may not log in by default."""
        harness = AgentHarness(self)
        harness.peer_urn = AGENT
        self.assertIn("agent's own certificate", harness.refused(self).output)

    def test_allow_list(self) -> None:
        """With an allow list, only the listed URNs log in (compared the GENI way)."""
        harness = AgentHarness(self, allow=(AM1.replace("gcf:am1", "GCF:am1"),))
        harness.session(self)
        harness.peer_urn = AM2
        self.assertIn(f"{AM2} is not allowed", harness.refused(self).output)

    def test_secret(self) -> None:
        """With a shared secret, only a peer answering the challenge with it logs in."""
        harness = AgentHarness(self, secret=SECRET)
        harness.session(self, secret=SECRET)
        self.assertIn("wrong or missing shared secret", harness.refused(self, secret=b"wrong secret value!").output)
        self.assertIn("wrong or missing shared secret", harness.refused(self).output)

    def test_secret_does_not_replace_certificate(self) -> None:
        """The right secret does not let a user's certificate in."""
        harness = AgentHarness(self, secret=SECRET)
        harness.peer_urn = ALICE
        self.assertEqual(harness.refused(self, secret=SECRET).code, GeniCode.REFUSED)

    def test_one_attempt_per_connection(self) -> None:
        """A second login on the same connection is refused, even after a success."""
        harness = AgentHarness(self)
        client, _, _ = harness.connect()
        root = client.remoteForName("root")
        first = harness.run(root.callRemote("login", None))
        self.assertIsInstance(self.successResultOf(first), pb.RemoteReference)
        second = harness.run(root.callRemote("login", None))
        failure = self.failureResultOf(second)
        self.assertTrue(failure.check(AgentLoginRefused))
        self.assertIn("one login attempt per connection", failure.value)

    def test_challenge_fresh(self) -> None:
        """Each connection gets its own nonce."""
        harness = AgentHarness(self)
        nonces = set()
        for _ in range(3):
            client, _, _ = harness.connect()
            hello = self.successResultOf(harness.run(client.remoteForName("root").callRemote("challenge")))
            nonces.add(hello["nonce"])
        self.assertEqual(len(nonces), 3)

    def test_malformed_response_refused(self) -> None:
        """A login response that is not a short string is refused."""
        harness = AgentHarness(self)
        client, _, _ = harness.connect()
        d = harness.run(client.remoteForName("root").callRemote("login", ["x"] * 3))
        self.assertTrue(self.failureResultOf(d).check(AgentLoginRefused))

    def test_credentials(self) -> None:
        """The response proves the secret for this nonce only."""
        nonce = b"n" * 32
        self.assertTrue(AgentCredentials(AM1, nonce, login_response(SECRET, nonce)).check_secret(SECRET))
        self.assertFalse(AgentCredentials(AM1, b"m" * 32, login_response(SECRET, nonce)).check_secret(SECRET))
        self.assertFalse(AgentCredentials(AM1, nonce, None).check_secret(SECRET))
        self.assertFalse(AgentCredentials(AM1, nonce, "é").check_secret(SECRET))

    def test_not_an_agent(self) -> None:
        """A peer that does not answer the challenge like an agent is unreachable, not trusted."""

        class Other(pb.Root):
            def remote_challenge(self) -> dict[str, Any]:
                return {"protocol": 99}

        clock = Clock()
        client, _, pump = iosim.connectedServerAndClient(
            lambda: pb.PBServerFactory(Other()).buildProtocol(None), lambda: pb.PBClientFactory().buildProtocol(None), clock=clock
        )
        d = Deferred.fromCoroutine(login_session(client, clock))
        pump.flush()
        error = self.failureResultOf(d, GeniError).value
        self.assertEqual(error.code, GeniCode.RPCERROR)
        self.assertIn("protocol version 1", error.output)

    def test_login_timeout(self) -> None:
        """A login that gets no answer fails as unreachable after the login timeout and drops the connection."""
        harness = AgentHarness(self)
        client, _, _ = harness.connect()
        d = Deferred.fromCoroutine(login_session(client, harness.clock, login_timeout=5))
        harness.clock.advance(5)
        harness.flush()
        error = self.failureResultOf(d, GeniError).value
        self.assertEqual(error.code, GeniCode.RPCERROR)
        self.assertIn("no login answer within 5 s", error.output)
        self.assertTrue(client.disconnected)


class RemoteMethodTests(SynchronousTestCase):
    """Every remote method, through the AM's session."""

    def setUp(self) -> None:
        self.harness = AgentHarness(self)
        self.session = self.harness.session(self)

    def call(self, d: Deferred[Any]) -> Any:
        return self.successResultOf(self.harness.run(d))

    def test_interfaces(self) -> None:
        """Sessions and the reconnecting agent client provide IGatewayAgent."""
        self.assertTrue(verifyObject(IGatewayAgent, self.session))
        self.assertTrue(verifyClass(IGatewayAgent, PBGatewayAgent))

    def test_inventory(self) -> None:
        """getSws and getLinks return the island inventory."""
        self.assertEqual(self.call(self.session.get_switches()), list(DEFAULT_INVENTORY.switches))
        self.assertEqual(self.call(self.session.get_links()), list(DEFAULT_INVENTORY.links))

    def test_apply_and_state(self) -> None:
        """The set calls apply the configuration and state() reports it as plain data."""
        self.assertIsNone(self.call(self.session.set_user_auth([KEY_A, KEY_B])))
        self.assertIsNone(self.call(self.session.set_tcp_proxy("192.168.100.1:6633")))
        self.assertIsNone(self.call(self.session.set_ovs({"10": "0xffff", "30": "20"})))
        self.assertEqual(
            self.call(self.session.state()),
            {"users": [KEY_A, KEY_B], "proxy": "192.168.100.1:6633", "vlans": {"10": "0xffff", "30": "20"}},
        )
        self.assertEqual(
            self.successResultOf(self.harness.backend.state()),
            GatewayConfig((KEY_A, KEY_B), "192.168.100.1:6633", {"10": "0xffff", "30": "20"}),
        )

    def test_every_call_idempotent(self) -> None:
        """Repeating any call leaves the same state and succeeds."""
        calls = [
            lambda: self.session.set_user_auth((KEY_A,)),
            lambda: self.session.set_tcp_proxy("10.0.0.1:6633"),
            lambda: self.session.set_ovs({"10": "20"}),
        ]
        for call in calls:
            self.call(call())
            before = self.call(self.session.state())
            self.call(call())
            self.assertEqual(self.call(self.session.state()), before)
        removals = [
            lambda: self.session.rem_user_auth([KEY_A]),
            self.session.rem_tcp_proxy,
            self.session.rem_ovs,
            self.session.reset,
        ]
        for call in removals:
            self.call(call())
            self.call(call())
        self.assertEqual(self.call(self.session.state()), {"users": [], "proxy": "", "vlans": {}})

    def test_reset(self) -> None:
        """reset restores the default configuration."""
        self.call(self.session.set_user_auth([KEY_A]))
        self.call(self.session.set_ovs({"1": "2"}))
        self.call(self.session.reset())
        self.assertEqual(self.call(self.session.state()), {"users": [], "proxy": "", "vlans": {}})

    def test_agent_checks_what_the_link_delivers(self) -> None:
        """
        Values are checked once on each side of the link: what the AM sends
        (validated where its request entered) the agent checks again, so a
        bad argument is BADARGS from the agent and changes nothing; a wrong
        number of arguments never leaves the AM.
        """
        sent = []
        original = self.session._perspective.callRemote
        self.session._perspective.callRemote = lambda *a: (sent.append(a), original(*a))[1]  # type: ignore[method-assign]
        for d in (
            self.session.set_tcp_proxy("x; reboot:1"),
            self.session.set_ovs({"5000": "1"}),
            self.session.set_user_auth(["a\nb"]),
            self.session.set_ovs(["10"]),
        ):
            self.assertEqual(self.failureResultOf(self.harness.run(d), GeniError).value.code, GeniCode.BADARGS)
        self.assertEqual(len(sent), 4)
        self.assertEqual(self.call(self.session.state()), {"users": [], "proxy": "", "vlans": {}})
        arity = self.session._verb(STATE, "extra")
        self.assertEqual(self.failureResultOf(arity, GeniError).value.code, GeniCode.BADARGS)
        self.assertEqual(len(sent), 5)  # only the state() above


class AgentSideValidationTests(SynchronousTestCase):
    """The agent refuses hostile arguments itself, whatever the client sends."""

    def setUp(self) -> None:
        self.harness = AgentHarness(self)
        self.perspective = self.harness.perspective(self)

    def refused(self, method: str, *args: Any) -> str:
        d = self.harness.run(self.perspective.callRemote(method, *args))
        failure = self.failureResultOf(d)
        self.assertTrue(failure.check(AgentBadArgs), f"{method}{args!r}: {failure}")
        self.assertEqual(translate_failure(failure, method).code, GeniCode.BADARGS)
        return str(failure.value)

    def test_hostile_controllers(self) -> None:
        """Controller strings that are not host:port are refused with BADARGS."""
        for controller in HOSTILE_CONTROLLERS:
            self.assertIn("controller", self.refused("setTCPProxy", controller))
        self.assertEqual(self.successResultOf(self.harness.backend.state()).proxy, "")

    def test_hostile_vlans(self) -> None:
        """VLAN ids out of range, duplicates and non-maps are refused."""
        for vlans in HOSTILE_VLANS:
            self.assertIn("VLAN", self.refused("setOvs", vlans))
        self.assertEqual(dict(self.successResultOf(self.harness.backend.state()).vlans), {})

    def test_hostile_keys(self) -> None:
        """Keys with newlines, options, NULs, or too many keys are refused, for set and remove."""
        for keys in HOSTILE_KEYS:
            self.refused("setUserAuth", keys)
            self.refused("remUserAuth", keys)
        self.assertEqual(self.successResultOf(self.harness.backend.state()).users, ())

    def test_arity_and_names(self) -> None:
        """Unknown methods, missing, extra or keyword arguments are refused."""
        self.assertIn("no method 'shell'", self.refused("shell", "id"))
        self.assertIn("takes 1 positional argument", self.refused("setTCPProxy"))
        self.assertIn("takes 0 positional arguments", self.refused("reset", True))
        d = self.harness.run(self.perspective.callRemote("setTCPProxy", controller="10.0.0.1:1"))
        self.assertTrue(self.failureResultOf(d).check(AgentBadArgs))
        self.assertEqual(set(REMOTE_METHODS), {"getSws", "getLinks", "setUserAuth", "remUserAuth", "setTCPProxy", "remTCPProxy", "setOvs", "remOvs", "reset", "state"})

    def test_references_refused(self) -> None:
        """An object reference instead of plain data is refused."""
        self.refused("setUserAuth", pb.Referenceable())
        self.refused("setOvs", {"10": pb.Referenceable()})


@implementer(IGatewayBackend)
class ScriptedBackend(SimulatedBackend):
    """A simulated back end whose calls can be held or made to fail."""

    def __init__(self, path: str) -> None:
        super().__init__(StateFile(path))
        self.held: list[Deferred[None]] = []
        self.error: Exception | None = None
        self.hold = False

    def set_tcp_proxy(self, controller: str) -> Deferred[None]:
        if self.error is not None:
            return fail(self.error)
        if self.hold:
            d: Deferred[None] = Deferred()
            self.held.append(d)
            return d.addCallback(lambda _: super(ScriptedBackend, self).set_tcp_proxy(controller))
        return super().set_tcp_proxy(controller)


class ErrorTests(SynchronousTestCase):
    """How failures reach the AM."""

    def setUp(self) -> None:
        self.backend = ScriptedBackend(os.path.join(self.mktemp(), "s.json"))
        self.harness = AgentHarness(self, backend=self.backend)
        self.session = self.harness.session(self, call_timeout=10)

    def test_backend_refusal(self) -> None:
        """A back end's GeniError reaches the AM as REFUSED with its message."""
        self.backend.error = GeniError(GeniCode.REFUSED, "gateway command 'redir -n' failed (exit status 1)")
        d = self.harness.run(self.session.set_tcp_proxy("10.0.0.1:6633"))
        error = self.failureResultOf(d, GeniError).value
        self.assertEqual(error.code, GeniCode.REFUSED)
        self.assertEqual(error.output, "gateway agent: gateway command 'redir -n' failed (exit status 1)")

    def test_unexpected_error_hidden(self) -> None:
        """An unexpected exception is logged on the agent; the AM gets a generic REFUSED without details."""
        self.backend.error = RuntimeError("secret internal path /etc/shadow")
        d = self.harness.run(self.session.set_tcp_proxy("10.0.0.1:6633"))
        error = self.failureResultOf(d, GeniError).value
        self.assertEqual(error.code, GeniCode.REFUSED)
        self.assertNotIn("shadow", error.output)
        self.assertIn("setTCPProxy failed inside the gateway agent", error.output)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_no_tracebacks(self) -> None:
        """Errors cross the wire without the agent's traceback."""
        d = self.harness.run(self.session._perspective.callRemote("setTCPProxy", "bad"))
        failure = self.failureResultOf(d)
        self.assertEqual(failure.traceback, "Traceback unavailable\n")

    def test_calls_serialised(self) -> None:
        """A call waits for the one before it to finish on the back end."""
        self.backend.hold = True
        first = self.session.set_tcp_proxy("10.0.0.1:6633")
        second = self.session.state()
        self.harness.flush()
        self.assertNoResult(first)
        self.assertNoResult(second)
        self.backend.held[0].callback(None)
        self.harness.flush()
        self.successResultOf(first)
        self.assertEqual(self.successResultOf(second)["proxy"], "10.0.0.1:6633")

    def test_call_timeout(self) -> None:
        """A call without an answer fails as RPCERROR after the call timeout and drops the connection."""
        self.backend.hold = True
        d = self.session.set_tcp_proxy("10.0.0.1:6633")
        self.harness.flush()
        self.harness.clock.advance(10)
        error = self.failureResultOf(d, GeniError).value
        self.assertEqual(error.code, GeniCode.RPCERROR)
        self.assertIn("did not answer setTCPProxy within 10 s", error.output)
        self.harness.flush()
        self.assertFalse(self.session.connected)
        later = self.failureResultOf(self.session.state(), GeniError).value
        self.assertEqual(later.output, "gateway agent unreachable: connection lost")

    def test_connection_lost_mid_call(self) -> None:
        """A call in flight when the connection drops fails as RPCERROR."""
        self.backend.hold = True
        d = self.session.set_tcp_proxy("10.0.0.1:6633")
        self.harness.flush()
        closed = self.session.close()
        self.harness.flush()
        self.successResultOf(closed)
        error = self.failureResultOf(d, GeniError).value
        self.assertEqual((error.code, error.output), (GeniCode.RPCERROR, "gateway agent unreachable: connection lost"))


class ResponseValidationTests(SynchronousTestCase):
    """The AM does not trust what the agent answers either."""

    def calls(self, answer: Any) -> _GatewayCalls:
        class Canned(_GatewayCalls):
            async def _call(self, method: str, *args: Any) -> Any:
                return answer

        return Canned()

    def test_malformed_state(self) -> None:
        """A state that is not the expected shape is an ERROR."""
        for bad in ("x", {"users": ["a\nb"]}, {"proxy": "; reboot"}, {"vlans": {"9999": "1"}}, {"users": [], "evil": 1}):
            error = self.failureResultOf(self.calls(bad).state(), GeniError).value
            self.assertEqual(error.code, GeniCode.ERROR)
            self.assertIn("malformed state", error.output)

    def test_malformed_inventory(self) -> None:
        """Switch and link lists must hold datapath ids and links."""
        self.assertEqual(self.failureResultOf(self.calls(["x"]).get_switches(), GeniError).value.code, GeniCode.ERROR)
        self.assertEqual(self.failureResultOf(self.calls("x").get_links(), GeniError).value.code, GeniCode.ERROR)
        self.assertEqual(self.successResultOf(self.calls(["0000000000000001"]).get_switches()), ["00:00:00:00:00:00:00:01"])

    def test_translate_unknown(self) -> None:
        """A remote failure of an unknown kind becomes ERROR naming it."""
        from twisted.python.failure import Failure

        error = translate_failure(Failure(KeyError("x")), "state")
        self.assertEqual(error.code, GeniCode.ERROR)
        self.assertIn("KeyError", error.output)
        self.assertIs(translate_failure(Failure(GeniError(GeniCode.BUSY, "b")), "x").code, GeniCode.BUSY)
        self.assertEqual(translate_failure(Failure(pb.PBConnectionLost("gone")), "x").code, GeniCode.RPCERROR)

