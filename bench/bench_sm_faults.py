# -*- test-case-name: tests.managers.test_slice_faults -*-
"""
Slice manager fault figures: time to detect a hung aggregate, and time to
call it again once it is back.

Run from the checkout: C{python bench/bench_sm_faults.py [--short]}.

Two in-process aggregates behind one slice manager on the real reactor;
one of them hangs (accepts calls, never answers). Printed:

  - B{detect}: seconds from a Status call to its answer while the
    aggregate hangs, against the peer timeout (the old cost of a hang);
  - B{recover}: seconds from the aggregate answering again to its circuit
    closing (background probing), against the probe interval.

C{--short} scales every setting down (for CI); figures are printed, not
asserted.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from twisted.internet import task  # noqa: E402
from twisted.internet.defer import Deferred, succeed  # noqa: E402

from geniam.errors import error_struct, GeniCode, success_struct  # noqa: E402
from geniam.managers.breaker import BreakerState  # noqa: E402
from geniam.managers.slice import SliceManager, SliceManagerInfo, SliceManagerSettings  # noqa: E402
from geniam.trust.context import CallContext  # noqa: E402
from geniam.trust.forwarding import DELEGATION, OWN, Forwarding  # noqa: E402

SLICE = "urn:publicid:IDN+bench.example+slice+bench"
SM_URN = "urn:publicid:IDN+bench.example+authority+sm"


class Aggregate:
    """Answers at once, or never while C{hanging}."""

    def __init__(self, name: str) -> None:
        self.url = f"https://{name}.bench:8001/"
        self.urn = f"urn:publicid:IDN+{name}.bench+authority+am"
        self.hanging = False

    def call(self, method: str, *params: Any) -> Deferred[Any]:
        if self.hanging:
            return Deferred()
        if method == "GetVersion":
            return succeed(success_struct({"geni_api": 3, "urn": self.urn}))
        if method == "Status":
            return succeed(success_struct({"geni_urn": SLICE, "geni_slivers": []}))
        return succeed(error_struct(GeniCode.SEARCHFAILED, "nothing here"))


class Forwarder:
    async def for_resources(self, caller: Any, credentials: Any, options: Any) -> Forwarding:
        return Forwarding(("c",), OWN)

    async def for_slice(self, caller: Any, credentials: Any, method: str, slice_urn: Any, options: Any) -> Forwarding:
        return Forwarding(tuple(credentials), DELEGATION, slice_urn)


class Caller:
    urn = "urn:publicid:IDN+bench.example+user+alice"


class Unasked:
    """The authorizer of the bench's calls: the slice manager asks only the forwarding policy."""

    def authorize(self, *args: Any) -> Deferred[Any]:
        raise AssertionError("the slice manager asked the authorizer")


async def main(reactor: Any, short: bool) -> None:
    scale = 0.1 if short else 1.0
    settings = SliceManagerSettings(
        peer_timeout=30.0 * scale,
        deadline=60.0 * scale,
        hung_after=5.0 * scale,
        probe_timeout=5.0 * scale,
        probe_interval=5.0 * scale,
        probe_max_interval=60.0 * scale,
    )
    good, hung = Aggregate("am1"), Aggregate("am2")
    sm = SliceManager([good, hung], reactor, SliceManagerInfo(SM_URN, "https://sm.bench/"), settings)
    await sm.start()
    hung.hanging = True
    started = time.perf_counter()
    context = CallContext(Caller(), ["c"], Unasked(), Forwarder())  # type: ignore[arg-type]
    await Deferred.fromCoroutine(sm.Status(context, [SLICE], {}))
    detect = time.perf_counter() - started
    print(f"detect: the call answered without the hung aggregate after {detect:.2f} s; peer timeout {settings.peer_timeout:g} s; "
          f"ratio {detect / settings.peer_timeout:.2f}")
    record = sm.records[1]
    assert record.breaker.state is BreakerState.OPEN
    await task.deferLater(reactor, settings.probe_interval * 0.5, lambda: None)
    hung.hanging = False
    back = time.perf_counter()
    while record.breaker.state is not BreakerState.CLOSED:
        await task.deferLater(reactor, 0.01, lambda: None)
    recover = time.perf_counter() - back
    print(f"recover: circuit closed {recover:.2f} s after the aggregate was back; probe interval "
          f"{settings.probe_interval:g} s; ratio {recover / settings.probe_interval:.2f}")
    sm.stop_background()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--short", action="store_true", help="scaled-down settings, for CI")
    arguments = parser.parse_args()
    task.react(lambda reactor: Deferred.fromCoroutine(main(reactor, arguments.short)))
