"""
Tests for L{geniam.managers.fedtransactions}: the slice manager's
identifiers of its clients' transactions across aggregates, on a
L{Clock} (the loopback tests in L{tests.loopback.test_twophase} use them
through a real slice manager).
"""

from __future__ import annotations

from itertools import count

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from geniam.errors import GeniCode, GeniError
from geniam.managers.fedtransactions import (
    FederatedTransactions,
    advertised_retention,
    identifiers_option,
)
from geniam.managers.transactions import DEFAULT_OUTCOME_RETENTION

SLICE = "urn:publicid:IDN+geni.example.net+slice+exp1"
OTHER = "urn:publicid:IDN+geni.example.net+slice+exp2"
AM1 = "urn:publicid:IDN+am1.example+authority+am"
AM2 = "urn:publicid:IDN+am2.example+authority+am"
AM3 = "urn:publicid:IDN+am3.example+authority+am"
RETENTION = 3600.0


class FederatedTransactionsTests(SynchronousTestCase):
    """Naming, finding, merging and forgetting."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000.0)
        numbers = count(1)
        self.named = FederatedTransactions(self.clock, limit=3, new_id=lambda: f"f{next(numbers)}")

    def find_error(self, identifier: str, slice_urn: str = SLICE) -> GeniError:
        error = self.assertRaises(GeniError, self.named.find, identifier, slice_urn, "CommitTransaction")
        self.assertEqual(error.code, GeniCode.ERROR)
        return error

    def test_begun_and_found(self) -> None:
        """A Begin's members are found by the new identifier, for that slice only; an aggregate's identifier is not one."""
        entry = self.named.begun(SLICE, {AM1: "a1", AM2: None}, 1600.0, RETENTION)
        assert entry is not None
        self.assertEqual(entry.transaction_id, "f1")
        found = self.named.find("f1", SLICE, "CommitTransaction")
        self.assertEqual(found.members, {AM1: "a1", AM2: None})
        self.assertEqual(found.identified, {AM1: "a1"})
        error = self.find_error("f1", OTHER)
        self.assertIn("was sent to no aggregate", error.output)
        self.assertIn("geniam_transactions", error.output)
        self.find_error("a1")

    def test_nothing_begun(self) -> None:
        """A Begin that opened nothing anywhere gets no identifier."""
        self.assertIsNone(self.named.begun(SLICE, {}, None, RETENTION))
        self.assertEqual(len(self.named), 0)

    def test_forgotten_after_commit_by_and_retention(self) -> None:
        """An identifier is known until the latest commit_by plus the retention, then ERROR."""
        self.named.begun(SLICE, {AM1: "a1"}, 1600.0, RETENTION)
        self.clock.advance(600.0 + RETENTION - 1)
        self.named.find("f1", SLICE, "AbortTransaction")
        self.clock.advance(1)
        self.find_error("f1")
        self.assertIsNone(self.named.updated(SLICE, {AM1: "a1"}, None, RETENTION))

    def test_update_adds_and_extends(self) -> None:
        """An Update adds the aggregates it reached to the slice's Begin, and keeps it until its later commit_by plus retention."""
        self.named.begun(SLICE, {AM1: "a1"}, 1600.0, RETENTION)
        self.clock.advance(500.0)
        entry = self.named.updated(SLICE, {AM1: "a1", AM3: "c3"}, 2100.0, RETENTION)
        assert entry is not None
        self.assertEqual((entry.transaction_id, entry.members), ("f1", {AM1: "a1", AM3: "c3"}))
        self.clock.advance(600.0 + RETENTION - 1)
        self.assertEqual(self.named.find("f1", SLICE, "CommitTransaction").members, {AM1: "a1", AM3: "c3"})

    def test_update_of_another_transaction(self) -> None:
        """
        An Update answered by another transaction at a member (begun
        elsewhere) gets no identifier, nor do later ones; the old
        identifier still names only what it named.
        """
        self.named.begun(SLICE, {AM1: "a1", AM2: "b2"}, 1600.0, RETENTION)
        self.assertIsNone(self.named.updated(SLICE, {AM1: "a9"}, 1600.0, RETENTION))
        self.assertIsNone(self.named.updated(SLICE, {AM2: "b2"}, 1600.0, RETENTION))
        self.assertEqual(self.named.find("f1", SLICE, "CommitTransaction").members, {AM1: "a1", AM2: "b2"})

    def test_update_without_begin_here(self) -> None:
        """An Update of a slice whose Begin this slice manager did not see gets no identifier (it could not name every aggregate)."""
        self.named.begun(OTHER, {AM1: "a1"}, 1600.0, RETENTION)
        self.assertIsNone(self.named.updated(SLICE, {AM1: "x1"}, 1600.0, RETENTION))

    def test_a_new_begin_takes_over_the_slice(self) -> None:
        """A second Begin of the slice gets a new identifier; Updates then add to it; the first stays found until forgotten."""
        self.named.begun(SLICE, {AM1: "a1"}, 1600.0, RETENTION)
        self.named.begun(SLICE, {AM1: "a2"}, 1600.0, RETENTION)
        entry = self.named.updated(SLICE, {AM1: "a2", AM2: "b2"}, 1600.0, RETENTION)
        assert entry is not None
        self.assertEqual(entry.transaction_id, "f2")
        self.assertEqual(self.named.find("f1", SLICE, "CommitTransaction").members, {AM1: "a1"})

    def test_bounded(self) -> None:
        """Past the limit the entry due to be forgotten first goes."""
        for commit_by in (1900.0, 1700.0, 1800.0, 2000.0):
            self.named.begun(SLICE, {AM1: str(commit_by)}, commit_by, RETENTION)
        self.assertEqual(len(self.named), 3)
        self.find_error("f2")
        for kept in ("f1", "f3", "f4"):
            self.named.find(kept, SLICE, "CommitTransaction")


class OptionTests(SynchronousTestCase):
    """The geniam_transactions option and the advertised retention."""

    def test_identifiers_option(self) -> None:
        """A struct of known aggregate URNs to identifiers is taken; anything else is BADARGS."""
        known = {AM1, AM2}.__contains__
        self.assertEqual(identifiers_option({AM1: "a1", AM2: "b2"}, known), {AM1: "a1", AM2: "b2"})
        for bad in ({}, [AM1], "a1", {AM3: "c3"}, {AM1: ""}, {AM1: 7}, {AM1: "x" * 200}):
            error = self.assertRaises(GeniError, identifiers_option, bad, known)
            self.assertEqual(error.code, GeniCode.BADARGS)

    def test_advertised_retention(self) -> None:
        """The outcome_retention an aggregate advertises, or the default when it advertises none."""
        self.assertEqual(advertised_retention({"geniam_transactions": {"outcome_retention": 60}}), 60.0)
        for version in (None, {}, {"geniam_transactions": {}}, {"geniam_transactions": {"outcome_retention": "x"}}):
            self.assertEqual(advertised_retention(version), DEFAULT_OUTCOME_RETENTION)
