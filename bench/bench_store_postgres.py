# -*- test-case-name: tests.store.test_postgres -*-
"""
Time the PostgreSQL booking store.

Run from the checkout: C{python bench/bench_store_postgres.py [--short]
[--dsn DSN]} (the DSN defaults to C{GENIAM_TEST_POSTGRES_DSN}; without one
nothing is measured). In a scratch schema, dropped afterwards, holding
C{--existing} bookings (half of them history, half live slots in the
future with gaps between them), it times one after another: inserts into
free gaps, inserts refused as conflicts, reads by sliver and the periodic
check's query; then two stores with their own pools (as two AM processes)
insert into distinct free gaps C{--concurrency} at a time, and race for
single slots. It prints the median and 95th percentile latency of each,
and the concurrent throughput. C{--short} uses fewer bookings, for CI.
"""

from __future__ import annotations

import argparse
import os
import random
import time
import uuid
from functools import partial
from typing import Any

import psycopg2
import psycopg2.extensions
import psycopg2.extras
from twisted.internet.defer import Deferred, DeferredList, DeferredSemaphore
from twisted.internet.task import react

from geniam.booking.errors import BookingConflict
from geniam.booking.values import AllocationState, Booking, Slot, make_sliver_urn
from geniam.store.postgres import PostgresStore
from geniam.store.rows import ALL_COLUMNS, booking_to_row

from benchlib import AUTHORITY, HOUR, OWNER, SLICE, SLOT, report, seed_plan, timed


def make_booking(name: str, slot: Slot, state: AllocationState, now: float) -> Booking:
    """A booking of the bench slice."""
    return Booking(
        sliver_urn=make_sliver_urn(AUTHORITY, name),
        slice_urn=SLICE,
        owner_urn=OWNER,
        owner_email="",
        slot=slot,
        allocation_state=state,
        allocation_expires=min(slot.end, now + 48 * HOUR),
        created=now,
        updated=now,
    )


def seed(dsn: str, count: int, now: float) -> list[Slot]:
    """
    Write C{count} bookings straight into the store's schema (see
    L{seed_plan}). Return the free hour after each live one.
    """
    bookings, gaps = seed_plan(count, now)
    rows = [booking_to_row(make_booking(f"seed{i}", slot, state, now), "default", 1) for i, (slot, state) in enumerate(bookings)]
    db = psycopg2.connect(dsn)
    try:
        with db, db.cursor() as cursor:
            psycopg2.extras.execute_values(cursor, f"INSERT INTO bookings ({', '.join(ALL_COLUMNS)}) VALUES %s", rows, page_size=1000)
            cursor.execute("ANALYZE bookings")
    finally:
        db.close()
    return gaps


async def refused(store: PostgresStore, candidate: Booking) -> None:
    """Insert C{candidate}, which must be refused as a conflict."""
    try:
        await store.insert(candidate)
    except BookingConflict:
        return
    raise AssertionError("a taken slot was granted")


async def run(reactor: Any, dsn: str, existing: int, operations: int, concurrency: int) -> None:
    """Time the store with C{existing} bookings already stored."""
    first = PostgresStore(dsn, reactor=reactor, pool_size=concurrency)
    second = PostgresStore(dsn, reactor=reactor, pool_size=concurrency)
    await first.start()
    await second.start()
    try:
        now = reactor.seconds()
        gaps = seed(dsn, existing, now) if existing else []
        if len(gaps) < 2 * operations:
            base = now + 24 * HOUR + existing * SLOT
            gaps += [Slot(base + i * SLOT, base + i * SLOT + HOUR) for i in range(2 * operations)]
        free = random.Random(1).sample(gaps, 2 * operations)
        sequential, parallel = free[:operations], free[operations:]
        granted, taken, reads, checks = [], [], [], []
        for i, slot in enumerate(sequential):
            granted.append(await timed(partial(first.insert, make_booking(f"seq{i}", slot, AllocationState.ALLOCATED, now))))
        for i, slot in enumerate(sequential):
            candidate = make_booking(f"no{i}", Slot(slot.start + 60, slot.end - 60), AllocationState.ALLOCATED, now)
            taken.append(await timed(partial(refused, first, candidate)))
        for i in range(operations):
            reads.append(await timed(partial(first.get, make_sliver_urn(AUTHORITY, f"seq{i}"))))
        for _ in range(min(operations, 50)):
            checks.append(await timed(partial(first.due, now)))
        print(f"-- {existing} existing bookings")
        report("insert, free slot", granted)
        report("insert, taken slot (UNAVAILABLE)", taken)
        report("get by sliver", reads)
        report("due (the periodic check)", checks)

        semaphore = DeferredSemaphore(2 * concurrency)
        began = time.perf_counter()
        calls = [
            semaphore.run((first if i % 2 else second).insert, make_booking(f"par{i}", slot, AllocationState.ALLOCATED, now))
            for i, slot in enumerate(parallel)
        ]
        await DeferredList(calls, fireOnOneErrback=True, consumeErrors=True)
        elapsed = time.perf_counter() - began
        print(f"{'insert, distinct free slots, 2 stores':<48} n={operations:<5} {operations / elapsed:9.0f} inserts/s at {2 * concurrency} in flight")

        races = []
        base = now + 24 * HOUR + (existing + 4 * operations) * SLOT
        for r in range(min(operations, 50)):
            slot = Slot(base + r * SLOT, base + r * SLOT + HOUR)

            async def race(r: int = r, slot: Slot = slot) -> None:
                outcomes = await DeferredList(
                    [(first if j % 2 else second).insert(make_booking(f"race{r}-{j}", slot, AllocationState.ALLOCATED, now)) for j in range(2 * concurrency)],
                    consumeErrors=True,
                )
                if sum(1 for ok, _ in outcomes if ok) != 1:
                    raise AssertionError("a raced slot was not granted exactly once")

            races.append(await timed(race))
        report(f"race of {2 * concurrency} inserts for one slot, 2 stores", races)
    finally:
        await first.stop()
        await second.stop()


def main(reactor: Any) -> Deferred[None]:
    """Parse the options and run with an empty and a full schema."""
    parser = argparse.ArgumentParser(description="Time the PostgreSQL booking store.")
    parser.add_argument("--short", action="store_true", help="fewer bookings, for CI")
    parser.add_argument("--dsn", default=os.environ.get("GENIAM_TEST_POSTGRES_DSN", ""), help="a scratch database (default $GENIAM_TEST_POSTGRES_DSN)")
    parser.add_argument("--existing", type=int, default=None, help="bookings already stored (default 100000, short 10000)")
    parser.add_argument("--operations", type=int, default=None, help="operations timed of each kind (default 500, short 100)")
    parser.add_argument("--concurrency", type=int, default=4, help="connections per store (default 4)")
    args = parser.parse_args()
    if not args.dsn:
        print("bench_store_postgres: no database (set GENIAM_TEST_POSTGRES_DSN or pass --dsn); nothing measured")
        return Deferred.fromCoroutine(_nothing())
    existing = args.existing if args.existing is not None else (10_000 if args.short else 100_000)
    operations = args.operations if args.operations is not None else (100 if args.short else 500)

    async def both() -> None:
        for count in (0, existing):
            schema = f"geniam_bench_{uuid.uuid4().hex[:12]}"
            admin = psycopg2.connect(args.dsn)
            admin.autocommit = True
            try:
                admin.cursor().execute(f"CREATE SCHEMA {schema}")
                dsn = str(psycopg2.extensions.make_dsn(args.dsn, options=f"-csearch_path={schema},public"))
                await run(reactor, dsn, count, operations, args.concurrency)
            finally:
                admin.cursor().execute(f"DROP SCHEMA {schema} CASCADE")
                admin.close()

    return Deferred.fromCoroutine(both())


async def _nothing() -> None:
    """Nothing to run."""


if __name__ == "__main__":
    react(main)
