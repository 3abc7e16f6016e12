"""
PG-A transactions across a kill -9 at any point, on SQLite and PostgreSQL.

Begin, Update, Commit, Abort, the abort at C{commit_by}, and the lapse a
second past it (the island's check lapses the holds, then the abort ends
the transaction) each run in a child process (L{tests.store.crashchild})
that kills itself with SIGKILL at one point of the operation: before each
statement the database runs, on PostgreSQL also once a COMMIT is sent and
not yet answered, and after the operation. The island is set up for the
operation once; on a copy of that database each time, a first run that
finishes lists the points, then the operation is killed at every one of
them.

After each kill the store is opened again and its rows must equal either
the state before the operation or the state after it (for the lapse, also
the transaction with some of its holds lapsed). On each state the kills
left, the island restarts (a fresh island manager and transaction manager
on a fresh store, as an AM starts): the transaction is still open with its
holds and C{commit_by} and the slice's slivers as they were, or fully
committed, or fully aborted; no two live bookings overlap and no hold
outlives its transaction. A Commit or Abort that died before it took
effect is finished by the restarted island and gives exactly the rows the
uninterrupted one gave. And the database changed only at a COMMIT: killed
at any point up to it the write had not happened; killed at any point after
it, it had happened whole.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase
from txpostgres.txpostgres import Connection

from geniam.booking.transactions import SliceState, Transaction, is_transaction_hold
from geniam.booking.values import AllocationState, Booking, Slot, may_share_slot
from geniam.store.postgres import island_lock
from geniam.store.sqlite import SQLiteStore
from tests.managers.test_island import OTHER_SLICE, SLICE, at
from tests.store.crashchild import BEGUN, UPDATED
from tests.store.test_postgres import DSN, SKIP, in_schema, scratch_schema, started_store
from tests.store.test_transactions import Process

STATES = {
    ("begin", "before"): SliceState.ALLOCATED,
    ("begin", "after"): SliceState.TRANSACTION,
    ("update", "before"): SliceState.TRANSACTION,
    ("update", "after"): SliceState.TRANSACTION,
    ("commit", "before"): SliceState.TRANSACTION,
    ("commit", "after"): SliceState.ALLOCATED,
    ("abort", "before"): SliceState.TRANSACTION,
    ("abort", "after"): SliceState.ALLOCATED,
    ("expire", "before"): SliceState.ALLOCATED,
    ("expire", "after"): SliceState.ALLOCATED,
    ("lapse", "before"): SliceState.ALLOCATED,
    ("lapse", "lapsed"): SliceState.ALLOCATED,
    ("lapse", "after"): SliceState.ALLOCATED,
}
"""
The slice's state after the restart, by operation and by what the kill
left: the state before it, after it, or (for the lapse) in between.
"""

ROOT = Path(__file__).resolve().parents[2]
EVERYTHING = Slot(at(0), at(400 * 24 * 3600))


class ForkServer:
    """
    The child process L{tests.store.crashchild}, started on first use and
    shared by every test of this process (it keeps nothing from one job to
    the next, and starting Python takes longer than a test's kills). Its
    pipes are read in a thread, off the reactor; it ends when this process
    does and its input closes.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None

    def run(self, job: dict[str, Any]) -> Deferred[dict[str, Any]]:
        """Send C{job}; fire with the answer: C{killed}, C{exit} and the C{report} of a job that finished."""
        return deferToThread(self._thd_run, job)

    def _thd_run(self, job: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            if self._process is None or self._process.poll() is not None:
                self._process = subprocess.Popen(
                    [sys.executable, "-m", "tests.store.crashchild"],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    cwd=ROOT,
                    env={**os.environ, "PYTHONPATH": str(ROOT)},
                )
            assert self._process.stdin is not None and self._process.stdout is not None
            self._process.stdin.write(json.dumps(job).encode() + b"\n")
            self._process.stdin.flush()
            line = self._process.stdout.readline()
        if not line:
            raise AssertionError("the child process tests.store.crashchild ended (its errors are on standard error)")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def close(self) -> None:
        """Close its input and wait for it to exit."""
        with self._lock:
            if self._process is not None and self._process.stdin is not None:
                self._process.stdin.close()
                self._process.wait()


FORK_SERVER = ForkServer()
atexit.register(FORK_SERVER.close)


@dataclass
class Snapshot:
    """Every booking of the two slices (by sliver URN) and every open transaction, as stored."""

    bookings: list[Booking]
    transactions: list[Transaction]

    def live(self) -> list[Booking]:
        """The live bookings."""
        return [b for b in self.bookings if b.live]

    def slivers(self) -> list[Booking]:
        """The live slivers (holds left out)."""
        return [b for b in self.bookings if b.live and b.is_sliver]


async def snapshot(store: Any) -> Snapshot:
    """Read the two slices' bookings and the open transactions from C{store}."""
    rows = [*await store.list_by_slice(SLICE), *await store.list_by_slice(OTHER_SLICE)]
    return Snapshot(sorted(rows, key=lambda b: b.sliver_urn), list(await store.list_transactions()))


if TYPE_CHECKING:
    _Case = TestCase
else:
    _Case = object


class CrashMixin(_Case):
    """The tests, for any store; subclasses say where a fresh database is, how to open it and how to copy one."""

    store_name: str
    after_commit: str | None = None
    """The point after the write's C{before COMMIT}, the first at which it has taken effect, if the store has one of its own."""

    async def location(self) -> str:
        """A fresh, empty database."""
        raise NotImplementedError

    async def open_store(self, location: str) -> Any:
        """A started store on C{location}; the caller stops it."""
        raise NotImplementedError

    async def restore(self, template: str, work: str) -> None:
        """Make the database C{work} (set up as C{template} was) a copy of C{template}'s rows."""
        raise NotImplementedError

    async def settle(self, location: str) -> None:
        """Wait until no write of the killed process can still take effect."""

    async def finished(self, **job: Any) -> dict[str, Any]:
        """Run a job to its end; return its report."""
        answer = await FORK_SERVER.run({"store": self.store_name, "kill_at": None, **job})
        report: dict[str, Any] = answer["report"] or {}
        self.assertEqual((answer["killed"], answer["exit"]), (False, 0), report.get("error"))
        return report

    async def read(self, location: str) -> Snapshot:
        await self.settle(location)
        store = await self.open_store(location)
        try:
            return await snapshot(store)
        finally:
            await store.stop()

    async def check_operation(self, operation: str) -> None:
        """
        Set the island up for the operation once; then, on a copy of that
        database each time, run the operation to its end (which lists its
        points), and kill it at each point, checking the database and the
        restarted island after each kill.
        """
        template, work = await self.location(), await self.location()
        prepared = await self.finished(location=template, setup=operation)
        await self.finished(location=work, setup=operation)
        before = await self.read(template)
        self.assertEqual(await self.read(work), before, "the set-up is not the same each time")
        job = {"location": work, "operation": operation, "names_from": prepared["names_from"]}
        report = await self.finished(**job)
        after = await self.read(work)
        self.check_reference(operation, before, after)
        points: list[str] = report["points"]
        found: list[Snapshot] = []
        restarted: list[Snapshot] = []
        for index, point in enumerate(points):
            await self.restore(template, work)
            answer = await FORK_SERVER.run({"store": self.store_name, **job, "kill_at": index})
            where = f"{operation} killed at {index} ({point})"
            self.assertTrue(answer["killed"], f"{where}: the point of {len(points)} was not reached: {answer}")
            state = await self.read(work)
            outcome = self.classify(operation, before, after, state, where)
            if state not in restarted:  # the same rows restart the same way
                restarted.append(state)
                await self.restart(work, operation, outcome, state, after, report["now"], where)
            found.append(state)
        # The database changed only at a COMMIT: killed just before it, the
        # write had not happened; killed just after it (on PostgreSQL, once
        # it was sent), it had happened whole.
        self.assertEqual((found[0], found[-1]), (before, after))
        changed = [index for index in range(1, len(points)) if found[index] != found[index - 1]]
        for index in changed:
            self.assertEqual(points[index - 1], "before COMMIT", points)
            if self.after_commit is not None:
                self.assertEqual(points[index], self.after_commit, points)
        # One write each, but for the lapse: the island's check lapses the holds one by one, then the abort ends the transaction.
        self.assertEqual(len(changed), 1 if operation != "lapse" else len(before.transactions[0].holds) + 1, points)

    def check_reference(self, operation: str, before: Snapshot, after: Snapshot) -> None:
        """The operation, run to its end, did what it says: the states the kills are compared with are the right ones."""
        mine = [b for b in before.slivers() if b.slice_urn == SLICE]
        self.assertEqual(len(mine), 2, "the slice's allocation and provisioned sliver")
        if operation == "begin":
            self.assertEqual(before.transactions, [])
        else:
            [opened] = before.transactions
            self.assertEqual(opened.desired, BEGUN)
        if operation in ("begin", "update"):
            [transaction] = after.transactions
            self.assertEqual(transaction.desired, BEGUN if operation == "begin" else UPDATED)
            self.assertEqual(after.slivers(), before.slivers(), "a transaction changed what is visible before its commit")
        elif operation == "commit":
            self.assertEqual(after.transactions, [])
            committed = [b for b in after.slivers() if b.slice_urn == SLICE]
            self.assertEqual([(b.slot, b.controller, dict(b.vlan_map)) for b in sorted(committed, key=lambda b: b.slot.start)], [
                (d.slot, d.controller, dict(d.vlan_map)) for d in BEGUN
            ])
            self.assertEqual([b for b in after.live() if not b.is_sliver], [])
        else:
            self.assertEqual(after.transactions, [])
            self.assertEqual(after.live(), before.slivers(), "the abort did not restore the state before Begin")

    def classify(self, operation: str, before: Snapshot, after: Snapshot, found: Snapshot, where: str) -> str:
        """What the killed operation left: C{before}, C{after}, or (for the lapse only) C{lapsed}."""
        if found == before:
            return "before"
        if found == after:
            return "after"
        if operation != "lapse":
            self.fail(f"{where}: the database is neither as before nor as after the operation:\n{found}")
        self.check_lapsed(before, found, where)
        return "lapsed"

    async def restart(self, location: str, operation: str, outcome: str, found: Snapshot, after: Snapshot, now: float, where: str) -> None:
        """Restart the island on the database the killed operation left (as C{found}), and check it."""
        store = await self.open_store(location)
        try:
            clock = Clock()
            clock.advance(now)
            process = Process(self, store, clock)
            await process.island.start()
            await process.manager.start()
            try:
                await self.check_restarted(process, operation, outcome, found, after, where)
            finally:
                process.manager.stop()
                await process.island.stop()
        finally:
            await store.stop()

    def check_lapsed(self, before: Snapshot, found: Snapshot, where: str) -> None:
        """C{found} is C{before} with some of its transaction's holds lapsed (the transaction still there, past its commit_by)."""
        self.assertEqual(found.transactions, before.transactions, where)
        [transaction] = before.transactions
        self.assertEqual([b.sliver_urn for b in found.bookings], [b.sliver_urn for b in before.bookings], where)
        for old, new in zip(before.bookings, found.bookings):
            if new != old:
                self.assertIn(old.sliver_urn, transaction.holds, where)
                self.assertEqual((new.allocation_state, new.live), (AllocationState.EXPIRED, False), where)

    async def check_restarted(self, process: Process, operation: str, outcome: str, found: Snapshot, after: Snapshot, where: str) -> None:
        restarted = await snapshot(process.store)
        await self.check_invariants(process, restarted, where)
        self.assertEqual(await process.state(), STATES[operation, outcome], where)
        if operation in ("expire", "lapse"):
            # Its commit_by has passed: the restarted island aborts it at once if it was still open.
            self.assertEqual(restarted.live(), after.live(), where)
            return
        self.assertEqual(restarted, found, f"{where}: the restart changed the database")
        if outcome == "before" and operation in ("commit", "abort"):
            # Still open with its holds and commit_by: the restarted island finishes it, exactly.
            if operation == "commit":
                await process.manager.commit(SLICE)
            else:
                await process.manager.abort(SLICE)
            self.assertEqual(await snapshot(process.store), after, f"{where}: finished after the restart")

    async def check_invariants(self, process: Process, state: Snapshot, where: str) -> None:
        """No two live bookings overlap; every live transaction hold is one of an open transaction's, which are all live."""
        live: list[Booking] = list(await process.store.list_live(EVERYTHING))
        self.assertEqual(sorted(live, key=lambda b: b.sliver_urn), state.live(), where)
        for index, one in enumerate(live):
            for other in live[index + 1 :]:
                self.assertFalse(one.slot.overlaps(other.slot) and not may_share_slot(one, other), f"{where}: {one} overlaps {other}")
        holds = {b.sliver_urn: b for b in live if is_transaction_hold(b)}
        named: set[str] = set()
        for transaction in state.transactions:
            for urn in transaction.holds:
                self.assertIn(urn, holds, f"{where}: a hold of the open transaction is gone")
                self.assertEqual(holds[urn].allocation_expires, transaction.commit_by, where)
                self.assertEqual(holds[urn].slice_urn, transaction.slice_urn, where)
            named.update(transaction.holds)
        self.assertEqual(set(holds), named, f"{where}: holds outside an open transaction")
        for slice_urn in (SLICE, OTHER_SLICE):
            self.assertEqual(await process.island.transaction(slice_urn), next(
                (t for t in state.transactions if t.slice_urn == slice_urn), None
            ), where)

    async def test_begin(self) -> None:
        """A Begin killed anywhere: the slice is as before, or in the transaction with its holds; nothing visible changed."""
        await self.check_operation("begin")

    async def test_update(self) -> None:
        """An Update killed anywhere leaves the transaction exactly as it was, or exactly as updated."""
        await self.check_operation("update")

    async def test_commit(self) -> None:
        """A Commit killed anywhere: still open with its holds and commit_by (and committed exactly after a restart), or fully committed."""
        await self.check_operation("commit")

    async def test_abort(self) -> None:
        """An Abort killed anywhere: still open with its holds and commit_by, or fully aborted."""
        await self.check_operation("abort")

    async def test_expire(self) -> None:
        """The abort at commit_by killed anywhere: the restarted island aborts what was still open, at once."""
        await self.check_operation("expire")

    async def test_lapse(self) -> None:
        """Past commit_by the island's check lapses the holds one by one before the abort: killed anywhere, the restarted island aborts."""
        await self.check_operation("lapse")


class SQLiteCrashTests(CrashMixin, TestCase):
    """Transactions across a kill -9 on an SQLite file."""

    store_name = "sqlite"

    async def location(self) -> str:
        folder = Path(self.mktemp()).resolve()
        folder.mkdir()
        return str(folder / "island.db")

    async def open_store(self, location: str) -> Any:
        store = SQLiteStore(location, reactor=reactor)
        await store.start()
        return store

    async def restore(self, template: str, work: str) -> None:
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(template + suffix):
                shutil.copyfile(template + suffix, work + suffix)
            elif os.path.exists(work + suffix):
                os.remove(work + suffix)


class PostgresCrashTests(CrashMixin, TestCase):
    """Transactions across a kill -9 on PostgreSQL."""

    skip = SKIP
    store_name = "postgres"
    after_commit = "sent COMMIT"

    def setUp(self) -> None:
        self.schemas: dict[str, str] = {}
        self.tables: list[str] = []
        self._connection: Connection | None = None

    async def sql(self, statement: str, params: tuple[Any, ...] | None = None) -> list[tuple[Any, ...]]:
        """Run C{statement} (several, with semicolons) in one transaction on the test's own connection; return the rows."""
        if self._connection is None:
            connection = Connection(reactor=reactor)
            await connection.connect(DSN)
            self.addCleanup(connection.close)
            self._connection = connection
        rows: list[tuple[Any, ...]] = await self._connection.runQuery(statement, params)
        return rows

    async def location(self) -> str:
        schema = await scratch_schema(self)
        dsn = in_schema(schema)
        self.schemas[dsn] = schema
        return dsn

    async def open_store(self, location: str) -> Any:
        return await started_store(self, location, pool_size=1)

    async def restore(self, template: str, work: str) -> None:
        source, target = self.schemas[template], self.schemas[work]
        if not self.tables:
            found = await self.sql(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s AND table_type = 'BASE TABLE'",
                (source,),
            )
            self.tables = [name for (name,) in found]
        await self.sql(
            "; ".join(
                [f"DELETE FROM {target}.{name}" for name in self.tables]
                + [f"INSERT INTO {target}.{name} SELECT * FROM {source}.{name}" for name in self.tables]
            )
            + "; SELECT 1"
        )

    async def settle(self, location: str) -> None:
        # A write holds the island's lock from before its first change until
        # it commits or rolls back: once this has had the lock, the killed
        # process's transaction (its COMMIT may have been on its way) is over.
        await self.sql("SELECT 1 FROM pg_advisory_xact_lock(%s)", (island_lock("default"),))
