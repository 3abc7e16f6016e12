# -*- test-case-name: tests.loopback.test_cm,tests.managers.test_tickets -*-
"""
The ProtoGENI component manager API, version 2 calling convention, on the
island aggregate: served at C{/protogeni/xmlrpc/cm/2.0} (and
C{/protogeni/xmlrpc/cm}) on the aggregate's own TLS port.

Every method takes one struct of named arguments and answers the struct
C{{code, value, output}} with the GENI code as an integer; a call that
parses never gets a fault. C{credentials} is a list of signed credential
documents (plain strings, as ProtoGENI clients send them, or AM API v3
structs); a sliver credential this aggregate issued (RedeemTicket's) is
accepted for its sliver's slice when its holder makes the call.

The state machine and the holds are L{geniam.managers.tickets}; the
signed documents are L{geniam.trust.tickets}.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from geniam.booking.values import Booking, UserKeys, urn_key
from geniam.errors import GeniCode, GeniError
from geniam.managers.aggregate import AggregateManager, manifest_booking, sliver_info
from geniam.managers.tickets import Promise, TicketManager, sliver_urn_of, ticket_urn_of
from geniam.managers.version import get_version_struct
from geniam.managers.arguments import parse_users, slot_argument
from geniam.protocols.signatures import Param, Signature, anything
from geniam.rspec.manifest import build_manifest
from geniam.rspec.request import parse_request
from geniam.timeutil import format_time, parse_time
from geniam.trust.context import MakeContext
from geniam.trust.gid import GID
from geniam.trust.tickets import SLIVER_TYPE, SliverGrant, looks_like, read_sliver_credential, sign_sliver_credential
from geniam.urn import parse_urn

CM_PATHS = ("/protogeni/xmlrpc/cm/2.0", "/protogeni/xmlrpc/cm")
"""Where the component manager API is served."""

CM_API_VERSION = 2.0

METHODS = (
    "GetVersion",
    "GetTicket",
    "RedeemTicket",
    "UpdateSliver",
    "ReleaseTicket",
    "DeleteSliver",
    "DeleteSlice",
    "Resolve",
    "SliverStatus",
    "RenewSlice",
)

CM_SIGNATURES: Mapping[str, Signature] = MappingProxyType(
    {name: Signature((Param("args", anything, default=dict),)) for name in METHODS}
)
"""Each method takes one struct of named arguments (checked by the method itself)."""


def cm_struct(code: GeniCode, value: Any, output: str = "") -> dict[str, Any]:
    """The component manager's reply: C{{code, value, output}} with an integer code."""
    return {"code": int(code), "value": "" if value is None else value, "output": output}


@dataclass(frozen=True)
class Caller:
    """Who a call acts for once authorised: the user, their e-mail address, and when the permission ends."""

    user_urn: str
    email: str
    expires: float


def _args(value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise GeniError(GeniCode.BADARGS, "the component manager takes one struct of named arguments")
    return value


def _string(args: Mapping[str, Any], name: str, required: bool = True) -> str | None:
    value = args.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise GeniError(GeniCode.BADARGS, f"argument {name} must be a non-empty string")
    return value


def _keys(value: object, user_urn: str) -> tuple[UserKeys, ...]:
    """ProtoGENI's C{keys} (a list of C{{login?, type, key}}) as the island's users, validated as C{geni_users} are."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise GeniError(GeniCode.BADARGS, "keys must be a list of {type, key} structs")
    keys = []
    for index, entry in enumerate(value):
        if not isinstance(entry, dict) or not isinstance(entry.get("key"), str):
            raise GeniError(GeniCode.BADARGS, f"keys[{index}] must be a struct with a key string")
        if entry.get("type", "ssh") != "ssh":
            raise GeniError(GeniCode.BADARGS, f"keys[{index}]: only ssh keys are supported")
        keys.append(entry["key"].strip())
    return parse_users([{"urn": user_urn, "keys": keys}]) if keys else ()


class ComponentManager:
    """
    The ten component manager methods for one island.

    @param tickets: the island's ticket manager.
    @param aggregate: the island's AM API v3 manager (for the manifests).
    @param contexts: builds a call's context from the TLS peer and its credentials.
    @param clock: the reactor's clock.
    """

    log = Logger()

    def __init__(self, tickets: TicketManager, aggregate: AggregateManager, contexts: MakeContext, clock: IReactorTime) -> None:
        self.tickets = tickets
        self.aggregate = aggregate
        self._contexts = contexts
        self._clock = clock

    def __getattr__(self, name: str) -> Any:
        if name in METHODS:
            handler = getattr(self, f"_cm_{name}")

            async def call(peer: GID, args: object) -> dict[str, Any]:
                try:
                    value, output = await handler(peer, _args(args))
                except GeniError as e:
                    self.log.info("CM {method}: {code} {output}", method=name, code=e.code.name, output=e.output)
                    return cm_struct(e.code, e.value, e.output)
                return cm_struct(GeniCode.SUCCESS, value, output)

            return call
        raise AttributeError(name)

    # Authorisation.

    async def _authorize(self, peer: GID, args: Mapping[str, Any], method: str, slice_urn: str) -> Caller:
        credentials = args.get("credentials", [])
        if not isinstance(credentials, list):
            raise GeniError(GeniCode.BADARGS, "credentials must be a list of signed credentials")
        now = self._clock.seconds()
        others = []
        for credential in credentials:
            if looks_like(credential, SLIVER_TYPE):
                grant = read_sliver_credential(credential, self.tickets.identity.gid, now)
                if urn_key(grant.slice_urn) == urn_key(slice_urn) and urn_key(grant.holder_urn) == urn_key(peer.urn or ""):
                    return Caller(grant.holder_urn, peer.email or "", grant.expires)
            else:
                others.append(credential)
        verdict = await self._contexts(peer, others).authorize(method, slice_urn)
        user = verdict.user
        if user is None or not user.urn:
            raise GeniError(GeniCode.FORBIDDEN, f"{verdict.caller_urn} acts for no user: a ticket needs one")
        return Caller(str(user.urn), user.email or "", verdict.expires)

    def _slice(self, args: Mapping[str, Any]) -> str:
        return str(parse_urn(_string(args, "slice_urn"), "slice"))

    async def _promise(self, args: Mapping[str, Any], caller: Caller) -> Promise:
        rspec = args.get("rspec")
        if not isinstance(rspec, str):
            raise GeniError(GeniCode.BADARGS, "argument rspec must be the request RSpec as a string")
        request = parse_request(rspec, self.aggregate.info.urn)
        if request.slot is None:
            raise GeniError(GeniCode.BADARGS, "the request names no time slot: put <island:slot start end/> in it")
        return Promise(
            slot_argument(*request.slot),
            caller.user_urn,
            caller.email,
            caller.expires,
            request.controller,
            request.vlan_map or None,
        )

    async def _manifest(self, bookings: list[Booking]) -> str:
        resources = await self.aggregate.island_resources()
        return build_manifest(resources, [manifest_booking(b) for b in bookings], self._clock.seconds())

    # The API.

    async def _cm_GetVersion(self, peer: GID, args: Mapping[str, Any]) -> tuple[Any, str]:
        version = get_version_struct(self.aggregate.info.url, self.aggregate.info.urn, "geni_disjoint")["value"]
        version.update({"api": CM_API_VERSION, "urn": self.aggregate.info.urn, "geniam_cm_methods": list(METHODS)})
        version["geniam_ticket_ttl"] = self.tickets.ticket_ttl
        return version, ""

    async def _cm_GetTicket(self, peer: GID, args: Mapping[str, Any]) -> tuple[Any, str]:
        slice_urn = self._slice(args)
        caller = await self._authorize(peer, args, "GetTicket", slice_urn)
        hold, document = await self.tickets.get_ticket(slice_urn, await self._promise(args, caller))
        return document, f"ticket {ticket_urn_of(hold)} must be redeemed before {format_time(hold.allocation_expires)}"

    async def _cm_RedeemTicket(self, peer: GID, args: Mapping[str, Any]) -> tuple[Any, str]:
        slice_urn = self._slice(args)
        caller = await self._authorize(peer, args, "RedeemTicket", slice_urn)
        users = _keys(args.get("keys"), caller.user_urn)
        sliver = await self.tickets.redeem_ticket(slice_urn, args.get("ticket"), users, caller.expires)
        credential = sign_sliver_credential(
            self.tickets.identity,
            SliverGrant(caller.user_urn, sliver.slice_urn, sliver.sliver_urn, min(sliver.slot.end, caller.expires)),
        )
        return [credential, await self._manifest([sliver])], ""

    async def _cm_ReleaseTicket(self, peer: GID, args: Mapping[str, Any]) -> tuple[Any, str]:
        slice_urn = self._slice(args)
        await self._authorize(peer, args, "ReleaseTicket", slice_urn)
        await self.tickets.release_ticket(slice_urn, args.get("ticket"))
        return True, ""

    async def _sliver_slice(self, args: Mapping[str, Any]) -> tuple[str, str | None]:
        """The slice and sliver a call names: C{sliver_urn} (its slice looked up) or C{slice_urn}."""
        sliver_urn = _string(args, "sliver_urn", required=False)
        if sliver_urn is None:
            return self._slice(args), None
        parse_urn(sliver_urn, "sliver")
        [booking] = await self.tickets.island.lookup([sliver_urn])
        return booking.slice_urn, sliver_urn

    async def _cm_UpdateSliver(self, peer: GID, args: Mapping[str, Any]) -> tuple[Any, str]:
        slice_urn, sliver_urn = await self._sliver_slice(args)
        caller = await self._authorize(peer, args, "UpdateSliver", slice_urn)
        hold, document = await self.tickets.update_sliver(slice_urn, sliver_urn, await self._promise(args, caller))
        return document, f"ticket {ticket_urn_of(hold)}: redeem it to apply the update, release it to keep the sliver as it is"

    async def _cm_DeleteSliver(self, peer: GID, args: Mapping[str, Any]) -> tuple[Any, str]:
        if args.get("sliver_urn") is None:
            raise GeniError(GeniCode.BADARGS, "argument sliver_urn must be a non-empty string")
        slice_urn, sliver_urn = await self._sliver_slice(args)
        caller = await self._authorize(peer, args, "DeleteSliver", slice_urn)
        hold, document = await self.tickets.delete_sliver(slice_urn, sliver_urn, caller.expires)
        return document, f"sliver deleted; ticket {ticket_urn_of(hold)} promises the rest of its slot"

    async def _cm_DeleteSlice(self, peer: GID, args: Mapping[str, Any]) -> tuple[Any, str]:
        slice_urn = self._slice(args)
        await self._authorize(peer, args, "DeleteSlice", slice_urn)
        await self.tickets.delete_slice(slice_urn)
        return True, ""

    async def _cm_Resolve(self, peer: GID, args: Mapping[str, Any]) -> tuple[Any, str]:
        urn = parse_urn(_string(args, "urn"))
        if urn.type == "slice":
            slice_urn = str(urn)
            await self._authorize(peer, args, "Resolve", slice_urn)
            view = await self.tickets.view(slice_urn)
            value: dict[str, Any] = {"urn": slice_urn, "state": view.state.value}
            if view.sliver is not None:
                value["sliver_urn"] = view.sliver.sliver_urn
            if view.ticket is not None:
                value["ticket_urn"] = ticket_urn_of(view.ticket)
            return value, ""
        if urn.type not in ("sliver", "ticket"):
            raise GeniError(GeniCode.BADARGS, f"Resolve takes a slice, sliver or ticket URN, not a {urn.type} URN")
        hold_urn = str(urn) if urn.type == "sliver" else sliver_urn_of(str(urn))
        booking = await self._booking(hold_urn)
        await self._authorize(peer, args, "Resolve", booking.slice_urn)
        view = await self.tickets.view(booking.slice_urn)
        if urn.type == "ticket":
            if view.ticket is None or urn_key(view.ticket.sliver_urn) != urn_key(hold_urn):
                raise GeniError(GeniCode.SEARCHFAILED, f"{urn} is not a valid ticket")
            return self.tickets.document(view.ticket), ""
        if not any(urn_key(s.sliver_urn) == urn_key(hold_urn) for s in view.slivers):
            raise GeniError(GeniCode.SEARCHFAILED, f"{urn} is not a live sliver")
        return {
            "urn": booking.sliver_urn,
            "slice_urn": booking.slice_urn,
            "manifest": await self._manifest([booking]),
            "components": list((await self.tickets.island.inventory()).switches),
            "expires": format_time(booking.slot.end),
            **sliver_info(booking),
        }, ""

    async def _booking(self, sliver_urn: str) -> Booking:
        try:
            booking = await self.tickets.island.booking_or_hold(sliver_urn)
        except GeniError as e:
            raise GeniError(GeniCode.SEARCHFAILED, e.output) from None
        return booking

    async def _cm_SliverStatus(self, peer: GID, args: Mapping[str, Any]) -> tuple[Any, str]:
        slice_urn = self._slice(args)
        await self._authorize(peer, args, "SliverStatus", slice_urn)
        view = await self.tickets.view(slice_urn)
        if not view.slivers:
            raise GeniError(GeniCode.SEARCHFAILED, f"slice {slice_urn} has no sliver here")
        details = {b.sliver_urn: {**sliver_info(b, with_error=True), "status": _status(b)} for b in view.slivers}
        statuses = {d["status"] for d in details.values()}
        overall = "ready" if statuses == {"ready"} else ("failed" if "failed" in statuses else "notready")
        return {"state": "started" if overall == "ready" else "stopped", "status": overall, "details": details}, ""

    async def _cm_RenewSlice(self, peer: GID, args: Mapping[str, Any]) -> tuple[Any, str]:
        slice_urn = self._slice(args)
        expiration = args.get("expiration")
        if not isinstance(expiration, str):
            raise GeniError(GeniCode.BADARGS, "argument expiration must be an RFC 3339 time")
        end = parse_time(expiration)
        caller = await self._authorize(peer, args, "RenewSlice", slice_urn)
        view = await self.tickets.view(slice_urn)
        if not view.slivers:
            raise GeniError(GeniCode.SEARCHFAILED, f"slice {slice_urn} has no sliver here")
        renewed = await self.tickets.island.renew(list(view.slivers), end, caller.expires)
        return [sliver_info(b) for b in renewed], ""


def _status(booking: Booking) -> str:
    """ProtoGENI's sliver status word for a booking."""
    return {"geni_ready": "ready", "geni_failed": "failed"}.get(sliver_info(booking)["geni_operational_status"], "notready")
