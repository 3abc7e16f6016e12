# -*- test-case-name: tests.test_store_sqlite -*-
"""
The failures every L{geniam.interfaces.IStore} implementation raises.

Each is a L{geniam.errors.GeniError}, so one that reaches a caller still
carries a GENI code. A conflicting slot is L{geniam.booking.BookingConflict}.
"""

from __future__ import annotations

from geniam.errors import GeniCode, GeniError


class StoreError(GeniError):
    """The database failed or holds something this version cannot use."""

    def __init__(self, output: str) -> None:
        super().__init__(GeniCode.DBERROR, output)


class SchemaTooNew(StoreError):
    """The database was written by a newer version of geniam."""

    def __init__(self, found: int, supported: int) -> None:
        super().__init__(f"database schema version {found} is newer than the supported version {supported}")
        self.found = found
        self.supported = supported


class StaleBooking(GeniError):
    """The booking changed since it was read (its version moved on)."""

    def __init__(self, sliver_urn: str) -> None:
        super().__init__(GeniCode.BUSY, f"sliver {sliver_urn} changed meanwhile; try again")
        self.sliver_urn = sliver_urn


class UnknownBooking(GeniError):
    """No booking has this sliver URN."""

    def __init__(self, sliver_urn: str) -> None:
        super().__init__(GeniCode.SEARCHFAILED, f"no such sliver: {sliver_urn}")
        self.sliver_urn = sliver_urn


class DuplicateBooking(GeniError):
    """A booking with this sliver URN already exists."""

    def __init__(self, sliver_urn: str) -> None:
        super().__init__(GeniCode.ALREADYEXISTS, f"sliver {sliver_urn} already exists")
        self.sliver_urn = sliver_urn
