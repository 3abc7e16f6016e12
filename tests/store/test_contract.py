"""
The contract every L{geniam.interfaces.IStore} implementation keeps.

L{StoreContractMixin} holds the tests; each implementation's test module
mixes it into a L{twisted.trial.unittest.TestCase} and says how to make a
started store. L{InlineThreadPool} and L{InlineReactor} run an adbapi store's
queries synchronously, for tests on L{SynchronousTestCase} and a
L{twisted.internet.task.Clock}.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from geniam.booking.errors import BookingConflict
from geniam.booking.rules import due, next_boundary
from geniam.booking.values import AllocationState, Booking, OperationalState, Slot, UserKeys
from geniam.booking.lifecycle import Event, step, taken_up
from geniam.errors import GeniCode
from geniam.managers.errors import as_geni_error
from geniam.interfaces import IStore
from geniam.store.errors import DuplicateBooking, StaleBooking, TicketHeld, UnknownBooking
from geniam.store.sqlite import SQLiteStore

AUTHORITY = "geni.example.net:island"
KEY_A = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGtestkeyAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA alice@lab"
KEY_B = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQtestkeyBBBBBBBBBBBBBBBBBBBBBBBBBBBB bob@lab"


UNDO_VERSION_6: tuple[str, ...] = (
    "DROP TABLE transaction_outcomes",
    "ALTER TABLE transactions DROP COLUMN transaction_id",
)
"""What turns a database of schema version 6 back into one of version 5 (both databases), for the upgrade tests."""


def sliver(name: str, authority: str = AUTHORITY) -> str:
    """Return a sliver URN of the test authority."""
    return f"urn:publicid:IDN+{authority}+sliver+{name}"


def slice_urn(name: str = "exp1") -> str:
    """Return a slice URN."""
    return f"urn:publicid:IDN+geni.example.net+slice+{name}"


def booking(
    name: str,
    start: float,
    end: float,
    state: AllocationState = AllocationState.ALLOCATED,
    slice_name: str = "exp1",
    **changes: Any,
) -> Booking:
    """Return a booking for tests, allocated by default, expiring at its slot's end."""
    values: dict[str, Any] = dict(
        sliver_urn=sliver(name),
        slice_urn=slice_urn(slice_name),
        owner_urn="urn:publicid:IDN+geni.example.net+user+alice",
        owner_email="alice@example.net",
        slot=Slot(start, end),
        allocation_state=state,
        allocation_expires=end,
        created=1.0,
        updated=1.0,
    )
    values.update(changes)
    return Booking(**values)


class InlineThreadPool:
    """A thread pool that runs each call at once in the calling thread."""

    def start(self) -> None:
        """Nothing to start."""

    def stop(self) -> None:
        """Nothing to stop."""

    def callInThreadWithCallback(self, onResult: Callable[[bool, Any], None], func: Callable[..., Any], *args: Any, **kw: Any) -> None:
        """Run C{func} now and report its outcome to C{onResult}."""
        try:
            result = func(*args, **kw)
        except BaseException:
            onResult(False, Failure())
        else:
            onResult(True, result)


class InlineReactor(Clock):
    """A Clock that also runs thread callbacks and startup calls at once."""

    def callWhenRunning(self, f: Callable[..., Any], *args: Any, **kw: Any) -> None:
        """Run C{f} now: this reactor is always running."""
        f(*args, **kw)

    def callFromThread(self, f: Callable[..., Any], *args: Any, **kw: Any) -> None:
        """Run C{f} now: there is only one thread."""
        f(*args, **kw)

    def addSystemEventTrigger(self, *args: Any, **kw: Any) -> int:
        """Accept and ignore a trigger."""
        return 1

    def removeSystemEventTrigger(self, trigger: object) -> None:
        """Ignore a trigger's removal."""


def inline_sqlite_store(case: SynchronousTestCase, path: str = ":memory:", island: str = "default") -> SQLiteStore:
    """Return a started L{SQLiteStore} whose queries complete synchronously; it is stopped after the test."""
    store = SQLiteStore(path, island=island, reactor=InlineReactor(), threadpool=InlineThreadPool())
    case.successResultOf(store.start())
    case.addCleanup(lambda: case.successResultOf(store.stop()))
    return store


async def race_for_slots(case: SynchronousTestCase, first: Any, second: Any) -> list[Booking]:
    """
    Let two stores of one island race on twenty slots, four overlapping
    candidates each; check that only conflicts were refused, that the live
    bookings never overlap and that every success is stored, and return
    them.
    """
    attempts: list[Deferred[Any]] = []
    for i in range(20):
        for j, store in enumerate((first, second, first, second)):
            attempts.append(store.insert(booking(f"s{i}-{j}", 100 * i, 100 * i + 150 if j % 2 else 100 * i + 100)))
    outcomes: list[Any] = await DeferredList(attempts, consumeErrors=True)
    for ok, value in outcomes:
        if not ok:
            value.trap(BookingConflict)
    live: list[Booking] = await first.list_live(Slot(0, 10000))
    for earlier, later in zip(live, live[1:]):
        case.assertLessEqual(earlier.slot.end, later.slot.start)
    case.assertEqual(len(live), sum(1 for ok, _ in outcomes if ok))
    case.assertGreaterEqual(len(live), 10)
    return live


class StoreContractMixin:
    """
    Tests every IStore implementation must pass.

    Mix into a trial C{TestCase} that defines C{async def make_store(self,
    island="default", share_with=None)}, returning a started store that is
    stopped after the test; with C{share_with} (another store it made), the
    new store must use the same database.
    """

    make_store: Callable[..., Any]
    assertEqual: Callable[..., Any]
    assertIs: Callable[..., Any]
    assertIsNone: Callable[..., Any]
    assertTrue: Callable[..., Any]
    assertFalse: Callable[..., Any]
    assertIn: Callable[..., Any]
    assertNotIn: Callable[..., Any]
    assertIsInstance: Callable[..., Any]
    assertFailure: Callable[..., Any]

    async def _fails(self, d: Any, kind: type) -> Any:
        return await self.assertFailure(d, kind)

    async def test_provides_interface(self) -> None:
        """The store provides IStore."""
        store = await self.make_store()
        self.assertTrue(verifyObject(IStore, store))

    async def test_insert_and_get(self) -> None:
        """An inserted booking reads back equal, at version 1, with every field kept."""
        store = await self.make_store()
        original = booking(
            "a",
            100,
            200,
            AllocationState.PROVISIONED,
            operational_state=OperationalState.FAILED,
            error="gateway: down",
            users=(UserKeys("urn:publicid:IDN+geni.example.net+user+alice", (KEY_A, KEY_B)),),
            controller="192.0.2.1:6633",
            vlan_map={"10": "0xffff", "30": "20"},
            applied=True,
            provisioned_at=50.5,
            allocation_expires=150.25,
        )
        stored = await store.insert(original)
        self.assertEqual(stored, replace(original, version=1))
        self.assertEqual(await store.get(original.sliver_urn), stored)

    async def test_get_unknown(self) -> None:
        """An unknown sliver reads as None."""
        store = await self.make_store()
        self.assertIsNone(await store.get(sliver("nothing")))

    async def test_get_normalises_authority(self) -> None:
        """A sliver URN is found whatever the case of its authority."""
        store = await self.make_store()
        stored = await store.insert(booking("a", 100, 200))
        self.assertEqual(await store.get(sliver("a", AUTHORITY.upper())), stored)

    async def test_duplicate_sliver(self) -> None:
        """A second booking with the same sliver URN is refused with ALREADYEXISTS."""
        store = await self.make_store()
        await store.insert(booking("a", 100, 200))
        error = await self._fails(store.insert(booking("a", 300, 400)), DuplicateBooking)
        self.assertEqual(as_geni_error(error).code, GeniCode.ALREADYEXISTS)

    async def test_hold_reads_back(self) -> None:
        """A hold is stored live, with what holds it, and reads back equal."""
        store = await self.make_store()
        held = booking("h", 100, 200, AllocationState.HELD, held_by="ticket", allocation_expires=150.0)
        stored = await store.insert(held)
        self.assertEqual(stored, replace(held, version=1))
        self.assertEqual(await store.get(held.sliver_urn), stored)
        self.assertEqual([b.sliver_urn for b in await store.list_live(Slot(0, 1000))], [held.sliver_urn])

    async def test_hold_keeps_other_slices_off(self) -> None:
        """A hold and a booking of another slice never overlap, whichever came first, on insert or update."""
        store = await self.make_store()
        await store.insert(booking("h", 1000, 2000, AllocationState.HELD, slice_name="first", held_by="transaction"))
        error = await self._fails(store.insert(booking("b", 1500, 2500, slice_name="second")), BookingConflict)
        self.assertEqual(as_geni_error(error).code, GeniCode.UNAVAILABLE)
        other = await store.insert(booking("b", 3000, 4000, slice_name="second"))
        await self._fails(store.update([replace(other, slot=Slot(1900, 4000))]), BookingConflict)
        await self._fails(
            store.insert(booking("h2", 3500, 3600, AllocationState.HELD, slice_name="first", held_by="ticket")), BookingConflict
        )

    async def test_ticket_hold_may_overlap_only_its_own_slices_sliver(self) -> None:
        """
        A ticket's hold may overlap a sliver of its own slice (an update of
        it), and only that: the slices' other bookings and holds, and every
        booking of other slices, stay apart, in either order.
        """
        store = await self.make_store()
        mine = await store.insert(booking("s", 1000, 2000))
        ticket = booking("t", 1500, 3000, AllocationState.HELD, held_by="ticket", allocation_expires=900.0)
        await store.insert(ticket)
        for name, start, end, state, slice_name, held_by in (
            ("o1", 1100, 1200, AllocationState.ALLOCATED, "second", ""),  # inside the sliver, another slice
            ("o2", 2500, 2600, AllocationState.HELD, "second", "ticket"),  # inside the hold, another slice's ticket
            ("o3", 1800, 2200, AllocationState.HELD, "exp1", "transaction"),  # the slice's own other hold
            ("o4", 1100, 1200, AllocationState.ALLOCATED, "exp1", ""),  # the slice's own second sliver
        ):
            await self._fails(
                store.insert(booking(name, start, end, state, slice_name=slice_name, held_by=held_by, allocation_expires=900.0)),
                BookingConflict,
            )
        await self._fails(
            store.insert(booking("t2", 1000, 1100, AllocationState.HELD, slice_name="second", held_by="ticket")), BookingConflict
        )
        # Redeemed: the sliver deleted and the hold taken up in one update.
        held = await store.get(ticket.sliver_urn)
        assert held is not None
        await store.update([step(mine, Event.DELETE, 10.0), taken_up(held, 10.0, 48 * 3600.0, None)])
        await store.insert(booking("o1", 1100, 1200, slice_name="second"))
        self.assertEqual([b.slot for b in await store.list_live(Slot(0, 5000))], [Slot(1100, 1200), Slot(1500, 3000)])

    async def test_one_valid_ticket_per_slice(self) -> None:
        """
        A slice's second live ticket hold is refused (REFUSED) while the first
        is valid; one past its redeem-by time is marked expired to make room.
        """
        store = await self.make_store()
        first = await store.insert(booking("t1", 1000, 2000, AllocationState.HELD, held_by="ticket", allocation_expires=500.0))
        error = await self._fails(
            store.insert(booking("t2", 3000, 4000, AllocationState.HELD, held_by="ticket", allocation_expires=800.0, created=400.0)),
            TicketHeld,
        )
        self.assertEqual(as_geni_error(error).code, GeniCode.REFUSED)
        await store.insert(booking("t3", 7000, 8000, AllocationState.HELD, slice_name="exp2", held_by="ticket"))
        await store.insert(booking("x", 5000, 6000, AllocationState.HELD, held_by="transaction"))
        await store.insert(booking("t2", 3000, 4000, AllocationState.HELD, held_by="ticket", allocation_expires=800.0, created=500.0))
        lapsed = await store.get(first.sliver_urn)
        assert lapsed is not None
        self.assertEqual((lapsed.allocation_state, lapsed.version), (AllocationState.EXPIRED, 2))

    async def test_hold_taken_up_keeps_its_slot(self) -> None:
        """A hold taken up becomes an allocation of the same slot in one update; no other slice got in between."""
        store = await self.make_store()
        held = await store.insert(booking("h", 1000, 2000, AllocationState.HELD, held_by="ticket", allocation_expires=1500.0))
        (allocated,) = await store.update([taken_up(held, 10.0, 48 * 3600.0, None)])
        self.assertEqual(allocated.allocation_state, AllocationState.ALLOCATED)
        self.assertEqual(allocated.held_by, "")
        self.assertEqual(allocated.slot, held.slot)

    async def test_expired_or_released_hold_frees_the_slot(self) -> None:
        """A lapsed hold is due for expiry; once expired or released its slot is free for another slice."""
        store = await self.make_store()
        first = await store.insert(booking("h1", 1000, 2000, AllocationState.HELD, held_by="ticket", allocation_expires=500.0))
        second = await store.insert(
            booking("h2", 3000, 4000, AllocationState.HELD, slice_name="exp2", held_by="ticket", allocation_expires=900.0)
        )
        self.assertEqual(await store.next_boundary(0.0), 500.0)
        due = await store.due(600.0)
        self.assertEqual([b.sliver_urn for b in due.expire], [first.sliver_urn])
        await store.update([step(first, Event.EXPIRE, 600.0)])
        await store.update([step(second, Event.RELEASE, 600.0)])
        await store.insert(booking("b1", 1000, 2000, slice_name="other"))
        await store.insert(booking("b2", 3000, 4000, slice_name="other"))
        self.assertEqual(await store.count([AllocationState.EXPIRED, AllocationState.RELEASED]), 2)

    async def test_overlap_refused(self) -> None:
        """A live booking overlapping a live one is refused with UNAVAILABLE naming the window, not the slice."""
        store = await self.make_store()
        await store.insert(booking("a", 1000, 2000, slice_name="secret"))
        for start, end in ((1500, 1600), (500, 1001), (1999, 3000), (0, 5000), (1000, 2000)):
            error = await self._fails(store.insert(booking(f"b{start}", start, end, slice_name="other")), BookingConflict)
            self.assertEqual(as_geni_error(error).code, GeniCode.UNAVAILABLE)
            self.assertEqual(error.window, Slot(1000, 2000))
            self.assertIn("1970-01-01T00:16:40Z", error.message)
            self.assertNotIn("secret", error.message)
        self.assertEqual(await store.count(), 1)

    async def test_back_to_back_allowed(self) -> None:
        """Slots that only touch do not conflict."""
        store = await self.make_store()
        await store.insert(booking("a", 1000, 2000))
        await store.insert(booking("b", 2000, 3000, AllocationState.PROVISIONED))
        await store.insert(booking("c", 500, 1000))
        self.assertEqual(await store.count(), 3)

    async def test_dead_bookings_do_not_block(self) -> None:
        """Ended, deleted and expired bookings leave their slot free; storing one over a live slot is allowed."""
        store = await self.make_store()
        for i, state in enumerate((AllocationState.ENDED, AllocationState.DELETED, AllocationState.EXPIRED)):
            await store.insert(booking(f"dead{i}", 1000, 2000, state))
        await store.insert(booking("live", 1000, 2000))
        await store.insert(booking("dead9", 1000, 2000, AllocationState.ENDED))
        self.assertEqual(await store.count(), 5)

    async def test_conflicts_match_the_rules(self) -> None:
        """Among many bookings, the store refuses exactly the slots the pure rules find in conflict."""
        store = await self.make_store()
        rng = random.Random(7)
        existing = []
        t = 0.0
        for i in range(40):
            t += rng.choice((0, 0, 5, 30))
            length = rng.choice((10, 20, 60))
            existing.append(await store.insert(booking(f"e{i}", t, t + length)))
            t += length
        for i in range(60):
            start = rng.uniform(-10, t + 10)
            slot = Slot(max(0.0, start), max(0.0, start) + rng.uniform(0.5, 80))
            candidate = booking(f"n{i}", slot.start, slot.end)
            expected = [b for b in existing if b.slot.overlaps(slot)]
            if expected:
                error = await self._fails(store.insert(candidate), BookingConflict)
                self.assertIn(error.window, [b.slot for b in expected])
            else:
                existing.append(await store.insert(candidate))

    async def test_update(self) -> None:
        """An update with the current version is stored and bumps the version."""
        store = await self.make_store()
        stored = await store.insert(booking("a", 100, 200))
        changed = replace(
            stored,
            allocation_state=AllocationState.PROVISIONED,
            slot=Slot(100, 300),
            users=(UserKeys("urn:publicid:IDN+geni.example.net+user+bob", (KEY_B,)),),
            controller="ctl.example.net:6653",
            vlan_map={"5": "6"},
            updated=9.0,
        )
        [result] = await store.update([changed])
        self.assertEqual(result, replace(changed, version=2))
        self.assertEqual(await store.get(stored.sliver_urn), result)

    async def test_update_stale(self) -> None:
        """An update from an old version fails with BUSY and changes nothing."""
        store = await self.make_store()
        stored = await store.insert(booking("a", 100, 200))
        await store.update([replace(stored, error="first")])
        error = await self._fails(store.update([replace(stored, error="second")]), StaleBooking)
        self.assertEqual(as_geni_error(error).code, GeniCode.BUSY)
        self.assertEqual((await store.get(stored.sliver_urn)).error, "first")

    async def test_update_unknown(self) -> None:
        """Updating a booking that was never stored fails with SEARCHFAILED."""
        store = await self.make_store()
        error = await self._fails(store.update([booking("ghost", 1, 2, version=1)]), UnknownBooking)
        self.assertEqual(as_geni_error(error).code, GeniCode.SEARCHFAILED)

    async def test_update_conflict(self) -> None:
        """Moving a slot onto another live booking fails with UNAVAILABLE and changes nothing."""
        store = await self.make_store()
        a = await store.insert(booking("a", 100, 200))
        await store.insert(booking("b", 200, 300, AllocationState.PROVISIONED))
        error = await self._fails(store.update([replace(a, slot=Slot(100, 201))]), BookingConflict)
        self.assertEqual(error.window, Slot(200, 300))
        self.assertEqual(await store.get(a.sliver_urn), a)

    async def test_update_own_slot(self) -> None:
        """A booking may be moved over its own old slot."""
        store = await self.make_store()
        a = await store.insert(booking("a", 100, 200))
        [moved] = await store.update([replace(a, slot=Slot(150, 250))])
        self.assertEqual(moved.slot, Slot(150, 250))

    async def test_update_batch_all_or_nothing(self) -> None:
        """If one booking of a batch is stale, none of the batch changes."""
        store = await self.make_store()
        a = await store.insert(booking("a", 100, 200))
        b = await store.insert(booking("b", 300, 400))
        await store.update([replace(b, error="moved on")])
        await self._fails(store.update([replace(a, error="x"), replace(b, error="y")]), StaleBooking)
        self.assertEqual(await store.get(a.sliver_urn), a)

    async def test_update_batch_checks_itself(self) -> None:
        """Bookings of one batch may swap slots but may not overlap each other."""
        store = await self.make_store()
        a = await store.insert(booking("a", 100, 200))
        b = await store.insert(booking("b", 200, 300))
        a2, b2 = await store.update([replace(a, slot=Slot(200, 300)), replace(b, slot=Slot(100, 200))])
        self.assertEqual((a2.slot, b2.slot), (Slot(200, 300), Slot(100, 200)))
        error = await self._fails(store.update([replace(a2, slot=Slot(150, 300)), replace(b2, slot=Slot(100, 250))]), BookingConflict)
        self.assertEqual(as_geni_error(error).code, GeniCode.UNAVAILABLE)
        self.assertEqual((await store.get(a.sliver_urn)).slot, Slot(200, 300))

    async def test_ending_frees_the_slot(self) -> None:
        """Once a booking is no longer live, its slot can be booked again."""
        store = await self.make_store()
        a = await store.insert(booking("a", 100, 200))
        await store.update([replace(a, allocation_state=AllocationState.EXPIRED)])
        await store.insert(booking("b", 100, 200))
        self.assertEqual(await store.count([AllocationState.ALLOCATED]), 1)

    async def test_list_by_slice(self) -> None:
        """A slice's bookings come by slot start; live_only drops dead ones; slice names compare case-insensitively."""
        store = await self.make_store()
        await store.insert(booking("c", 500, 600))
        await store.insert(booking("a", 100, 200, AllocationState.ENDED))
        await store.insert(booking("b", 300, 400, AllocationState.PROVISIONED))
        await store.insert(booking("x", 700, 800, slice_name="other"))
        every = await store.list_by_slice(slice_urn("EXP1"))
        self.assertEqual([b.sliver_urn for b in every], [sliver("a"), sliver("b"), sliver("c")])
        live = await store.list_by_slice(slice_urn("exp1"), live_only=True)
        self.assertEqual([b.sliver_urn for b in live], [sliver("b"), sliver("c")])
        self.assertEqual(await store.list_by_slice(slice_urn("none")), [])

    async def test_list_live(self) -> None:
        """The live bookings overlapping a window come by start, up to a limit."""
        store = await self.make_store()
        await store.insert(booking("a", 0, 100))
        await store.insert(booking("b", 100, 200, AllocationState.PROVISIONED))
        await store.insert(booking("dead", 200, 300, AllocationState.DELETED))
        await store.insert(booking("c", 250, 400))
        await store.insert(booking("d", 400, 500))
        found = await store.list_live(Slot(50, 300))
        self.assertEqual([b.sliver_urn for b in found], [sliver("a"), sliver("b"), sliver("c")])
        self.assertEqual([b.sliver_urn for b in await store.list_live(Slot(50, 300), 1)], [sliver("a")])
        self.assertEqual(await store.list_live(Slot(500, 600)), [])

    async def test_list_applied(self) -> None:
        """Only bookings marked applied are listed as applied."""
        store = await self.make_store()
        await store.insert(booking("a", 0, 100, AllocationState.ENDED, applied=True))
        await store.insert(booking("b", 100, 200, AllocationState.PROVISIONED))
        self.assertEqual([b.sliver_urn for b in await store.list_applied()], [sliver("a")])

    async def _mixed(self, store: Any) -> list[Booking]:
        P, A = AllocationState.PROVISIONED, AllocationState.ALLOCATED
        S = OperationalState
        specs: list[tuple[str, float, float, AllocationState, dict[str, Any]]] = [
            ("alloc-lapsed", 100, 200, A, dict(allocation_expires=50)),
            ("alloc-fresh", 200, 300, A, dict(allocation_expires=180)),
            ("prov-over", 300, 400, P, dict(applied=True, operational_state=S.READY)),
            ("prov-now", 400, 500, P, {}),
            ("prov-failed", 500, 600, P, dict(applied=True, operational_state=S.FAILED)),
            ("prov-ready", 600, 700, P, dict(applied=True, operational_state=S.READY)),
            ("prov-stopped", 700, 800, P, dict(applied=True, operational_state=S.STOPPED)),
            ("prov-later", 800, 900, P, {}),
            ("ended-dirty", 0, 50, AllocationState.ENDED, dict(applied=True)),
            ("deleted", 900, 1000, AllocationState.DELETED, {}),
        ]
        return [await store.insert(booking(n, s, e, st, **kw)) for n, s, e, st, kw in specs]

    async def test_due_matches_the_rules(self) -> None:
        """At any moment the store sorts bookings into the same actions as the pure rules."""
        store = await self.make_store()
        everything = await self._mixed(store)
        for now in (0, 50, 150, 199.5, 300, 450, 550, 650, 750, 850, 2000):
            found = await store.due(now)
            expected = due(everything, now)
            for kind in ("expire", "end", "start", "cleanup"):
                self.assertEqual(
                    sorted(b.sliver_urn for b in getattr(found, kind)),
                    sorted(b.sliver_urn for b in getattr(expected, kind)),
                    f"{kind} at {now}",
                )

    async def test_due_limit(self) -> None:
        """At most C{limit} bookings of each kind come back, earliest first."""
        store = await self.make_store()
        for i in range(5):
            await store.insert(booking(f"x{i}", 100 * i, 100 * i + 50, allocation_expires=i + 1))
        found = await store.due(1000, limit=2)
        self.assertEqual([b.sliver_urn for b in found.expire], [sliver("x0"), sliver("x1")])

    async def test_next_boundary_matches_the_rules(self) -> None:
        """The next boundary is the one the pure rules compute."""
        store = await self.make_store()
        everything = await self._mixed(store)
        for after in (0, 50, 180, 300, 450, 899, 900):
            self.assertEqual(await store.next_boundary(after), next_boundary(everything, after), f"after {after}")

    async def test_shutdown_flags(self) -> None:
        """A slice is shut down once; the flag is per slice and case-insensitive."""
        store = await self.make_store()
        self.assertFalse(await store.is_shutdown(slice_urn()))
        self.assertTrue(await store.set_shutdown(slice_urn(), 10.0))
        self.assertFalse(await store.set_shutdown(slice_urn("EXP1"), 11.0))
        self.assertTrue(await store.is_shutdown(slice_urn("Exp1")))
        self.assertFalse(await store.is_shutdown(slice_urn("other")))

    async def test_count(self) -> None:
        """Counting all bookings or those in some states."""
        store = await self.make_store()
        await self._mixed(store)
        self.assertEqual(await store.count(), 10)
        self.assertEqual(await store.count([AllocationState.PROVISIONED]), 6)
        self.assertEqual(await store.count(["allocated", "deleted"]), 3)
        self.assertEqual(await store.count([]), 0)

    async def test_islands_are_separate(self) -> None:
        """Two islands in one database book independently."""
        first = await self.make_store(island="one")
        second = await self.make_store(island="two", share_with=first)
        await first.insert(booking("a", 100, 200))
        await second.insert(booking("b", 100, 200))
        self.assertEqual(await first.count(), 1)
        self.assertIsNone(await first.get(sliver("b")))
        self.assertEqual([b.sliver_urn for b in await second.list_live(Slot(0, 1000))], [sliver("b")])
