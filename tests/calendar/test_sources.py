"""
Where calendars read schedules: the island's state words, the gateway
link, and rows read back from single and merged advertisements.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from geniam.booking.values import AllocationState, Booking, OperationalState, Slot
from geniam.calendar.advertised import rows_from_advertisement
from geniam.calendar.schedule import BlockKind, IslandState
from geniam.calendar.sources import AggregateScheduleSource, FederationScheduleSource, gateway_link, island_state
from geniam.errors import GeniError
from geniam.interfaces import IScheduleSource
from geniam.rspec.advertisement import build_advertisement
from geniam.rspec.merge import AggregateOutcome, merge_advertisements
from geniam.rspec.resources import IslandResources

T0 = 1_800_000_000.0
H = 3600.0
A = "urn:publicid:IDN+lab:am1+authority+am"
B = "urn:publicid:IDN+lab:am2+authority+am"


def booking(state: AllocationState, operational: OperationalState) -> Booking:
    return Booking(
        "urn:publicid:IDN+lab:am1+sliver+1", "urn:publicid:IDN+lab+slice+secret", "urn:publicid:IDN+lab+user+alice",
        "alice@example.org", Slot(T0, T0 + H), state, T0 + H, operational,
    )


class StateTests(SynchronousTestCase):
    """What the island is doing, in words naming nobody."""

    def test_states(self) -> None:
        """Each booking state maps to a calendar state; the words never name the slice or the user."""
        cases = {
            (AllocationState.PROVISIONED, OperationalState.READY): IslandState.IN_SLOT,
            (AllocationState.PROVISIONED, OperationalState.CONFIGURING): IslandState.CONFIGURING,
            (AllocationState.PROVISIONED, OperationalState.FAILED): IslandState.FAILED,
            (AllocationState.ALLOCATED, OperationalState.NOTREADY): IslandState.IN_SLOT,
        }
        for (allocation, operational), expected in cases.items():
            state, words = island_state(booking(allocation, operational))
            self.assertEqual(state, expected)
            self.assertNotIn("secret", words)
            self.assertNotIn("alice", words)
        self.assertEqual(island_state(None)[0], IslandState.IDLE)

    def test_gateway_link(self) -> None:
        """A gateway agent's connection is told; the simulated gateway is named as such."""

        class Agent:
            connected = False
            last_error = "connection refused"

        self.assertEqual(gateway_link(object()), "simulated in process")
        self.assertEqual(gateway_link(Agent()), "unreachable (connection refused)")
        Agent.connected = True
        self.assertEqual(gateway_link(Agent()), "connected")

    def test_interfaces(self) -> None:
        """Both sources provide L{IScheduleSource}."""
        verifyObject(IScheduleSource, AggregateScheduleSource(None, None, A, None))  # type: ignore[arg-type]
        verifyObject(IScheduleSource, FederationScheduleSource(None, None, None))  # type: ignore[arg-type]


class AdvertisedTests(SynchronousTestCase):
    """Rows read back from advertisements."""

    def advertisement(self, urn: str, booked: list[tuple[float, float]]) -> str:
        return build_advertisement(IslandResources(urn, ("00:00:00:00:00:00:00:01",), ()), booked, T0)

    def test_single(self) -> None:
        """An aggregate's advertisement gives its row, the slot holding now running."""
        rows = rows_from_advertisement(self.advertisement(A, [(T0 - H, T0 + H), (T0 + 2 * H, T0 + 3 * H)]), T0)
        self.assertEqual([(r.urn, r.name, r.state) for r in rows], [(A, "lab:am1", IslandState.IN_SLOT)])
        self.assertEqual([b.kind for b in rows[0].blocks], [BlockKind.RUNNING, BlockKind.BOOKED])

    def test_merged_with_a_failure(self) -> None:
        """A merged advertisement gives a row per aggregate; one that failed is unreachable, with why."""
        merged = merge_advertisements(
            [
                AggregateOutcome(A, 0.007, "success", self.advertisement(A, [(T0, T0 + H)])),
                AggregateOutcome(B, 30.0, "timeout", None, 7, "no answer"),
            ],
            generated=T0,
        )
        rows = rows_from_advertisement(merged, T0, [A, B])
        self.assertEqual([r.urn for r in rows], [A, B])
        self.assertTrue(rows[0].reachable)
        self.assertEqual(rows[0].reachability, "answered in 7 ms")
        self.assertFalse(rows[1].reachable)
        self.assertEqual(rows[1].reachability, "did not answer within 30 s")

    def test_hostile_document(self) -> None:
        """An advertisement with a DOCTYPE is refused as the RSpec parser refuses it."""
        self.assertRaises(GeniError, rows_from_advertisement, '<!DOCTYPE x [<!ENTITY a "b">]><rspec/>', T0)
