# -*- test-case-name: tests.managers.test_fedtransactions,tests.loopback.test_twophase -*-
"""
A client's transaction across a federation, named by one identifier.

Each aggregate names its own transaction (C{geniam_transaction}, answered
by its Begin); a client running a transaction through the slice manager
gets one identifier for all of them from the slice manager's Begin, and
the aggregates' own in C{geniam_transactions} (C{{aggregate URN: id}}).
L{FederatedTransactions} keeps, in memory, which aggregate transactions
each such identifier stands for, so that a Commit or Abort naming it sends
each aggregate its own identifier.

The mapping is kept only in memory, on purpose: the aggregates keep their
transactions and outcomes durably, the client holds the aggregates'
identifiers from the Begin answer, and a lost mapping only means that the
slice manager's identifier is no longer known. A Commit or Abort naming an
identifier the slice manager does not know (it restarted, or the
transaction ended too long ago) is ERROR and is sent nowhere, never to a
wrong transaction; the client then names the aggregates' own identifiers
with the option C{geniam_transactions}, which needs no memory here.

Each entry is kept until the latest C{commit_by} of its transactions plus
the longest C{outcome_retention} its aggregates advertise (as long as an
aggregate remembers how a transaction ended), and at most
L{DEFAULT_LIMIT} entries are kept (past it, the entry due to be forgotten
first goes).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from twisted.internet.interfaces import IReactorTime

from geniam.booking.values import urn_key
from geniam.errors import GeniCode, GeniError
from geniam.managers.fanout import PeerOutcome
from geniam.managers.transactionapi import RETENTION_FIELD, TRANSACTIONS_EXTENSION, transaction_option
from geniam.managers.transactions import DEFAULT_OUTCOME_RETENTION, TRANSACTION_OPTION

TRANSACTIONS_OPTION = "geniam_transactions"
"""The Begin and Update answers' member, and the Commit and Abort option, naming each aggregate's own transaction."""

DEFAULT_LIMIT = 10000
"""How many federated transactions are remembered at most."""

Members = Mapping[str, "str | None"]
"""Aggregate URN to the identifier of the slice's transaction there (None: that aggregate answered none)."""


@dataclass(frozen=True)
class FederatedTransaction:
    """
    One client transaction across aggregates.

    @ivar transaction_id: the slice manager's identifier for it.
    @ivar slice_urn: its slice.
    @ivar members: the aggregates whose transaction it names, by URN.
    @ivar keep_until: when it may be forgotten.
    """

    transaction_id: str
    slice_urn: str
    members: Members
    keep_until: float

    __hash__ = None  # type: ignore[assignment]

    @property
    def identified(self) -> dict[str, str]:
        """The members that answered an identifier, as C{geniam_transactions} says them."""
        return {urn: identifier for urn, identifier in self.members.items() if identifier is not None}


def identifiers_option(value: Any, known: Callable[[str], bool]) -> dict[str, str]:
    """
    The C{geniam_transactions} option: aggregate URN to that aggregate's
    transaction identifier.

    @param known: whether a URN is that of an aggregate of this slice manager.
    @raise GeniError: BADARGS unless it is a non-empty struct of strings
        naming known aggregates.
    """
    if not isinstance(value, dict) or not value:
        raise GeniError(
            GeniCode.BADARGS,
            f"option {TRANSACTIONS_OPTION} must be a struct of aggregate URN to transaction identifier, as BeginTransaction answered it",
        )
    members = {}
    for urn, identifier in value.items():
        if not isinstance(urn, str) or not known(urn):
            raise GeniError(GeniCode.BADARGS, f"option {TRANSACTIONS_OPTION} names {str(urn)[:200]!r}, not an aggregate of this slice manager")
        members[urn] = transaction_option({TRANSACTION_OPTION: identifier})
    return members  # type: ignore[return-value]


class FederatedTransactions:
    """
    The slice manager's identifiers for its clients' transactions, in memory.

    @param clock: the time, for forgetting.
    @param limit: how many are kept at most.
    @param new_id: makes an identifier.
    """

    def __init__(self, clock: IReactorTime, limit: int = DEFAULT_LIMIT, new_id: Callable[[], str] | None = None) -> None:
        self._clock = clock
        self._limit = limit
        self._new_id = new_id or (lambda: secrets.token_hex(16))
        self._by_id: dict[str, FederatedTransaction] = {}
        self._by_slice: dict[str, str] = {}
        self._soonest = float("inf")

    def __len__(self) -> int:
        self._forget()
        return len(self._by_id)

    def begun(self, slice_urn: str, members: Members, commit_by: float | None, retention: float) -> FederatedTransaction | None:
        """
        Name the transactions a Begin opened at C{members} (none: nothing
        to name, C{None}); the slice's transaction at this slice manager
        from now on.

        @param commit_by: the latest C{commit_by} the aggregates answered.
        @param retention: how long past it the aggregates remember outcomes.
        """
        self._forget()
        if not members:
            return None
        entry = FederatedTransaction(self._new_id(), slice_urn, dict(members), self._until(commit_by, retention))
        self._by_id[entry.transaction_id] = entry
        self._by_slice[urn_key(slice_urn)] = entry.transaction_id
        self._soonest = min(self._soonest, entry.keep_until)
        self._bound()
        return entry

    def updated(self, slice_urn: str, members: Members, commit_by: float | None, retention: float) -> FederatedTransaction | None:
        """
        Add what an Update answered to the slice's transaction here; C{None}
        if there is none (the slice manager restarted, or the transaction
        was begun elsewhere) or an aggregate answered another identifier
        than the one recorded (the transaction there is another one): no
        identifier then stands for transactions it may not name.
        """
        self._forget()
        key = urn_key(slice_urn)
        entry = self._by_id.get(self._by_slice.get(key, ""))
        if entry is None:
            return None
        if any(urn in entry.members and entry.members[urn] != identifier for urn, identifier in members.items()):
            del self._by_slice[key]
            return None
        entry = replace(
            entry, members={**entry.members, **members}, keep_until=max(entry.keep_until, self._until(commit_by, retention))
        )
        self._by_id[entry.transaction_id] = entry
        return entry

    def find(self, transaction_id: str, slice_urn: str, method: str) -> FederatedTransaction:
        """
        The transaction C{transaction_id} of the slice.

        @raise GeniError: ERROR if this slice manager does not know it (for
            that slice), saying nothing was sent to the aggregates.
        """
        self._forget()
        entry = self._by_id.get(transaction_id)
        if entry is None or urn_key(entry.slice_urn) != urn_key(slice_urn):
            raise GeniError(
                GeniCode.ERROR,
                f"this slice manager knows no transaction {transaction_id} of slice {slice_urn} (it restarted, or the"
                f" transaction ended long ago): {method} was sent to no aggregate; name each aggregate's own"
                f" transaction with the option {TRANSACTIONS_OPTION}, as BeginTransaction answered them",
            )
        return entry

    def _until(self, commit_by: float | None, retention: float) -> float:
        return max(self._clock.seconds(), commit_by or 0.0) + retention

    def _forget(self) -> None:
        now = self._clock.seconds()
        if now < self._soonest:
            return
        for identifier in [i for i, entry in self._by_id.items() if entry.keep_until <= now]:
            self._drop(identifier)
        self._soonest = min((entry.keep_until for entry in self._by_id.values()), default=float("inf"))

    def _bound(self) -> None:
        while len(self._by_id) > self._limit:
            self._drop(min(self._by_id.values(), key=lambda entry: entry.keep_until).transaction_id)

    def _drop(self, identifier: str) -> None:
        entry = self._by_id.pop(identifier)
        key = urn_key(entry.slice_urn)
        if self._by_slice.get(key) == identifier:
            del self._by_slice[key]


def transaction_id(begun: PeerOutcome) -> str | None:
    """The transaction identifier a Begin answered (C{geniam_transaction}), or None."""
    value = begun.value if begun.ok else None
    found = value.get(TRANSACTION_OPTION) if isinstance(value, dict) else None
    return found if isinstance(found, str) and found else None


def naming(options: dict[str, Any], identifier: str | None) -> dict[str, Any]:
    """The options of a Commit or Abort: C{options}, naming the transaction when its aggregate answered an identifier."""
    return dict(options, **{TRANSACTION_OPTION: identifier}) if identifier is not None else options


def advertised_retention(version: Any) -> float:
    """The C{outcome_retention} an aggregate's GetVersion advertises, or the default."""
    extension = version.get(TRANSACTIONS_EXTENSION) if isinstance(version, dict) else None
    value = extension.get(RETENTION_FIELD) if isinstance(extension, dict) else None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0 else DEFAULT_OUTCOME_RETENTION
