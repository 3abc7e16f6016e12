"""
/metrics, /healthz and the structured call and access logs of real
daemons: an aggregate (with and without a gateway agent over PB), a slice
manager in front of it, called over TLS on loopback with real
credentials; the status listeners fetched over plain HTTP.
"""

from __future__ import annotations

import io
import json
import time
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher

from geniam.agent.status import AgentStatusService
from geniam.client import value_of
from geniam.loopback import LoopbackFederation
from geniam.observe.logformat import json_observer
from tests.calendar_harness import CalendarHarness, make_domain, tomorrow_at
from tests.domains import copied_domain


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, by name and sorted labels."""
    found = {}
    for family in text_string_to_metric_families(text.decode("utf-8")):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found: dict[Any, float], name: str, **labels: str) -> float:
    """One sample's value (0 when absent: a counter not yet incremented)."""
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


class ObservedFederationHarness(CalendarHarness):
    """Fetches the status listeners' /metrics and /healthz."""

    def status_url(self, server: str, path: str) -> str:
        return self.fed.calendar_url(server) + path

    async def metrics(self, server: str = "am1") -> dict[Any, float]:
        code, headers, body = await self.fetch(self.status_url(server, "metrics"))
        self.assertEqual(code, 200)
        self.assertTrue(headers["content-type"][0].startswith("text/plain"))
        return samples(body)

    async def health(self, server: str = "am1") -> tuple[int, str]:
        code, _, body = await self.fetch(self.status_url(server, "healthz"))
        return code, body.decode("utf-8")


class AggregateMetricsTests(ObservedFederationHarness):
    """An aggregate's /metrics move with the calls it answers."""

    async def test_calls_bookings_and_cache(self) -> None:
        """GetVersion, Allocate and a refused Describe are counted by method and code, timed, and the booking counted."""
        await self.start()
        before = await self.metrics()
        self.assertEqual(value(before, "geniam_up", role="am"), 1.0)
        self.assertEqual(value(before, "geniam_bookings", state="allocated"), 0.0)
        self.assertEqual(value(before, "geniam_gateway_link_up", last_error=""), 1.0)
        self.assertEqual(value(before, "geniam_store_up"), 1.0)
        self.assertEqual(value(before, "geniam_gateway_driver"), 1.0)
        self.assertEqual(value(before, "geniam_slot_boundary_lateness_seconds_count", edge="start"), 0.0)
        self.assertEqual(value(before, "geniam_gateway_config_retries_total"), 0.0)
        alice = self.alice()
        value_of(await alice.get_version())
        start = tomorrow_at(self.clock.seconds(), 10)
        slivers = await self.book(start, start + 3600)
        struct = await alice.describe([slivers[0].replace("sliver+", "sliver+nosuch")])
        self.assertNotEqual(struct["code"]["geni_code"], 0)
        code_name = {7: "REFUSED", 12: "SEARCHFAILED", 2: "BADARGS"}.get(struct["code"]["geni_code"])
        after = await self.metrics()
        self.assertEqual(value(after, "geniam_calls_total", method="GetVersion", code="SUCCESS")
                         - value(before, "geniam_calls_total", method="GetVersion", code="SUCCESS"), 1.0)
        self.assertEqual(value(after, "geniam_calls_total", method="Allocate", code="SUCCESS"), 1.0)
        self.assertEqual(value(after, "geniam_calls_total", method="Describe", code=str(code_name)), 1.0)
        self.assertEqual(value(after, "geniam_call_duration_seconds_count", method="Allocate"), 1.0)
        self.assertGreater(value(after, "geniam_call_duration_seconds_sum", method="Allocate"), 0.0)
        self.assertEqual(value(after, "geniam_bookings", state="allocated"), 1.0)
        checked = value(after, "geniam_credential_cache_hits_total") + value(after, "geniam_credential_cache_misses_total")
        self.assertGreater(checked, value(before, "geniam_credential_cache_hits_total") + value(before, "geniam_credential_cache_misses_total"))

    async def test_registries_apart(self) -> None:
        """Two aggregates in one process count their own calls only."""
        await self.start(aggregates=("am1", "am2"))
        value_of(await self.alice("am1").get_version())
        first, second = await self.metrics("am1"), await self.metrics("am2")
        self.assertGreater(value(first, "geniam_calls_total", method="GetVersion", code="SUCCESS"), 0.0)
        self.assertEqual(value(second, "geniam_calls_total", method="GetVersion", code="SUCCESS"), 0.0)


class SliceManagerMetricsTests(ObservedFederationHarness):
    """A slice manager's /metrics: its own calls and its peers'."""

    async def test_peer_metrics(self) -> None:
        """A ListResources through the SM is counted for the SM and per peer, with the peer's breaker closed."""
        fed = await self.start(slice_manager="sm")
        before = await self.metrics("sm")
        peer = fed.domain.aggregate_urn("am1")
        value_of(await self.alice("sm").list_resources())
        after = await self.metrics("sm")
        self.assertEqual(value(after, "geniam_up", role="sm"), 1.0)
        self.assertEqual(value(after, "geniam_calls_total", method="ListResources", code="SUCCESS"), 1.0)
        self.assertGreater(
            value(after, "geniam_peer_calls_total", peer=peer, outcome="success"),
            value(before, "geniam_peer_calls_total", peer=peer, outcome="success"),
        )
        self.assertGreater(value(after, "geniam_peer_call_duration_seconds_count", peer=peer), 0.0)
        self.assertEqual(value(after, "geniam_peer_breaker_state", peer=peer, state="closed"), 1.0)
        self.assertEqual(value(after, "geniam_peer_breaker_state", peer=peer, state="open"), 0.0)


class HealthTests(ObservedFederationHarness):
    """/healthz follows the store and the gateway agent."""

    async def test_store_goes_away_and_back(self) -> None:
        """With its store closed the AM answers 503 naming the store; reopened, 200."""
        fed = await self.start()
        self.assertEqual(await self.health(), (200, "listener: ok\nstore: ok\ndriver: yes\n"))
        store = fed.aggregates["am1"].store
        await store.stop()
        code, text = await self.health()
        self.assertEqual(code, 503)
        self.assertIn("listener: ok\n", text)
        self.assertIn("store: the booking store is not open", text)
        after = await self.metrics()
        self.assertEqual(value(after, "geniam_store_up"), 0.0)
        self.flushLoggedErrors()
        await store.start()
        self.assertEqual((await self.health())[0], 200)

    async def test_agent_goes_away_and_back(self) -> None:
        """Stopping the real gateway agent makes /healthz 503 and the link metric 0; its return makes it 200."""
        fed = await self.start(with_agents=True)
        self.assertEqual(await self.health(), (200, "listener: ok\nstore: ok\ngateway: ok\ndriver: yes\n"))
        gateway = fed.gateways["am1"]
        lost: Deferred[None] = Deferred()
        gateway.add_connection_observer(lambda up: None if up or lost.called else lost.callback(None))
        await fed.stop_agent("am1")
        await lost
        code, text = await self.health()
        self.assertEqual(code, 503)
        self.assertIn("gateway: gateway agent unreachable: connection lost", text)
        down = await self.metrics()
        self.assertEqual(value(down, "geniam_gateway_link_up", last_error="connection lost"), 0.0)
        self.assertEqual(value(down, "geniam_gateway_link_changes_total", event="lost"), 1.0)
        await fed.start_agent("am1")
        connected = gateway.when_connected()
        connected.addTimeout(30, reactor)
        await connected
        self.assertEqual((await self.health())[0], 200)
        up = await self.metrics()
        self.assertEqual(value(up, "geniam_gateway_link_up", last_error=""), 1.0)


class JsonLogTests(ObservedFederationHarness):
    """The call and access log events, written as JSON lines."""

    async def test_call_and_access_lines(self) -> None:
        """An Allocate logs one call line and one access line, both JSON, with the call's fields."""
        fed = await self.start()
        out = io.StringIO()
        observer = json_observer(out)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        start = tomorrow_at(self.clock.seconds(), 10)
        slivers = await self.book(start, start + 3600)
        await self.alice().get_version()
        globalLogPublisher.removeObserver(observer)
        lines = [json.loads(line) for line in out.getvalue().splitlines()]
        self.assertTrue(lines)
        calls = [line for line in lines if line["namespace"] == "geniam.calls" and line["method"] == "Allocate"]
        access = [line for line in lines if line["namespace"] == "geniam.access" and line.get("method") == "Allocate"]
        self.assertEqual((len(calls), len(access)), (1, 1))
        for line in (calls[0], access[0]):
            self.assertIn("+user+alice", line["caller_urn"])
            self.assertEqual(line["slice_urn"], fed.slice_urn("exp1"))
            self.assertEqual(line["sliver_urns"], slivers)
            self.assertEqual((line["geni_code"], line["geni_code_name"]), (0, "SUCCESS"))
            self.assertIsInstance(line["duration"], float)
            self.assertEqual(line["level"], "info")
        self.assertEqual((access[0]["http_method"], access[0]["status"]), ("POST", 200))
        self.assertIn("Allocate from", calls[0]["message"])


class AgentStatusTests(ObservedFederationHarness):
    """The gateway agent's own status listener."""

    async def test_agent_metrics_and_health(self) -> None:
        """The agent with --status-port answers /healthz 200 and counts the AM's PB connection."""
        folder = copied_domain(self, "calendar", make_domain)
        self.clock = Clock()
        self.clock.advance(time.time())
        fed = LoopbackFederation(
            folder, reactor, self.clock, user_names=("alice",), with_agents=True, agent_args=("--status-port", "0")
        )
        await fed.start()
        self.addCleanup(lambda: Deferred.fromCoroutine(fed.stop()))
        status = next(s for s in fed.agents["am1"] if isinstance(s, AgentStatusService))
        code, _, body = await self.fetch(status.status.url + "healthz")
        self.assertEqual((code, body), (200, b"listener: ok\nbackend: ok\n"))
        code, _, body = await self.fetch(status.status.url + "metrics")
        found = samples(body)
        self.assertEqual(value(found, "geniam_up", role="agent"), 1.0)
        self.assertEqual(value(found, "geniam_agent_connections"), 1.0)
