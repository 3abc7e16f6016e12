"""
Tests for L{geniam.managers.twophase}: the Commit phase's retries and how
a Commit whose answer was lost is resolved, on a L{Clock} with scripted
aggregate answers (the loopback tests run it against real aggregates).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from geniam.errors import GeniCode, error_struct, success_struct
from geniam.managers.breaker import CircuitBreaker
from geniam.managers.fanout import TIMEOUT, PeerCall, PeerOutcome, outcome_of_struct
from geniam.managers.peers import PeerRecord
from geniam.managers.rollup import rollup
from geniam.managers.twophase import TwoPhase, TwoPhaseResult
from geniam.rspec.request import build_request

SLICE = "urn:publicid:IDN+geni.example.net+slice+exp1"
RETRY = 5.0
COMMIT_BY = 1000.0 + 600.0
ABORTED = {"geniam_transaction": "t2", "geniam_transaction_outcome": "aborted", "aborted_at": "x", "reason": "its commit_by passed"}


class _Peer:
    def __init__(self, url: str) -> None:
        self.url = url


class ScriptedFan:
    """Answers each call with the next outcome scripted for its aggregate and method; records the calls."""

    def __init__(self) -> None:
        self.script: dict[tuple[str, str], list[Any]] = {}
        self.calls: list[tuple[float, str, str, dict[str, Any]]] = []
        self.clock = Clock()
        self.clock.advance(1000.0)

    def answer(self, url: str, method: str, *answers: Any) -> None:
        self.script.setdefault((url, method), []).extend(answers)

    def __call__(self, calls: list[PeerCall]) -> Deferred[list[PeerOutcome]]:
        outcomes = []
        for call in calls:
            self.calls.append((self.clock.seconds(), call.record.url, call.method, call.params[-1]))
            answer = self.script[(call.record.url, call.method)].pop(0)
            if answer is TIMEOUT:
                outcomes.append(PeerOutcome(call.record, TIMEOUT, 0.0, None, int(GeniCode.TIMEDOUT), "timed out"))
            else:
                outcomes.append(outcome_of_struct(call.record, answer, 0.0))
        return succeed(outcomes)

    def commits(self, url: str, method: str = "CommitTransaction") -> list[tuple[float, dict[str, Any]]]:
        return [(when, options) for when, u, called, options in self.calls if u == url and called == method]

    def methods(self, url: str) -> list[str]:
        return [method for _, u, method, _ in self.calls if u == url]


def begun(identifier: str | None) -> dict[str, Any]:
    value: dict[str, Any] = {"geni_rspec": "<rspec/>", "geni_slivers": [], "commit_by": "2030-01-01T00:00:00Z"}
    if identifier is not None:
        value["geniam_transaction"] = identifier
    return success_struct(value)


COMMITTED = success_struct({"geni_rspec": "<rspec/>", "geni_slivers": [{"geni_sliver_urn": "urn:x"}]})


class CommitPhaseTests(SynchronousTestCase):
    """Commit at every aggregate; retries and lost answers."""

    def setUp(self) -> None:
        self.fan = ScriptedFan()
        self.clock = self.fan.clock
        self.records = [PeerRecord(_Peer(f"https://am{i}.example/"), CircuitBreaker(self.clock)) for i in (1, 2)]
        self.am1, self.am2 = (r.url for r in self.records)
        self.fan.answer(self.am1, "BeginTransaction", begun("t1"))
        self.fan.answer(self.am1, "CommitTransaction", COMMITTED)

    def run_two_phase(self, deadline: float = 1060.0) -> Deferred[TwoPhaseResult]:
        parts = [(r, build_request(5000.0, 6000.0, am_urn=f"urn:publicid:IDN+am{i}.example+authority+am")) for i, r in enumerate(self.records, 1)]
        phases = TwoPhase(self.clock, self.fan, lambda outcomes: rollup(outcomes, False, False), RETRY)
        return Deferred.fromCoroutine(phases.run(SLICE, [], parts, {"call_id": "c"}, deadline))

    def assert_outcomes(self, result: TwoPhaseResult, oks: Sequence[bool], uncertain: Sequence[str] = (), failed: bool = False) -> None:
        self.assertEqual([o.ok for o in result.outcomes], list(oks))
        self.assertEqual(result.uncertain, list(uncertain))
        self.assertEqual(result.failed, failed)

    def test_every_commit_names_its_transaction(self) -> None:
        """A lost answer is retried after the retry interval, naming the transaction; the repeated commit counts as committed."""
        self.fan.answer(self.am2, "BeginTransaction", begun("t2"))
        self.fan.answer(self.am2, "CommitTransaction", TIMEOUT, COMMITTED)
        d = self.run_two_phase()
        self.assertNoResult(d)
        self.clock.advance(RETRY)
        result = self.successResultOf(d)
        self.assert_outcomes(result, [True, True])
        self.assertEqual([(when, o["geniam_transaction"]) for when, o in self.fan.commits(self.am2)], [(1000.0, "t2"), (1005.0, "t2")])
        self.assertEqual([o["geniam_transaction"] for _, o in self.fan.commits(self.am1)], ["t1"])
        self.assertNotIn("AbortTransaction", self.fan.methods(self.am2))

    def test_retry_says_aborted(self) -> None:
        """A retry answered 'aborted' is a certain failure: the others are to be rolled back, am2 is not uncertain."""
        self.fan.answer(self.am2, "BeginTransaction", begun("t2"))
        self.fan.answer(self.am2, "CommitTransaction", TIMEOUT, error_struct(GeniCode.ERROR, "was aborted", ABORTED))
        self.fan.answer(self.am2, "AbortTransaction", error_struct(GeniCode.ERROR, "none"))
        d = self.run_two_phase()
        self.clock.advance(RETRY)
        result = self.successResultOf(d)
        self.assert_outcomes(result, [True, False], failed=True)
        self.assertNotIn("Describe", self.fan.methods(self.am2))

    def test_last_chance_after_commit_by(self) -> None:
        """When no retry fits before the deadline, one more Commit is sent at once (the aggregate then knows the outcome)."""
        self.fan.answer(self.am2, "BeginTransaction", begun("t2"))
        self.fan.answer(self.am2, "CommitTransaction", TIMEOUT, error_struct(GeniCode.ERROR, "was aborted", ABORTED))
        self.fan.answer(self.am2, "AbortTransaction", error_struct(GeniCode.ERROR, "none"))
        result = self.successResultOf(self.run_two_phase(deadline=1000.0 + RETRY - 1))
        self.assertEqual([when for when, _ in self.fan.commits(self.am2)], [1000.0, 1000.0])
        self.assert_outcomes(result, [True, False], failed=True)

    def test_without_identifier_nothing_there(self) -> None:
        """An aggregate without identifiers refuses the retry (no transaction): the slice is read back; nothing there means not committed."""
        self.fan.answer(self.am2, "BeginTransaction", begun(None))
        self.fan.answer(self.am2, "CommitTransaction", TIMEOUT, error_struct(GeniCode.ERROR, "no transaction"))
        self.fan.answer(self.am2, "Describe", error_struct(GeniCode.SEARCHFAILED, "no such slice"))
        self.fan.answer(self.am2, "AbortTransaction", error_struct(GeniCode.ERROR, "none"))
        d = self.run_two_phase()
        self.clock.advance(RETRY)
        result = self.successResultOf(d)
        self.assertEqual([o for _, o in self.fan.commits(self.am2)], [{"call_id": "c"}, {"call_id": "c"}])
        self.assert_outcomes(result, [True, False], failed=True)
        self.assertIn("not committed", result.outcomes[1].reason or "")

    def test_unknowable_stays_uncertain(self) -> None:
        """When the slice cannot be read back either, the outcome stays uncertain: reported, not a failure to roll back."""
        self.fan.answer(self.am2, "BeginTransaction", begun(None))
        self.fan.answer(self.am2, "CommitTransaction", TIMEOUT, *[error_struct(GeniCode.ERROR, "no transaction")] * 20)
        self.fan.answer(self.am2, "Describe", *[TIMEOUT] * 20)
        d = self.run_two_phase(deadline=1000.0 + 3 * RETRY)
        for _ in range(3):
            self.clock.advance(RETRY)
        result = self.successResultOf(d)
        self.assert_outcomes(result, [True, False], uncertain=[self.records[1].name])
        self.assertEqual(len(self.fan.commits(self.am2)), 4)
        self.assertNotIn("AbortTransaction", self.fan.methods(self.am2))

    def test_other_refusal_after_a_lost_answer(self) -> None:
        """A retry refused otherwise than 'no transaction' (the transaction is still open) is a certain failure."""
        self.fan.answer(self.am2, "BeginTransaction", begun("t2"))
        self.fan.answer(self.am2, "CommitTransaction", TIMEOUT, error_struct(GeniCode.REFUSED, "a sliver runs"))
        self.fan.answer(self.am2, "AbortTransaction", success_struct(True))
        d = self.run_two_phase()
        self.clock.advance(RETRY)
        result = self.successResultOf(d)
        self.assert_outcomes(result, [True, False], failed=True)
        self.assertEqual(self.fan.methods(self.am2)[-1], "AbortTransaction")
        self.assertEqual([o.get("geniam_transaction") for _, o in self.fan.commits(self.am2, "AbortTransaction")], ["t2"])


class BeginPhaseTests(SynchronousTestCase):
    """A Begin that fails: the others are aborted, each naming its own transaction where its Begin answered one."""

    def setUp(self) -> None:
        self.fan = ScriptedFan()
        self.records = [PeerRecord(_Peer(f"https://am{i}.example/"), CircuitBreaker(self.fan.clock)) for i in (1, 2, 3)]
        self.am1, self.am2, self.am3 = (r.url for r in self.records)

    def test_aborts_name_their_transactions(self) -> None:
        """am3 is refused: am1 (which answered t1) is aborted naming t1, am2 (which answered none) without."""
        self.fan.answer(self.am1, "BeginTransaction", begun("t1"))
        self.fan.answer(self.am2, "BeginTransaction", begun(None))
        self.fan.answer(self.am3, "BeginTransaction", error_struct(GeniCode.UNAVAILABLE, "taken"))
        for url in (self.am1, self.am2):
            self.fan.answer(url, "AbortTransaction", success_struct(True))
        parts = [(r, build_request(5000.0, 6000.0)) for r in self.records]
        phases = TwoPhase(self.fan.clock, self.fan, lambda outcomes: rollup(outcomes, False, False), RETRY)
        result = self.successResultOf(Deferred.fromCoroutine(phases.run(SLICE, [], parts, {"call_id": "c"}, 1060.0)))
        self.assertEqual(result.code, int(GeniCode.UNAVAILABLE))
        self.assertEqual(self.fan.commits(self.am1, "AbortTransaction"), [(1000.0, {"call_id": "c", "geniam_transaction": "t1"})])
        self.assertEqual(self.fan.commits(self.am2, "AbortTransaction"), [(1000.0, {"call_id": "c"})])
        self.assertEqual(self.fan.methods(self.am3), ["BeginTransaction"])
