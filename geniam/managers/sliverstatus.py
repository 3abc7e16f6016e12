# -*- test-case-name: tests.booking.test_rules -*-
"""
How a booking reads in the AM API v3: its C{geni_expires},
C{geni_allocation_status} and C{geni_operational_status}.
"""

from __future__ import annotations

from geniam.booking.values import AllocationState, Booking, OperationalState


def geni_expires(booking: Booking) -> float:
    """
    The expiry of the booking's current state (C{geni_expires}): the
    allocation expiry while allocated, the slot's end once provisioned.
    For a booking no longer live, the expiry it had last.
    """
    if booking.allocation_state is AllocationState.ALLOCATED:
        return booking.allocation_expires
    if booking.allocation_state is AllocationState.EXPIRED:
        return booking.allocation_expires
    if booking.allocation_state is AllocationState.DELETED and booking.provisioned_at is None:
        return booking.allocation_expires
    return booking.slot.end


def geni_allocation_status(booking: Booking) -> str:
    """The AM API v3 C{geni_allocation_status} of a booking."""
    if booking.allocation_state is AllocationState.ALLOCATED:
        return "geni_allocated"
    if booking.allocation_state is AllocationState.PROVISIONED:
        return "geni_provisioned"
    return "geni_unallocated"


_GENI_OPSTATE = {
    OperationalState.NOTREADY: "geni_notready",
    OperationalState.CONFIGURING: "geni_configuring",
    OperationalState.READY: "geni_ready",
    OperationalState.FAILED: "geni_failed",
    OperationalState.STOPPED: "geni_notready",
}


def geni_operational_status(booking: Booking) -> str:
    """
    The AM API v3 C{geni_operational_status} of a booking.

    Allocated bookings are C{geni_pending_allocation}; a stopped booking is
    C{geni_notready}; a booking no longer live is C{geni_notready}.
    """
    if booking.allocation_state is AllocationState.ALLOCATED:
        return "geni_pending_allocation"
    if not booking.live:
        return "geni_notready"
    return _GENI_OPSTATE[booking.operational_state]
