"""
In-memory aggregates, callers and forwarding policies for the slice
manager's tests, the call contexts they make (L{called_by}), and
L{SliceManagerCase}, their common set-up; this module holds no tests
itself.

A L{FakeAggregate} answers the AM API v3 calls the way an aggregate does
(small GENI v3 documents, slivers kept per slice) and can be made slow,
dead (every call fails as a refused connection would) or hanging (calls
never answer, and record their cancellation).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from geniam.errors import GeniCode, GeniError, error_struct, success_struct
from geniam.interfaces import IAuthorizer, IForwardingPolicy
from geniam.managers.slice import SliceManager, SliceManagerInfo, SliceManagerSettings
from geniam.managers.undo import UndoJournal
from geniam.protocols.peer import PeerConnectionError
from geniam.trust.context import CallContext
from geniam.trust.forwarding import DELEGATION, OWN, Forwarding
from geniam.urn import parse_urn

NS = "http://www.geni.net/resources/rspec/3"
SM_URN = "urn:publicid:IDN+sm.example+authority+sm"
SM_URL = "https://sm.example:8002/"
ALICE = "urn:publicid:IDN+ch.example+user+alice"
SLICE = "urn:publicid:IDN+ch.example+slice+exp1"
GENI_V3 = {"type": "GENI", "version": "3"}
EXPIRES = "2030-01-01T00:00:00Z"


def am_urn(name: str) -> str:
    """The URN of fake aggregate C{name}."""
    return f"urn:publicid:IDN+{name}.example+authority+am"


def advertisement(name: str, available: bool = False) -> str:
    """A one-node advertisement of aggregate C{name}."""
    extra = f'<node component_id="urn:publicid:IDN+{name}.example+node+spare" component_manager_id="{am_urn(name)}"/>'
    return (
        f'<rspec xmlns="{NS}" type="advertisement">'
        f'<node component_id="urn:publicid:IDN+{name}.example+node+n1" component_manager_id="{am_urn(name)}"/>'
        f"{'' if available else extra}</rspec>"
    )


def request(*names: str) -> str:
    """A request with one node per aggregate named."""
    nodes = "".join(f'<node client_id="{n}" component_manager_id="{am_urn(n)}"/>' for n in names)
    return f'<rspec xmlns="{NS}" type="request">{nodes}</rspec>'


@dataclass
class Caller:
    """A verified caller as far as the slice manager's core is concerned."""

    urn: str


@dataclass
class Call:
    """One call a fake aggregate received."""

    method: str
    params: tuple[Any, ...]

    @property
    def options(self) -> dict[str, Any]:
        """The call's options (its last parameter)."""
        return self.params[-1]  # type: ignore[no-any-return]


class FakeAggregate:
    """
    An aggregate in memory.

    @ivar mode: C{normal}, C{dead} (fails at once like a refused
        connection), C{hang} (never answers) or C{error} (answers every
        call with C{error_code}).
    @ivar delay: seconds (on the clock) before answering.
    @ivar calls: every call received.
    @ivar cancelled: how many calls were cancelled while pending.
    """

    def __init__(self, name: str, clock: Clock, delay: float = 0.0, urn: str | None = None) -> None:
        self.name = name
        self.urn = urn or am_urn(name)
        self.authority = parse_urn(self.urn).authority
        self.url = f"https://{name}.example:8001/"
        self.clock = clock
        self.delay = delay
        self.mode = "normal"
        self.error_code = GeniCode.BUSY
        self.interface: str | None = None
        self.calls: list[Call] = []
        self.cancelled = 0
        self.slivers: dict[str, list[dict[str, Any]]] = {}
        self._serial = 0
        self._client_ids: dict[str, str] = {}

    def methods(self) -> list[str]:
        """The methods called, in order."""
        return [c.method for c in self.calls]

    def last(self, method: str) -> Call:
        """The last call of C{method}."""
        return [c for c in self.calls if c.method == method][-1]

    def call(self, method: str, *params: Any) -> Deferred[Any]:
        """Answer like an aggregate, after C{delay}."""
        self.calls.append(Call(method, params))
        if self.mode == "dead":
            return fail(PeerConnectionError(self.url, method, "cannot connect: Connection refused"))
        if self.mode == "hang":
            return Deferred(self._cancel)
        if self.mode == "error" and method != "GetVersion":
            answer: Any = error_struct(self.error_code, f"{self.name} says no")
        else:
            try:
                answer = getattr(self, f"_{method}")(*params)
            except GeniError as e:
                answer = e.as_struct()
        if self.delay <= 0:
            return succeed(answer)
        d: Deferred[Any] = Deferred(self._cancel)
        call = self.clock.callLater(self.delay, d.callback, answer)
        d.addErrback(self._stop, call)
        return d

    def _cancel(self, d: Deferred[Any]) -> None:
        self.cancelled += 1

    def _stop(self, failure: Any, call: Any) -> Any:
        if call.active():
            call.cancel()
        return failure

    def _GetVersion(self, options: dict[str, Any]) -> dict[str, Any]:
        value: dict[str, Any] = {"geni_api": 3, "urn": self.urn, "geni_api_versions": {"3": self.url}}
        if self.interface:
            value["interface"] = self.interface
        return success_struct(value)

    def _ListResources(self, credentials: list[Any], options: dict[str, Any]) -> dict[str, Any]:
        return success_struct(advertisement(self.name, bool(options.get("geni_available"))))

    def _slivers_for(self, urns: list[str]) -> tuple[str, list[dict[str, Any]]]:
        if parse_urn(urns[0]).type == "slice":
            found = self.slivers.get(urns[0])
            if not found:
                raise GeniError(GeniCode.SEARCHFAILED, f"slice {urns[0]} has no slivers here")
            return urns[0], found
        for slice_urn, slivers in self.slivers.items():
            chosen = [s for s in slivers if s["geni_sliver_urn"] in urns]
            if chosen:
                return slice_urn, chosen
        raise GeniError(GeniCode.SEARCHFAILED, f"no such slivers: {urns}")

    def _manifest(self, slivers: list[dict[str, Any]]) -> str:
        nodes = "".join(
            f'<node client_id="{self._client_ids.get(s["geni_sliver_urn"], f"{self.name}-{i}")}" '
            f'component_manager_id="{self.urn}" sliver_id="{s["geni_sliver_urn"]}"/>'
            for i, s in enumerate(slivers)
        )
        return f'<rspec xmlns="{NS}" type="manifest">{nodes}</rspec>'

    def _Allocate(self, slice_urn: str, credentials: list[Any], rspec: str, options: dict[str, Any]) -> dict[str, Any]:
        self._serial += 1
        sliver = {
            "geni_sliver_urn": f"urn:publicid:IDN+{self.authority}+sliver+s{self._serial}",
            "geni_allocation_status": "geni_allocated",
            "geni_operational_status": "geni_notready",
            "geni_expires": EXPIRES,
        }
        self.slivers.setdefault(slice_urn, []).append(sliver)
        found = re.search(r'client_id="([^"]+)"', rspec)
        if found:
            self._client_ids[sliver["geni_sliver_urn"]] = found.group(1)
        return success_struct({"geni_rspec": self._manifest([sliver]), "geni_slivers": [sliver]})

    def _Describe(self, urns: list[str], credentials: list[Any], options: dict[str, Any]) -> dict[str, Any]:
        if parse_urn(urns[0]).type == "slice" and not self.slivers.get(urns[0]):
            return success_struct({"geni_rspec": self._manifest([]), "geni_urn": urns[0], "geni_slivers": []})
        slice_urn, slivers = self._slivers_for(urns)
        return success_struct({"geni_rspec": self._manifest(slivers), "geni_urn": slice_urn, "geni_slivers": slivers})

    def _Provision(self, urns: list[str], credentials: list[Any], options: dict[str, Any]) -> dict[str, Any]:
        _, slivers = self._slivers_for(urns)
        for sliver in slivers:
            sliver["geni_allocation_status"] = "geni_provisioned"
        return success_struct({"geni_rspec": self._manifest(slivers), "geni_slivers": slivers})

    def _Status(self, urns: list[str], credentials: list[Any], options: dict[str, Any]) -> dict[str, Any]:
        slice_urn, slivers = self._slivers_for(urns)
        return success_struct({"geni_urn": slice_urn, "geni_slivers": [dict(s, geni_error="") for s in slivers]})

    def _Renew(self, urns: list[str], credentials: list[Any], when: str, options: dict[str, Any]) -> dict[str, Any]:
        _, slivers = self._slivers_for(urns)
        for sliver in slivers:
            sliver["geni_expires"] = when
        return success_struct(list(slivers))

    def _PerformOperationalAction(
        self, urns: list[str], credentials: list[Any], action: str, options: dict[str, Any]
    ) -> dict[str, Any]:
        _, slivers = self._slivers_for(urns)
        for sliver in slivers:
            sliver["geni_operational_status"] = "geni_ready"
        return success_struct(list(slivers))

    def _Delete(self, urns: list[str], credentials: list[Any], options: dict[str, Any]) -> dict[str, Any]:
        if parse_urn(urns[0]).type == "slice" and not self.slivers.get(urns[0]):
            return success_struct([])
        slice_urn, slivers = self._slivers_for(urns)
        self.slivers[slice_urn] = [s for s in self.slivers[slice_urn] if s not in slivers]
        return success_struct(
            [
                {"geni_sliver_urn": s["geni_sliver_urn"], "geni_allocation_status": "geni_unallocated", "geni_expires": s["geni_expires"]}
                for s in slivers
            ]
        )

    def _Shutdown(self, slice_urn: str, credentials: list[Any], options: dict[str, Any]) -> dict[str, Any]:
        return success_struct(True)


@implementer(IForwardingPolicy)
@dataclass
class FakeForwarder:
    """
    Lets every call through with the caller's own credentials, or refuses
    all of them with C{refuse}.
    """

    refuse: GeniError | None = None
    own: tuple[Any, ...] = ("sm-credential",)
    calls: list[tuple[str, Any]] = field(default_factory=list)

    async def for_resources(self, caller: Any, credentials: Any, options: Any) -> Forwarding:
        self.calls.append(("ListResources", caller))
        if self.refuse is not None:
            raise self.refuse
        return Forwarding(self.own, OWN)

    async def for_slice(self, caller: Any, credentials: Any, method: str, slice_urn: str | None, options: Any) -> Forwarding:
        self.calls.append((method, caller))
        if self.refuse is not None:
            raise self.refuse
        return Forwarding(tuple(credentials), DELEGATION, slice_urn or SLICE)


@implementer(IAuthorizer)
class UnaskedAuthorizer:
    """The slice manager asks only its forwarding policy: an authorizer that fails any call it gets."""

    def authorize(self, peer: Any, credentials: Any, method: str, target_urn: str | None = None, options: Any = None) -> Deferred[Any]:
        """Fail: the slice manager should not have asked."""
        return fail(GeniError(GeniCode.SERVERERROR, "the slice manager asked the authorizer directly"))


def called_by(caller: Any, credentials: Any = (), forwarder: FakeForwarder | None = None) -> CallContext:
    """
    The context of a call by C{caller} presenting C{credentials}, whose
    forwarding is decided by C{forwarder} (a fresh L{FakeForwarder} if C{None}).
    """
    return CallContext(caller, list(credentials), UnaskedAuthorizer(), FakeForwarder() if forwarder is None else forwarder)


def make_sm(
    aggregates: list[FakeAggregate],
    clock: Clock,
    learn: bool = True,
    undo_journal: UndoJournal | None = None,
    new_call_id: Callable[[], str] | None = None,
    **settings: Any,
) -> tuple[SliceManager, FakeForwarder]:
    """
    A slice manager in front of C{aggregates}, their versions learned.

    @param new_call_id: by default C{generated-0}, C{generated-1}, ...
    """
    forwarder = FakeForwarder()
    sm = SliceManager(
        aggregates,
        clock,
        SliceManagerInfo(SM_URN, SM_URL),
        SliceManagerSettings(**settings),
        new_call_id=new_call_id or iter(f"generated-{i}" for i in range(10**6)).__next__,
        undo_journal=undo_journal,
    )
    if learn:
        d = sm.start()
        clock.advance(max([a.delay for a in aggregates] + [0]))
        assert d.called, "learning versions did not finish"
    return sm, forwarder


def run(coroutine: Any) -> Deferred[Any]:
    """A slice manager call (a coroutine) as a Deferred."""
    return Deferred.fromCoroutine(coroutine)


class SliceManagerCase(SynchronousTestCase):
    """
    A slice manager on a L{Clock} in front of the aggregates C{names},
    each answering after C{delay} seconds, with C{settings}; alice calls.
    """

    names: tuple[str, ...] = ("am1", "am2", "am3")
    delay = 1.0
    settings: dict[str, Any] = {}

    def setUp(self) -> None:
        self.clock = Clock()
        self.ams = [FakeAggregate(name, self.clock, self.delay) for name in self.names]
        self.sm, self.forwarder = make_sm(self.ams, self.clock, **self.settings)
        self.alice = Caller(ALICE)

    def called_by(self, caller: Any, credentials: Any = ()) -> CallContext:
        """The context of a call by C{caller}, decided by this case's forwarder."""
        return called_by(caller, credentials, self.forwarder)
