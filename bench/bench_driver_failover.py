# -*- test-case-name: tests.loopback.test_driver_postgres -*-
"""
How late a slot's configuration reaches the gateway when the island's
gateway driver dies just before the slot starts.

Run from the checkout: C{python bench/bench_driver_failover.py [--short]
[--dsn DSN] [--processes N] [--driver-poll SECONDS]}. Without a DSN (or
C{GENIAM_TEST_POSTGRES_DSN}) it makes a throwaway cluster (as the tests
do). Each round starts C{--processes} aggregate-manager islands on the
database, each with its own connection pool and driver lease, in front of
one simulated gateway; a slot is booked to start two seconds later. In a
reference round nothing happens; in a failover round the driver dies
(its checks stop and its database sessions end) half a second before the
boundary. It prints the start's lateness (seconds from the boundary to the
configuration being applied) for both, their ratio, and whether every
change of a round came from one process only. Target: within 5 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg2  # noqa: E402
from twisted.internet.defer import Deferred  # noqa: E402
from twisted.internet.task import react  # noqa: E402

from geniam.managers.driver import DEFAULT_DRIVER_POLL  # noqa: E402
from tests.driverharness import SharedIsland  # noqa: E402
from tests.pgcluster import SKIP, Cluster  # noqa: E402

LEAD = 2.0
"""Seconds from booking to the slot's start."""

CRASH_BEFORE = 0.5
"""Seconds before the boundary at which the driver dies."""


def clear(dsn: str) -> None:
    """Remove the bookings of earlier rounds."""
    with psycopg2.connect(dsn) as connection, connection.cursor() as cursor:
        cursor.execute("DELETE FROM bookings")
    connection.close()


async def one_round(reactor: object, dsn: str, processes: int, poll: float, failover: bool, phase: float) -> tuple[float, bool]:
    """
    One slot start, with or without the driver dying before it: (lateness,
    one sender only). C{phase} (0 to 1) shifts the boundary within the
    others' poll interval, so the rounds see every wait for the next poll.
    """
    island = SharedIsland(reactor, dsn, poll)
    try:
        for _ in range(processes):
            await island.add()
        [driver] = island.drivers()
        start = reactor.seconds() + LEAD + phase * poll  # type: ignore[attr-defined]
        await island.provisioned(start, 60.0)
        done = island.next_boundary_done()
        if failover:
            crashed: Deferred[None] = Deferred()
            reactor.callLater(  # type: ignore[attr-defined]
                start - CRASH_BEFORE - reactor.seconds(),  # type: ignore[attr-defined]
                lambda: Deferred.fromCoroutine(island.crash(driver)).chainDeferred(crashed),
            )
            await crashed
        member, edge, lateness = await done
        assert edge == "start", edge
        senders = {sent.member for sent in island.sent}
        return lateness, senders == {member.number} and (member is not driver) == failover
    finally:
        await island.stop()
        clear(dsn)


async def run(reactor: object, args: argparse.Namespace) -> None:
    cluster = None
    dsn = args.dsn
    if not dsn:
        if SKIP:
            print(f"nothing measured: no DSN and no throwaway cluster ({SKIP})")
            return
        cluster = Cluster()
        await cluster.create()
        dsn = cluster.dsn
    try:
        rounds = 3 if args.short else 10
        figures: dict[bool, list[float]] = {False: [], True: []}
        single = True
        for n in range(2 * rounds):
            failover = n % 2 == 1
            phase = (n // 2) / rounds
            lateness, one_sender = await one_round(reactor, dsn, args.processes, args.driver_poll, failover, phase)
            figures[failover].append(lateness)
            single = single and one_sender
        reference = statistics.median(figures[False])
        failed_over = statistics.median(figures[True])
        print(f"{args.processes} processes, driver poll {args.driver_poll:g} s, driver dies {CRASH_BEFORE:g} s before the boundary")
        print(f"slot start lateness, no failover   n={rounds}  median {reference:6.3f} s  max {max(figures[False]):6.3f} s")
        print(f"slot start lateness, after failover n={rounds}  median {failed_over:6.3f} s  max {max(figures[True]):6.3f} s")
        print(f"failover / reference: {failed_over / max(reference, 1e-6):.0f}x; target within 5 s: {'met' if max(figures[True]) <= 5 else 'MISSED'}")
        print(f"every change of a round from one process only: {'yes' if single else 'NO'}")
    finally:
        if cluster is not None:
            await cluster.destroy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--short", action="store_true", help="fewer rounds, for CI")
    parser.add_argument("--dsn", default=os.environ.get("GENIAM_TEST_POSTGRES_DSN"))
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--driver-poll", type=float, default=DEFAULT_DRIVER_POLL)
    args = parser.parse_args()
    react(lambda reactor: Deferred.fromCoroutine(run(reactor, args)))


if __name__ == "__main__":
    main()
