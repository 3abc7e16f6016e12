# -*- test-case-name: tests.booking.test_rules,tests.booking.test_lifecycle -*-
"""
The booking core's values: time slots, bookings and their states.

An island is booked whole and exclusively by time slot, and one booking is
one sliver. A booking may begin as a I{hold} (a promise of the slot that
keeps every other slice off it, not yet a sliver, lapsing on its own), or
at once I{allocated} (held for a short time, nothing configured); then
I{provisioned} (approved; its configuration is pushed to the gateway when
the slot begins), and finally I{ended}, I{deleted}, I{expired} or
I{released}. Held, allocated and provisioned bookings are I{live}; the live
bookings of an island never overlap.

Everything here is pure: no I/O, no clock. Time is float POSIX seconds,
passed in by the caller.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from geniam.booking.errors import InvalidBooking
from geniam.errors import GeniError
from geniam.timeutil import format_time
from geniam.urn import URN, parse_urn

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
    """
    Where a booking is in its lifecycle: C{held} (a promise of the slot,
    not yet a sliver), C{allocated}, C{provisioned}; then C{ended},
    C{deleted}, C{expired} (an allocation or hold not taken up in time) or
    C{released} (a hold given back).
    """

    HELD = "held"
    ALLOCATED = "allocated"
    PROVISIONED = "provisioned"
    ENDED = "ended"
    DELETED = "deleted"
    EXPIRED = "expired"
    RELEASED = "released"


LIVE_STATES = frozenset({AllocationState.HELD, AllocationState.ALLOCATED, AllocationState.PROVISIONED})
"""
The states that hold the island: bookings and holds in them never overlap,
but for one exception (L{may_share_slot}): a ticket's hold may overlap a
sliver of its own slice, the sliver the ticket updates.
"""

TICKET_HOLD = "ticket"
"""The C{held_by} of a ProtoGENI ticket's hold."""


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

    @raise InvalidBooking: unless both ends are finite numbers within
        L{MIN_TIME} and L{MAX_TIME} and C{start < end}.
    """

    start: float
    end: float

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise InvalidBooking(f"slot {name} must be a time, got {type(value).__name__}")
            if not math.isfinite(value) or not MIN_TIME <= value <= MAX_TIME:
                raise InvalidBooking(f"slot {name} {value!r} is out of range")
            object.__setattr__(self, name, float(value))
        if not self.start < self.end:
            raise InvalidBooking(
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
    @ivar allocation_expires: when an unprovisioned allocation, or a hold, lapses.
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
    @ivar held_by: while held, what holds the slot (C{ticket},
        C{transaction}); empty otherwise.
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
    held_by: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "allocation_state", AllocationState(self.allocation_state))
        object.__setattr__(self, "operational_state", OperationalState(self.operational_state))
        object.__setattr__(self, "vlan_map", dict(self.vlan_map))
        object.__setattr__(self, "users", tuple(self.users))

    __hash__ = None  # type: ignore[assignment]

    @property
    def live(self) -> bool:
        """True while the booking holds the island (held, allocated or provisioned)."""
        return self.allocation_state in LIVE_STATES

    @property
    def is_ticket_hold(self) -> bool:
        """True while it is the live hold of a ProtoGENI ticket."""
        return self.allocation_state is AllocationState.HELD and self.held_by == TICKET_HOLD

    @property
    def is_sliver(self) -> bool:
        """True unless it is (or was only ever) a hold: a hold is a promise, not yet a sliver."""
        return self.allocation_state not in (AllocationState.HELD, AllocationState.RELEASED) and not (
            self.allocation_state is AllocationState.EXPIRED and self.held_by
        )

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


@dataclass(frozen=True)
class Due:
    """The bookings that need an action at some moment, by action."""

    expire: tuple[Booking, ...] = ()
    """Allocations and holds that have lapsed: mark them expired."""
    end: tuple[Booking, ...] = ()
    """Provisioned bookings whose slot is over: remove their configuration, mark them ended."""
    start: tuple[Booking, ...] = ()
    """Provisioned bookings whose slot is in progress and not (fully) applied: apply them."""
    cleanup: tuple[Booking, ...] = ()
    """Bookings whose configuration is still on the gateway but should not be: remove it."""

    def __bool__(self) -> bool:
        return bool(self.expire or self.end or self.start or self.cleanup)


def urn_key(urn: str | URN) -> str:
    """
    Return the normalised form of a URN, given as text (C{urn} itself if it
    does not parse) or already parsed.
    """
    if isinstance(urn, URN):
        return urn.key
    try:
        return parse_urn(urn).key
    except GeniError:
        return urn


def make_sliver_urn(authority: str, name: str) -> str:
    """
    Return the sliver URN C{urn:publicid:IDN+<authority>+sliver+<name>}.

    @raise geniam.errors.GeniError: BADARGS if the result is not a valid sliver URN.
    """
    urn = f"urn:publicid:IDN+{authority}+sliver+{name}"
    parse_urn(urn, "sliver")
    return urn


def may_share_slot(one: Booking, other: Booking) -> bool:
    """
    True if two live bookings may overlap: a ticket's hold and a sliver
    (allocated or provisioned) of the same slice, so that a ticket for an
    update may promise a slot that overlaps the sliver it will replace.
    Every other pair of live bookings of an island is kept apart.
    """
    if urn_key(one.slice_urn) != urn_key(other.slice_urn):
        return False
    live_sliver = frozenset({AllocationState.ALLOCATED, AllocationState.PROVISIONED})
    return (one.is_ticket_hold and other.allocation_state in live_sliver) or (
        other.is_ticket_hold and one.allocation_state in live_sliver
    )
