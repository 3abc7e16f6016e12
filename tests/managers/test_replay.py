"""
Tests for repeated C{call_id}s: L{geniam.managers.shared},
L{geniam.managers.replay}, and the slice manager answering a repeat with
the original result.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from geniam.errors import GeniCode, GeniError
from geniam.managers.replay import CallReplay
from geniam.managers.shared import Shared
from tests.managers.slice_support import ALICE, GENI_V3, SLICE, Caller, FakeAggregate, am_urn, called_by, make_sm, request


class SharedTests(SynchronousTestCase):
    """One piece of work, a Deferred per waiter."""

    def test_each_waiter_gets_its_own_deferred(self) -> None:
        """Waiters get distinct Deferreds that all fire with the result."""
        work: Deferred[int] = Deferred()
        shared = Shared(work)
        first, second = shared.wait(), shared.wait()
        self.assertIsNot(first, second)
        self.assertEqual(shared.waiting, 2)
        work.callback(7)
        self.assertEqual((self.successResultOf(first), self.successResultOf(second)), (7, 7))
        self.assertEqual(self.successResultOf(shared.wait()), 7)

    def test_failure_reaches_every_waiter(self) -> None:
        """A failure is passed to each waiter (and to later ones)."""
        work: Deferred[int] = Deferred()
        shared = Shared(work)
        first = shared.wait()
        work.errback(GeniError(GeniCode.BUSY, "busy"))
        self.assertTrue(shared.failed)
        self.failureResultOf(first, GeniError)
        self.failureResultOf(shared.wait(), GeniError)

    def test_cancelling_one_waiter(self) -> None:
        """A waiter cancelling its Deferred leaves the work and the other waiters alone."""
        cancelled = []
        work: Deferred[int] = Deferred(lambda d: cancelled.append(d))
        shared = Shared(work)
        first, second = shared.wait(), shared.wait()
        first.cancel()
        self.failureResultOf(first, CancelledError)
        self.assertEqual(cancelled, [])
        work.callback(3)
        self.assertEqual(self.successResultOf(second), 3)


class CallReplayTests(SynchronousTestCase):
    """Each key runs once within the window."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.replay = CallReplay(self.clock, window=100.0, max_entries=3)
        self.runs = 0

    def work(self, value: Any = None) -> Any:
        def start() -> Deferred[Any]:
            self.runs += 1
            return succeed({"run": self.runs} if value is None else value)

        return start

    def test_repeat_gets_the_original_result(self) -> None:
        """A repeat within the window is answered with a copy of the first result, not run again."""
        key = ("alice", "Renew", "c1")
        first = self.successResultOf(self.replay.run(key, self.work()))
        again = self.successResultOf(self.replay.run(key, self.work()))
        self.assertEqual(again, {"run": 1})
        self.assertIsNot(again, first)
        self.assertEqual((self.runs, self.replay.replayed), (1, 1))

    def test_key_includes_caller_and_method(self) -> None:
        """Another caller or another method with the same call_id runs on its own."""
        self.successResultOf(self.replay.run(("alice", "Renew", "c1"), self.work()))
        self.successResultOf(self.replay.run(("bob", "Renew", "c1"), self.work()))
        self.successResultOf(self.replay.run(("alice", "Delete", "c1"), self.work()))
        self.assertEqual(self.runs, 3)

    def test_window(self) -> None:
        """After the window the call runs again."""
        key = ("alice", "Renew", "c1")
        self.successResultOf(self.replay.run(key, self.work()))
        self.clock.advance(99)
        self.assertTrue(self.replay.knows(key))
        self.clock.advance(1)
        self.assertFalse(self.replay.knows(key))
        self.assertEqual(self.successResultOf(self.replay.run(key, self.work())), {"run": 2})

    def test_in_flight_repeat_waits_for_the_first(self) -> None:
        """A repeat arriving while the first runs waits for it, with a Deferred of its own."""
        work: Deferred[Any] = Deferred()
        key = ("alice", "Allocate", "c1")
        first = self.replay.run(key, lambda: work)
        second = self.replay.run(key, self.work())
        self.assertIsNot(first, second)
        self.assertNoResult(second)
        self.assertTrue(self.replay.in_flight(key))
        work.callback({"slivers": ["s1"]})
        self.assertEqual(self.successResultOf(first), {"slivers": ["s1"]})
        self.assertEqual(self.successResultOf(second), {"slivers": ["s1"]})
        self.assertEqual(self.runs, 0)

    def test_geni_error_is_replayed(self) -> None:
        """A GENI error is an answer too: the repeat fails the same way."""
        key = ("alice", "Allocate", "c1")
        self.failureResultOf(self.replay.run(key, lambda: fail(GeniError(GeniCode.BUSY, "taken"))), GeniError)
        failure = self.failureResultOf(self.replay.run(key, self.work()), GeniError)
        self.assertEqual((failure.value.code, failure.value.output), (GeniCode.BUSY, "taken"))
        self.assertEqual(self.runs, 0)

    def test_unexpected_failure_is_not_remembered(self) -> None:
        """An unexpected exception is not an answer: the repeat runs."""
        key = ("alice", "Allocate", "c1")
        self.failureResultOf(self.replay.run(key, lambda: fail(ZeroDivisionError())), ZeroDivisionError)
        self.assertEqual(self.successResultOf(self.replay.run(key, self.work())), {"run": 1})

    def test_bounded(self) -> None:
        """The oldest answers are forgotten beyond the bound."""
        for i in range(5):
            self.successResultOf(self.replay.run(("a", "m", str(i)), self.work()))
        self.assertEqual(len(self.replay), 3)
        self.assertFalse(self.replay.knows(("a", "m", "0")))
        self.assertTrue(self.replay.knows(("a", "m", "4")))


class SliceManagerReplayTests(SynchronousTestCase):
    """The slice manager answers a repeated call_id with the original result."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.am1 = FakeAggregate("am1", self.clock, delay=1.0)
        self.sm, _ = make_sm([self.am1], self.clock, call_id_window=60)
        self.alice = Caller(ALICE)

    def allocate(self, caller: Any, call_id: str | None) -> Deferred[Any]:
        options = {} if call_id is None else {"call_id": call_id}
        return Deferred.fromCoroutine(self.sm.Allocate(called_by(caller, []), SLICE, request("am1"), options))

    def test_repeated_allocate_returns_the_original(self) -> None:
        """A repeated Allocate is not forwarded again and returns the first manifest and slivers, never ''."""
        d = self.allocate(self.alice, "c-1")
        self.clock.advance(1)
        first = self.successResultOf(d)
        again = self.successResultOf(self.allocate(self.alice, "c-1"))
        self.assertEqual(again, first)
        self.assertEqual(len(again["value"]["geni_slivers"]), 1)
        self.assertEqual(self.am1.methods().count("Allocate"), 1)

    def test_in_flight_duplicate_waits(self) -> None:
        """A duplicate sent while the first is forwarded waits for it; the aggregate is called once."""
        first = self.allocate(self.alice, "c-2")
        second = self.allocate(self.alice, "c-2")
        self.assertNoResult(second)
        self.clock.advance(1)
        self.assertEqual(self.successResultOf(second), self.successResultOf(first))
        self.assertEqual(self.am1.methods().count("Allocate"), 1)

    def test_other_caller_same_call_id_runs(self) -> None:
        """The same call_id from another caller is another call."""
        d1 = self.allocate(self.alice, "c-3")
        d2 = self.allocate(Caller("urn:publicid:IDN+ch.example+user+bob"), "c-3")
        self.clock.advance(1)
        self.successResultOf(d1)
        self.successResultOf(d2)
        self.assertEqual(self.am1.methods().count("Allocate"), 2)

    def test_without_call_id_every_call_runs(self) -> None:
        """Calls without call_id are never deduplicated; each carries a fresh call_id to the aggregates."""
        d1, d2 = self.allocate(self.alice, None), self.allocate(self.alice, None)
        self.clock.advance(1)
        self.successResultOf(d1)
        self.successResultOf(d2)
        ids = [c.options["call_id"] for c in self.am1.calls if c.method == "Allocate"]
        self.assertEqual(len(set(ids)), 2)

    def test_call_id_forwarded(self) -> None:
        """The caller's call_id is carried to the aggregates."""
        d = self.allocate(self.alice, "c-4")
        self.clock.advance(1)
        self.successResultOf(d)
        self.assertEqual(self.am1.last("Allocate").options["call_id"], "c-4")

    def test_replayed_error(self) -> None:
        """A repeat of a refused call gets the same refusal."""
        d = Deferred.fromCoroutine(self.sm.Allocate(called_by(self.alice, []), "not a urn", request("am1"), {"call_id": "c-5"}))
        first = self.failureResultOf(d, GeniError)
        again = self.failureResultOf(
            Deferred.fromCoroutine(self.sm.Allocate(called_by(self.alice, []), "not a urn", request("am1"), {"call_id": "c-5"})),
            GeniError,
        )
        self.assertEqual(again.value.output, first.value.output)

    def test_list_resources_repeat(self) -> None:
        """ListResources repeats are answered from the replay too."""
        options = {"geni_rspec_version": GENI_V3, "call_id": "c-6", "cached": False}
        d = Deferred.fromCoroutine(self.sm.ListResources(called_by(self.alice, []), options))
        self.clock.advance(1)
        first = self.successResultOf(d)
        again = self.successResultOf(Deferred.fromCoroutine(self.sm.ListResources(called_by(self.alice, []), dict(options))))
        self.assertEqual(again["value"], first["value"])
        self.assertEqual(self.am1.methods().count("ListResources"), 1)

    def test_bad_call_id(self) -> None:
        """A call_id that is not a string is refused."""
        d = Deferred.fromCoroutine(self.sm.Status(called_by(self.alice, []), [SLICE], {"call_id": 5}))
        self.assertEqual(self.failureResultOf(d, GeniError).value.code, GeniCode.BADARGS)


class LoopTests(SynchronousTestCase):
    """A call coming back through a loop of slice managers is refused."""

    def test_call_id_coming_back_from_a_peer(self) -> None:
        """While a call_id is being forwarded, the same call_id from a peer is refused with REFUSED."""
        clock = Clock()
        am1 = FakeAggregate("am1", clock, delay=1.0)
        peer_sm = FakeAggregate("sm2", clock, delay=1.0, urn="urn:publicid:IDN+sm2.example+authority+sm")
        sm, _ = make_sm([am1, peer_sm], clock)
        user = Deferred.fromCoroutine(sm.Status(called_by(Caller(ALICE), []), [SLICE], {"call_id": "loop-1"}))
        looped = Deferred.fromCoroutine(
            sm.Status(called_by(Caller("urn:publicid:IDN+sm2.example+authority+sm"), []), [SLICE], {"call_id": "loop-1"})
        )
        failure = self.failureResultOf(looped, GeniError)
        self.assertEqual(failure.value.code, GeniCode.REFUSED)
        self.assertIn("loop", failure.value.output)
        clock.advance(1)
        self.successResultOf(user)
        self.assertEqual(am1.last("Status").options["call_id"], "loop-1")
        self.assertEqual(am_urn("am1"), sm.records[0].urn)
