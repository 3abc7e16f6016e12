# -*- test-case-name: tests.managers.test_slice -*-
"""
Combining what the peers answered into one GENI return struct.

The values are merged as SFA's slice manager merges them: RSpecs into one
document (L{geniam.rspec.merge}), C{geni_slivers} and the sliver lists
of Renew, PerformOperationalAction and Delete concatenated, C{geni_urn}
kept, Shutdown's C{true} and-ed.

The code, output and statistics are rolled up here:

  - every peer succeeded: SUCCESS;
  - some failed: the code of the first failure in peer order (TIMEDOUT
    when they all timed out) and an output naming each failed peer and
    why; the value still holds what the others answered. With
    C{geni_best_effort} the code stays SUCCESS while at least one peer
    succeeded, and the output names the failures;
  - for a call naming a whole slice, a peer answering SEARCHFAILED holds
    nothing of the slice and contributes nothing; only when every peer
    says so is the answer SEARCHFAILED.

Every fanned-out result carries the extra struct member
C{geniam_statistics}: C{{call, aggregates: [{name, url, elapsed, status,
code?, exception?}], unreachable: [name]}}, the same facts as the
C{<statistics>} element of a merged RSpec, one entry per peer concerned;
C{unreachable} names the peers that gave no GENI answer (timed out, not
reachable, not called).

Read calls (ListResources, Describe, Status) answer success with what the
reachable aggregates said, as C{geni_best_effort} does, as long as one
aggregate answered; changing calls keep their own rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from geniam.errors import AM_TYPE, GeniCode
from geniam.managers.fanout import ERROR, SUCCESS, TIMEOUT, PeerOutcome
from geniam.rspec.merge import AggregateOutcome

STATISTICS_FIELD = "geniam_statistics"
"""The return struct member holding the per-peer statistics."""


def statistics(call: str, outcomes: Sequence[PeerOutcome]) -> dict[str, Any]:
    """The C{geniam_statistics} member for C{outcomes}."""
    entries = []
    for outcome in outcomes:
        entry: dict[str, Any] = {
            "name": outcome.name,
            "url": outcome.record.url,
            "elapsed": round(outcome.elapsed, 3),
            "status": outcome.status,
        }
        if outcome.code is not None:
            entry["code"] = int(outcome.code)
        if outcome.reason:
            entry["exception"] = outcome.reason
        entries.append(entry)
    return {"call": call, "aggregates": entries, "unreachable": unreachable(outcomes)}


def unreachable(outcomes: Sequence[PeerOutcome]) -> list[str]:
    """The names of the peers that gave no GENI answer (timed out, not reachable or not called)."""
    return [o.name for o in outcomes if not o.ok and o.struct is None]


def rspec_outcomes(outcomes: Sequence[PeerOutcome], rspecs: Sequence[str | None]) -> list[AggregateOutcome]:
    """
    The outcomes as the RSpec merge takes them.

    @param rspecs: the RSpec each successful peer returned, C{None} for
        peers that contribute none.
    """
    merged = []
    for outcome, rspec in zip(outcomes, rspecs):
        status = outcome.status if outcome.status in (SUCCESS, ERROR, TIMEOUT) else ERROR
        merged.append(
            AggregateOutcome(
                outcome.name,
                outcome.elapsed,
                status,
                rspec if status == SUCCESS else None,
                outcome.code if status != SUCCESS else None,
                outcome.reason if status != SUCCESS else None,
            )
        )
    return merged


def is_empty(outcome: PeerOutcome, whole_slice: bool) -> bool:
    """Whether the peer answered that it holds nothing of the slice."""
    return whole_slice and outcome.struct is not None and outcome.code == GeniCode.SEARCHFAILED


def rollup(outcomes: Sequence[PeerOutcome], whole_slice: bool, best_effort: bool) -> tuple[int, str]:
    """
    The C{geni_code} and C{output} of a fanned-out call.

    @param whole_slice: the call named a slice (not slivers).
    @param best_effort: the call's C{geni_best_effort}.
    """
    empties = [o for o in outcomes if is_empty(o, whole_slice)]
    failures = [o for o in outcomes if not o.ok and not is_empty(o, whole_slice)]
    successes = [o for o in outcomes if o.ok]
    if not failures:
        if empties and not successes:
            return int(GeniCode.SEARCHFAILED), "no aggregate holds slivers of this slice: " + "; ".join(
                o.describe() for o in empties
            )
        return int(GeniCode.SUCCESS), ""
    text = f"{len(failures)} of {len(outcomes)} aggregates failed: " + "; ".join(o.describe() for o in failures)
    if best_effort and (successes or empties):
        return int(GeniCode.SUCCESS), text
    if all(o.status == TIMEOUT for o in failures):
        return int(GeniCode.TIMEDOUT), text
    code = failures[0].code
    return (int(code) if code is not None else int(GeniCode.ERROR)), text


def result_struct(
    call: str, outcomes: Sequence[PeerOutcome], value: Any, code: int, output: str
) -> dict[str, Any]:
    """The GENI return struct of a fanned-out call, with its statistics."""
    return {
        "code": {"geni_code": int(code), "am_type": AM_TYPE, "am_code": int(code)},
        "value": value,
        "output": output,
        STATISTICS_FIELD: statistics(call, outcomes),
    }


def concatenated(outcomes: Sequence[PeerOutcome], member: str | None) -> list[Any]:
    """
    The lists the successful peers returned, joined in peer order.

    @param member: take C{value[member]}, or the C{value} itself when C{None}.
    """
    joined: list[Any] = []
    for outcome in outcomes:
        if not outcome.ok:
            continue
        value = outcome.value if member is None else outcome.value.get(member)
        joined.extend(value or [])
    return joined


def first_member(outcomes: Sequence[PeerOutcome], member: str, default: Any) -> Any:
    """C{value[member]} of the first successful peer that returned one (C{geni_urn} is kept this way)."""
    for outcome in outcomes:
        if outcome.ok and isinstance(outcome.value, dict):
            found = outcome.value.get(member)
            if found:
                return found
    return default
