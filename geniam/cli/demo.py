# -*- test-case-name: tests.test_demo -*-
"""
C{geniam demo}: a federation on loopback and one experiment through it.

It makes a development trust domain in a temporary folder, starts the
island's gateway agent as its own service on 127.0.0.1 (the simulated back
end, its state file in that folder), starts the aggregate manager connected
to it over Perspective Broker on mutual TLS (as C{twistd geniam-am --agent}
does), and runs what a user does: GetVersion, ListResources, Allocate a
slot a few seconds ahead, Provision, Status until ready, Renew, Status
after the slot, Delete. The table's gateway column is what the agent
reports it has applied, asked over PB, so it shows the agent applying the
configuration at the slot's start and removing it at the end. With
C{--in-process} the AM uses an in-process simulated gateway instead. Each
step is checked and printed; the exit status is 0 only if all behaved.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater, react
from twisted.logger import LogEvent, globalLogPublisher
from twisted.python import usage

from geniam.demo import Experiment, Step, render_steps
from geniam.loopback import LoopbackFederation


class Options(usage.Options):
    """Flags of C{geniam demo}."""

    synopsis = "geniam demo [options]"
    optParameters = [
        ["lead", None, 5.0, "Seconds from now until the booked slot starts.", float],
        ["length", None, 10.0, "Seconds the slot lasts.", float],
        ["folder", None, None, "Keep the trust domain and databases in this folder (default: a temporary one)."],
    ]
    optFlags = [
        ["in-process", None, "Use an in-process simulated gateway instead of a gateway agent service."],
    ]


def describe_state(state: dict[str, Any]) -> str:
    """One line for the table: what a gateway reports it has applied."""
    return f"users={len(state['users'])} proxy={state['proxy'] or '-'} vlans={dict(state['vlans']) or '-'}"


async def gateway_view(federation: LoopbackFederation, aggregate: str) -> str:
    """Ask the aggregate's gateway (its agent, over PB, when it has one) what it has applied."""
    return describe_state(await federation.gateway_state(aggregate))


AGENT_LOG_NAMESPACE = "geniam.protocols.pb.GatewayPerspective"
"""Where the gateway agent logs each call it applies."""


def agent_printer(write: Any = print) -> Any:
    """A log observer printing what the gateway agent applies, one line per call."""

    def observe(event: LogEvent) -> None:
        if event.get("log_namespace") == AGENT_LOG_NAMESPACE and "method" in event:
            write(f"  agent: {event['method']} {event.get('detail', '')}".rstrip())

    return observe


async def run(reactor: Any, options: Options) -> int:
    """Start the federation, run the experiment, print the table."""
    folder = Path(options["folder"] or tempfile.mkdtemp(prefix="geniam-demo-"))
    print(f"geniam demo: trust domain and databases in {folder}")
    federation = LoopbackFederation(
        folder, reactor, aggregate_names=("am1",), user_names=("alice",), with_agents=not options["in-process"]
    )
    printer = agent_printer()
    globalLogPublisher.addObserver(printer)
    try:
        try:
            await federation.start()
        except Exception as e:
            print(f"geniam demo: the federation did not start: {e}")
            return 1
        if federation.with_agents:
            port = federation.agent_ports["am1"]
            print(f"geniam demo: gateway agent {federation.agent_urn('am1')} at 127.0.0.1:{port} (PB over TLS)")
        else:
            print("geniam demo: simulated gateway in process")
        print(f"geniam demo: aggregate manager {federation.aggregates['am1'].urn} at {federation.url('am1')}")
        slice_name = "demo"
        client = federation.client(
            "alice",
            "am1",
            (federation.user_credential("alice"), federation.slice_credential(slice_name, "alice")),
        )

        def show(step: Step) -> None:
            print(f"  {'ok ' if step.ok else 'FAILED'} {step.name}: {step.detail}")

        experiment = Experiment(
            client,
            federation.slice_urn(slice_name),
            federation.domain.user_urn("alice"),
            reactor.seconds,
            lambda seconds: deferLater(reactor, seconds, lambda: None),
            lambda: gateway_view(federation, "am1"),
            lead=options["lead"],
            length=options["length"],
            on_step=show,
        )
        ok = await experiment.run()
        print()
        print(render_steps(experiment.steps))
        print()
        print("geniam demo: every step behaved" if ok else "geniam demo: a step failed")
        return 0 if ok else 1
    finally:
        globalLogPublisher.removeObserver(printer)
        await federation.stop()
        if not options["folder"]:
            shutil.rmtree(folder, ignore_errors=True)


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
