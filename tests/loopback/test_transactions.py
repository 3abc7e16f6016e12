"""
PG-A transactions through a real aggregate manager: TLS with client
certificates on 127.0.0.1, signed credentials, SQLite, and a
L{task.Clock} for C{commit_by}.
"""

from __future__ import annotations

from typing import Any

from geniam.client import value_of
from geniam.errors import GeniCode
from geniam.timeutil import format_time
from geniam.managers.transactions import DEFAULT_OUTCOME_RETENTION
from tests.loopback.test_am import HOUR, AggregateHarness

TTL = 180.0


class TransactionLoopbackTests(AggregateHarness):
    """The four methods over XML-RPC, and how plain calls meet an open transaction."""

    async def started(self) -> Any:
        await self.start(transaction_ttl=TTL)
        return self.alice()

    async def test_advertised(self) -> None:
        """GetVersion names the four methods and the transaction lifetime as a geniam extension."""
        client = await self.started()
        version = value_of(await client.get_version())
        self.assertEqual(
            version["geniam_transactions"],
            {
                "methods": ["BeginTransaction", "UpdateTransaction", "CommitTransaction", "AbortTransaction"],
                "ttl": int(TTL),
                "outcome_retention": int(DEFAULT_OUTCOME_RETENTION),
            },
        )

    async def test_begin_update_commit(self) -> None:
        """Begin answers like Allocate plus commit_by; nothing shows until Commit, which allocates the last desired slot."""
        client = await self.started()
        slice_urn = self.fed.slice_urn("exp1")
        now = self.clock.seconds()
        begun = value_of(await client.begin_transaction(slice_urn, self.request(now + HOUR, now + 2 * HOUR)))
        self.assertEqual(begun["commit_by"], format_time(now + TTL))
        self.assertEqual([s["geni_allocation_status"] for s in begun["geni_slivers"]], ["geni_allocated"])
        await self.assertGeniError(GeniCode.SEARCHFAILED, client.status([slice_urn]))
        await self.assertGeniError(GeniCode.INPROGRESS, client.begin_transaction(slice_urn, self.request(now + HOUR, now + 2 * HOUR)))
        await self.assertGeniError(GeniCode.INPROGRESS, client.allocate(slice_urn, self.request(now + 5 * HOUR, now + 6 * HOUR)))
        await self.assertGeniError(GeniCode.INPROGRESS, client.delete([slice_urn]))
        updated = value_of(await client.update_transaction(slice_urn, self.request(now + 3 * HOUR, now + 4 * HOUR)))
        committed = value_of(await client.commit_transaction(slice_urn))
        self.assertEqual(committed["geni_slivers"][0]["geniam_slot_start"], format_time(now + 3 * HOUR))
        self.assertEqual(committed["geni_slivers"][0]["geni_sliver_urn"], updated["geni_slivers"][0]["geni_sliver_urn"])
        status = value_of(await client.status([slice_urn]))
        self.assertEqual([s["geni_allocation_status"] for s in status["geni_slivers"]], ["geni_allocated"])
        await self.assertGeniError(GeniCode.ERROR, client.commit_transaction(slice_urn))
        await self.assertGeniError(GeniCode.ERROR, client.abort_transaction(slice_urn))
        await self.assertGeniError(GeniCode.ERROR, client.update_transaction(slice_urn, self.request(now + HOUR, now + 2 * HOUR)))

    async def test_competitor_refused_and_abort(self) -> None:
        """Another slice's Allocate of a held slot is UNAVAILABLE; the advertisement does not show the hold; Abort answers true and frees it."""
        client = await self.started()
        slice_urn = self.fed.slice_urn("exp1")
        now = self.clock.seconds()
        value_of(await client.begin_transaction(slice_urn, self.request(now + HOUR, now + 2 * HOUR)))
        other = self.alice("exp2")
        other_urn = self.fed.slice_urn("exp2")
        await self.assertGeniError(GeniCode.UNAVAILABLE, other.allocate(other_urn, self.request(now + HOUR, now + 2 * HOUR)))
        advertisement = value_of(await client.list_resources())
        self.assertNotIn(format_time(now + HOUR), advertisement)
        self.assertIs(value_of(await client.abort_transaction(slice_urn)), True)
        allocated = value_of(await other.allocate(other_urn, self.request(now + HOUR, now + 2 * HOUR)))
        self.assertEqual(allocated["geni_slivers"][0]["geni_allocation_status"], "geni_allocated")

    async def test_auto_abort_on_the_clock(self) -> None:
        """At commit_by the aggregate aborts by itself: Commit is then ERROR and the slot is free."""
        client = await self.started()
        slice_urn = self.fed.slice_urn("exp1")
        now = self.clock.seconds()
        value_of(await client.begin_transaction(slice_urn, self.request(now + HOUR, now + 2 * HOUR)))
        self.clock.advance(TTL)
        await self.service.transactions.island.sweep()
        await self.assertGeniError(GeniCode.ERROR, client.commit_transaction(slice_urn))
        self.assertEqual(await self.service.resource_manager.booked_slots(self._window(now)), [])

    async def test_commit_retried_with_its_identifier(self) -> None:
        """
        Begin answers the transaction's identifier; a Commit naming it
        commits, and the same Commit again answers the same manifest and
        slivers, while a Commit without it is ERROR outside a transaction.
        """
        client = await self.started()
        slice_urn = self.fed.slice_urn("exp1")
        now = self.clock.seconds()
        begun = value_of(await client.begin_transaction(slice_urn, self.request(now + HOUR, now + 2 * HOUR)))
        identifier = begun["geniam_transaction"]
        self.assertRegex(identifier, "^[0-9a-f]{32}$")
        committed = value_of(await client.commit_transaction(slice_urn, geniam_transaction=identifier))
        self.assertEqual(committed["geniam_transaction"], identifier)
        self.assertEqual(len(committed["geni_slivers"]), 1)
        again = value_of(await client.commit_transaction(slice_urn, geniam_transaction=identifier))
        self.assertEqual(again, committed)
        await self.assertGeniError(GeniCode.ERROR, client.commit_transaction(slice_urn))
        status = value_of(await client.status([slice_urn]))
        self.assertEqual(len(status["geni_slivers"]), 1)

    async def test_identifier_of_another_transaction(self) -> None:
        """A Commit naming an unknown identifier commits nothing, even with a transaction open: ERROR, the transaction stays open."""
        client = await self.started()
        slice_urn = self.fed.slice_urn("exp1")
        now = self.clock.seconds()
        value_of(await client.begin_transaction(slice_urn, self.request(now + HOUR, now + 2 * HOUR)))
        error = await self.assertGeniError(GeniCode.ERROR, client.commit_transaction(slice_urn, geniam_transaction="f" * 32))
        self.assertIn("f" * 32, error.output)
        await self.assertGeniError(GeniCode.SEARCHFAILED, client.status([slice_urn]))
        await self.assertGeniError(GeniCode.INPROGRESS, client.begin_transaction(slice_urn, self.request(now + HOUR, now + 2 * HOUR)))
        await self.assertGeniError(GeniCode.BADARGS, client.commit_transaction(slice_urn, geniam_transaction=""))
        await self.assertGeniError(GeniCode.BADARGS, client.commit_transaction(slice_urn, geniam_transaction=["x"]))

    async def test_retried_after_abort(self) -> None:
        """A Commit naming a transaction aborted at its commit_by, or by AbortTransaction, says so, when and why."""
        client = await self.started()
        slice_urn = self.fed.slice_urn("exp1")
        now = self.clock.seconds()
        first = value_of(await client.begin_transaction(slice_urn, self.request(now + HOUR, now + 2 * HOUR)))["geniam_transaction"]
        self.clock.advance(TTL)
        await self.service.transactions.island.sweep()
        struct = await client.commit_transaction(slice_urn, geniam_transaction=first)
        self.assertEqual(struct["code"]["geni_code"], int(GeniCode.ERROR))
        self.assertEqual(
            struct["value"],
            {"geniam_transaction": first, "geniam_transaction_outcome": "aborted", "aborted_at": format_time(now + TTL), "reason": "its commit_by passed"},
        )
        self.assertIn("aborted", struct["output"])
        later = self.clock.seconds()
        second = value_of(await client.begin_transaction(slice_urn, self.request(later + HOUR, later + 2 * HOUR)))["geniam_transaction"]
        self.assertNotEqual(second, first)
        self.assertIs(value_of(await client.abort_transaction(slice_urn)), True)
        struct = await client.commit_transaction(slice_urn, geniam_transaction=second)
        self.assertEqual((struct["value"]["geniam_transaction_outcome"], struct["value"]["reason"]), ("aborted", "AbortTransaction"))
        await self.assertGeniError(GeniCode.SEARCHFAILED, client.status([slice_urn]))

    async def test_abort_with_its_identifier(self) -> None:
        """
        An Abort naming an unknown identifier leaves the open transaction;
        one naming it aborts it and answers true, again when retried; an
        Abort naming a committed transaction is ERROR saying so.
        """
        client = await self.started()
        slice_urn = self.fed.slice_urn("exp1")
        now = self.clock.seconds()
        first = value_of(await client.begin_transaction(slice_urn, self.request(now + HOUR, now + 2 * HOUR)))["geniam_transaction"]
        await self.assertGeniError(GeniCode.ERROR, client.abort_transaction(slice_urn, geniam_transaction="f" * 32))
        await self.assertGeniError(GeniCode.INPROGRESS, client.begin_transaction(slice_urn, self.request(now + HOUR, now + 2 * HOUR)))
        self.assertIs(value_of(await client.abort_transaction(slice_urn, geniam_transaction=first)), True)
        self.assertIs(value_of(await client.abort_transaction(slice_urn, geniam_transaction=first)), True)
        await self.assertGeniError(GeniCode.ERROR, client.abort_transaction(slice_urn))
        second = value_of(await client.begin_transaction(slice_urn, self.request(now + HOUR, now + 2 * HOUR)))["geniam_transaction"]
        value_of(await client.commit_transaction(slice_urn, geniam_transaction=second))
        struct = await client.abort_transaction(slice_urn, geniam_transaction=second)
        self.assertEqual(struct["code"]["geni_code"], int(GeniCode.ERROR))
        self.assertEqual(
            struct["value"],
            {"geniam_transaction": second, "geniam_transaction_outcome": "committed", "committed_at": format_time(now)},
        )
        self.assertEqual(len(value_of(await client.status([slice_urn]))["geni_slivers"]), 1)
        await self.assertGeniError(GeniCode.BADARGS, client.abort_transaction(slice_urn, geniam_transaction=7))

    def _window(self, now: float) -> Any:
        from geniam.booking.values import Slot

        return Slot(now, now + 10 * HOUR)
