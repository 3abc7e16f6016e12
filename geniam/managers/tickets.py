# -*- test-case-name: tests.managers.test_tickets,tests.managers.test_tickets_properties -*-
"""
ProtoGENI tickets on the island: the per-slice state machine and the
manager that drives the island's holds with it.

Each slice is in one of four states here: neither sliver nor ticket,
ticket only, sliver only, sliver and ticket (L{SliceState}). The
operations move it as the component manager API's state diagram says
(L{TRANSITIONS}); any other operation in a state is refused with the code
and reason of L{REFUSALS}. A ticket is a I{hold} of the island
(L{geniam.booking.lifecycle.new_hold}, C{held_by} L{HELD_BY}); a sliver is
any live booking of the slice that is not a hold, so slivers made through
tickets and through AM API v3 are the same bookings. A ticket URN and the
URN of the sliver its hold becomes share their name:
C{urn:publicid:IDN+<authority>+ticket+<name>} and C{...+sliver+<name>}.

Only a valid ticket is held: a hold lapses at its redeem-by time (the
island's boundary timer and sweep expire it, after restarts too), so the
state is always what the store holds now, and one lock serialises the
operations of this process so that no slice ever has two valid tickets or
gets a ticket beside a sliver.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from twisted.internet.defer import DeferredLock
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from geniam.booking.values import TICKET_HOLD, AllocationState, Booking, Slot, UserKeys, urn_key
from geniam.errors import GeniCode, GeniError
from geniam.managers.island import IslandResourceManager
from geniam.trust.identity import Identity
from geniam.trust.tickets import TicketTerms, read_ticket, sign_ticket
from geniam.urn import parse_urn

DEFAULT_TICKET_TTL = 600.0
"""How long a ticket may wait to be redeemed, by default (10 minutes)."""

HELD_BY = TICKET_HOLD
"""What a ticket's hold names as its holder."""


class SliceState(StrEnum):
    """Where a slice is in the component manager's state diagram."""

    NEITHER = "neither sliver nor ticket"
    TICKET = "ticket"
    SLIVER = "sliver"
    BOTH = "sliver and ticket"


class Operation(StrEnum):
    """The component manager's operations on a slice."""

    GET_TICKET = "GetTicket"
    REDEEM_TICKET = "RedeemTicket"
    UPDATE_SLIVER = "UpdateSliver"
    RELEASE_TICKET = "ReleaseTicket"
    DELETE_SLIVER = "DeleteSliver"
    DELETE_SLICE = "DeleteSlice"
    RESOLVE = "Resolve"


S, O = SliceState, Operation

TRANSITIONS: Mapping[tuple[SliceState, Operation], SliceState] = {
    (S.NEITHER, O.GET_TICKET): S.TICKET,
    (S.TICKET, O.REDEEM_TICKET): S.SLIVER,
    (S.TICKET, O.RELEASE_TICKET): S.NEITHER,
    (S.SLIVER, O.UPDATE_SLIVER): S.BOTH,
    (S.SLIVER, O.DELETE_SLIVER): S.TICKET,
    (S.BOTH, O.REDEEM_TICKET): S.SLIVER,
    (S.BOTH, O.RELEASE_TICKET): S.SLIVER,
    **{(state, O.DELETE_SLICE): S.NEITHER for state in S},
    **{(state, O.RESOLVE): state for state in S},
}
"""Every legal move: (state, operation) -> the state after it succeeds. Expiry of a ticket moves TICKET to NEITHER and BOTH to SLIVER."""

REFUSALS: Mapping[tuple[SliceState, Operation], tuple[GeniCode, str]] = {
    (S.TICKET, O.GET_TICKET): (GeniCode.REFUSED, "the slice already holds a valid ticket here; redeem or release it"),
    (S.SLIVER, O.GET_TICKET): (GeniCode.REFUSED, "the slice already has a sliver here; use UpdateSliver to change it"),
    (S.BOTH, O.GET_TICKET): (GeniCode.REFUSED, "the slice already has a sliver and a valid ticket here"),
    (S.NEITHER, O.REDEEM_TICKET): (GeniCode.FORBIDDEN, "the slice holds no valid ticket here"),
    (S.SLIVER, O.REDEEM_TICKET): (GeniCode.FORBIDDEN, "the slice holds no valid ticket here"),
    (S.NEITHER, O.RELEASE_TICKET): (GeniCode.FORBIDDEN, "the slice holds no valid ticket here"),
    (S.SLIVER, O.RELEASE_TICKET): (GeniCode.FORBIDDEN, "the slice holds no valid ticket here"),
    (S.NEITHER, O.UPDATE_SLIVER): (GeniCode.SEARCHFAILED, "the slice has no sliver here; use GetTicket"),
    (S.TICKET, O.UPDATE_SLIVER): (GeniCode.SEARCHFAILED, "the slice has no sliver here; redeem its ticket first"),
    (S.BOTH, O.UPDATE_SLIVER): (
        GeniCode.REFUSED,
        "the slice already holds a ticket for an update; redeem or release it before asking for another",
    ),
    (S.NEITHER, O.DELETE_SLIVER): (GeniCode.SEARCHFAILED, "the slice has no sliver here"),
    (S.TICKET, O.DELETE_SLIVER): (GeniCode.SEARCHFAILED, "the slice has no sliver here (release its ticket instead)"),
    (S.BOTH, O.DELETE_SLIVER): (
        GeniCode.REFUSED,
        "DeleteSliver is not allowed while the slice holds both a sliver and a ticket; "
        "redeem or release the ticket first, or use DeleteSlice",
    ),
}
"""Every illegal move with the code and reason it is refused with."""


def next_state(state: SliceState, operation: Operation) -> SliceState:
    """
    The state after C{operation} succeeds in C{state}.

    @raise GeniError: the code and reason of L{REFUSALS} for an illegal move.
    """
    after = TRANSITIONS.get((state, operation))
    if after is not None:
        return after
    code, reason = REFUSALS[(state, operation)]
    raise GeniError(code, f"{operation.value}: {reason}")


def ticket_urn_of(hold: Booking) -> str:
    """The ticket URN of a ticket's hold (the sliver URN with type C{ticket})."""
    urn = parse_urn(hold.sliver_urn, "sliver")
    return f"urn:publicid:IDN+{urn.authority}+ticket+{urn.name}"


def sliver_urn_of(ticket_urn: str) -> str:
    """The URN of the hold (and future sliver) of a ticket URN."""
    urn = parse_urn(ticket_urn, "ticket")
    return f"urn:publicid:IDN+{urn.authority}+sliver+{urn.name}"


def is_ticket(booking: Booking, now: float) -> bool:
    """True for a valid ticket: a live hold of a ticket not past its redeem-by time."""
    return (
        booking.allocation_state is AllocationState.HELD
        and booking.held_by == HELD_BY
        and now < booking.allocation_expires
    )


@dataclass(frozen=True)
class SliceView:
    """
    A slice's state and what makes it so.

    @ivar slivers: its live slivers (AM API v3 may have made several).
    @ivar ticket: its valid ticket's hold, or None.
    """

    slice_urn: str
    slivers: tuple[Booking, ...]
    ticket: Booking | None

    @property
    def state(self) -> SliceState:
        """The slice's state in the diagram."""
        if self.slivers:
            return SliceState.BOTH if self.ticket is not None else SliceState.SLIVER
        return SliceState.TICKET if self.ticket is not None else SliceState.NEITHER

    @property
    def sliver(self) -> Booking | None:
        """The slice's sliver (the first, if AM API v3 made several)."""
        return self.slivers[0] if self.slivers else None


def observe(slice_urn: str, bookings: Sequence[Booking], now: float) -> SliceView:
    """
    The slice's view from its live bookings at C{now}.

    @raise GeniError: SERVERERROR if it holds two valid tickets (the
        manager never lets that happen).
    """
    tickets = [b for b in bookings if is_ticket(b, now)]
    if len(tickets) > 1:
        raise GeniError(GeniCode.SERVERERROR, f"slice {slice_urn} holds {len(tickets)} tickets")
    slivers = tuple(b for b in bookings if b.live and b.is_sliver)
    return SliceView(slice_urn, slivers, tickets[0] if tickets else None)


def terms_of(hold: Booking, holder_urn: str | None = None) -> TicketTerms:
    """The terms of the ticket a hold stands for."""
    return TicketTerms(
        ticket_urn=ticket_urn_of(hold),
        slice_urn=hold.slice_urn,
        holder_urn=holder_urn or hold.owner_urn,
        sliver_urn=hold.sliver_urn,
        start=hold.slot.start,
        end=hold.slot.end,
        redeem_before=hold.allocation_expires,
        controller=hold.controller,
        vlan_map=dict(hold.vlan_map),
    )


@dataclass(frozen=True)
class Promise:
    """
    What a ticket is asked for: a slot and the gateway's parameters.

    @ivar owner_urn: the user it is for; C{owner_email} that user's address.
    @ivar credential_expires: the granting credential's expiry (caps the ticket).
    """

    slot: Slot
    owner_urn: str
    owner_email: str
    credential_expires: float | None
    controller: str | None = None
    vlan_map: Mapping[str, str] | None = None


class TicketManager:
    """
    The component manager's ticket operations on one island.

    @param island: the island's resource manager.
    @param identity: the aggregate's identity; tickets are signed with it.
    @param clock: the reactor's clock.
    @param ticket_ttl: how long a ticket may wait to be redeemed.
    """

    log = Logger()

    def __init__(
        self, island: IslandResourceManager, identity: Identity, clock: IReactorTime, ticket_ttl: float = DEFAULT_TICKET_TTL
    ) -> None:
        if not ticket_ttl > 0 or not math.isfinite(ticket_ttl):
            raise GeniError(GeniCode.BADARGS, "ticket_ttl must be a positive duration")
        self.island = island
        self.identity = identity
        self.ticket_ttl = float(ticket_ttl)
        self._clock = clock
        self._lock = DeferredLock()

    # Reads.

    async def view(self, slice_urn: str) -> SliceView:
        """The slice's state now (changes nothing)."""
        bookings = await self.island.slice_holdings(slice_urn, True)
        return observe(slice_urn, bookings, self._clock.seconds())

    def document(self, hold: Booking) -> str:
        """The signed ticket of a hold (the same bytes every time)."""
        return sign_ticket(self.identity, terms_of(hold))

    async def verify(self, slice_urn: str, document: object) -> tuple[TicketTerms, SliceView]:
        """
        Check a presented ticket: signed by this aggregate, unaltered, not
        lapsed, for C{slice_urn}, and the slice's valid ticket now.

        @raise GeniError: FORBIDDEN (or EXPIRED) with the reason.
        """
        terms = read_ticket(document, self.identity.gid, self._clock.seconds())
        if urn_key(terms.slice_urn) != urn_key(slice_urn):
            raise GeniError(GeniCode.FORBIDDEN, f"the ticket is for slice {terms.slice_urn}, not {slice_urn}")
        view = await self.view(slice_urn)
        if view.ticket is None or urn_key(ticket_urn_of(view.ticket)) != urn_key(terms.ticket_urn):
            raise GeniError(
                GeniCode.FORBIDDEN,
                f"ticket {terms.ticket_urn} is no longer valid (redeemed, released, replaced or lapsed)",
            )
        return terms, view

    # Changes.

    async def get_ticket(self, slice_urn: str, promise: Promise) -> tuple[Booking, str]:
        """GetTicket: hold the slot for the slice; fire with the hold and its signed ticket."""
        async with self._lock:
            view = await self.view(slice_urn)
            next_state(view.state, Operation.GET_TICKET)
            hold = await self._hold(slice_urn, promise)
        self.log.info("ticket {ticket} for {slice}", ticket=ticket_urn_of(hold), slice=slice_urn)
        return hold, self.document(hold)

    async def _hold(self, slice_urn: str, promise: Promise, replacing: str | None = None) -> Booking:
        expires = math.floor(self._clock.seconds() + self.ticket_ttl)
        return await self.island.hold(
            slice_urn,
            promise.owner_urn,
            promise.owner_email,
            promise.slot,
            promise.credential_expires,
            expires,
            HELD_BY,
            promise.controller,
            promise.vlan_map,
            replacing,
        )

    async def redeem_ticket(
        self, slice_urn: str, document: object, users: Sequence[UserKeys], credential_expires: float | None
    ) -> Booking:
        """RedeemTicket: the ticket's hold becomes the slice's sliver (replacing the old one after UpdateSliver)."""
        async with self._lock:
            _, view = await self.verify(slice_urn, document)
            next_state(view.state, Operation.REDEEM_TICKET)
            assert view.ticket is not None
            replacing = view.sliver.sliver_urn if view.sliver is not None else None
            sliver = await self.island.take_up(view.ticket.sliver_urn, users, credential_expires, replacing)
        self.log.info("ticket {ticket} redeemed as {sliver}", ticket=ticket_urn_of(view.ticket), sliver=sliver.sliver_urn)
        return sliver

    async def release_ticket(self, slice_urn: str, document: object) -> Booking:
        """ReleaseTicket: give the ticket's slot back; a sliver stays as it was."""
        async with self._lock:
            _, view = await self.verify(slice_urn, document)
            next_state(view.state, Operation.RELEASE_TICKET)
            assert view.ticket is not None
            return await self.island.release_hold(view.ticket.sliver_urn)

    async def update_sliver(self, slice_urn: str, sliver_urn: str | None, promise: Promise) -> tuple[Booking, str]:
        """
        UpdateSliver: a ticket for a new request while the sliver runs on
        unchanged. The new slot may overlap the sliver's own: the ticket's
        hold and the sliver it updates are the one pair of live bookings
        allowed to overlap (L{geniam.booking.values.may_share_slot}), and
        the sliver is not counted against the booking policy's quotas
        for it, since redeeming replaces it.
        """
        async with self._lock:
            view = await self.view(slice_urn)
            next_state(view.state, Operation.UPDATE_SLIVER)
            sliver = self._named_sliver(view, sliver_urn)
            hold = await self._hold(slice_urn, promise, replacing=sliver.sliver_key)
        return hold, self.document(hold)

    async def delete_sliver(self, slice_urn: str, sliver_urn: str | None, credential_expires: float | None) -> tuple[Booking, str]:
        """
        DeleteSliver: shut the sliver down and return a fresh ticket (its
        own URN and redeem-by time) for what remains of its slot.
        """
        async with self._lock:
            view = await self.view(slice_urn)
            next_state(view.state, Operation.DELETE_SLIVER)
            sliver = self._named_sliver(view, sliver_urn)
            now = self._clock.seconds()
            rest = Slot(max(math.ceil(now), sliver.slot.start), sliver.slot.end) if math.ceil(now) < sliver.slot.end else None
            await self.island.delete([sliver.sliver_urn])
            if rest is None:
                raise GeniError(GeniCode.EXPIRED, f"sliver {sliver.sliver_urn} was deleted; nothing of its slot remains to promise")
            promise = Promise(rest, sliver.owner_urn, sliver.owner_email, credential_expires, sliver.controller, sliver.vlan_map)
            hold = await self._hold(slice_urn, promise)
        return hold, self.document(hold)

    @staticmethod
    def _named_sliver(view: SliceView, sliver_urn: str | None) -> Booking:
        if sliver_urn is None:
            assert view.sliver is not None
            return view.sliver
        for sliver in view.slivers:
            if urn_key(sliver.sliver_urn) == urn_key(sliver_urn):
                return sliver
        raise GeniError(GeniCode.SEARCHFAILED, f"sliver {sliver_urn} is not a live sliver of slice {view.slice_urn}")

    async def delete_slice(self, slice_urn: str) -> list[Booking]:
        """DeleteSlice: destroy the slice's slivers and invalidate its ticket, from any state."""
        async with self._lock:
            view = await self.view(slice_urn)
            next_state(view.state, Operation.DELETE_SLICE)
            done: list[Booking] = []
            if view.ticket is not None:
                done.append(await self.island.release_hold(view.ticket.sliver_urn))
            if view.slivers:
                done.extend(await self.island.delete([b.sliver_urn for b in view.slivers]))
        return done
