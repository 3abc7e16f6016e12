# -*- test-case-name: tests.loopback.test_observe -*-
"""
A daemon's Prometheus metrics, through C{prometheus_client}, each service
in its own C{CollectorRegistry} (never the library's global one: tests run
several services in one process).

L{ServiceMetrics} holds what every role has (calls by method and GENI
code, call latency, the process's own figures) and runs I{refreshers}
before each scrape: coroutines that read what is only known by asking,
such as the store's bookings by state. The role-specific parts are
added by L{watch_aggregate}, L{watch_slice_manager} and L{watch_agent},
which read the objects they are given at scrape time, or subscribe to
their hooks; library code never imports this module.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from twisted.logger import Logger

from geniam.booking.values import AllocationState
from geniam.managers.breaker import BreakerState

CALL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
"""Latency buckets of a call, in seconds (a GetVersion to a fan-out that waits for a slow peer)."""

Refresher = Callable[[], Awaitable[None]]
"""A coroutine function that updates some metrics before a scrape."""


class ServiceMetrics:
    """
    The metrics of one daemon (C{role}: C{am}, C{sm} or C{agent}).

    @ivar registry: the service's own registry, which L{exposition} renders.
    """

    log = Logger()

    def __init__(self, role: str, process: bool = True) -> None:
        """
        @param process: also export this process's CPU, memory and open
            file descriptors (C{process_*}; Linux only).
        """
        self.role = role
        self.registry = CollectorRegistry()
        self._refreshers: list[Refresher] = []
        self.calls = Counter(
            "geniam_calls", "AM API calls answered, by method and GENI code (fault: an XML-RPC fault).",
            ["method", "code"], registry=self.registry,
        )
        self.call_seconds = Histogram(
            "geniam_call_duration_seconds", "Time from a call's arrival to its reply, by method.",
            ["method"], buckets=CALL_BUCKETS, registry=self.registry,
        )
        self.up = Gauge("geniam_up", "1 while the daemon serves (its role as label).", ["role"], registry=self.registry)
        self.up.labels(role).set(1)
        if process:
            ProcessCollector(registry=self.registry)

    def call_answered(self, method: str, code: str, duration: float) -> None:
        """Count one answered call and its latency."""
        self.calls.labels(method, code).inc()
        if method:
            self.call_seconds.labels(method).observe(duration)

    def add_refresher(self, refresher: Refresher) -> None:
        """Run C{refresher} before every scrape (its failure is logged, the scrape goes on)."""
        self._refreshers.append(refresher)

    def add_collector(self, collect: Callable[[], Iterable[Metric]]) -> None:
        """Export what C{collect()} yields at every scrape."""
        self.registry.register(_FunctionCollector(collect))

    async def exposition(self) -> bytes:
        """Refresh, then render every metric in the Prometheus text format."""
        for refresher in list(self._refreshers):
            try:
                await refresher()
            except Exception:
                self.log.failure("refreshing the {role}'s metrics failed", role=self.role)
        return bytes(generate_latest(self.registry))


class _FunctionCollector(Collector):
    def __init__(self, collect: Callable[[], Iterable[Metric]]) -> None:
        self._collect = collect

    def collect(self) -> Iterable[Metric]:
        return self._collect()


def watch_store(metrics: ServiceMetrics, store: Any) -> None:
    """
    Bookings by state (C{geniam_bookings}, counted in the store at scrape
    time) and whether the store answered (C{geniam_store_up}).
    """
    bookings = Gauge("geniam_bookings", "Bookings in the store, by state.", ["state"], registry=metrics.registry)
    up = Gauge("geniam_store_up", "1 if the booking store answered the last scrape's count, else 0.", registry=metrics.registry)

    async def count() -> None:
        try:
            for state in AllocationState:
                bookings.labels(state.value).set(await store.count([state]))
        except Exception:
            up.set(0)
            raise
        up.set(1)

    metrics.add_refresher(count)


def watch_verifier(metrics: ServiceMetrics, verifier: Any) -> None:
    """The credential verifier's cache hits and misses, read at scrape time."""

    def collect() -> Iterable[Metric]:
        yield CounterMetricFamily(
            "geniam_credential_cache_hits", "Credential checks answered from the verified-credential cache.", verifier.cache_hits
        )
        yield CounterMetricFamily(
            "geniam_credential_cache_misses", "Credential checks that had to verify signatures.", verifier.cache_misses
        )

    metrics.add_collector(collect)


def watch_gateway_link(metrics: ServiceMetrics, gateway: Any) -> None:
    """
    The AM's link to its gateway agent: C{geniam_gateway_link_up} (with the
    last error as a label while down) and C{geniam_gateway_link_changes_total}
    (connected, lost). A simulated gateway counts as always up.
    """
    changes = Counter(
        "geniam_gateway_link_changes", "Logins to and losses of the gateway agent.", ["event"], registry=metrics.registry
    )
    for event in ("connected", "lost"):
        changes.labels(event)
    add_observer = getattr(gateway, "add_connection_observer", None)
    if add_observer is not None:
        add_observer(lambda connected: changes.labels("connected" if connected else "lost").inc())

    def collect() -> Iterable[Metric]:
        connected = bool(getattr(gateway, "connected", True))
        family = GaugeMetricFamily(
            "geniam_gateway_link_up", "1 while logged in to the gateway agent (simulated: always 1); last_error says why not.",
            labels=["last_error"],
        )
        family.add_metric(["" if connected else str(getattr(gateway, "last_error", ""))], 1 if connected else 0)
        yield family

    metrics.add_collector(collect)


LATENESS_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0, 300.0)
"""Buckets of how late a slot's configuration reached the gateway, in seconds (a failover takes a few)."""


def watch_gateway_work(metrics: ServiceMetrics, island: Any, driver: Any) -> None:
    """
    The island's gateway work: how late each slot's start and end reached
    the gateway (C{geniam_slot_boundary_lateness_seconds}, by edge), how
    often failed gateway work was scheduled again
    (C{geniam_gateway_config_retries_total}), and whether this process
    drives the gateway (C{geniam_gateway_driver}).
    """
    lateness = Histogram(
        "geniam_slot_boundary_lateness_seconds",
        "Seconds between a slot's start or end and when its configuration was applied to or removed from the gateway.",
        ["edge"], buckets=LATENESS_BUCKETS, registry=metrics.registry,
    )
    for edge in ("start", "end"):
        lateness.labels(edge)
    retries = Counter(
        "geniam_gateway_config_retries", "Failed gateway work (applying or removing a configuration) scheduled for a retry.",
        registry=metrics.registry,
    )
    island.observe_gateway_work(lambda edge, seconds: lateness.labels(edge).observe(seconds), retries.inc)

    def collect() -> Iterable[Metric]:
        yield GaugeMetricFamily(
            "geniam_gateway_driver", "1 while this process drives the island's gateway (one process per island does).",
            1 if driver.driving else 0,
        )

    metrics.add_collector(collect)


def watch_slice_manager(metrics: ServiceMetrics, manager: Any) -> None:
    """
    Per peer: call latency (C{geniam_peer_call_duration_seconds}), outcomes
    (C{geniam_peer_calls_total}: success, error, timeout, refused by the
    breaker), breaker state and how often it opened, from the fan-out's
    outcome hook and the peers' breakers read at scrape time.
    """
    latency = Histogram(
        "geniam_peer_call_duration_seconds", "Time a peer took to answer a forwarded call.",
        ["peer"], buckets=CALL_BUCKETS, registry=metrics.registry,
    )
    outcomes = Counter(
        "geniam_peer_calls", "Calls forwarded to peers, by outcome (success, error, timeout, refused).",
        ["peer", "outcome"], registry=metrics.registry,
    )

    def outcome(method: str, result: Any) -> None:
        kind = result.status if result.called else "refused"
        outcomes.labels(result.name, kind).inc()
        if result.called:
            latency.labels(result.name).observe(result.elapsed)

    manager.fanout.observer = outcome

    def collect() -> Iterable[Metric]:
        state = GaugeMetricFamily(
            "geniam_peer_breaker_state", "1 for the current state of each peer's circuit breaker.", labels=["peer", "state"]
        )
        opened = CounterMetricFamily("geniam_peer_breaker_opened", "Times each peer's circuit opened.", labels=["peer"])
        for record in manager.records:
            current = record.breaker.state
            for each in BreakerState:
                state.add_metric([record.name, each.value], 1 if each is current else 0)
            opened.add_metric([record.name], record.breaker.opened)
        yield state
        yield opened

    metrics.add_collector(collect)


def watch_agent(metrics: ServiceMetrics, factory: Any) -> None:
    """The gateway agent's open PB connections (C{geniam_agent_connections})."""

    def collect() -> Iterable[Metric]:
        yield GaugeMetricFamily("geniam_agent_connections", "Aggregate managers connected to the agent.", factory.open_connections)

    metrics.add_collector(collect)
