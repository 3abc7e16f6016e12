# -*- test-case-name: tests.loopback.test_twophase,tests.managers.test_fedtransactions -*-
"""
The four PG-A transaction methods served by the slice manager, fanned out.

L{SliceTransactionMethods} is mixed into
L{geniam.managers.slice.SliceManager}, so a client can run its own
transaction across a federation:

  - C{BeginTransaction} and C{UpdateTransaction} split the request RSpec
    as Allocate does and send each aggregate its part (its whole desired
    state there); all or nothing is the client's to decide (it aborts);
    the answer is the merged manifest, the slivers joined, the earliest
    C{commit_by}, the aggregates' own transaction identifiers
    (C{geniam_transactions}: C{{aggregate URN: id}}) and one identifier
    for all of them (C{geniam_transaction},
    L{geniam.managers.fedtransactions}): Begin makes it, Update answers
    that of the slice's Begin here, with the aggregates it added;
  - C{CommitTransaction} and C{AbortTransaction} without either option go
    to every aggregate; one answering ERROR (no transaction of the slice
    there) is not counted as a failure when another one succeeded. With
    C{geniam_transaction} (the slice manager's identifier) or
    C{geniam_transactions} (the aggregates' own), they go to exactly the
    aggregates named, each with its own identifier, so a retry is answered
    as the aggregates answer theirs (the commit again, or the abort
    again); every answer counts. Commit answers the merged manifest, Abort
    C{true} when every transaction was aborted.
"""

from __future__ import annotations

from typing import Any

from geniam.errors import GeniCode, GeniError
from geniam.managers.fanout import PeerCall, PeerOutcome
from geniam.managers.fedtransactions import (
    TRANSACTIONS_OPTION,
    FederatedTransaction,
    FederatedTransactions,
    Members,
    advertised_retention,
    identifiers_option,
    naming,
    transaction_id,
)
from geniam.managers.peers import PeerRecord
from geniam.managers.rollup import concatenated, first_member, result_struct, rollup, rspec_outcomes
from geniam.managers.transactionapi import transaction_option
from geniam.managers.transactions import DEFAULT_OUTCOME_RETENTION, TRANSACTION_OPTION
from geniam.timeutil import format_time, parse_time
from geniam.urn import parse_urn


def without_transaction(outcome: PeerOutcome) -> bool:
    """Whether an aggregate answered that the slice has no transaction there."""
    return outcome.struct is not None and outcome.code == int(GeniCode.ERROR)


def earliest_commit_by(outcomes: list[PeerOutcome]) -> float | None:
    """The earliest C{commit_by} the aggregates answered (POSIX seconds), or C{None}."""
    times = commit_bys(outcomes)
    return min(times) if times else None


def commit_bys(outcomes: list[PeerOutcome]) -> list[float]:
    """Every C{commit_by} the aggregates answered (POSIX seconds)."""
    times = []
    for outcome in outcomes:
        value = outcome.value if outcome.ok else None
        if isinstance(value, dict) and isinstance(value.get("commit_by"), str):
            try:
                times.append(parse_time(value["commit_by"]))
            except GeniError:
                continue
    return times


class SliceTransactionMethods:
    """BeginTransaction, UpdateTransaction, CommitTransaction and AbortTransaction of a slice manager."""

    _once: Any
    _partition: Any
    _cpu: Any
    _options_for: Any
    _fan_manifests: Any
    _fan: Any
    _merged: Any
    mergers: Any
    cache: Any
    records: list[PeerRecord]
    federated: FederatedTransactions

    async def BeginTransaction(
        self, context: Any, slice_urn: Any, rspec: Any, users: Any, options: dict[str, Any]
    ) -> dict[str, Any]:
        """Begin a transaction at every aggregate the request names, with its part."""
        return await self._once(  # type: ignore[no-any-return]
            "BeginTransaction", context, options, lambda call: self._toward(call, slice_urn, rspec, users)
        )

    async def UpdateTransaction(
        self, context: Any, slice_urn: Any, rspec: Any, users: Any, options: dict[str, Any]
    ) -> dict[str, Any]:
        """Replace the desired state at every aggregate the request names, with its part."""
        return await self._once(  # type: ignore[no-any-return]
            "UpdateTransaction", context, options, lambda call: self._toward(call, slice_urn, rspec, users)
        )

    async def CommitTransaction(self, context: Any, slice_urn: Any, options: dict[str, Any]) -> dict[str, Any]:
        """Commit the slice's transaction at every aggregate that has one; the merged manifest."""
        return await self._once("CommitTransaction", context, options, lambda call: self._resolve(call, slice_urn))  # type: ignore[no-any-return]

    async def AbortTransaction(self, context: Any, slice_urn: Any, options: dict[str, Any]) -> dict[str, Any]:
        """Abort the slice's transaction at every aggregate that has one; C{true} when all did."""
        return await self._once("AbortTransaction", context, options, lambda call: self._resolve(call, slice_urn))  # type: ignore[no-any-return]

    async def _toward(self, call: Any, slice_urn: Any, rspec: Any, users: Any) -> dict[str, Any]:
        slice_urn = str(parse_urn(slice_urn, "slice"))
        if not isinstance(rspec, str):
            raise GeniError(GeniCode.BADARGS, "rspec must be a string")
        if not isinstance(users, list):
            raise GeniError(GeniCode.BADARGS, "users must be an array of structs")
        forwarding = await call.context.forwarding_for_slice(call.method, slice_urn, call.options)
        callable_, _, _ = self._partition(call.caller)
        parts = await self._cpu(self.mergers.split, rspec, [r.urn for r in callable_])
        by_urn = {r.urn: r for r in callable_}
        options = self._options_for(call, forwarding)
        credentials = list(forwarding.credentials)
        calls = [PeerCall(by_urn[urn], call.method, (slice_urn, credentials, part, users, options)) for urn, part in parts.items()]
        outcomes = await self._fan_manifests(call, calls)
        code, output = rollup(outcomes, False, False)
        struct = await self._manifest_struct(call.method, outcomes, slice_urn, code, output)
        commit_by = earliest_commit_by(outcomes)
        if commit_by is not None:
            struct["value"]["commit_by"] = format_time(commit_by)
        self._name(call.method, slice_urn, outcomes, struct["value"])
        return struct

    def _name(self, method: str, slice_urn: str, outcomes: list[PeerOutcome], value: dict[str, Any]) -> None:
        """Record what a Begin or Update opened under the slice manager's identifier, and answer both kinds."""
        begun = [o for o in outcomes if o.ok and o.record.urn is not None]
        members: dict[str, str | None] = {str(o.record.urn): transaction_id(o) for o in begun}
        latest = max(commit_bys(begun), default=None)
        retention = max((advertised_retention(o.record.version) for o in begun), default=DEFAULT_OUTCOME_RETENTION)
        if method == "BeginTransaction":
            entry = self.federated.begun(slice_urn, members, latest, retention)
        else:
            entry = self.federated.updated(slice_urn, members, latest, retention)
        identified = entry.identified if entry is not None else {u: i for u, i in members.items() if i is not None}
        if identified:
            value[TRANSACTIONS_OPTION] = identified
        if entry is not None:
            value[TRANSACTION_OPTION] = entry.transaction_id

    def _named(self, call: Any, slice_urn: str, callable_: list[PeerRecord]) -> tuple[Members, FederatedTransaction | None] | None:
        """
        The aggregate transactions a Commit or Abort names, with the slice
        manager's entry if named by its identifier; C{None} if it names none.

        @raise GeniError: BADARGS for both options or a malformed one;
            ERROR for an identifier this slice manager does not know.
        """
        identifier = transaction_option(call.options)
        given = call.options.get(TRANSACTIONS_OPTION)
        if identifier is not None and given is not None:
            raise GeniError(GeniCode.BADARGS, f"give either {TRANSACTION_OPTION} or {TRANSACTIONS_OPTION}, not both")
        if identifier is not None:
            entry = self.federated.find(identifier, slice_urn, call.method)
            return entry.members, entry
        if given is not None:
            return identifiers_option(given, lambda urn: any(r.is_urn(urn) for r in callable_)), None
        return None

    async def _resolve(self, call: Any, slice_urn: Any) -> dict[str, Any]:
        slice_urn = str(parse_urn(slice_urn, "slice"))
        forwarding = await call.context.forwarding_for_slice(call.method, slice_urn, call.options)
        callable_, _, _ = self._partition(call.caller)
        named = self._named(call, slice_urn, callable_)
        options = self._options_for(call, forwarding, drop=(TRANSACTION_OPTION, TRANSACTIONS_OPTION))
        credentials = list(forwarding.credentials)
        if named is None:
            calls = [PeerCall(r, call.method, (slice_urn, credentials, options)) for r in callable_]
        else:
            calls = [
                PeerCall(self._member(urn), call.method, (slice_urn, credentials, naming(options, identifier)))
                for urn, identifier in named[0].items()
            ]
        try:
            if call.method == "CommitTransaction":
                outcomes = await self._fan_manifests(call, calls)
            else:
                outcomes = await self._fan(call, calls)
        finally:
            self.cache.invalidate()
        concerned = [o for o in outcomes if named is not None or not without_transaction(o)]
        if not any(o.ok for o in concerned):
            concerned = outcomes
        code, output = rollup(concerned, False, False)
        if call.method == "CommitTransaction":
            struct = await self._manifest_struct(call.method, outcomes, slice_urn, code, output)
            if named is not None:
                members, entry = named
                struct["value"][TRANSACTIONS_OPTION] = {u: i for u, i in members.items() if i is not None}
                if entry is not None:
                    struct["value"][TRANSACTION_OPTION] = entry.transaction_id
            return struct
        value = code == GeniCode.SUCCESS and all(o.value is True for o in concerned)
        return result_struct(call.method, outcomes, value, code, output)

    def _member(self, urn: str) -> PeerRecord:
        """The peer of URN C{urn} (a member of a transaction named, so a known aggregate)."""
        return next(r for r in self.records if r.is_urn(urn))

    async def _manifest_struct(self, method: str, outcomes: list[PeerOutcome], slice_urn: str, code: int, output: str) -> dict[str, Any]:
        rspecs = [o.value["geni_rspec"] if o.ok else None for o in outcomes]
        manifest = await self._merged("manifest", rspec_outcomes(outcomes, rspecs), method)
        value = {
            "geni_rspec": manifest,
            "geni_urn": first_member(outcomes, "geni_urn", slice_urn),
            "geni_slivers": concatenated(outcomes, "geni_slivers"),
        }
        return result_struct(method, outcomes, value, code, output)
