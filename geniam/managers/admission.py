# -*- test-case-name: tests.loopback.test_operators,tests.managers.test_policy -*-
"""
Who may take the island, and the operator's hand on it: the booking policy
in force, the maintenance windows nobody can book, and cancelling a booking.

L{IslandAdmission} is the part of
L{geniam.managers.island.IslandResourceManager} that the operators' API
(L{geniam.managers.operators}) drives and that every way of taking the
island (Allocate, Renew, Provision, tickets, transactions) asks first.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterable
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, DeferredLock
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from geniam.booking.lifecycle import Event, Removal, step
from geniam.booking.maintenance import MaintenanceWindow, check_maintenance
from geniam.booking.rules import check_current
from geniam.booking.values import MAX_TIME, MIN_TIME, Booking, Slot, urn_key
from geniam.errors import GeniError
from geniam.managers.arguments import check_slot
from geniam.managers.policy import BookingPolicy, check_policy
from geniam.urn import parse_urn

if TYPE_CHECKING:
    from geniam.interfaces import IStore
    from geniam.managers.bookingchanges import BookingChanges
    from geniam.managers.gatewaysync import GatewaySync
    from geniam.managers.scheduler import Scheduler


class IslandAdmission:
    """Booking policy, maintenance windows and cancellation (see the module docstring); mixed into the island resource manager."""

    log: Logger
    max_slot_length: float
    _store: "IStore"
    _clock: IReactorTime
    _lock: DeferredLock
    _changes: "BookingChanges"
    _sync: "GatewaySync"
    _scheduler: "Scheduler"
    _booking_policy: BookingPolicy | None = None
    # Provided by the island resource manager:
    _track: Callable[[Coroutine[Any, Any, Any]], Deferred[Any]]

    @property
    def booking_policy(self) -> BookingPolicy:
        """The booking policy in force (by default only the longest slot, C{max_slot_length})."""
        return self._booking_policy or BookingPolicy(max_slot_length=self.max_slot_length)

    def set_booking_policy(self, policy: BookingPolicy) -> None:
        """Enforce C{policy} from the next request on (its longest slot also bounds renewals)."""
        self._booking_policy = policy
        self.max_slot_length = policy.max_slot_length

    def check_admission(self, slot: Slot, owner_urn: str, slice_urn: str, exclude: Iterable[str] = ()) -> Deferred[None]:
        """
        Refuse a slot that a maintenance window closes (UNAVAILABLE) or the
        booking policy does not allow (REFUSED); every way of taking the
        island calls it. C{exclude}: sliver keys not counted (a booking being extended).
        """
        return self._track(self._check_admission(check_slot(slot), owner_urn, slice_urn, frozenset(exclude)))

    async def _check_admission(self, slot: Slot, owner_urn: str, slice_urn: str, exclude: frozenset[str]) -> None:
        check_maintenance(slot, await self._store.list_maintenance(slot))
        policy = self.booking_policy
        reach = policy.quota_window if policy.user_quota or policy.slice_quota else 0.0
        near = Slot(max(MIN_TIME, slot.start - reach), min(MAX_TIME, slot.end + reach)) if reach else slot
        others = [b for b in await self._store.list_live(near) if b.sliver_key not in exclude] if reach else []
        owner, slice_key = urn_key(owner_urn), urn_key(slice_urn)
        check_policy(
            policy,
            slot,
            self._clock.seconds(),
            [b.slot for b in others if urn_key(b.owner_urn) == owner],
            [b.slot for b in others if b.slice_key == slice_key],
        )

    def maintenance_windows(self, window: Slot) -> Deferred[list[MaintenanceWindow]]:
        """Fire with the maintenance windows overlapping C{window}, by start."""
        return self._track(self._store.list_maintenance(check_slot(window, "window")))

    def cancel(self, sliver_urn: str, reason: str) -> Deferred[Booking]:
        """
        End a live booking now for an operator: if its configuration may be
        on the gateway the gateway is reset at once; the booking is deleted
        with C{reason} in its error text, which its owner sees.
        """
        return self._track(self._cancel(sliver_urn, reason))

    async def _cancel(self, urn: str, reason: str) -> Booking:
        parse_urn(urn, "sliver")
        note = f"cancelled by the operator: {reason}"
        async with self._lock:
            booking = await self._changes.get(urn)
            check_current(booking, self._clock.seconds())
            removal = Removal()
            if booking.applied:
                try:
                    await self._sync.call("reset")
                    self._sync.backoff.forget(booking.sliver_key)
                except GeniError as e:
                    self._sync.backoff.note_failure(booking.sliver_key)
                    removal = Removal(True, f"gateway: could not remove the configuration: {e.output}")
            error = note + (f"; {removal.error}" if removal.error else "")

            def cancelled(cur: Booking, now: float) -> Booking | None:
                if not cur.live:
                    return None
                return step(cur, Event.DELETE, now, removal=Removal(removal.still_applied, error))

            new = await self._changes.change_one(urn, cancelled)
        self.log.warn("{sliver} cancelled by the operator: {reason}", sliver=urn, reason=reason)
        self._scheduler.changed()
        return new
