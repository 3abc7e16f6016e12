# -*- test-case-name: tests.loopback.test_transactions -*-
"""
The four PG-A transaction methods on the AM API v3 endpoint.

L{TransactionMethods} is mixed into L{geniam.managers.aggregate.AggregateManager}:
C{BeginTransaction(slice_urn, credentials, rspec, users, options)},
C{UpdateTransaction} (the same), C{CommitTransaction(slice_urn,
credentials, options)} and C{AbortTransaction} (the same). The RSpec of
Begin and Update is the slice's whole desired state on this island (its
C{island:slot}, controller and VLAN map; a request naming no slot desires
nothing here, so the commit deletes every sliver of the slice). Begin and
Update answer like Allocate (the request annotated as a manifest, the
slivers the commit would produce) plus C{commit_by} (RFC 3339) and the
transaction's identifier C{geniam_transaction}; Commit answers like
Allocate (with C{geniam_transaction}); Abort answers C{true}.

Commit takes the option C{geniam_transaction}: only that transaction is
committed, and a Commit retried after it was committed answers the same
again, one retried after it was aborted answers ERROR saying when and
why (see L{geniam.managers.transactions}). Abort takes it too: only that
transaction is aborted, an Abort retried after it was aborted answers
C{true} again, one naming a committed transaction answers ERROR saying
when it was committed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from twisted.internet.interfaces import IReactorTime

from geniam.booking.transactions import DesiredSlot
from geniam.booking.values import Booking
from geniam.errors import GeniCode, GeniError, success_struct
from geniam.gatewayconfig import validate_vlan_map
from geniam.managers.arguments import options_struct, parse_users, validate_controller
from geniam.managers.transactions import TRANSACTION_OPTION, Proposal, TransactionManager
from geniam.protocols.signatures import TRANSACTION_SIGNATURES
from geniam.rspec.manifest import build_manifest
from geniam.rspec.request import parse_request
from geniam.timeutil import format_time
from geniam.trust.context import CallContext
from geniam.urn import parse_urn

TRANSACTIONS_EXTENSION = "geniam_transactions"
"""The GetVersion member naming the transaction methods an aggregate serves (its presence advertises them)."""

RETENTION_FIELD = "outcome_retention"
"""The member of L{TRANSACTIONS_EXTENSION} saying how long, in seconds, how a transaction ended is remembered."""

TRANSACTION_METHODS: tuple[str, ...] = tuple(TRANSACTION_SIGNATURES)
"""The four method names, as advertised."""


MAX_TRANSACTION_ID = 128


def transaction_option(options: dict[str, Any]) -> str | None:
    """
    The C{geniam_transaction} option, or None.

    @raise GeniError: BADARGS unless it is a non-empty string of printable
        characters, at most L{MAX_TRANSACTION_ID} long.
    """
    value = options.get(TRANSACTION_OPTION)
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_TRANSACTION_ID or not value.isprintable():
        raise GeniError(
            GeniCode.BADARGS, f"option {TRANSACTION_OPTION} must be a transaction identifier as BeginTransaction answered it"
        )
    return value


class TransactionMethods:
    """
    BeginTransaction, UpdateTransaction, CommitTransaction and
    AbortTransaction for an aggregate manager with a L{TransactionManager}
    in C{transactions}.
    """

    transactions: TransactionManager | None
    _clock: IReactorTime
    info: Any
    rm: Any
    # Provided by the aggregate manager this is mixed into:
    _island: Callable[[], Awaitable[Any]]
    _requested_slot: Callable[[tuple[float, float] | None, dict[str, Any]], Any]

    def _transaction_manager(self) -> TransactionManager:
        if self.transactions is None:
            raise GeniError(GeniCode.UNSUPPORTED, "this aggregate does not serve transactions")
        return self.transactions

    def _desired(self, rspec: Any, users: Any, options: dict[str, Any]) -> list[DesiredSlot]:
        if not isinstance(rspec, str):
            raise GeniError(GeniCode.BADARGS, "rspec must be a string")
        request = parse_request(rspec, self.info.urn)
        if request.slot is None and "geni_end_time" not in options:
            return []
        slot = self._requested_slot(request.slot, options)
        policy = getattr(self.rm, "controller_policy", None)
        return [
            DesiredSlot(
                slot,
                validate_controller(request.controller, policy),
                validate_vlan_map(request.vlan_map) if request.vlan_map else {},
                parse_users(users) if users else (),
            )
        ]

    async def _proposal_struct(self, proposal: Proposal, rspec: str) -> dict[str, Any]:
        from geniam.managers.aggregate import manifest_booking, sliver_info

        manifest = build_manifest(
            await self._island(), [manifest_booking(b) for b in proposal.slivers], self._clock.seconds(), request=rspec
        )
        return success_struct(
            {
                "geni_rspec": manifest,
                "geni_slivers": [sliver_info(b) for b in proposal.slivers],
                "commit_by": format_time(proposal.transaction.commit_by),
                TRANSACTION_OPTION: proposal.transaction.transaction_id,
            }
        )

    async def _toward(self, method: str, context: CallContext, slice_urn: Any, rspec: Any, users: Any, options: Any) -> dict[str, Any]:
        """Begin or Update: read the desired state, authorise, and answer with the proposal."""
        from geniam.managers.aggregate import booking_owner

        options = options_struct(options)
        slice_urn = str(parse_urn(slice_urn, "slice"))
        grant = await context.authorize(method, slice_urn, options)
        manager = self._transaction_manager()
        desired = self._desired(rspec, users, options)
        if method == "BeginTransaction":
            owner = booking_owner(grant)
            proposal = await manager.begin(slice_urn, str(owner.urn), owner.email or "", desired, grant.expires, rspec)
        else:
            proposal = await manager.update(slice_urn, desired, grant.expires, rspec)
        return await self._proposal_struct(proposal, rspec)

    async def BeginTransaction(
        self, context: CallContext, slice_urn: Any, rspec: Any, users: Any, options: dict[str, Any]
    ) -> dict[str, Any]:
        """Begin a transaction towards the desired state C{rspec}; INPROGRESS in one."""
        return await self._toward("BeginTransaction", context, slice_urn, rspec, users, options)

    async def UpdateTransaction(
        self, context: CallContext, slice_urn: Any, rspec: Any, users: Any, options: dict[str, Any]
    ) -> dict[str, Any]:
        """Replace the desired state of the open transaction; ERROR outside one."""
        return await self._toward("UpdateTransaction", context, slice_urn, rspec, users, options)

    async def CommitTransaction(self, context: CallContext, slice_urn: Any, options: dict[str, Any]) -> dict[str, Any]:
        """Apply the desired state at once; answer like Allocate. ERROR outside a transaction."""
        from geniam.managers.aggregate import manifest_booking, sliver_info

        options = options_struct(options)
        slice_urn = str(parse_urn(slice_urn, "slice"))
        await context.authorize("CommitTransaction", slice_urn, options)
        transaction, slivers = await self._transaction_manager().commit(slice_urn, transaction_option(options))
        bookings: list[Booking] = list(slivers)
        manifest = build_manifest(
            await self._island(), [manifest_booking(b) for b in bookings], self._clock.seconds(), request=transaction.request or None
        )
        return success_struct(
            {
                "geni_rspec": manifest,
                "geni_slivers": [sliver_info(b) for b in bookings],
                TRANSACTION_OPTION: transaction.transaction_id,
            }
        )

    async def AbortTransaction(self, context: CallContext, slice_urn: Any, options: dict[str, Any]) -> dict[str, Any]:
        """Give the holds back, restoring the slice as before Begin; answer true. ERROR outside a transaction (or the one named)."""
        options = options_struct(options)
        slice_urn = str(parse_urn(slice_urn, "slice"))
        await context.authorize("AbortTransaction", slice_urn, options)
        return success_struct(await self._transaction_manager().abort(slice_urn, transaction_option(options)))
