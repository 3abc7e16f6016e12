# -*- test-case-name: tests.managers.test_transactions,tests.store.test_contract,tests.store.test_transactions,tests.store.test_transactions_crash -*-
"""
Open transactions as database rows, and the writes that change a
transaction and its bookings in one database transaction.

The C{transactions} table (schema version 3) holds one row per open
transaction of a slice on an island: the fields of
L{geniam.booking.transactions.Transaction}, the desired state and the
holds as JSON text. C{transaction_outcomes} (version 6) keeps how each
recently finished transaction ended
(L{geniam.booking.transactions.TransactionOutcome}), written by the close
itself, until its C{keep_until}. Each write here is one L{Steps} operation that the
store runs as one C{WRITE}: the row and the bookings change together or
not at all, so a kill at any point leaves a transaction either still open
(with its holds and C{commit_by}) or fully committed or fully aborted.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from twisted.internet.defer import Deferred

from geniam.booking.transactions import DesiredSlot, Outcome, Transaction, TransactionOutcome
from geniam.booking.values import Booking, Slot, UserKeys, urn_key
from geniam.store.errors import StoreFailure
from geniam.store.rows import READ, WRITE, BookingQueries, Steps


class TransactionExists(StoreFailure):
    """The slice already has an open transaction on this island."""

    def __init__(self, slice_urn: str) -> None:
        super().__init__(f"slice {slice_urn} already has a transaction in progress here")
        self.slice_urn = slice_urn


class NoTransaction(StoreFailure):
    """The slice has no open transaction on this island (it was committed, aborted or changed meanwhile)."""

    def __init__(self, slice_urn: str) -> None:
        super().__init__(f"slice {slice_urn} has no transaction in progress here")
        self.slice_urn = slice_urn


class StaleTransaction(StoreFailure):
    """The transaction changed since it was read."""

    def __init__(self, slice_urn: str) -> None:
        super().__init__(f"the transaction of slice {slice_urn} changed meanwhile; try again")
        self.slice_urn = slice_urn


COLUMNS: tuple[str, ...] = (
    "slice_urn",
    "owner_urn",
    "owner_email",
    "desired",
    "holds",
    "commit_by",
    "began",
    "request",
    "credential_expires",
    "version",
    "transaction_id",
)
"""The columns a transaction is read back from."""

_SELECT = f"SELECT {', '.join(COLUMNS)} FROM transactions"

OUTCOME_COLUMNS: tuple[str, ...] = (
    "transaction_id",
    "slice_urn",
    "outcome",
    "closed",
    "commit_by",
    "reason",
    "request",
    "slivers",
    "keep_until",
)
"""The columns a transaction's outcome is read back from."""


def _desired_json(desired: Sequence[DesiredSlot]) -> str:
    return json.dumps(
        [
            {
                "start": d.slot.start,
                "end": d.slot.end,
                "controller": d.controller,
                "vlans": dict(d.vlan_map),
                "users": [{"urn": u.urn, "keys": list(u.keys)} for u in d.users],
            }
            for d in desired
        ],
        separators=(",", ":"),
        sort_keys=True,
    )


def _desired_from_json(text: str) -> tuple[DesiredSlot, ...]:
    return tuple(
        DesiredSlot(
            slot=Slot(item["start"], item["end"]),
            controller=item["controller"],
            vlan_map={str(k): str(v) for k, v in item["vlans"].items()},
            users=tuple(UserKeys(str(u["urn"]), tuple(str(k) for k in u["keys"])) for u in item["users"]),
        )
        for item in json.loads(text)
    )


def transaction_to_row(transaction: Transaction, version: int) -> tuple[Any, ...]:
    """The values of L{COLUMNS} for C{transaction}, stored with C{version}."""
    return (
        transaction.slice_urn,
        transaction.owner_urn,
        transaction.owner_email,
        _desired_json(transaction.desired),
        json.dumps(list(transaction.holds)),
        transaction.commit_by,
        transaction.began,
        transaction.request,
        transaction.credential_expires,
        version,
        transaction.transaction_id,
    )


def row_to_transaction(row: Sequence[Any]) -> Transaction:
    """Build a L{Transaction} from the values of L{COLUMNS}."""
    values = dict(zip(COLUMNS, row))
    return Transaction(
        slice_urn=values["slice_urn"],
        owner_urn=values["owner_urn"],
        owner_email=values["owner_email"],
        desired=_desired_from_json(values["desired"]),
        holds=tuple(str(h) for h in json.loads(values["holds"])),
        commit_by=float(values["commit_by"]),
        began=float(values["began"]),
        request=values["request"],
        credential_expires=None if values["credential_expires"] is None else float(values["credential_expires"]),
        version=int(values["version"]),
        transaction_id=str(values["transaction_id"]),
    )


def outcome_to_row(outcome: TransactionOutcome) -> tuple[Any, ...]:
    """The values of L{OUTCOME_COLUMNS} for C{outcome}."""
    return (
        outcome.transaction_id,
        outcome.slice_urn,
        outcome.outcome.value,
        outcome.closed,
        outcome.commit_by,
        outcome.reason,
        outcome.request,
        json.dumps(list(outcome.slivers)),
        outcome.keep_until,
    )


def row_to_outcome(row: Sequence[Any]) -> TransactionOutcome:
    """Build a L{TransactionOutcome} from the values of L{OUTCOME_COLUMNS}."""
    values = dict(zip(OUTCOME_COLUMNS, row))
    return TransactionOutcome(
        transaction_id=str(values["transaction_id"]),
        slice_urn=str(values["slice_urn"]),
        outcome=Outcome(values["outcome"]),
        closed=float(values["closed"]),
        commit_by=float(values["commit_by"]),
        reason=str(values["reason"]),
        request=str(values["request"]),
        slivers=tuple(str(s) for s in json.loads(values["slivers"])),
        keep_until=float(values["keep_until"]),
    )


class TransactionQueries:
    """
    The store's operations on one island's open transactions, as L{Steps}.

    @param bookings: the island's booking operations, whose writes these
        reuse (conflict and version checks included).
    """

    def __init__(self, bookings: BookingQueries) -> None:
        self.island = bookings.island
        self._bookings = bookings

    def _version(self, slice_key: str) -> Steps[int | None]:
        found = yield ("SELECT version FROM transactions WHERE island = ? AND slice_key = ?", (self.island, slice_key))
        return int(found.rows[0][0]) if found.rows else None

    def get(self, slice_urn: str) -> Steps[Transaction | None]:
        """The slice's open transaction, or None."""
        found = yield (f"{_SELECT} WHERE island = ? AND slice_key = ?", (self.island, urn_key(slice_urn)))
        return row_to_transaction(found.rows[0]) if found.rows else None

    def all(self) -> Steps[list[Transaction]]:
        """Every open transaction of the island, by C{commit_by}."""
        found = yield (f"{_SELECT} WHERE island = ? ORDER BY commit_by", (self.island,))
        return [row_to_transaction(row) for row in found.rows]

    def save(
        self, transaction: Transaction, insert: Sequence[Booking], update: Sequence[Booking]
    ) -> Steps[tuple[Transaction, list[Booking]]]:
        """
        Open the transaction (C{version} 0) or replace it (its C{version}
        is the one read), storing the bookings of C{update} then inserting
        those of C{insert}, all or none.

        @raise TransactionExists: when opening, if one is open.
        @raise StaleTransaction: when replacing, if it changed or is gone.
        """
        found = yield from self._version(transaction.slice_key)
        new_version = transaction.version + 1
        row = transaction_to_row(transaction, new_version)
        if transaction.version == 0:
            if found is not None:
                raise TransactionExists(transaction.slice_urn)
            yield (
                f"INSERT INTO transactions (island, slice_key, {', '.join(COLUMNS)}) VALUES (?, ?, {', '.join('?' for _ in COLUMNS)})",
                (self.island, transaction.slice_key, *row),
            )
        else:
            if found != transaction.version:
                raise StaleTransaction(transaction.slice_urn)
            yield (
                f"UPDATE transactions SET {', '.join(c + ' = ?' for c in COLUMNS)} WHERE island = ? AND slice_key = ?",
                (*row, self.island, transaction.slice_key),
            )
        stored = list((yield from self._bookings.update(update))) if update else []
        for booking in insert:
            stored.append((yield from self._bookings.insert(booking)))
        return replace(transaction, version=new_version), stored

    def close(
        self, transaction: Transaction, bookings: Sequence[Booking], outcome: TransactionOutcome | None = None
    ) -> Steps[list[Booking]]:
        """
        Close the transaction (commit or abort): remove its row, store
        C{bookings} and record C{outcome} (if given), all or none.

        @raise NoTransaction: if it is gone.
        @raise StaleTransaction: if it changed since it was read.
        """
        found = yield from self._version(transaction.slice_key)
        if found is None:
            raise NoTransaction(transaction.slice_urn)
        if found != transaction.version:
            raise StaleTransaction(transaction.slice_urn)
        yield ("DELETE FROM transactions WHERE island = ? AND slice_key = ?", (self.island, transaction.slice_key))
        if outcome is not None:
            yield (
                f"INSERT INTO transaction_outcomes (island, slice_key, {', '.join(OUTCOME_COLUMNS)})"
                f" VALUES (?, ?, {', '.join('?' for _ in OUTCOME_COLUMNS)})",
                (self.island, urn_key(outcome.slice_urn), *outcome_to_row(outcome)),
            )
        if not bookings:
            return []
        return list((yield from self._bookings.update(bookings)))


    def outcome(self, transaction_id: str) -> Steps[TransactionOutcome | None]:
        """The recorded outcome of the transaction C{transaction_id}, or None."""
        found = yield (
            f"SELECT {', '.join(OUTCOME_COLUMNS)} FROM transaction_outcomes WHERE island = ? AND transaction_id = ?",
            (self.island, transaction_id),
        )
        return row_to_outcome(found.rows[0]) if found.rows else None

    def forget(self, now: float) -> Steps[None]:
        """Forget the outcomes kept until C{now} or before."""
        yield ("DELETE FROM transaction_outcomes WHERE island = ? AND keep_until <= ?", (self.island, now))


class TransactionStore:
    """
    The transaction methods of L{geniam.interfaces.IStore} for a
    L{geniam.store.rows.SQLStore} (mixed in before it): each is one
    operation, a write in one database transaction.
    """

    _queries: BookingQueries
    _operation: Any

    @property
    def _transactions(self) -> TransactionQueries:
        return TransactionQueries(self._queries)

    def get_transaction(self, slice_urn: str) -> Deferred[Transaction | None]:
        """Fire with the slice's open transaction, or None."""
        return self._operation(lambda: self._transactions.get(slice_urn), READ)  # type: ignore[no-any-return]

    def list_transactions(self) -> Deferred[list[Transaction]]:
        """Fire with every open transaction of the island, by C{commit_by}."""
        return self._operation(lambda: self._transactions.all(), READ)  # type: ignore[no-any-return]

    def save_transaction(
        self, transaction: Transaction, insert: Sequence[Booking], update: Sequence[Booking]
    ) -> Deferred[tuple[Transaction, list[Booking]]]:
        """Open or replace a transaction with its bookings, all or none (see L{TransactionQueries.save})."""
        inserts, updates = list(insert), list(update)
        return self._operation(lambda: self._transactions.save(transaction, inserts, updates), WRITE, transaction.slice_urn)  # type: ignore[no-any-return]

    def close_transaction(
        self, transaction: Transaction, bookings: Sequence[Booking], outcome: TransactionOutcome | None = None
    ) -> Deferred[list[Booking]]:
        """Close a transaction, store its bookings and record its outcome, all or none (see L{TransactionQueries.close})."""
        batch = list(bookings)
        return self._operation(lambda: self._transactions.close(transaction, batch, outcome), WRITE, transaction.slice_urn)  # type: ignore[no-any-return]

    def get_transaction_outcome(self, transaction_id: str) -> Deferred[TransactionOutcome | None]:
        """Fire with the recorded outcome of the transaction C{transaction_id}, or None."""
        return self._operation(lambda: self._transactions.outcome(transaction_id), READ)  # type: ignore[no-any-return]

    def forget_transaction_outcomes(self, now: float) -> Deferred[None]:
        """Forget the transaction outcomes kept until C{now} or before."""
        return self._operation(lambda: self._transactions.forget(now), WRITE)  # type: ignore[no-any-return]
