"""
Tests for L{geniam.trust.workload}: per-caller shares of the verification
pool, abandoning work, and stopping on shutdown.
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from geniam.errors import GeniCode, GeniError
from geniam.trust.paths import Deadline
from geniam.trust.workload import SHUTTING_DOWN, VerificationRunner, default_per_caller
from tests.trust.test_verifier import FakeThreadPool, ThreadReactor

MALLORY = b"mallory"
BOB = b"bob"


def work(deadline: Deadline, value: Any) -> Any:
    """What a verification step does: check the deadline, then answer."""
    deadline.check()
    return value


class PerCallerTests(SynchronousTestCase):
    """One caller cannot fill the pool; others get their turn."""

    def setUp(self) -> None:
        self.pool = FakeThreadPool()
        self.runner = VerificationRunner(self.pool, ThreadReactor(), max_per_caller=2)  # type: ignore[arg-type]

    def test_one_caller_waits_others_do_not(self) -> None:
        """A caller's third job waits for one of its two to finish; another caller's job goes at once."""
        first = [self.runner.run(MALLORY, self.runner.deadline(), work, i) for i in range(3)]
        self.assertEqual(len(self.pool.pending), 2)
        other = self.runner.run(BOB, self.runner.deadline(), work, "bob")
        self.assertEqual(len(self.pool.pending), 3)
        self.pool.run()
        self.assertEqual([self.successResultOf(d) for d in first], [0, 1, 2])
        self.assertEqual(self.successResultOf(other), "bob")

    def test_slot_kept_until_the_thread_is_done(self) -> None:
        """Cancelling a waiter abandons its work but keeps the slot until the thread reports back."""
        deadline = self.runner.deadline()
        busy = [self.runner.run(MALLORY, deadline, work, i) for i in range(2)]
        queued = self.runner.run(MALLORY, self.runner.deadline(), work, "later")
        busy[0].cancel()
        self.failureResultOf(busy[0])
        self.assertTrue(deadline.abandoned)
        self.assertEqual(len(self.pool.pending), 2, "the cancelled job still occupies its thread")
        self.assertNoResult(queued)
        self.pool.run()
        self.assertEqual(self.successResultOf(queued), "later")
        busy[1].addErrback(lambda f: f.trap(GeniError))

    def test_default_share_is_half_the_pool(self) -> None:
        """By default a caller may use half the pool's threads, at least one."""

        class Pool:
            max = 4

        self.assertEqual(default_per_caller(Pool()), 2)  # type: ignore[arg-type]
        Pool.max = 1
        self.assertEqual(default_per_caller(Pool()), 1)  # type: ignore[arg-type]


class StopTests(SynchronousTestCase):
    """Stopping abandons work in flight and refuses new work."""

    def test_stop_abandons_and_refuses(self) -> None:
        """Work in the pool is refused with SERVERBUSY when it next checks; new work is refused at once."""
        pool = FakeThreadPool()
        runner = VerificationRunner(pool, ThreadReactor())  # type: ignore[arg-type]
        running = runner.run(BOB, runner.deadline(), work, "x")
        runner.stop()
        pool.run()
        error = self.failureResultOf(running, GeniError).value
        self.assertEqual(error.code, GeniCode.SERVERBUSY)
        self.assertEqual(error.output, SHUTTING_DOWN)
        with self.assertRaises(GeniError) as cm:
            runner.deadline()
        self.assertEqual(cm.exception.code, GeniCode.SERVERBUSY)

    def test_inline_abandoned_work_refused(self) -> None:
        """Without a pool, abandoned work is refused with SERVERBUSY too."""
        runner = VerificationRunner()
        deadline = runner.deadline()
        runner.finished(deadline, "gave up")
        error = self.failureResultOf(runner.run(BOB, deadline, work, "x"), GeniError).value
        self.assertEqual((error.code, error.output), (GeniCode.SERVERBUSY, "gave up"))
