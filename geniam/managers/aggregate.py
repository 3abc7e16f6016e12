# -*- test-case-name: tests.loopback.test_am -*-
"""
The GENI AM API v3 on top of an island resource manager.

L{AggregateManager} is the object the XML-RPC resource dispatches to: each
method takes the call's context (L{CallContext}: the verified caller and
what it presented) and the call's other arguments, reads the options
strictly, asks the context for a L{Grant} once it knows the slice, asks
the resource manager, and answers with the GENI return struct. Expected
failures are raised as L{GeniError}; the transport turns them into structs.

geniam-specific options (all optional):
  - C{geniam_controller} (Provision): the OpenFlow controller C{host:port}.
  - C{geniam_vlans} (Provision): the VLAN map C{{testbed VLAN: island VLAN}}.
  - C{geniam_start_time}, C{geniam_end_time} (Provision): the slot, RFC 3339.
    On the first Provision they must equal the allocated slot (or be
    absent); on a provisioned sliver they move the slot if it is free.
Sliver info carries C{geniam_slot_start} and C{geniam_slot_end}.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Sequence

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from geniam.booking.values import AllocationState, Booking, OperationalState, Slot
from geniam.managers.sliverstatus import geni_allocation_status, geni_expires, geni_operational_status
from geniam.errors import GeniCode, GeniError, success_struct
from geniam.interfaces import IResourceManager
from geniam.managers.arguments import (
    Target,
    flag,
    optional_time,
    options_struct,
    rspec_version,
    slot_argument,
    string_option,
    target_urns,
    users_option,
    vlans_option,
)
from geniam.managers.inventory import KnownInventory
from geniam.managers.transactionapi import RETENTION_FIELD, TRANSACTION_METHODS, TRANSACTIONS_EXTENSION, TransactionMethods
from geniam.managers.transactions import TransactionManager
from geniam.gatewayconfig import ControllerPolicy, limits_struct
from geniam.managers.advertising import AdvertisementCache
from geniam.managers.version import SUPPORTED_RSPECS, get_version_struct
from geniam.protocols.marshal import EncodedResponse, encoded_response
from geniam.rspec.compression import compress_rspec
from geniam.rspec.manifest import ManifestBooking, ManifestUser, build_manifest
from geniam.rspec.request import parse_request
from geniam.rspec.resources import IslandResources
from geniam.timeutil import format_time, parse_time
from geniam.trust.context import CallContext
from geniam.trust.gid import GID
from geniam.trust.verdicts import Grant
from geniam.urn import parse_urn

ACTIONS = ("geni_start", "geni_stop", "geni_restart", "geni_update_users")


@dataclass(frozen=True)
class AggregateInfo:
    """
    How the aggregate describes itself.

    @ivar urn: the aggregate's URN (C{...+authority+am}).
    @ivar url: the URL clients reach the v3 API at.
    @ivar gateway_host: the host users log in to during their slot, if any.
    """

    urn: str
    url: str
    gateway_host: str | None = None


def sliver_info(booking: Booking, with_error: bool = False) -> dict[str, Any]:
    """The AM API v3 per-sliver struct of a booking."""
    info: dict[str, Any] = {
        "geni_sliver_urn": booking.sliver_urn,
        "geni_allocation_status": geni_allocation_status(booking),
        "geni_operational_status": geni_operational_status(booking),
        "geni_expires": format_time(geni_expires(booking)),
        "geniam_slot_start": format_time(booking.slot.start),
        "geniam_slot_end": format_time(booking.slot.end),
    }
    if booking.error or with_error:
        info["geni_error"] = booking.error
    return info


def waiting_note(bookings: Sequence[Booking], now: float) -> str:
    """
    Say which provisioned, not stopped bookings wait for their slot, and
    when their configuration will be applied (the C{output} of Status and
    of PerformOperationalAction); empty when none waits.
    """
    notes = [
        f"sliver {b.sliver_urn} waits for its slot: the configuration is applied at {format_time(b.slot.start)}"
        for b in bookings
        if b.allocation_state is AllocationState.PROVISIONED
        and b.operational_state is not OperationalState.STOPPED
        and now < b.slot.start
    ]
    return "; ".join(notes)


def booking_owner(grant: Grant) -> GID:
    """
    The user a booking is made for: the user behind the call
    (L{Grant.user}).

    @raise GeniError: FORBIDDEN when no user stands behind the call.
    """
    if grant.user is None:
        raise GeniError(GeniCode.FORBIDDEN, f"{grant.caller_urn} acts for no user: a booking needs one")
    return grant.user


def manifest_booking(booking: Booking) -> ManifestBooking:
    """The manifest's view of a booking."""
    return ManifestBooking(
        sliver_urn=booking.sliver_urn,
        start=booking.slot.start,
        end=booking.slot.end,
        controller=booking.controller,
        vlan_map=dict(booking.vlan_map),
        users=tuple(ManifestUser(u.urn, tuple(u.keys)) for u in booking.users),
        allocation_status=geni_allocation_status(booking),
        operational_status=geni_operational_status(booking),
        expires=geni_expires(booking),
    )


class AggregateManager(TransactionMethods):
    """
    The ten AM API v3 methods for one island, and the four transaction
    methods (L{TransactionMethods}) when it has a L{TransactionManager}.

    While a slice has a transaction open, plain Allocate, Provision, Renew
    and Delete of that slice answer INPROGRESS; Status and Describe show
    the slice as it was (holds are no slivers).

    @param resource_manager: the island's L{IResourceManager}.
    @param info: the aggregate's URN and URL.
    @param clock: the reactor's clock.
    @param transactions: the island's transactions, if served.
    """

    log = Logger()

    def __init__(
        self,
        resource_manager: IResourceManager,
        info: AggregateInfo,
        clock: IReactorTime,
        transactions: TransactionManager | None = None,
    ) -> None:
        parse_urn(info.urn)
        self.rm = resource_manager
        self.transactions = transactions
        self.info = info
        self._clock = clock
        self._resources: tuple[KnownInventory, IslandResources] | None = None
        self._version: tuple[dict[str, Any], EncodedResponse] | None = None
        self._version_inputs: tuple[Any, ...] | None = None
        # An open transaction changes nothing visible: its holds are not shown as booked.
        booked = transactions.island.committed_slots if transactions is not None else resource_manager.booked_slots
        self.advertisements = AdvertisementCache(
            resource_manager, self._island, clock, booked=booked, maintenance=getattr(resource_manager, "maintenance_windows", None)
        )

    # Helpers.

    async def _island(self) -> IslandResources:
        inventory = await self.rm.inventory()
        if self._resources is None or self._resources[0] != inventory:
            resources = IslandResources.create(
                self.info.urn, inventory.switches, inventory.links, gateway_host=self.info.gateway_host
            )
            self._resources = (inventory, resources)
        return self._resources[1]

    async def island_resources(self) -> IslandResources:
        """The island's resources as advertised (rebuilt when its inventory changes)."""
        return await self._island()

    async def _resolve(self, urns: Any, allow_empty: bool = False) -> tuple[str, list[Booking]]:
        """
        Read C{urns} and find the live bookings it names.

        @return: the slice URN and its bookings (all of the slice's live
            ones for a slice URN).
        @raise GeniError: SEARCHFAILED for unknown, ended or deleted slivers
            (and a slice with nothing live here unless C{allow_empty}).
        """
        target: Target = target_urns(urns)
        if target.slice_urn is not None:
            # Holds (tickets of the component manager API) are promises, not slivers.
            bookings = [b for b in await self.rm.slice_bookings(target.slice_urn, True) if b.is_sliver]
            if not bookings and not allow_empty:
                raise GeniError(GeniCode.SEARCHFAILED, f"slice {target.slice_urn} has no live slivers here")
            return target.slice_urn, list(bookings)
        bookings = list(await self.rm.lookup(list(target.sliver_urns)))
        for booking in bookings:
            if not booking.is_sliver:
                raise GeniError(GeniCode.SEARCHFAILED, f"{booking.sliver_urn} is a ticket's hold, not a sliver")
        slices = {parse_urn(b.slice_urn).key for b in bookings}
        if len(slices) > 1:
            raise GeniError(GeniCode.BADARGS, "the slivers named belong to different slices")
        return bookings[0].slice_urn, bookings

    async def _each(
        self,
        bookings: Sequence[Booking],
        best_effort: bool,
        all_at_once: Callable[[list[Booking]], Awaitable[list[Booking]]],
    ) -> list[dict[str, Any]]:
        """
        Apply a change to C{bookings}: all or nothing, or one by one with a
        per-sliver C{geni_error} when C{best_effort}.
        """
        if not bookings:
            return []
        if not best_effort:
            return [sliver_info(b) for b in await all_at_once(list(bookings))]
        results = []
        for booking in bookings:
            try:
                (changed,) = await all_at_once([booking])
                results.append(sliver_info(changed))
            except GeniError as e:
                info = sliver_info(booking)
                info["geni_error"] = f"{e.code.name}: {e.output}"
                results.append(info)
        return results

    # The API.

    async def GetVersion(self, context: CallContext, options: dict[str, Any] | None = None) -> dict[str, Any]:
        """
        Describe this aggregate; needs no credential. Besides the standard
        fields: C{geniam_actions}, C{geniam_limits} (the most VLAN entries,
        users, keys per user and characters per key a request may carry) and
        C{geniam_controller_networks} (where controllers may be: C{public}
        and the networks the operator allowed) and C{geniam_booking_policy}
        (the booking policy's limits in seconds, 0 for off; see
        L{geniam.managers.policy.BookingPolicy}). The same answer for every
        caller, encoded once while it stays the same.
        """
        booking_policy = getattr(self.rm, "booking_policy", None)
        policy = getattr(self.rm, "controller_policy", None)
        # What the answer depends on (frozen policies, compared by value): while it stays, so does the answer.
        inputs = (booking_policy, policy, self.transactions.ttl if self.transactions is not None else None)
        if self._version is not None and self._version_inputs == inputs:
            return self._version[1]
        self._version_inputs = inputs
        extensions: dict[str, Any] = {}
        if booking_policy is not None:
            extensions["geniam_booking_policy"] = booking_policy.as_struct()
        networks = ["public", *(str(n) for n in policy.networks)] if isinstance(policy, ControllerPolicy) else ["public"]
        if self.transactions is not None:
            extensions[TRANSACTIONS_EXTENSION] = {
                "methods": list(TRANSACTION_METHODS),
                "ttl": int(self.transactions.ttl),
                RETENTION_FIELD: int(self.transactions.outcome_retention),
            }
        struct = get_version_struct(
            self.info.url,
            self.info.urn,
            "geni_disjoint",
            geniam_actions=list(ACTIONS),
            geniam_limits=limits_struct(),
            geniam_controller_networks=networks,
            **extensions,
        )
        # The same answer for every caller: encoded once, again only when it changes (a new policy, say).
        if self._version is None or self._version[0] != struct:
            self._version = (struct, encoded_response(struct))
        return self._version[1]

    async def _refuse_in_transaction(self, slice_urn: str, method: str) -> None:
        if self.transactions is not None:
            await self.transactions.refuse_if_open(slice_urn, method)

    async def ListResources(self, context: CallContext, options: dict[str, Any]) -> dict[str, Any]:
        """The island's advertisement: switches, links and booked slots."""
        options = options_struct(options)
        await context.authorize("ListResources", None, options)
        if "geni_slice_urn" in options:
            raise GeniError(GeniCode.BADARGS, "geni_slice_urn is not an AM API v3 option; use Describe")
        rspec_version(options, SUPPORTED_RSPECS)
        available = flag(options, "geni_available")
        compressed = flag(options, "geni_compressed")
        return await self.advertisements.answer(available, compressed)

    async def Describe(self, context: CallContext, urns: Any, options: dict[str, Any]) -> dict[str, Any]:
        """The manifest and sliver states of a slice or some of its slivers."""
        options = options_struct(options)
        rspec_version(options, SUPPORTED_RSPECS)
        compressed = flag(options, "geni_compressed")
        slice_urn, bookings, _ = await self._resolve_authorized(context, urns, "Describe", options, True)
        manifest = build_manifest(await self._island(), [manifest_booking(b) for b in bookings], self._clock.seconds())
        return success_struct(
            {
                "geni_rspec": compress_rspec(manifest) if compressed else manifest,
                "geni_urn": slice_urn,
                "geni_slivers": [sliver_info(b) for b in bookings],
            }
        )

    async def _resolve_authorized(
        self,
        context: CallContext,
        urns: Any,
        method: str,
        options: dict[str, Any],
        allow_empty: bool = False,
    ) -> tuple[str, list[Booking], Grant]:
        """
        Ask the context for a grant on the slice that C{urns} names and
        find its bookings. For sliver URNs the slice is found first.
        """
        target = target_urns(urns)
        if target.slice_urn is not None:
            grant = await context.authorize(method, target.slice_urn, options)
            slice_urn, bookings = await self._resolve(urns, allow_empty)
            return slice_urn, bookings, grant
        slice_urn, bookings = await self._resolve(urns, allow_empty)
        grant = await context.authorize(method, slice_urn, options)
        return slice_urn, bookings, grant

    async def Allocate(
        self, context: CallContext, slice_urn: Any, rspec: Any, options: dict[str, Any]
    ) -> dict[str, Any]:
        """Book the island for the slot the request names (temporary until provisioned)."""
        options = options_struct(options)
        slice_urn = str(parse_urn(slice_urn, "slice"))
        grant = await context.authorize("Allocate", slice_urn, options)
        await self._refuse_in_transaction(slice_urn, "Allocate")
        if not isinstance(rspec, str):
            raise GeniError(GeniCode.BADARGS, "rspec must be a string")
        request = parse_request(rspec, self.info.urn)
        slot = self._requested_slot(request.slot, options)
        owner = booking_owner(grant)
        booking = await self.rm.allocate(
            slice_urn,
            str(owner.urn),
            owner.email or "",
            slot,
            grant.expires,
            request.controller,
            request.vlan_map or None,
        )
        manifest = build_manifest(await self._island(), [manifest_booking(booking)], self._clock.seconds(), request=rspec)
        return success_struct({"geni_rspec": manifest, "geni_slivers": [sliver_info(booking)]})

    def _requested_slot(self, from_rspec: tuple[float, float] | None, options: dict[str, Any]) -> Slot:
        start = optional_time(options, "geni_start_time")
        end = optional_time(options, "geni_end_time")
        if from_rspec is not None:
            if (start is not None and start != from_rspec[0]) or (end is not None and end != from_rspec[1]):
                raise GeniError(
                    GeniCode.BADARGS, "the slot in the request RSpec differs from geni_start_time/geni_end_time"
                )
            return slot_argument(*from_rspec)
        if end is None:
            raise GeniError(
                GeniCode.BADARGS,
                "no time slot: put <island:slot start end/> in the request RSpec "
                "(see 'geniam rspec request') or give geni_start_time and geni_end_time",
            )
        return slot_argument(self._clock.seconds() if start is None else start, end)

    async def Renew(
        self, context: CallContext, urns: Any, expiration_time: Any, options: dict[str, Any]
    ) -> dict[str, Any]:
        """Move the end of the slivers' slots (conflict-checked)."""
        options = options_struct(options)
        end = parse_time(expiration_time)
        best_effort = flag(options, "geni_best_effort")
        alap = flag(options, "geni_extend_alap")
        slice_urn, bookings, grant = await self._resolve_authorized(context, urns, "Renew", options)
        await self._refuse_in_transaction(slice_urn, "Renew")

        async def renew(chosen: list[Booking]) -> list[Booking]:
            return list(await self.rm.renew(chosen, end, grant.expires, alap))

        return success_struct(await self._each(bookings, best_effort, renew))

    async def Provision(self, context: CallContext, urns: Any, options: dict[str, Any]) -> dict[str, Any]:
        """Approve allocated slivers with the users' parameters, or update provisioned ones."""
        options = options_struct(options)
        rspec_version(options, SUPPORTED_RSPECS)
        best_effort = flag(options, "geni_best_effort")
        users = users_option(options)
        controller = string_option(options, "geniam_controller")
        vlans = vlans_option(options)
        start = optional_time(options, "geniam_start_time")
        end = optional_time(options, "geniam_end_time")
        slice_urn, bookings, grant = await self._resolve_authorized(context, urns, "Provision", options)
        await self._refuse_in_transaction(slice_urn, "Provision")

        async def provision(chosen: list[Booking]) -> list[Booking]:
            slot = None
            if start is not None or end is not None:
                current = chosen[0].slot
                slot = slot_argument(current.start if start is None else start, current.end if end is None else end)
            return list(await self.rm.provision(chosen, users, controller, vlans, slot, grant.expires))

        infos = await self._each(bookings, best_effort, provision)
        done = {i["geni_sliver_urn"] for i in infos if i["geni_allocation_status"] == "geni_provisioned"}
        current = [b for b in await self.rm.lookup([b.sliver_urn for b in bookings], True) if b.sliver_urn in done]
        manifest = build_manifest(await self._island(), [manifest_booking(b) for b in current], self._clock.seconds())
        return success_struct({"geni_rspec": manifest, "geni_slivers": infos})

    async def Status(self, context: CallContext, urns: Any, options: dict[str, Any]) -> dict[str, Any]:
        """The allocation and operational state of each sliver."""
        options = options_struct(options)
        slice_urn, bookings, _ = await self._resolve_authorized(context, urns, "Status", options)
        return success_struct(
            {"geni_urn": slice_urn, "geni_slivers": [sliver_info(b, with_error=True) for b in bookings]},
            waiting_note(bookings, self._clock.seconds()),
        )

    async def PerformOperationalAction(
        self, context: CallContext, urns: Any, action: Any, options: dict[str, Any]
    ) -> dict[str, Any]:
        """geni_start, geni_stop, geni_restart or geni_update_users."""
        options = options_struct(options)
        if action not in ACTIONS:
            raise GeniError(
                GeniCode.UNSUPPORTED, f"unsupported action {str(action)[:64]!r}; supported: {', '.join(ACTIONS)}"
            )
        best_effort = flag(options, "geni_best_effort")
        users = users_option(options)
        if action == "geni_update_users" and users is None:
            raise GeniError(GeniCode.BADARGS, "geni_update_users needs the geni_users option")
        _, bookings, _ = await self._resolve_authorized(context, urns, "PerformOperationalAction", options)

        acted: list[Booking] = []

        async def act(chosen: list[Booking]) -> list[Booking]:
            changed = list(await self.rm.perform_action(chosen, action, users))
            acted.extend(changed)
            return changed

        infos = await self._each(bookings, best_effort, act)
        note = waiting_note(acted, self._clock.seconds()) if action in ("geni_start", "geni_restart") else ""
        return success_struct(infos, note)

    async def Delete(self, context: CallContext, urns: Any, options: dict[str, Any]) -> dict[str, Any]:
        """
        Release the slivers (resetting the gateway first if their slot has
        started). Deleting a slice with nothing live here succeeds with an
        empty list, so Delete can be repeated safely.
        """
        options = options_struct(options)
        best_effort = flag(options, "geni_best_effort")
        slice_urn, bookings, _ = await self._resolve_authorized(context, urns, "Delete", options, True)
        await self._refuse_in_transaction(slice_urn, "Delete")

        async def delete(chosen: list[Booking]) -> list[Booking]:
            return list(await self.rm.delete(chosen))

        infos = await self._each(bookings, best_effort, delete)
        return success_struct(
            [
                {
                    key: value
                    for key, value in info.items()
                    if key in ("geni_sliver_urn", "geni_allocation_status", "geni_expires", "geni_error")
                }
                for info in infos
            ]
        )

    async def Shutdown(self, context: CallContext, slice_urn: Any, options: dict[str, Any]) -> dict[str, Any]:
        """Stop the slice at once and refuse further changes to it."""
        options = options_struct(options)
        slice_urn = str(parse_urn(slice_urn, "slice"))
        await context.authorize("Shutdown", slice_urn, options)
        await self.rm.shutdown(slice_urn)
        return success_struct(True)

