# -*- test-case-name: tests.booking.test_rules,tests.booking.test_lifecycle -*-
"""
The booking core's rules: conflicts, expiry, renewal, provisioning, holds,
and what is due at a moment.

Pure functions of values and the time passed in; failures are the domain
errors of L{geniam.booking.errors}.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace

from geniam.booking.errors import BookingConflict, InvalidBooking, NotCurrent, NotPermitted, OutOfRange
from geniam.booking.values import (
    DEFAULT_MAX_SLOT_LENGTH,
    MAX_TIME,
    AllocationState,
    Booking,
    Due,
    OperationalState,
    Slot,
    UserKeys,
    urn_key,
)
from geniam.gatewayconfig import MAX_USERS
from geniam.timeutil import format_time

def merge_users(existing: Sequence[UserKeys], updates: Sequence[UserKeys]) -> tuple[UserKeys, ...]:
    """
    Apply C{geni_update_users}: listed users get exactly the listed keys,
    new users are added, unlisted users are kept.

    @raise InvalidBooking: if the result has more than
        L{geniam.gatewayconfig.MAX_USERS} users.
    """
    result = {urn_key(user.urn): user for user in existing}
    for user in updates:
        result[urn_key(user.urn)] = user
    if len(result) > MAX_USERS:
        raise InvalidBooking(f"{len(result)} users after the update; the limit is {MAX_USERS}")
    return tuple(result.values())


def allocation_expiry(now: float, ttl: float, slot: Slot, credential_expires: float | None) -> float:
    """
    When a new or renewed allocation lapses: the earliest of C{now + ttl},
    the slice credential's expiry and the slot's end.
    """
    limit = min(now + ttl, slot.end)
    return limit if credential_expires is None else min(limit, credential_expires)


def find_conflict(slot: Slot, bookings: Iterable[Booking], exclude: Iterable[str] = ()) -> Booking | None:
    """
    Return a live booking that overlaps C{slot}, or None.

    @param exclude: sliver URNs to ignore (the bookings being changed).
    """
    skip = {urn_key(urn) for urn in exclude}
    for booking in bookings:
        if booking.live and booking.sliver_key not in skip and booking.slot.overlaps(slot):
            return booking
    return None


def check_free(slot: Slot, bookings: Iterable[Booking], exclude: Iterable[str] = ()) -> None:
    """
    Raise L{BookingConflict} if a live booking (other than C{exclude}) overlaps C{slot}.
    """
    conflict = find_conflict(slot, bookings, exclude)
    if conflict is not None:
        raise BookingConflict(conflict.slot)


def check_slot_allowed(slot: Slot, now: float, credential_expires: float | None, max_slot_length: float) -> None:
    """
    Check the policy for a slot being booked or changed at C{now}.

    @raise BookingError: OUTOFRANGE if the slot is already over, longer than
        C{max_slot_length}, or ends after the slice credential expires.
    """
    if slot.end <= now:
        raise OutOfRange(f"the slot {slot} is already over")
    if slot.duration > max_slot_length:
        raise OutOfRange(f"the slot {slot} is longer than the maximum of {max_slot_length:g} seconds")
    if credential_expires is not None and slot.end > credential_expires:
        raise OutOfRange(
            f"the slot {slot} ends after the slice credential expires ({format_time(credential_expires)}); renew the slice first",
        )


def new_booking(
    *,
    sliver_urn: str,
    slice_urn: str,
    owner_urn: str,
    owner_email: str,
    slot: Slot,
    now: float,
    allocation_ttl: float,
    credential_expires: float | None,
    max_slot_length: float,
    controller: str | None = None,
    vlan_map: Mapping[str, str] | None = None,
) -> Booking:
    """
    Return a new allocated booking, after checking the slot policy
    (L{check_slot_allowed}); conflicts are for the caller to check.
    """
    check_slot_allowed(slot, now, credential_expires, max_slot_length)
    return Booking(
        sliver_urn=sliver_urn,
        slice_urn=slice_urn,
        owner_urn=owner_urn,
        owner_email=owner_email,
        slot=slot,
        allocation_state=AllocationState.ALLOCATED,
        allocation_expires=allocation_expiry(now, allocation_ttl, slot, credential_expires),
        controller=controller,
        vlan_map=dict(vlan_map or {}),
        created=now,
        updated=now,
    )


def is_current(booking: Booking, now: float) -> bool:
    """
    True if the booking is live and not overdue: a hold or an allocation
    before its expiry, or a provisioned booking before its slot's end.
    """
    if booking.allocation_state in (AllocationState.HELD, AllocationState.ALLOCATED):
        return booking.allocation_expires > now
    if booking.allocation_state is AllocationState.PROVISIONED:
        return booking.slot.end > now
    return False


_GONE = {
    AllocationState.ENDED: "has ended",
    AllocationState.DELETED: "has been deleted",
    AllocationState.EXPIRED: "has expired",
    AllocationState.RELEASED: "has been released",
}


def check_current(booking: Booking, now: float) -> None:
    """
    @raise NotCurrent: unless L{is_current}, naming what became of the booking.
    """
    if is_current(booking, now):
        return
    if booking.live:
        what = "has ended" if booking.allocation_state is AllocationState.PROVISIONED else "has expired"
    else:
        what = _GONE[booking.allocation_state]
        if booking.error:
            what += f" ({booking.error})"  # an operator's cancellation, say
    raise NotCurrent(f"sliver {booking.sliver_urn} {what}")


def renewal_end(
    booking: Booking,
    end: float,
    now: float,
    credential_expires: float | None,
    others: Iterable[Booking],
    max_slot_length: float,
    extend_alap: bool = False,
) -> float:
    """
    The new end of a booking's slot for a Renew to C{end}.

    Without C{extend_alap}, C{end} itself if it is after the start and
    C{now}, no later than the credential's expiry, within the maximum slot
    length and free. With C{extend_alap}, the furthest end no later than
    C{end} that is free, within the maximum length and no later than the
    credential's expiry.

    @param others: the live bookings that may overlap
        C{[booking.slot.start, end)} (the booking itself is ignored).
    @raise BookingError: OUTOFRANGE for a time not granted; L{BookingConflict}
        (UNAVAILABLE) if the slot is taken.
    """
    start = booking.slot.start
    if isinstance(end, bool) or not isinstance(end, (int, float)) or not math.isfinite(end):
        raise InvalidBooking("expiration time must be a time")
    others = [o for o in others if o.live and o.sliver_key != booking.sliver_key]
    if not extend_alap:
        if end <= start:
            raise OutOfRange(f"cannot renew to {format_time(end)}: the slot starts at {format_time(start)}")
        slot = Slot(start, end)
        check_slot_allowed(slot, now, credential_expires, max_slot_length)
        check_free(slot, others)
        return slot.end
    limit = min(float(end), start + max_slot_length, MAX_TIME)
    if credential_expires is not None:
        limit = min(limit, credential_expires)
    for other in others:
        if other.slot.start < limit and other.slot.end > start:
            if other.slot.start <= start:
                raise BookingConflict(other.slot)
            limit = min(limit, other.slot.start)
    if limit <= start or limit <= now:
        raise OutOfRange(f"cannot renew sliver {booking.sliver_urn}: no later end is allowed")
    return limit


def renewed(
    booking: Booking,
    end: float,
    now: float,
    credential_expires: float | None,
    others: Iterable[Booking],
    max_slot_length: float,
    allocation_ttl: float,
    extend_alap: bool = False,
) -> Booking:
    """
    Return the booking renewed to C{end} (see L{renewal_end}).

    The slot's end moves. An allocation's expiry is recomputed from C{now}
    (L{allocation_expiry}); a provisioned booking expires with its slot.

    @raise BookingError: SEARCHFAILED if the booking is not current
        (L{check_current}), and as L{renewal_end}.
    """
    check_current(booking, now)
    slot = Slot(booking.slot.start, renewal_end(booking, end, now, credential_expires, others, max_slot_length, extend_alap))
    expires = booking.allocation_expires
    if booking.allocation_state is AllocationState.ALLOCATED:
        expires = allocation_expiry(now, allocation_ttl, slot, credential_expires)
    elif booking.allocation_state is AllocationState.HELD:
        expires = min(expires, slot.end)
    return replace(booking, slot=slot, allocation_expires=expires, updated=now)


def provisioned(
    booking: Booking,
    now: float,
    *,
    users: Sequence[UserKeys] | None = None,
    controller: str | None = None,
    vlan_map: Mapping[str, str] | None = None,
    slot: Slot | None = None,
    credential_expires: float | None = None,
    max_slot_length: float = DEFAULT_MAX_SLOT_LENGTH,
) -> Booking:
    """
    Return the booking after a Provision at C{now}; conflicts are for the
    caller (the store) to check.

    An allocated booking is approved only for its own slot (C{slot} None or
    equal); its slot must end no later than the credential's expiry. An
    already provisioned booking is updated: new users, controller and VLAN
    map, and a new slot if given (once the slot has begun only its end may
    change). C{None} for C{users}, C{controller} or C{vlan_map} keeps the
    current value; C{[]}, C{""} and C{{}} clear it.

    @raise BookingError: SEARCHFAILED if the booking is not current; REFUSED
        for a different slot on first provision or a moved start of a
        started slot; OUTOFRANGE as L{check_slot_allowed}.
    """
    check_current(booking, now)
    if booking.allocation_state is AllocationState.HELD:
        raise NotPermitted(f"{booking.sliver_urn} is a hold; it becomes a sliver only when it is taken up")
    changes: dict[str, object] = {"updated": now}
    if users is not None:
        changes["users"] = tuple(users)
    if controller is not None:
        changes["controller"] = controller or None
    if vlan_map is not None:
        changes["vlan_map"] = dict(vlan_map)
    if booking.allocation_state is AllocationState.ALLOCATED:
        if slot is not None and slot != booking.slot:
            raise NotPermitted(
                f"sliver {booking.sliver_urn} was allocated for {booking.slot}; it can only be provisioned for that slot, not {slot}",
            )
        if credential_expires is not None and booking.slot.end > credential_expires:
            raise OutOfRange(
                f"the slot {booking.slot} ends after the slice credential expires ({format_time(credential_expires)}); renew the slice first",
            )
        changes.update(
            allocation_state=AllocationState.PROVISIONED,
            operational_state=OperationalState.NOTREADY,
            provisioned_at=now,
            error="",
        )
        return replace(booking, **changes)  # type: ignore[arg-type]
    if slot is not None and slot != booking.slot:
        if booking.slot.start <= now and slot.start != booking.slot.start:
            raise NotPermitted(
                f"the slot {booking.slot} has begun; only its end can change",
            )
        check_slot_allowed(slot, now, credential_expires, max_slot_length)
        changes["slot"] = slot
    return replace(booking, **changes)  # type: ignore[arg-type]


LAPSING_STATES = frozenset({AllocationState.HELD, AllocationState.ALLOCATED})
"""The states that lapse by themselves at C{allocation_expires}."""


def needs_expiry(booking: Booking, now: float) -> bool:
    """An allocation or hold whose expiry has passed."""
    return booking.allocation_state in LAPSING_STATES and booking.allocation_expires <= now


def needs_end(booking: Booking, now: float) -> bool:
    """A provisioned booking whose slot is over."""
    return booking.allocation_state is AllocationState.PROVISIONED and booking.slot.end <= now


STARTABLE_STATES = frozenset({OperationalState.NOTREADY, OperationalState.CONFIGURING, OperationalState.FAILED})
"""The operational states of a provisioned booking that the slot-start check (re)applies."""


def needs_start(booking: Booking, now: float) -> bool:
    """
    A provisioned booking whose slot is in progress and whose configuration
    is not (fully) applied: not started yet, interrupted while configuring,
    or failed. Ready and stopped bookings are left alone.
    """
    return (
        booking.allocation_state is AllocationState.PROVISIONED
        and booking.slot.contains(now)
        and booking.operational_state in STARTABLE_STATES
    )


def needs_cleanup(booking: Booking) -> bool:
    """A booking whose configuration is on the gateway though it is no longer live, or stopped."""
    return booking.applied and (not booking.live or booking.operational_state is OperationalState.STOPPED)


def due(bookings: Iterable[Booking], now: float) -> Due:
    """Sort the bookings that need an action at C{now} by action (see L{Due})."""
    items = list(bookings)
    return Due(
        expire=tuple(b for b in items if needs_expiry(b, now)),
        end=tuple(b for b in items if needs_end(b, now)),
        start=tuple(b for b in items if needs_start(b, now)),
        cleanup=tuple(b for b in items if needs_cleanup(b)),
    )


def next_boundary(bookings: Iterable[Booking], after: float) -> float | None:
    """
    The earliest moment later than C{after} at which a booking changes by
    itself (an allocation or hold lapses, a provisioned slot starts or ends), or None.
    """
    moments: list[float] = []
    for b in bookings:
        if b.allocation_state in LAPSING_STATES:
            moments.append(b.allocation_expires)
        elif b.allocation_state is AllocationState.PROVISIONED:
            moments.extend((b.slot.start, b.slot.end))
    later = [m for m in moments if m > after]
    return min(later) if later else None
