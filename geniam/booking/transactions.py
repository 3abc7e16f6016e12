# -*- test-case-name: tests.managers.test_transactions -*-
"""
Transactions on a slice's bookings (the PG-A change set) as pure values
and plans.

A slice on an island is I{uninitialised} (no live booking), I{allocated}
(it holds bookings) or in a I{transaction}. A transaction names the slice's
whole I{desired state} (its slots with their controller, VLAN map and
users); the slots it needs that the slice does not book yet are I{holds}
(L{geniam.booking.lifecycle.new_hold}, C{held_by} L{TRANSACTION_HOLD}),
which keep every other slice off them and lapse by themselves at
C{commit_by}. Nothing else changes until the commit, which turns the holds
into allocations, applies new parameters to the bookings it keeps and
deletes those no longer named, all at once. An abort gives the holds back.

Everything here is pure: the manager reads the bookings, asks L{plan} or
L{commit_changes} what to write, and the store writes it in one
transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

from geniam.booking.errors import NotPermitted
from geniam.booking.lifecycle import Event, step
from geniam.booking.rules import check_current
from geniam.booking.values import AllocationState, Booking, Slot, UserKeys, urn_key

TRANSACTION_HOLD = "transaction"
"""The C{held_by} of a transaction's holds."""


class SliceState(StrEnum):
    """Where a slice is on an island, as the PG-A change set names it."""

    UNINITIALISED = "uninitialised"
    ALLOCATED = "allocated"
    TRANSACTION = "transaction"


@dataclass(frozen=True)
class DesiredSlot:
    """One slot of a desired state, with what the booking of it should carry."""

    slot: Slot
    controller: str | None = None
    vlan_map: Mapping[str, str] = field(default_factory=dict)
    users: tuple[UserKeys, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "vlan_map", dict(self.vlan_map))
        object.__setattr__(self, "users", tuple(self.users))

    __hash__ = None  # type: ignore[assignment]

    def matches(self, booking: Booking) -> bool:
        """True if C{booking} already carries exactly this slot and these parameters."""
        return (
            booking.slot == self.slot
            and booking.controller == self.controller
            and dict(booking.vlan_map) == dict(self.vlan_map)
            and (not self.users or tuple(booking.users) == self.users)
        )

    def applied_to(self, booking: Booking, now: float) -> Booking:
        """C{booking} carrying this slot's parameters (users only if the desired state names some)."""
        return replace(
            booking,
            controller=self.controller,
            vlan_map=dict(self.vlan_map),
            users=self.users or booking.users,
            updated=now,
        )


@dataclass(frozen=True)
class Transaction:
    """
    An open transaction of one slice on one island, as the store keeps it.

    @ivar slice_urn: the slice.
    @ivar owner_urn: the user who began it (owner of the bookings it makes).
    @ivar owner_email: that user's e-mail address.
    @ivar desired: the desired state after commit.
    @ivar holds: the sliver URNs of the holds made for it.
    @ivar commit_by: when it is aborted unless committed.
    @ivar began: when it began.
    @ivar request: the request RSpec of the last Begin or Update.
    @ivar credential_expires: the slice credential's expiry, or None.
    @ivar version: the store's change counter (0 before it is stored).
    @ivar transaction_id: the identifier Begin answers (C{geniam_transaction});
        empty for a transaction opened before identifiers were kept.
    """

    slice_urn: str
    owner_urn: str
    owner_email: str
    desired: tuple[DesiredSlot, ...]
    holds: tuple[str, ...]
    commit_by: float
    began: float
    request: str = ""
    credential_expires: float | None = None
    version: int = 0
    transaction_id: str = ""

    __hash__ = None  # type: ignore[assignment]

    @property
    def slice_key(self) -> str:
        """The slice URN normalised for comparison and indexing."""
        return urn_key(self.slice_urn)


class Outcome(StrEnum):
    """How a transaction ended."""

    COMMITTED = "committed"
    ABORTED = "aborted"


@dataclass(frozen=True)
class TransactionOutcome:
    """
    How a finished transaction ended, kept for a while so that a Commit
    retried with its identifier can be answered (again, or as aborted).

    @ivar transaction_id: the transaction's identifier.
    @ivar slice_urn: its slice.
    @ivar outcome: committed or aborted.
    @ivar closed: when it ended.
    @ivar commit_by: its C{commit_by} then.
    @ivar reason: why it ended (for an abort: by whom or at what).
    @ivar request: the request RSpec of its last Begin or Update.
    @ivar slivers: for a commit, the slice's live slivers right after it.
    @ivar keep_until: when the record may be forgotten.
    """

    transaction_id: str
    slice_urn: str
    outcome: Outcome
    closed: float
    commit_by: float
    reason: str
    request: str = ""
    slivers: tuple[str, ...] = ()
    keep_until: float = 0.0

    __hash__ = None  # type: ignore[assignment]


def outcome_of(
    transaction: Transaction, outcome: Outcome, now: float, reason: str, retention: float, slivers: Sequence[str] = ()
) -> TransactionOutcome:
    """The record of C{transaction} ending now, kept until C{retention} seconds past its C{commit_by} (or now, if later)."""
    return TransactionOutcome(
        transaction.transaction_id,
        transaction.slice_urn,
        outcome,
        now,
        transaction.commit_by,
        reason,
        transaction.request,
        tuple(slivers),
        max(now, transaction.commit_by) + retention,
    )


@dataclass(frozen=True)
class Plan:
    """
    What a Begin or Update writes: the holds to make, the holds to change
    (kept, with new parameters or expiry), the holds to give back, and the
    slice's bookings kept by the desired state (sliver key to desired slot).
    """

    new: tuple[DesiredSlot, ...]
    changed: tuple[Booking, ...]
    released: tuple[Booking, ...]
    kept: Mapping[str, DesiredSlot]


def running(booking: Booking, now: float) -> bool:
    """True if the booking's slot runs (or its configuration may be on the gateway): a transaction must leave it alone."""
    return booking.allocation_state is AllocationState.PROVISIONED and (booking.slot.start <= now or booking.applied)


def is_transaction_hold(booking: Booking) -> bool:
    """True for a live hold made by a transaction."""
    return booking.allocation_state is AllocationState.HELD and booking.held_by == TRANSACTION_HOLD


def check_desired(desired: Sequence[DesiredSlot]) -> None:
    """
    @raise NotPermitted: if two desired slots overlap.
    """
    for index, one in enumerate(desired):
        for other in desired[index + 1 :]:
            if one.slot.overlaps(other.slot):
                raise NotPermitted(f"the desired state names overlapping slots {one.slot} and {other.slot}")


def commit_deadline(
    desired: Sequence[DesiredSlot],
    slivers: Sequence[Booking],
    now: float,
    ttl: float,
    credential_expires: float | None,
) -> float:
    """
    The C{commit_by} of a Begin or Update at C{now} towards C{desired}, for
    a slice whose live slivers are C{slivers}: C{ttl} seconds on, but never
    after the slice credential expires, a desired slot ends, or an
    allocation the desired state keeps lapses (it would be gone, and its
    slot free to other slices, before the commit).

    @raise NotCurrent: if an allocation the desired state keeps has lapsed
        already (the periodic check has not marked it yet).
    """
    deadline = now + ttl
    if credential_expires is not None:
        deadline = min(deadline, credential_expires)
    for wanted in desired:
        deadline = min(deadline, wanted.slot.end)
    slots = {wanted.slot for wanted in desired}
    for sliver in slivers:
        if sliver.slot in slots:
            check_current(sliver, now)
            if sliver.allocation_state is AllocationState.ALLOCATED:
                deadline = min(deadline, sliver.allocation_expires)
    return deadline


def plan(
    desired: Sequence[DesiredSlot],
    slivers: Sequence[Booking],
    holds: Sequence[Booking],
    now: float,
    commit_by: float,
) -> Plan:
    """
    Plan a Begin or Update of the slice whose live slivers are C{slivers}
    (allocated or provisioned bookings) and whose transaction holds
    C{holds} (none at Begin), so that the commit would give exactly
    C{desired}.

    A desired slot equal to a sliver's slot keeps that sliver (with the
    desired parameters at commit); one equal to a hold's slot keeps the
    hold; any other needs a new hold. Slivers not named are deleted at
    commit.

    @raise NotPermitted: if a sliver whose slot runs would be removed or
        changed, or a new slot overlaps a sliver of the slice that is not
        kept (delete it first, or keep its slot).
    """
    check_desired(desired)
    kept: dict[str, DesiredSlot] = {}
    reused: dict[str, DesiredSlot] = {}
    new: list[DesiredSlot] = []
    for wanted in desired:
        sliver = next((b for b in slivers if b.slot == wanted.slot), None)
        if sliver is not None:
            if running(sliver, now) and not wanted.matches(sliver):
                raise NotPermitted(f"sliver {sliver.sliver_urn} runs: a transaction cannot change it")
            kept[sliver.sliver_key] = wanted
            continue
        hold = next((h for h in holds if h.slot == wanted.slot and h.sliver_key not in reused), None)
        if hold is not None:
            reused[hold.sliver_key] = wanted
            continue
        new.append(wanted)
    for sliver in slivers:
        if sliver.sliver_key in kept:
            continue
        if running(sliver, now):
            raise NotPermitted(f"sliver {sliver.sliver_urn} runs: a transaction cannot remove it")
        for wanted in new:
            if wanted.slot.overlaps(sliver.slot):
                raise NotPermitted(
                    f"the desired slot {wanted.slot} overlaps sliver {sliver.sliver_urn} ({sliver.slot}):"
                    " delete it first, or keep its slot"
                )
    changed = tuple(
        replace(reused[h.sliver_key].applied_to(h, now), allocation_expires=commit_by) for h in holds if h.sliver_key in reused
    )
    released = tuple(step(h, Event.RELEASE, now) for h in holds if h.sliver_key not in reused)
    return Plan(tuple(new), changed, released, kept)


def commit_changes(
    transaction: Transaction,
    slivers: Sequence[Booking],
    holds: Sequence[Booking],
    now: float,
    allocation_ttl: float,
) -> list[Booking]:
    """
    The bookings a commit writes: every hold taken up (an allocation with
    its desired parameters), every kept sliver with new parameters, every
    sliver not named deleted.

    @raise NotCurrent: if a hold lapsed.
    @raise NotPermitted: if a sliver to change or delete now runs.
    """
    by_slot = {d.slot: d for d in transaction.desired}
    changes: list[Booking] = []
    for hold in holds:
        taken = step(hold, Event.TAKE_UP, now, allocation_ttl=allocation_ttl, credential_expires=transaction.credential_expires)
        wanted = by_slot.get(hold.slot)
        changes.append(wanted.applied_to(taken, now) if wanted is not None else taken)
    for sliver in slivers:
        named = by_slot.get(sliver.slot)
        if named is None:
            if running(sliver, now):
                raise NotPermitted(f"sliver {sliver.sliver_urn} runs now: the transaction cannot remove it")
            changes.append(step(sliver, Event.DELETE, now))
        elif not named.matches(sliver):
            if running(sliver, now):
                raise NotPermitted(f"sliver {sliver.sliver_urn} runs now: the transaction cannot change it")
            changes.append(named.applied_to(sliver, now))
    return changes


def abort_changes(holds: Sequence[Booking], now: float) -> list[Booking]:
    """The holds an abort gives back (those still held; a lapsed one is gone already)."""
    return [step(h, Event.RELEASE, now) for h in holds if h.allocation_state is AllocationState.HELD]
