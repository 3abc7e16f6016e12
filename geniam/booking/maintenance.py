# -*- test-case-name: tests.managers.test_policy -*-
"""
Maintenance windows: stretches of time an operator closes the island in,
which nobody can book.

L{check_maintenance} refuses a slot overlapping a window with
L{MaintenanceConflict}, a L{BookingConflict} (UNAVAILABLE at the edge)
whose message names the window and its reason. Allocate calls it, and so
must every other way of taking the island (holds, tickets, transactions).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from geniam.booking.errors import BookingConflict
from geniam.booking.values import Slot

MAX_REASON_LENGTH = 500
"""The longest reason an operator may give (for a window or a cancellation)."""


@dataclass(frozen=True)
class MaintenanceWindow:
    """
    A stretch of time the island is closed for maintenance.

    @ivar window_id: the window's name, unique on the island.
    @ivar slot: when, half-open like a booking's slot.
    @ivar reason: the operator's reason, shown to everyone.
    @ivar created_by: the operator who closed it.
    @ivar created: when it was made.
    """

    window_id: str
    slot: Slot
    reason: str
    created_by: str = ""
    created: float = 0.0


class MaintenanceConflict(BookingConflict):
    """
    The requested slot overlaps a maintenance window.

    @ivar maintenance: the window.
    """

    def __init__(self, maintenance: MaintenanceWindow) -> None:
        super().__init__(maintenance.slot)
        self.maintenance = maintenance
        self.message = f"the island is closed for maintenance from {maintenance.slot}: {maintenance.reason}"
        self.args = (self.message,)


def check_maintenance(slot: Slot, windows: Iterable[MaintenanceWindow]) -> None:
    """
    @raise MaintenanceConflict: naming the first window, by start, that C{slot} overlaps.
    """
    overlapping = sorted((w for w in windows if w.slot.overlaps(slot)), key=lambda w: w.slot.start)
    if overlapping:
        raise MaintenanceConflict(overlapping[0])
