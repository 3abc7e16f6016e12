# -*- test-case-name: tests.calendar.test_sources -*-
"""
Schedules read back from advertisements.

An island aggregate's ListResources advertisement carries
C{<island:schedule component_manager_id=AM>} with one C{<island:booked>}
per slot that has not ended, never naming a slice; a slice manager's
merged advertisement holds one such schedule per aggregate and a
C{<statistics>} element saying how each aggregate answered. This is all
a slice manager's calendar and the command line need, and all anyone
with a user credential may see.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from geniam.calendar.schedule import IslandRow, IslandState, blocks_from_slots, island_name, state_from_blocks
from geniam.errors import GeniError
from geniam.rspec.island import SCHEDULE, read_schedule
from geniam.rspec.merge import read_statistics
from geniam.rspec.parser import parse_xml


@dataclass(frozen=True)
class Answer:
    """How one aggregate answered a fanned-out call, from C{<statistics>}."""

    name: str
    status: str
    elapsed: float
    reason: str = ""

    @property
    def ok(self) -> bool:
        """Whether it answered with success."""
        return self.status == "success"

    def describe(self) -> str:
        """In words: C{answered in 7 ms}, C{timeout after 30 s}, C{error: why}."""
        if self.ok:
            return f"answered in {self.elapsed * 1000:.0f} ms"
        if self.status == "timeout":
            return f"did not answer within {self.elapsed:.0f} s"
        return f"error: {self.reason}" if self.reason else "error"


def read_advertised(rspec: str) -> tuple[dict[str, list[tuple[float, float]]], list[Answer]]:
    """
    The schedules of an advertisement, by aggregate URN, and the answers
    its C{<statistics>} records (none for a single aggregate's).

    @raise GeniError: BADARGS or TOOBIG for a malformed or hostile document.
    """
    root = parse_xml(rspec, what="advertisement")
    schedules: dict[str, list[tuple[float, float]]] = {}
    for element in root.iter(SCHEDULE):
        urn = element.get("component_manager_id", "")
        schedules.setdefault(urn, []).extend(read_schedule(element))
    answers = []
    if b"statistics" in rspec.encode("utf-8", "replace"):
        for entry in read_statistics(rspec):
            try:
                elapsed = float(entry.get("elapsed", "0"))
            except ValueError:
                elapsed = 0.0
            answers.append(Answer(entry.get("name", ""), entry.get("status", ""), elapsed, entry.get("exception", "")))
    return schedules, answers


def rows_from_advertisement(rspec: str, now: float, expected: Sequence[str] = ()) -> list[IslandRow]:
    """
    One row per island of an advertisement (plain or merged): its blocks
    and whether it is booked now, and, for a merged one, whether its
    aggregate answered.

    @param expected: URNs or URLs of aggregates that must have a row (as
        a slice manager's peers); one that answered nothing is unreachable.
    @raise GeniError: for a malformed document.
    """
    schedules, answers = read_advertised(rspec)
    by_name = {answer.name: answer for answer in answers}
    rows = []
    names = list(dict.fromkeys([*expected, *schedules]))
    for name in names:
        answer = by_name.get(name)
        if name in schedules and (answer is None or answer.ok):
            blocks = blocks_from_slots(schedules[name], now)
            how = answer.describe() if answer is not None else "advertised"
            rows.append(IslandRow(name, island_name(name), blocks, state_from_blocks(blocks, now), reachable=True, reachability=how))
        else:
            how = answer.describe() if answer is not None else "its advertisement holds no schedule"
            rows.append(unreachable_row(name, how))
    return rows


def unreachable_row(name: str, why: str) -> IslandRow:
    """The row of an island whose schedule could not be read, and why."""
    return IslandRow(name, island_name(name), (), IslandState.UNKNOWN, reachable=False, reachability=why)


def schedule_error(error: Exception) -> str:
    """A readable reason for a failure to read a schedule."""
    if isinstance(error, GeniError):
        return f"{error.code.name}: {error.output}"
    return "it could not be read"
