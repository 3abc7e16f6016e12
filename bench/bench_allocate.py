# -*- test-case-name: tests.managers.test_island_sqlite -*-
"""
Time Allocate through the island resource manager and its SQLite store.

Run from the checkout: C{python bench/bench_allocate.py [--short]}. For an
empty database and for one already holding C{--existing} bookings (half of
them history, half live slots in the future with gaps between them), it
allocates C{--allocations} free gaps one after another, then tries as many
taken slots, and prints the median and 95th percentile latency of each.
C{--short} uses fewer bookings, for CI.
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import tempfile
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import react

from geniam.agent.inprocess import InProcessGateway
from geniam.booking.values import Booking, Slot, make_sliver_urn
from geniam.errors import GeniCode, GeniError
from geniam.managers.island import IslandResourceManager
from geniam.store.rows import ALL_COLUMNS, booking_to_row
from geniam.store.sqlite import SQLiteStore

from benchlib import AUTHORITY, HOUR, OWNER, SLICE, SLOT, report, seed_plan, timed


def seed(path: str, count: int, now: float) -> list[Slot]:
    """
    Write C{count} bookings straight into the database (see
    L{seed_plan}). Return the free hour after each live one.
    """
    bookings, gaps = seed_plan(count, now)
    rows = [
        booking_to_row(
            Booking(
                sliver_urn=make_sliver_urn(AUTHORITY, f"seed{i}"),
                slice_urn=SLICE,
                owner_urn=OWNER,
                owner_email="",
                slot=slot,
                allocation_state=state,
                allocation_expires=slot.end,
                created=now,
                updated=now,
            ),
            "default",
            1,
        )
        for i, (slot, state) in enumerate(bookings)
    ]
    db = sqlite3.connect(path)
    try:
        with db:
            db.executemany(f"INSERT INTO bookings ({', '.join(ALL_COLUMNS)}) VALUES ({', '.join('?' for _ in ALL_COLUMNS)})", rows)
    finally:
        db.close()
    return gaps


async def run(reactor: Any, existing: int, allocations: int) -> None:
    """Time allocations with C{existing} bookings already stored."""
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "bookings.sqlite")
        store = SQLiteStore(path, reactor=reactor)
        await store.start()
        now = reactor.seconds()
        gaps = seed(path, existing, now) if existing else []
        manager = IslandResourceManager(store, InProcessGateway(), reactor, AUTHORITY, max_slot_length=30 * 24 * HOUR)
        rng = random.Random(1)
        if gaps:
            free = rng.sample(gaps, min(allocations, len(gaps)))
        else:
            free = [Slot(now + HOUR + i * SLOT, now + HOUR + i * SLOT + HOUR) for i in range(allocations)]
        granted: list[float] = []
        for slot in free:
            granted.append(await timed(lambda: manager.allocate(SLICE, OWNER, "", slot, None)))
        refused: list[float] = []
        for slot in free[:allocations]:

            async def conflicting(slot: Slot = slot) -> None:
                try:
                    await manager.allocate(SLICE, OWNER, "", Slot(slot.start + 60, slot.end - 60), None)
                except GeniError as e:
                    if e.code is GeniCode.UNAVAILABLE:
                        return
                    raise
                raise AssertionError("a taken slot was granted")

            refused.append(await timed(conflicting))
        total = await store.count()
        print(f"-- {existing} existing bookings ({total} after the run)")
        report("Allocate, free slot", granted)
        report("Allocate, taken slot (UNAVAILABLE)", refused)
        await manager.stop()
        await store.stop()


def main(reactor: Any) -> Deferred[None]:
    """Parse the options and run both databases."""
    parser = argparse.ArgumentParser(description="Time Allocate through the island manager and SQLite.")
    parser.add_argument("--short", action="store_true", help="fewer bookings, for CI")
    parser.add_argument("--existing", type=int, default=None, help="bookings already stored (default 100000, short 10000)")
    parser.add_argument("--allocations", type=int, default=None, help="allocations timed (default 500, short 100)")
    args = parser.parse_args()
    existing = args.existing if args.existing is not None else (10_000 if args.short else 100_000)
    allocations = args.allocations if args.allocations is not None else (100 if args.short else 500)

    async def both() -> None:
        for count in (0, existing):
            await run(reactor, count, allocations)

    return Deferred.fromCoroutine(both())


if __name__ == "__main__":
    react(main)
