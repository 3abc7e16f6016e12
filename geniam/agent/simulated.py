# -*- test-case-name: tests.test_simulated_gateway -*-
"""
A simulated island gateway: L{IGatewayAgent} in process, with no devices.

It keeps what a real gateway would hold (the authorised SSH keys, the TCP
proxy to the user's controller, the VLAN map), logs every operation it
applies, validates every argument as a real agent does, and can be told to
fail: the next calls (L{SimulatedGateway.fail_next}), every call
(L{SimulatedGateway.set_reachable}), or the VLAN mapping while a switch is
down (L{SimulatedGateway.break_switch}). The aggregate manager's tests and
demos use it, and the gateway agent daemon can serve it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from geniam.errors import GeniCode, GeniError
from geniam.gatewayconfig import parse_controller, validate_ssh_keys, validate_vlan_map
from geniam.interfaces import IGatewayAgent

T = TypeVar("T")

DEFAULT_SWITCHES: tuple[str, ...] = (
    "00:00:00:00:00:00:00:01",
    "00:00:00:00:00:00:00:02",
    "00:00:00:00:00:00:00:03",
    "00:00:00:00:00:00:00:04",
)
"""The DPIDs of the default island's four OpenFlow switches."""

DEFAULT_LINKS: tuple[str, ...] = (
    "00:00:00:00:00:00:00:01:1-00:00:00:00:00:00:00:02:1",
    "00:00:00:00:00:00:00:02:2-00:00:00:00:00:00:00:03:1",
    "00:00:00:00:00:00:00:03:2-00:00:00:00:00:00:00:04:1",
    "00:00:00:00:00:00:00:04:2-00:00:00:00:00:00:00:01:2",
    "00:00:00:00:00:00:00:01:3-00:00:00:00:00:00:00:03:3",
)
"""The default island's five links, as C{DPID:port-DPID:port}: a ring of four and one diagonal."""


def link_ends(link: str) -> tuple[str, str]:
    """Return the two DPIDs a C{DPID:port-DPID:port} link joins."""
    left, _, right = link.partition("-")
    return left.rpartition(":")[0], right.rpartition(":")[0]


@dataclass
class _Failure:
    remaining: int
    reason: str
    code: GeniCode
    methods: frozenset[str] | None


@implementer(IGatewayAgent)
class SimulatedGateway:
    """
    An in-process gateway with a default island of four switches and five links.

    Every method returns a Deferred, fired at once or, with C{latency} and
    a C{clock}, that many seconds later, when the call takes effect
    (cancelling it before then leaves the gateway unchanged). Calls are
    idempotent, as L{IGatewayAgent} requires.

    @ivar users: the authorised SSH keys, in the order installed.
    @ivar proxy: the controller C{host:port} the TCP proxy forwards to, or C{""}.
    @ivar vlans: the VLAN map applied, C{{testbed VLAN: island VLAN}}.
    @ivar log: the operations applied, as C{(method, argument)} tuples
        (argument None for methods without one), in order; failed calls and
        queries are not logged.
    @ivar calls: the names of every method called, failed ones included.
    """

    def __init__(
        self,
        switches: Sequence[str] = DEFAULT_SWITCHES,
        links: Sequence[str] = DEFAULT_LINKS,
        clock: IReactorTime | None = None,
        latency: float = 0.0,
    ) -> None:
        self.switches = tuple(switches)
        self.links = tuple(links)
        self.users: list[str] = []
        self.proxy = ""
        self.vlans: dict[str, str] = {}
        self.log: list[tuple[str, Any]] = []
        self.calls: list[str] = []
        self._clock = clock
        self._latency = latency
        self._reachable = True
        self._broken: set[str] = set()
        self._failures: list[_Failure] = []

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

    def break_switch(self, dpid: str) -> None:
        """
        Take a switch down for good: it and its links leave the inventory,
        and C{set_ovs} fails with REFUSED until L{repair_switch}.
        """
        if dpid not in self.switches:
            raise GeniError(GeniCode.BADARGS, f"no switch {dpid!r} on this island")
        self._broken.add(dpid)

    def repair_switch(self, dpid: str) -> None:
        """Bring a switch taken down by L{break_switch} back."""
        self._broken.discard(dpid)

    # The calls.

    def _call(self, method: str, work: Callable[[], T]) -> Deferred[T]:
        self.calls.append(method)
        if self._clock is None or self._latency <= 0:
            return self._run(method, work)
        clock = self._clock

        def cancel(_: Deferred[T]) -> None:
            if call.active():
                call.cancel()

        answer: Deferred[T] = Deferred(cancel)
        call = clock.callLater(self._latency, lambda: self._run(method, work).chainDeferred(answer))
        return answer

    def _run(self, method: str, work: Callable[[], T]) -> Deferred[T]:
        try:
            self._check_injected(method)
            result = work()
        except GeniError as e:
            return fail(e)
        return succeed(result)

    def _check_injected(self, method: str) -> None:
        if not self._reachable:
            raise GeniError(GeniCode.RPCERROR, "gateway unreachable")
        for injected in self._failures:
            if injected.remaining > 0 and (injected.methods is None or method in injected.methods):
                injected.remaining -= 1
                if injected.remaining == 0:
                    self._failures.remove(injected)
                raise GeniError(injected.code, injected.reason)

    def get_switches(self) -> Deferred[list[str]]:
        """Fire with the DPIDs of the switches that are up."""
        return self._call("get_switches", lambda: [s for s in self.switches if s not in self._broken])

    def get_links(self) -> Deferred[list[str]]:
        """Fire with the links whose both switches are up."""

        def links() -> list[str]:
            return [link for link in self.links if not self._broken.intersection(link_ends(link))]

        return self._call("get_links", links)

    def set_user_auth(self, keys: Sequence[str]) -> Deferred[None]:
        """Authorise these SSH keys (added to those already there)."""

        def apply() -> None:
            valid = validate_ssh_keys(keys)
            self.users.extend(k for k in valid if k not in self.users)
            self.log.append(("set_user_auth", valid))

        return self._call("set_user_auth", apply)

    def rem_user_auth(self, keys: Sequence[str]) -> Deferred[None]:
        """Remove these SSH keys (absent ones are ignored)."""

        def apply() -> None:
            valid = validate_ssh_keys(keys)
            self.users = [k for k in self.users if k not in valid]
            self.log.append(("rem_user_auth", valid))

        return self._call("rem_user_auth", apply)

    def set_tcp_proxy(self, controller: str) -> Deferred[None]:
        """Forward the controller port to C{controller} (C{host:port})."""

        def apply() -> None:
            parse_controller(controller)
            self.proxy = controller
            self.log.append(("set_tcp_proxy", controller))

        return self._call("set_tcp_proxy", apply)

    def rem_tcp_proxy(self) -> Deferred[None]:
        """Stop the TCP proxy."""

        def apply() -> None:
            self.proxy = ""
            self.log.append(("rem_tcp_proxy", None))

        return self._call("rem_tcp_proxy", apply)

    def set_ovs(self, vlan_map: dict[str, str]) -> Deferred[None]:
        """Apply a VLAN map; REFUSED while a switch is down."""

        def apply() -> None:
            valid = validate_vlan_map(vlan_map)
            if self._broken:
                down = ", ".join(sorted(self._broken))
                raise GeniError(GeniCode.REFUSED, f"cannot map VLANs: switch {down} unreachable")
            self.vlans = valid
            self.log.append(("set_ovs", dict(valid)))

        return self._call("set_ovs", apply)

    def rem_ovs(self) -> Deferred[None]:
        """Remove the VLAN map."""

        def apply() -> None:
            self.vlans = {}
            self.log.append(("rem_ovs", None))

        return self._call("rem_ovs", apply)

    def reset(self) -> Deferred[None]:
        """Restore the default configuration: no users, no proxy, no VLANs."""

        def apply() -> None:
            self.users, self.proxy, self.vlans = [], "", {}
            self.log.append(("reset", None))

        return self._call("reset", apply)

    def state(self) -> Deferred[dict[str, Any]]:
        """Fire with C{{"users": [...], "proxy": "host:port" or "", "vlans": {...}}}."""
        return self._call("state", lambda: {"users": list(self.users), "proxy": self.proxy, "vlans": dict(self.vlans)})
