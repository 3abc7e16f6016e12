# -*- test-case-name: tests.calendar.test_schedule -*-
"""
The calendar's model and its pure computations.

An island's schedule is a list of anonymous I{blocks}: half-open
intervals C{[start, end)} in POSIX seconds during which the island is not
free — a booking (C{booked}, or C{running} while its slot holds the
island now) or an operator's maintenance window (C{maintenance}, with the
operator's reason). A block never says who booked it: the sources build
blocks from slots alone, as the advertisement's C{<island:schedule>} does.

The free-slot search finds, for a duration and an earliest start, the
earliest slots during which every island asked about is free: the first
slot of each free gap between the blocks of all of them together.
Back-to-back is free (a slot may start at the instant a block ends).

No I/O and no clock: the current time is an argument.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from geniam.errors import GeniError
from geniam.urn import parse_urn


class BlockKind(StrEnum):
    """What keeps an island from being free during a block."""

    BOOKED = "booked"
    RUNNING = "running"
    MAINTENANCE = "maintenance"


class IslandState(StrEnum):
    """What an island is doing now, as the calendar tells it."""

    IDLE = "idle"
    IN_SLOT = "in a slot"
    CONFIGURING = "configuring"
    FAILED = "failed"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Block:
    """
    A stretch C{[start, end)} during which an island is not free.

    @ivar reason: the operator's reason, for maintenance blocks only.
    @raise ValueError: unless C{start < end}, both finite.
    """

    start: float
    end: float
    kind: BlockKind = BlockKind.BOOKED
    reason: str = ""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.start) and math.isfinite(self.end) and self.start < self.end):
            raise ValueError(f"a block must end after it starts, got {self.start!r} to {self.end!r}")
        object.__setattr__(self, "kind", BlockKind(self.kind))

    def overlaps(self, start: float, end: float) -> bool:
        """True if the block shares an instant with C{[start, end)}."""
        return self.start < end and start < self.end

    def contains(self, moment: float) -> bool:
        """True if C{moment} lies within C{[start, end)}."""
        return self.start <= moment < self.end


@dataclass(frozen=True)
class IslandRow:
    """
    One island's line of the calendar.

    @ivar urn: the island aggregate's URN.
    @ivar name: how the calendar names it (its authority).
    @ivar blocks: its blocks, by start.
    @ivar state: what it is doing now.
    @ivar detail: more words on C{state} (never a slice or user).
    @ivar gateway: the state of the link to its gateway, in words
        (empty where it is not known, as on a slice manager).
    @ivar reachable: whether its schedule could be read.
    @ivar reachability: how reading it went, in words.
    """

    urn: str
    name: str
    blocks: tuple[Block, ...] = ()
    state: IslandState = IslandState.IDLE
    detail: str = ""
    gateway: str = ""
    reachable: bool = True
    reachability: str = ""

    def blocks_in(self, start: float, end: float) -> list[Block]:
        """The blocks that share an instant with C{[start, end)}."""
        return [block for block in self.blocks if block.overlaps(start, end)]


@dataclass(frozen=True)
class Schedule:
    """
    What a calendar shows: one row per island, read at C{generated}.

    @ivar title: what the page is about (an island, or a federation).
    @ivar federation: whether it is a slice manager's view of many islands.
    """

    title: str
    generated: float
    islands: tuple[IslandRow, ...] = ()
    federation: bool = False

    def select(self, names: Sequence[str]) -> tuple[list[IslandRow], list[str]]:
        """
        The islands named (by URN or name; all when C{names} is empty),
        and the names that match none.
        """
        if not names:
            return list(self.islands), []
        chosen: list[IslandRow] = []
        unknown: list[str] = []
        for wanted in names:
            found = [row for row in self.islands if wanted in (row.urn, row.name)]
            if not found:
                unknown.append(wanted)
            for row in found:
                if row not in chosen:
                    chosen.append(row)
        return chosen, unknown


@dataclass(frozen=True)
class FreeSlot:
    """
    A free slot of the asked duration, C{[start, end)}.

    @ivar free_until: when the free stretch it begins ends (the next
        block's start), or C{None} when nothing known follows it.
    """

    start: float
    end: float
    free_until: float | None = None


@dataclass(frozen=True)
class FreeSearch:
    """
    The answer to "when are these islands free together?".

    @ivar islands: the islands searched over.
    @ivar left_out: islands whose schedule is unknown (unreachable), with why.
    @ivar slots: the earliest free slots, by start.
    """

    duration: float
    earliest: float
    islands: tuple[IslandRow, ...]
    left_out: tuple[IslandRow, ...] = ()
    slots: tuple[FreeSlot, ...] = field(default=())


def island_name(urn: str) -> str:
    """How the calendar names an island: its URN's authority (the URN itself if it is malformed)."""
    try:
        return parse_urn(urn).authority
    except GeniError:
        return urn


def blocks_from_slots(
    slots: Iterable[tuple[float, float]], now: float, maintenance: Iterable[Block] = ()
) -> tuple[Block, ...]:
    """
    Anonymous blocks for booked C{(start, end)} slots (the one holding the
    island at C{now} is C{running}) and the given maintenance blocks, by start.
    """
    blocks = [
        Block(start, end, BlockKind.RUNNING if start <= now < end else BlockKind.BOOKED)
        for start, end in slots
        if start < end
    ]
    blocks.extend(maintenance)
    return tuple(sorted(blocks, key=lambda block: (block.start, block.end)))


def state_from_blocks(blocks: Iterable[Block], now: float) -> IslandState:
    """An island's state as far as its blocks tell: in a slot while a booking holds it, else idle."""
    running = any(block.kind is not BlockKind.MAINTENANCE and block.contains(now) for block in blocks)
    return IslandState.IN_SLOT if running else IslandState.IDLE


def merged_busy(intervals: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    """Coalesce C{[start, end)} intervals that overlap or touch, by start."""
    merged: list[tuple[float, float]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def round_up(moment: float, step: float) -> float:
    """The first multiple of C{step} seconds (from the epoch) at or after C{moment}."""
    return math.ceil(moment / step) * step


def free_slots(
    busy: Iterable[tuple[float, float]],
    duration: float,
    earliest: float,
    count: int = 5,
    horizon: float | None = None,
    step: float = 60.0,
) -> list[FreeSlot]:
    """
    The earliest free slots of C{duration} seconds: the first one of each
    free gap between the C{busy} intervals, in order.

    Intervals are half-open, so a slot may begin as one ends. Starts are
    at C{earliest} or later, rounded up to whole C{step}s (a minute by
    default), and before C{horizon} when given.

    @param count: at most this many slots.
    @raise ValueError: for a duration, count or step that is not positive.
    """
    if not duration > 0 or not step > 0 or count < 1:
        raise ValueError("the duration, the count and the step must be positive")
    found: list[FreeSlot] = []
    cursor = round_up(earliest, step)
    for start, end in merged_busy(busy):
        if len(found) >= count or (horizon is not None and cursor >= horizon):
            return found
        if end <= cursor:
            continue
        if start - cursor >= duration:
            found.append(FreeSlot(cursor, cursor + duration, start))
        cursor = max(cursor, round_up(end, step))
    if len(found) < count and (horizon is None or cursor < horizon):
        found.append(FreeSlot(cursor, cursor + duration, None))
    return found


def find_free(
    islands: Sequence[IslandRow],
    duration: float,
    earliest: float,
    count: int = 5,
    horizon: float | None = None,
) -> FreeSearch:
    """
    When are all of C{islands} free together? Islands whose schedule is
    unknown are left out of the search and named in the answer.
    """
    known = tuple(row for row in islands if row.reachable)
    left_out = tuple(row for row in islands if not row.reachable)
    busy = [(block.start, block.end) for row in known for block in row.blocks]
    slots = tuple(free_slots(busy, duration, earliest, count, horizon)) if known else ()
    return FreeSearch(duration, earliest, known, left_out, slots)
