# -*- test-case-name: tests.managers.test_island,tests.managers.test_island_sqlite,tests.loopback.test_island_agent,tests.loopback.test_am_agent -*-
"""
The island resource manager: books the whole island by time slot and
configures its gateway when slots begin and end.

This module is the L{IResourceManager} facade and the resource manager's
API (the reads behind C{getSws}/C{getLinks}/C{getAvailability}/
C{checkAvailability}; allocate, provision, renew, delete, shutdown and the
operational actions). Its parts live beside it: L{geniam.managers.inventory}
(switches and links), L{geniam.managers.gatewaysync} (what to send the
gateway, as a pure plan, and drift repair), L{geniam.managers.scheduler}
(the boundary timer, the safety sweep and retry back-off),
L{geniam.managers.periodic} (what one run of the periodic check does),
L{geniam.managers.inflight} (operations as tracked Deferreds) and
L{geniam.managers.bookingchanges} (optimistic writes of the core's
transitions, L{geniam.booking.lifecycle.step}).

Allocate books a slot (nothing is configured); Provision approves it and
records the user's keys, controller and VLAN map; when the slot begins the
configuration is pushed to the gateway, and when it ends it is removed.
Two checks run on the injected clock: allocations left unprovisioned past
their expiry lapse, and provisioned slots start and end. They run at the
next known boundary (a timer re-armed whenever bookings change) and every
C{sweep_interval} seconds as a safety net; a start or end missed while the
manager was down is caught up by the first check after L{start}.

Starting a slot reads what the gateway holds (C{state}) and applies only
the difference to the booking: stray keys, a wrong proxy or VLAN map are
replaced. While the gateway agent cannot be reached (C{RPCERROR} or
C{TIMEDOUT}) the booking shows C{configuring} with the reason in its error
text; when the agent refuses, it shows C{failed}. Both are retried with
back-off while the slot lasts. Removal at the slot's end, on Delete,
Shutdown or C{geni_stop} is retried the same way until it succeeds.

Drift repair (L{IslandResourceManager.repair}) compares the gateway's
reported state with the booking that should be applied now and repairs
the difference: what is missing is applied again, what no booking explains
is removed (a reset when no slot runs). It runs once after L{start} and,
when the gateway reports its connection (C{add_connection_observer}, as
L{geniam.protocols.pbclient.PBGatewayAgent} does), after every reconnection, at
which point waiting retries are also made at once.

Holds (state C{held}) keep other slices off their slot, so they count in
L{IslandResourceManager.booked_slots} and
L{IslandResourceManager.check_availability}, but they are not slivers:
the sliver reads and changes here neither show nor take them.

One lock serialises every change to an existing booking and all gateway
work in this process; the store's version check and conflict check keep
other processes sharing the database honest.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace

from twisted.internet.defer import Deferred, DeferredLock, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from geniam.booking.lifecycle import Event, Removal
from geniam.booking.rules import check_current, merge_users, new_booking, provisioned, renewed
from geniam.booking.values import (
    DEFAULT_ALLOCATION_TTL,
    DEFAULT_MAX_SLOT_LENGTH,
    MAX_TIME,
    AllocationState,
    Booking,
    OperationalState,
    Slot,
    UserKeys,
    make_sliver_urn,
)
from geniam.errors import GeniCode, GeniError
from geniam.gatewayconfig import ControllerPolicy
from geniam.interfaces import IGatewayAgent, IResourceManager, IStore
from geniam.managers.arguments import check_slot, check_time, validate_controller, validate_email
from geniam.managers.bookingchanges import CHANGE_ATTEMPTS, BookingChanges
from geniam.managers.driver import GatewayDriver
from geniam.managers.gatewaysync import UNREACHABLE_CODES, GatewaySync, needs_push
from geniam.managers.holds import IslandHolds
from geniam.managers.inflight import WorkInFlight, tracked
from geniam.managers.inventory import InventoryCache, KnownInventory
from geniam.managers.periodic import PeriodicCheck
from geniam.managers.scheduler import BOUNDARY_SLACK, Backoff, Scheduler
from geniam.urn import URN, parse_urn

__all__ = [
    "ACTIONS",
    "BOUNDARY_SLACK",
    "CHANGE_ATTEMPTS",
    "UNREACHABLE_CODES",
    "IslandResourceManager",
]

ACTIONS: tuple[str, ...] = ("geni_start", "geni_stop", "geni_restart", "geni_update_users")
"""The operational actions L{IslandResourceManager.perform_action} supports."""


def _uuid_name() -> str:
    return uuid.uuid4().hex


def _slice_urn(slice_urn: str | URN) -> URN:
    """The slice URN parsed once for the whole call (a parsed one is taken as it is)."""
    if isinstance(slice_urn, URN) and slice_urn.type == "slice":
        return slice_urn
    return parse_urn(slice_urn, "slice")


def _slivers_only(bookings: Iterable[Booking]) -> None:
    """
    @raise GeniError: SEARCHFAILED for a hold: it is not a sliver.
    """
    for booking in bookings:
        if not booking.is_sliver:
            raise GeniError(GeniCode.SEARCHFAILED, f"no such sliver: {booking.sliver_urn}")


@implementer(IResourceManager)
class IslandResourceManager(IslandHolds, WorkInFlight):
    """
    L{IResourceManager} for one island booked whole by time slot.

    @param store: where bookings persist.
    @param gateway: the island's gateway agent.
    @param clock: the clock for every timer and timestamp.
    @param am_authority: the authority named in issued sliver URNs.
    @param switches: the switch DPIDs known before the gateway answers.
    @param links: the links known before the gateway answers.
    @param allocation_ttl: how long an unprovisioned allocation is held.
    @param max_slot_length: the longest slot one booking may hold.
    @param sweep_interval: seconds between safety sweeps.
    @param gateway_timeout: seconds a gateway call may take.
    @param retry_delay: the first delay before retrying failed gateway
        work; it doubles on each failure up to C{max_retry_delay}.
    @param max_retry_delay: the longest delay between retries.
    @param inventory_ttl: how long the gateway's inventory is trusted.
    @param sliver_names: makes the name part of a new sliver URN (a random
        hex UUID by default).
    @param controller_policy: where users' controllers may be (default:
        public IP addresses only).
    @param driver: whether this process drives the island's gateway, when
        several share its database (default: it always does). Any process
        lapses expired allocations; only the driver changes the gateway,
        and it catches up (a check with drift repair) on gaining the role.
    """

    log = Logger()

    def __init__(
        self,
        store: IStore,
        gateway: IGatewayAgent,
        clock: IReactorTime,
        am_authority: str,
        *,
        switches: Sequence[str] = (),
        links: Sequence[str] = (),
        allocation_ttl: float = DEFAULT_ALLOCATION_TTL,
        max_slot_length: float = DEFAULT_MAX_SLOT_LENGTH,
        sweep_interval: float = 30.0,
        gateway_timeout: float = 30.0,
        retry_delay: float = 5.0,
        max_retry_delay: float = 300.0,
        inventory_ttl: float = 300.0,
        sliver_names: Callable[[], str] = _uuid_name,
        controller_policy: ControllerPolicy = ControllerPolicy(),
        driver: GatewayDriver | None = None,
    ) -> None:
        make_sliver_urn(am_authority, "check")
        for name, value in (
            ("allocation_ttl", allocation_ttl),
            ("max_slot_length", max_slot_length),
            ("sweep_interval", sweep_interval),
            ("gateway_timeout", gateway_timeout),
            ("retry_delay", retry_delay),
            ("max_retry_delay", max_retry_delay),
        ):
            if not value > 0:
                raise GeniError(GeniCode.BADARGS, f"{name} must be positive")
        self.authority = am_authority
        self.allocation_ttl = float(allocation_ttl)
        self.max_slot_length = float(max_slot_length)
        self._store = store
        self._gateway = gateway
        self._clock = clock
        self._sliver_names = sliver_names
        self.controller_policy = controller_policy
        self._lock = DeferredLock()
        super().__init__()
        self._observing = False
        self._changes = BookingChanges(store, clock)
        self._backoff = Backoff(clock, retry_delay, max_retry_delay)
        self._sync = GatewaySync(store, self._changes, gateway, clock, gateway_timeout, self._backoff)
        self._inventory = InventoryCache(
            switches,
            links,
            clock=clock,
            ttl=inventory_ttl,
            retry_delay=retry_delay,
            ask=self._sync.call,
            online=self._sync.online,
            background=self._background,
        )
        check = PeriodicCheck(
            store, clock, self._lock, self._changes, self._sync, self._backoff, lambda: self._scheduler.rearm(), driver
        )
        self._scheduler = Scheduler(clock, sweep_interval, check.run, store.next_boundary, self._backoff, self._background)
        self._driver = driver
        if driver is not None:
            self._sync.may_change = lambda: driver.driving
            driver.observers.append(self._driver_changed)
            # Another process may have booked a nearer boundary: look again at every poll.
            driver.ticks.append(lambda: self._background(self._scheduler.rearm(), "re-arming the boundary timer"))

    def observe_gateway_work(self, lateness: Callable[[str, float], object], retried: Callable[[], object]) -> None:
        """
        Call C{lateness(edge, seconds)} when a slot's configuration is applied
        (C{"start"}) or removed (C{"end"}), with the seconds since its boundary,
        and C{retried()} each time failed gateway work is scheduled again.
        """
        self._sync.lateness = lateness
        self._sync.retried = retried

    def _driver_changed(self, driving: bool) -> None:
        """Catch up on gaining the gateway driver's role, as after a restart."""
        if driving and self._scheduler.running:
            self._backoff.clear()
            self.repair()

    # Observers of booking changes.

    def observe_bookings(self, observer: Callable[[], object]) -> None:
        """Call C{observer()} after every booking, hold or maintenance change this manager writes (caches of what bookings show)."""
        self._changes.observers.append(observer)

    def schedule_changed(self) -> None:
        """Tell the observers of booking changes that what the schedule shows changed (e.g. a maintenance window)."""
        self._changes.notify()

    def _bookings_changed(self) -> None:
        self._changes.notify()

    # Lifecycle.

    def start(self) -> Deferred[None]:
        """
        Start the periodic checks (see L{IResourceManager.start}); fire once
        the first check is done. A drift repair follows in the background,
        and after every reconnection of a gateway that reports its connection.
        """
        if self._scheduler.running:
            return succeed(None)
        self._scheduler.start()
        add_observer = getattr(self._gateway, "add_connection_observer", None)
        if add_observer is not None and not self._observing:
            add_observer(self._gateway_connection)
            self._observing = True
        self._inventory.refresh()
        first = self.sweep()
        self.repair()
        return first

    def stop(self) -> Deferred[None]:
        """Stop the periodic checks and wait for work in flight."""
        self._scheduler.stop()
        remove_observer = getattr(self._gateway, "remove_connection_observer", None)
        if remove_observer is not None and self._observing:
            remove_observer(self._gateway_connection)
        self._observing = False
        return self._when_idle()

    def _gateway_connection(self, connected: bool) -> None:
        """
        Connection observer: after every (re)connection retry waiting work at
        once, refresh the inventory and repair drift.
        """
        if not self._scheduler.running:
            return
        if not connected:
            self.log.info("the gateway agent is unreachable; gateway work waits for it to return")
            return
        self.log.info("the gateway agent is reachable; checking it against the bookings")
        self._backoff.clear()
        self._inventory.forget_attempt()
        self._inventory.refresh()
        self.repair()

    # Reads.

    def inventory(self) -> Deferred[KnownInventory]:
        """Fire with the island's inventory (see L{IResourceManager.inventory})."""
        return self._inventory.get()

    @tracked
    async def booked_slots(self, window: Slot) -> list[Slot]:
        """Fire with the booked slots overlapping C{window}, holds included (see L{IResourceManager.booked_slots})."""
        bookings = await self._store.list_live(check_slot(window, "window"))
        return [b.slot for b in bookings]

    @tracked
    async def check_availability(self, slot: Slot) -> bool:
        """Fire with True if C{slot} is free: no live booking and no hold overlaps it."""
        return not await self._store.list_live(check_slot(slot), 1)

    @tracked
    async def lookup(self, sliver_urns: Sequence[str | Booking], include_dead: bool = False) -> list[Booking]:
        """Fire with the bookings of these slivers (see L{IResourceManager.lookup})."""
        result = []
        for urn in self._urns(sliver_urns):
            booking = await self._get(urn)
            if not include_dead and not booking.live:
                check_current(booking, self._clock.seconds())
            result.append(booking)
        return result

    @tracked
    async def slice_bookings(self, slice_urn: str | URN, live_only: bool = True) -> list[Booking]:
        """Fire with the slice's slivers by slot start (its holds are not slivers)."""
        return [b for b in await self._store.list_by_slice(_slice_urn(slice_urn), live_only) if b.is_sliver]

    @tracked
    async def is_shut_down(self, slice_urn: str | URN) -> bool:
        """Fire with True if the slice has been shut down."""
        return bool(await self._store.is_shutdown(_slice_urn(slice_urn)))

    # Allocate.

    @tracked
    async def allocate(
        self,
        slice_urn: str | URN,
        owner_urn: str,
        owner_email: str,
        slot: Slot,
        credential_expires: float | None,
        controller: str | None = None,
        vlan_map: Mapping[str, str] | None = None,
    ) -> Booking:
        """Book the island for C{slot} (see L{IResourceManager.allocate})."""
        slice_ = _slice_urn(slice_urn)
        slice_text = slice_urn if isinstance(slice_urn, str) else str(slice_)
        parse_urn(owner_urn, "user")
        await self._check_admission(check_slot(slot), owner_urn, slice_text, frozenset())  # operators' policy and windows
        booking = new_booking(
            sliver_urn=make_sliver_urn(self.authority, self._sliver_names()),
            slice_urn=slice_text,
            owner_urn=owner_urn,
            owner_email=validate_email(owner_email),
            slot=check_slot(slot),
            now=self._clock.seconds(),
            allocation_ttl=self.allocation_ttl,
            credential_expires=check_time(credential_expires, "credential expiry"),
            max_slot_length=self.max_slot_length,
            controller=validate_controller(controller, self.controller_policy),
            vlan_map=dict(vlan_map) if vlan_map is not None else None,
        )
        if await self._store.is_shutdown(slice_):
            raise GeniError(GeniCode.REFUSED, f"slice {slice_text} has been shut down")
        stored = await self._store.insert(booking)
        self._bookings_changed()
        self.log.info(
            "allocated {sliver} for {slot} to {slice}", sliver=stored.sliver_urn, slot=str(stored.slot), slice=slice_text
        )
        self._background(self._scheduler.rearm(), "re-arming the boundary timer")
        return stored

    # Provision.

    @tracked
    async def provision(
        self,
        sliver_urns: Sequence[str | Booking],
        users: Sequence[UserKeys] | None = None,
        controller: str | None = None,
        vlan_map: Mapping[str, str] | None = None,
        slot: Slot | None = None,
        credential_expires: float | None = None,
    ) -> list[Booking]:
        """Approve or update bookings (see L{IResourceManager.provision})."""
        urns = self._urns(sliver_urns)
        new_users = tuple(users) if users is not None else None
        new_controller = None if controller is None else (validate_controller(controller, self.controller_policy) or "")
        new_vlans = dict(vlan_map) if vlan_map is not None else None
        new_slot = check_slot(slot) if slot is not None else None
        expires = check_time(credential_expires, "credential expiry")
        before: dict[str, Booking] = {}

        async def compute(current: list[Booking], now: float) -> list[Booking]:
            _slivers_only(current)
            await self._refuse_shut_down(current)
            before.clear()
            before.update((b.sliver_key, b) for b in current)
            if new_slot is not None:  # operators' policy and windows
                for b in current:
                    await self._check_admission(new_slot, b.owner_urn, b.slice_urn, frozenset(o.sliver_key for o in current))
            return [
                provisioned(
                    b,
                    now,
                    users=new_users,
                    controller=new_controller,
                    vlan_map=new_vlans,
                    slot=new_slot,
                    credential_expires=expires,
                    max_slot_length=self.max_slot_length,
                )
                for b in current
            ]

        async with self._lock:
            after = await self._changes.change(urns, compute)
            result = []
            for new in after:
                old = before[new.sliver_key]
                if old.operational_state is OperationalState.READY and needs_push(old, new):
                    new = await self._sync.push_update_locked(old, new)
                result.append(new)
        for new in result:
            self.log.info("provisioned {sliver} for {slot}", sliver=new.sliver_urn, slot=str(new.slot))
        self._scheduler.changed()
        return result

    # Renew.

    @tracked
    async def renew(
        self,
        sliver_urns: Sequence[str | Booking],
        end: float,
        credential_expires: float | None = None,
        extend_alap: bool = False,
    ) -> list[Booking]:
        """Move the end of the bookings' slots (see L{IResourceManager.renew})."""
        urns = self._urns(sliver_urns)
        new_end = check_time(end, "expiration time")
        if new_end is None:
            raise GeniError(GeniCode.BADARGS, "expiration time must be a time")
        expires = check_time(credential_expires, "credential expiry")

        async def compute(current: list[Booking], now: float) -> list[Booking]:
            _slivers_only(current)
            await self._refuse_shut_down(current)
            for b in current:
                check_current(b, now)
            low = min(b.slot.start for b in current)
            high = min(max([new_end] + [b.slot.end for b in current]), MAX_TIME)
            keys = {b.sliver_key for b in current}
            others = [o for o in await self._store.list_live(Slot(low, high)) if o.sliver_key not in keys]
            # The slice's other slivers renewed in this call keep their starts, so each sliver may grow only
            # up to its siblings' slots as well as other slices' (renewal_end skips the sliver itself).
            others += current
            result = [
                renewed(b, new_end, now, expires, others, self.max_slot_length, self.allocation_ttl, extend_alap)
                for b in current
            ]
            for old, b in zip(current, result):  # operators' policy and windows
                if b.slot.end > old.slot.end:
                    await self._check_admission(b.slot, b.owner_urn, b.slice_urn, frozenset(keys))
            return result

        async with self._lock:
            result = await self._changes.change(urns, compute)
        self._scheduler.changed()
        return result

    # Delete.

    @tracked
    async def delete(self, sliver_urns: Sequence[str | Booking]) -> list[Booking]:
        """Release the bookings (see L{IResourceManager.delete})."""
        urns = self._urns(sliver_urns)
        result = []
        async with self._lock:
            current, _ = await self._current_locked(urns)
            for b in current:
                removal = await self._sync.remove_locked(b)
                new = await self._changes.step_one(b.sliver_urn, Event.DELETE, removal=removal)
                self.log.info("deleted {sliver}", sliver=new.sliver_urn)
                result.append(new)
        self._scheduler.changed()
        return result

    # Shutdown.

    @tracked
    async def shutdown(self, slice_urn: str | URN) -> list[Booking]:
        """Stop the slice at once and refuse further changes (see L{IResourceManager.shutdown})."""
        slice_ = _slice_urn(slice_urn)
        async with self._lock:
            if await self._store.set_shutdown(slice_, self._clock.seconds()):
                self.log.warn("slice {slice} shut down", slice=str(slice_urn))
            for b in await self._store.list_by_slice(slice_, True):
                if b.allocation_state is not AllocationState.PROVISIONED:
                    continue
                removal = await self._sync.remove_locked(b)
                await self._changes.step_one(b.sliver_urn, Event.STOP, removal=removal)
            result = [b for b in await self._store.list_by_slice(slice_, True) if b.is_sliver]
        self._scheduler.changed()
        return result

    # Operational actions.

    @tracked
    async def perform_action(
        self, sliver_urns: Sequence[str | Booking], action: str, users: Sequence[UserKeys] | None = None
    ) -> list[Booking]:
        """Perform an operational action (see L{IResourceManager.perform_action})."""
        urns = self._urns(sliver_urns)
        if action not in ACTIONS:
            raise GeniError(GeniCode.UNSUPPORTED, f"unsupported action {str(action)[:64]!r}; supported: {', '.join(ACTIONS)}")
        new_users: tuple[UserKeys, ...] = ()
        if action == "geni_update_users":
            if users is None:
                raise GeniError(GeniCode.BADARGS, "geni_update_users needs geni_users")
            new_users = tuple(users)
        result = []
        async with self._lock:
            current, now = await self._current_locked(urns)
            for b in current:
                if b.allocation_state is AllocationState.ALLOCATED:
                    code = GeniCode.REFUSED if action == "geni_update_users" else GeniCode.UNSUPPORTED
                    raise GeniError(code, f"sliver {b.sliver_urn} is only allocated; provision it first")
                if action == "geni_update_users" and b.operational_state is not OperationalState.READY:
                    raise GeniError(
                        GeniCode.REFUSED, f"sliver {b.sliver_urn} is {b.operational_state.value}; users can be updated only when ready"
                    )
            for b in current:
                result.append(await self._act_locked(b, action, new_users))
        self._scheduler.changed()
        return result

    async def _act_locked(self, booking: Booking, action: str, users: tuple[UserKeys, ...]) -> Booking:
        now = self._clock.seconds()
        urn = booking.sliver_urn
        if action == "geni_restart" and booking.slot.contains(now):
            return await self._sync.start_locked(urn, manual=True, reset_first=True)
        if action == "geni_start" and booking.slot.contains(now):
            if booking.operational_state is OperationalState.READY:
                return booking
            return await self._sync.start_locked(urn, manual=True)
        if action in ("geni_start", "geni_restart"):
            # Before the slot both only clear a stop: the slot start applies the configuration.
            return await self._changes.step_one(urn, Event.UNSTOP)
        if action == "geni_stop":
            removal: Removal = await self._sync.remove_locked(booking)
            return await self._changes.step_one(urn, Event.STOP, removal=removal)
        new = await self._changes.change_one(urn, lambda cur, now: replace(cur, users=merge_users(cur.users, users), updated=now))
        if not needs_push(booking, replace(booking, users=merge_users(booking.users, users))):
            return new
        return await self._sync.push_update_locked(booking, new)

    # The periodic checks.

    def sweep(self) -> Deferred[None]:
        """
        Run the periodic checks now: lapse expired allocations, end slots
        that are over, remove configuration left on the gateway, repair
        drift if L{repair} asked for it, start slots in progress, then
        re-arm the boundary timer. Fire with None when done; never fails
        (errors are logged). Overlapping requests share one run.
        """
        return self._scheduler.sweep()

    def repair(self) -> Deferred[None]:
        """
        Compare the gateway's reported state with the booking that should be
        applied now and repair the difference, within the next check (after
        slots that are over have ended and before slots in progress start).
        Fire with None when done; never fails (errors are logged). Skipped
        while a gateway that reports its connection has none: its return
        triggers a repair.
        """
        return self._scheduler.repair()

    # Helpers shared by the operations.

    def _urns(self, sliver_urns: Sequence[str | Booking]) -> list[str]:
        if isinstance(sliver_urns, (str, bytes)) or not isinstance(sliver_urns, Iterable):
            raise GeniError(GeniCode.BADARGS, "sliver URNs must be a list")
        urns: dict[str, str] = {}
        for item in sliver_urns:
            urn = item.sliver_urn if isinstance(item, Booking) else item
            key = parse_urn(urn, "sliver").key
            urns.setdefault(key, urn)
        if not urns:
            raise GeniError(GeniCode.BADARGS, "no sliver URNs given")
        return list(urns.values())

    async def _get(self, urn: str) -> Booking:
        """The sliver of this URN; a hold is not one (SEARCHFAILED)."""
        booking = await self._changes.get(urn)
        _slivers_only([booking])
        return booking

    async def _refuse_shut_down(self, bookings: Iterable[Booking]) -> None:
        slices = {b.slice_key: b.slice_urn for b in bookings}
        for slice_urn in slices.values():
            if await self._store.is_shutdown(slice_urn):
                raise GeniError(GeniCode.REFUSED, f"slice {slice_urn} has been shut down")

    async def _current_locked(self, urns: Sequence[str]) -> tuple[list[Booking], float]:
        """
        Read the bookings to change and the time; refuse them unless each is
        a current sliver (L{check_current}) and no slice of theirs is shut down.
        """
        current = [await self._get(urn) for urn in urns]
        now = self._clock.seconds()
        for b in current:
            check_current(b, now)
        await self._refuse_shut_down(current)
        return current, now
