# -*- test-case-name: tests.booking.test_rules -*-
"""
The booking core's failures: what went wrong in the domain's own words.

None of them carries a wire code; the managers' edge
(L{geniam.managers.errors}) turns each into the GENI code its caller sees.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from geniam.booking.values import Slot


class BookingError(Exception):
    """
    A booking rule refused a change or a value.

    @ivar message: the human-readable reason, shown to the caller.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidBooking(BookingError):
    """A value is malformed: a slot that does not end after it starts, a time that is no time."""


class OutOfRange(BookingError):
    """A time is not granted: a slot already over, too long, or past the slice credential's expiry."""


class NotPermitted(BookingError):
    """The change is not allowed in the booking's state (a different slot on first provision, a moved start)."""


class NotCurrent(BookingError):
    """The booking has ended, expired, been deleted or released: it can no longer change."""


class BookingConflict(BookingError):
    """
    The requested slot overlaps a live booking or hold of the island.

    The message names the conflicting time window, never the slice holding it.

    @ivar window: the slot of the conflicting booking.
    """

    def __init__(self, window: "Slot") -> None:
        super().__init__(f"the island is already booked from {window}")
        self.window = window
