# -*- test-case-name: tests.booking.test_lifecycle -*-
"""
The lifecycle of a booking as transitions of (booking, event, now).

A booking moves C{held} -> C{allocated} -> C{provisioned} (operationally:
not ready -> configuring -> ready while its slot runs) -> C{ended} or
C{deleted}; an allocation or hold not taken up in time C{expired}; a hold
given back is C{released}. Each transition is a pure function: it returns
the new value or raises a domain error, and the store decides whether the
result may be written (conflicts, versions).

A I{hold} is a promise of a slot that keeps every other slice off it, is
not yet a sliver, and lapses by itself at its expiry. Tickets and
transactions are holds: each creates one with L{new_hold} (naming itself in
C{held_by}), turns it into an allocation with L{Event.TAKE_UP}, or gives
it back with L{Event.RELEASE}.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from geniam.booking.errors import NotPermitted
from geniam.booking.rules import allocation_expiry, check_current, needs_cleanup, needs_end, needs_expiry, new_booking
from geniam.booking.values import AllocationState, Booking, OperationalState, Slot


class Event(StrEnum):
    """What can happen to a booking."""

    TAKE_UP = "take_up"
    """A hold becomes an allocation (a ticket redeemed, a transaction committed)."""
    RELEASE = "release"
    """A hold is given back."""
    EXPIRE = "expire"
    """A hold or an allocation lapses at its expiry."""
    CONFIGURE = "configure"
    """The slot runs and its configuration is being applied."""
    READY = "ready"
    """The configuration is applied."""
    FAIL = "fail"
    """The gateway refused the configuration; it is retried while the slot lasts."""
    UNREACHABLE = "unreachable"
    """The gateway could not be reached: the booking shows configuring, and is retried while the slot lasts."""
    STOP = "stop"
    """Its owner or a slice shutdown stopped it: not started automatically."""
    UNSTOP = "unstop"
    """A stop is cleared before the slot: the slot start applies it again."""
    END = "end"
    """The slot is over."""
    DELETE = "delete"
    """Its owner released it."""
    REMOVED = "removed"
    """Another booking's configuration replaced its own on the gateway, or none should be there."""
    CLEANED = "cleaned"
    """Configuration left on the gateway by a booking no longer live, or stopped, was removed."""


@dataclass(frozen=True)
class Removal:
    """
    What taking a booking's configuration off the gateway left.

    @ivar still_applied: whether some of it may still be there.
    @ivar error: the error text to record (empty once it is all gone).
    """

    still_applied: bool = False
    error: str = ""


def _taken_off(booking: Booking, removal: Removal) -> Booking:
    """
    C{booking} once its configuration was removed: while some may still be
    there the operational state is kept, else it is not ready.
    """
    operational = booking.operational_state if removal.still_applied else OperationalState.NOTREADY
    return replace(booking, operational_state=operational, applied=removal.still_applied, error=removal.error)


def new_hold(
    *,
    sliver_urn: str,
    slice_urn: str,
    owner_urn: str,
    owner_email: str,
    slot: Slot,
    now: float,
    expires: float,
    held_by: str,
    credential_expires: float | None,
    max_slot_length: float,
) -> Booking:
    """
    Return a new hold of C{slot} that lapses at C{expires} (never after the
    slot's end or the slice credential's expiry), after checking the slot
    policy; conflicts are for the store to check, as for any live booking.

    @param sliver_urn: the URN the sliver will have once the hold is taken up.
    @param held_by: what holds it (C{ticket}, C{transaction}).
    @raise NotPermitted: if C{held_by} is empty or C{expires} is not after C{now}.
    """
    if not held_by:
        raise NotPermitted("a hold must name what holds it")
    booking = new_booking(
        sliver_urn=sliver_urn,
        slice_urn=slice_urn,
        owner_urn=owner_urn,
        owner_email=owner_email,
        slot=slot,
        now=now,
        allocation_ttl=expires - now,
        credential_expires=credential_expires,
        max_slot_length=max_slot_length,
    )
    if booking.allocation_expires <= now:
        raise NotPermitted(f"a hold of {slot} would lapse at once")
    return replace(booking, allocation_state=AllocationState.HELD, held_by=held_by)


def taken_up(booking: Booking, now: float, allocation_ttl: float, credential_expires: float | None) -> Booking:
    """
    The hold as an allocation: the same slot (never lost to another slice
    between the two), now a sliver, lapsing as a new allocation does.

    @raise NotCurrent: if the hold has lapsed or is gone.
    @raise NotPermitted: if it is not a hold.
    """
    check_current(booking, now)
    if booking.allocation_state is not AllocationState.HELD:
        raise NotPermitted(f"{booking.sliver_urn} is {booking.allocation_state.value}, not held")
    return replace(
        booking,
        allocation_state=AllocationState.ALLOCATED,
        allocation_expires=allocation_expiry(now, allocation_ttl, booking.slot, credential_expires),
        held_by="",
        updated=now,
    )


def _require(booking: Booking, event: Event, *states: AllocationState) -> None:
    if booking.allocation_state not in states:
        raise NotPermitted(f"{booking.sliver_urn} is {booking.allocation_state.value}: it cannot {event.value.replace('_', ' ')}")


def step(
    booking: Booking,
    event: Event,
    now: float,
    *,
    allocation_ttl: float = 0.0,
    credential_expires: float | None = None,
    removal: Removal | None = None,
    error: str | None = None,
) -> Booking:
    """
    Return C{booking} after C{event} at C{now}.

    C{allocation_ttl} and C{credential_expires} matter only for
    L{Event.TAKE_UP}. Operational events apply to a provisioned booking
    (C{CONFIGURE}, C{READY}, C{FAIL} and C{UNREACHABLE} only while its slot
    runs); C{END} to a provisioned booking whose slot is over; C{EXPIRE} to
    a hold or an allocation past its expiry. C{removal} says what taking
    the configuration off the gateway left, for C{DELETE}, C{END} and
    C{STOP}; C{error} is the gateway's error text for C{FAIL} and
    C{UNREACHABLE}.

    @raise NotPermitted: for an event its state does not allow.
    @raise NotCurrent: for a change to a booking that is gone.
    """
    if event is Event.TAKE_UP:
        return taken_up(booking, now, allocation_ttl, credential_expires)
    if event is Event.RELEASE:
        _require(booking, event, AllocationState.HELD)
        return replace(booking, allocation_state=AllocationState.RELEASED, updated=now)
    if event is Event.EXPIRE:
        if not needs_expiry(booking, now):
            raise NotPermitted(f"{booking.sliver_urn} does not lapse before {booking.allocation_expires}")
        return replace(booking, allocation_state=AllocationState.EXPIRED, updated=now)
    if event is Event.END:
        if not needs_end(booking, now):
            raise NotPermitted(f"the slot of {booking.sliver_urn} is not over")
        ended = replace(booking, allocation_state=AllocationState.ENDED, updated=now)
        return ended if removal is None else _taken_off(ended, removal)
    if event is Event.DELETE:
        check_current(booking, now)
        _require(booking, event, AllocationState.ALLOCATED, AllocationState.PROVISIONED)
        deleted = replace(booking, allocation_state=AllocationState.DELETED, updated=now)
        return deleted if removal is None else _taken_off(deleted, removal)
    if event is Event.REMOVED:
        if not booking.applied:
            raise NotPermitted(f"{booking.sliver_urn} has no configuration on the gateway")
        after = OperationalState.NOTREADY if booking.operational_state is OperationalState.READY else booking.operational_state
        kept = "" if needs_cleanup(booking) else booking.error
        return replace(booking, applied=False, operational_state=after, error=kept, updated=now)
    if event is Event.CLEANED:
        if not needs_cleanup(booking):
            raise NotPermitted(f"{booking.sliver_urn} leaves nothing on the gateway to remove")
        return replace(booking, applied=False, error="", updated=now)
    _require(booking, event, AllocationState.PROVISIONED)
    if event in (Event.CONFIGURE, Event.READY, Event.FAIL, Event.UNREACHABLE) and not booking.slot.contains(now):
        raise NotPermitted(f"the slot of {booking.sliver_urn} is not running")
    operational = {
        Event.CONFIGURE: OperationalState.CONFIGURING,
        Event.READY: OperationalState.READY,
        Event.FAIL: OperationalState.FAILED,
        Event.UNREACHABLE: OperationalState.CONFIGURING,
        Event.STOP: OperationalState.STOPPED,
        Event.UNSTOP: OperationalState.NOTREADY,
    }[event]
    if event is Event.UNSTOP and booking.operational_state is not OperationalState.STOPPED:
        return booking
    applied = True if event is Event.CONFIGURE else booking.applied
    kept_error = "" if event is Event.READY else booking.error
    if event in (Event.FAIL, Event.UNREACHABLE) and error is not None:
        kept_error = error
    if event is Event.STOP and removal is not None:
        applied, kept_error = removal.still_applied, removal.error
    return replace(booking, operational_state=operational, applied=applied, error=kept_error, updated=now)
