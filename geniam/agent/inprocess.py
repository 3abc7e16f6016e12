# -*- test-case-name: tests.agent.test_inprocess -*-
"""
The in-process gateway: a gateway agent's back end
(L{geniam.interfaces.IGatewayBackend}) driven directly as the aggregate
manager's L{geniam.interfaces.IGatewayAgent}, with no PB link between them.

It stands where the link would deliver the calls, so it validates every
argument as the agent's end of the link does (L{geniam.gateway.verbs}).
With the simulated back end (the default, in memory) it is what the AM's
simulated mode, the in-process demo and the tests drive. It logs every
operation applied and can be told to fail like a link does: the next calls
(L{InProcessGateway.fail_next}), every call (L{InProcessGateway.set_reachable}),
or slowly (C{latency} on a C{clock}).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from geniam.agent.backends.simulated import SimulatedBackend
from geniam.errors import GeniCode, GeniError
from geniam.gateway.config import GatewayConfig
from geniam.gateway.verbs import GatewayCalls, Verb, apply_verb
from geniam.gatewayconfig import ControllerPolicy
from geniam.interfaces import IGatewayAgent


@dataclass
class _Failure:
    remaining: int
    reason: str
    code: GeniCode
    methods: frozenset[str] | None


@implementer(IGatewayAgent)
class InProcessGateway(GatewayCalls):
    """
    An L{IGatewayAgent} on top of an L{IGatewayBackend} in the same process.

    Every method returns a Deferred, fired when the back end answers or,
    with C{latency} and a C{clock}, that many seconds later, when the call
    takes effect (cancelling it before then leaves the gateway unchanged).

    @ivar backend: the back end that applies the calls.
    @ivar log: the operations applied, as C{(method, validated argument)}
        tuples (argument None for methods without one), in order; failed
        calls and queries are not logged.
    @ivar calls: the names of every method called, failed ones included.
    """

    def __init__(
        self,
        backend: Any = None,
        clock: IReactorTime | None = None,
        latency: float = 0.0,
        policy: ControllerPolicy | None = None,
    ) -> None:
        """
        @param backend: an L{IGatewayBackend}, started by its owner (default:
            a L{SimulatedBackend} of the default island, in memory).
        @param clock: what the latency is measured on.
        @param latency: seconds before each call takes effect (needs C{clock}).
        @param policy: where controllers may be (None: any well-formed C{host:port}).
        """
        self.backend = backend if backend is not None else SimulatedBackend()
        self.log: list[tuple[str, Any]] = []
        self.calls: list[str] = []
        self._clock = clock
        self._latency = latency
        self._policy = policy
        self._reachable = True
        self._failures: list[_Failure] = []

    # What a simulated back end holds (it keeps it in memory).

    @property
    def applied(self) -> GatewayConfig:
        """The configuration the back end holds now (a back end with an C{applied} attribute)."""
        applied: GatewayConfig = self.backend.applied
        return applied

    @property
    def users(self) -> list[str]:
        """The authorised SSH keys, in the order installed."""
        return list(self.applied.users)

    @property
    def proxy(self) -> str:
        """The controller C{host:port} the TCP proxy forwards to, or C{""}."""
        return self.applied.proxy

    @property
    def vlans(self) -> dict[str, str]:
        """The VLAN map applied, C{{testbed VLAN: island VLAN}}."""
        return dict(self.applied.vlans)

    @property
    def switches(self) -> tuple[str, ...]:
        """The island's switches (a back end with an C{inventory}), broken ones included."""
        switches: tuple[str, ...] = self.backend.inventory.switches
        return switches

    # Failure injection.

    def fail_next(
        self,
        count: int = 1,
        reason: str = "simulated gateway failure",
        code: GeniCode = GeniCode.RPCERROR,
        methods: Iterable[str] | None = None,
    ) -> None:
        """
        Make the next C{count} calls (only of C{methods}, if given) fail
        with C{GeniError(code, reason)} without changing anything.
        """
        self._failures.append(_Failure(count, reason, GeniCode(code), frozenset(methods) if methods is not None else None))

    def set_reachable(self, reachable: bool) -> None:
        """Make every call fail with RPCERROR (unreachable) until reachable again."""
        self._reachable = reachable

    # The calls.

    def _verb(self, verb: Verb, *args: Any) -> Deferred[Any]:
        self.calls.append(verb.name)
        if self._clock is None or self._latency <= 0:
            return Deferred.fromCoroutine(self._run(verb, args))

        def cancel(_: Deferred[Any]) -> None:
            if call.active():
                call.cancel()

        answer: Deferred[Any] = Deferred(cancel)
        call = self._clock.callLater(self._latency, lambda: Deferred.fromCoroutine(self._run(verb, args)).chainDeferred(answer))
        return answer

    async def _run(self, verb: Verb, args: tuple[Any, ...]) -> Any:
        self._check_injected(verb.name)
        answer, valid = await apply_verb(self.backend, verb, args, self._policy)
        if verb.changes:
            self.log.append((verb.name, valid[0] if valid else None))
        return answer

    def _check_injected(self, method: str) -> None:
        if not self._reachable:
            raise GeniError(GeniCode.RPCERROR, "gateway unreachable")
        for injected in self._failures:
            if injected.remaining > 0 and (injected.methods is None or method in injected.methods):
                injected.remaining -= 1
                if injected.remaining == 0:
                    self._failures.remove(injected)
                raise GeniError(injected.code, injected.reason)
