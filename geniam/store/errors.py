# -*- test-case-name: tests.store.test_sqlite -*-
"""
The failures every L{geniam.interfaces.IStore} implementation raises.

They speak of the store, not of any wire protocol; the managers' edge
(L{geniam.managers.errors}) gives each its GENI code. A conflicting slot
is L{geniam.booking.errors.BookingConflict}.
"""

from __future__ import annotations


class StoreFailure(Exception):
    """
    A store could not do what was asked.

    @ivar message: the human-readable reason.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class StoreError(StoreFailure):
    """The database failed or holds something this version cannot use."""


class SchemaTooNew(StoreError):
    """The database was written by a newer version of geniam."""

    def __init__(self, found: int, supported: int) -> None:
        super().__init__(f"database schema version {found} is newer than the supported version {supported}")
        self.found = found
        self.supported = supported


class StaleBooking(StoreFailure):
    """The booking changed since it was read (its version moved on)."""

    def __init__(self, sliver_urn: str) -> None:
        super().__init__(f"sliver {sliver_urn} changed meanwhile; try again")
        self.sliver_urn = sliver_urn


class UnknownBooking(StoreFailure):
    """No booking has this sliver URN."""

    def __init__(self, sliver_urn: str) -> None:
        super().__init__(f"no such sliver: {sliver_urn}")
        self.sliver_urn = sliver_urn


class DuplicateBooking(StoreFailure):
    """A booking with this sliver URN already exists."""

    def __init__(self, sliver_urn: str) -> None:
        super().__init__(f"sliver {sliver_urn} already exists")
        self.sliver_urn = sliver_urn


class TicketHeld(StoreFailure):
    """The slice already holds a valid ticket's hold on this island (at most one may be live)."""

    def __init__(self, slice_urn: str) -> None:
        super().__init__(f"slice {slice_urn} already holds a valid ticket here; redeem or release it")
        self.slice_urn = slice_urn
