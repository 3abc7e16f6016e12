"""
Tests for L{geniam.gateway.verbs}: the gateway's verbs, named once.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from geniam.errors import GeniCode, GeniError
from geniam.gateway.config import GatewayConfig
from geniam.gateway.verbs import BY_REMOTE, SET_OVS, SET_TCP_PROXY, STATE, VERBS, GatewayCalls, plain_answer
from geniam.gatewayconfig import ControllerPolicy
from geniam.interfaces import IGatewayAgent, IGatewayBackend, IGatewayVerbs
from geniam.protocols.pb import REMOTE_METHODS


class TableTests(SynchronousTestCase):
    """The table of verbs matches both interfaces and the wire."""

    def test_interfaces(self) -> None:
        """Every verb is a method of IGatewayAgent and, by its back end name, of IGatewayBackend; the mutators are shared."""
        self.assertEqual({v.name for v in VERBS}, set(IGatewayAgent.names(all=True)))
        self.assertEqual({v.backend for v in VERBS}, set(IGatewayBackend.names(all=True)) - {"start", "stop"})
        self.assertEqual({v.name for v in VERBS if v.changes}, set(IGatewayVerbs.names()))

    def test_wire(self) -> None:
        """The PB methods and their arity come from the table."""
        self.assertEqual(REMOTE_METHODS, {v.remote: v.arity for v in VERBS})
        self.assertIs(BY_REMOTE["setOvs"], SET_OVS)

    def test_calls_dispatch(self) -> None:
        """Each IGatewayAgent method of GatewayCalls hands its verb and arguments to _verb."""
        seen = []

        class Recorder(GatewayCalls):
            def _verb(self, verb, *args):  # type: ignore[no-untyped-def]
                seen.append((verb.name, args))

        calls = Recorder()
        for verb in VERBS:
            getattr(calls, verb.name)(*(["x"] * verb.arity))
        self.assertEqual(seen, [(v.name, ("x",) * v.arity) for v in VERBS])


class CheckTests(SynchronousTestCase):
    """A verb's check."""

    def test_arity(self) -> None:
        """The wrong number of arguments is BADARGS naming the wire method."""
        with self.assertRaises(GeniError) as cm:
            STATE.validated(["extra"])
        self.assertEqual(cm.exception.code, GeniCode.BADARGS)
        self.assertIn("state takes 0", cm.exception.output)

    def test_policy(self) -> None:
        """A controller is checked against the policy when one is given."""
        self.assertEqual(SET_TCP_PROXY.validated(["10.0.0.1:6633"]), ("10.0.0.1:6633",))
        with self.assertRaises(GeniError) as cm:
            SET_TCP_PROXY.validated(["10.0.0.1:6633"], ControllerPolicy())
        self.assertEqual(cm.exception.code, GeniCode.REFUSED)

    def test_plain_answer(self) -> None:
        """A configuration answers in its wire form, lists as lists."""
        self.assertEqual(plain_answer(GatewayConfig(("k",), "", {})), {"users": ["k"], "proxy": "", "vlans": {}})
        self.assertEqual(plain_answer(("a",)), ["a"])
        self.assertIsNone(plain_answer(None))
