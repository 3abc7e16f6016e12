"""
The child process of the kill -9 tests of transactions
(L{tests.store.test_transactions_crash}): it runs one transaction operation
on a real store and kills itself with SIGKILL at a chosen point.

Run as C{python -m tests.store.crashchild}, it is a fork server: it reads
one job per line (JSON) on stdin, forks a process for it, and writes one
line (JSON) on stdout once that process has ended: whether SIGKILL ended it,
and its report if it finished. Forking a process that has imported
everything, but has no reactor, thread or connection yet, costs
milliseconds where starting Python costs a third of a second.

A job names a store (C{"sqlite"} with a file, C{"postgres"} with a DSN).
The forked process starts an island manager and a transaction manager on
it, as an aggregate manager starts. A job with C{setup} (an operation of
L{OPERATIONS}) then sets the island up for that operation (L{setup}) and
reports the next free sliver name. A job with C{operation}, on a copy of
such a database, takes sliver names from C{names_from} and runs the
operation, counting the points it passes: before each SQL statement the
database runs (SQLite's trace callback, called as a statement starts; on
PostgreSQL, as the statement is sent) and, on PostgreSQL, once a COMMIT is
sent and not yet answered; last, the end of the operation (with the work
it set off in the background). With C{kill_at} it kills itself with
SIGKILL at that point; without, it finishes and reports the points, so the
tests take how many kill points an operation has from a run that finishes.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import sys
import traceback
from collections.abc import Iterable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from txpostgres.txpostgres import Cursor

from geniam.booking.transactions import DesiredSlot
from geniam.booking.values import Slot
from geniam.managers.island import IslandResourceManager
from geniam.managers.transactions import TransactionManager
from geniam.store import pgpool
from geniam.store.postgres import PostgresStore
from geniam.store.sqlite import SQLiteStore
from tests.managers.test_island import (
    ALICE,
    CONTROLLER,
    DAY,
    HOUR,
    OTHER_SLICE,
    SLICE,
    SWEEP,
    T0,
    USERS,
    VLANS,
    at,
    island_manager,
)

OPERATIONS = ("begin", "update", "commit", "abort", "expire", "lapse")
"""
What a job may do: Begin, Update, Commit, Abort; let the clock reach
C{commit_by} (the transaction's timer aborts it); or let it pass
C{commit_by} by a second, so that the island's check, due a moment after
it, lapses the holds too.
"""

TTL = SWEEP / 2
"""The transactions' lifetime here: the safety sweep does not fall due at C{commit_by}."""

EMAIL = "alice@example.net"
CREDENTIAL_EXPIRES = at(30 * DAY)


def slot(day: int) -> Slot:
    """An hour on C{day} days after the epoch."""
    return Slot(at(day * DAY), at(day * DAY + HOUR))


KEPT = DesiredSlot(slot(1), CONTROLLER, VLANS, USERS)
"""The slice's first allocation, kept with new parameters."""
ADDED = DesiredSlot(slot(5), CONTROLLER, {}, USERS)
ADDED_CHANGED = DesiredSlot(slot(5), CONTROLLER, {"10": "20"}, USERS)
DROPPED_LATER = DesiredSlot(slot(6), None, {}, ())
ADDED_LATER = DesiredSlot(slot(7), CONTROLLER, {}, USERS)

BEGUN: tuple[DesiredSlot, ...] = (KEPT, ADDED, DROPPED_LATER)
"""The desired state of Begin: one allocation kept and changed, the provisioned one dropped, two slots added."""
UPDATED: tuple[DesiredSlot, ...] = (KEPT, ADDED_CHANGED, ADDED_LATER)
"""The desired state of Update: one hold kept and changed, one given back, one added."""


class KillPoints:
    """
    The points an operation passes, counted once armed; at the chosen one
    this process kills itself with SIGKILL.
    """

    def __init__(self, kill_at: int | None) -> None:
        self._kill_at = kill_at
        self._armed = False
        self.passed: list[str] = []

    def arm(self) -> None:
        """Count from now on."""
        self._armed = True

    def disarm(self) -> None:
        """Stop counting."""
        self._armed = False

    def passing(self, what: str) -> None:
        """Pass one point (named C{what}); die if it is the chosen one."""
        if not self._armed:
            return
        if len(self.passed) == self._kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        self.passed.append(" ".join(what.split())[:70])


POINTS = KillPoints(None)
"""This process's points (one job per process)."""


class KillingCursor(Cursor):  # type: ignore[misc]
    """
    A txpostgres cursor that passes a point before it sends each statement,
    and one once it has sent a COMMIT, before the server answers: the case
    where the server commits a transaction its client never hears about.
    (Killed with any other statement sent, the process leaves a transaction
    the server rolls back when the session ends, as if killed before it.)
    """

    def execute(self, query: str, params: Any = None) -> Deferred[Any]:
        POINTS.passing(f"before {query}")
        d: Deferred[Any] = Cursor.execute(self, query, params)
        if query == "COMMIT":
            POINTS.passing(f"sent {query}")
        return d


class Names:
    """Sliver names C{s1}, C{s2}, ... from C{first} on: the same in every run, and never one the set-up used."""

    def __init__(self, first: int) -> None:
        self.next = first
        self.next_transaction = first

    def __call__(self) -> str:
        self.next += 1
        return f"s{self.next - 1}"

    def transaction_id(self) -> str:
        """Transaction identifiers, counted the same way (32 hex digits, as the aggregate makes them)."""
        self.next_transaction += 1
        return f"{self.next_transaction - 1:032x}"


async def open_store(job: dict[str, Any], reactor: Any) -> Any:
    """The job's store, started, with every statement passing a point."""
    if job["store"] == "sqlite":
        sqlite = SQLiteStore(job["location"], reactor=reactor)
        await sqlite.start()
        await sqlite._run(lambda cursor: cursor.connection.set_trace_callback(lambda sql: POINTS.passing(f"before {sql}")))
        return sqlite
    pgpool._Connection.cursorFactory = KillingCursor
    postgres = PostgresStore(job["location"], reactor=reactor, pool_size=1)
    await postgres.start()
    return postgres


async def setup(island: IslandResourceManager, manager: TransactionManager, operation: str) -> None:
    """
    The island before the operation: the slice holds an allocation and a
    provisioned sliver, another slice an allocation; for every operation
    but Begin, the slice's transaction towards L{BEGUN} is open.
    """
    await island.allocate(SLICE, ALICE, EMAIL, slot(1), CREDENTIAL_EXPIRES)
    second = await island.allocate(SLICE, ALICE, EMAIL, slot(2), CREDENTIAL_EXPIRES)
    await island.provision([second.sliver_urn], USERS, CONTROLLER, VLANS)
    await island.allocate(OTHER_SLICE, ALICE, EMAIL, slot(3), CREDENTIAL_EXPIRES)
    if operation != "begin":
        await manager.begin(SLICE, ALICE, EMAIL, BEGUN, CREDENTIAL_EXPIRES)


async def perform(manager: TransactionManager, clock: Clock, operation: str) -> None:
    """Run the operation."""
    if operation == "begin":
        await manager.begin(SLICE, ALICE, EMAIL, BEGUN, CREDENTIAL_EXPIRES)
    elif operation == "update":
        await manager.update(SLICE, UPDATED, CREDENTIAL_EXPIRES)
    elif operation == "commit":
        await manager.commit(SLICE)
    elif operation == "abort":
        await manager.abort(SLICE)
    elif operation in ("expire", "lapse"):
        transaction = await manager.island.transaction(SLICE)
        assert transaction is not None
        clock.advance(transaction.commit_by + (1 if operation == "lapse" else 0) - clock.seconds())
        await manager.watch()  # queued behind the timer's abort of the slice
    else:
        raise ValueError(f"unknown operation {operation!r}")


async def run_job(job: dict[str, Any], reactor: Any) -> dict[str, Any]:
    """Run one job in this process; return its report (unless it died)."""
    global POINTS
    POINTS = KillPoints(job.get("kill_at"))
    clock = Clock()
    clock.advance(T0)
    store = await open_store(job, reactor)
    names = Names(job.get("names_from", 1))
    island = island_manager(store, clock, names)
    manager = TransactionManager(island, clock, TTL, new_id=names.transaction_id)
    await island.start()
    await manager.start()
    if job.get("setup") is not None:
        await setup(island, manager, job["setup"])
    if job.get("operation") is not None:
        await island._when_idle()
        POINTS.arm()
        await perform(manager, clock, job["operation"])
        await island._when_idle()  # what it set off, such as re-arming the boundary timer
        POINTS.passing("the operation finished")
        POINTS.disarm()
    manager.stop()
    await island.stop()
    await store.stop()
    return {"points": POINTS.passed, "now": clock.seconds(), "names_from": names.next}


def forked(job: dict[str, Any], report: int) -> None:
    """The forked process: run the job on a reactor of its own, write its report to C{report} and exit."""
    from twisted.internet import reactor

    outcome: dict[str, Any] = {}

    def done(result: Any) -> None:
        outcome.update(result)
        reactor.stop()

    def failed(failure: Any) -> None:
        outcome["error"] = failure.getTraceback()
        reactor.stop()

    reactor.callWhenRunning(lambda: Deferred.fromCoroutine(run_job(job, reactor)).addCallbacks(done, failed))
    reactor.run(installSignalHandlers=False)  # type: ignore[call-arg]
    os.write(report, json.dumps(outcome).encode() + b"\n")
    os._exit(0 if "error" not in outcome else 1)


def _read_all(fd: int) -> bytes:
    chunks: list[bytes] = []
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def serve(lines: Iterable[str]) -> None:
    """Fork a process for each job line; write one answer line per job."""
    # The reactor's modules load once, here; each forked process installs a reactor of its own.
    importlib.import_module("twisted.internet.default")
    assert "twisted.internet.reactor" not in sys.modules, "the fork server must not have a reactor"
    for line in lines:
        job = json.loads(line)
        read_end, write_end = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            os.close(read_end)
            try:
                forked(job, write_end)
            except BaseException:
                traceback.print_exc()
            os._exit(2)
        os.close(write_end)
        text = _read_all(read_end).decode()
        os.close(read_end)
        _, status = os.waitpid(pid, 0)
        answer = {
            "killed": os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL,
            "exit": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
            "report": json.loads(text) if text.strip() else None,
        }
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    serve(sys.stdin)
