# -*- test-case-name: tests.test_booking -*-
"""
The booking core: time slots, the lifecycle of a booking, and its rules.

An island is booked whole and exclusively by time slot, and one booking is
one sliver. A booking is I{allocated} (held for a short time, nothing
configured), then I{provisioned} (approved; its configuration is pushed to
the gateway when the slot begins), and finally I{ended} (its slot is over),
I{deleted} (by its owner) or I{expired} (allocated but never provisioned in
time). Only allocated and provisioned bookings are I{live}; the live
bookings of an island never overlap.

Everything here is pure: no I/O, no clock. Time is float POSIX seconds,
passed in by the caller.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

from geniam.errors import GeniCode, GeniError
from geniam.gatewayconfig import (
    MAX_KEYS_PER_USER,
    MAX_USERS,
    ControllerPolicy,
    canonical_controller,
    login_for,
    validate_ssh_keys,
)
from geniam.timeutil import format_time
from geniam.urn import parse_urn

MIN_TIME = 0.0
"""The earliest time a slot may start (the POSIX epoch)."""

MAX_TIME = 253402300799.0
"""The latest time a slot may end (9999-12-31T23:59:59Z)."""

DEFAULT_ALLOCATION_TTL = 48 * 3600.0
"""How long an allocation is held unprovisioned, by default (48 hours)."""

DEFAULT_MAX_SLOT_LENGTH = 7 * 24 * 3600.0
"""The longest slot one booking may hold, by default (7 days)."""

MAX_EMAIL_LENGTH = 254


class AllocationState(StrEnum):
    """Where a booking is in its lifecycle."""

    ALLOCATED = "allocated"
    PROVISIONED = "provisioned"
    ENDED = "ended"
    DELETED = "deleted"
    EXPIRED = "expired"


LIVE_STATES = frozenset({AllocationState.ALLOCATED, AllocationState.PROVISIONED})
"""The states that hold the island: bookings in them never overlap."""


class OperationalState(StrEnum):
    """
    What the island is doing for a booking.

    C{notready}: nothing applied (the slot has not begun, or has ended);
    C{configuring}: being applied to the gateway; C{ready}: applied;
    C{failed}: the gateway refused or was unreachable (retried while the
    slot lasts); C{stopped}: stopped by its owner or a slice shutdown, and
    not started automatically.
    """

    NOTREADY = "notready"
    CONFIGURING = "configuring"
    READY = "ready"
    FAILED = "failed"
    STOPPED = "stopped"


@dataclass(frozen=True)
class Slot:
    """
    A half-open time interval C{[start, end)} in POSIX seconds.

    Back-to-back slots (one's end is the other's start) do not overlap.

    @raise GeniError: BADARGS unless both ends are finite numbers within
        L{MIN_TIME} and L{MAX_TIME} and C{start < end}.
    """

    start: float
    end: float

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise GeniError(GeniCode.BADARGS, f"slot {name} must be a time, got {type(value).__name__}")
            if not math.isfinite(value) or not MIN_TIME <= value <= MAX_TIME:
                raise GeniError(GeniCode.BADARGS, f"slot {name} {value!r} is out of range")
            object.__setattr__(self, name, float(value))
        if not self.start < self.end:
            raise GeniError(
                GeniCode.BADARGS,
                f"slot must end after it starts (start {format_time(self.start)}, end {format_time(self.end)})",
            )

    @property
    def duration(self) -> float:
        """The slot's length in seconds."""
        return self.end - self.start

    def overlaps(self, other: Slot) -> bool:
        """True if the two slots share any instant (touching ends do not)."""
        return self.start < other.end and other.start < self.end

    def contains(self, moment: float) -> bool:
        """True if C{moment} lies within C{[start, end)}."""
        return self.start <= moment < self.end

    def __str__(self) -> str:
        return f"{format_time(self.start)} to {format_time(self.end)}"


@dataclass(frozen=True)
class UserKeys:
    """The SSH public keys of one user (a C{geni_users} entry)."""

    urn: str
    keys: tuple[str, ...]


@dataclass(frozen=True)
class Booking:
    """
    One booking of the whole island for one slot: one sliver.

    Instances are immutable snapshots; change one with L{dataclasses.replace}
    and hand it to the store, which checks C{version}.

    @ivar sliver_urn: the AM-issued sliver URN, unique over time.
    @ivar slice_urn: the slice the booking belongs to.
    @ivar owner_urn: the user who allocated it.
    @ivar owner_email: that user's e-mail address (may be empty).
    @ivar slot: the booked time slot.
    @ivar allocation_state: the lifecycle state.
    @ivar allocation_expires: when an unprovisioned allocation lapses.
    @ivar operational_state: what the island is doing for it.
    @ivar error: the last gateway error (empty if none).
    @ivar users: the users whose SSH keys are installed during the slot.
    @ivar controller: the user's OpenFlow controller C{host:port}, or None.
    @ivar vlan_map: C{{testbed VLAN: island VLAN}} as decimal strings
        (C{0xffff} for untagged).
    @ivar applied: whether any of its configuration may be on the gateway
        now (set before the configuration is pushed, cleared once it is
        removed).
    @ivar created: when it was allocated.
    @ivar updated: when it last changed.
    @ivar provisioned_at: when it was first provisioned, or None.
    @ivar version: the store's change counter (0 before it is stored).
    """

    sliver_urn: str
    slice_urn: str
    owner_urn: str
    owner_email: str
    slot: Slot
    allocation_state: AllocationState
    allocation_expires: float
    operational_state: OperationalState = OperationalState.NOTREADY
    error: str = ""
    users: tuple[UserKeys, ...] = ()
    controller: str | None = None
    vlan_map: Mapping[str, str] = field(default_factory=dict)
    applied: bool = False
    created: float = 0.0
    updated: float = 0.0
    provisioned_at: float | None = None
    version: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "allocation_state", AllocationState(self.allocation_state))
        object.__setattr__(self, "operational_state", OperationalState(self.operational_state))
        object.__setattr__(self, "vlan_map", dict(self.vlan_map))
        object.__setattr__(self, "users", tuple(self.users))

    __hash__ = None  # type: ignore[assignment]

    @property
    def live(self) -> bool:
        """True while the booking holds the island (allocated or provisioned)."""
        return self.allocation_state in LIVE_STATES

    @property
    def ssh_keys(self) -> tuple[str, ...]:
        """Every user's keys, duplicates dropped, in order."""
        return tuple(dict.fromkeys(key for user in self.users for key in user.keys))

    @property
    def slice_key(self) -> str:
        """The slice URN normalised for comparison and indexing."""
        return urn_key(self.slice_urn)

    @property
    def sliver_key(self) -> str:
        """The sliver URN normalised for comparison and indexing."""
        return urn_key(self.sliver_urn)


class BookingConflict(GeniError):
    """
    The requested slot overlaps a live booking of the island.

    The message names the conflicting time window, never the slice holding it.

    @ivar window: the slot of the conflicting booking.
    """

    def __init__(self, window: Slot) -> None:
        super().__init__(GeniCode.UNAVAILABLE, f"the island is already booked from {window}")
        self.window = window


@dataclass(frozen=True)
class Due:
    """The bookings that need an action at some moment, by action."""

    expire: tuple[Booking, ...] = ()
    """Allocated bookings whose allocation has lapsed: mark them expired."""
    end: tuple[Booking, ...] = ()
    """Provisioned bookings whose slot is over: remove their configuration, mark them ended."""
    start: tuple[Booking, ...] = ()
    """Provisioned bookings whose slot is in progress and not (fully) applied: apply them."""
    cleanup: tuple[Booking, ...] = ()
    """Bookings whose configuration is still on the gateway but should not be: remove it."""

    def __bool__(self) -> bool:
        return bool(self.expire or self.end or self.start or self.cleanup)


def urn_key(urn: str) -> str:
    """Return the normalised form of a URN (C{urn} itself if it does not parse)."""
    try:
        return parse_urn(urn).key
    except GeniError:
        return urn


def make_sliver_urn(authority: str, name: str) -> str:
    """
    Return the sliver URN C{urn:publicid:IDN+<authority>+sliver+<name>}.

    @raise GeniError: BADARGS if the result is not a valid sliver URN.
    """
    urn = f"urn:publicid:IDN+{authority}+sliver+{name}"
    parse_urn(urn, "sliver")
    return urn


def parse_users(value: object) -> tuple[UserKeys, ...]:
    """
    Validate C{geni_users}: a list of C{{"urn": user URN, "keys": [key, ...]}}.

    Entries for the same user are merged; keys are validated by
    L{geniam.gatewayconfig.validate_ssh_keys}. At most
    L{geniam.gatewayconfig.MAX_USERS} users with at most
    L{geniam.gatewayconfig.MAX_KEYS_PER_USER} keys each; a user whose login
    would be refused (C{root}, or starting with C{-}) is refused.

    @raise GeniError: BADARGS on anything malformed, naming the limit broken.
    """
    if not isinstance(value, (list, tuple)):
        raise GeniError(GeniCode.BADARGS, "users must be a list of {urn, keys} structs")
    if len(value) > MAX_USERS:
        raise GeniError(GeniCode.BADARGS, f"{len(value)} users; the limit is {MAX_USERS}")
    merged: dict[str, tuple[str, tuple[str, ...]]] = {}
    for entry in value:
        if not isinstance(entry, Mapping) or "urn" not in entry:
            raise GeniError(GeniCode.BADARGS, "each user must be a struct with 'urn' and 'keys'")
        urn = parse_urn(entry["urn"], "user")
        login_for(urn.name)
        keys = validate_ssh_keys(entry.get("keys", []), MAX_KEYS_PER_USER, f"SSH keys for {urn}")
        spelling = str(entry["urn"])
        previous = merged.get(urn.key)
        if previous is not None:
            spelling, keys = previous[0], tuple(dict.fromkeys(previous[1] + keys))
            if len(keys) > MAX_KEYS_PER_USER:
                raise GeniError(GeniCode.BADARGS, f"{len(keys)} SSH keys for {urn}; the limit is {MAX_KEYS_PER_USER}")
        merged[urn.key] = (spelling, keys)
    return tuple(UserKeys(urn, keys) for urn, keys in merged.values())


def validate_email(value: object) -> str:
    """
    Check an owner e-mail address loosely: a short printable string, possibly empty.

    @raise GeniError: BADARGS otherwise.
    """
    if not isinstance(value, str) or len(value) > MAX_EMAIL_LENGTH or any(c.isspace() or not c.isprintable() for c in value):
        raise GeniError(GeniCode.BADARGS, "owner e-mail must be a printable string without spaces")
    return value


def validate_controller(value: object, policy: ControllerPolicy | None = None) -> str | None:
    """
    Return a controller's canonical C{host:port}, or None for None or C{""}.

    @param policy: where controllers may be; without one only the syntax is checked.
    @raise GeniError: BADARGS if malformed, REFUSED if C{policy} forbids it.
    """
    if value is None or value == "":
        return None
    if policy is not None:
        return policy.check(value)
    return canonical_controller(value)


def merge_users(existing: Sequence[UserKeys], updates: Sequence[UserKeys]) -> tuple[UserKeys, ...]:
    """
    Apply C{geni_update_users}: listed users get exactly the listed keys,
    new users are added, unlisted users are kept.

    @raise GeniError: BADARGS if the result has more than
        L{geniam.gatewayconfig.MAX_USERS} users.
    """
    result = {urn_key(user.urn): user for user in existing}
    for user in updates:
        result[urn_key(user.urn)] = user
    if len(result) > MAX_USERS:
        raise GeniError(GeniCode.BADARGS, f"{len(result)} users after the update; the limit is {MAX_USERS}")
    return tuple(result.values())


def allocation_expiry(now: float, ttl: float, slot: Slot, credential_expires: float | None) -> float:
    """
    When a new or renewed allocation lapses: the earliest of C{now + ttl},
    the slice credential's expiry and the slot's end.
    """
    limit = min(now + ttl, slot.end)
    return limit if credential_expires is None else min(limit, credential_expires)


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

    @raise GeniError: OUTOFRANGE if the slot is already over, longer than
        C{max_slot_length}, or ends after the slice credential expires.
    """
    if slot.end <= now:
        raise GeniError(GeniCode.OUTOFRANGE, f"the slot {slot} is already over")
    if slot.duration > max_slot_length:
        raise GeniError(GeniCode.OUTOFRANGE, f"the slot {slot} is longer than the maximum of {max_slot_length:g} seconds")
    if credential_expires is not None and slot.end > credential_expires:
        raise GeniError(
            GeniCode.OUTOFRANGE,
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
    True if the booking is live and not overdue: an allocation before its
    expiry, or a provisioned booking before its slot's end.
    """
    if booking.allocation_state is AllocationState.ALLOCATED:
        return booking.allocation_expires > now
    if booking.allocation_state is AllocationState.PROVISIONED:
        return booking.slot.end > now
    return False


def check_current(booking: Booking, now: float) -> None:
    """
    @raise GeniError: SEARCHFAILED unless L{is_current}, naming what became of the booking.
    """
    if is_current(booking, now):
        return
    if booking.live:
        what = "has expired" if booking.allocation_state is AllocationState.ALLOCATED else "has ended"
    else:
        what = {
            AllocationState.ENDED: "has ended",
            AllocationState.DELETED: "has been deleted",
            AllocationState.EXPIRED: "has expired",
        }[booking.allocation_state]
    raise GeniError(GeniCode.SEARCHFAILED, f"sliver {booking.sliver_urn} {what}")


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
    @raise GeniError: OUTOFRANGE for a time not granted; L{BookingConflict}
        (UNAVAILABLE) if the slot is taken.
    """
    start = booking.slot.start
    if isinstance(end, bool) or not isinstance(end, (int, float)) or not math.isfinite(end):
        raise GeniError(GeniCode.BADARGS, "expiration time must be a time")
    others = [o for o in others if o.live and o.sliver_key != booking.sliver_key]
    if not extend_alap:
        if end <= start:
            raise GeniError(GeniCode.OUTOFRANGE, f"cannot renew to {format_time(end)}: the slot starts at {format_time(start)}")
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
        raise GeniError(GeniCode.OUTOFRANGE, f"cannot renew sliver {booking.sliver_urn}: no later end is allowed")
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

    @raise GeniError: SEARCHFAILED if the booking is not current
        (L{check_current}), and as L{renewal_end}.
    """
    check_current(booking, now)
    slot = Slot(booking.slot.start, renewal_end(booking, end, now, credential_expires, others, max_slot_length, extend_alap))
    expires = booking.allocation_expires
    if booking.allocation_state is AllocationState.ALLOCATED:
        expires = allocation_expiry(now, allocation_ttl, slot, credential_expires)
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

    @raise GeniError: SEARCHFAILED if the booking is not current; REFUSED
        for a different slot on first provision or a moved start of a
        started slot; OUTOFRANGE as L{check_slot_allowed}.
    """
    check_current(booking, now)
    changes: dict[str, object] = {"updated": now}
    if users is not None:
        changes["users"] = tuple(users)
    if controller is not None:
        changes["controller"] = controller or None
    if vlan_map is not None:
        changes["vlan_map"] = dict(vlan_map)
    if booking.allocation_state is AllocationState.ALLOCATED:
        if slot is not None and slot != booking.slot:
            raise GeniError(
                GeniCode.REFUSED,
                f"sliver {booking.sliver_urn} was allocated for {booking.slot}; it can only be provisioned for that slot, not {slot}",
            )
        if credential_expires is not None and booking.slot.end > credential_expires:
            raise GeniError(
                GeniCode.OUTOFRANGE,
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
            raise GeniError(
                GeniCode.REFUSED,
                f"the slot {booking.slot} has begun; only its end can change",
            )
        check_slot_allowed(slot, now, credential_expires, max_slot_length)
        changes["slot"] = slot
    return replace(booking, **changes)  # type: ignore[arg-type]


def needs_expiry(booking: Booking, now: float) -> bool:
    """An allocation whose expiry has passed."""
    return booking.allocation_state is AllocationState.ALLOCATED and booking.allocation_expires <= now


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
    itself (an allocation lapses, a provisioned slot starts or ends), or None.
    """
    moments: list[float] = []
    for b in bookings:
        if b.allocation_state is AllocationState.ALLOCATED:
            moments.append(b.allocation_expires)
        elif b.allocation_state is AllocationState.PROVISIONED:
            moments.extend((b.slot.start, b.slot.end))
    later = [m for m in moments if m > after]
    return min(later) if later else None
