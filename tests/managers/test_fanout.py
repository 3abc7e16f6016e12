"""
Tests for L{geniam.managers.fanout}: concurrent calls with a per-peer
timeout, an overall deadline, circuit breakers and a bound on calls in
flight, all on a L{Clock}.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, fail
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from geniam.errors import GeniCode
from geniam.managers.breaker import BreakerState, CircuitBreaker
from geniam.managers.health import PeerHealth
from geniam.managers.fanout import ERROR, SUCCESS, TIMEOUT, FanOut, PeerCall, PeerOutcome
from geniam.managers.peers import PeerRecord
from geniam.protocols.peer import PeerRequestError, PeerTimeout
from tests.managers.slice_support import FakeAggregate


class FanOutTests(SynchronousTestCase):
    """One call per peer, all at once, by the deadline."""

    def setUp(self) -> None:
        self.clock = Clock()

    def records(self, *delays: float, threshold: int = 5) -> list[PeerRecord]:
        self.aggregates = [FakeAggregate(f"am{i}", self.clock, delay) for i, delay in enumerate(delays)]
        return [PeerRecord(a, CircuitBreaker(self.clock, threshold, 30.0)) for a in self.aggregates]

    def fan(self, fanout: FanOut, records: list[PeerRecord], deadline: float | None = None) -> Deferred[list[PeerOutcome]]:
        return fanout.run([PeerCall(r, "GetVersion", ({},)) for r in records], deadline)

    def test_all_calls_start_at_once(self) -> None:
        """Every peer is called before any answers; the run ends with the slowest peer."""
        records = self.records(1.0, 2.0, 3.0)
        d = self.fan(FanOut(self.clock, peer_timeout=10), records, deadline=60)
        self.assertEqual([len(a.calls) for a in self.aggregates], [1, 1, 1])
        self.clock.pump([1, 1, 0.9])
        self.assertNoResult(d)
        self.clock.advance(0.1)
        outcomes = self.successResultOf(d)
        self.assertEqual([o.status for o in outcomes], [SUCCESS] * 3)
        self.assertEqual([o.elapsed for o in outcomes], [1.0, 2.0, 3.0])
        self.assertEqual(outcomes[0].value["urn"], self.aggregates[0].urn)

    def test_each_outcome_observed_as_it_comes(self) -> None:
        """C{on_outcome} sees each outcome when it is known, before the run fires; its failure is only logged."""
        records = self.records(1.0, 2.0)
        seen: list[PeerOutcome] = []

        def observe(outcome: PeerOutcome) -> None:
            seen.append(outcome)
            raise RuntimeError("observer broke")

        d = FanOut(self.clock).run([PeerCall(r, "GetVersion", ({},)) for r in records], None, observe)
        self.clock.advance(1)
        self.assertEqual([o.record for o in seen], records[:1])
        self.assertNoResult(d)
        self.clock.advance(1)
        self.assertEqual(self.successResultOf(d), seen)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 2)

    def test_outcomes_keep_call_order(self) -> None:
        """Outcomes come back in the order of the calls, not of the answers."""
        records = self.records(3.0, 1.0, 2.0)
        d = self.fan(FanOut(self.clock), records)
        self.clock.advance(3)
        self.assertEqual([o.record for o in self.successResultOf(d)], records)

    def test_peer_timeout_cancels_the_call(self) -> None:
        """A peer slower than the peer timeout is cancelled and reported as timed out."""
        records = self.records(0.5, 20.0)
        d = self.fan(FanOut(self.clock, peer_timeout=5), records, deadline=60)
        self.clock.advance(5)
        fast, slow = self.successResultOf(d)
        self.assertEqual(fast.status, SUCCESS)
        self.assertEqual((slow.status, slow.code), (TIMEOUT, GeniCode.TIMEDOUT))
        self.assertIn("peer timeout (5 s)", slow.reason)
        self.assertEqual(self.aggregates[1].cancelled, 1)

    def test_deadline_returns_what_it_has(self) -> None:
        """At the deadline the run fires with the answers so far; the hanging call is cancelled."""
        records = self.records(1.0, 0.0)
        self.aggregates[1].mode = "hang"
        d = self.fan(FanOut(self.clock, peer_timeout=100), records, deadline=7)
        self.clock.advance(6.9)
        self.assertNoResult(d)
        self.clock.advance(0.1)
        answered, hanging = self.successResultOf(d)
        self.assertEqual(answered.status, SUCCESS)
        self.assertEqual((hanging.status, hanging.elapsed), (TIMEOUT, 7.0))
        self.assertIn("deadline (7 s)", hanging.reason)
        self.assertEqual(self.aggregates[1].cancelled, 1)

    def test_deadline_timer_is_cancelled_when_done(self) -> None:
        """A run that finishes early leaves no timer behind."""
        records = self.records(1.0)
        d = self.fan(FanOut(self.clock), records, deadline=50)
        self.clock.advance(1)
        self.successResultOf(d)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_dead_peer_is_an_error(self) -> None:
        """A peer refusing connections fails at once with its GENI code and a short reason."""
        records = self.records(0.0)
        self.aggregates[0].mode = "dead"
        (outcome,) = self.successResultOf(self.fan(FanOut(self.clock), records))
        self.assertEqual((outcome.status, outcome.code), (ERROR, GeniCode.RPCERROR))
        self.assertEqual(outcome.reason, "cannot connect: Connection refused")

    def test_geni_error_answer_is_an_error_but_healthy(self) -> None:
        """A peer answering with a GENI error code is an error outcome but does not count against its breaker."""
        records = self.records(0.0, threshold=1)
        self.aggregates[0].mode = "error"
        outcome = self.successResultOf(FanOut(self.clock).run([PeerCall(records[0], "Status", ([], [], {}))]))[0]
        self.assertEqual((outcome.status, outcome.code), (ERROR, GeniCode.BUSY))
        self.assertEqual(outcome.reason, "am0 says no")
        self.assertIsNotNone(outcome.struct)
        self.assertEqual(records[0].breaker.state, BreakerState.CLOSED)

    def test_malformed_reply(self) -> None:
        """A reply that is no GENI return struct is an RPCERROR."""
        record = PeerRecord(_Answering("https://x.example/", [1, 2]), CircuitBreaker(self.clock))
        (outcome,) = self.successResultOf(FanOut(self.clock).run([PeerCall(record, "GetVersion")]))
        self.assertEqual((outcome.status, outcome.code), (ERROR, GeniCode.RPCERROR))

    def test_transport_timeout_is_a_timeout(self) -> None:
        """The transport's own timeout error is reported as a timeout."""
        record = PeerRecord(_Failing("https://x.example/", PeerTimeout("u", "m", "slow")), CircuitBreaker(self.clock))
        (outcome,) = self.successResultOf(FanOut(self.clock).run([PeerCall(record, "GetVersion")]))
        self.assertEqual(outcome.status, TIMEOUT)

    def test_request_error_does_not_count_against_the_peer(self) -> None:
        """Parameters that cannot be encoded are our fault: the breaker is not charged."""
        record = PeerRecord(
            _Failing("https://x.example/", PeerRequestError("u", "m", "bad")), CircuitBreaker(self.clock, 1)
        )
        (outcome,) = self.successResultOf(FanOut(self.clock).run([PeerCall(record, "GetVersion")]))
        self.assertEqual((outcome.status, outcome.code), (ERROR, GeniCode.BADARGS))
        self.assertEqual(record.breaker.state, BreakerState.CLOSED)

    def test_unexpected_exception(self) -> None:
        """An unexpected exception from a peer is logged and reported without details."""
        record = PeerRecord(_Failing("https://x.example/", ZeroDivisionError()), CircuitBreaker(self.clock))
        (outcome,) = self.successResultOf(FanOut(self.clock).run([PeerCall(record, "GetVersion")]))
        self.assertEqual((outcome.status, outcome.reason), (ERROR, "unexpected failure: ZeroDivisionError"))
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_peer_raising_at_once(self) -> None:
        """A peer whose call raises instead of answering a Deferred gives an error, and its slot is free again."""
        record = PeerRecord(_Raising("https://x.example/", ZeroDivisionError()), CircuitBreaker(self.clock))
        fanout = FanOut(self.clock, max_concurrency=1)
        (outcome,) = self.successResultOf(fanout.run([PeerCall(record, "GetVersion")]))
        self.assertEqual((outcome.status, outcome.reason), (ERROR, "unexpected failure: ZeroDivisionError"))
        self.assertEqual(fanout.in_flight, 0)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_fault_in_the_fan_out_ends_the_run(self) -> None:
        """A fault of the fan-out itself while taking in an answer still ends the run, that call an internal error."""
        records = self.records(1.0, 1.0)
        broken = records[0].breaker

        def record_success() -> None:
            raise KeyError("breaker state")

        broken.record_success = record_success  # type: ignore[method-assign]
        fanout = FanOut(self.clock)
        d = self.fan(fanout, records)
        self.clock.advance(1)
        first, second = self.successResultOf(d)
        self.assertEqual((first.status, first.code, first.reason), (ERROR, GeniCode.SERVERERROR, "internal error"))
        self.assertEqual(second.status, SUCCESS)
        self.assertEqual(fanout.in_flight, 0)
        self.assertEqual(len(self.flushLoggedErrors(KeyError)), 1)

    def test_bounded_concurrency(self) -> None:
        """With room for two calls, five peers are called two at a time."""
        records = self.records(1.0, 1.0, 1.0, 1.0, 1.0)
        fanout = FanOut(self.clock, max_concurrency=2)
        d = self.fan(fanout, records, deadline=60)
        self.assertEqual([len(a.calls) for a in self.aggregates], [1, 1, 0, 0, 0])
        self.assertEqual((fanout.in_flight, fanout.queued), (2, 3))
        self.clock.advance(1)
        self.assertEqual([len(a.calls) for a in self.aggregates], [1, 1, 1, 1, 0])
        self.clock.pump([1, 1])
        outcomes = self.successResultOf(d)
        self.assertEqual([o.elapsed for o in outcomes], [1.0, 1.0, 2.0, 2.0, 3.0])
        self.assertEqual((fanout.in_flight, fanout.queued), (0, 0))

    def test_bound_is_shared_between_runs(self) -> None:
        """The bound holds across concurrent runs."""
        records = self.records(1.0, 1.0)
        fanout = FanOut(self.clock, max_concurrency=1)
        first = self.fan(fanout, records[:1])
        second = self.fan(fanout, records[1:])
        self.assertEqual([len(a.calls) for a in self.aggregates], [1, 0])
        self.clock.pump([1, 1])
        self.assertEqual(self.successResultOf(second)[0].elapsed, 2.0)
        self.successResultOf(first)

    def test_queued_past_deadline(self) -> None:
        """A call still waiting for a slot at the deadline is not made and is reported as timed out."""
        records = self.records(10.0, 10.0)
        fanout = FanOut(self.clock, peer_timeout=30, max_concurrency=1)
        d = self.fan(fanout, records, deadline=5)
        self.clock.advance(5)
        first, second = self.successResultOf(d)
        self.assertTrue(first.called)
        self.assertEqual((second.status, second.called), (TIMEOUT, False))
        self.assertIn("no free connection slot", second.reason)
        self.assertEqual(len(self.aggregates[1].calls), 0)
        self.assertEqual((fanout.in_flight, fanout.queued), (0, 0))
        self.assertEqual(records[1].breaker.consecutive_failures, 0)

    def test_breaker_opens_and_skips(self) -> None:
        """After repeated failures the peer is not called until the cool-down has passed."""
        records = self.records(0.0, threshold=2)
        self.aggregates[0].mode = "dead"
        fanout = FanOut(self.clock)
        for _ in range(2):
            self.successResultOf(self.fan(fanout, records))
        (skipped,) = self.successResultOf(self.fan(fanout, records))
        self.assertEqual(len(self.aggregates[0].calls), 2)
        self.assertEqual((skipped.code, skipped.called), (GeniCode.UNAVAILABLE, False))
        self.assertIn("circuit open", skipped.reason)
        self.clock.advance(30)
        self.aggregates[0].mode = "normal"
        (probe,) = self.successResultOf(self.fan(fanout, records))
        self.assertEqual(probe.status, SUCCESS)
        self.assertEqual(records[0].breaker.state, BreakerState.CLOSED)

    def test_deadline_counts_against_breaker(self) -> None:
        """A peer hanging past the deadline is charged a failure."""
        records = self.records(0.0, threshold=1)
        self.aggregates[0].mode = "hang"
        d = self.fan(FanOut(self.clock, peer_timeout=100), records, deadline=3)
        self.clock.advance(3)
        self.successResultOf(d)
        self.assertEqual(records[0].breaker.state, BreakerState.OPEN)

    def test_cancelling_the_run_cancels_every_call(self) -> None:
        """Cancelling a run cancels the calls in flight and does not charge the peers."""
        records = self.records(5.0, 5.0)
        fanout = FanOut(self.clock)
        d = self.fan(fanout, records, deadline=60)
        d.cancel()
        self.failureResultOf(d)
        self.assertEqual([a.cancelled for a in self.aggregates], [1, 1])
        self.assertEqual([r.breaker.consecutive_failures for r in records], [0, 0])
        self.assertEqual(fanout.in_flight, 0)

    def test_cancelling_the_run_makes_no_waiting_call(self) -> None:
        """A call of a cancelled run that was waiting for a slot is not made when the cancellation frees one."""
        records = self.records(0.0, 0.0)
        for aggregate in self.aggregates:
            aggregate.mode = "hang"
        fanout = FanOut(self.clock, max_concurrency=1)
        d = self.fan(fanout, records, deadline=60)
        self.assertEqual((fanout.in_flight, fanout.queued), (1, 1))
        d.cancel()
        self.failureResultOf(d)
        self.assertEqual([len(a.calls) for a in self.aggregates], [1, 0])
        self.assertEqual((fanout.in_flight, fanout.queued), (0, 0))
        self.assertEqual([r.breaker.consecutive_failures for r in records], [0, 0])

    def test_deadline_cancels_a_call_answered_through_another(self) -> None:
        """A peer Deferred already fired but waiting on another one is cancelled at the deadline."""
        cancelled: list[Deferred[Any]] = []
        inner: Deferred[Any] = Deferred(cancelled.append)
        record = PeerRecord(_Chained("https://x.example/", inner), CircuitBreaker(self.clock))
        d = FanOut(self.clock, peer_timeout=100).run([PeerCall(record, "GetVersion")], deadline=5)
        self.clock.advance(5)
        (outcome,) = self.successResultOf(d)
        self.assertEqual(outcome.status, TIMEOUT)
        self.assertIn("deadline (5 s)", outcome.reason)
        self.assertEqual(cancelled, [inner])

    def test_breaker_charged_before_the_slot_is_passed_on(self) -> None:
        """A failed call charges its peer before its slot starts the next call: the later answer has the last word."""
        peer = _Scripted("https://x.example/")
        record = PeerRecord(peer, CircuitBreaker(self.clock, 1, 30.0))
        fanout = FanOut(self.clock, max_concurrency=1)
        d = fanout.run([PeerCall(record, "Status"), PeerCall(record, "Status")])
        (first,) = peer.pending
        first.errback(PeerTimeout(peer.url, "Status", "slow"))
        self.assertEqual([o.status for o in self.successResultOf(d)], [TIMEOUT, SUCCESS])
        self.assertEqual((record.breaker.state, record.breaker.consecutive_failures), (BreakerState.CLOSED, 0))

    def test_fault_after_the_call_frees_its_slot(self) -> None:
        """A fault of the fan-out itself once the peer is called ends that call and frees its slot."""
        records = self.records(1.0, 1.0)
        fanout = FanOut(self.clock, max_concurrency=1)
        fanout.health = _BrokenHealth(self.clock, records)
        d = self.fan(fanout, records)
        self.clock.advance(1)
        outcomes = self.successResultOf(d)
        self.assertEqual([o.reason for o in outcomes], ["unexpected failure: KeyError"] * 2)
        self.assertEqual([a.cancelled for a in self.aggregates], [1, 1])
        self.assertEqual((fanout.in_flight, fanout.queued), (0, 0))
        self.assertEqual(len(self.flushLoggedErrors(KeyError)), 2)

    def test_peer_timeouts_leave_no_timer(self) -> None:
        """A call started when the peer timeout cancels another leaves no timer once the run is over."""
        records = self.records(0.0, 5.0, 0.0, 2.0)
        self.aggregates[0].mode = self.aggregates[2].mode = "hang"
        fanout = FanOut(self.clock, peer_timeout=10, max_concurrency=2)
        d = self.fan(fanout, records)
        self.clock.pump([5, 5])  # the second answers at 5, the third starts; the first times out at 10, the fourth starts
        self.assertEqual([len(a.calls) for a in self.aggregates], [1, 1, 1, 1])
        self.clock.pump([2, 3])  # the fourth answers at 12, the third times out at 15
        self.assertEqual([o.status for o in self.successResultOf(d)], [TIMEOUT, SUCCESS, TIMEOUT, SUCCESS])
        self.assertEqual(self.clock.getDelayedCalls(), [])


class _Answering:
    """A peer answering one fixed value."""

    def __init__(self, url: str, answer: Any) -> None:
        self.url = url
        self.answer = answer

    def call(self, method: str, *params: Any) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        d.callback(self.answer)
        return d


class _Failing:
    """A peer failing every call with one exception."""

    def __init__(self, url: str, error: Exception) -> None:
        self.url = url
        self.error = error

    def call(self, method: str, *params: Any) -> Deferred[Any]:
        return fail(self.error)


class _Raising(_Failing):
    """A peer whose every call raises at once."""

    def call(self, method: str, *params: Any) -> Deferred[Any]:
        raise self.error


class _Chained:
    """A peer answering with a Deferred that has fired but waits on C{inner}."""

    def __init__(self, url: str, inner: Deferred[Any]) -> None:
        self.url = url
        self.inner = inner

    def call(self, method: str, *params: Any) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        d.callback(None)
        d.addCallback(lambda _: self.inner)
        return d


class _Scripted:
    """A peer whose first call waits for the test, and whose later calls answer at once."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.pending: list[Deferred[Any]] = []

    def call(self, method: str, *params: Any) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self.pending.append(d)
        if len(self.pending) > 1:
            d.callback({"code": {"geni_code": 0}, "value": {}})
        return d


class _BrokenHealth(PeerHealth):
    """A hang watch that fails to watch any call."""

    def started(self, record: PeerRecord, call: Deferred[Any]) -> int:
        raise KeyError("watch")


class TransportIndependenceTests(SynchronousTestCase):
    """The slice manager's fan-out knows the peer's errors, not the HTTP client's."""

    def test_no_http_client_types(self) -> None:
        """No fan-out module imports Twisted's HTTP client, its connection errors or Deferred timeouts."""
        import ast
        import importlib
        import inspect

        forbidden = ("twisted.web", "twisted.internet.error", "OpenSSL", "service_identity")
        for name in ("fanout", "slice", "health", "undo"):
            module = importlib.import_module(f"geniam.managers.{name}")
            tree = ast.parse(inspect.getsource(module))
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.module:
                    self.assertFalse(node.module.startswith(forbidden), f"{name} imports {node.module}")
                    self.assertNotIn("TimeoutError", [a.name for a in node.names], f"{name} imports TimeoutError")
                elif isinstance(node, ast.Import):
                    for alias in node.names:
                        self.assertFalse(alias.name.startswith(forbidden), f"{name} imports {alias.name}")
