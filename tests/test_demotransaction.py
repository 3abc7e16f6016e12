"""
C{geniam demo --transaction}: its experiment against real aggregates and a
real slice manager over TLS on 127.0.0.1, with a L{Clock} for time.
"""

from __future__ import annotations

import time

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase, TestCase

from geniam.cli.demo import Options
from geniam.demo import render_steps
from geniam.demotransaction import TransactionExperiment, rival_client
from geniam.loopback import LoopbackFederation
from tests.domains import copied_domain
from tests.test_demo import NAMES, make_domain

STEPS = [
    "BeginTransaction",
    "Competing Allocate",
    "Status before commit",
    "CommitTransaction",
    "Status",
    "Allocate (two-phase)",
    "Delete",
]


class TransactionExperimentTests(TestCase):
    """Both islands booked in one transaction through the slice manager, a competitor refused meanwhile."""

    timeout = 60

    async def run_experiment(self) -> tuple[TransactionExperiment, bool]:
        folder = copied_domain(self, "demo", make_domain)
        clock = Clock()
        clock.advance(time.time())
        federation = LoopbackFederation(
            folder, reactor, clock, aggregate_names=NAMES, user_names=("alice", "bob"), slice_manager="sm"
        )
        self.addCleanup(lambda: Deferred.fromCoroutine(federation.stop()))
        await federation.start()
        credentials = (federation.user_credential("alice"), federation.delegated_slice_credential("demo", "alice"))

        async def wait(seconds: float) -> None:
            clock.advance(seconds)

        experiment = TransactionExperiment(
            federation.client("alice", "sm", credentials),
            federation.slice_urn("demo"),
            federation.domain.user_urn("alice"),
            clock.seconds,
            wait,
            aggregate_urns=tuple(federation.domain.aggregate_urn(name) for name in NAMES),
            rival=rival_client(federation, "sm", "bob", "rival"),
            rival_slice_urn=federation.slice_urn("rival"),
        )
        return experiment, await experiment.run()

    async def test_every_step_behaves(self) -> None:
        """Every step behaves; the competitor was refused by both aggregates; the later Allocate took two phases."""
        experiment, ok = await self.run_experiment()
        self.assertTrue(ok, render_steps(experiment.steps))
        self.assertEqual([s.name for s in experiment.steps], STEPS)
        competing = experiment.steps[1]
        self.assertEqual({(s.status, s.code_name) for s in competing.statistics}, {("error", "UNAVAILABLE")})
        self.assertEqual(len(competing.statistics), 2)
        self.assertIn("two-phase path", experiment.steps[5].detail)


class TransactionOptionTests(SynchronousTestCase):
    """The --transaction flag."""

    def test_flag(self) -> None:
        """--transaction is off by default, on when given, and refused with --direct."""
        options = Options()
        options.parseOptions([])
        self.assertFalse(options["transaction"])
        options = Options()
        options.parseOptions(["--transaction"])
        self.assertTrue(options["transaction"])
        self.assertRaises(usage.UsageError, Options().parseOptions, ["--transaction", "--direct"])
