# -*- test-case-name: tests.store.test_sqlite,tests.store.test_postgres -*-
"""
Bookings as database rows, and the statements on them, shared by every SQL
store.

The C{bookings} table holds one row per booking: the fields of
L{geniam.booking.Booking}, plus derived columns the queries index on
(normalised URNs, the island, whether the booking is live). Users and the
VLAN map are JSON text.

L{BookingQueries} holds what every store does, written once, without I/O:
each operation is a generator that yields L{Statement}s (SQL with C{?}
placeholders, and parameters), is sent back each one's L{Result}, and
returns the operation's outcome or raises its error. A store drives it on
its own connection, inside the transaction its database needs (see
L{drive}); L{geniam.store.sqlite} and L{geniam.store.postgres} do so.
L{SQLStore} maps the methods of L{geniam.interfaces.IStore} onto these
operations for both.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import replace
from typing import Any, NamedTuple, TypeAlias, TypeVar

from twisted.internet.defer import Deferred, DeferredList
from twisted.python.failure import Failure

from geniam.booking.errors import BookingConflict, BookingError
from geniam.booking.lifecycle import Event, step
from geniam.booking.values import (
    TICKET_HOLD,
    AllocationState,
    Booking,
    Due,
    OperationalState,
    Slot,
    UserKeys,
    may_share_slot,
    urn_key,
)
from geniam.errors import GeniError
from geniam.store.errors import DuplicateBooking, StaleBooking, StoreError, StoreFailure, TicketHeld, UnknownBooking
from geniam.urn import URN
from geniam.store.health import Availability

T = TypeVar("T")

BOOKING_COLUMNS: tuple[str, ...] = (
    "sliver_urn",
    "slice_urn",
    "owner_urn",
    "owner_email",
    "start_time",
    "end_time",
    "allocation_state",
    "allocation_expires",
    "operational_state",
    "error",
    "users",
    "controller",
    "vlan_map",
    "applied",
    "created",
    "updated",
    "provisioned_at",
    "version",
    "held_by",
)
"""The columns a booking is read back from, in the order L{row_to_booking} takes them."""

DERIVED_COLUMNS: tuple[str, ...] = ("sliver_key", "island", "slice_key", "live")
"""The indexed columns computed from a booking when it is written."""

ALL_COLUMNS: tuple[str, ...] = DERIVED_COLUMNS + BOOKING_COLUMNS
"""Every column of the C{bookings} table, in the order L{booking_to_row} returns them."""

SELECT_LIST = ", ".join(BOOKING_COLUMNS)
"""The column list to SELECT for L{row_to_booking}."""


def _users_json(users: Sequence[UserKeys]) -> str:
    return json.dumps([{"urn": u.urn, "keys": list(u.keys)} for u in users], separators=(",", ":"))


def booking_to_row(booking: Booking, island: str, version: int) -> tuple[Any, ...]:
    """Return the values of L{ALL_COLUMNS} for C{booking}, stored with C{version}."""
    return (
        booking.sliver_key,
        island,
        booking.slice_key,
        1 if booking.live else 0,
        booking.sliver_urn,
        booking.slice_urn,
        booking.owner_urn,
        booking.owner_email,
        booking.slot.start,
        booking.slot.end,
        booking.allocation_state.value,
        booking.allocation_expires,
        booking.operational_state.value,
        booking.error,
        _users_json(booking.users),
        booking.controller,
        json.dumps(dict(booking.vlan_map), sort_keys=True, separators=(",", ":")),
        1 if booking.applied else 0,
        booking.created,
        booking.updated,
        booking.provisioned_at,
        version,
        booking.held_by,
    )


def row_to_booking(row: Sequence[Any]) -> Booking:
    """Build a L{Booking} from the values of L{BOOKING_COLUMNS}."""
    values = dict(zip(BOOKING_COLUMNS, row))
    users = tuple(UserKeys(str(u["urn"]), tuple(str(k) for k in u["keys"])) for u in json.loads(values["users"]))
    return Booking(
        sliver_urn=values["sliver_urn"],
        slice_urn=values["slice_urn"],
        owner_urn=values["owner_urn"],
        owner_email=values["owner_email"],
        slot=Slot(values["start_time"], values["end_time"]),
        allocation_state=AllocationState(values["allocation_state"]),
        allocation_expires=float(values["allocation_expires"]),
        operational_state=OperationalState(values["operational_state"]),
        error=values["error"],
        users=users,
        controller=values["controller"],
        vlan_map={str(k): str(v) for k, v in json.loads(values["vlan_map"]).items()},
        applied=bool(values["applied"]),
        created=float(values["created"]),
        updated=float(values["updated"]),
        provisioned_at=None if values["provisioned_at"] is None else float(values["provisioned_at"]),
        version=int(values["version"]),
        held_by=str(values["held_by"]),
    )


class Result(NamedTuple):
    """What one statement gave back: its rows (none for a write) and the rows it changed."""

    rows: list[tuple[Any, ...]]
    rowcount: int


Statement: TypeAlias = tuple[str, tuple[Any, ...]]
"""One SQL statement with C{?} placeholders, and its parameters."""

Steps: TypeAlias = Generator[Statement, Result, T]
"""An operation as statements: yields each, is sent its L{Result}, returns the outcome."""

INSERT_BOOKING = f"INSERT INTO bookings ({', '.join(ALL_COLUMNS)}) VALUES ({', '.join('?' for _ in ALL_COLUMNS)})"
"""Insert one row: the parameters are L{booking_to_row}'s values."""

UPDATE_BOOKING = (
    f"UPDATE bookings SET {', '.join(c + ' = ?' for c in ALL_COLUMNS)} WHERE sliver_key = ? AND island = ? AND version = ?"
)
"""Replace one row: L{booking_to_row}'s values, then its sliver key, island and the version it replaces."""

SELECT_BOOKINGS = f"SELECT {SELECT_LIST} FROM bookings"
"""The start of a query whose rows L{row_to_booking} reads."""

_HELD = AllocationState.HELD.value
_ALLOCATED = AllocationState.ALLOCATED.value
_PROVISIONED = AllocationState.PROVISIONED.value


def _marks(count: int) -> str:
    return ", ".join("?" for _ in range(count))


def drive(steps: Steps[T], execute: Callable[[str, tuple[Any, ...]], Result], first: Statement | None = None) -> T:
    """
    Run C{steps} synchronously: C{execute(sql, params)} runs one statement
    and returns its L{Result}. If C{first} is given, the caller has already
    taken that first statement from C{steps}.
    """
    try:
        statement = next(steps) if first is None else first
        while True:
            statement = steps.send(execute(*statement))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


_TICKET_HOLD_ROW = f"(allocation_state = '{AllocationState.HELD.value}' AND held_by = '{TICKET_HOLD}')"
_SLIVER_STATES = frozenset({AllocationState.ALLOCATED, AllocationState.PROVISIONED})
_SLIVER_STATES_SQL = "(" + ", ".join(f"'{state.value}'" for state in sorted(_SLIVER_STATES)) + ")"


class BookingQueries:
    """
    The operations of L{geniam.interfaces.IStore} on one island's rows, as
    L{Steps}.

    Writes assume the caller runs them in one transaction that it rolls
    back if they raise. Conflicts are found with two index probes: the live
    rows other than tickets' holds never overlap one another, nor do the
    live tickets' holds (only a ticket's hold and a sliver of its own slice
    may, L{may_share_slot}), so in each of the two sets the only row that
    can overlap C{[start, end)} is the one with the latest start before
    C{end}. An update writes each row only if its version is still the one
    read, so a database that lets another writer in between (PostgreSQL at
    READ COMMITTED) still never loses an update.

    @ivar island: the island whose rows these statements touch.
    """

    def __init__(self, island: str) -> None:
        self.island = island

    def _conflict(self, booking: Booking, exclude: Sequence[str]) -> Steps[Slot | None]:
        """The slot of a live booking overlapping C{booking}'s, other than C{exclude} (sliver keys) and those it may share its slot with, or None."""
        for ticket_holds in (False, True):
            sql = "SELECT start_time, end_time FROM bookings WHERE island = ? AND live = 1 AND start_time < ?"
            params: list[Any] = [self.island, booking.slot.end]
            sql += f" AND {'' if ticket_holds else 'NOT '}{_TICKET_HOLD_ROW}"
            if ticket_holds and booking.allocation_state in _SLIVER_STATES:
                sql += " AND slice_key <> ?"  # a sliver may share its slot with its own slice's ticket
                params.append(urn_key(booking.slice_urn))
            elif not ticket_holds and booking.is_ticket_hold:
                sql += f" AND NOT (slice_key = ? AND allocation_state IN {_SLIVER_STATES_SQL})"
                params.append(urn_key(booking.slice_urn))
            if exclude:
                sql += f" AND sliver_key NOT IN ({_marks(len(exclude))})"
                params.extend(exclude)
            sql += " ORDER BY start_time DESC LIMIT 1"
            found = yield (sql, tuple(params))
            if found.rows and found.rows[0][1] > booking.slot.start:
                return Slot(found.rows[0][0], found.rows[0][1])
        return None

    def _select(self, where: str, params: Iterable[Any]) -> Steps[list[Booking]]:
        found = yield (f"{SELECT_BOOKINGS} WHERE {where}", tuple(params))
        return [row_to_booking(row) for row in found.rows]

    # Writes.

    def insert(self, booking: Booking) -> Steps[Booking]:
        """Store a new booking unless its sliver exists or a live booking overlaps it."""
        found = yield ("SELECT 1 FROM bookings WHERE sliver_key = ?", (booking.sliver_key,))
        if found.rows:
            raise DuplicateBooking(booking.sliver_urn)
        if booking.is_ticket_hold:
            yield from self._one_ticket(booking)
        if booking.live:
            conflict = yield from self._conflict(booking, ())
            if conflict is not None:
                raise BookingConflict(conflict)
        yield (INSERT_BOOKING, booking_to_row(booking, self.island, 1))
        return replace(booking, version=1)

    def _one_ticket(self, hold: Booking) -> Steps[None]:
        """
        Make room for a ticket's new hold: a live ticket's hold of the slice
        past its redeem-by time (the sweep has not marked it yet) is marked
        expired; a valid one refuses the new hold (L{TicketHeld}).
        """
        held = yield from self._select(
            f"island = ? AND slice_key = ? AND live = 1 AND {_TICKET_HOLD_ROW}", (self.island, urn_key(hold.slice_urn))
        )
        for old in held:
            if old.allocation_expires > hold.created:
                raise TicketHeld(hold.slice_urn)
            yield from self.update([step(old, Event.EXPIRE, hold.created)])

    def update(self, bookings: Sequence[Booking]) -> Steps[list[Booking]]:
        """Replace bookings, all or none, checking versions and conflicts."""
        bookings = list(bookings)
        keys = [b.sliver_key for b in bookings]
        if len(set(keys)) != len(keys):
            raise StoreError("the same booking appears twice in one update")
        for booking in bookings:
            found = yield (
                "SELECT version FROM bookings WHERE sliver_key = ? AND island = ?",
                (booking.sliver_key, self.island),
            )
            if not found.rows:
                raise UnknownBooking(booking.sliver_urn)
            if found.rows[0][0] != booking.version:
                raise StaleBooking(booking.sliver_urn)
        for index, booking in enumerate(bookings):
            if not booking.live:
                continue
            conflict = yield from self._conflict(booking, keys)
            if conflict is None:
                conflict = next(
                    (o.slot for o in bookings[:index] if o.live and o.slot.overlaps(booking.slot) and not may_share_slot(o, booking)),
                    None,
                )
            if conflict is not None:
                raise BookingConflict(conflict)
        if len(bookings) > 1 and any(b.live for b in bookings):
            # Rows of one batch may trade slots: a database that checks
            # each row as it is written must not see a half-moved batch.
            yield (f"UPDATE bookings SET live = 0 WHERE island = ? AND sliver_key IN ({_marks(len(keys))})", (self.island, *keys))
        stored = []
        for booking in bookings:
            new = replace(booking, version=booking.version + 1)
            written = yield (UPDATE_BOOKING, booking_to_row(new, self.island, new.version) + (new.sliver_key, self.island, booking.version))
            if written.rowcount != 1:
                raise StaleBooking(booking.sliver_urn)
            stored.append(new)
        return stored

    def set_shutdown(self, slice_urn: str | URN, when: float) -> Steps[bool]:
        """Mark the slice shut down; return True unless it already was."""
        written = yield (
            "INSERT INTO slices (island, slice_key, slice_urn, shutdown_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (self.island, urn_key(slice_urn), str(slice_urn), when),
        )
        return written.rowcount == 1

    # Reads.

    def get(self, sliver_urn: str) -> Steps[Booking | None]:
        """The booking of this sliver, or None."""
        found = yield from self._select("sliver_key = ? AND island = ?", (urn_key(sliver_urn), self.island))
        return found[0] if found else None

    def list_by_slice(self, slice_urn: str | URN, live_only: bool = False) -> Steps[list[Booking]]:
        """The slice's bookings by slot start."""
        where = "island = ? AND slice_key = ?" + (" AND live = 1" if live_only else "")
        return (yield from self._select(where + " ORDER BY start_time, created", (self.island, urn_key(slice_urn))))

    def list_live(self, window: Slot, limit: int | None = None) -> Steps[list[Booking]]:
        """The live bookings overlapping C{window}, by start."""
        where = "island = ? AND live = 1 AND start_time < ? AND end_time > ? ORDER BY start_time"
        params: list[Any] = [self.island, window.end, window.start]
        if limit is not None:
            where += " LIMIT ?"
            params.append(int(limit))
        return (yield from self._select(where, params))

    def list_applied(self) -> Steps[list[Booking]]:
        """The bookings whose configuration is on the gateway."""
        return (yield from self._select("island = ? AND applied = 1 ORDER BY start_time", (self.island,)))

    def due(self, now: float, limit: int) -> Steps[Due]:
        """The bookings needing an action at C{now}; read them in one snapshot."""
        island = self.island
        expire = yield from self._select(
            "island = ? AND allocation_state IN (?, ?) AND allocation_expires <= ? ORDER BY allocation_expires LIMIT ?",
            (island, _HELD, _ALLOCATED, now, limit),
        )
        end = yield from self._select(
            "island = ? AND allocation_state = ? AND end_time <= ? ORDER BY end_time LIMIT ?",
            (island, _PROVISIONED, now, limit),
        )
        start = yield from self._select(
            "island = ? AND allocation_state = ? AND start_time <= ? AND end_time > ?"
            " AND operational_state IN ('notready', 'configuring', 'failed') ORDER BY start_time LIMIT ?",
            (island, _PROVISIONED, now, now, limit),
        )
        cleanup = yield from self._select(
            "island = ? AND applied = 1 AND (live = 0 OR operational_state = 'stopped') ORDER BY updated LIMIT ?",
            (island, limit),
        )
        return Due(expire=tuple(expire), end=tuple(end), start=tuple(start), cleanup=tuple(cleanup))

    def next_boundary(self, after: float) -> Steps[float | None]:
        """The next moment later than C{after} a live booking changes by itself, or None; read in one snapshot."""
        moments = []
        for column, state in (
            ("allocation_expires", _HELD),
            ("allocation_expires", _ALLOCATED),
            ("start_time", _PROVISIONED),
            ("end_time", _PROVISIONED),
        ):
            found = yield (
                f"SELECT MIN({column}) FROM bookings WHERE island = ? AND allocation_state = ? AND {column} > ?",
                (self.island, state, after),
            )
            if found.rows[0][0] is not None:
                moments.append(float(found.rows[0][0]))
        return min(moments) if moments else None

    def is_shutdown(self, slice_urn: str | URN) -> Steps[bool]:
        """Whether the slice has been shut down."""
        found = yield ("SELECT 1 FROM slices WHERE island = ? AND slice_key = ?", (self.island, urn_key(slice_urn)))
        return bool(found.rows)

    def count(self, states: Iterable[AllocationState | str] | None = None) -> Steps[int]:
        """The number of bookings, in C{states} if given (no statement at all for no states)."""
        sql = "SELECT COUNT(*) FROM bookings WHERE island = ?"
        params: list[Any] = [self.island]
        if states is not None:
            wanted = [AllocationState(s).value for s in states]
            if not wanted:
                return 0
            sql += f" AND allocation_state IN ({_marks(len(wanted))})"
            params.extend(wanted)
        found = yield (sql, tuple(params))
        return int(found.rows[0][0])


READ = "read"
"""An operation of one statement that reads."""

SNAPSHOT = "snapshot"
"""An operation whose statements read one snapshot."""

WRITE = "write"
"""An operation that changes bookings: one transaction that no other writer of the island can interleave with."""


class SQLStore(ABC):
    """
    The methods of L{geniam.interfaces.IStore} as L{BookingQueries}
    operations, each a L{READ}, a L{SNAPSHOT} or a L{WRITE}. A subclass runs
    them on its database (L{_steps}), opens it (C{start}) and sets C{_pool}
    to something with a C{close()} method while it is open.
    """

    def __init__(self, island: str, name: str = "database") -> None:
        self.island = island
        self.availability = Availability(name)
        self._queries = BookingQueries(island)
        self._pool: Any = None
        self._in_flight: set[Deferred[Any]] = set()

    def _operation(self, make: Callable[[], Steps[T]], kind: str, contended: str | None = None) -> Deferred[T]:
        """Run an operation through L{_steps}, telling L{availability} whether the database answered."""
        d = self._steps(make, kind, contended)
        write = kind == WRITE

        def answered(result: T) -> T:
            self.availability.succeeded(write)
            return result

        def failed(failure: Failure) -> Failure:
            if failure.check(StoreError):
                if self._pool is not None:
                    self.availability.failed(failure.value.message, write)
            elif failure.check(StoreFailure, BookingError, GeniError):
                self.availability.succeeded(write)  # a conflict, an unknown sliver: the database answered
            return failure

        return d.addCallbacks(answered, failed)

    @abstractmethod
    def _steps(self, make: Callable[[], Steps[T]], kind: str, contended: str | None = None) -> Deferred[T]:
        """
        Run the operation C{make()} builds as a C{kind} of operation; fire
        with its outcome. C{contended} names the sliver a write gives up on
        as BUSY when concurrent writers keep winning.
        """

    def stop(self) -> Deferred[None]:
        """Wait for work in flight, then close the database (see L{IStore.stop})."""
        pool, self._pool = self._pool, None
        waiting: Deferred[Any] = DeferredList(list(self._in_flight), consumeErrors=True)

        def close(_: object) -> None:
            if pool is not None:
                pool.close()

        return waiting.addCallback(close)

    # Writes.

    def insert(self, booking: Booking) -> Deferred[Booking]:
        """Store a new booking unless it conflicts (see L{IStore.insert})."""
        return self._operation(lambda: self._queries.insert(booking), WRITE, booking.sliver_urn)

    def update(self, bookings: Sequence[Booking]) -> Deferred[list[Booking]]:
        """Replace bookings, all or none, with version and conflict checks (see L{IStore.update})."""
        batch = list(bookings)
        return self._operation(lambda: self._queries.update(batch), WRITE, batch[0].sliver_urn if batch else None)

    def set_shutdown(self, slice_urn: str | URN, when: float) -> Deferred[bool]:
        """Mark the slice shut down; fire with True unless it already was."""
        return self._operation(lambda: self._queries.set_shutdown(slice_urn, when), WRITE)

    # Reads.

    def get(self, sliver_urn: str) -> Deferred[Booking | None]:
        """Fire with the booking of this sliver, or None."""
        return self._operation(lambda: self._queries.get(sliver_urn), READ)

    def list_by_slice(self, slice_urn: str | URN, live_only: bool = False) -> Deferred[list[Booking]]:
        """Fire with the slice's bookings by slot start."""
        return self._operation(lambda: self._queries.list_by_slice(slice_urn, live_only), READ)

    def list_live(self, window: Slot, limit: int | None = None) -> Deferred[list[Booking]]:
        """Fire with the live bookings overlapping C{window}, by start."""
        return self._operation(lambda: self._queries.list_live(window, limit), READ)

    def list_applied(self) -> Deferred[list[Booking]]:
        """Fire with the bookings whose configuration is on the gateway."""
        return self._operation(self._queries.list_applied, READ)

    def due(self, now: float, limit: int = 500) -> Deferred[Due]:
        """Fire with the bookings needing an action at C{now} (see L{geniam.booking.due})."""
        return self._operation(lambda: self._queries.due(now, limit), SNAPSHOT)

    def next_boundary(self, after: float) -> Deferred[float | None]:
        """Fire with the next moment a live booking changes by itself, or None."""
        return self._operation(lambda: self._queries.next_boundary(after), SNAPSHOT)

    def is_shutdown(self, slice_urn: str | URN) -> Deferred[bool]:
        """Fire with True if the slice has been shut down."""
        return self._operation(lambda: self._queries.is_shutdown(slice_urn), READ)

    def count(self, states: Iterable[AllocationState | str] | None = None) -> Deferred[int]:
        """Fire with the number of bookings, in C{states} if given."""
        wanted = None if states is None else list(states)
        return self._operation(lambda: self._queries.count(wanted), READ)
