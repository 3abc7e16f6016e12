# -*- test-case-name: tests.loopback.test_twophase -*-
"""
Two-phase allocation across aggregates, on the PG-A transaction methods.

When every aggregate a multi-aggregate Allocate concerns advertises
C{geniam_transactions} in its GetVersion (and the slice holds nothing at
any of them yet, so a transaction's whole desired state is exactly the
part of the request), the slice manager allocates in two phases
(L{TwoPhase}):

  1. BeginTransaction at every aggregate with its part of the request: the
     slots are held there, and no other slice sees them booked;
  2. only when every Begin succeeded, CommitTransaction at all of them.

If a Begin fails or times out, every other aggregate is sent
AbortTransaction (naming the transaction its Begin answered, so that only
that one is aborted) and the call answers with the failing aggregate's
error.
A Commit that fails (the aggregate went away) is retried every
C{retry} seconds while the earliest C{commit_by} and the call's deadline
allow, then once more at once (after C{commit_by}, an aggregate that
aborted says so); if it still fails, the slice manager rolls the
committed parts back with its undo journal, as for a plain failed
Allocate.

A Commit whose answer was lost (it timed out) may have been carried out,
so every Commit names the transaction Begin answered
(C{geniam_transaction}): a retry then answers the commit again if it was
carried out, or says the transaction was aborted. An aggregate that
answered no identifier (another implementation), or no longer remembers
it, answers a retry with ERROR (no transaction open): the transaction is
closed either way, so the slice manager reads the slice there with
Describe and compares it with the part it asked for (the slice held
nothing there before): the part's slivers there mean committed, none
means aborted. Only when that cannot be read either is the outcome
uncertain: the answer names the aggregate in C{geniam_uncertain} and
nothing is rolled back on its account (rolling back could destroy a
commit that succeeded everywhere).

Anything else (an aggregate without the extension, C{geni_best_effort},
a slice already holding slivers there) takes the allocate-then-undo path.
The answer names the path in C{geniam_allocation_path}.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater

from geniam.errors import GeniCode, GeniError
from geniam.managers.fanout import ERROR, PeerCall, PeerOutcome
from geniam.managers.peers import PeerRecord
from geniam.managers.transactionapi import TRANSACTIONS_EXTENSION
from geniam.managers.fedtransactions import naming, transaction_id
from geniam.managers.smtransactions import earliest_commit_by, without_transaction
from geniam.managers.undo import GENI_V3, part_marks, slivers_of_part

PATH_FIELD = "geniam_allocation_path"
"""The Allocate answer's member naming the path taken."""

UNCERTAIN_FIELD = "geniam_uncertain"
"""The Allocate answer's member naming the aggregates whose Commit outcome could not be learned."""

TWO_PHASE = "two-phase"
ALLOCATE_THEN_UNDO = "allocate-then-undo"
DEFAULT_COMMIT_RETRY = 5.0
"""Seconds between attempts at a Commit that failed."""

Fan = Callable[[list[PeerCall]], Deferred[list[PeerOutcome]]]
"""Makes calls and answers their outcomes, in peer order."""


def serves_transactions(record: PeerRecord) -> bool:
    """Whether a peer's last GetVersion advertised the transaction methods."""
    version = record.version
    return isinstance(version, dict) and isinstance(version.get(TRANSACTIONS_EXTENSION), dict)


def holds_nothing(outcome: PeerOutcome) -> bool:
    """
    Whether a Status outcome lets a transaction stand for an Allocate there:
    the slice has no sliver at that aggregate, or the aggregate could not be
    reached at all (its Begin fails the same way, and the others are
    aborted). A Status that timed out or was refused otherwise leaves the
    slice's state there unknown.
    """
    if outcome.ok:
        value = outcome.value
        return isinstance(value, dict) and not value.get("geni_slivers")
    if outcome.struct is not None:
        return outcome.code == int(GeniCode.SEARCHFAILED)
    return outcome.code != int(GeniCode.TIMEDOUT)


async def allocation_path(
    pairs: Sequence[tuple[PeerRecord, str]],
    best_effort: bool,
    fan: Fan,
    slice_urn: str,
    credentials: list[Any],
    options: dict[str, Any],
) -> str:
    """
    L{TWO_PHASE} when every aggregate of C{pairs} (two or more) serves
    transactions and the slice holds nothing at any of them (a
    transaction's desired state is the slice's whole state there, while
    Allocate adds to it), asked with Status through C{fan};
    L{ALLOCATE_THEN_UNDO} otherwise, and always with C{best_effort}.
    """
    if best_effort or len(pairs) < 2 or not all(serves_transactions(record) for record, _ in pairs):
        return ALLOCATE_THEN_UNDO
    status = await fan([PeerCall(record, "Status", ([slice_urn], credentials, options)) for record, _ in pairs])
    return TWO_PHASE if all(holds_nothing(o) for o in status) else ALLOCATE_THEN_UNDO


@dataclass(frozen=True)
class TwoPhaseResult:
    """
    How a two-phase allocation went.

    @ivar outcomes: per aggregate, the Commit outcome (or, when a Begin
        failed, the Begin outcome, the others marked as aborted).
    @ivar code: the C{geni_code} to answer (that of the failing aggregate).
    @ivar output: the text to answer.
    @ivar committed: whether the Commit phase was reached.
    @ivar uncertain: the names of the aggregates whose Commit outcome is
        still unknown (no answer, and it could not be read back).
    """

    outcomes: list[PeerOutcome]
    code: int
    output: str
    committed: bool
    uncertain: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        """Whether a Commit failed for certain (so the committed parts are to be rolled back)."""
        return self.committed and any(not o.ok and not uncertain(o) for o in self.outcomes)


class TwoPhase:
    """
    Begin at every aggregate, then Commit at all, or Abort at all.

    @param clock: the time, for the Commit retries.
    @param fan: makes a round of calls.
    @param rollup: C{(outcomes) -> (geni_code, output)} for all or nothing.
    @param retry: seconds between Commit attempts.
    """

    def __init__(
        self,
        clock: IReactorTime,
        fan: Fan,
        rollup: Callable[[Sequence[PeerOutcome]], tuple[int, str]],
        retry: float = DEFAULT_COMMIT_RETRY,
    ) -> None:
        self._clock = clock
        self._fan = fan
        self._rollup = rollup
        self._retry = retry

    async def run(
        self, slice_urn: str, credentials: list[Any], parts: Sequence[tuple[PeerRecord, str]], options: dict[str, Any], deadline: float
    ) -> TwoPhaseResult:
        """Allocate C{parts} (each aggregate's request) in two phases, before C{deadline} if it can."""
        begun = await self._fan(
            [PeerCall(record, "BeginTransaction", (slice_urn, credentials, part, [], options)) for record, part in parts]
        )
        code, output = self._rollup(begun)
        identifiers = {id(o.record): transaction_id(o) for o in begun}
        if code != int(GeniCode.SUCCESS):
            await self._abort(slice_urn, credentials, options, [o for o in begun if o.ok or uncertain(o)], identifiers)
            aborted = [undone(o, "transaction begun, then aborted because another aggregate failed") if o.ok else o for o in begun]
            return TwoPhaseResult(aborted, code, f"{output}; the others were aborted (nothing was booked)", False)
        commit_by = earliest_commit_by(begun)
        until = deadline if commit_by is None else min(commit_by, deadline)
        outcomes = await self._commit(slice_urn, credentials, options, begun, identifiers, {id(r): part for r, part in parts}, until)
        code, output = self._rollup(outcomes)
        failed = [o for o in outcomes if not o.ok and not uncertain(o)]
        if failed:
            await self._abort(slice_urn, credentials, options, failed, identifiers)
        return TwoPhaseResult(outcomes, code, output, True, [o.name for o in outcomes if uncertain(o)])

    async def _commit(
        self,
        slice_urn: str,
        credentials: list[Any],
        options: dict[str, Any],
        begun: list[PeerOutcome],
        identifiers: dict[int, str | None],
        parts: dict[int, str],
        until: float,
    ) -> list[PeerOutcome]:
        """
        Commit everywhere, naming each aggregate's transaction (its
        C{identifiers}, by record); retry the failures every C{retry}
        seconds until C{until}, then once more at once; read back where a
        retry cannot tell.
        """
        latest = {id(o.record): o for o in begun}
        waiting = [o.record for o in begun]
        last_chance = False
        while True:
            answered = await self._fan(
                [PeerCall(r, "CommitTransaction", (slice_urn, credentials, naming(options, identifiers[id(r)]))) for r in waiting]
            )
            unclear = []
            for outcome in answered:
                if not uncertain(latest[id(outcome.record)]) or outcome.ok or aborted(outcome):
                    latest[id(outcome.record)] = outcome
                elif without_transaction(outcome):
                    # No transaction open after a Commit that timed out: committed or aborted, read the slice back.
                    unclear.append(outcome)
                elif outcome.struct is not None:
                    # Another refusal: the transaction is still open, so the Commit that timed out was not carried out.
                    latest[id(outcome.record)] = outcome
                # No answer again: still uncertain.
            for outcome in await self._read_back(slice_urn, credentials, options, unclear, parts):
                latest[id(outcome.record)] = outcome
            waiting = [r for r in waiting if _retriable(latest[id(r)])]
            if not waiting or last_chance:
                return [latest[id(o.record)] for o in begun]
            if self._clock.seconds() + self._retry >= until:
                last_chance = True
            else:
                await deferLater(self._clock, self._retry, lambda: None)

    async def _read_back(
        self, slice_urn: str, credentials: list[Any], options: dict[str, Any], refused: list[PeerOutcome], parts: dict[int, str]
    ) -> list[PeerOutcome]:
        """
        For each Commit retry C{refused} with ERROR (no transaction open)
        after a Commit that timed out: Describe the slice there and compare
        with the part asked for. Committed: the Describe outcome, as the
        commit's; not committed: the refusal, saying so; unreadable: still
        uncertain.
        """
        if not refused:
            return []
        described = await self._fan(
            [PeerCall(o.record, "Describe", ([slice_urn], credentials, dict(options, geni_rspec_version=GENI_V3))) for o in refused]
        )
        learned = []
        for refusal, description in zip(refused, described):
            part = parts[id(refusal.record)]
            if description.ok:
                found = part_found(description.value, part)
            elif description.struct is not None and description.code == int(GeniCode.SEARCHFAILED):
                found = False
            else:
                found = None
            if found:
                learned.append(description)
            elif found is False:
                learned.append(replace(refusal, reason="the transaction was closed and nothing of the part is there: it was not committed"))
            else:
                learned.append(
                    PeerOutcome(refusal.record, ERROR, refusal.elapsed, None, int(GeniCode.TIMEDOUT),
                                f"the Commit got no answer and the slice could not be read back: {description.describe()}")
                )
        return learned

    async def _abort(
        self,
        slice_urn: str,
        credentials: list[Any],
        options: dict[str, Any],
        outcomes: list[PeerOutcome],
        identifiers: dict[int, str | None],
    ) -> None:
        """
        AbortTransaction where a transaction may be open (an aggregate also
        aborts by itself at C{commit_by}), naming the transaction where its
        Begin answered an identifier: only that one is aborted.
        """
        if outcomes:
            await self._fan(
                [PeerCall(o.record, "AbortTransaction", (slice_urn, credentials, naming(options, identifiers.get(id(o.record))))) for o in outcomes]
            )


def aborted(outcome: PeerOutcome) -> bool:
    """Whether an aggregate answered that the transaction named was aborted."""
    value = outcome.value if outcome.struct is not None else None
    return isinstance(value, dict) and value.get("geniam_transaction_outcome") == "aborted"


def part_found(value: Any, part: str) -> bool | None:
    """
    Whether a Describe C{value} holds slivers of C{part} (its client IDs
    or island slots); None if the part cannot be read.
    """
    try:
        client_ids, slots = part_marks(part)
    except GeniError:
        return None
    return bool(slivers_of_part(value, client_ids, slots, allocated_only=False))


def uncertain(outcome: PeerOutcome) -> bool:
    """Whether a call may have been carried out without its answer reaching us (timed out, or cut off)."""
    return outcome.called and outcome.struct is None and outcome.code == int(GeniCode.TIMEDOUT)


def _retriable(outcome: PeerOutcome) -> bool:
    """Whether a Commit failed for want of an answer (the aggregate went away), not by the aggregate's refusal."""
    return outcome.struct is None


def undone(outcome: PeerOutcome, reason: str) -> PeerOutcome:
    """A success taken back (its slivers released, its transaction aborted): reported as an error, for C{reason}."""
    return PeerOutcome(outcome.record, ERROR, outcome.elapsed, None, int(GeniCode.REFUSED), reason)
