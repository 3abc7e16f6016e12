"""
Tests for L{geniam.managers.policy} and L{geniam.booking.maintenance}:
each limit refuses with a message naming it and admits the largest legal
request; maintenance windows refuse overlapping slots; and through a real
island manager on SQLite, Allocate and Renew are held to both.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from geniam.booking.maintenance import MaintenanceConflict, MaintenanceWindow, check_maintenance
from geniam.booking.values import Slot
from geniam.errors import GeniCode
from geniam.managers.errors import as_geni_error
from geniam.managers.policy import BookingPolicy, PolicyRefusal, booked_in_windows, check_policy, span_words

H = 3600.0
NOW = 1_000_000.0


class PolicyLimitTests(SynchronousTestCase):
    """Each limit: the largest legal request passes, one second more is REFUSED naming the limit."""

    def refused(self, policy: BookingPolicy, slot: Slot, name: str, users: list[Slot] = [], slices: list[Slot] = []) -> str:
        error = self.assertRaises(PolicyRefusal, check_policy, policy, slot, NOW, users, slices)
        self.assertEqual(as_geni_error(error).code, GeniCode.REFUSED)
        self.assertIn(f"({name})", error.message)
        return error.message

    def test_longest_slot(self) -> None:
        policy = BookingPolicy(max_slot_length=2 * H)
        check_policy(policy, Slot(NOW, NOW + 2 * H), NOW)
        self.assertIn("2 h", self.refused(policy, Slot(NOW, NOW + 2 * H + 1), "max_slot_length"))

    def test_shortest_slot(self) -> None:
        policy = BookingPolicy(min_slot_length=600.0)
        check_policy(policy, Slot(NOW, NOW + 600), NOW)
        self.assertIn("10 min", self.refused(policy, Slot(NOW, NOW + 599), "min_slot_length"))

    def test_how_far_ahead(self) -> None:
        policy = BookingPolicy(max_advance=30 * 86400.0)
        check_policy(policy, Slot(NOW + 30 * 86400, NOW + 30 * 86400 + H), NOW)
        self.assertIn("30 d", self.refused(policy, Slot(NOW + 30 * 86400 + 1, NOW + 30 * 86400 + H), "max_advance"))

    def test_user_quota(self) -> None:
        """The user's other bookings in the window count; ones further away than the window do not."""
        policy = BookingPolicy(user_quota=3 * H, quota_window=24 * H)
        mine = [Slot(NOW, NOW + 2 * H), Slot(NOW - 30 * H, NOW - 20 * H)]
        check_policy(policy, Slot(NOW + 5 * H, NOW + 6 * H), NOW, mine)
        message = self.refused(policy, Slot(NOW + 5 * H, NOW + 6 * H + 1), "user_quota", mine)
        self.assertIn("3 h", message)
        # Far enough away, the same request fits again.
        check_policy(policy, Slot(NOW + 26 * H, NOW + 29 * H), NOW, mine)

    def test_slice_quota(self) -> None:
        policy = BookingPolicy(slice_quota=H, quota_window=24 * H)
        check_policy(policy, Slot(NOW, NOW + H), NOW, [], [])
        self.refused(policy, Slot(NOW + 2 * H, NOW + 2 * H + 1), "slice_quota", [], [Slot(NOW, NOW + H)])

    def test_off_by_default(self) -> None:
        """The defaults let a demo book what it likes within a week's slot."""
        check_policy(BookingPolicy(), Slot(NOW + 10 * 365 * 86400, NOW + 10 * 365 * 86400 + 1), NOW, [Slot(NOW, NOW + 100 * H)])

    def test_window_maximum(self) -> None:
        """The busiest window is found wherever its edge falls."""
        self.assertEqual(booked_in_windows(Slot(10, 20), [Slot(0, 5), Slot(25, 40)], 20), 15.0)
        self.assertEqual(booked_in_windows(Slot(10, 20), [Slot(100, 200)], 20), 10.0)

    def test_changed(self) -> None:
        policy = BookingPolicy().changed({"user_quota": 60})
        self.assertEqual(policy.user_quota, 60.0)
        self.assertRaises(ValueError, BookingPolicy().changed, {"user_quota": "lots"})
        self.assertRaises(ValueError, BookingPolicy().changed, {"min_slot_length": 8 * 86400})
        self.assertEqual(span_words(9000), "2 h 30 min")


class MaintenanceTests(SynchronousTestCase):
    """Windows close the island, half-open like slots."""

    def test_refuses_overlap(self) -> None:
        window = MaintenanceWindow("w", Slot(100, 200), "firmware")
        error = self.assertRaises(MaintenanceConflict, check_maintenance, Slot(150, 300), [window])
        self.assertEqual(as_geni_error(error).code, GeniCode.UNAVAILABLE)
        self.assertIn("firmware", error.message)
        check_maintenance(Slot(200, 300), [window])
        check_maintenance(Slot(0, 100), [window])
