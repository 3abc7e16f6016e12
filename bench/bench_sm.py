# -*- test-case-name: tests.managers.test_slice -*-
"""
Slice manager latency with many aggregates.

Run from the checkout: C{python bench/bench_sm.py [--short] [--delay 0.2]}.

N simulated aggregates run in this process, each answering every call
after C{--delay} seconds (200 ms by default), behind one slice manager on
the real reactor. For N = 10, 100, 500 and 1,000 it prints the latency of
ListResources (cache bypassed) and of Allocate (a request naming every
aggregate, split into N parts) through the slice manager, the CPU time
the process spent on it (the slice manager's own work, plus the small
cost of the simulated aggregates; steadier than the latency on a busy
machine), and the ratio to the slowest peer's delay (the target is at
most 1.15). Then the cost
of one dead peer among ten: one refusing connections, one hanging (the
first calls wait for the peer timeout; once its circuit opens they do
not).

Transports (C{--transport}):
  - C{memory} (default): the aggregates are in-process objects, so the
    figures are the slice manager's own cost: fan-out, timeouts,
    splitting, merging (in its worker threads, as in the daemon);
  - C{http}: each aggregate is a real XML-RPC server on 127.0.0.1 and the
    slice manager calls it with its HTTP client (keep-alive pool). The
    aggregates' own work then shares this process's CPU with the slice
    manager, so large N measure the machine more than the slice manager.

C{--short} runs N = 10 only (for CI).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from twisted.internet import task  # noqa: E402
from twisted.internet.defer import Deferred, fail  # noqa: E402
from twisted.python.threadpool import ThreadPool  # noqa: E402
from twisted.web.client import HTTPConnectionPool  # noqa: E402

from geniam.errors import success_struct  # noqa: E402
from geniam.managers.slice import SliceManager, SliceManagerInfo, SliceManagerSettings  # noqa: E402
from geniam.protocols.peer import PeerConnectionError, XmlRpcPeer  # noqa: E402
from geniam.protocols.xmlrpc import GeniXmlRpcResource, make_site  # noqa: E402
from geniam.rspec.advertisement import build_advertisement  # noqa: E402
from geniam.rspec.resources import IslandResources  # noqa: E402
from geniam.tap.heap import settle_heap  # noqa: E402
from geniam.trust.context import CallContext  # noqa: E402
from geniam.trust.forwarding import DELEGATION, OWN, Forwarding  # noqa: E402

GENI_V3 = {"type": "GENI", "version": "3"}
SLICE = "urn:publicid:IDN+bench.example+slice+bench"
SM_URN = "urn:publicid:IDN+bench.example+authority+sm"
NS = "http://www.geni.net/resources/rspec/3"
TARGET = 1.15


def am_urn(index: int) -> str:
    return f"urn:publicid:IDN+bench.example:am{index}+authority+am"


class SimulatedAggregate:
    """Answers GetVersion, ListResources, Allocate and Delete after a delay, like an island aggregate."""

    def __init__(self, index: int, reactor: Any, delay: float) -> None:
        self.index = index
        self.urn = am_urn(index)
        self.authority = f"bench.example:am{index}"
        self.url = f"https://am{index}.bench.example/"
        self.reactor = reactor
        self.delay = delay
        self.mode = "normal"
        resources = IslandResources.create(self.urn, ["00:00:00:00:00:00:00:01"], [])
        self.ad = build_advertisement(resources, [], reactor.seconds())
        self.serial = 0

    def answer(self, method: str, params: Sequence[Any]) -> Any:
        if method == "GetVersion":
            return success_struct({"geni_api": 3, "urn": self.urn})
        if method == "ListResources":
            return success_struct(self.ad)
        if method == "Allocate":
            self.serial += 1
            sliver = f"urn:publicid:IDN+{self.authority}+sliver+{self.serial}"
            manifest = (
                f'<rspec xmlns="{NS}" type="manifest"><node client_id="n{self.index}" '
                f'component_manager_id="{self.urn}" sliver_id="{sliver}"/></rspec>'
            )
            return success_struct(
                {
                    "geni_rspec": manifest,
                    "geni_slivers": [
                        {
                            "geni_sliver_urn": sliver,
                            "geni_allocation_status": "geni_allocated",
                            "geni_operational_status": "geni_notready",
                            "geni_expires": "2030-01-01T00:00:00Z",
                        }
                    ],
                }
            )
        return success_struct([])

    def delayed(self, method: str, params: Sequence[Any]) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        if self.mode == "hang":
            return d
        call = self.reactor.callLater(self.delay, lambda: d.callback(self.answer(method, params)))
        d.addErrback(lambda f: (call.active() and call.cancel(), f)[1])
        return d

    def call(self, method: str, *params: Any) -> Deferred[Any]:
        """The in-memory transport."""
        if self.mode == "dead":
            return fail(PeerConnectionError(self.url, method, "cannot connect: Connection refused"))
        return self.delayed(method, params)


class _Api:
    """The XML-RPC face of a simulated aggregate."""

    def __init__(self, aggregate: SimulatedAggregate) -> None:
        self._aggregate = aggregate
        for method in ("GetVersion", "ListResources", "Allocate", "Delete"):
            setattr(self, method, self._handler(method))

    def _handler(self, method: str) -> Callable[..., Deferred[Any]]:
        def handle(caller: Any, *params: Any) -> Deferred[Any]:
            return self._aggregate.delayed(method, params)

        return handle


class _OpenForwarder:
    """Lets every call through (credentials are not what is measured)."""

    async def for_resources(self, caller: Any, credentials: Any, options: Any) -> Forwarding:
        return Forwarding((), OWN)

    async def for_slice(self, caller: Any, credentials: Any, method: str, slice_urn: Any, options: Any) -> Forwarding:
        return Forwarding(tuple(credentials), DELEGATION, slice_urn)


class _Caller:
    urn = "urn:publicid:IDN+bench.example+user+bench"


class _Unasked:
    """The authorizer of the bench's calls: the slice manager asks only the forwarding policy."""

    def authorize(self, *args: Any) -> Deferred[Any]:
        raise AssertionError("the slice manager asked the authorizer")


def _context() -> CallContext:
    return CallContext(_Caller(), [], _Unasked(), _OpenForwarder())  # type: ignore[arg-type]


def request(count: int) -> str:
    nodes = "".join(f'<node client_id="n{i}" component_manager_id="{am_urn(i)}"/>' for i in range(count))
    return f'<rspec xmlns="{NS}" type="request">{nodes}</rspec>'


class Bench:
    """One slice manager in front of N simulated aggregates."""

    def __init__(self, reactor: Any, count: int, delay: float, transport: str, peer_timeout: float) -> None:
        self.reactor = reactor
        self.aggregates = [SimulatedAggregate(i, reactor, delay) for i in range(count)]
        self.transport = transport
        self.ports: list[Any] = []
        self.last_port_number = 0
        self.pool: HTTPConnectionPool | None = None
        self.threads = ThreadPool(minthreads=0, maxthreads=4, name="bench-sm")
        self.threads.start()
        peers: list[Any] = list(self.aggregates)
        if transport == "http":
            self.pool = HTTPConnectionPool(reactor, persistent=True)
            peers = []
            for aggregate in self.aggregates:
                resource = GeniXmlRpcResource(_Api(aggregate), lambda request: None)
                port = reactor.listenTCP(0, make_site(resource), interface="127.0.0.1")
                self.ports.append(port)
                aggregate.url = f"http://127.0.0.1:{port.getHost().port}/"
                peers.append(XmlRpcPeer(aggregate.url, reactor, pool=self.pool, timeout=peer_timeout))
        settings = SliceManagerSettings(
            peer_timeout=peer_timeout, deadline=peer_timeout * 2, max_concurrency=max(512, count), breaker_failures=3
        )
        self.sm = SliceManager(
            peers,
            reactor,
            SliceManagerInfo(SM_URN, "https://sm.bench.example/"),
            settings,
            threadpool=self.threads,
            reactor=reactor,
        )

    async def start(self) -> None:
        await self.sm.start()
        unknown = [r.url for r in self.sm.records if not r.known]
        if unknown:
            raise RuntimeError(f"{len(unknown)} simulated aggregates did not answer GetVersion")
        settle_heap()  # as geniam-sm does once started

    async def stop(self) -> None:
        try:
            for port in self.ports:
                if port.connected:
                    await port.stopListening()
            if self.pool is not None:
                await self.pool.closeCachedConnections()
        finally:
            self.threads.stop()
            gc.unfreeze()

    async def kill_last(self) -> None:
        """Make the last aggregate refuse connections (over HTTP: stop listening, drop kept-alive connections)."""
        last = self.aggregates[-1]
        if self.transport == "http":
            assert self.pool is not None
            port = self.ports[-1]
            self.last_port_number = port.getHost().port
            await port.stopListening()
            await self.pool.closeCachedConnections()
        else:
            last.mode = "dead"

    async def hang_last(self) -> None:
        """Make the last aggregate accept calls and never answer them."""
        last = self.aggregates[-1]
        last.mode = "hang"
        if self.transport == "http":
            site = make_site(GeniXmlRpcResource(_Api(last), lambda request: None))
            self.ports[-1] = self.reactor.listenTCP(self.last_port_number, site, interface="127.0.0.1")

    async def list_resources(self) -> tuple[float, dict[str, Any]]:
        started = time.perf_counter()
        struct = await self.sm.ListResources(_context(), {"geni_rspec_version": GENI_V3, "cached": False})
        return time.perf_counter() - started, struct

    async def allocate(self) -> tuple[float, dict[str, Any]]:
        rspec = request(len(self.aggregates))
        started = time.perf_counter()
        struct = await self.sm.Allocate(_context(), SLICE, rspec, {})
        return time.perf_counter() - started, struct


async def timed(function: Callable[[], Any], runs: int, cpu: list[float] | None = None) -> list[float]:
    """Wall seconds of each call; with C{cpu}, the process's CPU seconds of each are appended to it."""
    times = []
    for _ in range(runs):
        used = time.process_time()
        seconds, struct = await function()
        if cpu is not None:
            cpu.append(time.process_time() - used)
        if struct["code"]["geni_code"] not in (0,):
            raise RuntimeError(f"the call failed: {struct.get('output')}")
        times.append(seconds)
    return times


def row(label: str, count: int, times: list[float], delay: float, cpu: list[float]) -> str:
    median = statistics.median(times)
    ratio = median / delay
    verdict = "ok" if ratio <= TARGET else "over"
    return (
        f"{label:<14}{count:>6}{median * 1000:>11.1f}{max(times) * 1000:>10.1f}"
        f"{statistics.median(cpu) * 1000:>9.1f}{ratio:>8.3f}  {verdict}"
    )


def machine_speed(rounds: int = 5) -> float:
    """
    Milliseconds a fixed pure-Python loop takes now (the best of C{rounds}):
    the ratios depend on how fast this (shared) machine runs at the time,
    so each run prints it beside them.
    """
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        sum(i * i for i in range(200_000))
        best = min(best, time.process_time() - started)
    return best * 1000


async def scale(reactor: Any, counts: Sequence[int], delay: float, transport: str, runs: int) -> None:
    print(f"slice manager latency, {transport} transport, every aggregate answering after {delay * 1000:.0f} ms")
    print(f"machine speed now: a reference Python loop takes {machine_speed():.1f} ms (lower is faster)")
    print(f"{'call':<14}{'N':>6}{'median ms':>11}{'max ms':>10}{'cpu ms':>9}{'ratio':>8}  (target <= {TARGET})")
    for count in counts:
        bench = Bench(reactor, count, delay, transport, peer_timeout=max(5.0, delay * 10))
        try:
            await bench.start()
            await bench.list_resources()
            for label, call in (("ListResources", bench.list_resources), ("Allocate", bench.allocate)):
                cpu: list[float] = []
                print(row(label, count, await timed(call, runs, cpu), delay, cpu), flush=True)
        finally:
            await bench.stop()


async def dead_peer(reactor: Any, delay: float, transport: str, runs: int) -> None:
    count = 10
    timeout = max(1.0, delay * 5)
    print()
    print(f"cost of one dead peer among {count} ({transport} transport, peer timeout {timeout:g} s, breaker after 3 failures)")
    print(f"{'case':<38}{'median ms':>11}{'ratio':>8}")
    bench = Bench(reactor, count, delay, transport, peer_timeout=timeout)
    try:
        await bench.start()
        await bench.list_resources()
        healthy = await timed(bench.list_resources, runs)
        print(f"{'all healthy':<38}{statistics.median(healthy) * 1000:>11.1f}{statistics.median(healthy) / delay:>8.3f}")
        await bench.kill_last()
        refused = await timed(bench.list_resources, runs)
        print(f"{'one refusing connections':<38}{statistics.median(refused) * 1000:>11.1f}{statistics.median(refused) / delay:>8.3f}")
        for record in bench.sm.records:
            record.breaker.record_success()
        await bench.hang_last()
        first = await timed(bench.list_resources, 3)
        print(f"{'one hanging, circuit closed':<38}{statistics.median(first) * 1000:>11.1f}{statistics.median(first) / delay:>8.3f}")
        after = await timed(bench.list_resources, runs)
        state = bench.sm.records[-1].breaker.state.value
        print(f"{'same, circuit ' + state:<38}{statistics.median(after) * 1000:>11.1f}{statistics.median(after) / delay:>8.3f}")
    finally:
        await bench.stop()


async def run(reactor: Any, args: argparse.Namespace) -> None:
    counts = [10] if args.short else args.counts
    transports = [args.transport] if args.transport != "both" else ["memory", "http"]
    for transport in transports:
        chosen = counts if transport == "memory" or args.short else [c for c in counts if c <= args.http_max]
        await scale(reactor, chosen, args.delay, transport, args.runs)
        if not args.no_dead_peer:
            await dead_peer(reactor, args.delay, transport, args.runs)
        print()


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--short", action="store_true", help="N = 10 only")
    parser.add_argument("--counts", type=int, nargs="+", default=[10, 100, 500, 1000], help="the values of N")
    parser.add_argument("--delay", type=float, default=0.2, help="seconds each aggregate takes to answer")
    parser.add_argument("--runs", type=int, default=5, help="calls measured per figure (the median is shown)")
    parser.add_argument("--transport", choices=("memory", "http", "both"), default="memory")
    parser.add_argument("--http-max", type=int, default=100, help="the largest N run over HTTP")
    parser.add_argument("--no-dead-peer", action="store_true", help="skip the dead peer figures")
    args = parser.parse_args(argv)

    def react(reactor: Any) -> Deferred[None]:
        return Deferred.fromCoroutine(run(reactor, args))

    task.react(react)
    return 0


if __name__ == "__main__":
    sys.exit(main())
