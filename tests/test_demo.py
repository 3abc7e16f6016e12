"""
Tests for the experiment C{geniam demo} runs, on a loopback federation
driven by a L{task.Clock}: through a slice manager in front of two
islands, each with its gateway agent as its own service reached over PB
on TLS, as the demo runs it; with in-process simulated gateways; and
against one aggregate directly (C{--direct}).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase, TestCase

from geniam.cli.demo import AGENT_LOG_NAMESPACE, Options, agent_printer, describe_state, gateway_views
from geniam.demo import (
    AggregateStatistics,
    Experiment,
    Step,
    federated_request,
    render_statistics,
    render_steps,
    short_name,
    statistics_of,
)
from geniam.errors import GeniCode, GeniError
from geniam.loopback import LoopbackFederation
from geniam.rspec.request import parse_request
from geniam.rspec.split import split_request
from tests.domains import copied_domain

NAMES = ("am1", "am2")
AM1 = "urn:publicid:IDN+geniam:demo:am1+authority+am"
AM2 = "urn:publicid:IDN+geniam:demo:am2+authority+am"
APPLIED = "users=1 proxy=127.0.0.1:6633 vlans={'10': '0xffff'}"
EMPTY = "users=0 proxy=- vlans=-"


def make_domain(folder: Path) -> None:
    """Make a trust domain with am1, am2, their agents, a slice manager, alice and bob in C{folder}."""
    LoopbackFederation(folder, reactor, aggregate_names=NAMES, user_names=("alice", "bob"), with_agents=True, slice_manager="sm")


class ExperimentTests(TestCase):
    """The demo's experiment against real aggregates (and a real slice manager) over TLS."""

    timeout = 60

    async def run_experiment(
        self, federated: bool = True, with_agents: bool = True, break_gateway: str | None = None, book: tuple[str, ...] = NAMES
    ) -> Experiment:
        folder = copied_domain(self, "demo", make_domain)
        clock = Clock()
        clock.advance(time.time())
        names = NAMES if federated else ("am1",)
        federation = LoopbackFederation(
            folder,
            reactor,
            clock,
            aggregate_names=names,
            user_names=("alice", "bob"),
            with_agents=with_agents,
            agent_retry=0.05,
            slice_manager="sm" if federated else None,
        )
        self.addCleanup(lambda: Deferred.fromCoroutine(federation.stop()))
        await federation.start()
        self.federation = federation
        if break_gateway is not None:
            if with_agents:
                await federation.stop_agent(break_gateway)
            else:
                federation.gateways[break_gateway].set_reachable(False)

        async def wait(seconds: float) -> None:
            clock.advance(seconds)
            for service in federation.aggregates.values():
                await service.resource_manager.sweep()

        if federated:
            server = "sm"
            credentials = (federation.user_credential("alice"), federation.delegated_slice_credential("demo", "alice"))
        else:
            server = "am1"
            credentials = (federation.user_credential("alice"), federation.slice_credential("demo", "alice"))
        experiment = Experiment(
            federation.client("alice", server, credentials),
            federation.slice_urn("demo"),
            federation.domain.user_urn("alice"),
            clock.seconds,
            wait,
            lambda: gateway_views(federation, names),
            aggregate_urns=tuple(federation.domain.aggregate_urn(name) for name in book) if federated else (),
        )
        self.ok = await experiment.run()
        return experiment

    def step(self, experiment: Experiment, name: str) -> Step:
        return next(s for s in experiment.steps if s.name == name)

    def check_all_behaved(self, experiment: Experiment, gateway: str = "") -> None:
        self.assertTrue(self.ok, render_steps(experiment.steps))
        self.assertEqual([s.name for s in experiment.steps][-1], "Delete")
        self.assertIn(f"gateway: {gateway.format(EMPTY)}", self.step(experiment, "Provision").detail)
        ready = self.step(experiment, "Status until ready")
        self.assertIn("geni_ready", ready.detail)
        self.assertIn(f"gateway: {gateway.format(APPLIED)}", ready.detail)
        self.assertIn(f"gateway: {gateway.format(EMPTY)}", self.step(experiment, "Status after the slot").detail)

    def check_statistics(self, experiment: Experiment) -> None:
        """Every forwarded step's statistics name both aggregates, with the expected status."""
        self.assertEqual(self.step(experiment, "GetVersion").statistics, [])
        for step in experiment.steps[1:]:
            statuses = {s.name: (s.status, s.code_name) for s in step.statistics}
            expected = ("error", "SEARCHFAILED") if step.name == "Status after the slot" else ("success", "")
            self.assertEqual(statuses, {AM1: expected, AM2: expected}, step.name)

    async def test_every_step_behaves_through_slice_manager(self) -> None:
        """
        Through the slice manager with a delegated slice credential, all
        eight steps pass on both islands: one sliver each, both agents
        (asked over PB) hold the configuration during the slot only, and
        the statistics of each forwarded call list both aggregates.
        """
        experiment = await self.run_experiment()
        self.check_all_behaved(experiment, "am1 {0} | am2 {0}")
        self.check_statistics(experiment)
        version = self.step(experiment, "GetVersion").detail
        self.assertIn("slice manager sm", version)
        self.assertIn(f"am1 {self.federation.url('am1')}", version)
        self.assertIn(f"am2 {self.federation.url('am2')}", version)
        self.assertIn("2 sliver(s) at am1, am2", self.step(experiment, "Allocate").detail)
        self.assertIn("SEARCHFAILED from am1, am2", self.step(experiment, "Status after the slot").detail)
        allocate = next(line for line in render_statistics(experiment.steps).splitlines() if line.startswith("Allocate"))
        self.assertEqual(allocate.split(), ["Allocate", "success", "0", "ms", "success", "0", "ms"])

    async def test_bookings_belong_to_the_user(self) -> None:
        """Each aggregate booked its part for alice, the root of the delegation, not for the slice manager."""
        await self.run_experiment()
        for name in NAMES:
            service = self.federation.aggregates[name]
            bookings = await service.store.list_by_slice(self.federation.slice_urn("demo"))
            self.assertEqual({b.owner_urn for b in bookings}, {self.federation.domain.user_urn("alice")}, name)

    async def test_every_step_behaves_in_process(self) -> None:
        """The same experiment passes with in-process simulated gateways."""
        experiment = await self.run_experiment(with_agents=False)
        self.check_all_behaved(experiment, "am1 {0} | am2 {0}")
        self.check_statistics(experiment)

    async def test_every_step_behaves_direct(self) -> None:
        """Against one aggregate directly (--direct), with its agent over PB, all steps pass without statistics."""
        experiment = await self.run_experiment(federated=False)
        self.check_all_behaved(experiment, "{0}")
        self.assertEqual([s for s in experiment.steps if s.statistics], [])
        self.assertEqual(render_statistics(experiment.steps), "")

    async def test_failure_is_reported(self) -> None:
        """
        With am2's agent stopped its half never becomes ready: the run
        fails at that step, naming the state, and the gateway column says
        am2's agent is unreachable while am1's answers.
        """
        experiment = await self.run_experiment(break_gateway="am2")
        self.assertFalse(self.ok)
        last = experiment.steps[-1]
        self.assertEqual((last.name, last.ok), ("Status until ready", False))
        self.assertIn("geni_configuring", last.detail)
        provisioned = self.step(experiment, "Provision").detail
        self.assertIn(f"am1 {EMPTY} | am2 unknown (gateway agent unreachable", provisioned)

    async def test_unknown_aggregate_fails_first_step(self) -> None:
        """An experiment booking an island the slice manager does not front fails at GetVersion, naming it."""
        experiment = await self.run_experiment(book=("am1", "am3"))
        self.assertFalse(self.ok)
        self.assertEqual(len(experiment.steps), 1)
        self.assertIn("does not list am3 among its peers", experiment.steps[0].detail)


class RenderTests(SynchronousTestCase):
    """The tables, the gateway column, the agents' lines, the request and the command's flags."""

    def test_table(self) -> None:
        """Each step is a row with its verdict."""
        table = render_steps([Step("GetVersion", True, "AM API 3", 1.0), Step("Allocate", False, "taken", 2.0)])
        self.assertIn("GetVersion  yes", table)
        self.assertIn("Allocate    NO", table)

    def test_statistics_table(self) -> None:
        """A row per step with statistics, a column per aggregate, and a line per failure saying why."""
        steps = [
            Step("GetVersion", True, "", 1.0),
            Step("Allocate", True, "", 2.0, [AggregateStatistics(AM1, 0.012, "success"), AggregateStatistics(AM2, 0.0305, "success")]),
            Step(
                "Status",
                False,
                "",
                2.0,
                [AggregateStatistics(AM1, 0.004, "success"), AggregateStatistics(AM2, 1.5, "timeout", 8, "no answer in 1.5 s")],
            ),
        ]
        self.assertEqual(
            render_statistics(steps).splitlines(),
            [
                "step      am1            am2",
                "--------  -------------  ------------------------",
                "Allocate  success 12 ms  success 30 ms",
                "Status    success 4 ms   timeout TIMEDOUT 1500 ms",
                "  Status, am2: no answer in 1.5 s",
            ],
        )

    def test_statistics_of(self) -> None:
        """Statistics come from C{geniam_statistics}, or from a returned advertisement's C{<statistics>}."""
        struct = {
            "code": {"geni_code": 0},
            "value": [],
            "geniam_statistics": {
                "call": "Delete",
                "aggregates": [{"name": AM1, "url": "https://a/", "elapsed": 0.5, "status": "error", "code": 12, "exception": "gone"}],
            },
        }
        self.assertEqual(statistics_of(struct), [AggregateStatistics(AM1, 0.5, "error", 12, "gone")])
        self.assertEqual(statistics_of(struct)[0].code_name, "SEARCHFAILED")
        ad = (
            '<rspec xmlns="http://www.geni.net/resources/rspec/3" type="advertisement">'
            f'<statistics call="ListResources"><aggregate name="{AM2}" elapsed="0.25" status="success"/></statistics></rspec>'
        )
        self.assertEqual(statistics_of({"code": {"geni_code": 0}, "value": ad}), [AggregateStatistics(AM2, 0.25, "success")])
        self.assertEqual(statistics_of({"code": {"geni_code": 0}, "value": "<rspec/>"}), [])

    def test_federated_request_splits_per_island(self) -> None:
        """The federated request gives each aggregate exactly its own island node and slot."""
        request = federated_request(1000.0, 2000.0, [AM1, AM2], "127.0.0.1:6633", {"10": "0xffff"})
        parts = split_request(request, [AM1, AM2])
        self.assertEqual(sorted(parts), [AM1, AM2])
        for urn in (AM1, AM2):
            parsed = parse_request(parts[urn], urn)
            self.assertEqual((parsed.start, parsed.end, parsed.controller), (1000.0, 2000.0, "127.0.0.1:6633"))
            self.assertEqual(list(parsed.node_client_ids), [f"island-{short_name(urn)}"])
            self.assertEqual(list(parsed.foreign_node_client_ids), [])

    def test_federated_request_needs_an_aggregate(self) -> None:
        """A federated request naming no aggregate is refused with BADARGS."""
        with self.assertRaises(GeniError) as cm:
            federated_request(1000.0, 2000.0, [])
        self.assertEqual(cm.exception.code, GeniCode.BADARGS)

    def test_short_name(self) -> None:
        """Aggregate and sliver URNs are shortened to their authority's last part; other text is kept."""
        self.assertEqual(short_name(AM1), "am1")
        self.assertEqual(short_name("urn:publicid:IDN+geniam:demo:am2+sliver+abc"), "am2")
        self.assertEqual(short_name("https://127.0.0.1:8001/"), "https://127.0.0.1:8001/")

    def test_options(self) -> None:
        """The slot lead and length are numbers; agents and the slice manager run unless --in-process or --direct."""
        options = Options()
        options.parseOptions(["--lead", "2", "--length", "3"])
        self.assertEqual((options["lead"], options["length"], options["in-process"], options["direct"]), (2.0, 3.0, False, False))
        options = Options()
        options.parseOptions(["--in-process", "--direct"])
        self.assertTrue(options["in-process"])
        self.assertTrue(options["direct"])
        self.assertFalse(options["serve"])
        options = Options()
        options.parseOptions(["--serve"])
        self.assertTrue(options["serve"])

    def test_describe_state(self) -> None:
        """The gateway column summarises the agent's state."""
        self.assertEqual(describe_state({"users": [], "proxy": "", "vlans": {}}), "users=0 proxy=- vlans=-")
        self.assertEqual(
            describe_state({"users": ["k1", "k2"], "proxy": "10.0.0.1:6633", "vlans": {"10": "20"}}),
            "users=2 proxy=10.0.0.1:6633 vlans={'10': '20'}",
        )

    def test_agent_printer(self) -> None:
        """The agents' applied calls are printed, named by island when labels are given; other log events are not."""
        lines: list[str] = []
        printer: Any = agent_printer(lines.append)
        agent_log = Logger(namespace=AGENT_LOG_NAMESPACE, observer=printer)
        agent_log.info("{peer}: {method} {detail}", peer="am", method="setUserAuth", detail="1 keys")
        agent_log.info("{peer}: {method} {detail}", peer="am", method="remTCPProxy", detail="")
        Logger(namespace="geniam.other", observer=printer).info("{method}", method="nope")
        self.assertEqual(lines, ["  agent: setUserAuth 1 keys", "  agent: remTCPProxy"])
        labelled: list[str] = []
        agent_log = Logger(namespace=AGENT_LOG_NAMESPACE, observer=agent_printer(labelled.append, {AM2: "am2"}))
        agent_log.info("{peer}: {method} {detail}", peer=AM2, method="setOvs", detail="1 mappings")
        self.assertEqual(labelled, ["  am2 agent: setOvs 1 mappings"])
