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
AbortTransaction and the call answers with the failing aggregate's error.
A Commit that fails (the aggregate went away) is retried every
C{retry} seconds while the earliest C{commit_by} and the call's deadline
allow; if it still fails, the slice manager rolls the committed parts back
with its undo journal, as for a plain failed Allocate.

Anything else (an aggregate without the extension, C{geni_best_effort},
a slice already holding slivers there) takes the allocate-then-undo path.
The answer names the path in C{geniam_allocation_path}.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater

from geniam.errors import GeniCode
from geniam.managers.fanout import ERROR, PeerCall, PeerOutcome
from geniam.managers.peers import PeerRecord
from geniam.managers.transactionapi import TRANSACTIONS_EXTENSION
from geniam.managers.smtransactions import earliest_commit_by

PATH_FIELD = "geniam_allocation_path"
"""The Allocate answer's member naming the path taken."""

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
    """

    outcomes: list[PeerOutcome]
    code: int
    output: str
    committed: bool


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
        if code != int(GeniCode.SUCCESS):
            await self._abort(slice_urn, credentials, options, [o for o in begun if o.ok or uncertain(o)])
            aborted = [undone(o, "transaction begun, then aborted because another aggregate failed") if o.ok else o for o in begun]
            return TwoPhaseResult(aborted, code, f"{output}; the others were aborted (nothing was booked)", False)
        commit_by = earliest_commit_by(begun)
        until = deadline if commit_by is None else min(commit_by, deadline)
        outcomes = await self._commit(slice_urn, credentials, options, begun, until)
        code, output = self._rollup(outcomes)
        failed = [o for o in outcomes if not o.ok and not uncertain(o)]
        if failed:
            await self._abort(slice_urn, credentials, options, failed)
        return TwoPhaseResult(outcomes, code, output, True)

    async def _commit(
        self, slice_urn: str, credentials: list[Any], options: dict[str, Any], begun: list[PeerOutcome], until: float
    ) -> list[PeerOutcome]:
        """Commit everywhere; retry the failures every C{retry} seconds until C{until}."""
        latest = {id(o.record): o for o in begun}
        waiting = [o.record for o in begun]
        while True:
            answered = await self._fan([PeerCall(r, "CommitTransaction", (slice_urn, credentials, options)) for r in waiting])
            for outcome in answered:
                before = latest[id(outcome.record)]
                # A Commit that timed out may have been carried out: a retry refused then keeps it uncertain.
                if outcome.ok or not uncertain(before):
                    latest[id(outcome.record)] = outcome
            waiting = [o.record for o in answered if not o.ok and _retriable(o)]
            if not waiting or self._clock.seconds() + self._retry >= until:
                return [latest[id(o.record)] for o in begun]
            await deferLater(self._clock, self._retry, lambda: None)

    async def _abort(self, slice_urn: str, credentials: list[Any], options: dict[str, Any], outcomes: list[PeerOutcome]) -> None:
        """AbortTransaction where a transaction may be open (an aggregate also aborts by itself at C{commit_by})."""
        if outcomes:
            await self._fan([PeerCall(o.record, "AbortTransaction", (slice_urn, credentials, options)) for o in outcomes])


def uncertain(outcome: PeerOutcome) -> bool:
    """Whether a call may have been carried out without its answer reaching us (timed out, or cut off)."""
    return outcome.called and outcome.struct is None and outcome.code == int(GeniCode.TIMEDOUT)


def _retriable(outcome: PeerOutcome) -> bool:
    """Whether a Commit failed for want of an answer (the aggregate went away), not by the aggregate's refusal."""
    return outcome.struct is None


def undone(outcome: PeerOutcome, reason: str) -> PeerOutcome:
    """A success taken back (its slivers released, its transaction aborted): reported as an error, for C{reason}."""
    return PeerOutcome(outcome.record, ERROR, outcome.elapsed, None, int(GeniCode.REFUSED), reason)
