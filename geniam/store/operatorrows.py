# -*- test-case-name: tests.store.test_sqlite,tests.store.test_postgres -*-
"""
What operators record in the store: maintenance windows and the audit log.

L{OperatorQueries} holds the statements (as L{Steps}, like
L{geniam.store.rows.BookingQueries}); L{OperatorRecords} is the part of
an SQL store that runs them (mixed into L{geniam.store.rows.SQLStore}).
The tables are created by schema version 3 (L{geniam.store.schema}).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from twisted.internet.defer import Deferred

from geniam.booking.maintenance import MaintenanceWindow
from geniam.booking.values import Slot
from geniam.store.rows import READ, WRITE, Steps

T = TypeVar("T")

MAINTENANCE_TABLE = """
    CREATE TABLE maintenance (
        island TEXT NOT NULL,
        window_id TEXT NOT NULL,
        start_time {real} NOT NULL,
        end_time {real} NOT NULL CHECK (end_time > start_time),
        reason TEXT NOT NULL,
        created_by TEXT NOT NULL,
        created {real} NOT NULL,
        PRIMARY KEY (island, window_id)
    )
    """

AUDIT_TABLE = """
    CREATE TABLE audit_log (
        island TEXT NOT NULL,
        at {real} NOT NULL,
        operator TEXT NOT NULL,
        action TEXT NOT NULL,
        detail TEXT NOT NULL
    )
    """


def operator_tables(real: str) -> tuple[str, ...]:
    """The statements creating the operators' tables, with C{real} the database's floating-point type."""
    return (
        MAINTENANCE_TABLE.format(real=real),
        "CREATE INDEX maintenance_start ON maintenance (island, start_time)",
        AUDIT_TABLE.format(real=real),
        "CREATE INDEX audit_log_at ON audit_log (island, at)",
    )


@dataclass(frozen=True)
class AuditEntry:
    """
    One operator action: who did what, when.

    @ivar at: when (POSIX seconds).
    @ivar operator: the operator's URN.
    @ivar action: what kind of action (C{cancel}, C{maintenance-add}, ...).
    @ivar detail: what exactly, in words.
    """

    at: float
    operator: str
    action: str
    detail: str


_WINDOW_COLUMNS = "window_id, start_time, end_time, reason, created_by, created"


def _window(row: tuple[Any, ...]) -> MaintenanceWindow:
    return MaintenanceWindow(str(row[0]), Slot(float(row[1]), float(row[2])), str(row[3]), str(row[4]), float(row[5]))


class OperatorQueries:
    """The statements on one island's maintenance windows and audit log, as L{Steps}."""

    def __init__(self, island: str) -> None:
        self.island = island

    def add_maintenance(self, window: MaintenanceWindow) -> Steps[MaintenanceWindow]:
        """Store a maintenance window."""
        yield (
            f"INSERT INTO maintenance (island, {_WINDOW_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (self.island, window.window_id, window.slot.start, window.slot.end, window.reason, window.created_by, window.created),
        )
        return window

    def remove_maintenance(self, window_id: str) -> Steps[MaintenanceWindow | None]:
        """Remove a maintenance window; return it, or None if there was none of that name."""
        found = yield (f"SELECT {_WINDOW_COLUMNS} FROM maintenance WHERE island = ? AND window_id = ?", (self.island, window_id))
        if not found.rows:
            return None
        yield ("DELETE FROM maintenance WHERE island = ? AND window_id = ?", (self.island, window_id))
        return _window(found.rows[0])

    def list_maintenance(self, window: Slot) -> Steps[list[MaintenanceWindow]]:
        """The maintenance windows overlapping C{window}, by start."""
        found = yield (
            f"SELECT {_WINDOW_COLUMNS} FROM maintenance WHERE island = ? AND start_time < ? AND end_time > ?"
            " ORDER BY start_time, window_id",
            (self.island, window.end, window.start),
        )
        return [_window(row) for row in found.rows]

    def add_audit(self, entry: AuditEntry) -> Steps[AuditEntry]:
        """Append an entry to the audit log."""
        yield (
            "INSERT INTO audit_log (island, at, operator, action, detail) VALUES (?, ?, ?, ?, ?)",
            (self.island, entry.at, entry.operator, entry.action, entry.detail),
        )
        return entry

    def list_audit(self, since: float, limit: int) -> Steps[list[AuditEntry]]:
        """The audit log's entries from C{since} on, oldest first, at most C{limit}."""
        found = yield (
            "SELECT at, operator, action, detail FROM audit_log WHERE island = ? AND at >= ? ORDER BY at LIMIT ?",
            (self.island, since, int(limit)),
        )
        return [AuditEntry(float(r[0]), str(r[1]), str(r[2]), str(r[3])) for r in found.rows]


class OperatorRecords:
    """
    The store methods of maintenance windows and the audit log, for an SQL
    store that runs L{Steps} with C{_operation(make, kind)} and names its
    island in C{island}.
    """

    island: str
    _operation: Callable[..., Deferred[Any]]

    @property
    def _operator_queries(self) -> OperatorQueries:
        return OperatorQueries(self.island)

    def add_maintenance(self, window: MaintenanceWindow) -> Deferred[MaintenanceWindow]:
        """Store a maintenance window (see L{OperatorQueries.add_maintenance})."""
        return self._operation(lambda: self._operator_queries.add_maintenance(window), WRITE)

    def remove_maintenance(self, window_id: str) -> Deferred[MaintenanceWindow | None]:
        """Remove a maintenance window; fire with it, or None."""
        return self._operation(lambda: self._operator_queries.remove_maintenance(window_id), WRITE)

    def list_maintenance(self, window: Slot) -> Deferred[list[MaintenanceWindow]]:
        """Fire with the maintenance windows overlapping C{window}, by start."""
        return self._operation(lambda: self._operator_queries.list_maintenance(window), READ)

    def add_audit(self, entry: AuditEntry) -> Deferred[AuditEntry]:
        """Append an entry to the audit log."""
        return self._operation(lambda: self._operator_queries.add_audit(entry), WRITE)

    def list_audit(self, since: float = 0.0, limit: int = 1000) -> Deferred[list[AuditEntry]]:
        """Fire with the audit log from C{since} on, oldest first."""
        return self._operation(lambda: self._operator_queries.list_audit(since, limit), READ)
