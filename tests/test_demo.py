"""
Tests for the experiment C{geniam demo} runs, on a loopback federation
driven by a L{task.Clock}: with the gateway agent as its own service,
reached over PB on TLS, as the demo runs it, and with the in-process
simulated gateway.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase, TestCase

from geniam.cli.demo import AGENT_LOG_NAMESPACE, Options, agent_printer, describe_state, gateway_view
from geniam.demo import Experiment, Step, render_steps
from geniam.loopback import LoopbackFederation
from tests.test_am_agent import template


class ExperimentTests(TestCase):
    """The demo's experiment against a real aggregate over TLS."""

    async def run_experiment(self, with_agents: bool = True, break_gateway: bool = False) -> Experiment:
        folder = Path(self.mktemp())
        shutil.copytree(template(), folder)
        clock = Clock()
        clock.advance(time.time())
        federation = LoopbackFederation(
            folder, reactor, clock, aggregate_names=("am1",), user_names=("alice", "bob"), with_agents=with_agents, agent_retry=0.05
        )
        self.addCleanup(lambda: Deferred.fromCoroutine(federation.stop()))
        await federation.start()
        service = federation.aggregates["am1"]
        if break_gateway:
            if with_agents:
                await federation.stop_agent("am1")
            else:
                federation.gateways["am1"].set_reachable(False)

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
            lambda: gateway_view(federation, "am1"),
        )
        self.ok = await experiment.run()
        return experiment

    def check_all_behaved(self, experiment: Experiment) -> None:
        self.assertTrue(self.ok, render_steps(experiment.steps))
        self.assertEqual([s.name for s in experiment.steps][-1], "Delete")
        provisioned = next(s for s in experiment.steps if s.name == "Provision")
        self.assertIn("gateway: users=0 proxy=- vlans=-", provisioned.detail)
        ready = next(s for s in experiment.steps if s.name == "Status until ready")
        self.assertIn("geni_ready", ready.detail)
        self.assertIn("gateway: users=1 proxy=127.0.0.1:6633 vlans={'10': '0xffff'}", ready.detail)
        after = next(s for s in experiment.steps if s.name == "Status after the slot")
        self.assertIn("gateway: users=0 proxy=- vlans=-", after.detail)

    async def test_every_step_behaves_with_agent(self) -> None:
        """All eight steps pass; the agent, asked over PB, holds the configuration during the slot only."""
        self.check_all_behaved(await self.run_experiment())

    async def test_every_step_behaves_in_process(self) -> None:
        """The same experiment passes with the in-process simulated gateway."""
        self.check_all_behaved(await self.run_experiment(with_agents=False))

    async def test_failure_is_reported(self) -> None:
        """With the agent stopped the slot never becomes ready and the run fails at that step, naming the state."""
        experiment = await self.run_experiment(break_gateway=True)
        self.assertFalse(self.ok)
        self.assertEqual(experiment.steps[-1].name, "Status until ready")
        self.assertFalse(experiment.steps[-1].ok)
        self.assertIn("geni_configuring", experiment.steps[-1].detail)
        provisioned = next(s for s in experiment.steps if s.name == "Provision")
        self.assertIn("gateway: unknown (gateway agent unreachable", provisioned.detail)


class RenderTests(SynchronousTestCase):
    """The step table, the gateway column, the agent's lines and the command's flags."""

    def test_table(self) -> None:
        """Each step is a row with its verdict."""
        table = render_steps([Step("GetVersion", True, "AM API 3", 1.0), Step("Allocate", False, "taken", 2.0)])
        self.assertIn("GetVersion  yes", table)
        self.assertIn("Allocate    NO", table)

    def test_options(self) -> None:
        """The slot lead and length are numbers; the agent runs unless --in-process is given."""
        options = Options()
        options.parseOptions(["--lead", "2", "--length", "3"])
        self.assertEqual((options["lead"], options["length"], options["in-process"]), (2.0, 3.0, False))
        options = Options()
        options.parseOptions(["--in-process"])
        self.assertTrue(options["in-process"])

    def test_describe_state(self) -> None:
        """The gateway column summarises the agent's state."""
        self.assertEqual(describe_state({"users": [], "proxy": "", "vlans": {}}), "users=0 proxy=- vlans=-")
        self.assertEqual(
            describe_state({"users": ["k1", "k2"], "proxy": "10.0.0.1:6633", "vlans": {"10": "20"}}),
            "users=2 proxy=10.0.0.1:6633 vlans={'10': '20'}",
        )

    def test_agent_printer(self) -> None:
        """The agent's applied calls are printed; other log events are not."""
        lines: list[str] = []
        printer: Any = agent_printer(lines.append)
        agent_log = Logger(namespace=AGENT_LOG_NAMESPACE, observer=printer)
        agent_log.info("{peer}: {method} {detail}", peer="am", method="setUserAuth", detail="1 keys")
        agent_log.info("{peer}: {method} {detail}", peer="am", method="remTCPProxy", detail="")
        Logger(namespace="geniam.other", observer=printer).info("{method}", method="nope")
        self.assertEqual(lines, ["  agent: setUserAuth 1 keys", "  agent: remTCPProxy"])
