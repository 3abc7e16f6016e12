# -*- test-case-name: tests.store.test_sqlite,tests.store.test_postgres -*-
"""
The versioned schema of the booking store, for SQLite and PostgreSQL.

C{schema_version} holds one row, the version the tables follow. A store
creates the schema in an empty database, upgrades an older one step by step
with its migrations, and refuses to open a newer one (L{open_schema}). Both
databases get the same tables and indexes; PostgreSQL adds an exclusion
constraint that keeps the live bookings (holds included) of an island apart.

Version 2 added holds: the C{held} and C{released} states and the
C{held_by} column. Version 3 added the C{transactions} table: each slice's
open transaction (its desired state, holds and C{commit_by}).
Version 4 added the operators' tables: C{maintenance} (maintenance
windows) and C{audit_log} (L{geniam.store.operatorrows}).
Version 5 lets a ticket's hold overlap a sliver of its own slice (the
sliver it updates) in PostgreSQL's exclusion constraints, as
L{geniam.booking.values.may_share_slot} says, and adds a unique partial
index that allows one live ticket's hold per slice and island
(L{ONE_TICKET_INDEX}), in both databases.
Version 6 gives each transaction an identifier (C{transaction_id}, empty
for one opened before) and adds C{transaction_outcomes}: how each recently
finished transaction ended, so that a Commit retried with its identifier
is answered again (L{geniam.store.transactions}).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from geniam.booking.values import TICKET_HOLD
from geniam.store.errors import SchemaTooNew
from geniam.store.operatorrows import operator_tables
from geniam.store.rows import Statement, Steps

SCHEMA_VERSION = 6
"""The schema version this code reads and writes."""

_BOOKINGS_TABLE = """
    CREATE TABLE bookings (
        sliver_key TEXT PRIMARY KEY,
        island TEXT NOT NULL,
        slice_key TEXT NOT NULL,
        live INTEGER NOT NULL CHECK (live IN (0, 1)),
        sliver_urn TEXT NOT NULL,
        slice_urn TEXT NOT NULL,
        owner_urn TEXT NOT NULL,
        owner_email TEXT NOT NULL,
        start_time {real} NOT NULL,
        end_time {real} NOT NULL CHECK (end_time > start_time),
        allocation_state TEXT NOT NULL
            CONSTRAINT bookings_allocation_state_check CHECK (allocation_state IN ({states})),
        allocation_expires {real} NOT NULL,
        operational_state TEXT NOT NULL
            CHECK (operational_state IN ('notready', 'configuring', 'ready', 'failed', 'stopped')),
        error TEXT NOT NULL,
        users TEXT NOT NULL,
        controller TEXT,
        vlan_map TEXT NOT NULL,
        applied INTEGER NOT NULL CHECK (applied IN (0, 1)),
        created {real} NOT NULL,
        updated {real} NOT NULL,
        provisioned_at {real},
        version INTEGER NOT NULL,
        held_by TEXT NOT NULL DEFAULT ''{constraints}
    )
    """

_STATES = "'held', 'allocated', 'provisioned', 'ended', 'deleted', 'expired', 'released'"

_INDEXES: tuple[str, ...] = (
    # Conflict checks and the advertisement: live bookings by start.
    "CREATE INDEX bookings_live_start ON bookings (island, live, start_time)",
    # The periodic checks: slots starting and ending, allocations lapsing.
    "CREATE INDEX bookings_state_start ON bookings (island, allocation_state, start_time)",
    "CREATE INDEX bookings_state_end ON bookings (island, allocation_state, end_time)",
    "CREATE INDEX bookings_state_expires ON bookings (island, allocation_state, allocation_expires)",
    "CREATE INDEX bookings_slice ON bookings (island, slice_key, start_time)",
    "CREATE INDEX bookings_applied ON bookings (island) WHERE applied = 1",
)

ONE_TICKET_INDEX = "bookings_one_ticket"
"""The unique partial index that allows at most one live ticket's hold per slice and island, whoever writes it."""

_ONE_TICKET = (
    f"CREATE UNIQUE INDEX IF NOT EXISTS {ONE_TICKET_INDEX} ON bookings (island, slice_key)"
    f" WHERE live = 1 AND allocation_state = 'held' AND held_by = '{TICKET_HOLD}'"
)

_SLICES_TABLE = """
    CREATE TABLE slices (
        island TEXT NOT NULL,
        slice_key TEXT NOT NULL,
        slice_urn TEXT NOT NULL,
        shutdown_at {real} NOT NULL,
        PRIMARY KEY (island, slice_key)
    )
    """

_TRANSACTIONS_TABLE = """
    CREATE TABLE transactions (
        island TEXT NOT NULL,
        slice_key TEXT NOT NULL,
        slice_urn TEXT NOT NULL,
        owner_urn TEXT NOT NULL,
        owner_email TEXT NOT NULL,
        desired TEXT NOT NULL,
        holds TEXT NOT NULL,
        commit_by {real} NOT NULL,
        began {real} NOT NULL,
        request TEXT NOT NULL,
        credential_expires {real},
        version INTEGER NOT NULL,
        PRIMARY KEY (island, slice_key)
    )
    """

_OUTCOMES_TABLE = """
    CREATE TABLE transaction_outcomes (
        island TEXT NOT NULL,
        transaction_id TEXT NOT NULL,
        slice_key TEXT NOT NULL,
        slice_urn TEXT NOT NULL,
        outcome TEXT NOT NULL CHECK (outcome IN ('committed', 'aborted')),
        closed {real} NOT NULL,
        commit_by {real} NOT NULL,
        reason TEXT NOT NULL,
        request TEXT NOT NULL,
        slivers TEXT NOT NULL,
        keep_until {real} NOT NULL,
        PRIMARY KEY (island, transaction_id)
    )
    """


def _identified_transactions(real: str) -> tuple[str, ...]:
    """Version 6: the transactions' identifiers and the finished transactions' outcomes."""
    return (
        "ALTER TABLE transactions ADD COLUMN transaction_id TEXT NOT NULL DEFAULT ''",
        _OUTCOMES_TABLE.format(real=real),
        "CREATE INDEX transaction_outcomes_kept ON transaction_outcomes (island, keep_until)",
    )


SQLITE_SCHEMA: tuple[str, ...] = (
    _BOOKINGS_TABLE.format(real="REAL", constraints="", states=_STATES),
    *_INDEXES,
    _ONE_TICKET,
    _SLICES_TABLE.format(real="REAL"),
    _TRANSACTIONS_TABLE.format(real="REAL"),
    *operator_tables("REAL"),
    *_identified_transactions("REAL"),
)
"""The statements that create the current schema in an empty SQLite database."""

_V1_COLUMNS = (
    "sliver_key, island, slice_key, live, sliver_urn, slice_urn, owner_urn, owner_email, start_time, end_time,"
    " allocation_state, allocation_expires, operational_state, error, users, controller, vlan_map, applied,"
    " created, updated, provisioned_at, version"
)

SQLITE_MIGRATIONS: dict[int, tuple[str, ...]] = {
    # SQLite cannot change a CHECK constraint: copy the rows into the new table.
    2: (
        _BOOKINGS_TABLE.replace("CREATE TABLE bookings", "CREATE TABLE bookings_v2").format(
            real="REAL", constraints="", states=_STATES
        ),
        f"INSERT INTO bookings_v2 ({_V1_COLUMNS}) SELECT {_V1_COLUMNS} FROM bookings",
        "DROP TABLE bookings",
        "ALTER TABLE bookings_v2 RENAME TO bookings",
        *_INDEXES,
    ),
    3: (_TRANSACTIONS_TABLE.format(real="REAL"),),
    4: operator_tables("REAL"),
    5: (_ONE_TICKET,),
    6: _identified_transactions("REAL"),
}
"""For each version C{n} > 1, the statements that upgrade an SQLite database from version C{n - 1} to C{n}."""

NO_OVERLAP_CONSTRAINT = "bookings_live_apart"
"""The name of the PostgreSQL exclusion constraint that keeps the live bookings and holds of different slices of an island apart."""

IN_SLICE_CONSTRAINT = "bookings_live_apart_in_slice"
"""
The name of the PostgreSQL exclusion constraint that keeps the live
bookings and holds of one slice apart, but for a ticket's hold and a sliver
(they differ in the ticket flag and the hold flag of L{_IN_SLICE_KEYS}).
"""

_TICKET_FLAG = f"(CASE WHEN allocation_state = 'held' AND held_by = '{TICKET_HOLD}' THEN 1 ELSE 0 END)"
_HOLD_FLAG = "(CASE WHEN allocation_state = 'held' THEN 1 ELSE 0 END)"
_IN_SLICE_KEYS = f"(island WITH =, slice_key WITH =, slot_range(start_time, end_time) WITH &&, {_TICKET_FLAG} WITH =)"
_IN_SLICE_HOLDS_KEYS = f"(island WITH =, slice_key WITH =, slot_range(start_time, end_time) WITH &&, {_HOLD_FLAG} WITH =)"
_APART_CONSTRAINTS = f"""
        CONSTRAINT {NO_OVERLAP_CONSTRAINT} EXCLUDE USING gist
            (island WITH =, slice_key WITH <>, slot_range(start_time, end_time) WITH &&) WHERE (live = 1),
        CONSTRAINT {IN_SLICE_CONSTRAINT} EXCLUDE USING gist {_IN_SLICE_KEYS} WHERE (live = 1),
        CONSTRAINT {IN_SLICE_CONSTRAINT}_holds EXCLUDE USING gist {_IN_SLICE_HOLDS_KEYS} WHERE (live = 1)"""

POSTGRES_SCHEMA: tuple[str, ...] = (
    # Equality on text in a GiST index.
    "CREATE EXTENSION IF NOT EXISTS btree_gist",
    # The half-open slot [start_time, end_time) as an exact range of the
    # stored doubles (numeric casts round to 15 digits).
    "CREATE TYPE slot_range AS RANGE (subtype = double precision, subtype_diff = float8mi)",
    _BOOKINGS_TABLE.format(
        real="DOUBLE PRECISION",
        states=_STATES,
        constraints="," + _APART_CONSTRAINTS,
    ),
    *_INDEXES,
    _ONE_TICKET,
    _SLICES_TABLE.format(real="DOUBLE PRECISION"),
    _TRANSACTIONS_TABLE.format(real="DOUBLE PRECISION"),
    *operator_tables("DOUBLE PRECISION"),
    *_identified_transactions("DOUBLE PRECISION"),
)
"""
The statements that create the current schema in an empty PostgreSQL
schema. The exclusion constraints make the database refuse a live booking
overlapping another live booking of its island, whoever writes it, but for
a ticket's hold and a sliver of the same slice.
"""

POSTGRES_MIGRATIONS: dict[int, tuple[str, ...]] = {
    # Holds are live rows, so the exclusion constraint keeps them apart from bookings as it is.
    2: (
        "ALTER TABLE bookings DROP CONSTRAINT bookings_allocation_state_check",
        f"ALTER TABLE bookings ADD CONSTRAINT bookings_allocation_state_check CHECK (allocation_state IN ({_STATES}))",
        "ALTER TABLE bookings ADD COLUMN held_by TEXT NOT NULL DEFAULT ''",
    ),
    3: (_TRANSACTIONS_TABLE.format(real="DOUBLE PRECISION"),),
    4: operator_tables("DOUBLE PRECISION"),
    5: (
        *(
            f"ALTER TABLE bookings DROP CONSTRAINT IF EXISTS {name}"
            for name in (NO_OVERLAP_CONSTRAINT, IN_SLICE_CONSTRAINT, f"{IN_SLICE_CONSTRAINT}_holds")
        ),
        *(f"ALTER TABLE bookings ADD {c.strip()}" for c in _APART_CONSTRAINTS.split(",\n")),
        _ONE_TICKET,
    ),
    6: _identified_transactions("DOUBLE PRECISION"),
}
"""For each version C{n} > 1, the statements that upgrade a PostgreSQL database from version C{n - 1} to C{n}."""


def open_schema(
    create: Sequence[str],
    migrations: Mapping[int, Sequence[str]],
    prelude: Sequence[Statement] = (),
) -> Steps[None]:
    """
    Create the schema in an empty database, upgrade an older one, or refuse
    a newer one, as L{Steps} to run in one transaction.

    @param create: the statements that create the current schema.
    @param migrations: for each version C{n} > 1, the statements from
        C{n - 1} to C{n}.
    @param prelude: statements to run first (a lock that keeps two processes
        from creating the schema at once).
    @raise SchemaTooNew: if the database was written by a newer version.
    """
    for statement in prelude:
        yield statement
    yield ("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)", ())
    found = (yield ("SELECT MAX(version) FROM schema_version", ())).rows[0][0]
    if found is None:
        for sql in create:
            yield (sql, ())
        yield ("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
        return
    if found > SCHEMA_VERSION:
        raise SchemaTooNew(found, SCHEMA_VERSION)
    for version in range(found + 1, SCHEMA_VERSION + 1):
        for sql in migrations[version]:
            yield (sql, ())
    yield ("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))
