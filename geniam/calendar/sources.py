# -*- test-case-name: tests.calendar.test_sources -*-
"""
Where calendars read their schedules.

L{AggregateScheduleSource} reads an aggregate manager's own store: the
live bookings' slots (turned into anonymous blocks at once, so nothing
else leaves this module), the state of the booking holding the island
now, and the state of the link to the gateway.

L{FederationScheduleSource} asks a slice manager's own ListResources
(with its own credential, through its advertisement cache, so a page
refreshing every minute costs at most one round of calls per cache
lifetime) and reads one row per aggregate from the merged advertisement:
the advertised schedule and whether the aggregate answered.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from geniam.booking.transactions import is_transaction_hold
from geniam.booking.values import MAX_TIME, MIN_TIME, AllocationState, Booking, OperationalState, Slot
from geniam.calendar.advertised import rows_from_advertisement, schedule_error, unreachable_row
from geniam.calendar.schedule import Block, BlockKind, IslandRow, IslandState, Schedule, blocks_from_slots, island_name
from geniam.client import GENI_V3, value_of
from geniam.errors import GeniCode, GeniError
from geniam.interfaces import IScheduleSource, IStore
from geniam.trust.context import CallContext

_STATES = {
    OperationalState.READY: (IslandState.IN_SLOT, "configured for the slot"),
    OperationalState.CONFIGURING: (IslandState.CONFIGURING, "the gateway is being configured for the slot"),
    OperationalState.FAILED: (IslandState.FAILED, "the gateway could not be configured; retrying"),
    OperationalState.STOPPED: (IslandState.IN_SLOT, "stopped by its holder"),
    OperationalState.NOTREADY: (IslandState.IN_SLOT, "waiting to be configured"),
}


def island_state(current: Booking | None) -> tuple[IslandState, str]:
    """
    The island's state from the booking holding it now (C{None}: none),
    with a few words that name no slice or user.
    """
    if current is None:
        return IslandState.IDLE, "no booking holds the island now"
    if current.allocation_state is AllocationState.ALLOCATED:
        return IslandState.IN_SLOT, "held by an allocation that is not provisioned"
    return _STATES[current.operational_state]


def gateway_link(gateway: object) -> str:
    """
    The state of the link to the island's gateway, in words: a gateway
    agent's connection, or the in-process simulated gateway.
    """
    connected = getattr(gateway, "connected", None)
    if connected is None:
        return "simulated in process"
    if connected:
        return "connected"
    return f"unreachable ({getattr(gateway, 'last_error', '') or 'not connected'})"


def _bounded(start: float, end: float) -> Slot:
    start = min(max(start, MIN_TIME), MAX_TIME - 1)
    return Slot(start, min(max(end, start + 1), MAX_TIME))


@implementer(IScheduleSource)
class AggregateScheduleSource:
    """
    An aggregate manager's own island, read from its store.

    @param store: the aggregate's booking store (read only).
    @param gateway: its gateway (for the link's state).
    @param urn: the aggregate's URN.
    @param clock: gives the time.
    """

    def __init__(self, store: IStore, gateway: object, urn: str, clock: IReactorTime) -> None:
        self._store = store
        self._gateway = gateway
        self.urn = urn
        self._clock = clock

    def schedule(self, start: float, end: float) -> Deferred[Schedule]:
        """See L{IScheduleSource.schedule}."""
        return Deferred.fromCoroutine(self._schedule(start, end))

    async def _schedule(self, start: float, end: float) -> Schedule:
        now = self._clock.seconds()
        window = _bounded(min(start, now), max(end, now + 1))
        # An open transaction changes nothing visible: its holds are not shown.
        bookings: list[Booking] = [b for b in await self._store.list_live(window) if not is_transaction_hold(b)]
        closed = await self._store.list_maintenance(window)
        maintenance = [Block(w.slot.start, w.slot.end, BlockKind.MAINTENANCE, w.reason) for w in closed]
        blocks = blocks_from_slots([(b.slot.start, b.slot.end) for b in bookings], now, maintenance)
        current = next((b for b in bookings if b.slot.contains(now)), None)
        state, detail = island_state(current)
        name = island_name(self.urn)
        row = IslandRow(self.urn, name, blocks, state, detail, gateway_link(self._gateway), True, "this aggregate")
        return Schedule(f"Island {name}", now, (row,))


@implementer(IScheduleSource)
class FederationScheduleSource:
    """
    Every island behind a slice manager, from its merged advertisement.

    @param manager: the slice manager (its C{ListResources} and C{records}).
    @param context: the context of the slice manager's call of its own
        ListResources: its own certificate and credentials
        (L{geniam.trust.context.CallContext}).
    @param clock: gives the time.
    @param title: the page's title.
    """

    def __init__(
        self, manager: Any, context: CallContext, clock: IReactorTime, title: str = "Federation"
    ) -> None:
        self._manager = manager
        self._context = context
        self._clock = clock
        self._title = title

    def schedule(self, start: float, end: float) -> Deferred[Schedule]:
        """See L{IScheduleSource.schedule}; the window does not matter: advertisements hold every slot ahead."""
        return Deferred.fromCoroutine(self._schedule())

    async def _schedule(self) -> Schedule:
        expected = [record.name for record in self._manager.records]
        try:
            struct = await self._manager.ListResources(self._context, {"geni_rspec_version": GENI_V3})
            rspec = value_of(struct)
            if not isinstance(rspec, str):
                raise GeniError(GeniCode.ERROR, "the merged advertisement is not a document")
            rows = rows_from_advertisement(rspec, self._clock.seconds(), expected)
        except GeniError as e:
            why = schedule_error(e)
            rows = [unreachable_row(name, why) for name in expected]
        now = self._clock.seconds()
        return Schedule(self._title, now, tuple(rows), federation=True)
