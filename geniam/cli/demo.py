# -*- test-case-name: tests.test_demo -*-
"""
C{geniam demo}: a federation on loopback and one experiment through it.

It makes a development trust domain in a temporary folder and starts, all
on 127.0.0.1: two island aggregate managers (C{am1} and C{am2}), each
with its gateway agent as its own service (the simulated back end, its
state file in that folder) reached over Perspective Broker on mutual TLS
(as C{twistd geniam-am --agent} does), and one slice manager in front of
both (as C{twistd geniam-sm} runs, with its own identity and its own
credential for listing resources).

The user, alice, then calls only the slice manager: GetVersion (the slice
manager and its peers), ListResources (the merged advertisement),
Allocate a slot a few seconds ahead on both islands (one request naming
both; each aggregate receives only its part), Provision, Status until
ready, Renew, Status after the slot, Delete. She presents her user
credential and her slice credential I{delegated to the slice manager}
(what C{geniam authority delegate --to SM-CERT} writes): the slice manager
calls the aggregates with its own certificate, and the aggregates book
for alice, at the root of the delegation.

The step table's gateway column is what each island's agent reports it
has applied, asked over PB, so it shows the agents applying the
configuration at the slot's start and removing it at the end; the
statistics table shows what the slice manager reported per aggregate for
each forwarded call. With C{--direct} the experiment runs against one
aggregate without a slice manager; with C{--in-process} the aggregates use
in-process simulated gateways. With C{--transaction} alice books both
islands in one transaction through the slice manager
(L{geniam.demotransaction}) while a competing slice is refused. Each step is checked and printed; the exit
status is 0 only if all behaved.

Every server has its booking calendar on a status listener (plain HTTP on
127.0.0.1); the demo prints their URLs. With C{--serve} the federation
stays up after the experiment, with two sample bookings ahead, until
interrupted (Ctrl-C), so a person can look at the calendars.

With C{--tickets} the demo runs one aggregate and walks a slice through
the ProtoGENI component manager API instead (L{geniam.demotickets}):
GetTicket, Resolve, RedeemTicket, UpdateSliver, RedeemTicket,
DeleteSliver, DeleteSlice, printing the slice's state after each.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.task import deferLater, react
from twisted.logger import LogEvent, globalLogPublisher
from twisted.python import usage

from geniam.cli.call import cm_url
from geniam.client import AMClient
from geniam.demo import DEMO_KEY, Experiment, Step, render_statistics, render_steps
from geniam.demotickets import TicketWalk
from geniam.demotransaction import TransactionExperiment, rival_client
from geniam.errors import GeniError
from geniam.loopback import LoopbackFederation
from geniam.options import GeniamOptions

FEDERATED = ("am1", "am2")
"""The aggregates of the demo federation."""

SLICE_MANAGER = "sm"
"""The slice manager's name in the demo's trust domain."""


class Options(GeniamOptions):
    """Flags of C{geniam demo}."""

    synopsis = "geniam demo [options]"
    optParameters = [
        ["lead", None, 5.0, "Seconds from now until the booked slot starts.", float],
        ["length", None, 10.0, "Seconds the slot lasts.", float],
        ["folder", None, None, "Keep the trust domain and databases in this folder (default: a temporary one)."],
    ]
    optFlags = [
        ["in-process", None, "Use in-process simulated gateways instead of gateway agent services."],
        ["direct", None, "Call one aggregate directly, without a slice manager."],
        ["serve", None, "Keep the federation up after the experiment (with sample bookings) until interrupted."],
        ["tickets", None, "Walk a slice through the ProtoGENI component manager's tickets on one aggregate instead."],
        ["transaction", None, "Book both islands in one two-phase transaction through the slice manager, "
         "with a competing slice refused while it is open."],
    ]

    def postOptions(self) -> None:
        """Check the flags go together."""
        if self["transaction"] and (self["direct"] or self["tickets"]):
            raise usage.UsageError("--transaction needs the slice manager: it goes with neither --direct nor --tickets")


def describe_state(state: dict[str, Any]) -> str:
    """One line for the table: what a gateway reports it has applied."""
    return f"users={len(state['users'])} proxy={state['proxy'] or '-'} vlans={dict(state['vlans']) or '-'}"


async def gateway_view(federation: LoopbackFederation, aggregate: str) -> str:
    """Ask the aggregate's gateway (its agent, over PB, when it has one) what it has applied."""
    return describe_state(await federation.gateway_state(aggregate))


async def gateway_views(federation: LoopbackFederation, aggregates: Sequence[str]) -> str:
    """
    What each aggregate's gateway has applied, asked at once: the one
    line of L{gateway_view} for one aggregate, C{"am1 ... | am2 ..."} for
    several (C{unknown (why)} for a gateway that cannot tell).
    """
    if len(aggregates) == 1:
        return await gateway_view(federation, aggregates[0])

    async def one(name: str) -> str:
        try:
            return await gateway_view(federation, name)
        except GeniError as e:
            return f"unknown ({e.output})"

    views = await gatherResults([Deferred.fromCoroutine(one(name)) for name in aggregates])
    return " | ".join(f"{name} {view}" for name, view in zip(aggregates, views))


AGENT_LOG_NAMESPACE = "geniam.agent.perspective.GatewayPerspective"
"""Where the gateway agent logs each call it applies."""


def agent_printer(write: Any = print, labels: Mapping[str, str] | None = None) -> Any:
    """
    A log observer printing what the gateway agents apply, one line per
    call. With C{labels} (the logged-in aggregate's URN to a short name)
    each line names the island whose agent applied it.
    """

    def observe(event: LogEvent) -> None:
        if event.get("log_namespace") == AGENT_LOG_NAMESPACE and "method" in event:
            label = (labels or {}).get(str(event.get("peer", "")))
            who = f"{label} agent" if label else "agent"
            write(f"  {who}: {event['method']} {event.get('detail', '')}".rstrip())

    return observe


def _show(step: Step) -> None:
    print(f"  {'ok ' if step.ok else 'FAILED'} {step.name}: {step.detail}")


def _introduce(federation: LoopbackFederation) -> None:
    """Print where each server listens."""
    for name, service in federation.aggregates.items():
        if federation.with_agents:
            port = federation.agent_ports[name]
            print(f"geniam demo: gateway agent {federation.agent_urn(name)} at 127.0.0.1:{port} (PB over TLS)")
        else:
            print(f"geniam demo: simulated gateway of {name} in process")
        print(f"geniam demo: aggregate manager {service.urn} at {service.url}")
    if federation.sm is not None:
        print(f"geniam demo: slice manager {federation.sm.urn} at {federation.sm.url}, in front of {', '.join(federation.aggregates)}")
    for name in federation.aggregates:
        print(f"geniam demo: booking calendar of {name} at {federation.calendar_url(name)}")
    if federation.sm is not None and federation.slice_manager is not None:
        print(f"geniam demo: booking calendar of the federation at {federation.calendar_url(federation.slice_manager)}")


async def book_samples(client: Any, slice_urn: str, now: float, aggregate_urns: Sequence[str]) -> list[str]:
    """
    Book two sample slots for people to look at: one hour from now for two
    hours on every island, and three hours later for one hour on the first.
    @return: one line per booking, saying how it went.
    """
    from geniam.client import value_of
    from geniam.rspec.request import build_request
    from geniam.timeutil import format_time

    start = now - now % 60 + 3600
    wanted = [(start, start + 7200, list(aggregate_urns)), (start + 18000, start + 21600, list(aggregate_urns[:1]))]
    lines = []
    for begin, end, urns in wanted:
        request = build_request(begin, end, am_urns=urns) if len(urns) > 1 else build_request(begin, end, am_urn=urns[0] if urns else None)
        try:
            value_of(await client.allocate(slice_urn, request))
            lines.append(f"booked {format_time(begin)} to {format_time(end)}")
        except GeniError as e:
            lines.append(f"could not book {format_time(begin)}: {e.output}")
    return lines


async def serve_until_stopped(reactor: Any, cleanup: Any) -> None:
    """Wait until the reactor is asked to stop (Ctrl-C), then run C{cleanup} before it does."""
    reactor.addSystemEventTrigger("before", "shutdown", lambda: Deferred.fromCoroutine(cleanup()))
    await Deferred()


async def run(reactor: Any, options: Options) -> int:
    """Start the federation, run the experiment, print the tables."""
    folder = Path(options["folder"] or tempfile.mkdtemp(prefix="geniam-demo-"))
    print(f"geniam demo: trust domain and databases in {folder}")
    direct = bool(options["direct"] or options["tickets"])
    names = ("am1",) if direct else FEDERATED
    federation = LoopbackFederation(
        folder,
        reactor,
        aggregate_names=names,
        user_names=("alice",),
        with_agents=not options["in-process"],
        slice_manager=None if direct else SLICE_MANAGER,
        status=True,
    )
    labels = {federation.domain.aggregate_urn(name): name for name in names}
    printer = agent_printer(labels=None if direct else labels)
    globalLogPublisher.addObserver(printer)
    serving = False

    async def cleanup() -> None:
        globalLogPublisher.removeObserver(printer)
        await federation.stop()
        if not options["folder"]:
            shutil.rmtree(folder, ignore_errors=True)

    try:
        try:
            await federation.start()
        except Exception as e:
            print(f"geniam demo: the federation did not start: {e}")
            return 1
        _introduce(federation)
        slice_name = "demo"
        if options["tickets"]:
            return await walk_tickets(reactor, federation, slice_name)
        if direct:
            server = "am1"
            credentials = (federation.user_credential("alice"), federation.slice_credential(slice_name, "alice"))
        else:
            server = SLICE_MANAGER
            credentials = (
                federation.user_credential("alice"),
                federation.delegated_slice_credential(slice_name, "alice"),
            )
            print(
                "geniam demo: alice calls only the slice manager, with her user credential and her slice "
                "credential delegated to it (geniam authority delegate --to <slice manager certificate>)"
            )
        client = federation.client("alice", server, credentials)
        experiment = Experiment(
            client,
            federation.slice_urn(slice_name),
            federation.domain.user_urn("alice"),
            reactor.seconds,
            lambda seconds: deferLater(reactor, seconds, lambda: None),
            lambda: gateway_views(federation, names),
            lead=options["lead"],
            length=options["length"],
            on_step=_show,
            aggregate_urns=() if direct else tuple(federation.aggregates[name].urn for name in names),
        )
        if options["transaction"]:
            experiment = TransactionExperiment.competing(
                experiment, rival_client(federation, server, "alice", "rival"), federation.slice_urn("rival")
            )
        ok = await experiment.run()
        print()
        print(render_steps(experiment.steps))
        statistics = render_statistics(experiment.steps)
        if statistics:
            print()
            print("What the slice manager reported per aggregate (the last call of each step):")
            print(statistics)
        print()
        print("geniam demo: every step behaved" if ok else "geniam demo: a step failed")
        if options["serve"]:
            urns = [] if direct else [federation.aggregates[name].urn for name in names]
            for line in await book_samples(client, federation.slice_urn(slice_name), reactor.seconds(), urns):
                print(f"geniam demo: {line}")
            _introduce(federation)
            print("geniam demo: serving until interrupted (Ctrl-C)")
            serving = True
            await serve_until_stopped(reactor, cleanup)
        return 0 if ok else 1
    finally:
        if not serving:
            await cleanup()


async def walk_tickets(reactor: Any, federation: LoopbackFederation, slice_name: str) -> int:
    """Walk alice's slice through the component manager's diagram on am1; print each state; return the exit status."""
    url = cm_url(federation.url("am1"))
    print(f"geniam demo: alice calls the component manager API at {url} with her slice credential")
    client = AMClient(reactor, url, federation.domain.user("alice"), federation.domain.roots())
    try:
        walk = TicketWalk(
            client,
            federation.slice_urn(slice_name),
            [federation.slice_credential(slice_name, "alice")],
            DEMO_KEY,
            reactor.seconds,
            on_step=_show,
        )
        ok = await walk.run()
    finally:
        await client.close()
    print()
    print(render_steps(walk.steps))
    print()
    print("geniam demo: every step behaved" if ok else "geniam demo: a step failed")
    return 0 if ok else 1


def main(argv: Sequence[str]) -> int:
    """Entry point of C{geniam demo}."""
    options = Options()
    try:
        options.parseOptions(list(argv))
    except usage.UsageError as e:
        print(f"geniam demo: {e}\n\n{options}", file=sys.stderr)
        return 2
    status: list[int] = []

    async def go(reactor: Any) -> None:
        status.append(await run(reactor, options))

    try:
        react(lambda reactor: Deferred.fromCoroutine(go(reactor)))
    except SystemExit:
        pass
    return status[0] if status else 1
