# -*- test-case-name: tests.test_demo -*-
"""
C{geniam demo}: a federation on loopback and one experiment through it.

It makes a development trust domain in a temporary folder, starts the
aggregate manager on 127.0.0.1 with its simulated gateway, and runs what a
user does: GetVersion, ListResources, Allocate a slot a few seconds ahead,
Provision, Status until ready, Renew, Status after the slot, Delete. Each
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


def _gateway_view(gateway: Any) -> str:
    return f"users={len(gateway.users)} proxy={gateway.proxy or '-'} vlans={dict(gateway.vlans) or '-'}"


async def run(reactor: Any, options: Options) -> int:
    """Start the federation, run the experiment, print the table."""
    folder = Path(options["folder"] or tempfile.mkdtemp(prefix="geniam-demo-"))
    print(f"geniam demo: trust domain and databases in {folder}")
    federation = LoopbackFederation(folder, reactor, aggregate_names=("am1",), user_names=("alice",))
    await federation.start()
    try:
        print(f"geniam demo: aggregate manager {federation.aggregates['am1'].urn} at {federation.url('am1')}")
        slice_name = "demo"
        client = federation.client(
            "alice",
            "am1",
            (federation.user_credential("alice"), federation.slice_credential(slice_name, "alice")),
        )
        gateway = federation.gateways["am1"]

        def show(step: Step) -> None:
            print(f"  {'ok ' if step.ok else 'FAILED'} {step.name}: {step.detail}")

        experiment = Experiment(
            client,
            federation.slice_urn(slice_name),
            federation.domain.user_urn("alice"),
            reactor.seconds,
            lambda seconds: deferLater(reactor, seconds, lambda: None),
            lambda: _gateway_view(gateway),
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
