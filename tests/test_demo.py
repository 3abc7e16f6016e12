"""
Tests for the experiment C{geniam demo} runs, on a loopback federation
driven by a L{task.Clock}.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from geniam.cli.demo import Options
from geniam.demo import Experiment, Step, render_steps
from geniam.loopback import LoopbackFederation
from tests.test_am_loopback import template


class ExperimentTests(TestCase):
    """The demo's experiment against a real aggregate over TLS."""

    async def run_experiment(self, break_gateway: bool = False) -> Experiment:
        folder = Path(self.mktemp())
        shutil.copytree(template(), folder)
        clock = Clock()
        clock.advance(time.time())
        federation = LoopbackFederation(folder, reactor, clock, aggregate_names=("am1",), user_names=("alice", "bob"))
        await federation.start()
        self.addCleanup(lambda: Deferred.fromCoroutine(federation.stop()))
        service = federation.aggregates["am1"]
        gateway = federation.gateways["am1"]
        if break_gateway:
            gateway.set_reachable(False)

        async def wait(seconds: float) -> None:
            clock.advance(seconds)
            await service.resource_manager.sweep()

        client = federation.client(
            "alice", "am1", (federation.user_credential("alice"), federation.slice_credential("demo", "alice"))
        )
        experiment = Experiment(
            client,
            federation.slice_urn("demo"),
            federation.domain.user_urn("alice"),
            clock.seconds,
            wait,
            lambda: f"users={len(gateway.users)}",
        )
        self.ok = await experiment.run()
        return experiment

    async def test_every_step_behaves(self) -> None:
        """All eight steps pass, the slot became ready, and the gateway was cleaned afterwards."""
        experiment = await self.run_experiment()
        self.assertTrue(self.ok, render_steps(experiment.steps))
        self.assertEqual([s.name for s in experiment.steps][-1], "Delete")
        ready = next(s for s in experiment.steps if s.name == "Status until ready")
        self.assertIn("geni_ready", ready.detail)
        self.assertIn("users=1", ready.detail)
        after = next(s for s in experiment.steps if s.name == "Status after the slot")
        self.assertIn("users=0", after.detail)

    async def test_failure_is_reported(self) -> None:
        """With the gateway unreachable the slot never becomes ready and the run fails at that step."""
        experiment = await self.run_experiment(break_gateway=True)
        self.assertFalse(self.ok)
        self.assertEqual(experiment.steps[-1].name, "Status until ready")
        self.assertFalse(experiment.steps[-1].ok)


class RenderTests(SynchronousTestCase):
    """The step table and the command's flags."""

    def test_table(self) -> None:
        """Each step is a row with its verdict."""
        table = render_steps([Step("GetVersion", True, "AM API 3", 1.0), Step("Allocate", False, "taken", 2.0)])
        self.assertIn("GetVersion  yes", table)
        self.assertIn("Allocate    NO", table)

    def test_options(self) -> None:
        """The slot lead and length are numbers."""
        options = Options()
        options.parseOptions(["--lead", "2", "--length", "3"])
        self.assertEqual((options["lead"], options["length"]), (2.0, 3.0))
