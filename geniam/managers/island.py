# -*- test-case-name: tests.test_island,tests.test_island_sqlite,tests.test_island_agent,tests.test_am_agent -*-
"""
The island resource manager: books the whole island by time slot and
configures its gateway when slots begin and end.

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
L{geniam.protocols.pb.PBGatewayAgent} does), after every reconnection, at
which point waiting retries are also made at once.

One lock serialises every change to an existing booking and all gateway
work in this process; the store's version check and conflict check keep
other processes sharing the database honest.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from twisted.internet.defer import CancelledError, Deferred, DeferredLock, TimeoutError, maybeDeferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from geniam.booking import (
    DEFAULT_ALLOCATION_TTL,
    DEFAULT_MAX_SLOT_LENGTH,
    MAX_TIME,
    AllocationState,
    Booking,
    OperationalState,
    Slot,
    UserKeys,
    check_current,
    make_sliver_urn,
    merge_users,
    needs_cleanup,
    needs_end,
    needs_expiry,
    needs_start,
    new_booking,
    parse_users,
    provisioned,
    renewed,
    urn_key,
    validate_controller,
    validate_email,
)
from geniam.errors import GeniCode, GeniError
from geniam.gatewayconfig import parse_controller, validate_ssh_keys, validate_vlan_map
from geniam.interfaces import IGatewayAgent, IResourceManager, IStore
from geniam.store.errors import StaleBooking
from geniam.urn import parse_urn

T = TypeVar("T")

ACTIONS: tuple[str, ...] = ("geni_start", "geni_stop", "geni_restart", "geni_update_users")
"""The operational actions L{IslandResourceManager.perform_action} supports."""

BOUNDARY_SLACK = 0.001
"""Seconds after a boundary at which its timer fires, so the boundary has passed."""

CHANGE_ATTEMPTS = 5
"""How often a change is retried when the booking changed meanwhile."""

UNREACHABLE_CODES = frozenset({GeniCode.RPCERROR, GeniCode.TIMEDOUT})
"""Gateway failures that mean the agent could not be reached (the booking shows configuring meanwhile)."""


@dataclass(frozen=True)
class Inventory:
    """
    The island's devices.

    @ivar switches: switch DPIDs (C{00:00:00:00:00:00:00:01}).
    @ivar links: links as C{DPID:port-DPID:port}.
    @ivar confirmed: when the gateway last reported them, or None if they
        come from the configuration alone.
    """

    switches: tuple[str, ...]
    links: tuple[str, ...]
    confirmed: float | None = None


@dataclass(frozen=True)
class GatewayView:
    """
    A configuration of the gateway: what it reports, or what a booking needs.

    @ivar users: the authorised SSH keys, in order.
    @ivar proxy: the controller C{host:port} the proxy forwards to, or C{""}.
    @ivar vlans: the VLAN map C{{testbed VLAN: island VLAN}}.
    """

    users: tuple[str, ...] = ()
    proxy: str = ""
    vlans: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, booking: Booking) -> GatewayView:
        """The configuration C{booking} needs during its slot."""
        return cls(booking.ssh_keys, booking.controller or "", dict(booking.vlan_map))

    @classmethod
    def from_report(cls, report: object) -> GatewayView:
        """
        Read a gateway's C{state()} report, normalised as the booking's values are.

        @raise GeniError: ERROR if the report is malformed.
        """
        try:
            if not isinstance(report, Mapping):
                raise GeniError(GeniCode.BADARGS, "not a struct")
            users = validate_ssh_keys(list(report.get("users", [])))
            proxy = report.get("proxy", "") or ""
            if proxy:
                parse_controller(proxy)
            vlans = validate_vlan_map(dict(report.get("vlans", {})))
        except (GeniError, TypeError, ValueError) as e:
            why = e.output if isinstance(e, GeniError) else str(e)
            raise GeniError(GeniCode.ERROR, f"the gateway reported a malformed state: {why}") from None
        return cls(users, str(proxy), vlans)

    @property
    def empty(self) -> bool:
        """True for the default configuration: no users, no proxy, no VLAN map."""
        return not self.users and not self.proxy and not self.vlans

    def describe(self) -> str:
        """A short summary for the log."""
        return f"{len(self.users)} SSH key(s), proxy {self.proxy or 'none'}, VLAN map {dict(self.vlans) or 'none'}"


def _uuid_name() -> str:
    return uuid.uuid4().hex


def _string_list(value: object, what: str) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise GeniError(GeniCode.RPCERROR, f"the gateway returned malformed {what}")
    return tuple(value)


def _check_slot(slot: object, what: str = "slot") -> Slot:
    if not isinstance(slot, Slot):
        raise GeniError(GeniCode.BADARGS, f"{what} must be a time slot")
    return slot


def _check_time(value: object, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise GeniError(GeniCode.BADARGS, f"{what} must be a time")
    return float(value)


def _taken_off(booking: Booking, state: AllocationState, applied: bool, error: str, now: float) -> Booking:
    """
    C{booking} in C{state} once its configuration was removed from the
    gateway: C{applied} and C{error} as the removal left them (see
    L{IslandResourceManager._remove_locked}); while some may still be
    there, the operational state is kept, else it is not ready.
    """
    return replace(
        booking,
        allocation_state=state,
        operational_state=booking.operational_state if applied else OperationalState.NOTREADY,
        applied=applied,
        error=error,
        updated=now,
    )


def _gateway_view(booking: Booking) -> tuple[tuple[str, ...], str | None, dict[str, str]]:
    return booking.ssh_keys, booking.controller, dict(booking.vlan_map)


@implementer(IResourceManager)
class IslandResourceManager:
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
        self._sweep_interval = sweep_interval
        self._gateway_timeout = gateway_timeout
        self._retry_delay = retry_delay
        self._max_retry_delay = max_retry_delay
        self._inventory_ttl = inventory_ttl
        self._sliver_names = sliver_names
        self._inventory = Inventory(tuple(switches), tuple(links))
        self._inventory_attempt: float | None = None
        self._inventory_waiters: list[Deferred[Inventory]] = []
        self._refreshing = False
        self._lock = DeferredLock()
        self._retry: dict[str, tuple[int, float]] = {}
        self._running = False
        self._loop: LoopingCall | None = None
        self._timer: IDelayedCall | None = None
        self._sweeping = False
        self._sweep_pending = False
        self._sweep_waiters: list[Deferred[None]] = []
        self._busy: set[object] = set()
        self._idle_waiters: list[Deferred[None]] = []
        self._repair_pending = False
        self._observing = False
        self._booking_observers: list[Callable[[], object]] = []

    # Observers of booking changes.

    def observe_bookings(self, observer: Callable[[], object]) -> None:
        """Call C{observer()} after every booking this manager writes (caches of what bookings show)."""
        self._booking_observers.append(observer)

    def _bookings_changed(self) -> None:
        for observer in list(self._booking_observers):
            try:
                observer()
            except Exception:
                self.log.failure("a booking observer failed")

    # Bookkeeping of work in flight.

    def _track(self, coroutine: Coroutine[Any, Any, T]) -> Deferred[T]:
        d = Deferred.fromCoroutine(coroutine)
        if d.called:
            return d
        token = object()
        self._busy.add(token)

        def done(result: Any) -> Any:
            self._busy.discard(token)
            if not self._busy:
                waiters, self._idle_waiters = self._idle_waiters, []
                for waiter in waiters:
                    waiter.callback(None)
            return result

        d.addBoth(done)
        return d

    def _background(self, coroutine: Coroutine[Any, Any, Any], what: str) -> None:
        def failed(failure: Failure) -> None:
            self.log.failure("{what} failed", failure, what=what)

        self._track(coroutine).addErrback(failed)

    def _when_idle(self) -> Deferred[None]:
        if not self._busy:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._idle_waiters.append(d)
        return d

    # Lifecycle.

    def start(self) -> Deferred[None]:
        """
        Start the periodic checks (see L{IResourceManager.start}); fire once
        the first check is done. A drift repair follows in the background,
        and after every reconnection of a gateway that reports its connection.
        """
        if self._running:
            return succeed(None)
        self._running = True
        loop = LoopingCall(self._safety_sweep)
        loop.clock = self._clock
        self._loop = loop

        def loop_stopped(failure: Failure) -> None:
            self.log.failure("the island's periodic check stopped", failure)

        loop.start(self._sweep_interval, now=False).addErrback(loop_stopped)
        add_observer = getattr(self._gateway, "add_connection_observer", None)
        if add_observer is not None and not self._observing:
            add_observer(self._gateway_connection)
            self._observing = True
        self._maybe_refresh_inventory()
        first = self.sweep()
        self.repair()
        return first

    def stop(self) -> Deferred[None]:
        """Stop the periodic checks and wait for work in flight."""
        self._running = False
        remove_observer = getattr(self._gateway, "remove_connection_observer", None)
        if remove_observer is not None and self._observing:
            remove_observer(self._gateway_connection)
        self._observing = False
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        return self._when_idle()

    # The gateway's connection.

    def _gateway_online(self) -> bool:
        """False only while a gateway that reports its connection says it has none."""
        return bool(getattr(self._gateway, "connected", True))

    def _gateway_connection(self, connected: bool) -> None:
        """
        Connection observer: after every (re)connection retry waiting work at
        once, refresh the inventory and repair drift.
        """
        if not self._running:
            return
        if not connected:
            self.log.info("the gateway agent is unreachable; gateway work waits for it to return")
            return
        self.log.info("the gateway agent is reachable; checking it against the bookings")
        self._retry.clear()
        self._inventory_attempt = None
        self._maybe_refresh_inventory()
        self.repair()

    # Reads.

    def inventory(self) -> Deferred[Inventory]:
        """Fire with the island's inventory (see L{IResourceManager.inventory})."""
        self._maybe_refresh_inventory()
        if self._refreshing and self._inventory.confirmed is None:
            d: Deferred[Inventory] = Deferred()
            self._inventory_waiters.append(d)
            return d
        return succeed(self._inventory)

    def _maybe_refresh_inventory(self) -> None:
        now = self._clock.seconds()
        if self._refreshing:
            return
        if self._inventory.confirmed is not None and now - self._inventory.confirmed < self._inventory_ttl:
            return
        if self._inventory_attempt is not None and now - self._inventory_attempt < self._retry_delay:
            return
        if not self._gateway_online():
            return
        self._refreshing = True
        self._inventory_attempt = now
        self._background(self._refresh_inventory(), "inventory refresh")

    async def _refresh_inventory(self) -> None:
        try:
            switches = _string_list(await self._gw("get_switches"), "switches")
            links = _string_list(await self._gw("get_links"), "links")
            self._inventory = Inventory(switches, links, self._clock.seconds())
        except GeniError as e:
            self.log.warn("could not refresh the island inventory from the gateway: {error}", error=e.output)
        finally:
            self._refreshing = False
            waiters, self._inventory_waiters = self._inventory_waiters, []
            for waiter in waiters:
                waiter.callback(self._inventory)

    def booked_slots(self, window: Slot) -> Deferred[list[Slot]]:
        """Fire with the booked slots overlapping C{window} (see L{IResourceManager.booked_slots})."""
        return self._track(self._booked_slots(window))

    async def _booked_slots(self, window: Slot) -> list[Slot]:
        bookings = await self._store.list_live(_check_slot(window, "window"))
        return [b.slot for b in bookings]

    def check_availability(self, slot: Slot) -> Deferred[bool]:
        """Fire with True if C{slot} is free."""
        return self._track(self._check_availability(slot))

    async def _check_availability(self, slot: Slot) -> bool:
        return not await self._store.list_live(_check_slot(slot), 1)

    def lookup(self, sliver_urns: Sequence[str | Booking], include_dead: bool = False) -> Deferred[list[Booking]]:
        """Fire with the bookings of these slivers (see L{IResourceManager.lookup})."""
        return self._track(self._lookup(sliver_urns, include_dead))

    async def _lookup(self, sliver_urns: Sequence[str | Booking], include_dead: bool) -> list[Booking]:
        result = []
        for urn in self._urns(sliver_urns):
            booking = await self._get(urn)
            if not include_dead and not booking.live:
                check_current(booking, self._clock.seconds())
            result.append(booking)
        return result

    def slice_bookings(self, slice_urn: str, live_only: bool = True) -> Deferred[list[Booking]]:
        """Fire with the slice's bookings by slot start."""
        return self._track(self._slice_bookings(slice_urn, live_only))

    async def _slice_bookings(self, slice_urn: str, live_only: bool) -> list[Booking]:
        parse_urn(slice_urn, "slice")
        return list(await self._store.list_by_slice(slice_urn, live_only))

    def is_shut_down(self, slice_urn: str) -> Deferred[bool]:
        """Fire with True if the slice has been shut down."""
        return self._track(self._is_shut_down(slice_urn))

    async def _is_shut_down(self, slice_urn: str) -> bool:
        parse_urn(slice_urn, "slice")
        return bool(await self._store.is_shutdown(slice_urn))

    # Allocate.

    def allocate(
        self,
        slice_urn: str,
        owner_urn: str,
        owner_email: str,
        slot: Slot,
        credential_expires: float | None,
        controller: str | None = None,
        vlan_map: Mapping[str, str] | None = None,
    ) -> Deferred[Booking]:
        """Book the island for C{slot} (see L{IResourceManager.allocate})."""
        return self._track(self._allocate(slice_urn, owner_urn, owner_email, slot, credential_expires, controller, vlan_map))

    async def _allocate(
        self,
        slice_urn: str,
        owner_urn: str,
        owner_email: str,
        slot: Slot,
        credential_expires: float | None,
        controller: str | None,
        vlan_map: Mapping[str, str] | None,
    ) -> Booking:
        parse_urn(slice_urn, "slice")
        parse_urn(owner_urn, "user")
        booking = new_booking(
            sliver_urn=make_sliver_urn(self.authority, self._sliver_names()),
            slice_urn=slice_urn,
            owner_urn=owner_urn,
            owner_email=validate_email(owner_email),
            slot=_check_slot(slot),
            now=self._clock.seconds(),
            allocation_ttl=self.allocation_ttl,
            credential_expires=_check_time(credential_expires, "credential expiry"),
            max_slot_length=self.max_slot_length,
            controller=validate_controller(controller),
            vlan_map=validate_vlan_map(vlan_map) if vlan_map is not None else None,
        )
        if await self._store.is_shutdown(slice_urn):
            raise GeniError(GeniCode.REFUSED, f"slice {slice_urn} has been shut down")
        stored = await self._store.insert(booking)
        self._bookings_changed()
        self.log.info(
            "allocated {sliver} for {slot} to {slice}", sliver=stored.sliver_urn, slot=str(stored.slot), slice=slice_urn
        )
        self._background(self._rearm(), "re-arming the boundary timer")
        return stored

    # Provision.

    def provision(
        self,
        sliver_urns: Sequence[str | Booking],
        users: Sequence[Mapping[str, Any]] | None = None,
        controller: str | None = None,
        vlan_map: Mapping[str, str] | None = None,
        slot: Slot | None = None,
        credential_expires: float | None = None,
    ) -> Deferred[list[Booking]]:
        """Approve or update bookings (see L{IResourceManager.provision})."""
        return self._track(self._provision(sliver_urns, users, controller, vlan_map, slot, credential_expires))

    async def _provision(
        self,
        sliver_urns: Sequence[str | Booking],
        users: Sequence[Mapping[str, Any]] | None,
        controller: str | None,
        vlan_map: Mapping[str, str] | None,
        slot: Slot | None,
        credential_expires: float | None,
    ) -> list[Booking]:
        urns = self._urns(sliver_urns)
        new_users = parse_users(users) if users is not None else None
        new_controller = None if controller is None else (validate_controller(controller) or "")
        new_vlans = validate_vlan_map(vlan_map) if vlan_map is not None else None
        new_slot = _check_slot(slot) if slot is not None else None
        expires = _check_time(credential_expires, "credential expiry")
        before: dict[str, Booking] = {}

        async def compute(current: list[Booking], now: float) -> list[Booking]:
            await self._refuse_shut_down(current)
            before.clear()
            before.update((b.sliver_key, b) for b in current)
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
            after = await self._change(urns, compute)
            result = []
            for new in after:
                old = before[new.sliver_key]
                if old.operational_state is OperationalState.READY and _gateway_view(old) != _gateway_view(new):
                    new = await self._push_update_locked(old, new)
                result.append(new)
        for new in result:
            self.log.info("provisioned {sliver} for {slot}", sliver=new.sliver_urn, slot=str(new.slot))
        self._after_change()
        return result

    # Renew.

    def renew(
        self,
        sliver_urns: Sequence[str | Booking],
        end: float,
        credential_expires: float | None = None,
        extend_alap: bool = False,
    ) -> Deferred[list[Booking]]:
        """Move the end of the bookings' slots (see L{IResourceManager.renew})."""
        return self._track(self._renew(sliver_urns, end, credential_expires, extend_alap))

    async def _renew(
        self, sliver_urns: Sequence[str | Booking], end: float, credential_expires: float | None, extend_alap: bool
    ) -> list[Booking]:
        urns = self._urns(sliver_urns)
        new_end = _check_time(end, "expiration time")
        if new_end is None:
            raise GeniError(GeniCode.BADARGS, "expiration time must be a time")
        expires = _check_time(credential_expires, "credential expiry")

        async def compute(current: list[Booking], now: float) -> list[Booking]:
            await self._refuse_shut_down(current)
            for b in current:
                check_current(b, now)
            low = min(b.slot.start for b in current)
            high = min(max([new_end] + [b.slot.end for b in current]), MAX_TIME)
            keys = {b.sliver_key for b in current}
            others = [o for o in await self._store.list_live(Slot(low, high)) if o.sliver_key not in keys]
            return [
                renewed(b, new_end, now, expires, others, self.max_slot_length, self.allocation_ttl, extend_alap)
                for b in current
            ]

        async with self._lock:
            result = await self._change(urns, compute)
        self._after_change()
        return result

    # Delete.

    def delete(self, sliver_urns: Sequence[str | Booking]) -> Deferred[list[Booking]]:
        """Release the bookings (see L{IResourceManager.delete})."""
        return self._track(self._delete(sliver_urns))

    async def _delete(self, sliver_urns: Sequence[str | Booking]) -> list[Booking]:
        urns = self._urns(sliver_urns)
        result = []
        async with self._lock:
            current, _ = await self._current_locked(urns)
            for b in current:
                applied, error = await self._remove_locked(b)

                def deleted(cur: Booking, now: float, applied: bool = applied, error: str = error) -> Booking | None:
                    if not cur.live:
                        return None
                    return _taken_off(cur, AllocationState.DELETED, applied, error, now)

                new = await self._change_one(b.sliver_urn, deleted)
                self.log.info("deleted {sliver}", sliver=new.sliver_urn)
                result.append(new)
        self._after_change()
        return result

    # Shutdown.

    def shutdown(self, slice_urn: str) -> Deferred[list[Booking]]:
        """Stop the slice at once and refuse further changes (see L{IResourceManager.shutdown})."""
        return self._track(self._shutdown(slice_urn))

    async def _shutdown(self, slice_urn: str) -> list[Booking]:
        parse_urn(slice_urn, "slice")
        async with self._lock:
            if await self._store.set_shutdown(slice_urn, self._clock.seconds()):
                self.log.warn("slice {slice} shut down", slice=slice_urn)
            for b in await self._store.list_by_slice(slice_urn, True):
                if b.allocation_state is not AllocationState.PROVISIONED:
                    continue
                applied, error = await self._remove_locked(b)

                def stopped(cur: Booking, now: float, applied: bool = applied, error: str = error) -> Booking | None:
                    if cur.allocation_state is not AllocationState.PROVISIONED:
                        return None
                    return replace(cur, operational_state=OperationalState.STOPPED, applied=applied, error=error, updated=now)

                await self._change_one(b.sliver_urn, stopped)
            result = list(await self._store.list_by_slice(slice_urn, True))
        self._after_change()
        return result

    # Operational actions.

    def perform_action(
        self, sliver_urns: Sequence[str | Booking], action: str, users: Sequence[Mapping[str, Any]] | None = None
    ) -> Deferred[list[Booking]]:
        """Perform an operational action (see L{IResourceManager.perform_action})."""
        return self._track(self._perform_action(sliver_urns, action, users))

    async def _perform_action(
        self, sliver_urns: Sequence[str | Booking], action: str, users: Sequence[Mapping[str, Any]] | None
    ) -> list[Booking]:
        urns = self._urns(sliver_urns)
        if action not in ACTIONS:
            raise GeniError(GeniCode.UNSUPPORTED, f"unsupported action {str(action)[:64]!r}; supported: {', '.join(ACTIONS)}")
        new_users: tuple[UserKeys, ...] = ()
        if action == "geni_update_users":
            if users is None:
                raise GeniError(GeniCode.BADARGS, "geni_update_users needs geni_users")
            new_users = parse_users(users)
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
        self._after_change()
        return result

    async def _act_locked(self, booking: Booking, action: str, users: tuple[UserKeys, ...]) -> Booking:
        now = self._clock.seconds()
        urn = booking.sliver_urn
        if action == "geni_restart" and booking.slot.contains(now):
            return await self._start_locked(urn, manual=True, reset_first=True)
        if action == "geni_start" and booking.slot.contains(now):
            if booking.operational_state is OperationalState.READY:
                return booking
            return await self._start_locked(urn, manual=True)
        if action in ("geni_start", "geni_restart"):
            # Before the slot both only clear a stop: the slot start applies the configuration.

            def unstopped(cur: Booking, now: float) -> Booking | None:
                if cur.operational_state is not OperationalState.STOPPED:
                    return None
                return replace(cur, operational_state=OperationalState.NOTREADY, updated=now)

            return await self._change_one(urn, unstopped)
        if action == "geni_stop":
            applied, error = await self._remove_locked(booking)

            def stopped(cur: Booking, now: float) -> Booking | None:
                return replace(cur, operational_state=OperationalState.STOPPED, applied=applied, error=error, updated=now)

            return await self._change_one(urn, stopped)
        merged = merge_users(booking.users, users)

        def with_users(cur: Booking, now: float) -> Booking | None:
            return replace(cur, users=merge_users(cur.users, users), updated=now)

        new = await self._change_one(urn, with_users)
        if _gateway_view(booking) == _gateway_view(replace(booking, users=merged)):
            return new
        return await self._push_update_locked(booking, new)

    # The periodic checks.

    def sweep(self) -> Deferred[None]:
        """
        Run the periodic checks now: lapse expired allocations, end slots
        that are over, remove configuration left on the gateway, repair
        drift if L{repair} asked for it, start slots in progress, then
        re-arm the boundary timer. Fire with None when done; never fails
        (errors are logged). Overlapping requests share one run.
        """
        d: Deferred[None] = Deferred()
        self._sweep_waiters.append(d)
        self._sweep_pending = True
        if not self._sweeping:
            self._sweeping = True
            self._background(self._sweep_loop(), "island check")
        return d

    def repair(self) -> Deferred[None]:
        """
        Compare the gateway's reported state with the booking that should be
        applied now and repair the difference, within the next check (after
        slots that are over have ended and before slots in progress start).
        Fire with None when done; never fails (errors are logged). Skipped
        while a gateway that reports its connection has none: its return
        triggers a repair.
        """
        self._repair_pending = True
        return self.sweep()

    def _safety_sweep(self) -> Deferred[None]:
        return self.sweep()

    async def _sweep_loop(self) -> None:
        try:
            while self._sweep_pending:
                self._sweep_pending = False
                repair, self._repair_pending = self._repair_pending, False
                waiters, self._sweep_waiters = self._sweep_waiters, []
                try:
                    await self._sweep_once(repair)
                except Exception:
                    self.log.failure("island check failed")
                for waiter in waiters:
                    waiter.callback(None)
        finally:
            self._sweeping = False

    async def _sweep_once(self, repair: bool = False) -> None:
        now = self._clock.seconds()
        due = await self._store.due(now)
        waiting = {b.sliver_key for b in due.start + due.cleanup + due.end}
        self._retry = {key: value for key, value in self._retry.items() if key in waiting}
        for b in due.expire:
            await self._guarded(self._expire(b.sliver_urn), b)
        for b in due.end:
            await self._guarded(self._locked(self._end_locked, b.sliver_urn), b)
        for b in due.cleanup:
            if self._may_retry(b.sliver_key, now):
                await self._guarded(self._locked(self._cleanup_locked, b.sliver_urn), b)
        if repair:
            try:
                async with self._lock:
                    await self._repair_locked()
            except Exception:
                self.log.failure("drift repair failed")
        for b in due.start:
            if self._may_retry(b.sliver_key, now):
                await self._guarded(self._locked(self._start_locked, b.sliver_urn), b)
        await self._rearm()

    async def _guarded(self, work: Awaitable[Any], booking: Booking) -> None:
        try:
            await work
        except GeniError as e:
            self.log.warn("island check of {sliver}: {error}", sliver=booking.sliver_urn, error=e.output)
        except Exception:
            self.log.failure("island check of {sliver} failed", sliver=booking.sliver_urn)

    async def _locked(self, work: Callable[[str], Awaitable[Any]], urn: str) -> None:
        async with self._lock:
            await work(urn)

    async def _expire(self, urn: str) -> None:
        def expired(cur: Booking, now: float) -> Booking | None:
            if not needs_expiry(cur, now):
                return None
            return replace(cur, allocation_state=AllocationState.EXPIRED, updated=now)

        new = await self._change_one(urn, expired)
        if new.allocation_state is AllocationState.EXPIRED:
            self.log.info("allocation {sliver} expired", sliver=urn)

    async def _end_locked(self, urn: str) -> None:
        booking = await self._get(urn)
        if not needs_end(booking, self._clock.seconds()):
            return
        applied, error = await self._remove_locked(booking)

        def ended(cur: Booking, now: float) -> Booking | None:
            if needs_end(cur, now):
                return _taken_off(cur, AllocationState.ENDED, applied, error, now)
            if cur.applied and not applied:
                return replace(cur, operational_state=OperationalState.NOTREADY, applied=False, updated=now)
            return None

        new = await self._change_one(urn, ended)
        if new.allocation_state is AllocationState.ENDED:
            self.log.info("slot {slot} of {sliver} ended", slot=str(new.slot), sliver=urn)

    async def _cleanup_locked(self, urn: str) -> None:
        booking = await self._get(urn)
        if not needs_cleanup(booking):
            return
        holders = [b for b in await self._store.list_applied() if b.live and not needs_cleanup(b)]
        if holders:
            return
        applied, error = await self._remove_locked(booking)
        if applied:
            return

        def cleaned(cur: Booking, now: float) -> Booking | None:
            if not needs_cleanup(cur):
                return None
            return replace(cur, applied=False, error="", updated=now)

        await self._change_one(urn, cleaned)

    async def _start_locked(
        self, urn: str, manual: bool = False, reset_first: bool = False, observed: GatewayView | None = None
    ) -> Booking:
        """
        Apply a booking's configuration to the gateway now (lock held): read
        what the gateway holds (or reset it first), then apply the
        difference. The booking becomes ready, or stays configuring while
        the agent is unreachable, or fails when the agent refuses; the last
        two are retried.

        @param manual: start even if the booking is ready or stopped (an
            operational action or a repair).
        @param observed: what the gateway was just seen to hold, if known.
        """
        booking = await self._get(urn)
        now = self._clock.seconds()
        in_slot = booking.allocation_state is AllocationState.PROVISIONED and booking.slot.contains(now)
        if not in_slot or not (manual or needs_start(booking, now)):
            return booking
        try:
            if reset_first:
                await self._gw("reset")
                observed = GatewayView()
            elif observed is None:
                observed = await self._observe()
        except GeniError as e:
            return await self._record_failure(urn, e)

        def configuring(cur: Booking, now: float) -> Booking | None:
            if cur.allocation_state is not AllocationState.PROVISIONED or not cur.slot.contains(now):
                return None
            return replace(cur, operational_state=OperationalState.CONFIGURING, applied=True, updated=now)

        booking = await self._change_one(urn, configuring)
        if booking.operational_state is not OperationalState.CONFIGURING:
            return booking
        self.log.info("starting slot {slot} of {sliver}", slot=str(booking.slot), sliver=urn)
        try:
            await self._converge(booking, observed)
        except GeniError as e:
            return await self._record_failure(urn, e)
        await self._mark_others_removed(booking.sliver_key)
        return await self._record_success(urn)

    async def _observe(self) -> GatewayView:
        """Fire with what the gateway reports it holds."""
        return GatewayView.from_report(await self._gw("state"))

    async def _converge(self, booking: Booking, observed: GatewayView) -> list[str]:
        """
        Change the gateway from C{observed} to exactly what C{booking} needs;
        return what was changed, for the log.
        """
        wanted = GatewayView.of(booking)
        done: list[str] = []
        stray = [key for key in observed.users if key not in wanted.users]
        if stray:
            await self._gw("rem_user_auth", stray)
            done.append(f"removed {len(stray)} SSH key(s)")
        missing = [key for key in wanted.users if key not in observed.users]
        if missing:
            await self._gw("set_user_auth", missing)
            done.append(f"added {len(missing)} SSH key(s)")
        if observed.proxy != wanted.proxy:
            if wanted.proxy:
                await self._gw("set_tcp_proxy", wanted.proxy)
                done.append(f"proxy to {wanted.proxy}")
            else:
                await self._gw("rem_tcp_proxy")
                done.append("stopped the proxy")
        if dict(observed.vlans) != dict(wanted.vlans):
            if wanted.vlans:
                await self._gw("set_ovs", dict(wanted.vlans))
                done.append(f"VLAN map {dict(wanted.vlans)}")
            else:
                await self._gw("rem_ovs")
                done.append("removed the VLAN map")
        return done

    @staticmethod
    def _mark_removed(cur: Booking, now: float) -> Booking | None:
        if not cur.applied:
            return None
        state = OperationalState.NOTREADY if cur.operational_state is OperationalState.READY else cur.operational_state
        error = "" if needs_cleanup(cur) else cur.error
        return replace(cur, applied=False, operational_state=state, error=error, updated=now)

    async def _mark_others_removed(self, keep: str | None) -> None:
        """Record that only the booking C{keep} (a sliver key, or None) may have configuration on the gateway."""
        for other in await self._store.list_applied():
            if other.sliver_key != keep:
                self._retry.pop(other.sliver_key, None)
                await self._change_one(other.sliver_urn, self._mark_removed)

    async def _record_success(self, urn: str) -> Booking:
        self._retry.pop(urn_key(urn), None)

        def ready(cur: Booking, now: float) -> Booking | None:
            if cur.operational_state is not OperationalState.CONFIGURING:
                return None
            return replace(cur, operational_state=OperationalState.READY, error="", updated=now)

        return await self._change_one(urn, ready)

    async def _record_failure(self, urn: str, error: GeniError) -> Booking:
        """
        Record that applying a booking failed and schedule a retry: it shows
        configuring while the agent is unreachable, failed when it refused.
        """
        delay = self._note_failure(urn_key(urn))
        unreachable = error.code in UNREACHABLE_CODES
        state = OperationalState.CONFIGURING if unreachable else OperationalState.FAILED
        if unreachable:
            self.log.warn(
                "gateway unreachable for {sliver}: {error}; retrying in {delay:g} s or when it returns",
                sliver=urn,
                error=error.output,
                delay=delay,
            )
        else:
            self.log.warn("gateway failed for {sliver}: {error}; retrying in {delay:g} s", sliver=urn, error=error.output, delay=delay)

        def failed(cur: Booking, now: float) -> Booking | None:
            if cur.allocation_state is not AllocationState.PROVISIONED or not cur.slot.contains(now):
                return None
            return replace(cur, operational_state=state, error=f"gateway: {error.output}", updated=now)

        return await self._change_one(urn, failed)

    async def _push_update_locked(self, old: Booking, new: Booking) -> Booking:
        """Push the difference between two versions of a ready booking (lock held)."""

        def configuring(cur: Booking, now: float) -> Booking | None:
            if cur.operational_state is not OperationalState.READY:
                return None
            return replace(cur, operational_state=OperationalState.CONFIGURING, updated=now)

        current = await self._change_one(new.sliver_urn, configuring)
        if current.operational_state is not OperationalState.CONFIGURING:
            return current
        try:
            await self._converge(current, GatewayView.of(old))
        except GeniError as e:
            return await self._record_failure(new.sliver_urn, e)
        return await self._record_success(new.sliver_urn)

    # Drift repair.

    async def _target(self, now: float) -> Booking | None:
        """The booking whose configuration should be on the gateway at C{now}, if any."""
        for booking in await self._store.list_live(Slot(now, now + BOUNDARY_SLACK)):
            if (
                booking.allocation_state is AllocationState.PROVISIONED
                and booking.slot.contains(now)
                and booking.operational_state is not OperationalState.STOPPED
            ):
                return booking
        return None

    async def _repair_locked(self) -> None:
        """Compare the gateway with the bookings and repair the difference (lock held)."""
        if not self._gateway_online():
            self.log.debug("drift repair waits for the gateway agent")
            return
        try:
            observed = await self._observe()
        except GeniError as e:
            self.log.warn("cannot compare the gateway with the bookings: {error}", error=e.output)
            return
        now = self._clock.seconds()
        target = await self._target(now)
        if target is None:
            if not observed.empty:
                try:
                    await self._gw("reset")
                except GeniError as e:
                    self.log.warn("drift repair could not reset the gateway: {error}", error=e.output)
                    return
                self.log.warn(
                    "drift repair: no slot runs, so the gateway was reset (it held {what})", what=observed.describe()
                )
            await self._mark_others_removed(None)
            return
        if target.operational_state is not OperationalState.READY:
            self.log.info("drift repair: applying {sliver}, whose slot runs now", sliver=target.sliver_urn)
            await self._start_locked(target.sliver_urn, manual=True, observed=observed)
            return
        try:
            repaired = await self._converge(target, observed)
        except GeniError as e:
            self.log.warn(
                "drift repair of {sliver} failed: {error} (the gateway held {what})",
                sliver=target.sliver_urn,
                error=e.output,
                what=observed.describe(),
            )
            await self._record_failure(target.sliver_urn, e)
            return
        if repaired:
            self.log.warn(
                "drift repair of {sliver}: {repairs} (the gateway held {what})",
                sliver=target.sliver_urn,
                repairs="; ".join(repaired),
                what=observed.describe(),
            )
        else:
            self.log.info("drift repair: the gateway matches {sliver}", sliver=target.sliver_urn)
        await self._mark_others_removed(target.sliver_key)

    async def _remove_locked(self, booking: Booking) -> tuple[bool, str]:
        """
        Remove a booking's configuration from the gateway if it may be there
        (lock held); return whether some may still be there, and the error text.
        """
        if not booking.applied:
            return False, booking.error
        try:
            await self._remove_config(booking)
        except GeniError as e:
            delay = self._note_failure(booking.sliver_key)
            self.log.warn(
                "could not remove {sliver} from the gateway: {error}; retrying in {delay:g} s",
                sliver=booking.sliver_urn,
                error=e.output,
                delay=delay,
            )
            return True, f"gateway: could not remove the configuration: {e.output}"
        self._retry.pop(booking.sliver_key, None)
        return False, ""

    # Gateway work.

    async def _gw(self, name: str, *args: Any) -> Any:
        method = getattr(self._gateway, name)
        try:
            d = maybeDeferred(method, *args)
            d.addTimeout(self._gateway_timeout, self._clock)
            return await d
        except (GeniError, CancelledError):
            raise
        except TimeoutError:
            raise GeniError(GeniCode.TIMEDOUT, f"the gateway did not answer {name} within {self._gateway_timeout:g} s") from None
        except Exception as e:
            raise GeniError(GeniCode.RPCERROR, f"gateway {name} failed: {e}") from e

    async def _remove_config(self, booking: Booking) -> None:
        if booking.operational_state in (OperationalState.CONFIGURING, OperationalState.FAILED):
            await self._gw("reset")
            return
        steps: list[tuple[str, tuple[Any, ...]]] = []
        if booking.ssh_keys:
            steps.append(("rem_user_auth", (list(booking.ssh_keys),)))
        steps += [("rem_tcp_proxy", ()), ("rem_ovs", ())]
        errors = []
        for name, args in steps:
            try:
                await self._gw(name, *args)
            except GeniError as e:
                errors.append(e)
        if errors:
            raise errors[0]

    # Retries and the boundary timer.

    def _note_failure(self, key: str) -> float:
        attempts = self._retry.get(key, (0, 0.0))[0] + 1
        delay = min(self._retry_delay * 2 ** (attempts - 1), self._max_retry_delay)
        self._retry[key] = (attempts, self._clock.seconds() + delay)
        return delay

    def _may_retry(self, key: str, now: float) -> bool:
        entry = self._retry.get(key)
        return entry is None or entry[1] <= now

    def _after_change(self) -> None:
        if self._running:
            self.sweep()

    async def _rearm(self) -> None:
        if not self._running:
            return
        moments = [when for _, when in self._retry.values()]
        boundary = await self._store.next_boundary(self._clock.seconds())
        if boundary is not None:
            moments.append(boundary)
        if moments:
            self._schedule(min(moments))

    def _schedule(self, moment: float) -> None:
        if not self._running:
            return
        target = moment + BOUNDARY_SLACK
        if self._timer is not None and self._timer.active():
            if self._timer.getTime() <= target:
                return
            self._timer.cancel()
        self._timer = self._clock.callLater(max(0.0, target - self._clock.seconds()), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.sweep()

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
        booking = await self._store.get(urn)
        if booking is None:
            raise GeniError(GeniCode.SEARCHFAILED, f"no such sliver: {urn}")
        return booking

    async def _refuse_shut_down(self, bookings: Iterable[Booking]) -> None:
        slices = {b.slice_key: b.slice_urn for b in bookings}
        for slice_urn in slices.values():
            if await self._store.is_shutdown(slice_urn):
                raise GeniError(GeniCode.REFUSED, f"slice {slice_urn} has been shut down")

    async def _current_locked(self, urns: Sequence[str]) -> tuple[list[Booking], float]:
        """
        Read the bookings to change and the time; refuse them unless each is
        current (L{check_current}) and no slice of theirs is shut down.
        """
        current = [await self._get(urn) for urn in urns]
        now = self._clock.seconds()
        for b in current:
            check_current(b, now)
        await self._refuse_shut_down(current)
        return current, now

    async def _change(
        self, urns: Sequence[str], compute: Callable[[list[Booking], float], Awaitable[list[Booking]]]
    ) -> list[Booking]:
        """Read the bookings, compute their new values and store them all or none, retrying if they changed meanwhile."""
        for _ in range(CHANGE_ATTEMPTS):
            current = [await self._get(urn) for urn in urns]
            new = await compute(current, self._clock.seconds())
            try:
                changed = list(await self._store.update(new))
            except StaleBooking:
                continue
            self._bookings_changed()
            return changed
        raise GeniError(GeniCode.BUSY, "the slivers kept changing; try again")

    async def _change_one(self, urn: str, change: Callable[[Booking, float], Booking | None]) -> Booking:
        """Apply C{change} to one booking (None: leave it), retrying if it changed meanwhile; return it as stored."""
        for _ in range(CHANGE_ATTEMPTS):
            current = await self._get(urn)
            new = change(current, self._clock.seconds())
            if new is None:
                return current
            try:
                stored = (await self._store.update([new]))[0]
            except StaleBooking:
                continue
            self._bookings_changed()
            return stored
        raise GeniError(GeniCode.BUSY, f"sliver {urn} kept changing; try again")
