"""
Tests of the pure part of L{geniam.managers.gatewaysync}: what to send the
gateway to go from what it reports to what a booking needs, and to take a
booking's configuration off. No reactor, no store.
"""

from __future__ import annotations

from unittest import TestCase

from geniam.booking.values import AllocationState, OperationalState, UserKeys
from geniam.gateway.config import GatewayConfig
from geniam.managers.gatewaysync import GatewayAction, plan, removal_plan
from tests.store.test_contract import KEY_A, KEY_B, booking

ALICE = "urn:publicid:IDN+geni.example.net+user+alice"


class PlanTests(TestCase):
    """L{plan} changes exactly what differs, in a fixed order."""

    def test_matching_needs_nothing(self) -> None:
        """A gateway that holds what is wanted gets no action."""
        wanted = GatewayConfig((KEY_A,), "192.0.2.10:6633", {"10": "20"})
        self.assertEqual(plan(wanted, wanted), [])

    def test_empty_to_booking(self) -> None:
        """From the default configuration: keys, proxy, VLAN map."""
        wanted = GatewayConfig((KEY_A, KEY_B), "192.0.2.10:6633", {"10": "20"})
        self.assertEqual(
            [(a.verb, a.args) for a in plan(GatewayConfig(), wanted)],
            [("set_user_auth", ([KEY_A, KEY_B],)), ("set_tcp_proxy", ("192.0.2.10:6633",)), ("set_ovs", ({"10": "20"},))],
        )

    def test_drift_repaired(self) -> None:
        """A stray key goes before a missing one is added; a wrong proxy is replaced; an extra VLAN map removed."""
        observed = GatewayConfig((KEY_B,), "198.51.100.1:6633", {"30": "40"})
        wanted = GatewayConfig((KEY_A,), "192.0.2.10:6633", {})
        self.assertEqual(
            plan(observed, wanted),
            [
                GatewayAction("rem_user_auth", ([KEY_B],), "removed 1 SSH key(s)"),
                GatewayAction("set_user_auth", ([KEY_A],), "added 1 SSH key(s)"),
                GatewayAction("set_tcp_proxy", ("192.0.2.10:6633",), "proxy to 192.0.2.10:6633"),
                GatewayAction("rem_ovs", (), "removed the VLAN map"),
            ],
        )

    def test_to_default(self) -> None:
        """Wanting nothing removes everything observed, the proxy with rem_tcp_proxy."""
        observed = GatewayConfig((KEY_A,), "192.0.2.10:6633", {"10": "20"})
        self.assertEqual([a.verb for a in plan(observed, GatewayConfig())], ["rem_user_auth", "rem_tcp_proxy", "rem_ovs"])

    def test_view_of_booking(self) -> None:
        """A booking wants its users' keys (once each), its controller and its VLAN map."""
        b = booking(
            "p", 0, 10, AllocationState.PROVISIONED,
            users=(UserKeys(ALICE, (KEY_A, KEY_B)), UserKeys(ALICE + "2", (KEY_A,))),
            controller="192.0.2.10:6633",
            vlan_map={"10": "20"},
        )
        self.assertEqual(GatewayConfig.of(b), GatewayConfig((KEY_A, KEY_B), "192.0.2.10:6633", {"10": "20"}))


class RemovalPlanTests(TestCase):
    """L{removal_plan} takes a booking off the gateway."""

    def test_applied_booking(self) -> None:
        """A ready booking's keys, the proxy and the VLAN map are removed one by one."""
        b = booking("p", 0, 10, AllocationState.PROVISIONED, users=(UserKeys(ALICE, (KEY_A,)),), operational_state=OperationalState.READY)
        self.assertEqual(
            removal_plan(b),
            [GatewayAction("rem_user_auth", ([KEY_A],)), GatewayAction("rem_tcp_proxy"), GatewayAction("rem_ovs")],
        )

    def test_no_keys(self) -> None:
        """Without keys, only the proxy and the VLAN map."""
        b = booking("p", 0, 10, AllocationState.PROVISIONED)
        self.assertEqual([a.verb for a in removal_plan(b)], ["rem_tcp_proxy", "rem_ovs"])

    def test_half_applied_is_reset(self) -> None:
        """A booking that may be half applied (configuring, failed) is removed with one reset."""
        for state in (OperationalState.CONFIGURING, OperationalState.FAILED):
            b = booking("p", 0, 10, AllocationState.PROVISIONED, users=(UserKeys(ALICE, (KEY_A,)),), operational_state=state)
            self.assertEqual(removal_plan(b), [GatewayAction("reset")])
