# -*- test-case-name: tests.test_store_sqlite -*-
"""
The versioned SQLite schema of the booking store.

C{schema_version} holds one row, the version the tables follow. A store
creates the schema in an empty database, upgrades an older one step by step
with L{SQLITE_MIGRATIONS}, and refuses to open a newer one.
"""

from __future__ import annotations

SCHEMA_VERSION = 1
"""The schema version this code reads and writes."""

SQLITE_SCHEMA: tuple[str, ...] = (
    """
    CREATE TABLE bookings (
        sliver_key TEXT PRIMARY KEY,
        island TEXT NOT NULL,
        slice_key TEXT NOT NULL,
        live INTEGER NOT NULL CHECK (live IN (0, 1)),
        sliver_urn TEXT NOT NULL,
        slice_urn TEXT NOT NULL,
        owner_urn TEXT NOT NULL,
        owner_email TEXT NOT NULL,
        start_time REAL NOT NULL,
        end_time REAL NOT NULL CHECK (end_time > start_time),
        allocation_state TEXT NOT NULL
            CHECK (allocation_state IN ('allocated', 'provisioned', 'ended', 'deleted', 'expired')),
        allocation_expires REAL NOT NULL,
        operational_state TEXT NOT NULL
            CHECK (operational_state IN ('notready', 'configuring', 'ready', 'failed', 'stopped')),
        error TEXT NOT NULL,
        users TEXT NOT NULL,
        controller TEXT,
        vlan_map TEXT NOT NULL,
        applied INTEGER NOT NULL CHECK (applied IN (0, 1)),
        created REAL NOT NULL,
        updated REAL NOT NULL,
        provisioned_at REAL,
        version INTEGER NOT NULL
    )
    """,
    # Conflict checks and the advertisement: live bookings by start.
    "CREATE INDEX bookings_live_start ON bookings (island, live, start_time)",
    # The periodic checks: slots starting and ending, allocations lapsing.
    "CREATE INDEX bookings_state_start ON bookings (island, allocation_state, start_time)",
    "CREATE INDEX bookings_state_end ON bookings (island, allocation_state, end_time)",
    "CREATE INDEX bookings_state_expires ON bookings (island, allocation_state, allocation_expires)",
    "CREATE INDEX bookings_slice ON bookings (island, slice_key, start_time)",
    "CREATE INDEX bookings_applied ON bookings (island) WHERE applied = 1",
    """
    CREATE TABLE slices (
        island TEXT NOT NULL,
        slice_key TEXT NOT NULL,
        slice_urn TEXT NOT NULL,
        shutdown_at REAL NOT NULL,
        PRIMARY KEY (island, slice_key)
    )
    """,
)
"""The statements that create the current schema in an empty database."""

SQLITE_MIGRATIONS: dict[int, tuple[str, ...]] = {}
"""For each version C{n} > 1, the statements that upgrade version C{n - 1} to C{n}."""
