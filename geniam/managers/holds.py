# -*- test-case-name: tests.managers.test_tickets,tests.managers.test_tickets_properties,tests.managers.test_holds -*-
"""
Holds on the island: promises of a slot that keep every other slice off it,
are not yet slivers and lapse on their own (a ProtoGENI ticket is one, and
so is each slot an open PG-A transaction desires).

L{IslandHolds} is the part of L{geniam.managers.island.IslandResourceManager}
that makes, gives back and takes up holds, and writes open transactions
with their holds; it works on the manager's store,
lock, gateway synchronisation and scheduler.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import replace
from typing import Any

from twisted.internet.defer import Deferred

from geniam.booking.lifecycle import Event, Removal, new_hold, step
from geniam.booking.rules import check_current, provisioned
from geniam.booking.transactions import Transaction, TransactionOutcome, is_transaction_hold
from geniam.booking.values import Booking, Slot, UserKeys, make_sliver_urn
from geniam.errors import GeniCode, GeniError
from geniam.gatewayconfig import ControllerPolicy
from geniam.managers.admission import IslandAdmission
from geniam.managers.arguments import check_slot, check_time, validate_controller, validate_email
from geniam.managers.inflight import tracked
from geniam.urn import parse_urn


class IslandHolds(IslandAdmission):
    """
    Holds on the island (see the module docstring); mixed into the island
    resource manager. Holds are admitted as bookings are, so this builds on
    L{IslandAdmission} and shares the island attributes it declares.
    """

    authority: str
    allocation_ttl: float
    controller_policy: ControllerPolicy
    _sliver_names: Callable[[], str]

    # Provided by the island resource manager:
    _background: Callable[[Coroutine[Any, Any, Any], str], None]
    _refuse_shut_down: Callable[[Sequence[Booking]], Awaitable[None]]

    def booking_or_hold(self, sliver_urn: str) -> Deferred[Booking]:
        """Fire with the booking of a sliver or hold URN, live or not (SEARCHFAILED if there is none)."""
        return self._track(self._changes.get(sliver_urn))

    @tracked
    async def slice_holdings(self, slice_urn: str, live_only: bool = True) -> list[Booking]:
        """Fire with the slice's bookings by slot start, its holds included."""
        return list(await self._store.list_by_slice(parse_urn(slice_urn, "slice"), live_only))

    @tracked
    async def hold(
        self,
        slice_urn: str,
        owner_urn: str,
        owner_email: str,
        slot: Slot,
        credential_expires: float | None,
        expires: float,
        held_by: str,
        controller: str | None = None,
        vlan_map: Mapping[str, str] | None = None,
        replacing: str | None = None,
    ) -> Booking:
        """
        Hold C{slot} for the slice until C{expires} (never after the slot's
        end or C{credential_expires}): no other booking or hold may overlap
        it (but a ticket's hold may overlap its own slice's sliver), and it
        lapses at its expiry unless taken up. Fire with the hold.
        C{replacing}: the sliver key of a booking the hold will replace,
        not counted by the booking policy.
        """
        parse_urn(slice_urn, "slice")
        parse_urn(owner_urn, "user")
        replaced = frozenset([replacing] if replacing is not None else [])
        await self._check_admission(check_slot(slot), owner_urn, slice_urn, replaced)  # maintenance and policy
        booking = new_hold(
            sliver_urn=make_sliver_urn(self.authority, self._sliver_names()),
            slice_urn=slice_urn,
            owner_urn=owner_urn,
            owner_email=validate_email(owner_email),
            slot=check_slot(slot),
            now=self._clock.seconds(),
            expires=float(expires),
            held_by=held_by,
            credential_expires=check_time(credential_expires, "credential expiry"),
            max_slot_length=self.max_slot_length,
        )
        booking = replace(
            booking,
            controller=validate_controller(controller, self.controller_policy),
            vlan_map=dict(vlan_map) if vlan_map else {},
        )
        if await self._store.is_shutdown(slice_urn):
            raise GeniError(GeniCode.REFUSED, f"slice {slice_urn} has been shut down")
        stored = await self._store.insert(booking)
        self._changes.notify()
        self.log.info("held {slot} for {slice} ({held_by})", slot=str(stored.slot), slice=slice_urn, held_by=held_by)
        self._background(self._scheduler.rearm(), "re-arming the boundary timer")
        return stored

    @tracked
    async def release_hold(self, sliver_urn: str) -> Booking:
        """Give a hold back at once; fire with it, released."""
        async with self._lock:
            released = await self._changes.change_one(sliver_urn, lambda cur, now: step(cur, Event.RELEASE, now))
        self.log.info("released the hold {sliver}", sliver=sliver_urn)
        self._scheduler.changed()
        return released

    @tracked
    async def take_up(
        self,
        sliver_urn: str,
        users: Sequence[UserKeys],
        credential_expires: float | None,
        replacing: str | None = None,
    ) -> Booking:
        """
        Turn a hold into a provisioned sliver of the same slot and
        parameters with C{users}' keys, in one change. With C{replacing}
        (a sliver of the same slice), that sliver is deleted in the same
        change, its configuration removed from the gateway first if it is
        there. Fire with the new sliver.
        """
        new_users = tuple(users)
        expires = check_time(credential_expires, "credential expiry")
        urns = [sliver_urn] if replacing is None else [sliver_urn, replacing]

        async def compute(current: list[Booking], now: float) -> list[Booking]:
            await self._refuse_shut_down(current)
            hold = step(current[0], Event.TAKE_UP, now, allocation_ttl=self.allocation_ttl, credential_expires=expires)
            result = [
                provisioned(hold, now, users=new_users, credential_expires=expires, max_slot_length=self.max_slot_length)
            ]
            if replacing is not None:
                old = current[1]
                check_current(old, now)
                result.insert(0, step(old, Event.DELETE, now, removal=Removal()))
            return result

        async with self._lock:
            if replacing is not None:
                old = await self._changes.get(replacing)
                removal = await self._sync.remove_locked(old)
                if removal.still_applied:
                    raise GeniError(GeniCode.ERROR, f"the sliver {replacing} could not be taken off the gateway: {removal.error}")
            changed = await self._changes.change(urns, compute)
        self.log.info("took up the hold {sliver}", sliver=sliver_urn)
        self._scheduler.changed()
        return changed[-1]

    # Transactions (see geniam.managers.transactions): the atomic writes of
    # a slice's open transaction and its holds. Each is one store
    # transaction, made under the island's lock.

    def new_sliver_urn(self) -> str:
        """A fresh sliver URN of this island, for a hold that may become a sliver."""
        return make_sliver_urn(self.authority, self._sliver_names())

    def transaction(self, slice_urn: str) -> Deferred[Transaction | None]:
        """Fire with the slice's open transaction here, or None."""
        return self._track(self._read_transactions(slice_urn))

    def transactions(self) -> Deferred[list[Transaction]]:
        """Fire with every open transaction of the island, by C{commit_by}."""
        return self._track(self._read_transactions(None))

    async def _read_transactions(self, slice_urn: str | None) -> Any:
        if slice_urn is None:
            return await self._store.list_transactions()
        parse_urn(slice_urn, "slice")
        return await self._store.get_transaction(slice_urn)

    def save_transaction(
        self, transaction: Transaction, insert: Sequence[Booking], update: Sequence[Booking]
    ) -> Deferred[tuple[Transaction, list[Booking]]]:
        """
        Open (C{version} 0) or replace a transaction, writing its new holds
        (C{insert}) and changed or released holds (C{update}), all or none.
        """
        return self._track(self._save_transaction(transaction, list(insert), list(update)))

    async def _save_transaction(
        self, transaction: Transaction, insert: list[Booking], update: list[Booking]
    ) -> tuple[Transaction, list[Booking]]:
        if await self._store.is_shutdown(transaction.slice_urn):
            raise GeniError(GeniCode.REFUSED, f"slice {transaction.slice_urn} has been shut down")
        replaced = frozenset(b.sliver_key for b in update)
        for hold in insert:  # maintenance and policy, the holds this change replaces not counted
            await self._check_admission(hold.slot, hold.owner_urn, hold.slice_urn, replaced)
        async with self._lock:
            saved: tuple[Transaction, list[Booking]] = await self._store.save_transaction(transaction, insert, update)
        self._changes.notify()
        self._scheduler.changed()
        return saved

    def close_transaction(
        self, transaction: Transaction, bookings: Sequence[Booking], outcome: TransactionOutcome | None = None
    ) -> Deferred[list[Booking]]:
        """Close a transaction (commit or abort), writing C{bookings} and recording C{outcome} with it, all or none."""
        return self._track(self._close_transaction(transaction, list(bookings), outcome))

    async def _close_transaction(
        self, transaction: Transaction, bookings: list[Booking], outcome: TransactionOutcome | None
    ) -> list[Booking]:
        async with self._lock:
            stored: list[Booking] = await self._store.close_transaction(transaction, bookings, outcome)
        self._changes.notify()
        self._scheduler.changed()
        return stored

    @tracked
    async def transaction_outcome(self, transaction_id: str) -> TransactionOutcome | None:
        """Fire with how the transaction C{transaction_id} ended here, if it ended recently enough to be remembered."""
        found: TransactionOutcome | None = await self._store.get_transaction_outcome(transaction_id)
        return found

    @tracked
    async def forget_transaction_outcomes(self, now: float) -> None:
        """Forget the outcomes of transactions kept until C{now} or before."""
        await self._store.forget_transaction_outcomes(now)

    @tracked
    async def committed_slots(self, window: Slot) -> list[Slot]:
        """Fire with the booked slots overlapping C{window}, leaving out the holds of open transactions (not yet visible)."""
        bookings = await self._store.list_live(check_slot(window, "window"))
        return [b.slot for b in bookings if not is_transaction_hold(b)]
