# -*- test-case-name: tests.managers.test_transactions,tests.store.test_transactions,tests.store.test_transactions_crash,tests.loopback.test_transactions,tests.loopback.test_operators -*-
"""
The aggregate's side of PG-A transactions: the per-slice state machine.

L{TransactionManager} moves a slice between I{uninitialised},
I{allocated} and I{transaction} (L{SliceState}) on top of an
L{IslandResourceManager}: Begin and Update hold what the desired state
needs (L{geniam.booking.transactions.plan}), Commit applies it and Abort
gives the holds back, each in one store transaction. A transaction not
committed or aborted by its C{commit_by} is aborted on the clock, at that
second, and by the first check after a restart.

Each transaction has an identifier (answered by Begin as
C{geniam_transaction}), and how each ended is recorded with its close and
kept for a while (L{geniam.booking.transactions.TransactionOutcome}): a
Commit that names the identifier of a transaction committed already
answers like that commit again, and one naming an aborted transaction says
when and why it was aborted, so that a client whose Commit got no answer
can learn the outcome by trying again.

Codes: Begin in a transaction is INPROGRESS; Update, Commit and Abort
outside one are ERROR; a desired state that conflicts with another slice
is UNAVAILABLE at Begin or Update; one that would remove or change a
running sliver is REFUSED. A failed Update leaves the transaction as it
was.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from twisted.internet.defer import Deferred, DeferredLock
from twisted.internet.task import LoopingCall
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from geniam.booking.lifecycle import new_hold, taken_up
from geniam.booking.transactions import (
    TRANSACTION_HOLD,
    DesiredSlot,
    Outcome,
    SliceState,
    Transaction,
    TransactionOutcome,
    abort_changes,
    commit_changes,
    commit_deadline,
    is_transaction_hold,
    outcome_of,
    plan,
)
from geniam.booking.values import Booking, urn_key
from geniam.errors import GeniCode, GeniError
from geniam.managers.errors import DomainError, TranslatedError, as_geni_error
from geniam.managers.island import IslandResourceManager
from geniam.store.errors import StaleBooking, StoreError
from geniam.store.transactions import StaleTransaction
from geniam.timeutil import format_time
from geniam.urn import parse_urn

T = TypeVar("T")

DEFAULT_TRANSACTION_TTL = 600.0
"""How long a transaction stays open without commit or abort, by default (10 minutes)."""

CLOSE_ATTEMPTS = 5

# Seconds between looks at the store for transactions another process (on
# the same database) opened: each gets a timer here too, so that one is
# aborted at its commit_by even if the process that opened it has stopped.
DEFAULT_WATCH_INTERVAL = 30.0
"""How often a commit or abort is tried again when a hold changed meanwhile (it lapsed at that instant)."""

DEFAULT_OUTCOME_RETENTION = 3600.0
"""How long past its C{commit_by} (or its end, if later) how a transaction ended is remembered (1 hour)."""

TRANSACTION_OPTION = "geniam_transaction"
"""The Begin answer's member, and the Commit option, carrying a transaction's identifier."""

COMMIT_BY_PASSED = "its commit_by passed"
ABORTED_BY_CALL = "AbortTransaction"


def aborted_error(outcome: TransactionOutcome) -> GeniError:
    """
    ERROR saying the transaction of C{outcome} was aborted, when and why;
    its C{value} says so too: C{{geniam_transaction, geniam_transaction_outcome:
    "aborted", aborted_at, reason}}.
    """
    named = f" {outcome.transaction_id}" if outcome.transaction_id else ""
    return GeniError(
        GeniCode.ERROR,
        f"the transaction{named} of slice {outcome.slice_urn} was aborted at"
        f" {format_time(outcome.closed)} ({outcome.reason}): it cannot be committed",
        {
            TRANSACTION_OPTION: outcome.transaction_id,
            "geniam_transaction_outcome": Outcome.ABORTED.value,
            "aborted_at": format_time(outcome.closed),
            "reason": outcome.reason,
        },
    )


def committed_error(outcome: TransactionOutcome) -> GeniError:
    """
    ERROR saying the transaction of C{outcome} was committed, and when, so
    it cannot be aborted; its C{value} says so too:
    C{{geniam_transaction, geniam_transaction_outcome: "committed",
    committed_at}}.
    """
    return GeniError(
        GeniCode.ERROR,
        f"the transaction {outcome.transaction_id} of slice {outcome.slice_urn} was committed at"
        f" {format_time(outcome.closed)}: it cannot be aborted (Delete its slivers instead)",
        {
            TRANSACTION_OPTION: outcome.transaction_id,
            "geniam_transaction_outcome": Outcome.COMMITTED.value,
            "committed_at": format_time(outcome.closed),
        },
    )


@dataclass(frozen=True)
class Proposal:
    """
    What Begin and Update answer: the open transaction and the slivers the
    commit would produce (the slice's kept slivers with their new
    parameters, and each hold as the allocation it would become).
    """

    transaction: Transaction
    slivers: tuple[Booking, ...]


def _live_after(slivers: Sequence[Booking], changes: Sequence[Booking]) -> list[str]:
    """The URNs of the slice's live slivers once C{changes} are written over C{slivers}."""
    changed = {b.sliver_key: b for b in changes}
    after = [changed.pop(b.sliver_key, b) for b in slivers] + list(changed.values())
    return [b.sliver_urn for b in after if b.live]


class TransactionManager:
    """
    PG-A transactions on one island.

    @param island: the island's resource manager, which makes every write.
    @param clock: the clock for C{commit_by} and its timers.
    @param ttl: how long a transaction stays open after each Begin or Update.
    @param watch_interval: how often the store is searched for transactions
        opened elsewhere (and old outcomes are forgotten).
    @param outcome_retention: how long past its C{commit_by} a finished
        transaction's outcome is kept.
    @param new_id: makes the identifier of each new transaction (random, 32 hex digits, by default).
    """

    log = Logger()

    def __init__(
        self,
        island: IslandResourceManager,
        clock: IReactorTime,
        ttl: float = DEFAULT_TRANSACTION_TTL,
        watch_interval: float = DEFAULT_WATCH_INTERVAL,
        outcome_retention: float = DEFAULT_OUTCOME_RETENTION,
        new_id: Callable[[], str] = lambda: secrets.token_hex(16),
    ) -> None:
        if not ttl > 0:
            raise GeniError(GeniCode.BADARGS, "the transaction lifetime must be positive")
        if not watch_interval > 0:
            raise GeniError(GeniCode.BADARGS, "the transaction watch interval must be positive")
        self._watcher = LoopingCall(self._watch)
        self._watcher.clock = clock
        self._watch_interval = float(watch_interval)
        self.island = island
        self.ttl = float(ttl)
        self.outcome_retention = float(outcome_retention)
        self._new_id = new_id
        self._clock = clock
        self._locks: dict[str, DeferredLock] = {}
        self._timers: dict[str, IDelayedCall] = {}
        self._running = False

    # Lifecycle.

    def start(self) -> Deferred[None]:
        """Abort the transactions whose C{commit_by} passed (while stopped), and arm a timer for each of the others."""
        self._running = True
        d = Deferred.fromCoroutine(self._catch_up())

        def watch(_: None) -> None:
            if self._running and not self._watcher.running:
                self._watcher.start(self._watch_interval, now=False)

        return d.addCallback(watch)

    def watch(self) -> Deferred[None]:
        """
        Look for transactions opened elsewhere on the island's database (by
        another AM process): abort those past their C{commit_by}, arm a timer
        for the others. Run every C{watch_interval} seconds while started.
        """
        return Deferred.fromCoroutine(self._catch_up())

    def _watch(self) -> Deferred[None]:
        def failed(failure: Failure) -> None:
            self.log.failure("looking for transactions opened elsewhere failed", failure)

        return self.watch().addErrback(failed)

    async def _catch_up(self) -> None:
        await self.island.forget_transaction_outcomes(self._clock.seconds())
        for transaction in await self.island.transactions():
            if transaction.commit_by <= self._clock.seconds():
                await self._serialised(transaction.slice_urn, self._expire_if_due(transaction.slice_urn))
            else:
                self._arm(transaction)

    def stop(self) -> None:
        """Cancel the timers (the transactions stay open in the store)."""
        self._running = False
        if self._watcher.running:
            self._watcher.stop()
        for timer in self._timers.values():
            if timer.active():
                timer.cancel()
        self._timers.clear()

    def _arm(self, transaction: Transaction) -> None:
        key = transaction.slice_key
        self._disarm(key)
        if not self._running:
            return
        delay = max(0.0, transaction.commit_by - self._clock.seconds())
        self._timers[key] = self._clock.callLater(delay, self._due, transaction.slice_urn)

    def _disarm(self, key: str) -> None:
        timer = self._timers.pop(key, None)
        if timer is not None and timer.active():
            timer.cancel()

    def _due(self, slice_urn: str) -> None:
        self._timers.pop(urn_key(slice_urn), None)

        def failed(failure: Failure) -> None:
            self.log.failure("aborting the transaction of {slice} at its commit_by failed", failure, slice=slice_urn)

        Deferred.fromCoroutine(self._serialised(slice_urn, self._expire_if_due(slice_urn))).addErrback(failed)

    async def _expire_if_due(self, slice_urn: str) -> None:
        transaction = await self.island.transaction(slice_urn)
        if transaction is None:
            return
        if transaction.commit_by > self._clock.seconds():
            self._arm(transaction)
            return
        try:
            await self._abort_locked(transaction, COMMIT_BY_PASSED)
        except TranslatedError as e:
            if not isinstance(e.cause, StoreError):
                raise
            self.log.warn("the transaction of {slice} waits for the database to be aborted", slice=slice_urn)
            self._timers[transaction.slice_key] = self._clock.callLater(5.0, self._due, slice_urn)
            return
        self.log.info("the transaction of {slice} was aborted at its commit_by", slice=slice_urn)

    async def _serialised(self, slice_urn: str, work: Coroutine[Any, Any, T]) -> T:
        lock = self._locks.setdefault(urn_key(slice_urn), DeferredLock())
        async with lock:
            try:
                return await work
            except DomainError as e:
                raise as_geni_error(e) from None

    # Reads.

    async def state(self, slice_urn: str) -> SliceState:
        """Where the slice is here: uninitialised, allocated or in a transaction."""
        if await self.island.transaction(slice_urn) is not None:
            return SliceState.TRANSACTION
        slivers = await self._slivers(slice_urn)
        return SliceState.ALLOCATED if slivers else SliceState.UNINITIALISED

    async def refuse_if_open(self, slice_urn: str, method: str) -> None:
        """
        @raise GeniError: INPROGRESS if the slice has a transaction open here
            (plain Allocate, Provision, Renew and Delete wait for its end).
        """
        transaction = await self.island.transaction(slice_urn)
        if transaction is not None:
            raise GeniError(
                GeniCode.INPROGRESS,
                f"slice {slice_urn} has a transaction in progress here until {format_time(transaction.commit_by)}:"
                f" commit or abort it before {method}",
            )

    async def _slivers(self, slice_urn: str) -> list[Booking]:
        return [b for b in await self.island.slice_bookings(slice_urn, True) if b.is_sliver]

    async def _holds(self, transaction: Transaction) -> list[Booking]:
        if not transaction.holds:
            return []
        return [await self.island.booking_or_hold(urn) for urn in transaction.holds]

    # Begin and Update.

    async def begin(
        self,
        slice_urn: str,
        owner_urn: str,
        owner_email: str,
        desired: Sequence[DesiredSlot],
        credential_expires: float | None,
        request: str = "",
    ) -> Proposal:
        """
        Begin a transaction towards C{desired}; fire with the L{Proposal}.

        @raise GeniError: INPROGRESS in a transaction, UNAVAILABLE if another
            slice holds a slot, REFUSED for a running sliver.
        """
        parse_urn(slice_urn, "slice")
        parse_urn(owner_urn, "user")
        return await self._serialised(slice_urn, self._begin(slice_urn, owner_urn, owner_email, list(desired), credential_expires, request))

    async def _begin(
        self,
        slice_urn: str,
        owner_urn: str,
        owner_email: str,
        desired: list[DesiredSlot],
        credential_expires: float | None,
        request: str,
    ) -> Proposal:
        await self._drop_if_expired(slice_urn)
        now = self._clock.seconds()
        empty = Transaction(
            slice_urn, owner_urn, owner_email, (), (), now, now, request, credential_expires, transaction_id=self._new_id()
        )
        return await self._propose(empty, desired, [], now)

    async def update(
        self, slice_urn: str, desired: Sequence[DesiredSlot], credential_expires: float | None, request: str = ""
    ) -> Proposal:
        """
        Replace the desired state of the open transaction; fire with the
        L{Proposal}. On failure the transaction stays exactly as it was.

        @raise GeniError: ERROR outside a transaction.
        """
        parse_urn(slice_urn, "slice")
        return await self._serialised(slice_urn, self._update(slice_urn, list(desired), credential_expires, request))

    async def _update(
        self, slice_urn: str, desired: list[DesiredSlot], credential_expires: float | None, request: str
    ) -> Proposal:
        transaction = await self._open(slice_urn, "UpdateTransaction")
        holds = [h for h in await self._holds(transaction) if is_transaction_hold(h)]
        current = replace(transaction, request=request, credential_expires=credential_expires)
        return await self._propose(current, desired, holds, self._clock.seconds())

    async def _propose(self, transaction: Transaction, desired: list[DesiredSlot], holds: list[Booking], now: float) -> Proposal:
        slivers = await self._slivers(transaction.slice_urn)
        commit_by = commit_deadline(desired, slivers, now, self.ttl, transaction.credential_expires)
        planned = plan(desired, slivers, holds, now, commit_by)
        # Maintenance and the booking policy first, as Allocate and tickets do: a refusal names the window or the limit.
        replaced = [b.sliver_key for b in [*planned.changed, *planned.released]]
        for wanted in planned.new:
            await self.island.check_admission(wanted.slot, transaction.owner_urn, transaction.slice_urn, replaced)
        made = [
            wanted.applied_to(
                new_hold(
                    sliver_urn=self.island.new_sliver_urn(),
                    slice_urn=transaction.slice_urn,
                    owner_urn=transaction.owner_urn,
                    owner_email=transaction.owner_email,
                    slot=wanted.slot,
                    now=now,
                    expires=commit_by,
                    held_by=TRANSACTION_HOLD,
                    credential_expires=transaction.credential_expires,
                    max_slot_length=self.island.max_slot_length,
                ),
                now,
            )
            for wanted in planned.new
        ]
        kept_holds = [h.sliver_urn for h in planned.changed]
        proposed = replace(
            transaction,
            desired=tuple(desired),
            holds=tuple(kept_holds + [h.sliver_urn for h in made]),
            commit_by=commit_by,
        )
        saved, stored = await self.island.save_transaction(proposed, made, [*planned.changed, *planned.released])
        self._arm(saved)
        held = [b for b in stored if is_transaction_hold(b)]
        preview = [
            taken_up(h, now, self.island.allocation_ttl, saved.credential_expires) for h in held
        ] + [planned.kept[b.sliver_key].applied_to(b, now) for b in slivers if b.sliver_key in planned.kept]
        self.log.info(
            "transaction of {slice}: {slots} slot(s) desired, {holds} held until {commit_by}",
            slice=saved.slice_urn,
            slots=len(desired),
            holds=len(held),
            commit_by=format_time(commit_by),
        )
        return Proposal(saved, tuple(sorted(preview, key=lambda b: b.slot.start)))

    async def _drop_if_expired(self, slice_urn: str) -> None:
        """Abort the slice's transaction if its C{commit_by} passed; raise INPROGRESS if one is open."""
        transaction = await self.island.transaction(slice_urn)
        if transaction is None:
            return
        if transaction.commit_by <= self._clock.seconds():
            await self._abort_locked(transaction, COMMIT_BY_PASSED)
            return
        raise GeniError(
            GeniCode.INPROGRESS,
            f"slice {slice_urn} already has a transaction in progress here until {format_time(transaction.commit_by)}",
        )

    async def _open(self, slice_urn: str, method: str) -> Transaction:
        """The slice's open transaction; one past its C{commit_by} is aborted first. ERROR if none."""
        transaction = await self.island.transaction(slice_urn)
        if transaction is not None and transaction.commit_by <= self._clock.seconds():
            raise aborted_error(await self._abort_locked(transaction, COMMIT_BY_PASSED))
        if transaction is None:
            raise GeniError(GeniCode.ERROR, f"slice {slice_urn} is not in a transaction here: {method} needs one")
        return transaction

    # Commit and Abort.

    async def commit(
        self, slice_urn: str, transaction_id: str | None = None
    ) -> tuple[Transaction | TransactionOutcome, list[Booking]]:
        """
        Apply the desired state at once; fire with the transaction and the
        slice's live slivers afterwards.

        With C{transaction_id}, only that transaction is committed; if it
        was committed already (and is still remembered), fire with its
        recorded outcome and the slivers that commit left, as the first
        commit did.

        @raise GeniError: ERROR outside a transaction, or if the
            transaction C{transaction_id} was aborted (L{aborted_error});
            REFUSED if a sliver to change or remove started running
            meanwhile (the transaction stays open).
        """
        parse_urn(slice_urn, "slice")
        return await self._serialised(slice_urn, self._commit(slice_urn, transaction_id))

    async def _commit(self, slice_urn: str, transaction_id: str | None) -> tuple[Transaction | TransactionOutcome, list[Booking]]:
        for _ in range(CLOSE_ATTEMPTS):
            if transaction_id is not None:
                current = await self.island.transaction(slice_urn)
                if current is None or current.transaction_id != transaction_id:
                    return await self._recall(slice_urn, transaction_id)
            transaction = await self._open(slice_urn, "CommitTransaction")
            now = self._clock.seconds()
            slivers = await self._slivers(slice_urn)
            changes = commit_changes(transaction, slivers, await self._holds(transaction), now, self.island.allocation_ttl)
            outcome = self._outcome(transaction, Outcome.COMMITTED, "CommitTransaction", _live_after(slivers, changes))
            try:
                await self.island.close_transaction(transaction, changes, outcome)
            except TranslatedError as e:
                if isinstance(e.cause, (StaleBooking, StaleTransaction)):
                    continue
                raise
            self._disarm(transaction.slice_key)
            self.log.info("transaction of {slice} committed", slice=slice_urn)
            return transaction, await self._slivers(slice_urn)
        raise GeniError(GeniCode.BUSY, f"the slivers of slice {slice_urn} kept changing; try again")

    async def _ended(self, slice_urn: str, transaction_id: str, method: str) -> TransactionOutcome:
        """
        How the transaction C{transaction_id} of the slice, no longer open, ended.

        @raise GeniError: ERROR if no transaction of that identifier ended
            here recently (or it was of another slice).
        """
        outcome = await self.island.transaction_outcome(transaction_id)
        if outcome is None or urn_key(outcome.slice_urn) != urn_key(slice_urn):
            raise GeniError(
                GeniCode.ERROR,
                f"slice {slice_urn} has no transaction {transaction_id} in progress here, and none of that"
                f" identifier ended here recently: {method} needs one",
            )
        return outcome

    async def _recall(self, slice_urn: str, transaction_id: str) -> tuple[TransactionOutcome, list[Booking]]:
        """The outcome of a transaction of the slice that is no longer open: committed (with its slivers), or raise."""
        outcome = await self._ended(slice_urn, transaction_id, "CommitTransaction")
        if outcome.outcome is Outcome.ABORTED:
            raise aborted_error(outcome)
        named = {urn_key(urn) for urn in outcome.slivers}
        slivers = [b for b in await self.island.slice_bookings(slice_urn, False) if b.sliver_key in named]
        self.log.info("transaction {id} of {slice} committed already: answered again", id=transaction_id, slice=slice_urn)
        return outcome, slivers

    def _outcome(self, transaction: Transaction, outcome: Outcome, reason: str, slivers: Sequence[str] = ()) -> TransactionOutcome | None:
        """The record of C{transaction} ending now, or None for one without an identifier."""
        if not transaction.transaction_id:
            return None
        return outcome_of(transaction, outcome, self._clock.seconds(), reason, self.outcome_retention, slivers)

    async def abort(self, slice_urn: str, transaction_id: str | None = None) -> bool:
        """
        Give the holds back, restoring the slice as it was before Begin;
        fire with True.

        With C{transaction_id}, only that transaction is aborted; if it was
        aborted already (by an Abort or at its C{commit_by}, and is still
        remembered), fire with True again, as the first abort did.

        @raise GeniError: ERROR outside a transaction, if the transaction
            C{transaction_id} was committed (L{committed_error}), or if no
            transaction of that identifier is open or ended here recently
            (an open transaction of the slice is then left as it is).
        """
        parse_urn(slice_urn, "slice")
        return await self._serialised(slice_urn, self._abort(slice_urn, transaction_id))

    async def _abort(self, slice_urn: str, transaction_id: str | None) -> bool:
        transaction = await self.island.transaction(slice_urn)
        if transaction_id is not None and (transaction is None or transaction.transaction_id != transaction_id):
            outcome = await self._ended(slice_urn, transaction_id, "AbortTransaction")
            if outcome.outcome is Outcome.COMMITTED:
                raise committed_error(outcome)
            self.log.info("transaction {id} of {slice} aborted already: answered again", id=transaction_id, slice=slice_urn)
            return True
        if transaction is None:
            raise GeniError(GeniCode.ERROR, f"slice {slice_urn} is not in a transaction here: AbortTransaction needs one")
        await self._abort_locked(transaction, ABORTED_BY_CALL)
        self.log.info("transaction of {slice} aborted", slice=slice_urn)
        return True

    async def _abort_locked(self, transaction: Transaction, reason: str) -> TransactionOutcome:
        """Give the holds back and record the abort, for C{reason}; fire with the record."""
        for _ in range(CLOSE_ATTEMPTS):
            outcome = self._outcome(transaction, Outcome.ABORTED, reason)
            try:
                await self.island.close_transaction(
                    transaction, abort_changes(await self._holds(transaction), self._clock.seconds()), outcome
                )
            except TranslatedError as e:
                if isinstance(e.cause, StaleBooking):
                    continue
                raise
            self._disarm(transaction.slice_key)
            return outcome or outcome_of(transaction, Outcome.ABORTED, self._clock.seconds(), reason, 0.0)
        raise GeniError(GeniCode.BUSY, f"the holds of slice {transaction.slice_urn} kept changing; try again")
