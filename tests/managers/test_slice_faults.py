"""
Tests for the slice manager under faults, on a L{Clock} with in-memory
aggregates: hung-peer detection, background probing, partial read
answers, the partial-advertisement cache rule, learning a late
aggregate's URN, and the reliable undo of a failed Allocate (with its
journal surviving a restart).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from geniam.errors import GeniCode
from geniam.managers.breaker import BreakerState
from geniam.managers.slice import SliceManager
from geniam.managers.undo import JOURNAL_NAME, UndoEntry, UndoJournal
from geniam.rspec.merge import read_statistics
from geniam.tap.sm import Options
from tests.folders import temp_folder
from tests.managers.slice_support import (
    ALICE,
    GENI_V3,
    SLICE,
    Caller,
    FakeAggregate,
    SliceManagerCase,
    called_by,
    make_sm,
    request,
    run,
)


class Base(SliceManagerCase):
    """Two aggregates answering after one second."""

    names = ("am1", "am2")
    settings: dict[str, Any] = {"peer_timeout": 30.0, "deadline": 60.0, "hung_after": 5.0, "probe_timeout": 2.0}

    def list_resources(self, **options: Any) -> Deferred[Any]:
        return run(self.sm.ListResources(self.called_by(self.alice, ["cred"]), {"geni_rspec_version": GENI_V3, **options}))


class HungPeerTests(Base):
    """A peer that accepts and never answers is found from the calls in flight."""

    def test_hung_peer_detected_and_calls_cut(self) -> None:
        """
        After hung_after the peer is probed; with no answer within the probe
        timeout its breaker opens and the waiting call answers at once with
        what the other aggregate said, long before the peer timeout.
        """
        self.ams[1].mode = "hang"
        d = run(self.sm.Status(self.called_by(self.alice, ["cred"]), [SLICE], {}))
        self.ams[0].slivers[SLICE] = [{"geni_sliver_urn": "urn:publicid:IDN+am1.example+sliver+x"}]
        self.clock.advance(5.0)
        self.assertEqual(self.ams[1].methods()[-1], "GetVersion")
        self.assertNoResult(d)
        self.assertEqual(self.sm.records[1].breaker.state, BreakerState.CLOSED)
        self.clock.advance(1.999)
        self.assertNoResult(d)
        self.clock.advance(0.001)
        self.assertEqual(self.sm.records[1].breaker.state, BreakerState.OPEN)
        struct = self.successResultOf(d)
        stats = {s["name"]: s for s in struct["geniam_statistics"]["aggregates"]}
        self.assertEqual(stats[self.ams[1].urn]["status"], "timeout")
        self.assertIn("found hung", stats[self.ams[1].urn]["exception"])
        self.assertEqual(stats[self.ams[1].urn]["elapsed"], 7.0)
        self.assertEqual(self.ams[1].cancelled, 2)

    def test_slow_but_alive_peer_is_not_cut(self) -> None:
        """A peer that answers GetVersion at once is slow, not hung: its call runs to the end."""
        self.ams[1].delay = 20.0
        d = self.list_resources(cached=False)
        self.clock.advance(19.0)
        self.assertNoResult(d)
        self.assertEqual(self.sm.records[1].breaker.state, BreakerState.CLOSED)
        self.clock.advance(1.0)
        struct = self.successResultOf(d)
        self.assertEqual([s["status"] for s in read_statistics(struct["value"])], ["success", "success"])


class BackgroundProbeTests(Base):
    """Open aggregates are probed on a capped, doubling schedule."""

    settings = dict(Base.settings, probe_interval=4.0, probe_max_interval=10.0)

    def test_capped_schedule_and_close_on_first_answer(self) -> None:
        """Probes at 4, then 8, then every 10 s; the first one answered closes the circuit."""
        record = self.sm.records[1]
        self.ams[1].mode = "dead"
        record.breaker.trip("for the test")
        opened = self.clock.seconds()
        times = []
        for _ in range(4):
            due = self.sm.health.next_probe_at(record)
            assert due is not None
            times.append(due - opened)
            self.clock.advance(due - self.clock.seconds())
        self.assertEqual(times, [4.0, 12.0, 22.0, 32.0])
        self.ams[1].mode = "normal"
        due = self.sm.health.next_probe_at(record)
        assert due is not None
        self.clock.pump([due - self.clock.seconds(), 1.0])
        self.assertEqual(record.breaker.state, BreakerState.CLOSED)
        self.assertIsNone(self.sm.health.next_probe_at(record))


class PartialReadTests(Base):
    """Reads answer with what the reachable aggregates said."""

    def test_describe_and_status_succeed_without_one_aggregate(self) -> None:
        """Describe and Status succeed, name the dead aggregate, and keep its failure code."""
        self.ams[0].slivers[SLICE] = [{"geni_sliver_urn": "urn:publicid:IDN+am1.example+sliver+x", "geni_allocation_status": "geni_allocated"}]
        self.ams[1].mode = "dead"
        for method, args in (("Status", ({},)), ("Describe", ({"geni_rspec_version": GENI_V3},))):
            d = run(getattr(self.sm, method)(self.called_by(self.alice, ["cred"]), [SLICE], *args))
            self.clock.advance(1)
            struct = self.successResultOf(d)
            self.assertEqual(struct["code"]["geni_code"], 0, method)
            self.assertEqual(len(struct["value"]["geni_slivers"]), 1)
            self.assertIn(self.ams[1].urn, struct["output"])
            self.assertEqual(struct["geniam_statistics"]["unreachable"], [self.ams[1].urn])
            stats = {s["name"]: s for s in struct["geniam_statistics"]["aggregates"]}
            self.assertEqual(stats[self.ams[1].urn]["code"], int(GeniCode.RPCERROR))

    def test_changing_calls_stay_all_or_nothing(self) -> None:
        """Renew with one aggregate down still fails."""
        self.ams[0].slivers[SLICE] = [{"geni_sliver_urn": "urn:publicid:IDN+am1.example+sliver+x", "geni_expires": "x"}]
        self.ams[1].mode = "dead"
        d = run(self.sm.Renew(self.called_by(self.alice, ["cred"]), [SLICE], "2030-01-01T00:00:00Z", {}))
        self.clock.advance(1)
        self.assertEqual(self.successResultOf(d)["code"]["geni_code"], GeniCode.RPCERROR)


class CacheRuleTests(Base):
    """An advertisement lacking an aggregate is cached briefly and dropped when it returns."""

    settings = dict(Base.settings, cache_ttl=60.0, partial_cache_ttl=5.0)

    def test_partial_cached_briefly_and_dropped_on_return(self) -> None:
        """The partial answer names the missing aggregate; it is fresh 5 s, and dropped once the aggregate answers a probe."""
        self.ams[1].mode = "dead"
        d = self.list_resources()
        self.clock.advance(1)
        struct = self.successResultOf(d)
        self.assertIn(self.ams[1].urn, struct["output"])
        self.assertEqual(struct["geniam_statistics"]["unreachable"], [self.ams[1].urn])
        self.assertTrue(self.successResultOf(self.list_resources())["geniam_cache"]["hit"])
        self.ams[1].mode = "normal"
        self.assertEqual(self.sm.health.probe(self.sm.records[1]).called, False)
        self.clock.advance(1)
        self.assertEqual(len(self.sm.cache), 0)
        d = self.list_resources()
        self.clock.advance(1)
        whole = self.successResultOf(d)
        self.assertFalse(whole["geniam_cache"]["hit"])
        self.assertNotIn("output", {k for k, v in whole.items() if v})
        self.clock.advance(30)
        self.assertTrue(self.successResultOf(self.list_resources())["geniam_cache"]["hit"])

    def test_partial_expires(self) -> None:
        """Without a probe, the partial entry is not served after partial_cache_ttl."""
        self.ams[1].mode = "dead"
        d = self.list_resources()
        self.clock.advance(1)
        self.successResultOf(d)
        self.clock.advance(5)
        self.assertNoResult(self.list_resources())

    def test_uncached_call_does_not_join_an_old_fetch(self) -> None:
        """cached false starts its own fetch when the running one began more than a second before."""
        self.ams[0].delay = 10.0
        first = self.list_resources()
        self.clock.advance(2)
        calls = self.ams[0].methods().count("ListResources")
        second = self.list_resources(cached=False)
        self.assertEqual(self.ams[0].methods().count("ListResources"), calls + 1)
        self.clock.advance(10)
        self.successResultOf(first)
        self.successResultOf(second)

    def test_ttl_zero_turns_the_cache_off(self) -> None:
        """--cache-ttl 0 is accepted, and with it every call fetches."""
        options = Options()
        options.parseOptions(["--aggregate", "https://am1.example:8001/", "--cache-ttl", "0"])
        self.assertEqual(options.settings().cache_ttl, 0.0)
        clock = Clock()
        sm, _ = make_sm([FakeAggregate("am1", clock)], clock, cache_ttl=0.0)
        for _ in range(2):
            struct = self.successResultOf(run(sm.ListResources(called_by(self.alice, ["c"]), {"geni_rspec_version": GENI_V3})))
            self.assertFalse(struct["geniam_cache"]["hit"])
        self.assertEqual(len(sm.cache), 0)


class LateAggregateTests(SynchronousTestCase):
    """An aggregate down when the slice manager started is learned on demand."""

    def test_first_allocate_learns_the_urn(self) -> None:
        """The Allocate naming it asks its GetVersion first, then goes through."""
        clock = Clock()
        ams = [FakeAggregate("am1", clock), FakeAggregate("am2", clock)]
        ams[1].mode = "dead"
        sm, _ = make_sm(ams, clock)
        self.assertFalse(sm.records[1].known)
        ams[1].mode = "normal"
        struct = self.successResultOf(run(sm.Allocate(called_by(Caller(ALICE), ["c"]), SLICE, request("am1", "am2"), {})))
        self.assertEqual(struct["code"]["geni_code"], 0, struct.get("output"))
        self.assertEqual(len(struct["value"]["geni_slivers"]), 2)


class UndoTests(SynchronousTestCase):
    """A multi-island Allocate with a hanging aggregate leaves no orphan."""

    def make(self, journal: Path) -> SliceManager:
        sm, _ = make_sm(
            self.ams, self.clock, undo_journal=UndoJournal(journal), new_call_id=lambda: "call-1",
            peer_timeout=10.0, deadline=20.0, hung_after=5.0, probe_timeout=2.0, undo_retry=15.0,
        )
        sm.start_background()
        self.addCleanup(sm.stop_background)
        return sm

    def setUp(self) -> None:
        self.clock = Clock()
        self.ams = [FakeAggregate("am1", self.clock), FakeAggregate("am2", self.clock)]
        self.journal = temp_folder(self) / JOURNAL_NAME

    def hang_allocate(self, sm: SliceManager) -> dict[str, Any]:
        """Allocate on both; am2 hangs (and keeps the request to carry out later)."""
        self.ams[1].mode = "hang"
        d = run(sm.Allocate(called_by(Caller(ALICE), ["c"]), SLICE, request("am1", "am2"), {}))
        self.clock.pump([1.0] * 7)
        struct: dict[str, Any] = self.successResultOf(d)
        return struct

    def carry_out_late(self) -> None:
        """am2 resumes and carries out the cancelled Allocate."""
        self.ams[1].mode = "normal"
        self.ams[1]._Allocate(SLICE, ["c"], request("am2"), {})

    def test_answer_after_undo_and_late_slivers_deleted(self) -> None:
        """am1's sliver is gone before the answer; am2's late sliver is deleted once it answers again."""
        sm = self.make(self.journal)
        struct = self.hang_allocate(sm)
        self.assertEqual(self.ams[0].slivers[SLICE], [])
        self.assertEqual(struct["geniam_undo"]["done"], [self.ams[0].urn])
        self.assertEqual([p["name"] for p in struct["geniam_undo"]["pending"]], [self.ams[1].urn])
        self.assertIn("undo still in progress", struct["output"])
        self.assertTrue(self.journal.exists())
        self.carry_out_late()
        self.assertEqual(len(self.ams[1].slivers[SLICE]), 1)
        self.clock.pump([1.0] * 60)
        self.assertEqual(self.ams[1].slivers[SLICE], [])
        self.clock.pump([1.0] * 60)
        self.assertEqual(sm.undo.pending, [])
        self.assertEqual(UndoJournal(self.journal).load(), [])

    def test_restart_mid_undo(self) -> None:
        """The slice manager stops with the undo pending; a new one resumes it from the journal."""
        sm = self.make(self.journal)
        self.hang_allocate(sm)
        sm.stop_background()
        self.assertEqual(len(UndoJournal(self.journal).load()), 1)
        self.carry_out_late()
        again = self.make(self.journal)
        self.assertEqual(len(again.undo.pending), 1)
        self.clock.pump([1.0] * 60)
        self.assertEqual(self.ams[1].slivers[SLICE], [])
        self.clock.pump([1.0] * 60)
        self.assertEqual(again.undo.pending, [])
        self.assertEqual(self.ams[1].methods().count("Delete"), 1)


class UndoJournalTests(SynchronousTestCase):
    """The journal file stays where it was found."""

    def test_relative_path_fixed_when_made(self) -> None:
        """
        A journal made with a relative path writes where it was made, even
        after the working directory changed (as C{twistd --rundir} does once
        the service is built).
        """
        made_in, moved_to = temp_folder(self), temp_folder(self)
        self.addCleanup(os.chdir, os.getcwd())
        os.chdir(made_in)
        journal = UndoJournal(Path("sm-data") / JOURNAL_NAME)
        os.chdir(moved_to)
        entry = UndoEntry("call-1", "https://am1.example:8001/", "am1", SLICE, None, ["island"])
        journal.save([entry])
        self.assertEqual(UndoJournal(made_in / "sm-data" / JOURNAL_NAME).load(), [entry])
        self.assertEqual(list(moved_to.iterdir()), [])
