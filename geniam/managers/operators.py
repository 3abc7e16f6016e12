# -*- test-case-name: tests.loopback.test_operators -*-
"""
The operators' API of an aggregate manager, served over XML-RPC at
C{/admin} on the AM's own TLS listener (L{ADMIN_SIGNATURES}).

Only the operators the configuration names may call it (L{Operators}: a
certificate, or a URN under a trusted authority, checked against the TLS
client certificate the listener has already verified). They list the
bookings and who holds the island, cancel any booking, close the island
for maintenance and change the booking policy of the running AM. Every
action that changes something is written to the audit log, in the store
and in the log (namespace C{geniam.audit}), with who, what and when.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from geniam.booking.maintenance import MAX_REASON_LENGTH, MaintenanceWindow
from geniam.booking.values import MAX_TIME, MIN_TIME, Booking, Slot
from geniam.calendar.sources import gateway_link
from geniam.errors import GeniCode, GeniError, success_struct
from geniam.managers.arguments import slot_argument
from geniam.managers.errors import DomainError, as_geni_error
from geniam.managers.island import IslandResourceManager
from geniam.protocols.grammar import quoted
from geniam.protocols.signatures import Param, Signature, boolean, string, struct, time_string
from geniam.store.operatorrows import AuditEntry
from geniam.timeutil import format_time, parse_time
from geniam.trust.gid import GID
from geniam.urn import parse_urn

ADMIN_PATH = "/admin"
"""Where the AM serves the operators' API."""

DEFAULT_LISTING = 30 * 86400.0
"""How far ahead a listing reaches when no end is given (30 days)."""

_OPTIONS = Param("options", struct, default=dict)

ADMIN_SIGNATURES: Mapping[str, Signature] = MappingProxyType(
    {
        "ListBookings": Signature((_OPTIONS,), "list_bookings"),
        "CancelBooking": Signature((Param("sliver_urn", string), Param("reason", string)), "cancel_booking"),
        "AddMaintenance": Signature(
            (Param("start", time_string), Param("end", time_string), Param("reason", string), _OPTIONS), "add_maintenance"
        ),
        "RemoveMaintenance": Signature((Param("window_id", string),), "remove_maintenance"),
        "GetPolicy": Signature((), "get_policy"),
        "SetPolicy": Signature((Param("settings", struct),), "set_policy"),
        "ListAudit": Signature((_OPTIONS,), "list_audit"),
    }
)
"""The operators' methods, each served by the L{OperatorAPI} method its signature names."""


@dataclass(frozen=True)
class Operators:
    """
    Who may operate the AM: certificates (by SHA-256 fingerprint) and URNs.
    A URN is matched against the client certificate the TLS listener has
    verified against the trust roots, so it names an operator only under a
    trusted authority.
    """

    urns: frozenset[str] = frozenset()
    fingerprints: frozenset[bytes] = frozenset()

    @classmethod
    def named(cls, urns: Iterable[str] = (), certificates: Iterable[GID] = ()) -> Operators:
        """The operators with these URNs and certificates."""
        return cls(frozenset(parse_urn(u).key for u in urns), frozenset(g.fingerprint for g in certificates))

    def __bool__(self) -> bool:
        return bool(self.urns or self.fingerprints)

    def admits(self, peer: GID) -> bool:
        """Whether the verified client certificate C{peer} is an operator's."""
        if peer.fingerprint in self.fingerprints:
            return True
        if peer.urn is None:
            return False
        try:
            return parse_urn(peer.urn).key in self.urns
        except GeniError:
            return False


def booking_row(booking: Booking) -> dict[str, Any]:
    """One booking as an operator sees it: slice, owner, state, slot and gateway status."""
    return {
        "sliver_urn": booking.sliver_urn,
        "slice_urn": booking.slice_urn,
        "owner_urn": booking.owner_urn,
        "owner_email": booking.owner_email,
        "state": booking.allocation_state.value,
        "operational_state": booking.operational_state.value,
        "start": format_time(booking.slot.start),
        "end": format_time(booking.slot.end),
        "applied": booking.applied,
        "error": booking.error,
    }


def window_row(window: MaintenanceWindow) -> dict[str, Any]:
    """One maintenance window as the API returns it."""
    return {
        "id": window.window_id,
        "start": format_time(window.slot.start),
        "end": format_time(window.slot.end),
        "reason": window.reason,
        "created_by": window.created_by,
        "created": format_time(window.created),
    }


def _edge(method: Callable[..., Awaitable[dict[str, Any]]]) -> Callable[..., Awaitable[dict[str, Any]]]:
    """An API method whose domain errors (the store's, the booking core's) leave as GENI errors."""

    @functools.wraps(method)
    async def call(*args: Any) -> dict[str, Any]:
        try:
            return await method(*args)
        except DomainError as e:
            raise as_geni_error(e) from None

    return call


def _reason(value: str) -> str:
    text = value.strip()
    if not text:
        raise GeniError(GeniCode.BADARGS, "a reason is required")
    if len(text) > MAX_REASON_LENGTH or any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise GeniError(GeniCode.BADARGS, f"the reason must be one line of at most {MAX_REASON_LENGTH} characters")
    return text


def _time_option(options: Mapping[str, Any], name: str, default: float) -> float:
    if name not in options:
        return default
    return parse_time(time_string(name, options[name]))


class OperatorAPI:
    """
    The operators' methods; each takes the caller's verified certificate first.

    @param island: the island's resource manager (bookings, cancellation, policy).
    @param store: the island's store (maintenance windows, the audit log).
    @param gateway: the island's gateway, for its link state.
    @param operators: who may call.
    @param clock: the time of every action.
    """

    log = Logger()
    audit_log = Logger(namespace="geniam.audit")

    def __init__(self, island: IslandResourceManager, store: Any, gateway: object, operators: Operators, clock: IReactorTime) -> None:
        self.island = island
        self.store = store
        self.gateway = gateway
        self.operators = operators
        self._clock = clock

    def _operator(self, peer: GID) -> str:
        """The caller's URN if it is an operator; else FORBIDDEN."""
        who = peer.urn or f"the certificate {peer.fingerprint.hex()[:16]}..."
        if not self.operators.admits(peer):
            self.log.warn("operator call refused to {who}: not an operator", who=who)
            raise GeniError(GeniCode.FORBIDDEN, f"{quoted(who, 200)} is not an operator of this aggregate")
        return who

    async def _audit(self, operator: str, action: str, detail: str) -> None:
        entry = AuditEntry(self._clock.seconds(), operator, action, detail)
        await self.store.add_audit(entry)
        self.audit_log.info(
            "operator {operator} {action}: {detail}", operator=operator, action=action, detail=detail, at=format_time(entry.at)
        )

    @_edge
    async def list_bookings(self, peer: GID, options: dict[str, Any]) -> dict[str, Any]:
        """The live bookings in a range (options C{start}, C{end}), who holds the island now, and the windows."""
        self._operator(peer)
        now = self._clock.seconds()
        start = _time_option(options, "start", now)
        end = _time_option(options, "end", min(MAX_TIME, max(start, now) + DEFAULT_LISTING))
        window = slot_argument(max(MIN_TIME, start), min(MAX_TIME, end))
        bookings = await self.store.list_live(window)
        current = [b for b in await self.store.list_live(Slot(now, now + 0.001)) if b.slot.contains(now)]
        return success_struct(
            {
                "start": format_time(window.start),
                "end": format_time(window.end),
                "bookings": [booking_row(b) for b in bookings],
                "holder": booking_row(current[0]) if current else {},
                "gateway": gateway_link(self.gateway),
                "maintenance": [window_row(w) for w in await self.store.list_maintenance(window)],
            }
        )

    @_edge
    async def cancel_booking(self, peer: GID, sliver_urn: str, reason: str) -> dict[str, Any]:
        """Cancel a live booking with a reason its owner sees; the gateway is reset at once if it runs."""
        operator = self._operator(peer)
        why = _reason(reason)
        booking = await self.island.cancel(sliver_urn, why)
        await self._audit(operator, "cancel", f"{booking.sliver_urn} of {booking.slice_urn} ({booking.slot}): {why}")
        return success_struct(booking_row(booking))

    @_edge
    async def add_maintenance(self, peer: GID, start: str, end: str, reason: str, options: dict[str, Any]) -> dict[str, Any]:
        """
        Close the island from C{start} to C{end}; list the live bookings
        overlapping the window, and cancel them with option
        C{cancel_overlapping}.
        """
        operator = self._operator(peer)
        why = _reason(reason)
        slot = slot_argument(parse_time(start), parse_time(end))
        cancel = boolean("cancel_overlapping", options.get("cancel_overlapping", False))
        window = MaintenanceWindow(f"m-{uuid.uuid4().hex[:10]}", slot, why, operator, self._clock.seconds())
        await self.store.add_maintenance(window)
        self.island.schedule_changed()
        await self._audit(operator, "maintenance-add", f"{window.window_id} from {slot}: {why}")
        overlapping = list(await self.store.list_live(slot))
        cancelled = []
        if cancel:
            for booking in overlapping:
                done = await self.island.cancel(booking.sliver_urn, f"maintenance from {slot}: {why}")
                await self._audit(operator, "cancel", f"{done.sliver_urn} of {done.slice_urn} ({done.slot}) for {window.window_id}")
                cancelled.append(booking_row(done))
        return success_struct(
            {
                "window": window_row(window),
                "overlapping": [booking_row(b) for b in overlapping],
                "cancelled": cancelled,
            }
        )

    @_edge
    async def remove_maintenance(self, peer: GID, window_id: str) -> dict[str, Any]:
        """Reopen the island: remove a maintenance window by its id."""
        operator = self._operator(peer)
        removed = await self.store.remove_maintenance(window_id)
        self.island.schedule_changed()
        if removed is None:
            raise GeniError(GeniCode.SEARCHFAILED, f"no maintenance window {quoted(window_id, 64)}")
        await self._audit(operator, "maintenance-remove", f"{removed.window_id} from {removed.slot}: {removed.reason}")
        return success_struct(window_row(removed))

    @_edge
    async def get_policy(self, peer: GID) -> dict[str, Any]:
        """The booking policy in force (seconds, 0 for off)."""
        self._operator(peer)
        return success_struct(self.island.booking_policy.as_struct())

    @_edge
    async def set_policy(self, peer: GID, settings: dict[str, Any]) -> dict[str, Any]:
        """Change some limits of the booking policy, from the next request on."""
        operator = self._operator(peer)
        try:
            policy = self.island.booking_policy.changed(settings)
        except ValueError as e:
            raise GeniError(GeniCode.BADARGS, str(e)) from None
        self.island.set_booking_policy(policy)
        changes = ", ".join(f"{k} = {float(v):g}" for k, v in sorted(settings.items()))
        await self._audit(operator, "policy", changes or "no change")
        return success_struct(policy.as_struct())

    @_edge
    async def list_audit(self, peer: GID, options: dict[str, Any]) -> dict[str, Any]:
        """The audit log from option C{since} on (default: everything), oldest first."""
        self._operator(peer)
        since = _time_option(options, "since", MIN_TIME)
        entries = await self.store.list_audit(since)
        return success_struct(
            [{"at": format_time(e.at), "operator": e.operator, "action": e.action, "detail": e.detail} for e in entries]
        )

