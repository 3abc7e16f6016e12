"""
Two-phase allocation through the slice manager, end to end: real
aggregate managers (TLS XML-RPC, SQLite) behind a real slice manager on
127.0.0.1, one L{Clock} for all of them, and gates holding an
aggregate's transaction calls where a test needs to look in between.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from twisted.internet.defer import Deferred

from geniam.booking.transactions import is_transaction_hold
from geniam.client import value_of
from geniam.demo import federated_request
from geniam.errors import GeniCode, GeniError
from geniam.managers.twophase import ALLOCATE_THEN_UNDO, PATH_FIELD, TWO_PHASE, UNCERTAIN_FIELD
from geniam.rspec.request import build_request
from geniam.timeutil import format_time
from geniam.managers.slice import SliceManager
from tests.loopback.test_sm_faults import HOUR, SETTINGS, FaultHarness, Gate, Signals

def watch_rounds(manager: SliceManager, method: str) -> Signals:
    """Signals C{"ended"} each time a round of calls of C{method} by the slice manager has ended and been taken in."""
    signals = Signals()
    run = manager.fanout.run

    def watched(calls: Any, *args: Any, **kwargs: Any) -> Any:
        d = run(calls, *args, **kwargs)
        if calls and calls[0].method == method:
            d.addBoth(lambda result: (signals.fire("ended"), result)[1])
        return d

    manager.fanout.run = watched  # type: ignore[method-assign]
    return signals


WATCHED = ("Allocate", "Status", "BeginTransaction", "CommitTransaction", "AbortTransaction", "Delete")


def anonymous(manager: Any) -> Any:
    """Make an aggregate's Begin answer no transaction identifier, as another implementation would; C{manager}."""
    begin = manager.BeginTransaction

    async def without_identifier(*args: Any) -> Any:
        struct = await begin(*args)
        struct["value"].pop("geniam_transaction", None)
        return struct

    manager.BeginTransaction = without_identifier
    return manager


class TwoPhaseAllocationTests(FaultHarness):
    """A multi-island Allocate through the slice manager, on the transaction methods."""

    async def started(self) -> None:
        await self.start()
        self.watch = {name: Gate(self.fed.aggregates[name].manager, WATCHED) for name in self.gates}

    def other(self, name: str, slice_name: str = "exp2") -> Any:
        """alice's client straight to aggregate C{name}, for another slice."""
        fed = self.fed
        return fed.client("alice", name, (fed.user_credential("alice"), fed.slice_credential(slice_name, "alice")))

    async def allocate(self) -> Any:
        """alice's Allocate of both islands through the slice manager, as the raw return struct."""
        client = self.client()
        return await client.call("Allocate", self.slice_urn, client.credentials, self.request(), {})

    async def test_all_begins_succeed(self) -> None:
        """Both aggregates get Begin then Commit (never Allocate); both islands are booked; the answer names the path."""
        await self.started()
        struct = await self.allocate()
        self.assertEqual(struct["code"]["geni_code"], 0, struct.get("output"))
        self.assertEqual(struct[PATH_FIELD], TWO_PHASE)
        self.assertIn(TWO_PHASE, struct["output"])
        self.assertEqual(len(struct["value"]["geni_slivers"]), 2)
        for name in self.gates:
            self.assertEqual(self.watch[name].carried_out, ["Status", "BeginTransaction", "CommitTransaction"])
            bookings = await self.live(name)
            self.assertEqual([b.allocation_state.value for b in bookings], ["allocated"])
        # The slice now holds slivers: a further Allocate adds to them with allocate-then-undo.
        now = self.clock.seconds()
        client = self.client()
        again = await client.call("Allocate", self.slice_urn, client.credentials, self.request_at(now + 3 * HOUR), {})
        self.assertEqual(again["code"]["geni_code"], 0, again.get("output"))
        self.assertEqual(again[PATH_FIELD], ALLOCATE_THEN_UNDO)
        for name in self.gates:
            self.assertEqual(len(await self.live(name)), 2)

    def request_at(self, start: float) -> str:
        return federated_request(start, start + HOUR, self.urns)

    async def test_aggregate_without_the_extension(self) -> None:
        """When one aggregate does not advertise geniam_transactions, both get plain Allocate (allocate-then-undo)."""
        await self.started()
        record = next(r for r in self.sm.manager.records if r.urn == self.urns[1])
        assert record.version is not None
        del record.version["geniam_transactions"]
        struct = await self.allocate()
        self.assertEqual(struct["code"]["geni_code"], 0, struct.get("output"))
        self.assertEqual(struct[PATH_FIELD], ALLOCATE_THEN_UNDO)
        self.assertIn(ALLOCATE_THEN_UNDO, struct["output"])
        for name in self.gates:
            self.assertEqual(self.watch[name].carried_out, ["Allocate"])

    async def test_best_effort_allocates_plainly(self) -> None:
        """geni_best_effort keeps the parts that succeed, so it takes the allocate-then-undo path."""
        await self.started()
        client = self.client()
        struct = await client.call("Allocate", self.slice_urn, client.credentials, self.request(), {"geni_best_effort": True})
        self.assertEqual(struct[PATH_FIELD], ALLOCATE_THEN_UNDO)
        for name in self.gates:
            self.assertEqual(self.watch[name].carried_out, ["Allocate"])

    async def test_one_begin_refused(self) -> None:
        """
        am2's island is taken by another slice: am1 only ever holds the
        slot (other slices see it neither booked nor free to take), then
        the transaction there is aborted; the answer is am2's UNAVAILABLE
        and nothing is booked anywhere.
        """
        await self.started()
        now = self.clock.seconds()
        slot = (now + HOUR, now + 2 * HOUR)
        value_of(await self.other("am2").allocate(self.fed.slice_urn("exp2"), build_request(*slot, am_urn=self.urns[1])))
        gate = Gate(self.fed.aggregates["am2"].manager, ("BeginTransaction",))
        gate.close()
        held = gate.held("BeginTransaction")
        begun = self.watch["am1"].done("BeginTransaction")
        attempt = Deferred.fromCoroutine(self.allocate())
        await held
        await begun
        # Mid-way: am1 holds the slot for exp1, visible to nobody as a booking.
        during = await self.live("am1")
        self.assertEqual(len(during), 1)
        self.assertTrue(is_transaction_hold(during[0]))
        third = self.other("am1", "exp3")
        advertisement = value_of(await third.list_resources())
        self.assertNotIn(format_time(slot[0]), advertisement)
        await self.assertGeniError(GeniCode.UNAVAILABLE, third.allocate(self.fed.slice_urn("exp3"), build_request(*slot, am_urn=self.urns[0])))
        gate.open()
        struct = await attempt
        self.assertEqual(struct["code"]["geni_code"], int(GeniCode.UNAVAILABLE), struct.get("output"))
        self.assertEqual(struct[PATH_FIELD], TWO_PHASE)
        # am1 saw the slice manager's Status, Begin and Abort (and exp3's refused Allocate): no Commit, no Allocate of exp1.
        self.assertEqual(self.watch["am1"].carried_out, ["Status", "BeginTransaction", "Allocate", "AbortTransaction"])
        self.assertEqual(await self.live("am1"), [])
        self.assertEqual(await self.live("am2"), [])
        # The slot on am1 is free again for another slice.
        value_of(await third.allocate(self.fed.slice_urn("exp3"), build_request(*slot, am_urn=self.urns[0])))

    async def test_one_aggregate_dead(self) -> None:
        """am2 is stopped: its Begin fails, am1's transaction is aborted, nothing is booked at am1."""
        await self.started()
        await self.fed.stop_aggregate("am2")
        struct = await self.allocate()
        self.assertNotEqual(struct["code"]["geni_code"], 0)
        self.assertEqual(struct[PATH_FIELD], TWO_PHASE)
        self.assertEqual(self.watch["am1"].carried_out, ["Status", "BeginTransaction", "AbortTransaction"])
        self.assertEqual(await self.live("am1"), [])
        self.assertIn("aborted", struct["output"])

    async def am2_gone_after_begin(self) -> tuple[Deferred[Any], Gate]:
        """
        Start an Allocate of both islands with am1's Begin held, and stop
        am2 once it has answered its Begin; the Allocate, and the gate
        that releases am1's Begin.
        """
        gate = Gate(self.fed.aggregates["am1"].manager, ("BeginTransaction",))
        gate.close()
        held = gate.held("BeginTransaction")
        am2_begun = self.replies.next((self.url("am2"), "BeginTransaction"))
        attempt = Deferred.fromCoroutine(self.allocate())
        await held
        await am2_begun
        await self.fed.stop_aggregate("am2")
        return attempt, gate

    async def test_commit_retried_until_the_aggregate_is_back(self) -> None:
        """
        am2 goes away between its Begin and the Commit: am1 commits, am2's
        Commit is reported failed and retried on the clock; once am2 is
        back (its transaction kept in its database), the retry commits
        there too and the Allocate succeeds with both islands booked.
        """
        await self.started()
        attempt, gate = await self.am2_gone_after_begin()
        rounds = watch_rounds(self.sm.manager, "CommitTransaction")
        ended = rounds.next("ended")
        gate.open()
        await ended
        self.assertFalse(attempt.called)
        self.assertEqual([b.allocation_state.value for b in await self.live("am1")], ["allocated"])
        await self.fed.start_aggregate("am2")
        self.assertTrue(all(is_transaction_hold(b) for b in await self.live("am2")))
        am2_committed = self.replies.next((self.url("am2"), "CommitTransaction"))
        self.clock.advance(self.sm.manager.settings.commit_retry)
        await am2_committed
        struct = await attempt
        self.assertEqual(struct["code"]["geni_code"], 0, struct.get("output"))
        self.assertEqual(struct[PATH_FIELD], TWO_PHASE)
        for name in self.gates:
            self.assertEqual([b.allocation_state.value for b in await self.live(name)], ["allocated"])

    async def test_commit_given_up_rolls_back(self) -> None:
        """
        am2 goes away between its Begin and the Commit and stays away: its
        Commit is retried until the call's deadline, then am1's committed
        part is undone; the answer reports am2's failure and the undo.
        """
        await self.started()
        manager = self.sm.manager
        manager.settings = replace(manager.settings, deadline=4 * manager.settings.commit_retry)
        attempt, gate = await self.am2_gone_after_begin()
        rounds = watch_rounds(manager, "CommitTransaction")
        ended = rounds.next("ended")
        gate.open()
        # Commits at 0, 5, 10 and 15 s of a 20 s deadline: a fifth would end past it.
        for _ in range(3):
            await ended
            ended = rounds.next("ended")
            self.clock.advance(manager.settings.commit_retry)
        await ended
        struct = await attempt
        self.assertNotEqual(struct["code"]["geni_code"], 0)
        self.assertEqual(struct[PATH_FIELD], TWO_PHASE)
        self.assertEqual(struct["geniam_undo"]["done"], [self.urns[0]])
        self.assertEqual(await self.live("am1"), [])

    async def first_commit_times_out(self, retried_at_once: bool = False) -> tuple[Deferred[Any], Gate]:
        """
        Start an Allocate of both islands with am2's Commits held, and let
        the slice manager's first Commit to am2 time out (am2 answers the
        hang probe, so it is slow, not hung); fire once that round of
        Commits ended (or, with C{retried_at_once}, once the retry made at
        once is held too), with the Allocate and the gate.
        """
        gate = Gate(self.fed.aggregates["am2"].manager, ("CommitTransaction",))
        gate.close()
        held = gate.held("CommitTransaction")
        rounds = watch_rounds(self.sm.manager, "CommitTransaction")
        ended = rounds.next("ended")
        am1_committed = self.replies.next((self.url("am1"), "CommitTransaction"))
        attempt = Deferred.fromCoroutine(self.allocate())
        await held
        await am1_committed
        probed = self.replies.next((self.url("am2"), "GetVersion"))
        self.clock.advance(SETTINGS.hung_after)
        await probed
        retried = gate.held("CommitTransaction")
        self.clock.advance(SETTINGS.peer_timeout - SETTINGS.hung_after)
        await (retried if retried_at_once else ended)
        self.assertEqual(gate.carried_out, [])
        return attempt, gate

    async def test_lost_commit_answer(self) -> None:
        """
        am2 carries out the first Commit but its answer is lost (the slice
        manager's call timed out): the retry names the transaction, am2
        answers the commit again, and the Allocate succeeds with nothing
        rolled back (and nothing read back).
        """
        await self.started()
        described = Gate(self.fed.aggregates["am2"].manager, ("Describe",))
        await self.lost_commit_answer()
        self.assertEqual(described.carried_out, [])

    async def test_lost_commit_answer_without_identifiers(self) -> None:
        """
        The same with an am2 that answers Begin without a transaction
        identifier (as another implementation would): its retry is ERROR
        (no transaction open), so the slice manager reads the slice there
        with Describe, finds the part committed, and the Allocate succeeds.
        """
        await self.started()
        manager = anonymous(self.fed.aggregates["am2"].manager)
        described = Gate(manager, ("Describe",))
        await self.lost_commit_answer()
        self.assertEqual(described.carried_out, ["Describe"])

    async def test_outcome_still_unknown(self) -> None:
        """
        am2 answers Begin without an identifier, carries out the first
        Commit with its answer lost, and cannot be read back (its Describe
        fails every time): every retry is ERROR (no transaction open), so
        the outcome stays unknown until the deadline. The answer keeps
        TIMEDOUT, names am2 in geniam_uncertain and in output, and nothing
        is rolled back on its account: am1's part stays committed.
        """
        await self.started()
        manager = anonymous(self.fed.aggregates["am2"].manager)
        describes: list[Any] = []

        async def unreadable(*args: Any) -> Any:
            describes.append(args)
            raise GeniError(GeniCode.BUSY, "the island's database is busy")

        manager.Describe = unreadable
        attempt, gate = await self.first_commit_times_out()
        carried_out = gate.done("CommitTransaction")
        gate.open()
        await carried_out
        rounds = watch_rounds(self.sm.manager, "Describe")
        # Retries at 35, 40, 45, 50 and 55 s of the 60 s deadline, each read back; at 55 s no further
        # one fits, so one more follows at once.
        retry = self.sm.manager.settings.commit_retry
        for _ in range(int((SETTINGS.deadline - SETTINGS.peer_timeout) / retry) - 1):
            ended = rounds.next("ended")
            self.clock.advance(retry)
            await ended
        struct = await attempt
        self.assertEqual(struct["code"]["geni_code"], int(GeniCode.TIMEDOUT), struct.get("output"))
        self.assertEqual(struct[PATH_FIELD], TWO_PHASE)
        self.assertEqual(struct[UNCERTAIN_FIELD], [self.urns[1]])
        self.assertIn(f"the outcome of the Commit at {self.urns[1]} could not be learned", struct["output"])
        self.assertIn("could not be read back", struct["output"])
        self.assertNotIn("geniam_undo", struct)
        self.assertEqual(self.sm.manager.undo.pending, [])
        self.assertEqual(len(describes), int((SETTINGS.deadline - SETTINGS.peer_timeout) / retry))
        self.assertEqual(gate.carried_out, ["CommitTransaction"] * (1 + len(describes)))
        for name in self.gates:
            self.assertEqual([b.allocation_state.value for b in await self.live(name)], ["allocated"])
            self.assertNotIn("AbortTransaction", self.watch[name].carried_out)
            self.assertNotIn("Delete", self.watch[name].carried_out)

    async def lost_commit_answer(self) -> None:
        """am2's first Commit is carried out with its answer lost; the Allocate then succeeds, nothing rolled back."""
        attempt, gate = await self.first_commit_times_out()
        carried_out = gate.done("CommitTransaction")
        gate.open()
        await carried_out
        self.assertEqual([b.allocation_state.value for b in await self.live("am2")], ["allocated"])
        self.assertNoResult(attempt)
        self.clock.advance(self.sm.manager.settings.commit_retry)
        struct = await attempt
        self.assertEqual(struct["code"]["geni_code"], 0, struct.get("output"))
        self.assertEqual(struct[PATH_FIELD], TWO_PHASE)
        self.assertNotIn("geniam_undo", struct)
        self.assertNotIn(UNCERTAIN_FIELD, struct)
        self.assertEqual(len(struct["value"]["geni_slivers"]), 2)
        self.assertEqual(gate.carried_out, ["CommitTransaction", "CommitTransaction"])
        for name in self.gates:
            self.assertEqual([b.allocation_state.value for b in await self.live(name)], ["allocated"])
            self.assertNotIn("AbortTransaction", self.watch[name].carried_out)
        self.assertEqual(self.sm.manager.undo.pending, [])

    async def test_commit_by_passed_before_the_retry(self) -> None:
        """
        am2's first Commit is held past its commit_by (am2 aborts by itself)
        and its call times out: the retry, made at once since commit_by
        passed, names the transaction and am2 says it was aborted; am1's
        committed part is rolled back, and nothing is booked anywhere.
        """
        await self.started()
        self.fed.aggregates["am2"].manager.transactions.ttl = SETTINGS.peer_timeout / 2
        attempt, gate = await self.first_commit_times_out(retried_at_once=True)
        gate.open()
        struct = await attempt
        self.assertEqual(struct["code"]["geni_code"], int(GeniCode.ERROR), struct.get("output"))
        self.assertEqual(struct[PATH_FIELD], TWO_PHASE)
        self.assertIn("was aborted", struct["output"])
        self.assertEqual(struct["geniam_undo"]["done"], [self.urns[0]])
        self.assertNotIn(UNCERTAIN_FIELD, struct)
        for name in self.gates:
            self.assertEqual(await self.live(name), [])

    async def assertGeniError(self, code: GeniCode, d: Deferred[Any]) -> None:
        """C{d} fires with a return struct of C{code}."""
        struct = await d
        self.assertEqual(struct["code"]["geni_code"], int(code), struct.get("output"))


class ServedTransactionTests(FaultHarness):
    """The four methods through the slice manager, as a client's own transaction across the federation."""

    async def test_begin_commit_abort(self) -> None:
        """Begin reaches both islands with the earliest commit_by; Commit books both; Abort of a new one restores."""
        await self.start()
        client = self.client()
        begun = value_of(await client.begin_transaction(self.slice_urn, self.request()))
        self.assertEqual(len(begun["geni_slivers"]), 2)
        self.assertIn("commit_by", begun)
        for name in self.gates:
            self.assertTrue(all(is_transaction_hold(b) for b in await self.live(name)))
        version = value_of(await client.get_version())
        self.assertIn("geniam_transactions", version)
        committed = value_of(await client.commit_transaction(self.slice_urn))
        self.assertEqual(len(committed["geni_slivers"]), 2)
        for name in self.gates:
            self.assertEqual([b.allocation_state.value for b in await self.live(name)], ["allocated"])
        now = self.clock.seconds()
        value_of(await client.begin_transaction(self.slice_urn, self.request_later(now)))
        self.assertIs(value_of(await client.abort_transaction(self.slice_urn)), True)
        for name in self.gates:
            self.assertEqual([b.allocation_state.value for b in await self.live(name)], ["allocated"])

    def request_later(self, now: float) -> str:
        return federated_request(now + 5 * HOUR, now + 6 * HOUR, self.urns)

    async def begun(self) -> tuple[Any, dict[str, Any], dict[str, Gate]]:
        """alice's Begin of both islands through the slice manager: her client, the answer, and a gate on each aggregate's Commit and Abort."""
        await self.start()
        gates = {name: Gate(self.fed.aggregates[name].manager, ("CommitTransaction", "AbortTransaction")) for name in self.gates}
        client = self.client()
        begun = value_of(await client.begin_transaction(self.slice_urn, self.request()))
        return client, begun, gates

    async def own_identifiers(self) -> dict[str, str]:
        """Each aggregate's identifier of the slice's open transaction there, from its store, by aggregate URN."""
        found = {}
        for name, urn in zip(self.gates, self.urns):
            transaction = await self.fed.aggregates[name].manager.transactions.island.transaction(self.slice_urn)
            found[urn] = transaction.transaction_id
        return found

    async def test_commit_retried_with_the_federation_identifier(self) -> None:
        """
        Begin through the slice manager answers one identifier of its own
        and each aggregate's; a Commit naming the former commits at both
        (each sent its own identifier), the same Commit again answers the
        same slivers, and an aggregate's identifier given to the slice
        manager is ERROR without reaching any aggregate.
        """
        client, begun, gates = await self.begun()
        own = await self.own_identifiers()
        self.assertEqual(begun["geniam_transactions"], own)
        federation = begun["geniam_transaction"]
        self.assertNotIn(federation, own.values())
        committed = value_of(await client.commit_transaction(self.slice_urn, geniam_transaction=federation))
        self.assertEqual((committed["geniam_transaction"], committed["geniam_transactions"]), (federation, own))
        for name in self.gates:
            self.assertEqual([b.allocation_state.value for b in await self.live(name)], ["allocated"])
        again = value_of(await client.commit_transaction(self.slice_urn, geniam_transaction=federation))
        self.assertEqual(
            sorted(s["geni_sliver_urn"] for s in again["geni_slivers"]),
            sorted(s["geni_sliver_urn"] for s in committed["geni_slivers"]),
        )
        self.assertEqual(len(again["geni_slivers"]), 2)
        struct = await client.commit_transaction(self.slice_urn, geniam_transaction=own[self.urns[0]])
        self.assertEqual(struct["code"]["geni_code"], int(GeniCode.ERROR), struct.get("output"))
        self.assertIn("geniam_transactions", struct["output"])
        for gate in gates.values():
            self.assertEqual(gate.carried_out, ["CommitTransaction", "CommitTransaction"])
        # Without the option, as before: no transaction open anywhere, ERROR.
        struct = await client.commit_transaction(self.slice_urn)
        self.assertEqual(struct["code"]["geni_code"], int(GeniCode.ERROR), struct.get("output"))

    async def test_abort_retried_with_the_federation_identifier(self) -> None:
        """An Abort naming the slice manager's identifier aborts at both and answers true, again when retried; a Commit of it then is ERROR."""
        client, begun, gates = await self.begun()
        federation = begun["geniam_transaction"]
        self.assertIs(value_of(await client.abort_transaction(self.slice_urn, geniam_transaction=federation)), True)
        for name in self.gates:
            self.assertEqual(await self.live(name), [])
        self.assertIs(value_of(await client.abort_transaction(self.slice_urn, geniam_transaction=federation)), True)
        struct = await client.commit_transaction(self.slice_urn, geniam_transaction=federation)
        self.assertEqual(struct["code"]["geni_code"], int(GeniCode.ERROR), struct.get("output"))
        self.assertIn("was aborted", struct["output"])
        for name in self.gates:
            self.assertEqual(await self.live(name), [])

    async def test_partial_begin_aborted_by_identifier(self) -> None:
        """
        am2's slot is taken by another slice: the Begin through the slice
        manager fails there, yet its answer names am1's transaction; an
        Abort naming the slice manager's identifier goes to am1 alone and
        frees its slot.
        """
        await self.start()
        now = self.clock.seconds()
        other = self.fed.client("alice", "am2", (self.fed.user_credential("alice"), self.fed.slice_credential("exp2", "alice")))
        value_of(await other.allocate(self.fed.slice_urn("exp2"), build_request(now + HOUR, now + 2 * HOUR, am_urn=self.urns[1])))
        gates = {name: Gate(self.fed.aggregates[name].manager, ("AbortTransaction",)) for name in self.gates}
        client = self.client()
        struct = await client.begin_transaction(self.slice_urn, self.request())
        self.assertEqual(struct["code"]["geni_code"], int(GeniCode.UNAVAILABLE), struct.get("output"))
        own = await self.fed.aggregates["am1"].manager.transactions.island.transaction(self.slice_urn)
        self.assertEqual(struct["value"]["geniam_transactions"], {self.urns[0]: own.transaction_id})
        self.assertIs(value_of(await client.abort_transaction(self.slice_urn, geniam_transaction=struct["value"]["geniam_transaction"])), True)
        self.assertEqual((gates["am1"].carried_out, gates["am2"].carried_out), (["AbortTransaction"], []))
        self.assertEqual(await self.live("am1"), [])

    async def test_update_keeps_the_identifier(self) -> None:
        """Update through the slice manager answers the identifier of the slice's Begin; committing it commits the updated state."""
        client, begun, _ = await self.begun()
        now = self.clock.seconds()
        updated = value_of(await client.update_transaction(self.slice_urn, self.request_later(now)))
        self.assertEqual((updated["geniam_transaction"], updated["geniam_transactions"]), (begun["geniam_transaction"], begun["geniam_transactions"]))
        value_of(await client.commit_transaction(self.slice_urn, geniam_transaction=updated["geniam_transaction"]))
        for name in self.gates:
            self.assertEqual([b.slot.start for b in await self.live(name)], [int(now + 5 * HOUR)])

    async def test_slice_manager_restarted(self) -> None:
        """
        After the slice manager restarts its identifier is unknown: a
        Commit naming it is ERROR and reaches no aggregate (both
        transactions stay open); a Commit naming the aggregates' own
        identifiers (geniam_transactions) commits at both, and again.
        """
        _, begun, gates = await self.begun()
        await self.sm.stopService()
        await self.run_sm(self.build_sm())
        client = self.client()
        struct = await client.commit_transaction(self.slice_urn, geniam_transaction=begun["geniam_transaction"])
        self.assertEqual(struct["code"]["geni_code"], int(GeniCode.ERROR), struct.get("output"))
        self.assertIn("knows no transaction", struct["output"])
        for name in self.gates:
            self.assertEqual(gates[name].carried_out, [])
            self.assertTrue(all(is_transaction_hold(b) for b in await self.live(name)))
        named = begun["geniam_transactions"]
        for _ in range(2):
            committed = value_of(await client.commit_transaction(self.slice_urn, geniam_transactions=named))
            self.assertEqual(len(committed["geni_slivers"]), 2)
            self.assertNotIn("geniam_transaction", committed)
        for name in self.gates:
            self.assertEqual([b.allocation_state.value for b in await self.live(name)], ["allocated"])
        await self.assertBadArgs(client.commit_transaction(self.slice_urn, geniam_transactions={"urn:publicid:IDN+elsewhere+authority+am": "x"}))
        await self.assertBadArgs(client.commit_transaction(self.slice_urn, geniam_transactions=named, geniam_transaction="x"))

    async def assertBadArgs(self, d: Deferred[Any]) -> None:
        """C{d} fires with a BADARGS return struct."""
        struct = await d
        self.assertEqual(struct["code"]["geni_code"], int(GeniCode.BADARGS), struct.get("output"))
